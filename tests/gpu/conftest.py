"""What the GPU tests share: the GPU machine lacks imageio-ffmpeg (its wheel is too large to carry), so there clips
are written as GIF only; every other step of a render is the one users run."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _gif_only_without_ffmpeg(monkeypatch):
    from labkit.deps import available

    if available("imageio_ffmpeg"):
        return
    import functools

    from labkit import outputs

    monkeypatch.setattr(outputs, "write_video", functools.partial(outputs.write_video, formats=("gif",)))
