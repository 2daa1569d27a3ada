"""The adherence benchmark's plumbing: GenEval's categories, every prompt scored, one run with the table,
a failure grid per category and the prompts it skipped."""

from __future__ import annotations

import json
from pathlib import Path

from labkit.testing import build_tiny_sd15
from labkit.toyworld.evaluate import ATTRS, evaluate
from labkit.toyworld.geneval import CATEGORIES


def test_eval_logs_categories_table_and_failure_grids(lab, tmp_path, search_runs):
    folder = build_tiny_sd15(tmp_path / "sd15")
    report = evaluate(lab, model=str(folder), n=2, seed=5, steps=2)
    assert len(report.rows) == 12 and [r["category"] for r in report.rows] == [c for c in CATEGORIES for _ in "ab"]
    # Random weights draw noise, so the detector finds no shape where the prompt asked for one.
    assert report.single["all_correct"] == 0.0 and report.two_objects_all_correct == 0.0
    assert set(report.single) == set(ATTRS)
    assert list(report.categories) == list(CATEGORIES) and report.overall == 0.0
    for v in report.categories.values():
        assert v["n"] == 2 and v["correct"] == 0 and v["ci"][0] == 0.0 and 0.5 < v["ci"][1] < 1.0
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.run_id == report.run_id and run.data.params["n"] == "2"
    assert run.data.metrics["single.all_correct"] == 0.0 and run.data.metrics["geneval.counting"] == 0.0
    assert run.data.metrics["geneval.overall"] == 0.0 and run.data.metrics["geneval.position.n"] == 2
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    table = json.loads((art / "verdicts.json").read_text())
    assert len(table["data"]) == 12 and {"prompt", "category", "correct", "why"} <= set(table["columns"])
    assert (art / "failures.png").is_file() and all((art / f"failures_{c}.png").is_file() for c in CATEGORIES)
    summary = (art / "summary.txt").read_text()
    assert "colour_attribution" in summary and "95% CI" in summary and "overall (mean)" in summary
    # a category scores the same alone as with the others (same prompts, same seeds)
    again = evaluate(lab, model=str(folder), n=2, seed=5, steps=2, categories="counting")
    assert [r["detected"] for r in again.rows] == [r["detected"] for r in report.rows if r["category"] == "counting"]
    assert list(again.categories) == ["counting"] and again.single == {}


def test_eval_skips_prompts_it_cannot_read_and_says_why(lab, tmp_path, search_runs):
    folder = build_tiny_sd15(tmp_path / "sd15")
    prompts = ["three blue circles", "a hexagon, sks style", "a red square left of a green circle"]
    report = evaluate(lab, model=str(folder), steps=1, prompts=prompts, categories=["counting", "position"])
    assert [r["prompt"] for r in report.rows] == [prompts[0], prompts[2]]
    assert [s["prompt"] for s in report.skipped] == ["a hexagon, sks style"]
    assert "colour" in report.skipped[0]["reason"]
    assert {c: v["n"] for c, v in report.categories.items()} == {"counting": 1, "position": 1}
    assert any("skipped 'a hexagon, sks style'" in line for line in report.lines())
    assert "2 scored of the given prompts" in report.lines()[0] and "held-out" not in report.lines()[0]
    assert report.to_dict()["two_objects_colours"] is None  # no two-object prompt: no figure, not 0 %
    assert not any(line.startswith("two objects") for line in report.lines())
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.data.metrics["skipped"] == 1.0
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    assert json.loads((art / "skipped.json").read_text())["data"][0][0] == "a hexagon, sks style"


def test_eval_with_nothing_to_score_is_refused_before_a_run(lab, tmp_path, search_runs):
    import pytest

    from labkit.errors import InvalidParameter

    folder = build_tiny_sd15(tmp_path / "sd15")
    with pytest.raises(InvalidParameter, match="n=0"):
        evaluate(lab, model=str(folder), n=0, steps=1)
    with pytest.raises(InvalidParameter, match="None of the 1 given prompt") as e:
        evaluate(lab, model=str(folder), steps=1, prompts=["a hexagon, sks style"], categories=["counting"])
    assert "a hexagon, sks style" in str(e.value) and e.value.fix
    with pytest.raises(InvalidParameter, match="seed -5 is outside"):  # numpy's bare ValueError before
        evaluate(lab, model=str(folder), n=1, steps=1, seed=-5)
    # held-out prompt j of category c renders with seed + c·n + j: the last one must be a valid seed too
    with pytest.raises(InvalidParameter, match="outside 0–4294967290"):
        evaluate(lab, model=str(folder), n=2, steps=1, seed=2**32 - 2, categories=["counting", "colours", "position"])
    assert search_runs(lab.config.tracking_uri) == []  # no empty run was logged
