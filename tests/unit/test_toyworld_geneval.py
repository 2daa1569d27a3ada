"""GenEval's categories in the toy world: prompts, held-out split, the per-category check, and the detector's
accuracy on ground-truth renders of every category (with blur and noise)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from labkit.errors import InvalidParameter, LabkitError
from labkit.toyworld import BACKGROUNDS, Obj, Scene, detect, render
from labkit.toyworld.captions import is_held_out
from labkit.toyworld.data import make_item
from labkit.toyworld.geneval import (
    CATEGORIES,
    KINDS,
    Thing,
    category_prompts,
    check,
    check_categories,
    check_mix,
    is_held_out_count,
    is_held_out_relation,
    read,
    scene_for,
    score_prompts,
    summarise,
    wilson,
)


def degrade(img: np.ndarray, rng: np.random.Generator, sigma: float = 8.0, blur: float = 0.8) -> np.ndarray:
    """Soft and noisy, as a small diffusion model's sample."""
    soft = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(blur * img.shape[1] / 64)))
    return np.clip(np.rint(soft.astype(np.float32) + rng.normal(0.0, sigma, img.shape)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("category", CATEGORIES)
def test_detector_is_right_on_blurred_noisy_renders_of_every_category(category):
    rng = np.random.default_rng(7)
    backgrounds = tuple(BACKGROUNDS)
    cases = category_prompts(category, 80, seed=11)
    right = 0
    for i, (text, scene) in enumerate(cases):
        img = degrade(render(replace(scene, background=backgrounds[i % len(backgrounds)])), rng)
        ok, why = check(read(text), category, detect(img))
        right += ok
    assert right / len(cases) >= 0.99, category


def test_each_category_asks_its_own_question():
    kinds = {c: {read(t).kind for t, _ in category_prompts(c, 12, seed=0)} for c in CATEGORIES}
    assert kinds["counting"] == {"count"} and kinds["position"] == {"objects", "relation"}
    attribution = category_prompts("colour_attribution", 12, seed=0)
    assert {len(s.objects) for _, s in attribution} == {2, 3}
    assert all(len({o.colour for o in s.objects}) == len(s.objects) for _, s in attribution)
    counts = {len(s.objects) for _, s in category_prompts("counting", 40, seed=0)}
    assert counts == {2, 3, 4}
    # the first two categories are the earlier benchmark's prompts, so its figures stay comparable
    from labkit.toyworld.captions import prompts

    assert [t for t, _ in category_prompts("single_object", 5, seed=3)] == prompts("heldout", 5, seed=3, n_objects=1)
    assert [t for t, _ in category_prompts("two_objects", 5, seed=3)] == prompts("heldout", 5, seed=4, n_objects=2)


def test_held_out_prompts_combine_what_training_never_shows():
    for _, scene in category_prompts("counting", 30, seed=1):
        o = scene.objects[0]
        assert is_held_out_count(len(scene.objects), o.shape, o.colour)
    for text, _ in category_prompts("position", 30, seed=1):
        r = read(text)
        assert (r.kind == "relation" and is_held_out_relation(r.relation, *r.things)) or all(
            is_held_out(o) for o in r.scene.objects)
    # 400 training items of every kind: not one held-out combination
    for i in range(400):
        scene, text = make_item(0, i, "train", mix={k: 1.0 for k in KINDS})
        r = read(text)
        if r.kind == "count":
            assert not is_held_out_count(r.count, r.things[0].shape, r.things[0].colour)
        elif r.kind == "relation":
            assert not is_held_out_relation(r.relation, *r.things)
        else:
            assert not any(is_held_out(o) for o in scene.objects)


def test_count_and_relation_scenes_have_one_layout_each_and_answer_their_caption():
    """Their captions name no place: one layout per count and per relation (random ones, a small model averages)."""
    layouts: dict[tuple, set] = {}
    for i in range(200):
        scene, text = make_item(0, i, "train", mix={"count": 1.0, "relation": 1.0})
        r = read(text)
        key = (r.kind, r.count if r.kind == "count" else r.relation)
        layouts.setdefault(key, set()).add(tuple(sorted((o.position, o.size) for o in scene.objects)))
        assert check(r, "counting" if r.kind == "count" else "position", detect(render(scene)))[0], text
    assert len(layouts) == 3 + 4 and all(len(v) == 1 for v in layouts.values()), layouts


def test_prompts_are_read_as_the_issue_writes_them():
    r = read("three blue circles")
    assert (r.kind, r.count, r.things) == ("count", 3, (Thing("circle", "blue"),)) and r.categories == ("counting",)
    r = read("a red square left of a green circle")
    assert r.kind == "relation" and r.relation == "left of" and r.things[1] == Thing("circle", "green")
    assert read("a small red circle on the left").categories == ("single_object", "colours", "position")
    assert read("left: one small red circle; top: one large blue square; right: one small green diamond"
                ).categories == ("colour_attribution",)


@pytest.mark.parametrize("bad, reason", [
    ("a hexagon, sks style", "no colour"),
    ("three red circles left of a blue square", "both counts and relates"),
    ("two red circles and three blue squares", "2 counts"),
    ("a red circle left of a blue circle", "two circles"),
    ("three blue circles on the left", "no position"),
])
def test_prompts_the_benchmark_cannot_read_are_skipped_with_the_reason(bad, reason):
    with pytest.raises(LabkitError, match=reason):
        read(bad)
    img = render(Scene((Obj("circle", "red", "small", "left"),)))
    summary, skipped = score_prompts([(img, bad), (img, "a small red circle on the left")])
    assert skipped == [{"prompt": bad, "reason": skipped[0]["reason"]}] and reason in skipped[0]["reason"]
    assert summary["single_object"]["n"] == 1 and summary["single_object"]["score"] == 1.0


def test_the_check_fails_what_is_wrong():
    three = Scene(tuple(Obj("circle", "blue", "small", p) for p in ("left", "centre", "right")))
    two = Scene(tuple(Obj("circle", "blue", "small", p) for p in ("left", "right")))
    assert check(read("three blue circles"), "counting", detect(render(three)))[0]
    ok, why = check(read("three blue circles"), "counting", detect(render(two)))
    assert not ok and why == "found 2 objects, asked for 3"
    layout = Scene((Obj("square", "red", "large", "left"), Obj("circle", "green", "small", "right")))
    assert check(read("a red square left of a green circle"), "position", detect(render(layout)))[0]
    ok, why = check(read("a red square right of a green circle"), "position", detect(render(layout)))
    assert not ok and "not right of" in why
    assert check(read("a green square above a red circle"), "position", detect(render(layout))) == (
        False, "the square is not above the circle")
    swapped = Scene((Obj("square", "green", "large", "left"), Obj("circle", "red", "small", "right")))
    text = "a large red square on the left and a small green circle on the right"
    assert check(read(text), "two_objects", detect(render(swapped)))[0]  # the shapes are there …
    assert not check(read(text), "colour_attribution", detect(render(swapped)))[0]  # … the colours swapped
    with pytest.raises(InvalidParameter, match="not a counting prompt"):
        check(read(text), "counting", [])


def test_wilson_interval_and_summary():
    lo, hi = wilson(190, 200)
    assert (round(lo, 3), round(hi, 3)) == (0.910, 0.973)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)
    s = summarise({"counting": [True, False, False, False], "colours": [True, True]})
    assert s["counting"]["score"] == 0.25 and s["counting"]["n"] == 4 and s["overall"] == pytest.approx(0.625)
    assert list(s) == ["counting", "colours", "overall"]  # CATEGORIES order
    assert summarise({})["overall"] is None


def test_categories_and_data_mix_are_validated():
    assert check_categories("position,counting") == ("counting", "position")
    assert check_categories(None) == CATEGORIES
    with pytest.raises(InvalidParameter, match="counts"):
        check_categories("counts")
    assert check_mix("single=1,count=3") == {"single": 0.25, "count": 0.75}
    for bad in ("single=1,fourfold=2", "single=-1", "single", "single=0"):
        with pytest.raises(InvalidParameter):
            check_mix(bad)
    with pytest.raises(InvalidParameter, match="scene kind"):
        scene_for(np.random.default_rng(0), "five")
