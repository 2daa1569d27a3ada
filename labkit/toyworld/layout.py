"""Layouts for the toy ControlNet: one object at any place and size, the box it fills, and the map that says so.

    item = make_layout_item(seed=0, index=7, split="train")
    item.obj       # Obj("circle", "red", …, centre=(0.31, 0.64), scale=0.12): anywhere, any size
    item.box       # (x0, y0, x1, y1) in pixels: the box the detector finds around the rendered object
    item.caption   # "a red circle": the prompt names colour and shape only
    layout_map([item.box], 64)   # the control map: the box filled white on black

The map decides where and how big (a filled box: every pixel says whether it is inside), the prompt decides
colour and shape. The box of an object is the one `detect.foreground_boxes` finds around its render, so the
map of a ground-truth scene and the box the detector reads back from a picture are measured the same way
(a ground-truth render has IoU 1 with its own map). Boxes are axis-aligned and their aspect follows the
shape (a triangle's box is wider than tall); a user-drawn box of another aspect still steers the object.

The split is over geometry, not attributes: centres fall on an 8 × 8 grid of cells and radii in bands; a
layout is held out when its centre's cell is one of `HELDOUT_CELLS` *and* its radius one of `HELDOUT_RADII`,
and training uses only layouts with neither, so a held-out layout has a position and a size the ControlNet
never saw. Every colour × shape pair is in both splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from labkit.errors import InvalidParameter
from labkit.toyworld.scenes import BASE_SHAPES, COLOURS, DEFAULT_CANVAS, SHAPE_GEOMETRY, Obj, Scene, render

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

#: Radius (fraction of the canvas width) a layout's object may have: from a little under the toy world's
#: "small" (5.5 px at 64²) to well over its "large" (8.5 px).
RADIUS_RANGE = (0.07, 0.16)
#: Radius bands never used in training (together ~20% of the range).
HELDOUT_RADII: tuple[tuple[float, float], ...] = ((0.095, 0.105), (0.135, 0.144))
#: The grid the centre's cell is read on, and the cells (column, row) held out: one in six or seven,
#: spread over the canvas (centre, edges and corners all represented).
GRID = 8
HELDOUT_CELLS = frozenset((i, j) for i in range(GRID) for j in range(GRID) if (3 * i + j) % 7 == 2)
#: Pixels kept free between an object and the canvas edge (the detector reads the background on a
#: two-pixel border).
MARGIN_PX = 3
#: How a layout caption names the object: colour and shape only; where and how big are the map's.
CAPTION_TEMPLATES = ("a {c} {h}", "one {c} {h}", "{c} {h}", "a {c} {h}, in the box")
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class LayoutItem:
    """One training or evaluation example: the object, its box on a `size`² canvas, and the caption."""

    obj: Obj
    box: tuple[int, int, int, int]
    caption: str
    size: int = DEFAULT_CANVAS

    def scene(self) -> Scene:
        """The scene of this one object on the default background."""
        return Scene((self.obj,))

    def image(self) -> np.ndarray:
        """The ground-truth picture: (size, size, 3) uint8."""
        return render(self.scene(), size=self.size)


def cell_of(x: float, y: float) -> tuple[int, int]:
    """The (column, row) of the `GRID` × `GRID` cell that a centre (fractions of the canvas) falls in."""
    return min(GRID - 1, max(0, int(x * GRID))), min(GRID - 1, max(0, int(y * GRID)))


def split_of(obj: Obj) -> str | None:
    """"train" (neither centre cell nor radius held out), "heldout" (both held out) or None (one of them)."""
    cell = cell_of(*obj.xy) in HELDOUT_CELLS
    band = any(lo <= obj.radius < hi for lo, hi in HELDOUT_RADII)
    if cell and band:
        return "heldout"
    return "train" if not cell and not band else None


def object_box(obj: Obj, size: int = DEFAULT_CANVAS) -> tuple[int, int, int, int]:
    """The box the detector finds around `obj` rendered alone on a `size`² canvas."""
    from labkit.toyworld.detect import foreground_boxes

    boxes = foreground_boxes(render(Scene((obj,)), size=size))
    if not boxes:
        raise InvalidParameter(f"The object {obj.to_dict()} is too small to see at {size}×{size}.",
                               value=obj.to_dict(), fix="give it a larger scale.")
    return boxes[0]


def _named(x: float, y: float, radius: float) -> tuple[str, str]:
    from labkit.toyworld.scenes import nearest_position, size_name

    return size_name(radius), nearest_position(x, y)


def sample_layout(rng: np.random.Generator, split: str = "train", shapes: Sequence[str] = BASE_SHAPES,
                  size: int = DEFAULT_CANVAS) -> LayoutItem:
    """Draw a layout of `split` from `rng`: a shape and colour, a radius in `RADIUS_RANGE` and a centre that keeps
    the object `MARGIN_PX` from the edge, redrawn until the geometry is in the split."""
    if split not in SPLITS:
        raise InvalidParameter(f"Unknown layout split {split!r}.", value=split, fix=f"use one of {SPLITS}.")
    shape = shapes[int(rng.integers(len(shapes)))]
    colour = tuple(COLOURS)[int(rng.integers(len(COLOURS)))]
    reach = SHAPE_GEOMETRY[shape].circumradius
    for _ in range(10_000):
        radius = float(rng.uniform(*RADIUS_RANGE))
        margin = reach * radius + MARGIN_PX / size
        x, y = (float(v) for v in rng.uniform(margin, 1.0 - margin, size=2))
        sz, pos = _named(x, y, radius)
        obj = Obj(shape, colour, sz, pos, centre=(x, y), scale=radius)
        if split_of(obj) == split:
            break
    else:  # pragma: no cover - the held-out region is ~3% of draws
        raise RuntimeError("no layout of the split was drawn")
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return LayoutItem(obj, object_box(obj, size), template.format(c=colour, h=shape), size)


def make_layout_item(seed: int, index: int, split: str = "train", shapes: Sequence[str] = BASE_SHAPES,
                     size: int = DEFAULT_CANVAS) -> LayoutItem:
    """Item `index` of the layout stream with `seed`: its own generator, so any item can be made alone."""
    if index < 0:
        raise InvalidParameter(f"Layout index {index} is negative.", value=index, fix="use an index >= 0.")
    return sample_layout(np.random.default_rng([int(seed), int(index), 7]), split, shapes, size)


def layout_map(boxes: Sequence[Sequence[int]], size: int = DEFAULT_CANVAS) -> Image.Image:
    """The control map of `boxes` (pixels, end-exclusive, on a `size`² canvas): each box filled white on black."""
    from PIL import Image

    arr = np.zeros((size, size, 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (int(v) for v in box)
        if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
            raise InvalidParameter(f"Box {i} {list(box)} is not inside the {size}×{size} canvas.", value=list(box),
                                   fix="give (x0, y0, x1, y1) with 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size.")
        arr[y0:y1, x0:x1] = 255
    return Image.fromarray(arr, "RGB")


def map_boxes(image: np.ndarray | Image.Image) -> list[tuple[int, int, int, int]]:
    """The boxes of a layout map (its bright regions), largest first: what a map asks for."""
    grey = np.asarray(image.convert("L")) if not isinstance(image, np.ndarray) else np.asarray(image).mean(axis=-1)
    from labkit.toyworld.detect import label_components

    labels, n = label_components(grey > 127)
    out = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        out.append((len(ys), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
    return [b for _, b in sorted(out, key=lambda t: -t[0])]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_radius(box: Sequence[int], size: int) -> float:
    """The radius (fraction of the canvas) of a circle whose box is `box`: a box's size in the toy world's units."""
    return math.sqrt((box[2] - box[0]) * (box[3] - box[1])) / 2 / size


__all__ = ["CAPTION_TEMPLATES", "GRID", "HELDOUT_CELLS", "HELDOUT_RADII", "RADIUS_RANGE", "LayoutItem", "box_radius",
           "cell_of", "iou", "layout_map", "make_layout_item", "map_boxes", "object_box", "sample_layout", "split_of"]
