"""The adherence benchmark's plumbing: every prompt scored, one run with the table and failures."""

from __future__ import annotations

import json
from pathlib import Path

from labkit.testing import build_tiny_sd15
from labkit.toyworld.evaluate import ATTRS, evaluate


def test_eval_logs_figures_table_and_failure_grid(lab, tmp_path, search_runs):
    folder = build_tiny_sd15(tmp_path / "sd15")
    report = evaluate(lab, model=str(folder), n=3, seed=5, steps=2)
    assert len(report.rows) == 6 and [r["objects"] for r in report.rows] == [1, 1, 1, 2, 2, 2]
    # Random weights draw noise, so the detector finds no shape where the prompt asked for one.
    assert report.single["all_correct"] == 0.0 and report.two_objects_all_correct == 0.0
    assert set(report.single) == set(ATTRS)
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.run_id == report.run_id and run.data.params["n"] == "3"
    assert run.data.metrics["single.all_correct"] == 0.0
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    table = json.loads((art / "verdicts.json").read_text())
    assert len(table["data"]) == 6 and "prompt" in table["columns"]
    assert (art / "failures.png").is_file() and "single object:" in (art / "summary.txt").read_text()
    again = evaluate(lab, model=str(folder), n=3, seed=5, steps=2)
    assert [r["detected"] for r in again.rows] == [r["detected"] for r in report.rows]
