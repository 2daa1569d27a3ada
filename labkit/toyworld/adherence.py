"""Toy prompt adherence: does each image show what its caption asks for? The one scorer that the toy benchmark
(`labkit eval toyworld`), the toy recipes' validation, sweep scoring and LoRA validation all use.

    verdicts = judge(images, captions)          # one `detect.verdict` per (image, caption)
    rates(verdicts)                             # {"colour": 1.0, ..., "all_correct": 0.5}

A verdict holds booleans per attribute (`colour`, `shape`, `size`, `position`, `count`, `all_correct`) and
what was expected and detected (see `labkit.toyworld.detect.verdict`); the classical detector reads the image,
so no model is involved and the same picture always gets the same verdict. numpy and PIL only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter, LabkitError
from labkit.toyworld.detect import verdict

if TYPE_CHECKING:  # pragma: no cover
    from labkit.toyworld.scenes import Scene

#: The attributes a verdict judges, in the order reports show them.
ATTRS = ("colour", "shape", "size", "position", "count", "all_correct")


def judge(images: Sequence[Any], captions: Sequence[str | Scene] | str) -> list[dict[str, Any]]:
    """The verdict on image i against caption i (one caption for all images when `captions` is a string; a
    `Scene` is taken as it is).

    InvalidParameter when the counts differ; a caption that is not a toy-world caption raises the
    parser's `LabkitError` (use `judge_toy` to skip those)."""
    images = list(images)
    caps = [captions] * len(images) if isinstance(captions, str) else list(captions)
    if len(caps) != len(images):
        raise InvalidParameter(f"{len(images)} images for {len(caps)} captions.", value=len(caps),
                               fix="pass one caption per image (or one caption for all of them).")
    return [verdict(c, im) for im, c in zip(images, caps, strict=True)]


def judge_toy(images: Sequence[Any], caption: str) -> list[dict[str, Any]] | None:
    """The verdicts on `images` against one `caption`, or None when it is not a toy-world caption (a
    validation prompt such as "a hexagon, sks style" has nothing the detector can check)."""
    try:
        return judge(images, caption)
    except LabkitError:
        return None


def rates(verdicts: Iterable[Mapping[str, Any]], attrs: Sequence[str] = ATTRS) -> dict[str, float]:
    """The share of `verdicts` right on each attribute of `attrs` (0.0 each when there are none)."""
    vs = list(verdicts)
    return {a: sum(bool(v[a]) for v in vs) / len(vs) if vs else 0.0 for a in attrs}


def both_colours(v: Mapping[str, Any]) -> bool:
    """Two-object prompts: both colours right and at least two objects found."""
    return bool(v["colour"]) and len(v["detected"]) >= 2


def score(images: Sequence[Any], captions: Sequence[str] | str, attrs: Sequence[str] = ATTRS) -> dict[str, float]:
    """`rates(judge(images, captions), attrs)`: the adherence of a set of images in one call."""
    return rates(judge(images, captions), attrs)


__all__ = ["ATTRS", "both_colours", "judge", "judge_toy", "rates", "score"]
