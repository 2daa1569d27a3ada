"""The toy world's scenes: a few flat shapes on a plain background, rendered procedurally.

A `Scene` is one or two `Obj`s on a background. Each object has four named attributes — shape,
colour, size and position — which is everything a caption talks about. Geometry underneath is
continuous: a named position maps to an anchor point and a named size to a radius, both as
fractions of the canvas, and an object may override them with any `centre` / `scale` / `angle`.
That lets a motion model render an object moving frame by frame, and lets the same scene be
rendered at 32², 64² or any other square size.

Shapes live in one table, `SHAPE_GEOMETRY`: a circle or a polygon in unit coordinates, centred on
its centroid. The renderer and the detector's template classifier both read it, so a new shape is
one entry there. `BASE_SHAPES` is the vocabulary the base toy model is trained on; `hexagon`, `star`
and `ring` render and detect like any other shape but are kept out of it, as "new concepts" for LoRA
and DreamBooth experiments.

Nothing here touches the file system or global state; every random choice comes from a
`numpy.random.Generator` the caller passes in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

# --- vocabulary -------------------------------------------------------------------------------

# RGB corners of the colour cube (softened a little). Corners are as far apart as colours can be,
# so nearest-palette classification stays right under noise, blur and the colour drift of a small
# generative model. Orange, pink, etc. were left out on purpose: they sit between two corners.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 200, 60),
    "blue": (45, 75, 235),
    "yellow": (235, 215, 40),
    "purple": (200, 55, 215),
    "cyan": (40, 210, 215),
    "white": (235, 235, 235),
}

# Backgrounds are all dark and low in saturation, so every object colour is at least 160 RGB units
# away from every background and foreground/background separation is a single threshold.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (18, 18, 22),
    "slate": (34, 40, 54),
    "brown": (48, 38, 30),
    "forest": (26, 42, 32),
    "plum": (44, 28, 44),
}
DEFAULT_BACKGROUND = "black"

# Radius of each size, as a fraction of the canvas width. The area ratio (~2.4) keeps small and
# large apart even when a shape is misjudged by a pixel all round.
SIZES: dict[str, float] = {"small": 5.5 / 64, "large": 8.5 / 64}

# Anchor (x, y) of each named position, fractions of the canvas, y pointing down. Chosen so that
# two large objects at any two different anchors leave a gap of >= 3 px at 64² (left/right vs
# centre is the tightest pair) and a large object keeps >= 3 px from the border.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.18, 0.5),
    "top": (0.5, 0.18),
    "centre": (0.5, 0.5),
    "bottom": (0.5, 0.82),
    "right": (0.82, 0.5),
}

DEFAULT_CANVAS = 64


@dataclass(frozen=True)
class ShapeGeometry:
    """One shape in unit coordinates: a circle of radius 1 (with a round hole of radius `hole` for a ring), or
    a polygon centred on its centroid.

    The object's scale (radius) multiplies these coordinates. Polygons may be non-convex (the star);
    point-in-polygon uses the even-odd rule.
    """

    name: str
    polygon: tuple[tuple[float, float], ...] | None = None  # None means the unit circle
    hole: float = 0.0  # circles only: the radius of the hole, as a fraction of the outer radius

    @property
    def unit_area(self) -> float:
        """Area at scale 1 (the detector turns a measured area into a radius with it)."""
        if self.polygon is None:
            return math.pi * (1.0 - self.hole ** 2)
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        n = len(xs)
        return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2

    @property
    def circumradius(self) -> float:
        """Largest distance of any point of the shape from its centre, at scale 1."""
        if self.polygon is None:
            return 1.0
        return max(math.hypot(x, y) for x, y in self.polygon)


def _regular(n: int, radius: float = 1.0, phase_deg: float = -90.0) -> tuple[tuple[float, float], ...]:
    # phase -90° puts the first vertex straight up (y points down in image coordinates).
    return tuple(
        (radius * math.cos(math.radians(phase_deg + 360.0 * k / n)),
         radius * math.sin(math.radians(phase_deg + 360.0 * k / n)))
        for k in range(n)
    )


def _star(points: int = 5, outer: float = 1.05, inner: float = 0.48) -> tuple[tuple[float, float], ...]:
    verts = []
    for k in range(2 * points):
        r = outer if k % 2 == 0 else inner
        a = math.radians(-90.0 + 180.0 * k / points)
        verts.append((r * math.cos(a), r * math.sin(a)))
    return tuple(verts)


# Sizes within a shape family are tuned so that all shapes look about equally big: the triangle
# gets a larger circumradius because so much of its circumcircle is empty.
SHAPE_GEOMETRY: dict[str, ShapeGeometry] = {
    "circle": ShapeGeometry("circle"),
    "square": ShapeGeometry("square", ((-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82))),
    "triangle": ShapeGeometry("triangle", _regular(3, radius=1.15)),
    "diamond": ShapeGeometry("diamond", ((0.0, -1.0), (0.85, 0.0), (0.0, 1.0), (-0.85, 0.0))),
    "hexagon": ShapeGeometry("hexagon", _regular(6, radius=1.0, phase_deg=0.0)),
    "star": ShapeGeometry("star", _star()),
    # the toy DreamBooth subject: a shape the base never saw, one BPE token it knows as an English word
    "ring": ShapeGeometry("ring", hole=0.55),
}

BASE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
ALL_SHAPES: tuple[str, ...] = tuple(SHAPE_GEOMETRY)


def _check(kind: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidParameter(
            f"Unknown {kind} {value!r}.", value=value, fix=f"Use one of: {', '.join(allowed)}."
        )


# --- scene data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Obj:
    """One object: the four named attributes a caption mentions, plus optional continuous geometry.

    `centre` (x, y) and `scale` (radius) are fractions of the canvas width; when given they override
    the anchor of `position` and the radius of `size` — e.g. for a frame of an animation. `angle`
    rotates the shape clockwise, in degrees (the detector assumes upright shapes).
    """

    shape: str
    colour: str
    size: str
    position: str
    centre: tuple[float, float] | None = None
    scale: float | None = None
    angle: float = 0.0

    def __post_init__(self) -> None:
        _check("shape", self.shape, SHAPE_GEOMETRY)
        _check("colour", self.colour, COLOURS)
        _check("size", self.size, SIZES)
        _check("position", self.position, POSITIONS)
        if self.scale is not None and not 0.0 < self.scale < 1.0:
            raise InvalidParameter(
                f"Object scale {self.scale!r} is outside (0, 1).", value=self.scale,
                fix="Give the radius as a fraction of the canvas width, e.g. 0.1.",
            )

    @property
    def xy(self) -> tuple[float, float]:
        """Centre (x, y) as fractions of the canvas: the override, or the named position's anchor."""
        return self.centre if self.centre is not None else POSITIONS[self.position]

    @property
    def radius(self) -> float:
        """Radius as a fraction of the canvas width: the override, or the named size's radius."""
        return self.scale if self.scale is not None else SIZES[self.size]

    @property
    def attributes(self) -> tuple[str, str, str, str]:
        """(shape, colour, size, position): the part of an object a caption can express."""
        return (self.shape, self.colour, self.size, self.position)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; continuous overrides are included only when set."""
        d: dict[str, Any] = {"shape": self.shape, "colour": self.colour, "size": self.size,
                             "position": self.position}
        if self.centre is not None:
            d["centre"] = [float(self.centre[0]), float(self.centre[1])]
        if self.scale is not None:
            d["scale"] = float(self.scale)
        if self.angle:
            d["angle"] = float(self.angle)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Obj:
        """Inverse of `to_dict`."""
        centre = d.get("centre")
        return cls(d["shape"], d["colour"], d["size"], d["position"],
                   centre=tuple(centre) if centre is not None else None,  # type: ignore[arg-type]
                   scale=d.get("scale"), angle=float(d.get("angle", 0.0)))


_POSITION_ORDER = {p: i for i, p in enumerate(POSITIONS)}


@dataclass(frozen=True)
class Scene:
    """One or more objects on a named background, drawn in order (later objects on top)."""

    objects: tuple[Obj, ...]
    background: str = DEFAULT_BACKGROUND

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        _check("background", self.background, BACKGROUNDS)
        if not self.objects:
            raise InvalidParameter("A scene needs at least one object.", value=self.objects,
                                   fix="Pass one or two Obj(...) entries.")

    def canonical(self) -> Scene:
        """The same scene with objects ordered left, top, centre, bottom, right (captions' order-free form)."""
        return replace(self, objects=tuple(sorted(
            self.objects, key=lambda o: (_POSITION_ORDER[o.position], o.attributes))))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: {"objects": [...], "background": name}."""
        return {"objects": [o.to_dict() for o in self.objects], "background": self.background}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scene:
        """Inverse of `to_dict`."""
        return cls(tuple(Obj.from_dict(o) for o in d["objects"]), d.get("background", DEFAULT_BACKGROUND))


# --- geometry ---------------------------------------------------------------------------------


def nearest_position(x: float, y: float) -> str:
    """Name of the anchor nearest to (x, y), given as fractions of the canvas."""
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - x) ** 2 + (POSITIONS[p][1] - y) ** 2)


def size_name(radius: float) -> str:
    """Name of the size whose radius is nearest to `radius` (fraction of canvas), on a log scale."""
    return min(SIZES, key=lambda s: abs(math.log(radius / SIZES[s])))


def _inside(shape: ShapeGeometry, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean array: which unit-coordinate points (u, v) lie inside the shape."""
    if shape.polygon is None:
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= shape.hole ** 2) if shape.hole else r2 <= 1.0
    inside = np.zeros(u.shape, dtype=bool)
    poly = shape.polygon
    n = len(poly)
    # Even-odd crossing test, vectorised over the points and looped over the (few) edges.
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        if y0 == y1:
            continue
        crosses = (v >= min(y0, y1)) & (v < max(y0, y1))
        x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < x_at)
    return inside


def coverage(shape: str, cx: float, cy: float, radius: float, height: int, width: int,
             angle: float = 0.0, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by a shape, as a float32 (height, width) array in [0, 1].

    `cx`, `cy` and `radius` are in pixels (pixel (i, j) spans [j, j+1) x [i, i+1)). Each pixel is
    sampled on a `supersample`² grid, which gives the anti-aliased edges; only the shape's bounding
    box is evaluated, so this is cheap for small shapes.
    """
    geom = SHAPE_GEOMETRY[shape]
    out = np.zeros((height, width), dtype=np.float32)
    reach = geom.circumradius * radius + 1.0
    x0, x1 = max(0, int(math.floor(cx - reach))), min(width, int(math.ceil(cx + reach)))
    y0, y1 = max(0, int(math.floor(cy - reach))), min(height, int(math.ceil(cy + reach)))
    if x0 >= x1 or y0 >= y1 or radius <= 0:
        return out
    s = supersample
    offs = (np.arange(s, dtype=np.float64) + 0.5) / s
    xs = (np.arange(x0, x1)[:, None] + offs[None, :]).ravel()
    ys = (np.arange(y0, y1)[:, None] + offs[None, :]).ravel()
    X, Y = np.meshgrid(xs - cx, ys - cy)
    if angle:
        # Rotate sample points by -angle so the shape itself appears rotated by +angle (clockwise on screen).
        a = math.radians(angle)
        X, Y = X * math.cos(a) + Y * math.sin(a), -X * math.sin(a) + Y * math.cos(a)
    hit = _inside(geom, X / radius, Y / radius).astype(np.float32)
    cov = hit.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    out[y0:y1, x0:x1] = cov
    return out


def render(scene: Scene, size: int = DEFAULT_CANVAS, supersample: int = 4) -> np.ndarray:
    """Render a scene to a (size, size, 3) uint8 RGB array.

    Objects are alpha-blended over the background in order, with anti-aliased edges from
    `supersample`² samples per pixel. Rendering is a pure function of the scene: no randomness.
    """
    if size < 8:
        raise InvalidParameter(f"Canvas size {size} is too small.", value=size, fix="Use size >= 8.")
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        x, y = obj.xy
        a = coverage(obj.shape, x * size, y * size, obj.radius * size, size, size,
                     angle=obj.angle, supersample=supersample)[..., None]
        img = img * (1.0 - a) + np.asarray(COLOURS[obj.colour], dtype=np.float32) * a
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_pil(scene: Scene, size: int = DEFAULT_CANVAS) -> Image.Image:
    """Render a scene as a PIL RGB image (see `render`)."""
    from PIL import Image

    return Image.fromarray(render(scene, size=size))


# --- sampling ---------------------------------------------------------------------------------


def all_objects(shapes: Sequence[str] = BASE_SHAPES) -> list[Obj]:
    """Every (shape, colour, size, position) combination over `shapes`, in a fixed order."""
    for s in shapes:
        _check("shape", s, SHAPE_GEOMETRY)
    return [Obj(sh, c, sz, p) for sh in shapes for c in COLOURS for sz in SIZES for p in POSITIONS]


# Up to four objects at four of the five anchors (the counting prompts ask for 2-4).
MAX_OBJECTS_RANGE = (1, 2, 3, 4)


def _n_objects(rng: np.random.Generator, n_objects: int | Sequence[int]) -> int:
    choices = (n_objects,) if isinstance(n_objects, int) else tuple(n_objects)
    if not choices or any(n not in MAX_OBJECTS_RANGE for n in choices):
        raise InvalidParameter(
            f"n_objects={n_objects!r} is not supported.", value=n_objects,
            fix="Use 1 to 4 or a sequence of them such as (1, 2).",
        )
    return int(choices[int(rng.integers(len(choices)))])


def sample_scene(
    rng: np.random.Generator,
    n_objects: int | Sequence[int] = (1, 2),
    shapes: Sequence[str] = BASE_SHAPES,
    backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,),
    accept: Callable[[Obj], bool] | None = None,
) -> Scene:
    """Draw a random scene, deterministically from `rng`.

    `n_objects` is a count or a sequence to choose uniformly from. Objects are drawn uniformly from
    the (shape, colour, size, position) combinations over `shapes` that `accept` allows (all when
    None — the caption module passes its train/held-out split here). Two objects never share a
    position, which at the named anchors also means they never overlap. The returned scene is in
    canonical order (see `Scene.canonical`).
    """
    n = _n_objects(rng, n_objects)
    if not backgrounds:
        raise InvalidParameter("No backgrounds to choose from.", value=backgrounds,
                               fix=f"Pass names from {list(BACKGROUNDS)}.")
    for b in backgrounds:
        _check("background", b, BACKGROUNDS)
    pool = [o for o in all_objects(shapes) if accept is None or accept(o)]
    objs: list[Obj] = []
    for _ in range(n):
        free = [o for o in pool if all(o.position != p.position for p in objs)]
        if not free:
            raise InvalidParameter(
                f"No allowed object combination is left for a {n}-object scene.", value=shapes,
                fix="Allow more shapes, or fewer objects per scene.",
            )
        objs.append(free[int(rng.integers(len(free)))])
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    return Scene(tuple(objs), background).canonical()


__all__ = [
    "ALL_SHAPES", "BACKGROUNDS", "BASE_SHAPES", "COLOURS", "DEFAULT_BACKGROUND", "DEFAULT_CANVAS",
    "POSITIONS", "SHAPE_GEOMETRY", "SIZES", "Obj", "Scene", "ShapeGeometry", "all_objects",
    "coverage", "nearest_position", "render", "render_pil", "sample_scene", "size_name",
]
