"""How well a picture follows its layout: the box the detector finds against the map's box, and the prompt's
colour and shape — the toy ControlNet's benchmark (`labkit eval toycontrol`) and its training check.

    result = score_layouts(draw, n=200, seed=0)   # draw(prompts, maps, seeds) -> images
    result.rates   # {"mean_iou": 0.9, "iou_at_0.5": 0.98, "colour": 1.0, "shape": 0.97, "all_correct": …}

Held-out layouts only (`labkit.toyworld.layout`: centre cells and radius bands the ControlNet never trained
on), every colour × shape pair in turn. The object judged is the largest the detector finds; a picture with
no object scores IoU 0 and fails colour and shape. `all_correct`: IoU ≥ 0.5, colour and shape right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from labkit.toyworld.layout import CAPTION_TEMPLATES, LayoutItem, iou, layout_map, make_layout_item, object_box
from labkit.toyworld.scenes import BASE_SHAPES, COLOURS

#: An IoU at or above this counts as "in the box".
IOU_HIT = 0.5
RATES = ("mean_iou", "iou_at_0.5", "colour", "shape", "all_correct")

Draw = Callable[[Sequence[str], Sequence[Any], Sequence[int]], Sequence[Any]]


@dataclass
class LayoutScore:
    """Per-item verdicts (dicts: prompt, box, found box, iou, colour / shape found and right) and the rates."""

    items: list[dict[str, Any]] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    maps: list[Any] = field(default_factory=list)

    @property
    def rates(self) -> dict[str, float]:
        n = len(self.items) or 1
        return {"mean_iou": sum(v["iou"] for v in self.items) / n,
                "iou_at_0.5": sum(v["iou"] >= IOU_HIT for v in self.items) / n,
                "colour": sum(v["colour_ok"] for v in self.items) / n,
                "shape": sum(v["shape_ok"] for v in self.items) / n,
                "all_correct": sum(v["all_correct"] for v in self.items) / n}

    def failures(self) -> list[int]:
        """Indices of the items that are not all correct."""
        return [i for i, v in enumerate(self.items) if not v["all_correct"]]


def heldout_layouts(n: int, seed: int = 0) -> list[LayoutItem]:
    """`n` held-out layouts; item i names colour × shape pair i (mod 28) so every pair is judged equally."""
    pairs = [(c, h) for h in BASE_SHAPES for c in COLOURS]
    out = []
    for i in range(n):
        colour, shape = pairs[i % len(pairs)]
        drawn = make_layout_item(seed, i, "heldout", shapes=(shape,))
        obj = replace(drawn.obj, colour=colour)
        # the box follows the colour too (a dim colour's anti-aliased rim is fainter against the background)
        out.append(LayoutItem(obj, object_box(obj, drawn.size), CAPTION_TEMPLATES[0].format(c=colour, h=shape),
                              drawn.size))
    return out


def judge_layout(image: Any, item: LayoutItem) -> dict[str, Any]:
    """The verdict of one picture against its layout item."""
    from labkit.toyworld.detect import detect

    found = detect(image)
    best = max(found, key=lambda d: d.area) if found else None
    box = tuple(best.bbox) if best else None
    v = {"prompt": item.caption, "box": list(item.box), "found_box": list(box) if box else None,
         "iou": iou(item.box, box) if box else 0.0, "colour": best.colour if best else None,
         "shape": best.shape if best else None, "objects": len(found)}
    v["colour_ok"] = v["colour"] == item.obj.colour
    v["shape_ok"] = v["shape"] == item.obj.shape
    v["all_correct"] = bool(v["iou"] >= IOU_HIT and v["colour_ok"] and v["shape_ok"])
    return v


def score_layouts(draw: Draw, n: int = 200, seed: int = 0, batch: int = 25) -> LayoutScore:
    """Draw `n` held-out layouts with `draw(prompts, maps, seeds)` (in batches) and judge each picture."""
    result = LayoutScore()
    items = heldout_layouts(n, seed)
    for i in range(0, n, batch):
        chunk = items[i:i + batch]
        maps = [layout_map([it.box], it.size) for it in chunk]
        images = draw([it.caption for it in chunk], maps, [seed * 100_000 + i + j for j in range(len(chunk))])
        for it, m, im in zip(chunk, maps, images, strict=True):
            result.items.append(judge_layout(im, it))
            result.images.append(im)
            result.maps.append(m)
    return result


__all__ = ["IOU_HIT", "RATES", "LayoutScore", "heldout_layouts", "judge_layout", "score_layouts"]
