"""The toy world's motion benchmark: does a clip do what its caption says?

The classical detector (`toyworld.detect`) reads every frame; a tracker follows the object from
frame to frame (in frame 0 the detection that matches the asked colour and shape, afterwards the
detection nearest to where it was). Each clip then gets:

- direction: for a translation, the object's displacement from first to last frame along the asked
  direction is at least `MIN_TRAVEL` of the canvas and larger than its sideways drift; for grows /
  shrinks, its radius changed by at least `MIN_GROWTH` the right way;
- identity: the object is found in every frame with the asked colour and shape;
- count: exactly one object in every frame;
- smoothness: the jerk of the centre track (mean length of the third difference of the centre, in
  pixels of a 64² frame); smooth when at most `MAX_JERK_PX` (ground-truth clips: about 0);
- start (when the caption names a size or start position, or for image-to-video): frame 0 has them.

`evaluate_motion` renders held-out motion prompts (combinations the motion model never trained on)
and logs one MLflow run with the rates, a table of every clip and the failing clips, in the shape of
`toyworld.evaluate`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.errors import InvalidParameter
from labkit.toyworld.evaluate import ReportRows

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.toyworld.detect import Detection
    from labkit.toyworld.motion import Clip, MotionSpec

#: A translation must move the object at least this far (fraction of the canvas) the asked way.
MIN_TRAVEL = 0.1
#: grows / shrinks must change the radius by at least this factor.
MIN_GROWTH = 1.2
#: A track is smooth when its mean jerk is at most this many pixels (of a 64² frame).
MAX_JERK_PX = 1.0
CHECKS = ("direction", "identity", "count", "smooth", "start", "all_correct")


def _frames_array(frames: Any) -> list[np.ndarray]:
    """A list of (H, W, 3) arrays from PIL frames, arrays, or a (F, H, W, 3) array."""
    out = [np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in frames]
    if len(out) < 2:
        raise InvalidParameter(f"A clip of {len(out)} frame(s) has no motion to judge.", value=len(out),
                               fix="Pass at least two frames.")
    return out


def track(frames: Any, colour: str | None = None, shape: str | None = None
          ) -> tuple[list[Detection | None], list[int]]:
    """Follow one object through `frames`: (the tracked detection of each frame or None, the number
    of detections in each frame). Frame 0 takes the detection that best matches `colour` and `shape`
    (then the largest); later frames the detection nearest to the last tracked centre."""
    from labkit.toyworld.detect import detect

    tracked: list[Detection | None] = []
    counts: list[int] = []
    last: tuple[float, float] | None = None
    for arr in _frames_array(frames):
        found = detect(arr)
        counts.append(len(found))
        if not found:
            tracked.append(None)
            continue
        if last is None:
            best = max(found, key=lambda d: ((d.colour == colour) + (d.shape == shape), d.area))
        else:
            best = min(found, key=lambda d: math.dist(d.xy, last))
        tracked.append(best)
        last = best.xy
    return tracked, counts


def jerk_px(xy: Sequence[tuple[float, float]], canvas: int = 64) -> float:
    """Mean length of the third difference of a centre track (fractions), in pixels of a `canvas`² frame."""
    a = np.asarray(xy, dtype=np.float64) * canvas
    if len(a) < 4:
        return 0.0
    d3 = a[3:] - 3 * a[2:-1] + 3 * a[1:-2] - a[:-3]
    return float(np.linalg.norm(d3, axis=1).mean())


def motion_verdict(expected: MotionSpec | Clip | str, frames: Any) -> dict[str, Any]:
    """Judge a clip against what was asked: a `MotionSpec`, a ground-truth `Clip` (its full spec,
    start position included) or a caption. Returns booleans for `CHECKS` plus measurements:
    `travel` (along the asked direction, fraction of the canvas), `drift` (sideways), `growth`
    (last / first radius), `jerk_px`, `found` (frames with the object) and `track` ([x, y, r] per frame)."""
    from labkit.toyworld.motion import DIRECTIONS, Clip, parse_motion

    if isinstance(expected, Clip):
        spec = expected.spec
    else:
        spec = parse_motion(expected) if isinstance(expected, str) else expected
    arrays = _frames_array(frames)
    width = arrays[0].shape[1]
    tracked, counts = track(arrays, spec.colour, spec.shape)
    seen = [d for d in tracked if d is not None]
    out: dict[str, Any] = {"found": len(seen), "frames": len(tracked)}
    out["count"] = all(c == 1 for c in counts)
    out["identity"] = len(seen) == len(tracked) and all(d.colour == spec.colour and d.shape == spec.shape
                                                        for d in seen)
    travel = drift = 0.0
    growth = 1.0
    direction = False
    if len(seen) >= 2:
        (x0, y0), (x1, y1) = seen[0].xy, seen[-1].xy
        growth = seen[-1].radius / max(seen[0].radius, 1e-6)
        if spec.motion in DIRECTIONS:
            ux, uy = DIRECTIONS[spec.motion]
            travel = (x1 - x0) * ux + (y1 - y0) * uy
            drift = abs((x1 - x0) * uy - (y1 - y0) * ux)
            direction = travel >= MIN_TRAVEL and travel > drift
        else:
            direction = growth >= MIN_GROWTH if spec.motion == "grows" else growth <= 1.0 / MIN_GROWTH
    out["direction"] = bool(direction)
    # A track with a gap has no defined jerk: it counts as not smooth.
    jerk = jerk_px([d.xy for d in seen]) if len(seen) == len(tracked) else math.inf
    out["jerk_px"] = jerk
    out["smooth"] = jerk <= MAX_JERK_PX
    first = tracked[0]
    out["start"] = first is not None and (spec.size is None or first.size == spec.size) and (
        spec.position is None or first.position == spec.position)
    out["all_correct"] = bool(out["direction"] and out["identity"] and out["count"] and out["smooth"]
                              and out["start"])
    out.update(travel=float(travel), drift=float(drift), growth=float(growth),
               track=[[round(d.xy[0], 4), round(d.xy[1], 4), round(d.radius / width, 4)] if d else None
                      for d in tracked])
    return out


@dataclass
class MotionReport(ReportRows):
    """Rates of each check over held-out motion prompts, and every clip's row."""

    model: str
    n: int
    seed: int
    steps: int
    frames: int
    mode: str
    rates: dict[str, float]
    by_motion: dict[str, float]
    mean_jerk_px: float
    seconds_per_clip: float
    run_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


    def lines(self) -> list[str]:
        return [
            f"toymotion adherence of {self.model} ({self.n} held-out {self.mode} prompts, seed {self.seed}, "
            f"{self.steps} steps, {self.frames} frames)",
            ", ".join(f"{k} {v:.1%}" for k, v in self.rates.items()),
            "direction by motion: " + ", ".join(f"{k} {v:.0%}" for k, v in self.by_motion.items()),
            f"mean jerk {self.mean_jerk_px:.2f} px; {self.seconds_per_clip:.2f} s per clip; MLflow run {self.run_id}",
        ]


def clip_sheet(clips: Sequence[Sequence[Any]], captions: Sequence[str], max_frames: int = 16):
    """One row per clip (frames left to right, at most `max_frames`), its caption above it."""
    from PIL import Image, ImageDraw

    tile, label = 64, 12
    cols = min(max_frames, max(len(c) for c in clips))
    sheet = Image.new("RGB", (cols * tile, len(clips) * (tile + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (clip, text) in enumerate(zip(clips, captions, strict=True)):
        y = r * (tile + label)
        draw.text((2, y), text[:cols * 10], fill="black")
        for c, frame in enumerate(list(clip)[:cols]):
            img = frame if hasattr(frame, "convert") else Image.fromarray(np.asarray(frame))
            sheet.paste(img.convert("RGB").resize((tile, tile)), (c * tile, y + label))
    return sheet


def evaluate_motion(lab: Lab, *, model: str = "toyworld-motion", n: int = 60, seed: int = 0, steps: int | None = None,
                    guidance: float | None = None, frames: int = 16, image_to_video: bool = False,
                    config: str | None = None) -> MotionReport:
    """Render `n` held-out motion prompts with `model` and judge every clip; one MLflow run.

    Prompt i renders with seed `seed + i`; `steps` and `guidance` default to the model's (as in
    `labkit video`). With `image_to_video`, each clip starts from the ground
    truth's first frame (the toy image of the object at its start) and `start` checks that frame 0 kept
    the object's colour, shape, size and position. Text-to-video renders as `labkit video` does: from
    noise, or, for a motion model that names a keyframe model, from the frame that model draws of the
    caption's still prompt (same seed).
    """
    from labkit.hardware import choose
    from labkit.pipelines.calls import run_img2vid, run_txt2vid
    from labkit.plan import Plan
    from labkit.render import keyframe_drawer, keyframe_for, load_cached, prepare
    from labkit.toyworld.motion import MOTIONS, motion_prompts, render_clip

    if n < 1:
        raise InvalidParameter(f"n={n}: the benchmark needs at least one prompt.", value=n, fix="Pass n >= 1.")
    # 1. the plan (validated against the model), the prompts, the run
    plan, ref = prepare(lab, Plan(prompt="a red circle moving right", model=model, modality="video", steps=steps,
                                  seed=seed, width=64, height=64, frames=frames, fps=8, guidance=guidance), config)
    cases = motion_prompts("heldout", n=n, seed=seed, frames=frames)
    keyframe = None if image_to_video else keyframe_for(ref)
    mode = "image-to-video" if image_to_video else "text-to-video" + (f" (keyframe: {keyframe})" if keyframe else "")
    params = {"job": "eval-toymotion", "model": plan.model, "n": n, "seed": seed, "steps": plan.steps,
              "guidance": plan.guidance, "frames": frames, "mode": mode, "size": f"{plan.width}x{plan.height}"}
    with lab.run("eval toymotion", params=params, tags={"labkit.job": "eval-toymotion"}) as run:
        loaded, _ = load_cached(lab, ref, choose(ref.family, lab.hardware))
        # text-to-video as `labkit video` renders it: the keyframe model draws frame 0
        draw = keyframe_drawer(lab, ref, steps=plan.steps, width=64, height=64) if keyframe else None
        rows, clips = [], []
        start = time.perf_counter()
        # 2. render and judge every prompt
        for i, (prompt, truth) in enumerate(cases):
            if image_to_video or keyframe:
                from PIL import Image

                if image_to_video:
                    first = Image.fromarray(render_clip(truth)[0])
                else:
                    first = draw(prompt, seed + i)
                (clip,) = run_img2vid(loaded.pipe, image=first, prompt=prompt, negative_prompt="", steps=plan.steps,
                                      guidance=plan.guidance, width=64, height=64, frames=frames, fps=plan.fps,
                                      seed=seed + i, count=1, decode_chunk_size=0, on_step=lambda _: False)
                v = motion_verdict(truth if image_to_video else prompt, clip)
            else:
                (clip,) = run_txt2vid(loaded.pipe, prompt=prompt, negative_prompt="", steps=plan.steps,
                                      guidance=plan.guidance, width=64, height=64, frames=frames, seed=seed + i,
                                      count=1, on_step=lambda _: False)
                v = motion_verdict(prompt, clip)
            rows.append({"prompt": prompt, "motion": truth.motion, "seed": seed + i,
                         **{k: bool(v[k]) for k in CHECKS}, "travel": round(v["travel"], 4),
                         "growth": round(v["growth"], 3), "jerk_px": round(v["jerk_px"], 3)
                         if math.isfinite(v["jerk_px"]) else None, "found": v["found"]})
            clips.append(clip)
        spent = time.perf_counter() - start
        # 3. figures, table, failing clips
        jerks = [r["jerk_px"] for r in rows if r["jerk_px"] is not None]
        report = MotionReport(
            model=plan.model, n=n, seed=seed, steps=plan.steps, frames=frames, mode=mode,
            rates={k: statistics.fmean(r[k] for r in rows) for k in CHECKS} | (
                # issue 10's image-to-video check: frame 0 kept the given object and it moved as asked
                {"kept_and_moved": statistics.fmean(r["start"] and r["direction"] for r in rows)}
                if image_to_video else {}),
            by_motion={m: statistics.fmean(r["direction"] for r in rows if r["motion"] == m)
                       for m in MOTIONS if any(r["motion"] == m for r in rows)},
            mean_jerk_px=statistics.fmean(jerks) if jerks else math.inf,
            seconds_per_clip=spent / len(rows), run_id=run.run_id, rows=rows)
        run.log_metrics({**{f"motion.{k}": v for k, v in report.rates.items()},
                         **{f"direction.{k}": v for k, v in report.by_motion.items()},
                         "mean_jerk_px": report.mean_jerk_px if jerks else -1.0,
                         "seconds_per_clip": report.seconds_per_clip})
        run.log_dict({"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}, "verdicts.json")
        failing = [(c, r["prompt"]) for c, r in zip(clips, rows, strict=True) if not r["all_correct"]]
        if failing:
            import tempfile
            from pathlib import Path

            from labkit.outputs import write_video

            with tempfile.TemporaryDirectory() as tmp:
                sheet = Path(tmp) / "failures.png"
                clip_sheet([c for c, _ in failing[:32]], [p for _, p in failing[:32]]).save(sheet)
                run.log_artifact(sheet)
                gifs = Path(tmp) / "failures"
                gifs.mkdir()
                for k, (c, _) in enumerate(failing[:16]):
                    write_video(_pil(c), gifs / f"{k:02d}", 8, {"prompt": failing[k][1], "run_id": run.run_id},
                                formats=("gif",), sidecar=False)
                run.log_artifact(gifs, "failures")
        run.log_text("\n".join(report.lines()) + "\n", "summary.txt")
    return report


def _pil(frames: Sequence[Any]) -> list[Any]:
    from PIL import Image

    return [f if hasattr(f, "convert") else Image.fromarray(np.asarray(f)) for f in frames]


__all__ = ["CHECKS", "MAX_JERK_PX", "MIN_GROWTH", "MIN_TRAVEL", "MotionReport", "clip_sheet", "evaluate_motion",
           "jerk_px", "motion_verdict", "track"]
