"""Captions for toy-world scenes: a small grammar with paraphrases, its parser, and a fixed split.

Every caption names, for each object, exactly one shape, one colour, one size and one position
word; paraphrases differ in word order, articles and punctuation::

    a small red circle on the left
    left: one small red circle
    a red circle, small, at the left
    one large blue square in the centre
    on the left, a small red circle
    small red circle, left

Two-object captions join two phrases of the same template ("a small red circle on the left and a
large blue square on the right"; "left: one small red circle; right: one large blue square"), in
either order. `parse` inverts every template: it splits a caption into one clause per object and
reads the four attribute words of each clause, so it also understands word orders the templates
never produce.

The held-out split
------------------
`is_held_out(obj)` is fixed by a hash, not by a random draw: the SHA-256 of
``"shape|colour|size|position"``, read as an integer, modulo 1000, is held out when below 150
(about 15 % of combinations). The split therefore never changes between runs, machines or
Python versions, and a model trained on ``split="train"`` data never saw a held-out combination —
even though it saw each of its words in other combinations. A scene belongs to the train split
when none of its objects is held out, and to the held-out split when all of them are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from labkit.errors import InvalidParameter
from labkit.toyworld.scenes import (
    ALL_SHAPES,
    BASE_SHAPES,
    COLOURS,
    DEFAULT_BACKGROUND,
    POSITIONS,
    SIZES,
    Obj,
    Scene,
    sample_scene,
)

HELD_OUT_PER_MILLE = 150
SPLITS = ("train", "heldout")

# How each position is said after a preposition; "at the left" is a paraphrase of "on the left".
_ON = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
       "centre": "in the centre"}
_AT = {p: f"at the {p}" for p in POSITIONS}

# One object phrase per template. Keys: s=size, c=colour, h=shape, p=position word,
# on=prepositional phrase ("on the left"), at="at the left".
OBJECT_TEMPLATES: tuple[str, ...] = (
    "a {s} {c} {h} {on}",
    "{p}: one {s} {c} {h}",
    "a {c} {h}, {s}, {at}",
    "one {s} {c} {h} {on}",
    "{on}, a {s} {c} {h}",
    "{s} {c} {h}, {p}",
)
# How two phrases of the same template are joined; ";" where a phrase already contains a comma
# that would make "and" ambiguous to a reader.
_JOINERS: tuple[str, ...] = (" and ", "; ", ", and ", " and ", "; ", "; ")

# Words the parser accepts beyond the canonical ones (users type "center"; "big" means large).
_SYNONYMS: dict[str, str] = {
    "center": "centre", "middle": "centre", "magenta": "purple", "violet": "purple",
    "big": "large", "tiny": "small", "little": "small",
}


def _phrase(obj: Obj, template: int) -> str:
    return OBJECT_TEMPLATES[template].format(
        s=obj.size, c=obj.colour, h=obj.shape, p=obj.position, on=_ON[obj.position], at=_AT[obj.position]
    )


def caption(scene: Scene, rng: np.random.Generator | None = None, template: int | None = None,
            reverse: bool | None = None) -> str:
    """Write a caption for `scene`, choosing a paraphrase with `rng`.

    `template` (an index into `OBJECT_TEMPLATES`) and `reverse` (mention two objects in reverse
    canonical order) fix the choices instead; with neither `rng` nor overrides the first template
    is used in canonical order. The background is not mentioned.
    """
    if template is None:
        template = int(rng.integers(len(OBJECT_TEMPLATES))) if rng is not None else 0
    if not 0 <= template < len(OBJECT_TEMPLATES):
        raise InvalidParameter(f"Caption template {template} does not exist.", value=template,
                               fix=f"Use 0..{len(OBJECT_TEMPLATES) - 1}.")
    objs = list(scene.canonical().objects)
    if reverse is None:
        reverse = bool(rng.integers(2)) if rng is not None and len(objs) > 1 else False
    if reverse:
        objs.reverse()
    return _JOINERS[template].join(_phrase(o, template) for o in objs)


_VOCAB: dict[str, dict[str, str]] = {
    "shape": {s: s for s in ALL_SHAPES},
    "colour": {c: c for c in COLOURS},
    "size": {s: s for s in SIZES},
    "position": {p: p for p in POSITIONS},
}
for _word, _canon in _SYNONYMS.items():
    for _table in _VOCAB.values():
        if _canon in _table:
            _table[_word] = _canon
_CLAUSE_SPLIT = re.compile(r"\s*(?:;|\band\b)\s*")


def _parse_clause(clause: str, text: str) -> Obj | None:
    words = re.findall(r"[a-z]+", clause)
    found: dict[str, list[str]] = {k: [] for k in _VOCAB}
    for w in words:
        # Plurals ("circles") appear in hand-written prompts; the grammar itself never makes them.
        for k, table in _VOCAB.items():
            if w in table:
                found[k].append(table[w])
            elif w.endswith("s") and w[:-1] in table and k == "shape":
                found[k].append(table[w[:-1]])
    if not any(found.values()):
        return None  # a clause with no attribute words at all ("two shapes:") carries nothing
    for k, vals in found.items():
        if len(vals) != 1:
            what = "no" if not vals else f"{len(vals)} ({', '.join(vals)})"
            raise InvalidParameter(
                f"Cannot parse caption {text!r}: the phrase {clause.strip()!r} has {what} {k} words.",
                value=text, fix=f"Name exactly one {k} per object, from: {', '.join(sorted(_VOCAB[k]))}.",
            )
    return Obj(found["shape"][0], found["colour"][0], found["size"][0], found["position"][0])


def phrases(text: str) -> list[tuple[int, Obj]]:
    """Each object phrase of a caption as (where its last word ends in `text`, the object it names), in the
    caption's order; the clauses `parse` reads, without its checks."""
    out, start = [], 0
    for sep in [*_CLAUSE_SPLIT.finditer(text.lower()), None]:
        end = sep.start() if sep else len(text)
        clause = text[start:end].lower()
        obj = _parse_clause(clause, text)
        if obj is not None:
            out.append((start + len(clause.rstrip(" ,;:.")), obj))
        start = sep.end() if sep else end
    return out


def parse(text: str, background: str = DEFAULT_BACKGROUND) -> Scene:
    """Read back the scene a caption asks for (canonical order, the given background).

    Splits the caption into one clause per object at ";" and "and", then reads the shape, colour,
    size and position word of each clause. Raises `InvalidParameter` when a clause lacks one of
    them or names two, or when two objects share a position.
    """
    objs = [o for o in (_parse_clause(c, text) for c in _CLAUSE_SPLIT.split(text.lower())) if o is not None]
    if not objs:
        raise InvalidParameter(f"Caption {text!r} describes no object.", value=text,
                               fix="Write e.g. 'a small red circle on the left'.")
    positions = [o.position for o in objs]
    if len(set(positions)) != len(positions):
        raise InvalidParameter(f"Caption {text!r} puts two objects at the same position.", value=text,
                               fix="Give each object its own position.")
    return Scene(tuple(objs), background).canonical()


def is_held_out(obj: Obj | Scene) -> bool:
    """Whether an object's (shape, colour, size, position) combination is in the held-out split.

    For a scene: True when any of its objects is held out (so it is not train data). The split is a
    fixed hash of the four attribute names (see the module docstring); continuous geometry and
    background do not matter.
    """
    if isinstance(obj, Scene):
        return any(is_held_out(o) for o in obj.objects)
    key = "|".join(obj.attributes).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 1000 < HELD_OUT_PER_MILLE


def split_of(scene: Scene) -> str | None:
    """"train" when no object is held out, "heldout" when all are, None for a mixed scene."""
    flags = [is_held_out(o) for o in scene.objects]
    if not any(flags):
        return "train"
    return "heldout" if all(flags) else None


def sample_split_scene(rng: np.random.Generator, split: str = "train", n_objects: int | Sequence[int] = (1, 2),
                       shapes: Sequence[str] = BASE_SHAPES, backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,)
                       ) -> Scene:
    """`sample_scene` restricted to one split: every object is a train (or every one a held-out) combination."""
    if split not in SPLITS:
        raise InvalidParameter(f"Unknown split {split!r}.", value=split, fix=f"Use one of {SPLITS}.")
    want = split == "heldout"
    return sample_scene(rng, n_objects=n_objects, shapes=shapes, backgrounds=backgrounds,
                        accept=lambda o: is_held_out(o) == want)


def prompts(split: str = "heldout", n: int = 60, seed: int = 0, n_objects: int | Sequence[int] = 1,
            shapes: Sequence[str] = BASE_SHAPES) -> list[str]:
    """`n` captions of random scenes from `split`, deterministic in `seed`.

    Use `parse` on each to know what it asks for. Held-out prompts only combine attributes that
    `write_dataset(split="train")` never shows together.
    """
    if n < 0:
        raise InvalidParameter(f"n={n} is negative.", value=n, fix="Ask for zero or more prompts.")
    rng = np.random.default_rng(seed)
    return [caption(sample_split_scene(rng, split, n_objects, shapes), rng) for _ in range(n)]


__all__ = [
    "HELD_OUT_PER_MILLE", "OBJECT_TEMPLATES", "SPLITS", "caption", "is_held_out", "parse", "phrases", "prompts",
    "sample_split_scene", "split_of",
]
