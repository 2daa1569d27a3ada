"""`labkit serve` starting, limiting, stopping and starting again: keys made and revoked with the CLI, the
rate limit and jobs in flight per key (429), SIGTERM mid-job (run KILLED, queued jobs recorded cancelled,
exit 0 within 10 s), and jobs read back from MLflow by a new server."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.integration.serve_helpers import add_key, env, free_port, project, start
from tests.integration.test_serve import PROMPT, _runs


def _serve_cli(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", "serve", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120, env=env(root))


def test_keys_are_shown_once_stored_as_hashes_and_revocable(tmp_path, _fresh_store_file):
    root = project(tmp_path / "p", _fresh_store_file)
    secret = add_key(root, "alice", "read", cli=True)
    assert secret.startswith("lk_") and len(secret) > 40
    file = root / "mlruns" / "serve-keys.json"
    assert secret not in file.read_text() and stat.S_IMODE(file.stat().st_mode) == 0o600
    listed = _serve_cli(root, "keys", "list")
    assert "alice" in listed.stdout and "read" in listed.stdout and secret not in listed.stdout
    again = _serve_cli(root, "keys", "add", "alice")
    assert again.returncode == 2 and "exists already" in again.stderr and "Fix:" in again.stderr
    bad = _serve_cli(root, "keys", "add", "../x")
    assert bad.returncode == 2 and "../x" in bad.stderr

    server = start(root, keys={"alice": secret})
    try:
        with server.client("alice") as c:
            assert c.get("/models").status_code == 200
            assert _serve_cli(root, "keys", "revoke", "alice").returncode == 0
            r = c.get("/models")
            assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]  # and not open again
    finally:
        assert server.stop() == 0


def test_the_network_is_refused_without_a_key_and_loopback_is_open_without_one(tmp_path, _fresh_store_file):
    root = project(tmp_path / "p", _fresh_store_file)
    out = subprocess.run([sys.executable, "-m", "labkit", "serve", "--host", "0.0.0.0", "--port", str(free_port()),
                          "--root", str(root)], capture_output=True, text=True, timeout=120, env=env(root))
    assert out.returncode == 2 and "0.0.0.0" in out.stderr and "keys add" in out.stderr
    server = start(root)
    try:
        with server.client() as c:
            assert c.get("/health").json()["auth"].startswith("none")
            assert c.get("/models").status_code == 200  # the local user, no key needed yet
    finally:
        assert server.stop() == 0


def test_a_port_in_use_and_a_queue_under_one_are_one_line_errors_before_the_banner(tmp_path, _fresh_store_file):
    root = project(tmp_path / "p", _fresh_store_file)
    with socket.socket() as taken:  # something else already listens there
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _serve_cli(root, "--port", str(port))
    assert out.returncode == 2 and out.stdout == "", (out.stdout, out.stderr)  # no "labkit serve: http://…" banner
    (line,) = out.stderr.splitlines()
    assert line.startswith("labkit serve: ") and f"port {port} " in line and "in use" in line
    assert "Fix: pass another --port" in line
    for queue in ("-1", "0"):
        out = _serve_cli(root, "--port", str(free_port()), "--queue", queue)
        assert out.returncode == 2 and out.stdout == "", (out.stdout, out.stderr)
        (line,) = out.stderr.splitlines()
        assert line.startswith("labkit serve: ") and f"got {queue}." in line and "Fix:" in line and "--queue" in line


def test_rate_limit_and_jobs_in_flight_answer_429_with_retry_after(tmp_path, _fresh_store_file):
    toml = "[serve]\nrequests_per_minute = 8\njobs_in_flight = 1\n"
    root = project(tmp_path / "p", _fresh_store_file, toml)
    keys = {"a": add_key(root, "a", "render"), "b": add_key(root, "b", "render")}
    server = start(root, keys=keys)
    try:
        with server.client("a") as a, server.client("b") as b:
            first = a.post("/jobs", json={"plan": {"prompt": PROMPT, "steps": 300, "seed": 1}})
            assert first.status_code == 202
            second = a.post("/jobs", json={"plan": {"prompt": PROMPT, "steps": 2, "seed": 2}})
            assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
            assert "jobs_in_flight" in second.json()["error"]["fix"]
            codes = [a.get("/models/status").status_code for _ in range(8)]
            assert codes[:6] == [200] * 6 and codes[-1] == 429   # 8 a minute: 2 spent above
            limited = a.get("/models/status")
            assert int(limited.headers["retry-after"]) >= 1 and "requests_per_minute" in limited.json()["error"]["fix"]
            assert b.get("/models/status").status_code == 200   # another key has its own budget
            assert a.get("/health").status_code == 200           # health is never limited
            a.delete(f"/jobs/{first.json()['id']}")
    finally:
        assert server.stop() == 0


def test_sigterm_mid_job_kills_its_run_cancels_the_queue_and_a_new_server_reads_them_back(tmp_path,
                                                                                        _fresh_store_file):
    root = project(tmp_path / "p", _fresh_store_file)
    keys = {"k": add_key(root, "k", "admin")}
    server = start(root, keys=keys)
    with server.client("k") as c:
        done = c.post("/jobs", json={"plan": {"prompt": PROMPT, "steps": 2, "seed": 3}}).json()
        assert server.wait_job(c, done["id"])["state"] == "finished"
        long = c.post("/jobs", json={"plan": {"prompt": PROMPT, "steps": 500, "seed": 4}}).json()
        queued = c.post("/jobs", json={"plan": {"prompt": PROMPT, "steps": 2, "seed": 5}}).json()
        for _ in range(1200):
            if c.get(f"/jobs/{long['id']}").json()["step"] >= 1:
                break
            time.sleep(0.1)
        switch = c.post("/models/switch", json={"model": "toyworld"})
        assert switch.status_code == 409 and long["id"] in switch.json()["error"]["message"]
    t0 = time.monotonic()
    code = server.stop()
    # Its own budget is 11 s (8 s for the job to stop, 3 s for uvicorn); the rest is a loaded machine's margin.
    # The 500-step job would have run for minutes, and its run is KILLED below, not FINISHED.
    assert code == 0 and time.monotonic() - t0 < 20, server.output()

    by_job = {r.data.tags["labkit.serve.job"]: r for r in _runs(root, "tags.`labkit.serve.job` != ''")}
    assert by_job[long["id"]].info.status == "KILLED"
    assert by_job[queued["id"]].info.status == "KILLED"
    assert by_job[queued["id"]].data.tags["labkit.serve.state"] == "cancelled"
    assert by_job[done["id"]].info.status == "FINISHED"

    again = start(root, keys=keys)
    try:
        with again.client("k") as c:
            states = {j: c.get(f"/jobs/{j}").json() for j in (done["id"], long["id"], queued["id"])}
            listed = {j["id"] for j in c.get("/jobs").json()}
    finally:
        assert again.stop() == 0
    assert states[done["id"]]["state"] == "finished" and states[done["id"]]["outputs"]
    assert states[long["id"]]["state"] == "cancelled" and states[queued["id"]]["state"] == "cancelled"
    assert {done["id"], long["id"], queued["id"]} <= listed


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX signals")
def test_ctrl_c_stops_the_server_cleanly(tmp_path, _fresh_store_file):
    import signal

    root = project(tmp_path / "p", _fresh_store_file)
    server = start(root)
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.output()


def test_bench_serve_reports_the_api_against_a_direct_render_loop(tmp_path, _fresh_store_file):
    import json

    root = project(tmp_path / "p", _fresh_store_file)
    out = subprocess.run([sys.executable, "-m", "labkit", "bench", "serve", "--repeat", "1", "--steps", "2",
                          "--json", "--root", str(root)], capture_output=True, text=True, timeout=600, env=env(root))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["name"] == "serve" and result["baseline"] == "Lab.render"
    assert result["ratio"] > 0 and result["extra"]["api_renders_per_s_vs_direct"] > 0
    assert result["extra"]["health_samples"] >= 1 and result["extra"]["health_p95_ms"] > 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("labkit-bench")
    finished = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    assert len(finished) == 1 + 4 + 4  # the warm-up, a batch direct, a batch through the API, all recorded
