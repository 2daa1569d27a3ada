"""A classical detector for toy-world images, and the per-attribute verdict the evaluator uses.

No learned model: the detector finds the background colour on the image border, segments every
pixel far enough from it, splits the foreground into connected components, and then reads each
component's attributes:

- colour: the median colour of the component's core pixels, matched to the nearest palette colour;
- shape: the best score in a table of shape classifiers (by default, one per entry of
  `SHAPE_GEOMETRY`, each comparing the component's soft mask with the shape's template rendered at
  the same centroid and area);
- size: the radius that the best shape needs to cover the measured area, nearest named size;
- position: the nearest named anchor to the centroid.

To add a shape, add it to `scenes.SHAPE_GEOMETRY` (the template classifier follows by itself), or
pass `classifiers={**default_classifiers(), "sks": my_scorer}` with any `Blob -> float` scorer.

Everything works in fractions of the image size, so 32² samples from a small model are read the
same way as 64² renders. Noise and blur are tolerated by smoothing before thresholding, using the
median colour of each component, and by scoring templates against a soft (anti-aliased) mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import permutations
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.errors import InvalidParameter
from labkit.toyworld.scenes import COLOURS, SHAPE_GEOMETRY, Obj, Scene, coverage, nearest_position, size_name

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

# A pixel is foreground when its (3×3-smoothed) RGB distance from the background exceeds this.
# Every palette colour is >= 160 from every background, so 60 sits well below half contrast and
# well above the noise (sigma 8 per channel becomes ~5 after smoothing).
FOREGROUND_THRESHOLD = 60.0
# Components smaller than this fraction of the image are specks of noise (a small triangle is ~1.3%).
MIN_AREA_FRACTION = 0.003

_PALETTE_NAMES = tuple(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Blob:
    """One connected foreground component, as the shape classifiers see it.

    `alpha` is the soft mask (coverage estimate in [0, 1]) over the window whose top-left pixel is
    (`y0`, `x0`) in the image; `cx`, `cy` are the alpha-weighted centroid and `area` the summed
    alpha, both in pixels of the full image (`height` × `width`).
    """

    alpha: np.ndarray
    y0: int
    x0: int
    cx: float
    cy: float
    area: float
    height: int
    width: int


ShapeClassifier = Callable[[Blob], float]


@dataclass(frozen=True)
class Detection:
    """One detected object: its named attributes and measurements (pixels of the input image).

    `bbox` is (x0, y0, x1, y1), end-exclusive; `radius` is in pixels for the chosen shape;
    `shape_score` is the winning classifier's score and `shape_margin` its lead over the runner-up;
    `rgb` the measured colour; `xy` the centre as fractions of the image (as `Obj.xy`).
    """

    colour: str
    shape: str
    size: str
    position: str
    centre: tuple[float, float]
    area: float
    bbox: tuple[int, int, int, int]
    radius: float
    shape_score: float
    shape_margin: float
    rgb: tuple[int, int, int]
    xy: tuple[float, float]

    def to_obj(self) -> Obj:
        """The detection as a scene object (named attributes only)."""
        return Obj(self.shape, self.colour, self.size, self.position)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = asdict(self)
        d["centre"] = [float(v) for v in self.centre]
        d["bbox"] = [int(v) for v in self.bbox]
        d["rgb"] = [int(v) for v in self.rgb]
        d["xy"] = [float(v) for v in self.xy]
        return d


# --- shape classifiers --------------------------------------------------------------------------


def _blur_matrices(n: int, sigmas: Sequence[float]) -> np.ndarray:
    """(len(sigmas), n, n) matrices M with M @ x = x blurred along its first axis (zero outside)."""
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    mats = []
    for s in sigmas:
        if s <= 0:
            mats.append(np.eye(n, dtype=np.float32))
            continue
        k = np.exp(-0.5 * (d / s) ** 2)
        # Normalise by the full (untruncated) kernel mass, so mass leaving the window is lost as in
        # a zero-padded convolution rather than piled onto the border.
        r = np.arange(-int(3 * s) - n, int(3 * s) + n + 1)
        mats.append((k / np.exp(-0.5 * (r / s) ** 2).sum()).astype(np.float32))
    return np.stack(mats)


# Blur levels (pixels, at 64²) a template is tried at. Generated samples are softer than renders:
# comparing a blurred blob with a sharp template penalises the right shape as much as the wrong
# one, and hexagon vs circle is then decided by noise.
TEMPLATE_BLURS: tuple[float, ...] = (0.0, 0.6, 1.0, 1.4)
TEMPLATE_SCALES: tuple[float, ...] = (0.96, 1.0, 1.04)


def template_classifier(shape: str, scales: Sequence[float] = TEMPLATE_SCALES,
                        blurs: Sequence[float] = TEMPLATE_BLURS) -> ShapeClassifier:
    """A scorer that compares a blob with `shape`'s template: the best soft IoU over scales and blurs.

    The template is rendered at the blob's centroid with the radius that gives the blob's area
    (shapes are centred on their centroids, and blur keeps the summed coverage), so the score does
    not depend on where or how big the object is. `blurs` are Gaussian sigmas in pixels of a 64²
    image, scaled to the blob's image size.
    """
    geom = SHAPE_GEOMETRY[shape]

    def score(blob: Blob) -> float:
        h, w = blob.alpha.shape
        base = math.sqrt(max(blob.area, 1e-6) / geom.unit_area)
        sig = [b * blob.width / 64.0 for b in blurs]
        my, mx = _blur_matrices(h, sig), _blur_matrices(w, sig)
        best = 0.0
        for k in scales:
            sharp = coverage(shape, blob.cx - blob.x0, blob.cy - blob.y0, base * k, h, w)
            t = my @ sharp @ mx.transpose(0, 2, 1)  # every blur level at once
            inter = np.minimum(t, blob.alpha).sum(axis=(1, 2))
            union = np.maximum(t, blob.alpha).sum(axis=(1, 2))
            best = max(best, float((inter / np.maximum(union, 1e-6)).max()))
        return best

    score.__name__ = f"template_{shape}"
    return score


def default_classifiers(shapes: Sequence[str] | None = None) -> dict[str, ShapeClassifier]:
    """The table of shape classifiers: one template scorer per shape (all of `SHAPE_GEOMETRY` by default)."""
    return {s: template_classifier(s) for s in (shapes if shapes is not None else SHAPE_GEOMETRY)}


# --- image helpers ------------------------------------------------------------------------------


def _as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Float32 (H, W, 3) RGB in 0..255 from a uint8/float array or a PIL image."""
    if not isinstance(image, np.ndarray):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 8:
        raise InvalidParameter(
            f"Expected an (H, W, 3) RGB image of at least 8×8, got shape {arr.shape}.", value=arr.shape,
            fix="Pass a uint8 RGB array, a float array in [0, 1], or a PIL image.",
        )
    arr = arr[..., :3]
    if np.issubdtype(arr.dtype, np.floating):
        # Floats are taken as [0, 1] (what pipelines return with output_type="np").
        return np.clip(arr.astype(np.float32) * 255.0, 0, 255)
    return arr.astype(np.float32)


def _box3(a: np.ndarray) -> np.ndarray:
    """3×3 mean filter with edge replication."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


def _dilate(mask: np.ndarray) -> np.ndarray:
    """One step of 8-neighbour binary dilation."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a boolean mask: (labels, count), 0 being background.

    A plain breadth-first flood fill over the foreground pixels, so the toy world needs no scipy.
    """
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    n = 0
    ys, xs = np.nonzero(mask)
    for sy, sx in zip(ys.tolist(), xs.tolist(), strict=True):
        if labels[sy, sx]:
            continue
        n += 1
        labels[sy, sx] = n
        stack = [(sy, sx)]
        while stack:
            y, x = stack.pop()
            for ny in (y - 1, y, y + 1):
                if ny < 0 or ny >= h:
                    continue
                for nx in (x - 1, x, x + 1):
                    if 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = n
                        stack.append((ny, nx))
    return labels, n


def estimate_background(img: np.ndarray) -> np.ndarray:
    """Background RGB: the per-channel median of the two-pixel border (objects keep off the edge)."""
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                             img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    return np.median(border, axis=0)


def nearest_colour(rgb: Sequence[float]) -> str:
    """Name of the palette colour nearest to `rgb` (Euclidean in RGB)."""
    d = ((_PALETTE - np.asarray(rgb, dtype=np.float32)) ** 2).sum(axis=1)
    return _PALETTE_NAMES[int(np.argmin(d))]


# --- the detector -------------------------------------------------------------------------------


def _foreground(img: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Steps 1-3 of `detect`: the background colour, each pixel's distance from it, and the labelled
    8-connected foreground components (labels, count)."""
    # 1. background
    bg = estimate_background(img)
    # 2. foreground: smoothing first so noise cannot push single pixels over the threshold
    dist = np.sqrt(((img - bg) ** 2).sum(axis=2))
    # 3. components
    labels, n = label_components(_box3(dist) > threshold)
    return bg, dist, labels, n


def foreground_boxes(image: np.ndarray | Image.Image, threshold: float = FOREGROUND_THRESHOLD,
                     min_area_fraction: float = MIN_AREA_FRACTION) -> list[tuple[int, int, int, int]]:
    """The bounding boxes (x0, y0, x1, y1; pixels, end-exclusive) of the objects `detect` would find, largest
    first — the same boxes as their `Detection.bbox`, without naming any attribute (cheap)."""
    img = _as_array(image)
    h, w = img.shape[:2]
    _, _, labels, n = _foreground(img, threshold)
    boxes = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        if len(ys) >= min_area_fraction * h * w:
            boxes.append((len(ys), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
    return [b for _, b in sorted(boxes, key=lambda t: -t[0])]



def detect(
    image: np.ndarray | Image.Image,
    classifiers: Mapping[str, ShapeClassifier] | None = None,
    threshold: float = FOREGROUND_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
) -> list[Detection]:
    """Find the objects in a toy-world image and name their colour, shape, size and position.

    Steps: (1) estimate the background from the border; (2) threshold the smoothed distance from it;
    (3) label 8-connected components and drop specks below `min_area_fraction` of the image;
    (4) per component, take the median core colour, build a soft mask by projecting each pixel onto
    the (colour − background) direction, and score every entry of `classifiers`
    (`default_classifiers()` when None). Detections come back sorted left to right, top to bottom.
    """
    img = _as_array(image)
    h, w = img.shape[:2]
    bg, dist, labels, n = _foreground(img, threshold)
    table = dict(classifiers) if classifiers is not None else default_classifiers()
    if not table:
        raise InvalidParameter("No shape classifiers given.", value=classifiers,
                               fix="Pass default_classifiers() or a non-empty mapping.")
    found: list[Detection] = []
    for k in range(1, n + 1):
        comp = labels == k
        if comp.sum() < min_area_fraction * h * w:
            continue
        # 4a. colour: the core is the brightest-contrast part, free of edge blending with the background
        cd = dist[comp]
        core = comp & (dist >= 0.7 * np.percentile(cd, 90))
        rgb = np.median(img[core], axis=0)
        colour = nearest_colour(rgb)
        # 4b. soft mask: coverage estimate from the projection onto colour - background
        region = _dilate(_dilate(comp)) & ((labels == 0) | comp)
        ys, xs = np.nonzero(region)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        direction = rgb - bg
        norm2 = float(direction @ direction) or 1.0
        alpha = np.clip(((img[y0:y1, x0:x1] - bg) @ direction) / norm2, 0.0, 1.0)
        alpha = np.where(region[y0:y1, x0:x1], alpha, 0.0).astype(np.float32)
        area = float(alpha.sum())
        if area <= 0:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1]
        cx = float((alpha * (gx + 0.5)).sum() / area)
        cy = float((alpha * (gy + 0.5)).sum() / area)
        blob = Blob(alpha, int(y0), int(x0), cx, cy, area, h, w)
        # 4c. shape: best classifier score; size from the radius that shape needs for this area
        scores = sorted(((float(fn(blob)), name) for name, fn in table.items()), reverse=True)
        best_score, shape = scores[0]
        margin = best_score - scores[1][0] if len(scores) > 1 else best_score
        unit_area = SHAPE_GEOMETRY[shape].unit_area if shape in SHAPE_GEOMETRY else math.pi
        radius = math.sqrt(area / unit_area)
        cys, cxs = np.nonzero(comp)
        found.append(Detection(
            colour=colour, shape=shape, size=size_name(radius / w),
            position=nearest_position(cx / w, cy / h), centre=(cx, cy), area=area,
            bbox=(int(cxs.min()), int(cys.min()), int(cxs.max()) + 1, int(cys.max()) + 1),
            radius=radius, shape_score=best_score, shape_margin=margin,
            rgb=(int(round(rgb[0])), int(round(rgb[1])), int(round(rgb[2]))), xy=(cx / w, cy / h),
        ))
    return sorted(found, key=lambda d: (d.centre[0], d.centre[1]))


# --- verdict ------------------------------------------------------------------------------------

ATTRIBUTES = ("colour", "shape", "size", "position")


def _pair(expected: Sequence[Obj], found: Sequence[Detection]) -> list[tuple[Obj, Detection | None]]:
    """Pair expected objects with detections, maximising matching attributes (then closeness)."""
    if not found:
        return [(e, None) for e in expected]
    best: tuple[tuple[float, float], list[tuple[Obj, Detection | None]]] | None = None
    slots: list[Detection | None] = list(found) + [None] * len(expected)
    for perm in permutations(range(len(slots)), len(expected)):
        pairs = [(e, slots[i]) for e, i in zip(expected, perm, strict=True)]
        hits = sum(getattr(d, a) == getattr(e, a) for e, d in pairs if d is not None for a in ATTRIBUTES)
        dist = sum(
            math.dist(e.xy, d.xy) if d is not None else 10.0
            for e, d in pairs
        )
        key = (hits, -dist)
        if best is None or key > best[0]:
            best = (key, pairs)
    assert best is not None
    return best[1]


def verdict(expected: Scene | str, image: np.ndarray | Image.Image | Sequence[Detection],
            classifiers: Mapping[str, ShapeClassifier] | None = None) -> dict[str, Any]:
    """Check an image against what a scene or caption asked for, attribute by attribute.

    `expected` is a `Scene` or a caption (parsed with `captions.parse`); `image` is an image or the
    detections already made from it. Expected objects are paired with detections so as to agree on
    as many attributes as possible; an attribute is correct when every expected object's partner
    has it right (an unpaired object gets every attribute wrong). `count` is whether exactly as
    many objects were found as asked for. Returns a dict of booleans `colour`, `shape`, `size`,
    `position`, `count`, `all_correct`, plus `expected` and `detected` (lists of dicts) for reports.
    """
    if isinstance(expected, str):
        from labkit.toyworld.captions import parse

        expected = parse(expected)
    if isinstance(image, (list, tuple)) and all(isinstance(d, Detection) for d in image):
        found = list(image)
    else:
        found = detect(image, classifiers=classifiers)  # type: ignore[arg-type]
    pairs = _pair(expected.objects, found)
    out: dict[str, Any] = {
        a: all(d is not None and getattr(d, a) == getattr(e, a) for e, d in pairs) for a in ATTRIBUTES
    }
    out["count"] = len(found) == len(expected.objects)
    out["all_correct"] = all(out[a] for a in (*ATTRIBUTES, "count"))
    out["expected"] = [o.to_dict() for o in expected.objects]
    out["detected"] = [d.to_dict() for d in found]
    return out


__all__ = [
    "ATTRIBUTES", "FOREGROUND_THRESHOLD", "MIN_AREA_FRACTION", "Blob", "Detection", "ShapeClassifier",
    "default_classifiers", "detect", "estimate_background", "foreground_boxes", "label_components", "nearest_colour",
    "template_classifier", "verdict",
]
