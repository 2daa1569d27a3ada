"""The one toy prompt-adherence scorer (`labkit.toyworld.adherence`) that the toy eval, the toy recipes'
validation, sweep scoring and LoRA validation share — on real scenes drawn by the toy world."""

from __future__ import annotations

import pytest

from labkit.errors import InvalidParameter
from labkit.toyworld import Obj, Scene, parse, prompts, render, render_pil
from labkit.toyworld.adherence import ATTRS, both_colours, judge, judge_toy, rates, score


def _drawn(captions):
    return [render_pil(parse(c)) for c in captions]


def test_drawn_scenes_score_full_marks_against_their_own_captions():
    caps = prompts("heldout", n=12, seed=5, n_objects=1) + prompts("heldout", n=6, seed=6, n_objects=2)
    assert score(_drawn(caps), caps) == {a: 1.0 for a in ATTRS}


def test_a_wrong_caption_scores_lower_on_the_attribute_it_gets_wrong():
    images = _drawn(["a small red circle on the left"] * 2)
    right = score(images, "a small red circle on the left")
    wrong_colour = score(images, "a small blue circle on the left")
    wrong_place = score(images, ["a small red circle on the right", "a small red circle on the left"])
    assert right["all_correct"] == 1.0
    assert wrong_colour["colour"] == 0.0 and wrong_colour["all_correct"] == 0.0
    assert wrong_colour["shape"] == wrong_colour["position"] == 1.0  # only the colour was wrong
    assert wrong_place["position"] == wrong_place["all_correct"] == 0.5


def test_verdicts_say_what_was_expected_and_found_and_scenes_or_arrays_work_too():
    scene = Scene((Obj("square", "green", "large", "top"), Obj("circle", "red", "small", "bottom")))
    (v,) = judge([render(scene)], [scene])  # a Scene as the caption, a numpy array as the image
    assert v["all_correct"] and v["count"] and both_colours(v)
    assert len(v["expected"]) == 2 and {d["shape"] for d in v["detected"]} == {"square", "circle"}
    (alone,) = judge([render(Scene((Obj("square", "green", "large", "top"),)))], [scene])
    assert not alone["count"] and not both_colours(alone)


def test_counts_must_match_and_a_caption_outside_the_toy_world_is_no_score():
    images = _drawn(["a large red circle in the middle"])
    with pytest.raises(InvalidParameter, match="1 images for 2 captions") as err:
        judge(images, ["a large red circle in the middle", "a small blue square"])
    assert err.value.fix
    assert judge_toy(images, "a hexagon in sks style") is None
    assert judge_toy(images, "a large red circle on the left") == judge(images, "a large red circle on the left")


def test_rates_of_no_verdicts_are_zero_and_keep_the_order_asked_for():
    assert rates([], ("shape", "colour")) == {"shape": 0.0, "colour": 0.0}
    assert list(rates([{"colour": True, "shape": False}], ("shape", "colour"))) == ["shape", "colour"]
