"""Toy layouts as the toy ControlNet's user and its benchmark rely on them: the map's box is the box the detector
finds around the true picture, the held-out split really holds positions and sizes out of training, and the
layout score gives a true picture full marks and an empty or misplaced one none."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labkit.errors import InvalidParameter
from labkit.toyworld.detect import detect, foreground_boxes
from labkit.toyworld.layout import (
    HELDOUT_CELLS,
    HELDOUT_RADII,
    RADIUS_RANGE,
    cell_of,
    iou,
    layout_map,
    make_layout_item,
    map_boxes,
    split_of,
)
from labkit.toyworld.layout_score import heldout_layouts, judge_layout, score_layouts
from labkit.toyworld.scenes import BASE_SHAPES, COLOURS, Obj, Scene, render


def _in_band(radius: float) -> bool:
    return any(lo <= radius < hi for lo, hi in HELDOUT_RADII)


def test_training_layouts_never_use_a_held_out_cell_or_size_and_held_out_ones_use_both():
    train = [make_layout_item(0, i, "train").obj for i in range(400)]
    held = [make_layout_item(0, i, "heldout").obj for i in range(200)]
    assert not any(cell_of(*o.xy) in HELDOUT_CELLS or _in_band(o.radius) for o in train)
    assert all(cell_of(*o.xy) in HELDOUT_CELLS and _in_band(o.radius) for o in held)
    # the geometry is really continuous: many sizes and places, in range, all colour x shape pairs drawn
    assert len({round(o.radius, 4) for o in train}) > 200 and len({cell_of(*o.xy) for o in train}) > 25
    assert all(RADIUS_RANGE[0] <= o.radius <= RADIUS_RANGE[1] for o in train + held)
    assert {(o.colour, o.shape) for o in train} == {(c, s) for c in COLOURS for s in BASE_SHAPES}


def test_an_item_is_the_same_whenever_it_is_made_and_its_caption_names_colour_and_shape_only():
    a, b = make_layout_item(3, 17), make_layout_item(3, 17)
    assert a == b and a != make_layout_item(3, 18)
    words = set(a.caption.replace(",", "").split())
    assert {a.obj.colour, a.obj.shape} <= words
    assert not words & {"left", "right", "top", "bottom", "centre", "small", "large"}


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_the_map_box_is_what_the_detector_finds_around_the_true_picture(split):
    for i in range(40):
        item = make_layout_item(1, i, split)
        (found,) = detect(item.image())
        assert found.bbox == item.box and (found.colour, found.shape) == (item.obj.colour, item.obj.shape)
        assert map_boxes(layout_map([item.box], item.size)) == [item.box]


def test_foreground_boxes_are_the_detections_boxes_largest_first():
    scene = Scene((Obj("circle", "red", "small", "left"), Obj("square", "blue", "large", "right")))
    img = render(scene)
    boxes = foreground_boxes(img)
    assert len(boxes) == 2 and sorted(boxes) == sorted(d.bbox for d in detect(img))
    assert (boxes[0][2] - boxes[0][0]) > (boxes[1][2] - boxes[1][0])  # the large square first


def test_iou_of_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_a_layout_map_is_white_boxes_on_black_and_refuses_a_box_off_the_canvas():
    m = np.asarray(layout_map([(2, 3, 10, 20), (40, 40, 60, 50)], 64))
    assert m.shape == (64, 64, 3) and set(np.unique(m)) == {0, 255}
    assert (m[3:20, 2:10] == 255).all() and m[2, 2].max() == 0 and m[20, 9].max() == 0
    with pytest.raises(InvalidParameter) as e:
        layout_map([(50, 50, 70, 60)], 64)
    assert "[50, 50, 70, 60]" in e.value.message and "x1 <= size" in e.value.fix


def test_held_out_layouts_cycle_through_every_colour_and_shape():
    items = heldout_layouts(28, seed=2)
    assert {(it.obj.colour, it.obj.shape) for it in items} == {(c, s) for c in COLOURS for s in BASE_SHAPES}
    assert all(split_of(it.obj) == "heldout" for it in items)
    assert all(it.caption == f"a {it.obj.colour} {it.obj.shape}" for it in items)


def test_the_score_gives_true_pictures_full_marks_and_empty_or_misplaced_ones_none():
    def truth(prompts, maps, seeds):
        items = {it.caption + str(it.box): it for it in heldout_layouts(12, seed=0)}
        return [Image.fromarray(items[p + str(map_boxes(m)[0])].image()) for p, m in zip(prompts, maps, strict=True)]

    rates = score_layouts(truth, n=12, seed=0, batch=5).rates
    assert rates == {"mean_iou": 1.0, "iou_at_0.5": 1.0, "colour": 1.0, "shape": 1.0, "all_correct": 1.0}

    def empty(prompts, maps, seeds):
        return [Image.new("RGB", (64, 64), (18, 18, 22)) for _ in prompts]

    score = score_layouts(empty, n=6, seed=0)
    assert score.rates["mean_iou"] == 0.0 and score.rates["all_correct"] == 0.0 and score.failures() == list(range(6))

    item = heldout_layouts(1, seed=0)[0]
    far = Obj(item.obj.shape, item.obj.colour, "small", "left", centre=(1 - item.obj.xy[0], 1 - item.obj.xy[1]),
              scale=item.obj.radius)
    v = judge_layout(render(Scene((far,))), item)
    assert v["colour_ok"] and v["shape_ok"] and v["iou"] < 0.5 and not v["all_correct"]
