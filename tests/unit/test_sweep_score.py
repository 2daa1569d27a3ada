"""A sweep's `toyworld` score: GenEval's categories of each image's prompt, beside the per-attribute adherence."""

from __future__ import annotations

import logging

from PIL import Image

from labkit.sweeps.runner import score_images
from labkit.sweeps.spec import scorer_metrics
from labkit.toyworld import Obj, Scene, render


def _png(tmp_path, name, *objs):
    path = tmp_path / f"{name}.png"
    Image.fromarray(render(Scene(tuple(objs)))).save(path)
    return path


def test_toyworld_score_reports_the_categories_of_the_prompts_and_counts_the_skipped(tmp_path, caplog):
    three = _png(tmp_path, "three", *(Obj("circle", "blue", "small", p) for p in ("left", "centre", "right")))
    pair = _png(tmp_path, "pair", Obj("square", "red", "large", "left"), Obj("circle", "green", "small", "right"))
    images = [(three, "three blue circles"), (pair, "four blue circles"),
              (pair, "a red square left of a green circle"), (pair, "a green square above a red circle"),
              (pair, "a large red square on the left and a small green circle on the right"),
              (pair, "a hexagon, sks style")]
    with caplog.at_level(logging.WARNING, logger="labkit.sweeps.runner"):
        scores = score_images("toyworld", images)
    assert scores["geneval.counting"] == 0.5 and scores["geneval.position"] == 0.5
    assert scores["geneval.two_objects"] == 1.0 and scores["geneval.colour_attribution"] == 1.0
    assert scores["geneval.overall"] == 0.75 and "geneval.colours" not in scores
    assert scores["geneval.skipped"] == 1.0 and "a hexagon, sks style" in caplog.text
    # per-attribute adherence: only the prompt that names every object's size and position
    assert scores["adherence.images"] == 1.0 and scores["adherence.all_correct"] == 1.0
    assert score_images("none", images) == {}
    # the names a spec's `metrics:` may use with `score: toyworld`, checked before a sweep runs, are the ones it writes
    assert set(scores) <= scorer_metrics("toyworld") and "adherence.all_corect" not in scorer_metrics("toyworld")
