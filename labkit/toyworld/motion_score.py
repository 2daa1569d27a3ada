"""The toy world's motion verdict: does a clip do what its caption says? (Scoring on given frames; no rendering.)

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

The benchmark that renders held-out motion prompts and judges them is `labkit.evals.toymotion`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
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


__all__ = ["CHECKS", "MAX_JERK_PX", "MIN_GROWTH", "MIN_TRAVEL", "jerk_px", "motion_verdict", "track"]
