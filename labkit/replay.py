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


def _run(lab: Lab, run_id: str) -> Any:
    """The run `run_id` names: a full id, or the first characters of one of the experiment's runs."""
    from labkit.tracking.links import resolve_run

    try:
        return resolve_run(lab.tracker, run_id)
    except InvalidParameter as e:
        what = ("No run" if "has no run" in e.message
                else "More than one run whose id starts with")  # an id's first characters that several share
        raise InvalidParameter(f"{what} {run_id!r} in {lab.config.tracking_uri}.", value=run_id,
                               fix="copy the run id (or enough of its first characters to tell it apart) from "
                                   "`labkit generate --json`, `lab.runs()` or the MLflow UI.") from e


#: Plan fields recorded as whole numbers and as numbers in a render's params (`plan.*`, all text in MLflow).
_INTS = ("width", "height", "steps", "seed", "count", "frames", "fps")
_FLOATS = ("guidance", "strength")


def _param(lab: Lab, run: Any, key: str) -> str:
    """A param's text; one too long for MLflow is kept whole in the artifact `params/KEY.txt`."""
    value = run.data.params[key]
    if value.startswith("<") and f"see params/{key}.txt>" in value:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(lab.tracker.client.download_artifacts(run.info.run_id, f"params/{key}.txt", tmp)).read_text()
    return value


def _plan_from_params(lab: Lab, run: Any) -> Plan | None:
    """A render's plan rebuilt from its params (`plan.*`): what a render that failed before storing `plan.json`
    still holds. None when the params do not make a plan."""
    import ast

    params = {k.removeprefix("plan."): k for k in run.data.params if k.startswith("plan.")}
    if "prompt" not in params:
        return None
    data: dict[str, Any] = {}
    controller: dict[str, Any] = {}
    try:
        for name, key in params.items():
            text = _param(lab, run, key)
            if name.startswith("controller."):
                controller[name.removeprefix("controller.")] = text or None
            elif name in ("adapters", "controls"):
                data[name] = ast.literal_eval(text) if text else []
            elif name in _INTS + _FLOATS:
                data[name] = None if text == "" else (int(text) if name in _INTS else float(text))
            elif name in ("model", "image"):
                data[name] = text or None
            else:
                data[name] = text
        if controller:
            data["controller"] = controller
        return Plan.from_dict(data)
    except (ValueError, SyntaxError, TypeError, InvalidParameter):
        return None


def stored_plan(lab: Lab, run_id: str) -> Plan:
    """The plan a run stored as `plan.json` (`run_id`: the full id or its first characters). A render that failed
    before storing it gives the plan its params recorded."""
    run = _run(lab, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = lab.tracker.client.download_artifacts(run.info.run_id, "plan.json", tmp)
        except Exception as e:
            if run.data.tags.get("labkit.job") == "render":
                plan = _plan_from_params(lab, run)
                if plan is not None:
                    return plan
                raise InvalidParameter(f"Run {run_id!r} is a render ({run.info.status}) that stored no plan.json, "
                                       "and its params do not make a plan.", value=run_id,
                                       fix=f"see what happened with `labkit doctor --run {run.info.run_id}`, then "
                                           "render the plan again with labkit generate/video.") from e
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


def _original_record(outputs: Path) -> dict[str, Any] | None:
    """The record the original run embedded in its first output (PNG, or a video's sidecar), if any."""
    from labkit.errors import LabkitError
    from labkit.outputs import read_record

    for f in sorted(outputs.iterdir()) if outputs.is_dir() else ():
        if f.suffix == ".png" or f.name.endswith((".mp4.json", ".gif.json")):
            try:
                return read_record(f)
            except LabkitError:
                continue
    return None


def _sha256(path: str) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError:
        return None  # a missing file: the render names it


def _check_inputs(run_id: str, plan: Plan, record: dict[str, Any] | None) -> None:
    """Refuse to replay from input files (an init image, control images) that are not the files the original
    read: the replay would render something else and still be tagged a replay of `run_id`."""
    if not record:
        return
    recorded = [(f"plan.image {plan.image!r}", plan.image,
                 ((record.get("provenance") or {}).get("input_image") or {}).get("sha256"))]
    for i, c in enumerate(record.get("controls") or []):
        if i < len(plan.controls):
            recorded.append((f"controls[{i}] ({plan.controls[i].kind}) image {plan.controls[i].image!r}",
                             plan.controls[i].image, c.get("source_sha256")))
    for what, path, sha in recorded:
        now = _sha256(path) if path and sha else None
        if now is not None and now != sha:
            raise InvalidParameter(f"The {what} has changed since run {run_id} read it (sha256 {sha[:12]}…, now "
                                   f"{now[:12]}…): a replay would not render the same thing.", value=path,
                                   fix="put the original file back at that path, or render the new input as a new "
                                       "run (labkit generate) instead of a replay.")


def replay(lab: Lab, run_id: str, *, check: bool = False) -> tuple[Result, ReplayCheck | None]:
    """Render the plan stored with `run_id` (the full id or its first characters) again, as a new run tagged
    `labkit.replay_of` with the original's full id. Input files that changed since the original read them are
    refused. A render that failed before storing its plan replays the plan its params recorded.

    With `check`, compare every PNG (or GIF) output with the original's, pixel by pixel (the original must have
    finished: a failed run has no outputs, a stopped one partial ones).
    """
    import numpy as np

    run = _run(lab, run_id)
    run_id = run.info.run_id
    if check and run.info.status != "FINISHED":
        raise InvalidParameter(f"Run {run_id} ended {run.info.status}: its outputs (if any) are not a finished "
                               "render to compare pixels with.", value=run_id,
                               fix="replay it without --check (check=False), or check a run that finished.")
    plan = stored_plan(lab, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            original = Path(lab.tracker.client.download_artifacts(run_id, "outputs", tmp))
        except Exception:
            original = Path(tmp) / "none"
        _check_inputs(run_id, plan, _original_record(original))
        old = _comparable(list(original.iterdir())) if original.is_dir() else []
        if check and not old:
            raise InvalidParameter(f"Run {run_id} has no PNG or GIF outputs in its artifacts to compare with.",
                                   value=run_id, fix="replay it without --check, or check a run whose outputs are "
                                                     "still in its artifacts.")
        result = lab.render(plan, tags={"labkit.replay_of": run_id})
        if not check:
            return result, None
        new = _comparable(result.files)
        names = [p.name for p in old]
        if names != [p.name for p in new[: len(old)]]:
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
