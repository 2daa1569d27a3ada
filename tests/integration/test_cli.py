"""The `labkit` command as a user runs it: a real subprocess against a temporary project."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labkit.hardware import TIERS


def labkit(*args: str, env: dict[str, str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], env=env, capture_output=True, text=True,
                          check=check, timeout=timeout)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_doctor_json(cli_env, project):
    out = labkit("doctor", "--json", env=cli_env)
    report = json.loads(out.stdout)
    assert {"hardware", "strategies", "tracking", "versions"} <= set(report)
    if not _has_cuda():
        assert report["hardware"]["device"] == "cpu"
    assert set(report["strategies"]) >= {"sd15", "sdxl", "sd-turbo", "svd", "t2v", "toy"}
    for family, per_tier in report["strategies"].items():
        assert list(per_tier) == list(TIERS), family
        assert per_tier["cpu"]["dtype"] == "float32"
    assert report["tracking"]["uri"] == f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    assert report["tracking"]["artifact_root"] == str(project / "mlruns" / "artifacts")
    assert report["versions"]["labkit"] == "0.1.0"


def test_doctor_text_names_each_family_here_and_on_every_tier(cli_env):
    """The text says what --json says: each family's strategy here and on every VRAM tier, and the mode."""
    out = labkit("doctor", env=cli_env).stdout
    report = json.loads(labkit("doctor", "--json", env=cli_env).stdout)
    for family in ("sd15", "sdxl", "svd", "t2v", "toy"):
        assert f"- {family}: " in out
        row = next(line for line in out.splitlines() if line.startswith(f"| {family} |"))
        assert row.split("|")[2:-1] == [f" {report['strategies'][family][t]['name']} " for t in TIERS]
    assert f"**{report['hardware']['tier']}** (here)" in out
    assert f"- mode: {report['compliance_mode']}" in out


def test_demo_logs_a_run_in_the_project_store(cli_env, project, search_runs):
    out = labkit("demo", env=cli_env)
    assert "Logged run" in out.stdout
    combined = (out.stdout + out.stderr).lower()
    assert "file store" not in combined and "filestore" not in combined
    assert out.stderr.strip() == "", out.stderr  # no warning of any kind on a clean run
    runs = search_runs(f"sqlite:///{project}/mlruns/mlflow.db")
    # the demo run and one child run per rendered prompt (the shipped toy model)
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    run = next(r for r in runs if r.data.tags.get("labkit.job") == "demo")
    assert run.info.run_id in out.stdout
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    assert (project / "mlruns" / "artifacts") in art.parents
    doctor = json.loads((art / "doctor.json").read_text())
    assert doctor["hardware"]["device"] == run.data.tags["hardware.device"]
    assert "# Memory strategy per model family" in (art / "hardware.md").read_text()


def test_a_labkit_error_is_one_line_not_a_traceback(cli_env):
    env = {**cli_env, "MLFLOW_TRACKING_URI": "./mlruns"}
    out = labkit("demo", env=env, check=False)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "file store" in out.stderr and "sqlite:///" in out.stderr


def test_bench_import_prints_a_ratio(cli_env):
    out = labkit("bench", "import", "--repeat", "3", "--json", env=cli_env)
    result = json.loads(out.stdout)
    assert result["baseline"] == "python -c pass"
    assert result["ratio"] == pytest.approx(result["subject_s"] / result["baseline_s"])
    assert result["extra"]["heavy_modules_loaded"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_store_and_stops_cleanly(cli_env, project):
    import psutil

    labkit("demo", env=cli_env)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "ui", "--port", str(port)], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    family = []
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
                body = json.loads(urllib.request.urlopen(url, timeout=5).read())
                break
            except OSError:
                time.sleep(1)
        assert body is not None, "the MLflow UI did not answer"
        assert "labkit" in [e["name"] for e in body["experiments"]]
        family = psutil.Process(proc.pid).children(recursive=True)
        assert family, "the UI server should run as a child of labkit ui"
    finally:
        proc.terminate()  # what a service manager or a closing terminal does
        proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, f"labkit ui left {[p.cmdline()[:4] for p in alive]} running"


def test_ui_refuses_a_bad_port_before_starting_and_a_bad_environment_breaks_no_other_command(cli_env, project):
    with socket.socket() as held:  # something already listens on the port
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = labkit("ui", "--port", str(held.getsockname()[1]), env=cli_env, check=False, timeout=60)
    assert busy.returncode == 2 and "already in use" in busy.stderr and "Traceback" not in busy.stderr
    assert "MLflow UI on" not in busy.stdout  # refused before the banner
    out = labkit("ui", "--port", "99999", env=cli_env, check=False, timeout=60)
    assert out.returncode == 2 and "99999 is not a TCP port" in out.stderr and "Traceback" not in out.stderr
    env = {**cli_env, "LABKIT_UI_PORT": "abc"}
    assert labkit("doctor", "--json", env=env).returncode == 0  # read only by `labkit ui`
    out = labkit("ui", env=env, check=False, timeout=60)
    assert out.returncode == 2 and "LABKIT_UI_PORT='abc'" in out.stderr and "Traceback" not in out.stderr


