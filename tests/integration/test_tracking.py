"""The MLflow store: a real SQLite database in a temporary project."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.config import LabConfig
from labkit.errors import ConfigError, InvalidParameter
from labkit.tracking import Tracker


def test_store_lives_in_the_project(project: Path, lab, search_runs):
    with lab.run("hello", params={"plan": {"prompt": "a red circle", "steps": 20}}) as run:
        run.log_metrics({"time.total_s": 1.5})
        (project / "out.txt").write_text("pixels")
        run.log_artifact(project / "out.txt", "outputs")
    db = project / "mlruns" / "mlflow.db"
    assert db.is_file()
    found = search_runs(f"sqlite:///{db}")
    assert [r.info.run_id for r in found] == [run.run_id]
    r = found[0]
    assert r.info.status == "FINISHED"
    assert r.data.params == {"plan.prompt": "a red circle", "plan.steps": "20"}
    assert r.data.metrics["time.total_s"] == 1.5
    assert r.data.tags["hardware.device"] == "cpu"
    assert r.data.tags["version.labkit"] == "0.1.0"
    assert r.data.tags["labkit.compliance_mode"] == "research"
    assert {"version.torch", "version.diffusers"} <= set(r.data.tags)
    art = run.artifact_dir / "outputs" / "out.txt"
    assert art.read_text() == "pixels"
    assert (project / "mlruns" / "artifacts") in art.parents


def test_a_run_that_raises_is_recorded_as_failed(lab):
    with pytest.raises(InvalidParameter):
        with lab.run("doomed", params={"steps": -3}) as run:
            run.log_metrics({"partial": 1.0})
            raise InvalidParameter("steps must be positive, got -3.", value=-3, fix="use steps >= 1.")
    r = lab.tracker.client.get_run(run.run_id)
    assert r.info.status == "FAILED"
    assert r.data.tags["labkit.error"] == "InvalidParameter: steps must be positive, got -3. Fix: use steps >= 1."
    assert r.data.tags["labkit.error_type"] == "InvalidParameter"
    assert r.data.metrics["partial"] == 1.0  # what was logged before the error is kept
    assert "Traceback" in (run.artifact_dir / "error.txt").read_text()


def test_ctrl_c_marks_the_run_killed(lab):
    with pytest.raises(KeyboardInterrupt):
        with lab.run("interrupted") as run:
            raise KeyboardInterrupt
    assert lab.tracker.client.get_run(run.run_id).info.status == "KILLED"


def test_system_metrics_are_logged_even_for_a_short_run(lab):
    with lab.run("short") as run:
        pass
    metrics = lab.tracker.client.get_run(run.run_id).data.metrics
    assert any(k.startswith("system/cpu_utilization") for k in metrics), sorted(metrics)
    assert any(k.startswith("system/system_memory_usage") for k in metrics)


def test_long_params_go_to_an_artifact(lab):
    prompt = "circle " * 2000
    with lab.run("long", params={"prompt": prompt}) as run:
        pass
    r = lab.tracker.client.get_run(run.run_id)
    assert "params/prompt.txt" in r.data.params["prompt"]
    assert (run.artifact_dir / "params" / "prompt.txt").read_text() == prompt


def test_mlflow_tracking_uri_overrides_the_default(project, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere" / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    cfg = LabConfig.resolve(project)
    assert cfg.tracking_uri == f"sqlite:///{other}"
    with Tracker(cfg).run("x", system_metrics=False):
        pass
    assert other.is_file() and not (project / "mlruns" / "mlflow.db").exists()


def test_labkit_toml_sets_the_experiment(project):
    (project / "labkit.toml").write_text('[tracking]\nexperiment = "shapes"\n[lab]\ncompliance_mode = "strict"\n')
    cfg = LabConfig.resolve(project)
    assert cfg.experiment == "shapes" and cfg.compliance_mode == "strict"


def test_project_root_is_found_from_a_subfolder(project, monkeypatch):
    sub = project / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert LabConfig.resolve().root == project


@pytest.mark.parametrize("uri", ["./mlruns", "file:///tmp/mlruns", "/tmp/mlruns"])
def test_file_store_is_refused_with_the_fix(project, uri):
    with pytest.raises(ConfigError, match="sqlite:///"):
        LabConfig.resolve(project, tracking_uri=uri)


def test_two_trackers_on_one_store_share_the_experiment(project):
    cfg = LabConfig.resolve(project, system_metrics=False)
    a, b = Tracker(cfg), Tracker(cfg)
    assert a.experiment_id() == b.experiment_id()
    exp = a.client.get_experiment(a.experiment_id())
    assert exp.artifact_location == (project / "mlruns" / "artifacts" / "labkit").as_uri()


def test_a_series_is_logged_with_its_steps(lab):
    with lab.run("series") as run:
        run.log_series("time.step_s", [0.5, 0.25, 0.125])
    history = lab.tracker.client.get_metric_history(run.run_id, "time.step_s")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 0.5), (1, 0.25), (2, 0.125)]


@pytest.mark.parametrize("bad", ["bad ((", "params.x = ", "metrics.score > 'high'", "tags.`a = 1", "nonsense", 5])
def test_a_malformed_run_filter_is_an_invalid_parameter_naming_it(migrated_store, bad):
    from labkit.errors import InvalidParameter
    from labkit.lab import Lab

    with pytest.raises(InvalidParameter) as err:
        Lab(migrated_store).runs(filter_string=bad)
    assert repr(bad) in str(err.value) and err.value.fix


def test_a_valid_run_filter_still_finds_runs(lab):
    with lab.run("kept", params={"steps": 20}):
        pass
    assert [r.name for r in lab.runs(filter_string="params.steps = '20'")] == ["kept"]
    assert lab.runs(filter_string="params.steps = '21'") == []


def test_recorded_metrics_series_and_tags_are_all_there_once_the_run_closes(lab):
    # More than one MLflow batch of each (100 tags, 1000 entries per batch), held and written as the run closes.
    tags = {f"t.{i:03d}": f"v{i}" for i in range(150)}
    with lab.run("recorded") as run:
        run.record(metrics={"time.total_s": 2.5, "skipped": None}, series={"time.step_s": [0.1] * 1200},
                   tags=tags)
    r = lab.tracker.client.get_run(run.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.metrics["time.total_s"] == 2.5 and "skipped" not in r.data.metrics
    assert {k: r.data.tags[k] for k in tags} == tags
    history = lab.tracker.client.get_metric_history(run.run_id, "time.step_s")
    assert sorted(m.step for m in history) == list(range(1200))


def test_a_crash_after_recording_leaves_a_failed_run_with_what_was_written(lab, tmp_path):
    (tmp_path / "partial.png").write_bytes(b"not yet finished")
    with pytest.raises(RuntimeError, match="decoder exploded"):
        with lab.run("crashed") as run:
            run.record(metrics={"time.steps_s": 1.0}, series={"time.step_s": [0.5, 0.5]},
                       tags={"model.id": "toyworld"})
            run.log_artifact(tmp_path / "partial.png", "outputs")
            raise RuntimeError("decoder exploded")
    r = lab.tracker.client.get_run(run.run_id)
    assert r.info.status == "FAILED"
    assert r.data.tags["labkit.error"] == "RuntimeError: decoder exploded"
    assert r.data.metrics["time.steps_s"] == 1.0 and r.data.tags["model.id"] == "toyworld"
    assert len(lab.tracker.client.get_metric_history(run.run_id, "time.step_s")) == 2
    assert (run.artifact_dir / "outputs" / "partial.png").read_bytes() == b"not yet finished"


def test_a_write_the_store_refuses_fails_the_run_loudly(lab, monkeypatch):
    from labkit.errors import TrackingError
    from labkit.tracking import batch

    real = batch.write

    def refuse(client, db, run_id, **kw):  # the store fails as the run's results land
        if kw.get("metrics"):
            raise OSError("disk I/O error")
        return real(client, db, run_id, **kw)

    monkeypatch.setattr(batch, "write", refuse)
    with pytest.raises(TrackingError) as err:
        with lab.run("store gone") as run:
            run.record(metrics={"time.total_s": 1.0})
    assert run.run_id in err.value.message and err.value.fix
    r = lab.tracker.client.get_run(run.run_id)
    assert r.info.status == "FAILED"  # never FINISHED with a record missing
    assert "disk I/O error" in r.data.tags["labkit.error"]


def test_a_param_that_would_change_fails_the_run_and_the_body_error_wins(lab):
    from labkit.errors import TrackingError

    with pytest.raises(TrackingError, match="Changing param values is not allowed"):
        with lab.run("changed", params={"steps": 20}) as run:
            run.record(params={"steps": 30}, metrics={"time.total_s": 1.5}, tags={"model.id": "toyworld"})
    r = lab.tracker.client.get_run(run.run_id)
    assert r.info.status == "FAILED" and "Changing param values" in r.data.tags["labkit.error"]
    # nothing else is lost: the metrics and tags recorded with the bad param are kept
    assert r.data.metrics["time.total_s"] == 1.5 and r.data.tags["model.id"] == "toyworld"
    with pytest.raises(RuntimeError, match="first"):  # the body's own error is what the caller sees
        with lab.run("changed twice", params={"steps": 20}) as run2:
            run2.record(params={"steps": 30})
            raise RuntimeError("first")
    r = lab.tracker.client.get_run(run2.run_id)
    assert r.info.status == "FAILED" and "RuntimeError: first" in r.data.tags["labkit.error"]


def test_a_run_open_longer_than_a_second_has_its_params_and_records_in_the_store(lab):
    import time

    with lab.run("long", params={"steps": 20}) as run:
        run.record(metrics={"time.total_s": 1.0})
        deadline = time.monotonic() + 60  # held for HOLD_S (1 s), then written; a loaded machine may take longer
        while time.monotonic() < deadline:
            r = lab.tracker.client.get_run(run.run_id)
            if r.data.params:
                break
            time.sleep(0.1)
        assert r.info.status == "RUNNING"  # seen in the UI while it runs, and kept if the process dies now
        assert r.data.params == {"steps": "20"} and r.data.metrics["time.total_s"] == 1.0
        run.record(tags={"later": "yes"})
    r = lab.tracker.client.get_run(run.run_id)
    assert r.info.status == "FINISHED" and r.data.tags["later"] == "yes" and r.data.params == {"steps": "20"}


def test_recorded_empty_tags_are_not_written(lab):
    with lab.run("sparse") as run:
        run.record(tags={"model.revision": "", "labkit.fallback_reason": None, "model.id": "toyworld"})
    tags = lab.tracker.client.get_run(run.run_id).data.tags
    assert tags["model.id"] == "toyworld"
    assert "model.revision" not in tags and "labkit.fallback_reason" not in tags


def test_a_run_longer_than_one_interval_samples_system_metrics_in_the_background(project):
    import dataclasses
    import time

    tracker = Tracker(dataclasses.replace(LabConfig.resolve(project), system_metrics_interval=0.2))
    with tracker.run("long enough", system_metrics=True) as run:
        # The sampling thread starts after 0.2 s and publishes 0.2 s later; a loaded machine may take longer.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            open_metrics = tracker.client.get_run(run.run_id).data.metrics
            if any(k.startswith("system/") for k in open_metrics):
                break
            time.sleep(0.1)
    assert any(k.startswith("system/system_memory_usage") for k in open_metrics)  # sampled while open
    assert tracker.client.get_run(run.run_id).info.status == "FINISHED"
