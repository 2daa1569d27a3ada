"""Sweeps on a real local Ray cluster (2 CPUs, started once for the module): the same child runs, metrics and
pixels as the local backend; a failing point is FAILED and the rest finish; a driver stopped mid-sweep (Ctrl-C
here; SIGKILL of the CLI in the slow case) resumes with only the missing points. Each sweep starts its own
workers (each imports torch and loads the model): about 20-40 s a sweep on a busy 2-core machine."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

SPEC = ("plan: {prompt: 'a small red circle on the left', model: toyworld, count: 1, size: [32, 32]}\n"
        "score: toyworld\n")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, its files in a short folder of its own; the address other drivers join
    it by. Not under pytest's tmp: Ray's socket paths may be 107 bytes at most, and
    /tmp/pytest-of-USER/pytest-N/popen-gwN/ray0/session_DATE_PID/sockets/plasma_store already is."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
             configure_logging=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _spec(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{SPEC}{body}")
    return path


def _kids(lab, parent: str) -> dict[str, object]:
    from labkit.sweeps.runner import TAG_KEY, children

    return {k.data.tags[TAG_KEY]: k for k in children(lab, parent)}


def _pixels(run) -> list[np.ndarray]:
    from PIL import Image

    folder = Path(run.info.artifact_uri.removeprefix("file://")) / "outputs"
    return [np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))]


def test_the_toy_sweep_on_ray_gives_the_local_backends_runs_metrics_pixels_and_failures(cluster, migrated_store, lab,
                                                                                        tmp_path, one_thread):
    """2 steps × 2 seeds of the toy model, and a point with an adapter that does not exist (it fails at render
    time, on the worker): the finished children match the local backend's, the failing ones are FAILED with
    the same error, and the parents say so."""
    from labkit.sweeps import load_spec, run_sweep

    spec = load_spec(_spec(tmp_path, "same", "grid: {steps: [2, 3]}\nseeds: 2\n"
                                             "points: [{steps: 2, adapters: [{id: no-such-lora}]}]\n"))
    local = run_sweep(lab, spec, progress=False, summarize=False)
    on_ray = run_sweep(lab, spec, backend="ray", progress=False)
    assert on_ray.parent_run_id != local.parent_run_id
    assert sorted(o.status for o in on_ray.outcomes) == ["FAILED"] * 2 + ["FINISHED"] * 4
    a, b = _kids(lab, local.parent_run_id), _kids(lab, on_ray.parent_run_id)
    assert len(a) == 6 and set(a) == set(b)
    for key, ka in a.items():
        kb = b[key]
        assert kb.info.status == ka.info.status and kb.info.run_name == ka.info.run_name
        assert kb.data.tags["mlflow.parentRunId"] == on_ray.parent_run_id
        assert kb.data.params == ka.data.params
        sweep_tags = {k: v for k, v in ka.data.tags.items() if k.startswith("labkit.sweep.") and "attempt" not in k}
        assert sweep_tags and {k: kb.data.tags.get(k) for k in sweep_tags} == sweep_tags
        if ka.info.status == "FAILED":
            assert "no-such-lora" in kb.data.tags["labkit.error"]
            assert kb.data.tags["labkit.error"] == ka.data.tags["labkit.error"]
            continue
        assert ka.info.status == "FINISHED"
        scores = {k: v for k, v in ka.data.metrics.items() if k.startswith("adherence.")}
        assert scores and {k: kb.data.metrics[k] for k in scores} == scores
        pa, pb = _pixels(ka), _pixels(kb)
        assert len(pa) == 1 and all(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))
    client = lab.tracker.client
    parent = client.get_run(on_ray.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["labkit.sweep.name"] == "same"
    assert (parent.data.metrics["sweep.finished"], parent.data.metrics["sweep.failed"]) == (4, 2)
    assert on_ray.report is not None and list(on_ray.report.summary["steps"]) == [2, 3]


class _Env:
    def get(self, name):
        return os.environ.get(name)


def test_a_worker_that_asked_for_no_gpu_sees_none(cluster, monkeypatch):
    """Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone in an actor that asked for no GPU, so on a GPU node its Lab
    would find the card and render on it beside the GPU workers; labkit's CPU workers start with it empty
    (on this machine without the fix the variable is simply unset)."""
    from labkit.sweeps.ray_backend import worker_options

    actor = ray.remote(_Env).options(**worker_options({"num_cpus": 1.0, "num_gpus": 0.0})).remote()
    try:
        assert ray.get(actor.get.remote("CUDA_VISIBLE_DEVICES")) == ""
    finally:
        ray.kill(actor)
    assert "runtime_env" not in worker_options({"num_cpus": 1.0, "num_gpus": 1.0})  # Ray names a GPU worker's card


@pytest.mark.slow
@pytest.mark.notebook
def test_notebook_points_run_papermill_on_the_workers(cluster, migrated_store, lab, tmp_path, search_runs):
    """A notebook point on Ray is the local backend's: papermill on a real kernel (on the worker), the executed
    notebook and the recorded metrics on the child run, the run the notebook made nested under it; a raising
    notebook is FAILED with its cell."""
    from labkit.sweeps import load_spec, run_sweep

    notebook = Path(__file__).resolve().parents[1] / "fixtures" / "sweep_point.ipynb"
    path = tmp_path / "nb.yaml"
    path.write_text(f"name: nb\nnotebook: {notebook}\nparameters: {{nested: true}}\ngrid: {{x: [1]}}\n"
                    "points: [{x: 2, fail: true}]\nseeds: [5]\n")
    result = run_sweep(lab, load_spec(path), backend="ray", progress=False, summarize=False)
    assert sorted(o.status for o in result.outcomes) == ["FAILED", "FINISHED"]
    runs = search_runs(lab.config.tracking_uri)
    kids = {int(r.data.params["point.x"]): r for r in runs
            if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id}
    ok, bad = kids[1], kids[2]
    assert ok.info.status == "FINISHED" and ok.data.metrics["score"] == 7 and ok.data.metrics["inner.value"] == 10
    assert (Path(ok.info.artifact_uri.removeprefix("file://")) / "notebook" / "point-000.ipynb").is_file()
    [inner] = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ok.info.run_id]
    assert inner.info.run_name == "inner"
    assert bad.info.status == "FAILED" and "told to fail" in bad.data.tags["labkit.error"]
    assert bad.data.tags["labkit.sweep.failed_cell"].isdigit()


def test_an_interrupted_sweep_on_ray_stops_its_workers_and_resumes_with_only_the_missing_points(
        cluster, migrated_store, lab, tmp_path):
    """Ctrl-C in the driver (here: after the first point): the workers are stopped, the point still running is
    KILLED, so is the parent, and --resume runs only the points without a finished child."""
    from labkit.sweeps import load_spec, run_sweep

    spec = load_spec(_spec(tmp_path, "stopped", "grid: {steps: [2, 3]}\nseeds: 2\n"))
    seen = []

    def stop_after_one(outcome):
        seen.append(outcome)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(lab, spec, backend="ray", progress=False, on_point=stop_after_one)
    client = lab.tracker.client
    [parent] = client.search_runs([lab.tracker.experiment_id()], "tags.`labkit.job` = 'sweep'")
    assert parent.info.status == "KILLED" and len(seen) == 1
    kids = list(_kids(lab, parent.info.run_id).values())
    assert all(k.info.status in ("FINISHED", "KILLED") for k in kids)  # none left RUNNING by the stop
    finished = {k for k, r in _kids(lab, parent.info.run_id).items() if r.data.tags.get("labkit.sweep.complete")}
    assert seen[0].point.key in finished and len(finished) < 4

    again = run_sweep(lab, spec, backend="ray", resume=True, progress=False, summarize=False)
    assert again.parent_run_id == parent.info.run_id
    assert {p.key for p in again.skipped} == finished
    assert {o.point.key for o in again.outcomes} == {p.key for p in spec.points()} - finished
    assert all(o.status == "FINISHED" for o in again.outcomes)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_driver_killed_mid_sweep_resumes_with_only_the_missing_points(cluster, migrated_store, lab, tmp_path):
    """`labkit sweep --backend ray` SIGKILLed after its first point: Ray ends the dead driver's tasks, and
    --resume (from another driver) runs only the missing points. Slow: the CLI's job starts its own workers."""
    from labkit.sweeps import load_spec, run_sweep
    from labkit.sweeps.runner import TAG_DONE, TAG_KEY, find_sweep

    path = _spec(tmp_path, "killed", "grid: {steps: [2, 3]}\nseeds: 2\n")
    env = {**os.environ, "LABKIT_ROOT": str(lab.config.root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    driver = subprocess.Popen([sys.executable, "-m", "labkit", "sweep", str(path), "--backend", "ray",
                               "--address", cluster, "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    client = lab.tracker.client
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            parent = find_sweep(lab, "killed")
            done = [k for k in _kids(lab, parent).values() if k.data.tags.get(TAG_DONE) == "1"] if parent else []
            if done:
                break
            time.sleep(0.3)
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
        assert done, "no point finished in time"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=60)
    time.sleep(2)  # Ray ends the dead driver's tasks
    finished = {k.data.tags[TAG_KEY] for k in _kids(lab, parent).values()
                if k.info.status == "FINISHED" and k.data.tags.get(TAG_DONE) == "1"}
    assert 1 <= len(finished) < 4

    spec = load_spec(path)
    again = run_sweep(lab, spec, backend="ray", resume=True, progress=False, summarize=False)
    assert again.parent_run_id == parent
    assert {p.key for p in again.skipped} == finished
    ran = {o.point.key for o in again.outcomes}
    assert ran.isdisjoint(finished) and ran | finished == {p.key for p in spec.points()}
    assert all(o.status == "FINISHED" for o in again.outcomes)
    assert client.get_run(parent).info.status == "FINISHED"
    kids = _kids(lab, parent)
    assert all(kids[p.key].data.tags.get(TAG_DONE) == "1" for p in spec.points())
    assert run_sweep(lab, spec, backend="ray", resume=True, progress=False, summarize=False).outcomes == []
