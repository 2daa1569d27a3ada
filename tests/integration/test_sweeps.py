"""Sweeps on the toy world and on a real papermill kernel, as a researcher runs them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from tests.integration.test_cli import labkit

REPO = Path(__file__).resolve().parents[2]
POINT_NOTEBOOK = REPO / "tests" / "fixtures" / "sweep_point.ipynb"


def _artifacts(run) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://"))


@pytest.mark.slow
def test_the_steps_guidance_study_runs_from_one_command(migrated_store, cli_env, project, search_runs):
    """The acceptance example: 2 × 2 points × 3 seeds = 12 child runs under one parent; the comparison
    has per-point means with confidence intervals, a grid image and a paired test."""
    spec = REPO / "experiments" / "toy-steps-guidance.yaml"
    out = labkit("sweep", str(spec), "--no-progress", env=cli_env, timeout=600)
    runs = search_runs(f"sqlite:///{project}/mlruns/mlflow.db")
    [parent] = [r for r in runs if r.data.tags.get("labkit.job") == "sweep"]
    assert parent.info.status == "FINISHED" and parent.info.run_id in out.stdout
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(kids) == 12 and all(k.info.status == "FINISHED" for k in kids)
    settings = sorted((int(k.data.params["point.steps"]), float(k.data.params["point.guidance"]),
                       int(k.data.params["point.seed"])) for k in kids)
    assert settings == sorted((s, g, seed) for s in (4, 12) for g in (1.0, 4.0) for seed in range(3))
    for k in kids:  # each child is the render: its plan, its images, its scores
        assert k.data.params["plan.steps"] == k.data.params["point.steps"]
        assert k.data.params["plan.seed"] == k.data.params["point.seed"]
        assert 0.0 <= k.data.metrics["adherence.all_correct"] <= 1.0 and k.data.metrics["adherence.images"] == 4
        assert len(list((_artifacts(k) / "outputs").glob("*.png"))) == 4
    assert "mean" in out.stdout and "95% CI" in out.stdout
    # the benchmark discriminates (issue 28): the spec's own comparison, no guidance against guidance 4 on colour
    # attribution, is significant at 0.05 (measured: 0 vs 1 on all 6 pairs, sign test p = 0.031)
    [spec_pair] = json.loads((_artifacts(parent) / "summary" / "paired.json").read_text())
    assert spec_pair["metric"] == "geneval.colour_attribution" and spec_pair["mean_diff"] > 0
    assert spec_pair["p_value"] < 0.05, spec_pair

    out = labkit("compare", "sweep", parent.info.run_id, "--json", "--a", "guidance=1.0", "--b", "guidance=4.0",
                 "--paired-metric", "adherence.colour", env=cli_env)
    report = json.loads(out.stdout)
    assert report["axes"] == ["steps", "guidance"]
    assert len(report["summary"]) == 4
    for row in report["summary"]:
        assert row["adherence.all_correct.n"] == 3
        assert row["adherence.all_correct.ci_low"] <= row["adherence.all_correct.mean"] <= \
            row["adherence.all_correct.ci_high"]
    [paired] = report["paired"]
    assert paired["n"] == 6 and paired["metric"] == "adherence.colour"  # 2 steps × 3 seeds
    summary = _artifacts(parent) / "summary"
    assert (summary / "grid.png").stat().st_size > 1000
    assert (summary / "adherence.all_correct-vs-steps.png").is_file()
    page = (summary / "summary.html").read_text()
    assert "95% confidence interval" in page and "data:image/png;base64," in page
    assert "d_z" in (summary / "summary.txt").read_text()
    # the parent's figures are the highest and lowest setting's mean, not a "best" that is the slowest setting
    means = [row["adherence.all_correct.mean"] for row in report["summary"]]
    metrics = parent.data.metrics
    assert metrics["summary.max.adherence.all_correct"] == pytest.approx(max(means))
    assert metrics["summary.min.adherence.all_correct"] == pytest.approx(min(means))
    assert not [k for k in metrics if k.startswith("summary.best.")]


def _small_spec(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text("name: small\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\nseeds: 2\nscore: toyworld\n")
    return path


def test_a_killed_sweep_resumes_with_only_the_missing_points(migrated_store, lab, tmp_path):
    from labkit.sweeps import load_spec, run_sweep

    spec = load_spec(_small_spec(tmp_path))
    seen = []

    def kill_after_two(outcome):
        seen.append(outcome)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(lab, spec, progress=False, on_point=kill_after_two)
    client = lab.tracker.client
    [parent] = client.search_runs([lab.tracker.experiment_id()], "tags.`labkit.job` = 'sweep'")
    assert parent.info.status == "KILLED"
    done = {o.point.key for o in seen}

    # the interrupted sweep's process has gone, as when a kernel is restarted before resuming
    client.set_tag(parent.info.run_id, "labkit.pid_start", "1.0")
    seen_during = []

    def meanwhile(outcome):  # another process opening the project while the resumed sweep runs
        from labkit.lab import Lab

        seen_during.append(Lab(lab.config.root).cleaned_up)

    again = run_sweep(lab, spec, resume=True, progress=False, summarize=False, on_point=meanwhile)
    assert again.parent_run_id == parent.info.run_id
    # the reopened parent belongs to this process: another Lab left it running, and the old error is gone
    assert all(parent.info.run_id not in str(c) for c in seen_during), seen_during
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags["labkit.pid"] == str(os.getpid()) and "labkit.error" not in tags and "labkit.status" not in tags
    assert {p.key for p in again.skipped} == done
    assert len(again.outcomes) == 2 and {o.point.key for o in again.outcomes}.isdisjoint(done)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    kids = client.search_runs([lab.tracker.experiment_id()], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(kids) == 4 and all(k.info.status == "FINISHED" for k in kids)
    assert run_sweep(lab, spec, resume=True, progress=False, summarize=False).outcomes == []  # nothing left


@pytest.mark.notebook
def test_parallel_notebook_kernels_are_spread_over_the_gpus(migrated_store, project, tmp_path, monkeypatch):
    """On a box with two GPUs (here the ones CUDA_VISIBLE_DEVICES names 5 and 7), `--jobs 2` gives each kernel
    its own card, not both the first: each kernel sees one GPU, and the child run says which. (The notebook,
    written here, has no kernelspec metadata: papermill alone refused it.)"""
    import dataclasses

    import nbformat

    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.sweeps import load_spec, run_sweep

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    lab = Lab(project, hardware=dataclasses.replace(HardwareProfile.simulated(24), gpu_count=2))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import os\nfrom labkit.notebooks import record\n"
                                          "record(gpu=float(os.environ['CUDA_VISIBLE_DEVICES']))")]
    nbformat.write(nb, tmp_path / "gpu.ipynb")
    path = tmp_path / "gpu.yaml"
    path.write_text(f"name: gpus\nnotebook: {tmp_path / 'gpu.ipynb'}\ngrid: {{x: [1, 2]}}\n")
    result = run_sweep(lab, load_spec(path), jobs=2, progress=False, summarize=False)
    assert [o.status for o in result.outcomes] == ["FINISHED"] * 2, [o.error for o in result.outcomes]
    client = lab.tracker.client
    kids = [client.get_run(o.run_id) for o in result.outcomes]
    assert sorted(k.data.metrics["gpu"] for k in kids) == [5.0, 7.0]  # one kernel on each card
    assert all(k.data.tags["labkit.sweep.gpu"] == str(int(k.data.metrics["gpu"])) for k in kids)


def test_kernel_gpus_take_the_cards_in_turn(project, monkeypatch):
    import dataclasses

    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.sweeps.runner import kernel_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    two = Lab(project, hardware=dataclasses.replace(HardwareProfile.simulated(24), gpu_count=2))
    assert kernel_gpus(two, 3) == ["0", "1", "0"]  # more kernels than cards: they share, in turn
    assert kernel_gpus(two, 1) is None  # one kernel inherits this process's GPUs
    assert kernel_gpus(Lab(project, hardware=HardwareProfile.simulated(None)), 2) is None  # no CUDA
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb,GPU-cccc")
    assert kernel_gpus(two, 2) == ["GPU-aaaa", "GPU-bbbb"]  # the entries this process was given


@pytest.mark.notebook
def test_notebook_points_record_metrics_and_a_raising_notebook_is_recorded_failed(migrated_store, lab, tmp_path,
                                                                                  search_runs):
    """Each point runs the notebook with papermill on a real kernel; the run the notebook makes nests under
    its point; the point whose notebook raises is FAILED with the cell and the error, the others finish."""
    from labkit.sweeps import load_spec, run_sweep

    path = tmp_path / "nb.yaml"
    path.write_text(f"name: nb\nnotebook: {POINT_NOTEBOOK}\nparameters: {{nested: true}}\ngrid: {{x: [1, 2]}}\n"
                    "points: [{x: 3, fail: true}]\nseeds: [5]\nmetrics: [score]\n")
    result = run_sweep(lab, load_spec(path), jobs=2, progress=False)
    assert sorted(o.status for o in result.outcomes) == ["FAILED", "FINISHED", "FINISHED"]
    client = lab.tracker.client
    runs = {r.info.run_id: r for r in search_runs(lab.config.tracking_uri)}
    kids = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(kids) == 3
    for kid in kids:
        x = int(kid.data.params["point.x"])
        assert (_artifacts(kid) / "notebook" / f"point-{x - 1:03d}.ipynb").is_file()  # the executed notebook
        if x == 3:
            assert kid.info.status == "FAILED"
            assert "ValueError: point x=3 was told to fail" in kid.data.tags["labkit.error"]
            assert "raise ValueError" in kid.data.tags["labkit.sweep.failed_source"]
            assert kid.data.tags["labkit.sweep.failed_cell"].isdigit()
            assert "told to fail" in (_artifacts(kid) / "error.txt").read_text()
        else:
            assert kid.info.status == "FINISHED"
            assert kid.data.metrics["score"] == 2 * x + 5
            assert kid.data.metrics["inner.value"] == 10 * x  # from the run the notebook made
            [inner] = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == kid.info.run_id]
            assert inner.info.run_name == "inner"
    rep = result.report
    assert [round(v, 6) for v in rep.summary["score.mean"]] == [7.0, 9.0]
    assert client.get_run(result.parent_run_id).data.metrics["sweep.failed"] == 1


def test_a_bad_spec_fails_before_any_run(migrated_store, cli_env, project, tmp_path, search_runs):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nnotebook: {POINT_NOTEBOOK}\ngrid: {{x: [1], temperature: [0.7]}}\n")
    out = labkit("sweep", str(path), env=cli_env, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'temperature'" in out.stderr and "parameters" in out.stderr
    big = tmp_path / "big.yaml"
    big.write_text("name: big\nplan: {prompt: 'a red circle', model: toyworld}\n"
                   f"grid: {{steps: {list(range(1, 101))}, guidance: {list(range(100))}}}\n")
    out = labkit("sweep", str(big), env=cli_env, check=False)
    assert out.returncode == 2 and "10000 runs" in out.stderr and "--yes" in out.stderr
    out = labkit("sweep", str(REPO / "experiments" / "toy-steps-guidance.yaml"), "--dry-run", env=cli_env)
    assert "12 runs" in out.stdout and out.stdout.count("todo") == 12
    assert search_runs(f"sqlite:///{project}/mlruns/mlflow.db") == []


def test_a_plan_point_that_raises_is_recorded_failed_and_the_sweep_goes_on(migrated_store, lab, tmp_path,
                                                                           monkeypatch):
    """Renders fail in two places: inside their run (which the sweep marks as the point's) and before
    it opens (then the sweep makes a FAILED run that says why). No model loads here."""
    import labkit.render
    from labkit.sweeps import load_spec, run_sweep

    def fake_render(lab_, plan, **kw):
        if plan.steps == 2:
            raise RuntimeError("before the run opened")
        with lab_.run("txt2img", params={"plan": plan.to_dict()}, tags=kw["tags"]):
            raise RuntimeError("inside the run")

    monkeypatch.setattr(labkit.render, "render", fake_render)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\n")
    result = run_sweep(lab, load_spec(path), progress=False, summarize=False)
    assert [o.status for o in result.outcomes] == ["FAILED", "FAILED"]
    client = lab.tracker.client
    kids = client.search_runs([lab.tracker.experiment_id()], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    errors = sorted(k.data.tags["labkit.error"] for k in kids)
    assert len(kids) == 2 and all(k.info.status == "FAILED" for k in kids)
    assert errors == ["RuntimeError: before the run opened", "RuntimeError: inside the run"]
    # named and labelled as a finished point's child is, whichever way it failed
    assert sorted(k.data.tags["mlflow.runName"] for k in kids) == ["s #0: steps=2", "s #1: steps=3"]
    assert sorted(k.data.params["point.steps"] for k in kids) == ["2", "3"]
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def _fake_renders(monkeypatch, metrics):
    """Renders that record `metrics(plan)` in a run of their own, as a render does, without loading a model."""
    from types import SimpleNamespace

    import labkit.render

    def fake_render(lab_, plan, **kw):
        with lab_.run("txt2img", params={"plan": plan.to_dict()}, tags=kw["tags"]) as run:
            run.log_metrics(metrics(plan))
        return SimpleNamespace(run_id=run.run_id, status="finished", files=[])

    monkeypatch.setattr(labkit.render, "render", fake_render)


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_misspelt_metric_is_named_not_dropped(migrated_store, project, tmp_path, monkeypatch, capsys, caplog):
    """The spec's `metrics:` and `compare:` name a metric no run records: every run still finishes and is kept,
    and the summary says which name is unknown and which exist; `compare sweep --metric` refuses it outright."""
    from labkit.cli import main

    _fake_renders(monkeypatch, lambda plan: {"time.total_s": 0.1 * plan.steps + 0.01 * plan.seed})
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\nseeds: 2\nmetrics: [time.totl_s]\n"
                    "compare: {a: {steps: 2}, b: {steps: 3}, metric: time.totl_s}\n")
    with caplog.at_level(logging.WARNING, logger="labkit.sweeps.stats"):
        assert main(["sweep", str(path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, out  # one for metrics:, one for compare:
    assert all("'time.totl_s'" in w and "did you mean 'time.total_s'?" in w for w in warnings), warnings
    assert "metrics:" in warnings[0] and "compare:" in warnings[1]
    assert len(caplog.records) == 2 and "time.totl_s" in caplog.text  # logged too
    from labkit.lab import Lab

    client = Lab(project).tracker.client
    [parent] = client.search_runs([Lab(project).tracker.experiment_id()], "tags.`labkit.job` = 'sweep'")
    kids = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(kids) == 4 and all(k.info.status == "FINISHED" for k in kids)  # no run lost
    summary = _artifacts(parent) / "summary"
    assert "warning:" in (summary / "summary.txt").read_text() and "Warning:" in (summary / "summary.html").read_text()
    assert _strict_json((summary / "paired.json").read_text()) == []

    for metric, words in (("nosuch.metric", ["'nosuch.metric'", "time.total_s"]),
                          ("time.totl_s", ["'time.totl_s'", "did you mean 'time.total_s'?"])):
        rc = main(["compare", "sweep", parent.info.run_id, "--metric", metric, "--no-log"])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "" and len(err.splitlines()) == 1, err
        assert all(w in err for w in words) and "Fix:" in err
    assert main(["compare", "sweep", parent.info.run_id, "--metric", "time.total_s", "--no-log"]) == 0
    out, _ = capsys.readouterr()
    assert "time.total_s mean" in out and "`metrics:`" not in out
    assert [w for w in out.splitlines() if w.startswith("warning:")] == warnings[1:]  # the spec's compare: still


def test_a_comparison_of_equal_pairs_writes_strict_json(migrated_store, lab, tmp_path, monkeypatch, capsys):
    """Every pair equal: the paired test is undefined, and says so; its p-value is null in paired.json and in
    `compare sweep --json` (NaN there broke strict JSON parsers)."""
    from labkit.cli import main
    from labkit.sweeps import load_spec, run_sweep

    _fake_renders(monkeypatch, lambda plan: {"quality": 0.5, "time.total_s": 0.1 * plan.steps})
    path = tmp_path / "flat.yaml"
    path.write_text("name: flat\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\nseeds: 3\nmetrics: [quality]\n"
                    "compare: {a: {steps: 2}, b: {steps: 3}, metric: quality}\n")
    result = run_sweep(lab, load_spec(path), progress=False)
    assert result.report.warnings == []
    [pair] = result.report.comparisons
    assert pair.p_value is None and "p undefined (every pair is equal)" in pair.line()
    parent = lab.tracker.client.get_run(result.parent_run_id)
    [saved] = _strict_json((_artifacts(parent) / "summary" / "paired.json").read_text())
    assert saved["p_value"] is None and saved["mean_diff"] == 0 and saved["n"] == 3
    assert "paired.quality.p" not in parent.data.metrics and parent.data.metrics["paired.quality.diff"] == 0

    assert main(["compare", "sweep", result.parent_run_id, "--json", "--no-log"]) == 0
    report = _strict_json(capsys.readouterr().out)
    assert report["paired"][0]["p_value"] is None and report["warnings"] == []
    assert main(["compare", "sweep", result.parent_run_id, "--no-log", "--a", "steps=2", "--b", "steps=3",
                 "--paired-metric", "time.total_s"]) == 0  # all differ by 0.1: the sign test, d_z infinite
    assert "(sign test)" in capsys.readouterr().out
    assert main(["compare", "sweep", result.parent_run_id, "--json", "--no-log", "--a", "steps=2", "--b", "steps=3",
                 "--paired-metric", "time.total_s"]) == 0
    [agree] = _strict_json(capsys.readouterr().out)["paired"]
    assert agree["effect_size"] is None and agree["p_value"] == pytest.approx(0.25)


def test_run_sweep_wants_a_spec_and_says_how_to_make_one(lab):
    from labkit.errors import InvalidParameter
    from labkit.sweeps import run_sweep

    for wrong in ({"name": "s", "plan": {"prompt": "x"}}, "experiments/toy-steps-guidance.yaml"):
        with pytest.raises(InvalidParameter, match="needs a SweepSpec") as e:
            run_sweep(lab, wrong)
        assert "load_spec" in e.value.fix and "spec_from_dict" in e.value.fix


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_sweep_refuses_jobs_below_one(migrated_store, project, capsys, jobs):
    from labkit.cli import main

    rc = main(["sweep", str(REPO / "experiments" / "toy-steps-guidance.yaml"), f"--jobs={jobs}", "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err
    [line] = err.splitlines()
    assert f"--jobs {jobs}" in line and "Fix:" in line and "--jobs 1" in line
