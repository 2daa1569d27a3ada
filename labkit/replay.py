"""Replaying a recorded run from its stored plan, and checking the pixels against the original."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.plan import Plan

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.render import Result


@dataclass(frozen=True)
class ReplayCheck:
    """How a replay's outputs compare with the original run's, file by file."""

    original_run: str
    replay_run: str
    files: list[str]
    max_diff: int
    identical: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_plan(lab: Lab, run_id: str) -> Plan:
    """The plan a run stored as `plan.json`."""
    try:
        run = lab.tracker.client.get_run(run_id)
    except Exception as e:
        raise InvalidParameter(f"No run {run_id!r} in {lab.config.tracking_uri}.", value=run_id,
                               fix="copy the run id from `labkit generate --json` or the MLflow UI.") from e
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = lab.tracker.client.download_artifacts(run.info.run_id, "plan.json", tmp)
        except Exception as e:
            raise InvalidParameter(f"Run {run_id!r} has no plan.json artifact: it was not a render.", value=run_id,
                                   fix="replay a run made by labkit generate/video/ask.") from e
        return Plan.from_json(Path(path).read_text())


def _frames(path: Path) -> list[Any]:
    import numpy as np
    from PIL import Image, ImageSequence

    if path.suffix == ".png":
        return [np.asarray(Image.open(path).convert("RGB"))]
    with Image.open(path) as im:  # GIF: lossless in our palette, so frames compare exactly
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def _comparable(files: list[Path]) -> list[Path]:
    return sorted((f for f in files if f.suffix in (".png", ".gif")), key=lambda p: p.name)


def replay(lab: Lab, run_id: str, *, check: bool = False) -> tuple[Result, ReplayCheck | None]:
    """Render the plan stored with `run_id` again (a new run tagged `labkit.replay_of`).

    With `check`, compare every PNG (or GIF) output with the original's, pixel by pixel.
    """
    import numpy as np

    plan = stored_plan(lab, run_id)
    result = lab.render(plan, tags={"labkit.replay_of": run_id})
    if not check:
        return result, None
    with tempfile.TemporaryDirectory() as tmp:
        original = Path(lab.tracker.client.download_artifacts(run_id, "outputs", tmp))
        old, new = _comparable(list(original.iterdir())), _comparable(result.files)
        names = [p.name for p in old]
        if names != [p.name for p in new[: len(old)]] or not old:
            raise InvalidParameter(f"Run {run_id!r} has outputs {names} but the replay wrote "
                                   f"{[p.name for p in new]}.", value=run_id,
                                   fix="replay a run whose outputs are still in its artifacts.")
        worst = 0
        for a, b in zip(old, new, strict=False):
            fa, fb = _frames(a), _frames(b)
            if len(fa) != len(fb) or any(x.shape != y.shape for x, y in zip(fa, fb, strict=True)):
                worst = 255
                continue
            worst = max(worst, max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(fa, fb,
                                                                                                      strict=True)))
    outcome = ReplayCheck(run_id, result.run_id, names, worst, worst == 0)
    lab.tracker.client.set_tag(result.run_id, "labkit.replay_check", json.dumps(outcome.to_dict()))
    return result, outcome
