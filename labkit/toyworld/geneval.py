"""GenEval's six categories in the toy world: the prompts, their held-out split, and the per-category check.

GenEval (Ghosh et al. 2023) scores a text-to-image model by detecting objects in its images: single object,
two objects, counting, colours, position and colour attribution. The toy world asks the same questions of
its own scenes, and reads the answers with the classical detector (`labkit.toyworld.detect`):

=====================  =============================================================  ==========================
category               prompts                                                        right when the image has
=====================  =============================================================  ==========================
single_object          "a small red circle on the left"                               one object, that shape
two_objects            "a small red circle on the left and a large blue square ..."   two objects, those shapes
counting               "three blue circles" (2-4 of one shape and colour)             exactly n, all that shape
colours                "a large yellow diamond at the top"                            one object, shape + colour
position               "a small red circle on the left" (absolute) or                 the shape at that anchor /
                       "a red square left of a green circle" (relative)               the two in that relation
colour_attribution     two- and three-object captions, each object its own colour    each shape in its colour
=====================  =============================================================  ==========================

The overall score is GenEval's: the mean of the category scores.

Scene kinds (what `scene_for` draws and training data mixes, see `DATA_MIX`): `single`, `two`, `three`
(objects at named positions, captions from `labkit.toyworld.captions`), `count` (n copies of one shape and
colour, "three blue circles") and `relation` (two objects of different shapes, "a red square left of a green
circle"). Count and relation captions name no size and no anchor; their scenes put the objects in one layout
per count and per relation (`COUNT_LAYOUTS`, `RELATION_LAYOUTS`, all large), because a small model trained on
random layouts learns their average. The check does not ask for those places: any n objects count, any two in
the relation.

The held-out split is a fixed hash, as for single objects (`captions.is_held_out`): an absolute scene is
held out when every object's (shape, colour, size, position) is; a count scene when its (n, shape, colour)
is; a relation scene when its (relation, shape and colour of each object) is. Training data
(`split="train"`) never shows a held-out combination of any kind.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labkit.errors import InvalidParameter, LabkitError
from labkit.toyworld.captions import (
    _SYNONYMS,
    HELD_OUT_PER_MILLE,
    SPLITS,
    caption,
    parse,
    sample_split_scene,
)
from labkit.toyworld.scenes import (
    BASE_SHAPES,
    COLOURS,
    DEFAULT_BACKGROUND,
    POSITIONS,
    SHAPE_GEOMETRY,
    SIZES,
    Obj,
    Scene,
)

CATEGORIES: tuple[str, ...] = ("single_object", "two_objects", "counting", "colours", "position",
                               "colour_attribution")
KINDS: tuple[str, ...] = ("single", "two", "three", "count", "relation")
#: The training data mix of `labkit train toy-base` (weights; normalised when used): every scene kind the
#: benchmark asks about, pairs and triples the most (two categories read pairs, and binding a colour to each of
#: three objects is the hardest); counts and relations were at 100% and 98% with 0.15 and 0.2 and get less.
DATA_MIX: dict[str, float] = {"single": 0.2, "two": 0.3, "three": 0.25, "count": 0.1, "relation": 0.15}
#: The shipped model's mix (before issue 28): singles and pairs only.
LEGACY_MIX: dict[str, float] = {"single": 0.5, "two": 0.5}

NUMBERS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
_NUMBER_WORDS = {w: n for n, w in NUMBERS.items()} | {str(n): n for n in NUMBERS}
# relation -> (axis, sign): A rel B holds when sign * (A[axis] - B[axis]) >= RELATION_MARGIN
RELATIONS: dict[str, tuple[int, int]] = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}
#: How far apart (fraction of the canvas) two centres must be on the relation's axis; anchors differ by >= 0.32.
RELATION_MARGIN = 0.1
#: Where a count or a relation scene puts its objects (`LAYOUT_SIZE` all). Their captions name no anchor, and the
#: first retrain on random layouts (issue 28) drew the average of them: the asked shape at every anchor (its own
#: check: counting 1.7%, relations all but none right). One layout each leaves nothing to average.
COUNT_LAYOUTS: dict[int, tuple[str, ...]] = {2: ("left", "right"), 3: ("left", "centre", "right"),
                                             4: ("left", "top", "bottom", "right")}
RELATION_LAYOUTS: dict[str, tuple[str, str]] = {"left of": ("left", "right"), "right of": ("right", "left"),
                                                "above": ("top", "bottom"), "below": ("bottom", "top")}
LAYOUT_SIZE = "large"
_RELATION_RE = re.compile(r"\s+(?:to\s+the\s+)?(left of|right of|above|below)\s+")


# --- what a prompt asks for ----------------------------------------------------------------------


@dataclass(frozen=True)
class Thing:
    """An object as a count or relation prompt names it: shape and colour, size only when said."""

    shape: str
    colour: str
    size: str | None = None

    def matches(self, d: Any) -> bool:
        return d.shape == self.shape and d.colour == self.colour and (self.size is None or d.size == self.size)


@dataclass(frozen=True)
class Request:
    """What a benchmark prompt asks for: `kind` is "objects" (`scene`), "count" (`count` × `things[0]`) or
    "relation" (`things[0]` `relation` `things[1]`)."""

    kind: str
    text: str
    scene: Scene | None = None
    things: tuple[Thing, ...] = ()
    count: int = 0
    relation: str = ""

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories this prompt is scored in (empty: none, the benchmark skips it)."""
        if self.kind == "count":
            return ("counting",)
        if self.kind == "relation":
            return ("position",)
        assert self.scene is not None
        k = len(self.scene.objects)
        if k == 1:
            return ("single_object", "colours", "position")
        if k == 2:
            return ("two_objects", "colour_attribution")
        return ("colour_attribution",) if k == 3 else ()


def _words_of(text: str) -> list[str]:
    return [_SYNONYMS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def _thing(part: str, text: str) -> Thing:
    """Shape, colour and optional size of one side of a relation or of a count phrase."""
    found: dict[str, list[str]] = {"shape": [], "colour": [], "size": [], "position": []}
    for w in _words_of(part):
        stem = w[:-1] if w.endswith("s") and w[:-1] in SHAPE_GEOMETRY else w
        for k, table in (("shape", SHAPE_GEOMETRY), ("colour", COLOURS), ("size", SIZES), ("position", POSITIONS)):
            if stem in table:
                found[k].append(stem)
    for k in ("shape", "colour"):
        if len(found[k]) != 1:
            raise InvalidParameter(f"Cannot read {part.strip()!r} in {text!r}: it names {len(found[k])} {k} words.",
                                   value=text, fix=f"Name exactly one {k} per object, e.g. 'a red square'.")
    if len(found["size"]) > 1 or found["position"]:
        raise InvalidParameter(f"Cannot read {part.strip()!r} in {text!r}: a count or relation phrase names at most "
                               "one size and no position.", value=text, fix="Write e.g. 'three blue circles' or "
                               "'a red square left of a green circle'.")
    return Thing(found["shape"][0], found["colour"][0], found["size"][0] if found["size"] else None)


def read(text: str) -> Request:
    """What a benchmark prompt asks for. Raises a `LabkitError` whose message says why when it cannot tell
    (the benchmark lists such prompts as skipped, with that reason)."""
    low = " " + text.lower().strip() + " "
    rel = _RELATION_RE.split(low)
    if len(rel) > 1:
        if len(rel) != 3:
            raise InvalidParameter(f"Prompt {text!r} has {len(rel) // 2} relations.", value=text,
                                   fix="Relate exactly two objects, e.g. 'a red square left of a green circle'.")
        if any(w in _NUMBER_WORDS for w in _words_of(text)):
            raise InvalidParameter(f"Prompt {text!r} both counts and relates objects.", value=text,
                                   fix="Ask one question per prompt: 'three blue circles' or "
                                       "'a red square left of a green circle'.")
        a, b = _thing(rel[0], text), _thing(rel[2], text)
        if a.shape == b.shape:
            raise InvalidParameter(f"Prompt {text!r} relates two {a.shape}s: the benchmark tells them apart by shape.",
                                   value=text, fix="Relate two different shapes.")
        return Request("relation", text, things=(a, b), relation=rel[1])
    numbers = [_NUMBER_WORDS[w] for w in _words_of(text) if w in _NUMBER_WORDS]
    if numbers:
        if len(numbers) != 1:
            raise InvalidParameter(f"Prompt {text!r} names {len(numbers)} counts.", value=text,
                                   fix="Count one kind of object, e.g. 'three blue circles'.")
        return Request("count", text, things=(_thing(re.sub(r"\b(two|three|four|[234])\b", " ", low), text),),
                       count=numbers[0])
    return Request("objects", text, scene=parse(text))


# --- the check -----------------------------------------------------------------------------------


def _n(found: Sequence[Any], want: int) -> str:
    return "" if len(found) == want else f"found {len(found)} objects, asked for {want}"


def check(req: Request, category: str, found: Sequence[Any]) -> tuple[bool, str]:
    """Whether the detections `found` (`detect.Detection`s) answer `req` in `category`: (right, why not)."""
    if category not in req.categories:
        raise InvalidParameter(f"Prompt {req.text!r} is not a {category} prompt.", value=category,
                               fix=f"Score it in {', '.join(req.categories) or 'no category'}.")
    if req.kind == "count":
        t = req.things[0]
        wrong = [d.shape for d in found if d.shape != t.shape]
        why = _n(found, req.count) or ("shapes " + ", ".join(d.shape for d in found) if wrong else "")
        return not why, why
    if req.kind == "relation":
        a, b = req.things
        if why := _n(found, 2):
            return False, why
        da = [d for d in found if d.shape == a.shape]
        db = [d for d in found if d.shape == b.shape]
        if len(da) != 1 or len(db) != 1:
            return False, f"shapes {', '.join(d.shape for d in found)}, asked for {a.shape} and {b.shape}"
        axis, sign = RELATIONS[req.relation]
        ok = sign * (da[0].xy[axis] - db[0].xy[axis]) >= RELATION_MARGIN
        return ok, "" if ok else f"the {a.shape} is not {req.relation} the {b.shape}"
    assert req.scene is not None
    want = req.scene.objects
    if why := _n(found, len(want)):
        return False, why
    if category in ("single_object", "two_objects"):
        ok = Counter(o.shape for o in want) == Counter(d.shape for d in found)
        return ok, "" if ok else "shapes " + ", ".join(d.shape for d in found)
    if category == "colour_attribution" or category == "colours":
        ok = Counter((o.colour, o.shape) for o in want) == Counter((d.colour, d.shape) for d in found)
        return ok, "" if ok else "objects " + ", ".join(f"{d.colour} {d.shape}" for d in found)
    (o,), (d,) = want, found  # position (absolute): one object
    ok = d.shape == o.shape and d.position == o.position
    return ok, "" if ok else f"{d.shape} at the {d.position}"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% for z = 1.96); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(results: Mapping[str, Sequence[bool]]) -> dict[str, Any]:
    """{category: {"score", "correct", "n", "ci": [lo, hi]}} for each category with results, and "overall"
    (GenEval's: the mean of the category scores; None when there is none)."""
    out: dict[str, Any] = {}
    for cat in CATEGORIES:
        if cat in results and results[cat]:
            k, n = sum(map(bool, results[cat])), len(results[cat])
            out[cat] = {"score": k / n, "correct": k, "n": n, "ci": list(wilson(k, n))}
    scores = [v["score"] for v in out.values()]
    out["overall"] = sum(scores) / len(scores) if scores else None
    return out


def check_categories(categories: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validated category names, in `CATEGORIES` order (None or "all": all six; a comma list is accepted)."""
    if categories is None or categories == "all":
        return CATEGORIES
    names = [c.strip() for c in categories.split(",")] if isinstance(categories, str) else list(categories)
    bad = [c for c in names if c not in CATEGORIES]
    if bad or not names:
        raise InvalidParameter(f"Unknown benchmark categories {bad or names!r}.", value=categories,
                               fix=f"Choose from {', '.join(CATEGORIES)}.")
    return tuple(c for c in CATEGORIES if c in names)


def score_prompts(pairs: Sequence[tuple[Any, str]]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Score (image, prompt) pairs in every category each prompt belongs to: (`summarise` output, skipped),
    skipped being [{"prompt", "reason"}] for prompts the benchmark cannot read (never scored)."""
    from labkit.toyworld.detect import detect

    results: dict[str, list[bool]] = {}
    skipped: list[dict[str, str]] = []
    for image, prompt in pairs:
        try:
            req = read(prompt)
        except LabkitError as e:
            skipped.append({"prompt": prompt, "reason": str(e).splitlines()[0]})
            continue
        if not req.categories:
            skipped.append({"prompt": prompt, "reason": "in no benchmark category"})
            continue
        found = detect(image)
        for cat in req.categories:
            results.setdefault(cat, []).append(check(req, cat, found)[0])
    return summarise(results), skipped


# --- drawing scenes of each kind -------------------------------------------------------------------


def _held(key: str) -> bool:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 1000 < HELD_OUT_PER_MILLE


def is_held_out_count(n: int, shape: str, colour: str) -> bool:
    """Whether "n colour shapes" is a held-out count combination (a fixed hash, as `captions.is_held_out`)."""
    return _held(f"count|{n}|{shape}|{colour}")


def is_held_out_relation(relation: str, a: Thing, b: Thing) -> bool:
    """Whether "a relation b" (shapes and colours) is a held-out combination."""
    return _held(f"relation|{relation}|{a.shape}|{a.colour}|{b.shape}|{b.colour}")


# captions.OBJECT_TEMPLATES whose three-object captions fit in 32 tokens ("left: one small red circle; …")
_SHORT_TEMPLATES = (1, 5)
_COUNT_TEMPLATES = ("{n} {c} {h}s", "{n} {c} {h}s", "{n} {c} {h}s in a scene", "exactly {n} {c} {h}s")
_RELATION_TEMPLATES = ("a {ca} {ha} {r} a {cb} {hb}", "a {ca} {ha} to the {r} a {cb} {hb}")


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidParameter(f"Unknown split {split!r}.", value=split, fix=f"Use one of {SPLITS}.")


def _count_scene(rng, split, shapes, background) -> tuple[Scene, str]:
    combos = [(n, h, c) for n in NUMBERS for h in shapes for c in COLOURS
              if is_held_out_count(n, h, c) == (split == "heldout")]
    n, h, c = _pick(rng, combos)
    # the draws of the random layouts the benchmark's prompts were first made with, so its prompts stay the same
    _pick(rng, tuple(SIZES)), rng.permutation(list(POSITIONS))
    scene = Scene(tuple(Obj(h, c, LAYOUT_SIZE, p) for p in COUNT_LAYOUTS[n]), background).canonical()
    t = _pick(rng, _COUNT_TEMPLATES)
    return scene, t.format(n=NUMBERS[n], c=c, h=h)


def _relation_scene(rng, split, shapes, background) -> tuple[Scene, str]:
    want = split == "heldout"
    while True:  # held-out relations are ~15% of ~3,000: a few draws
        rel = _pick(rng, tuple(RELATIONS))
        ha, hb = rng.permutation(list(shapes))[:2]
        a, b = Thing(str(ha), _pick(rng, tuple(COLOURS))), Thing(str(hb), _pick(rng, tuple(COLOURS)))
        if is_held_out_relation(rel, a, b) == want:
            break
    axis, sign = RELATIONS[rel]  # the random layout's draws, as in `_count_scene`: the same prompts
    _pick(rng, [(p, q) for p in POSITIONS for q in POSITIONS
                if sign * (POSITIONS[p][axis] - POSITIONS[q][axis]) >= RELATION_MARGIN])
    _pick(rng, tuple(SIZES)), _pick(rng, tuple(SIZES))
    pa, pb = RELATION_LAYOUTS[rel]
    scene = Scene((Obj(a.shape, a.colour, LAYOUT_SIZE, pa), Obj(b.shape, b.colour, LAYOUT_SIZE, pb)),
                  background).canonical()
    t = _pick(rng, _RELATION_TEMPLATES if rel.endswith(" of") else _RELATION_TEMPLATES[:1])
    return scene, t.format(ca=a.colour, ha=a.shape, r=rel, cb=b.colour, hb=b.shape)


def scene_for(rng: np.random.Generator, kind: str, split: str = "train", shapes: Sequence[str] = BASE_SHAPES,
              backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,), distinct_colours: bool = False
              ) -> tuple[Scene, str]:
    """A scene of `kind` (see `KINDS`) from `split`, and its caption; deterministic in `rng`.

    `distinct_colours`: objects of a two- or three-object scene all differ in colour (colour attribution)."""
    _check_split(split)
    if kind not in KINDS:
        raise InvalidParameter(f"Unknown scene kind {kind!r}.", value=kind, fix=f"Use one of {', '.join(KINDS)}.")
    background = _pick(rng, tuple(backgrounds))
    if kind == "count":
        return _count_scene(rng, split, shapes, background)
    if kind == "relation":
        return _relation_scene(rng, split, shapes, background)
    k = KINDS.index(kind) + 1
    for _ in range(1000):
        scene = sample_split_scene(rng, split, k, shapes, (background,))
        if not distinct_colours or len({o.colour for o in scene.objects}) == k:
            # Three objects in the wordier templates run past the toy tokenizer's 32 tokens: the short ones only.
            return scene, caption(scene, rng, template=_pick(rng, _SHORT_TEMPLATES) if k > 2 else None)
    raise InvalidParameter(f"No {kind} scene with distinct colours in 1000 draws.", value=kind,
                           fix="Allow more shapes.")


def mix_text(mix: Mapping[str, float]) -> str:
    """A data mix as the command line writes it: "single=0.2,two=0.25,…"."""
    return ",".join(f"{k}={v:g}" for k, v in mix.items())


def check_mix(mix: Mapping[str, float] | str | None) -> dict[str, float]:
    """A data mix as normalised weights by kind; accepts a mapping or `mix_text`'s form (None: `DATA_MIX`)."""
    if mix is None:
        mix = DATA_MIX
    if isinstance(mix, str):
        try:
            mix = {k.strip(): float(v) for k, v in (part.split("=") for part in mix.split(",") if part.strip())}
        except ValueError as e:
            raise InvalidParameter(f"Cannot read the data mix {mix!r}.", value=mix,
                                   fix="Write kind=weight pairs, e.g. " + mix_text(DATA_MIX) + ".") from e
    bad = [k for k in mix if k not in KINDS]
    if bad or any(not math.isfinite(v) or v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise InvalidParameter(f"Bad data mix {dict(mix)!r}.", value=dict(mix),
                               fix=f"Give non-negative weights (not all zero) to kinds among {', '.join(KINDS)}.")
    total = sum(mix.values())
    return {k: float(mix[k]) / total for k in KINDS if mix.get(k, 0) > 0}


def sample_mixed(rng: np.random.Generator, mix: Mapping[str, float], split: str = "train",
                 shapes: Sequence[str] = BASE_SHAPES, backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,)
                 ) -> tuple[Scene, str]:
    """A scene and caption whose kind is drawn by the (normalised) weights of `mix`."""
    kinds, weights = zip(*check_mix(mix).items(), strict=True)
    kind = kinds[int(np.searchsorted(np.cumsum(weights), rng.random() * 0.999999, side="right"))]
    return scene_for(rng, kind, split, shapes, backgrounds)


# Each category's prompts: the scene kinds it draws, in turn, and its seed offset. single_object and
# two_objects use offsets 0 and 1, as the benchmark did before the six categories (same prompts).
_PROMPT_PLAN: dict[str, tuple[tuple[str, ...], int]] = {
    "single_object": (("single",), 0), "two_objects": (("two",), 1), "counting": (("count",), 2),
    "colours": (("single",), 3), "position": (("single", "relation"), 4), "colour_attribution": (("two", "three"), 5),
}


def category_prompts(category: str, n: int, seed: int = 0, split: str = "heldout") -> list[tuple[str, Scene]]:
    """`n` (prompt, ground-truth scene) pairs of `category` from `split`, deterministic in `seed`."""
    (category,) = check_categories([category])
    if n < 0:
        raise InvalidParameter(f"n={n} is negative.", value=n, fix="Ask for zero or more prompts.")
    kinds, offset = _PROMPT_PLAN[category]
    if category in ("single_object", "two_objects"):
        # exactly the old benchmark's prompts (captions.prompts)
        rng = np.random.default_rng(seed + offset)
        out = []
        for _ in range(n):
            scene = sample_split_scene(rng, split, KINDS.index(kinds[0]) + 1)
            out.append((caption(scene, rng), scene))
        return out
    rng = np.random.default_rng([seed, offset])
    out = []
    for i in range(n):
        scene, text = scene_for(rng, kinds[i % len(kinds)], split, distinct_colours=category == "colour_attribution")
        out.append((text, scene))
    return out


__all__ = ["CATEGORIES", "COUNT_LAYOUTS", "DATA_MIX", "KINDS", "LAYOUT_SIZE", "LEGACY_MIX", "NUMBERS", "RELATIONS",
           "RELATION_LAYOUTS", "Request", "Thing", "category_prompts", "check", "check_categories", "check_mix",
           "is_held_out_count", "is_held_out_relation", "mix_text", "read", "sample_mixed", "scene_for",
           "score_prompts", "summarise", "wilson"]
