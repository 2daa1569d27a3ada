"""Images the MLflow UI shows: its logged-image layout, written from PNGs labkit has already encoded.

MLflow 3.17's `MlflowClient.log_image(run_id, image, key=KEY, step=STEP)` writes two files under the run's artifacts

    images/<KEY, '/' as '~'>+step+<STEP>+timestamp+<ms>+<uuid>.png              the image
    images/<KEY, '/' as '~'>+step+<STEP>+timestamp+<ms>+<uuid>+compressed.webp  a thumbnail, longer side 256 px

and sets the run tag `mlflow.loggedImages`. The UI lists `images/`, parses those names (a `.png` or `.webp`
extension either way) and draws one image card per key in the chart view, with a slider over the steps; a
thumbnail missing reads "No image logged at this step". labkit writes the same names itself: the full image is
a hard link to (or, across file systems, a copy of) the PNG it already wrote, and so is the thumbnail of an image
no larger than 256 px; a larger one gets a real 256-px thumbnail. `log_image` would decode, re-encode and write
both files again for every output — more than a toy render's whole tracking budget.

The compare page (`#/compare-runs`) shows only files at the same path in every run, at the top of the artifacts:
`preview.png` (a render's outputs as one grid; the output itself for one image) or `preview.gif` (a video's first
clip) is that stable path.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter

#: The run tag MLflow sets when a run has logged images (the UI then offers its image cards).
LOGGED_IMAGES_TAG = "mlflow.loggedImages"
#: The artifact folder MLflow's UI reads logged images from.
IMAGES_DIR = "images"
#: The longer side of MLflow's thumbnails (`mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE`).
THUMBNAIL = 256
_KEY = re.compile(r"^[a-zA-Z0-9_\-./ ]+$")  # what `log_image` accepts as a key


def link(src: Path, dest: Path) -> Path:
    """`dest` as a hard link to `src` (no bytes written), or a copy where links are not possible."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest


def stage_image(folder: Path, key: str, image: Path | Any, step: int = 0,
                timestamp_ms: int | None = None) -> list[Path]:
    """Write `image` (a PNG file, linked; or a PIL image, encoded) into `folder` as MLflow's logged image `key` at
    `step`; `folder` is what becomes the run's `images/` artifact folder. Returns the two files written."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidParameter(f"The image key {key!r} is not one MLflow accepts.", value=key,
                               fix="use letters, digits, '_', '-', '.', ' ' and '/' only, e.g. 'validation'.")
    folder.mkdir(parents=True, exist_ok=True)
    ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    name = f"{key.replace('/', '~')}+step+{int(step)}+timestamp+{ts}+{uuid.uuid4()}"
    full, thumb = folder / f"{name}.png", folder / f"{name}+compressed.png"
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        link(Path(image), full)
        with Image.open(full) as im:  # reads the header only
            small = max(im.size) <= THUMBNAIL
            if not small:
                im.thumbnail((THUMBNAIL, THUMBNAIL))
                im.save(thumb)
        if small:
            link(full, thumb)
    else:
        if not hasattr(image, "save"):  # an array (H, W[, C]), as a video frame may be
            import numpy as np
            from PIL import Image

            image = Image.fromarray(np.asarray(image))
        image.save(full)
        if max(image.size) <= THUMBNAIL:
            link(full, thumb)
        else:
            small = image.copy()
            small.thumbnail((THUMBNAIL, THUMBNAIL))
            small.save(thumb)
    return [full, thumb]


def stage_preview(folder: Path, files: Sequence[Path], cols: int = 4) -> Path | None:
    """`folder/preview.png`: the PNGs among `files` as one grid (one PNG: linked as it is); or, without PNGs,
    `folder/preview.gif`: the first GIF linked. None when `files` has neither."""
    pngs = [Path(f) for f in files if Path(f).suffix.lower() == ".png"]
    gifs = [Path(f) for f in files if Path(f).suffix.lower() == ".gif"]
    if len(pngs) == 1:
        return link(pngs[0], folder / "preview.png")
    if pngs:
        from PIL import Image

        from labkit.grids import image_grid

        opened = [Image.open(p) for p in pngs]
        try:
            sheet = image_grid(opened, cols=min(cols, len(opened)), pad=2, background=(128, 128, 128))
        finally:
            for im in opened:
                im.close()
        sheet.save(folder / "preview.png")
        return folder / "preview.png"
    if gifs:
        return link(gifs[0], folder / "preview.gif")
    return None


def log_image(run: Any, key: str, image: Path | Any, step: int = 0) -> None:
    """Log `image` (a PNG file or a PIL image) to `run` (a `labkit.tracking.Run`) as MLflow's logged image `key` at
    `step`: what the UI's chart view shows in its image card for `key` (e.g. a training run's validation grids)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="labkit-images-", dir=run.staging()) as tmp:
        for path in stage_image(Path(tmp), key, image, step):
            run.log_artifact(path, IMAGES_DIR, move=True)
    run.set_tags({LOGGED_IMAGES_TAG: "True"})


__all__ = ["IMAGES_DIR", "LOGGED_IMAGES_TAG", "THUMBNAIL", "link", "log_image", "stage_image", "stage_preview"]
