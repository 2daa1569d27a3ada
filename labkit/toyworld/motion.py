"""Moving toy scenes: clips of one object that moves left, right, up or down, grows or shrinks.

A `Clip` is the ground truth of one short video: the object as it is in the first frame (shape,
colour, named size, named start position — exactly a toy-world `Obj`), the motion, and the
continuous parameters that make each frame (travel, growth, a small offset along the motion axis).
`Clip.objects()` gives one `Obj` per frame with its continuous `centre` / `scale` set, and
`render_clip` draws them with the toy renderer, so frame 0 of a clip is an ordinary toy scene — the
image an image-to-video model starts from.

Motion is uniform: translation moves the centre by the same amount every frame (zero jerk), growth
multiplies the radius by the same factor every frame. `grows` starts from a small object, `shrinks`
from a large one, so the caption's size word always describes the first frame; only the
(position, motion) pairs whose every frame stays on the canvas are ever drawn.

Captions ("a red circle moving right", "a small blue square on the left grows", "at the top, one
large green triangle sliding down") come from a small grammar with paraphrases; `parse_motion`
reads any of them back into a `MotionSpec` (size and start position are optional there).

The held-out split: a clip is held out when its (shape, colour, size, motion) combination hashes
below `HELD_OUT_PER_MILLE` (the same fixed SHA-256 rule as `captions.is_held_out`, over a key that
includes the motion). Train clips also avoid every object combination the base model's split holds
out, so `write_clip_dataset(split="train")` shows neither held-out motions nor held-out objects.

Item `i` of a dataset with seed `s` comes from its own generator, `default_rng([s, i, 7])`, so any
clip can be regenerated alone. Only numpy and Pillow; nothing is read or cached at import.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np

from labkit.errors import InvalidParameter
from labkit.toyworld.captions import HELD_OUT_PER_MILLE, caption, is_held_out
from labkit.toyworld.scenes import (
    BASE_SHAPES,
    COLOURS,
    DEFAULT_BACKGROUND,
    DEFAULT_CANVAS,
    POSITIONS,
    SHAPE_GEOMETRY,
    SIZES,
    Obj,
    Scene,
    render,
)

#: Translations (image coordinates: "up" is towards row 0) and growth.
DIRECTIONS: dict[str, tuple[float, float]] = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0),
                                              "down": (0.0, 1.0)}
GROWTH: dict[str, float] = {"grows": 1.0, "shrinks": -1.0}
MOTIONS: tuple[str, ...] = (*DIRECTIONS, *GROWTH)
#: Which first-frame size each growth motion starts from (so the size word names frame 0).
GROWTH_SIZE = {"grows": "small", "shrinks": "large"}

DEFAULT_FRAMES = 16
DEFAULT_FPS = 8
MIN_FRAMES = 4
#: Travel over the whole clip, as a fraction of the canvas, and the offset of the start along the axis.
TRAVEL = (0.22, 0.28)
OFFSET = 0.02
#: Radius factor between the first and the last frame of a growing (or, inverted, shrinking) clip.
GROWTH_FACTOR = (1.4, 1.6)
#: Every frame keeps the shape's circumcircle at least this far (fraction of the canvas) inside the edge.
MARGIN = 1.0 / 64
METADATA_FILE = "metadata.jsonl"
DEFAULT_AUTHOR = "labkit toyworld (procedurally generated)"
CLIP_FORMATS = ("png", "gif")


def _check(kind: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise InvalidParameter(f"Unknown {kind} {value!r}.", value=value,
                               fix=f"Use one of: {', '.join(map(str, allowed))}.")


def _check_frames(frames: int) -> None:
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < MIN_FRAMES:
        raise InvalidParameter(f"frames={frames!r} is too few for a clip.", value=frames,
                               fix=f"Use an integer >= {MIN_FRAMES} (the motion model is trained on {DEFAULT_FRAMES}).")


# --- clips ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One moving object: its first frame (`obj`), the `motion`, and the continuous parameters.

    `travel` is the distance moved over the clip (fraction of the canvas) for a translation;
    `growth` the radius factor between first and last frame for grows / shrinks (> 1 either way);
    `offset` shifts the start along the motion axis (fraction of the canvas).
    """

    obj: Obj
    motion: str
    frames: int = DEFAULT_FRAMES
    travel: float = 0.25
    growth: float = 1.5
    offset: float = 0.0
    background: str = DEFAULT_BACKGROUND

    def __post_init__(self) -> None:
        _check("motion", self.motion, MOTIONS)
        _check_frames(self.frames)
        if not 0.0 <= self.travel < 1.0:
            raise InvalidParameter(f"travel={self.travel!r} is outside [0, 1).", value=self.travel,
                                   fix="Give the distance as a fraction of the canvas, e.g. 0.25.")
        if not self.growth >= 1.0:
            raise InvalidParameter(f"growth={self.growth!r} is below 1.", value=self.growth,
                                   fix="Give the radius factor between first and last frame, e.g. 1.5 (for both "
                                       "grows and shrinks).")

    def xy_radius(self, i: int) -> tuple[tuple[float, float], float]:
        """Centre (x, y) and radius of frame `i`, fractions of the canvas."""
        u = i / (self.frames - 1)
        x0, y0 = POSITIONS[self.obj.position]
        r0 = SIZES[self.obj.size]
        if self.motion in DIRECTIONS:
            dx, dy = DIRECTIONS[self.motion]
            start = (x0 + dx * self.offset, y0 + dy * self.offset)
            return (start[0] + dx * self.travel * u, start[1] + dy * self.travel * u), r0
        return (x0, y0), r0 * self.growth ** (GROWTH[self.motion] * u)

    def objects(self) -> list[Obj]:
        """One `Obj` per frame, with `centre` and `scale` set (named attributes stay those of frame 0)."""
        out = []
        for i in range(self.frames):
            xy, r = self.xy_radius(i)
            out.append(replace(self.obj, centre=(float(xy[0]), float(xy[1])), scale=float(r)))
        return out

    def scenes(self) -> list[Scene]:
        return [Scene((o,), self.background) for o in self.objects()]

    @property
    def spec(self) -> MotionSpec:
        """What a full caption of this clip says."""
        return MotionSpec(self.obj.shape, self.obj.colour, self.motion, self.obj.size, self.obj.position)

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.obj.to_dict(), "motion": self.motion, "frames": self.frames,
                "travel": float(self.travel), "growth": float(self.growth), "offset": float(self.offset),
                "background": self.background}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clip:
        return cls(Obj.from_dict(d["object"]), d["motion"], int(d["frames"]), float(d["travel"]),
                   float(d["growth"]), float(d["offset"]), d.get("background", DEFAULT_BACKGROUND))


def render_clip(clip: Clip, size: int = DEFAULT_CANVAS) -> np.ndarray:
    """The clip's frames as a (frames, size, size, 3) uint8 array."""
    return np.stack([render(s, size=size) for s in clip.scenes()])


def fits(obj: Obj, motion: str, margin: float = MARGIN) -> bool:
    """Whether every clip of `obj` doing `motion` stays on the canvas, whatever travel, growth and
    offset the sampler draws (growth motions also need their start size: small grows, large shrinks)."""
    if motion in GROWTH and obj.size != GROWTH_SIZE[motion]:
        return False
    reach = SHAPE_GEOMETRY[obj.shape].circumradius
    worst = [Clip(obj, motion, MIN_FRAMES, travel=TRAVEL[1], growth=GROWTH_FACTOR[1], offset=o)
             for o in (-OFFSET, OFFSET)]
    for clip in worst:
        for i in (0, clip.frames - 1):
            (x, y), r = clip.xy_radius(i)
            ext = reach * r + margin
            if min(x, y) < ext or max(x, y) > 1.0 - ext:
                return False
    return True


def motion_key(shape: str, colour: str, size: str, motion: str) -> str:
    return f"motion|{shape}|{colour}|{size}|{motion}"


def is_held_out_motion(clip_or_spec: Clip | MotionSpec) -> bool:
    """Whether a clip's (shape, colour, size, motion) combination is held out (a fixed hash; see the
    module docstring). A spec without a size is held out when either size's combination is."""
    if isinstance(clip_or_spec, Clip):
        o = clip_or_spec.obj
        shape, colour, sizes, motion = o.shape, o.colour, (o.size,), clip_or_spec.motion
    else:
        s = clip_or_spec
        shape, colour, motion = s.shape, s.colour, s.motion
        sizes = (s.size,) if s.size else (GROWTH_SIZE[motion],) if motion in GROWTH else tuple(SIZES)
    return any(int.from_bytes(hashlib.sha256(motion_key(shape, colour, z, motion).encode()).digest()[:8], "big")
               % 1000 < HELD_OUT_PER_MILLE for z in sizes)


def clip_split(clip: Clip) -> str:
    """"heldout" when the motion combination is held out; "train" when neither it nor the object's
    base combination is; "base-heldout" for the rest (kept out of training, not used for evaluation)."""
    if is_held_out_motion(clip):
        return "heldout"
    return "base-heldout" if is_held_out(clip.obj) else "train"


def combinations(split: str = "train", shapes: Sequence[str] = BASE_SHAPES,
                 motions: Sequence[str] = MOTIONS) -> list[tuple[Obj, str]]:
    """Every (first-frame object, motion) pair of `split` that fits the canvas, in a fixed order."""
    if split not in ("train", "heldout"):
        raise InvalidParameter(f"Unknown split {split!r}.", value=split, fix="Use 'train' or 'heldout'.")
    for s in shapes:
        _check("shape", s, tuple(SHAPE_GEOMETRY))
    for m in motions:
        _check("motion", m, MOTIONS)
    return list(_combinations(split, tuple(shapes), tuple(motions)))


@lru_cache(maxsize=32)
def _combinations(split: str, shapes: tuple[str, ...], motions: tuple[str, ...]) -> tuple[tuple[Obj, str], ...]:
    out = []
    for sh in shapes:
        for c in COLOURS:
            for sz in SIZES:
                for p in POSITIONS:
                    o = Obj(sh, c, sz, p)
                    for m in motions:
                        if fits(o, m) and clip_split(Clip(o, m, MIN_FRAMES)) == split:
                            out.append((o, m))
    return tuple(out)


def sample_clip(rng: np.random.Generator, split: str = "train", frames: int = DEFAULT_FRAMES,
                shapes: Sequence[str] = BASE_SHAPES, motions: Sequence[str] = MOTIONS,
                backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,)) -> Clip:
    """A random clip of `split`, deterministic in `rng`: a uniform (object, motion) combination, then
    travel, growth and start offset uniform in their ranges."""
    _check_frames(frames)
    pool = combinations(split, shapes, motions)  # validates the names; cached per argument set
    if not pool:
        raise InvalidParameter(f"No {split} combination is left for shapes {list(shapes)} and motions "
                               f"{list(motions)}.", value=motions, fix="Allow more shapes or motions.")
    obj, motion = pool[int(rng.integers(len(pool)))]
    travel = float(rng.uniform(*TRAVEL))
    growth = float(rng.uniform(*GROWTH_FACTOR))
    offset = float(rng.uniform(-OFFSET, OFFSET)) if motion in DIRECTIONS else 0.0
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    return Clip(obj, motion, frames, travel, growth, offset, background)


# --- captions ---------------------------------------------------------------------------------

# Verb phrases: {d} is a direction word. Growth has its own phrases.
_MOVE_VERBS = ("moving {d}", "moves {d}", "sliding {d}", "going {d}")
_GROWTH_VERBS = {"grows": ("growing", "grows", "getting bigger"),
                 "shrinks": ("shrinking", "shrinks", "getting smaller")}
_ON = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
       "centre": "in the centre"}
#: Motion caption templates: {o} the object words, {on} the start position phrase, {v} the verb phrase.
MOTION_TEMPLATES: tuple[str, ...] = (
    "a {o} {v}",
    "a {o} {on} {v}",
    "{on}, a {o} {v}",
    "one {o} {v}",
    "a {o} {on}, {v}",
)


def motion_caption(clip: Clip, rng: np.random.Generator | None = None, template: int | None = None,
                   verb: int | None = None, with_size: bool | None = None) -> str:
    """A caption for `clip`, choosing a paraphrase with `rng` (or the first of each choice without)."""
    def pick(n: int, given: int | None) -> int:
        if given is not None:
            if not 0 <= given < n:
                raise InvalidParameter(f"Choice {given} is out of range.", value=given, fix=f"Use 0..{n - 1}.")
            return given
        return int(rng.integers(n)) if rng is not None else 0

    t = pick(len(MOTION_TEMPLATES), template)
    verbs = _GROWTH_VERBS[clip.motion] if clip.motion in GROWTH else tuple(v.format(d=clip.motion)
                                                                           for v in _MOVE_VERBS)
    v = verbs[pick(len(verbs), verb)]
    if with_size is None:
        with_size = bool(rng.integers(4)) if rng is not None else True  # three in four name the size
    o = clip.obj
    words = f"{o.size} {o.colour} {o.shape}" if with_size else f"{o.colour} {o.shape}"
    return MOTION_TEMPLATES[t].format(o=words, on=_ON[o.position], v=v)


@dataclass(frozen=True)
class MotionSpec:
    """What a motion caption asks for: shape, colour and motion always; size and start position when said."""

    shape: str
    colour: str
    motion: str
    size: str | None = None
    position: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "colour": self.colour, "motion": self.motion, "size": self.size,
                "position": self.position}


_SYNONYMS = {"center": "centre", "middle": "centre", "magenta": "purple", "violet": "purple",
             "big": "large", "tiny": "small", "little": "small"}
_DIR_WORDS = {"left": "left", "right": "right", "up": "up", "upwards": "up", "upward": "up", "down": "down",
              "downwards": "down", "downward": "down"}
_MOVE_RE = re.compile(r"\b(?:moving|moves|move|sliding|slides|slide|going|goes|go|drifting|drifts|heading|heads"
                      r"|travelling|traveling|travels)\s+(?:to\s+the\s+|towards\s+the\s+|to\s+)?"
                      r"(left|right|upwards|upward|up|downwards|downward|down)\b")
_GROW_RE = re.compile(r"\b(grows|growing|grow|getting\s+bigger|gets\s+bigger|expanding|expands|getting\s+larger)\b")
_SHRINK_RE = re.compile(r"\b(shrinks|shrinking|shrink|getting\s+smaller|gets\s+smaller|contracting|contracts)\b")
_VOCAB: dict[str, tuple[str, ...]] = {"shape": tuple(SHAPE_GEOMETRY), "colour": tuple(COLOURS), "size": tuple(SIZES),
                                      "position": tuple(POSITIONS)}


def parse_motion(text: str) -> MotionSpec:
    """Read back what a motion caption asks for. Raises `InvalidParameter` naming what is missing
    or ambiguous (no motion, two motions, no shape or colour, two of any attribute)."""
    low = text.lower()
    found: list[tuple[str, tuple[int, int]]] = [(_DIR_WORDS[m.group(1)], m.span()) for m in _MOVE_RE.finditer(low)]
    found += [("grows", m.span()) for m in _GROW_RE.finditer(low)]
    found += [("shrinks", m.span()) for m in _SHRINK_RE.finditer(low)]
    if len({m for m, _ in found}) != 1:
        what = "no motion" if not found else f"several motions ({', '.join(sorted({m for m, _ in found}))})"
        raise InvalidParameter(
            f"Cannot parse motion caption {text!r}: it names {what}.", value=text,
            fix="Say one motion, e.g. 'moving left/right/up/down', 'grows' or 'shrinks'.")
    motion = found[0][0]
    rest = list(low)
    for _, (a, b) in found:
        rest[a:b] = " " * (b - a)
    words = re.findall(r"[a-z]+", "".join(rest))
    got: dict[str, list[str]] = {k: [] for k in _VOCAB}
    for w in words:
        w = _SYNONYMS.get(w, w)
        for k, vocab in _VOCAB.items():
            if w in vocab or (k == "shape" and w.endswith("s") and w[:-1] in vocab):
                got[k].append(w if w in vocab else w[:-1])
    for k in ("shape", "colour"):
        if len(got[k]) != 1:
            raise InvalidParameter(
                f"Cannot parse motion caption {text!r}: it has {len(got[k])} {k} words.", value=text,
                fix=f"Name exactly one {k}, from: {', '.join(_VOCAB[k])}.")
    for k in ("size", "position"):
        if len(got[k]) > 1:
            raise InvalidParameter(f"Cannot parse motion caption {text!r}: it has {len(got[k])} {k} words.",
                                   value=text, fix=f"Name at most one {k}.")
    return MotionSpec(got["shape"][0], got["colour"][0], motion, (got["size"] or [None])[0],
                      (got["position"] or [None])[0])


#: Where an object starts when the caption does not say: the side it moves away from (growth: the centre).
START_POSITION = {"left": "right", "right": "left", "up": "bottom", "down": "top"}


def start_object(spec: MotionSpec) -> Obj:
    """The object a motion spec starts from: its named size and position, or the defaults (`GROWTH_SIZE`,
    else small; `START_POSITION`, else the centre)."""
    return Obj(spec.shape, spec.colour, spec.size or GROWTH_SIZE.get(spec.motion, "small"),
               spec.position or START_POSITION.get(spec.motion, "centre"))


def still_prompt(text: str) -> str:
    """The toy image caption of a motion caption's first frame ("a small blue square at the bottom" for
    "a blue square moving up"): what the toy text-to-image model draws as the keyframe of text-to-video.
    `InvalidParameter` (from `parse_motion`) when `text` is not a motion caption."""
    return caption(Scene((start_object(parse_motion(text)),)), template=0)


# --- datasets ---------------------------------------------------------------------------------


def make_clip_item(seed: int, index: int, split: str = "train", frames: int = DEFAULT_FRAMES,
                   shapes: Sequence[str] = BASE_SHAPES, motions: Sequence[str] = MOTIONS) -> tuple[Clip, str]:
    """Clip and caption of item `index` of the clip dataset with `seed` (no rendering)."""
    if index < 0:
        raise InvalidParameter(f"Item index {index} is negative.", value=index, fix="Use an index >= 0.")
    rng = np.random.default_rng([int(seed), int(index), 7])  # 7: a stream apart from the image datasets'
    clip = sample_clip(rng, split, frames, shapes, motions)
    return clip, motion_caption(clip, rng)


def motion_prompts(split: str = "heldout", n: int = 60, seed: int = 0, frames: int = DEFAULT_FRAMES,
                   motions: Sequence[str] = MOTIONS) -> list[tuple[str, Clip]]:
    """`n` (caption, ground-truth clip) pairs of `split`, deterministic in `seed`."""
    if n < 0:
        raise InvalidParameter(f"n={n} is negative.", value=n, fix="Ask for zero or more prompts.")
    return [(t, c) for c, t in (make_clip_item(seed, i, split, frames, motions=motions) for i in range(n))]


def iter_clips(seed: int = 0, split: str = "train", n: int | None = None, start: int = 0,
               frames: int = DEFAULT_FRAMES, size: int = DEFAULT_CANVAS) -> Iterator[tuple[np.ndarray, str]]:
    """Yield (frames, caption): uint8 (frames, size, size, 3) arrays for items `start`, `start + 1`, ….
    Endless when `n` is None."""
    if n is not None and n < 0:
        raise InvalidParameter(f"n={n} is negative.", value=n, fix="Pass n >= 0, or None for an endless stream.")
    for i in count(start) if n is None else range(start, start + n):
        clip, text = make_clip_item(seed, i, split, frames)
        yield render_clip(clip, size), text


def strip(frames: np.ndarray) -> np.ndarray:
    """Frames side by side, left to right: (H, frames·W, 3)."""
    return np.concatenate(list(frames), axis=1)


def unstrip(image: np.ndarray, frames: int) -> np.ndarray:
    """Inverse of `strip`: (frames, H, W, 3) from an (H, frames·W, 3) strip."""
    h, w = image.shape[:2]
    if w % frames:
        raise InvalidParameter(f"A strip {w} px wide does not split into {frames} frames.", value=frames,
                               fix="Pass the frame count the strip was written with (metadata 'frames').")
    return np.stack(np.split(np.asarray(image)[..., :3], frames, axis=1))


def write_clip_dataset(folder: str | Path, n: int, seed: int = 0, split: str = "train", frames: int = DEFAULT_FRAMES,
                       fps: int = DEFAULT_FPS, fmt: str = "png", licence: str = "CC0-1.0",
                       size: int = DEFAULT_CANVAS, author: str = DEFAULT_AUTHOR, overwrite: bool = False) -> Path:
    """Write `n` clips and a `metadata.jsonl`; return the metadata path.

    `fmt="png"`: each clip is one lossless PNG strip (frames left to right; `unstrip` splits it), which
    any imagefolder reader opens. `fmt="gif"`: an animated GIF at `fps`. Each JSON line has `file_name`,
    `text`, `licence`, `source`, `author`, `frames`, `fps`, `format` and `clip` (the ground truth), as
    `toyworld.data.write_dataset` does for images.
    """
    _check("format", fmt, CLIP_FORMATS)
    if not 1 <= fps <= 60:
        raise InvalidParameter(f"fps={fps} is out of range.", value=fps, fix="Use 1..60.")
    from PIL import Image

    from labkit.toyworld.data import prepare_folder

    if n >= 1:  # a bad frame count, split or size is refused before the folder exists
        render_clip(make_clip_item(seed, 0, split, frames)[0], size)
    out, meta = prepare_folder(folder, n, licence, overwrite, item="clip")
    lines = []
    for i in range(n):
        clip, text = make_clip_item(seed, i, split, frames)
        arr = render_clip(clip, size)
        name = f"{i:06d}.{fmt}"
        if fmt == "png":
            Image.fromarray(strip(arr)).save(out / name)
        else:
            imgs = [Image.fromarray(f) for f in arr]
            imgs[0].save(out / name, save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0)
        lines.append(json.dumps({
            "file_name": name, "text": text, "licence": licence,
            "source": f"labkit toyworld motion seed={seed} item={i} split={split}", "author": author,
            "frames": frames, "fps": fps, "format": fmt, "clip": clip.to_dict(),
        }))
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")  # last and whole, as in toyworld.data
    return meta


def read_clip(folder: str | Path, record: dict[str, Any]) -> np.ndarray:
    """The frames of one dataset item: (frames, H, W, 3) uint8."""
    from PIL import Image, ImageSequence

    path = Path(folder) / record["file_name"]
    with Image.open(path) as im:
        if record.get("format", "png") == "gif":
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
        return unstrip(np.asarray(im.convert("RGB")), int(record["frames"]))


__all__ = [
    "CLIP_FORMATS", "DEFAULT_FPS", "DEFAULT_FRAMES", "DIRECTIONS", "GROWTH", "GROWTH_SIZE", "MOTIONS",
    "MOTION_TEMPLATES", "Clip", "MotionSpec", "clip_split", "combinations", "fits", "is_held_out_motion",
    "iter_clips", "make_clip_item", "motion_caption", "motion_prompts", "parse_motion", "read_clip",
    "render_clip", "sample_clip", "START_POSITION", "start_object", "still_prompt", "strip", "unstrip",
    "write_clip_dataset",
]
