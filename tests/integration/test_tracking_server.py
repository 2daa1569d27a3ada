"""A real `mlflow server` started by `labkit tracking serve`, and a lab that does its work against it.

One server for the module (a SQLite store and an artifact folder of its own, on a free loopback port), always
stopped by the fixture's finalizer. Each test points a fresh project at `http://127.0.0.1:PORT` and checks what a
user would: the runs FINISHED with their params, metrics and artifacts, read back through the server; the files a
render returns are real local files; the artifacts sit in the server's folder, not in the project.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.test_cli import labkit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, url: str, folder: Path, proc: subprocess.Popen, banner: list[str]):
        self.url, self.folder, self.proc, self.banner = url, folder, proc, banner

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"


def _stop(proc: subprocess.Popen) -> None:
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)  # labkit stops the server's process group, then exits 0
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in children:  # whatever outlived it (it should not), so no server is ever left behind
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracking-server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT")}
    cmd = [sys.executable, "-m", "labkit", "tracking", "serve", "--root", str(folder), "--port", str(port),
           "--workers", "2", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "artifacts")]
    log = open(folder / "server.log", "w")  # the server's own output: shown when it does not come up
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        banner: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the banner comes once the server answers /health
            line = proc.stdout.readline()
            if not line:
                break
            banner.append(line)
            if line.startswith("uri = "):
                break
        assert any("Tracking server up at" in b for b in banner), \
            "".join(banner) + (folder / "server.log").read_text()[-3000:]
        url = f"http://127.0.0.1:{port}"
        assert f'uri = "{url}"' in "".join(banner)  # the line to paste into labkit.toml
        yield _Server(url, folder, proc, banner)
    finally:
        _stop(proc)
        log.close()
    assert proc.returncode == 0
    with pytest.raises(OSError):  # stopped: nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.fixture
def remote_lab(project, server):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    (project / "labkit.toml").write_text(f'[tracking]\nuri = "{server.url}"\nsystem_metrics = false\n')
    return Lab(project, hardware=HardwareProfile.simulated(None))


def _client(server):
    from mlflow import MlflowClient

    return MlflowClient(server.url)


def _listed(client, run_id: str, path: str = "") -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path or None)}


def test_a_render_its_note_compare_and_replay_go_through_the_server(remote_lab, server, project, one_thread, capsys):
    from labkit.replay import replay

    lab = remote_lab
    result = lab.generate("a red circle on the left", steps=3, seed=7)
    client = _client(server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert run.data.params["plan.steps"] == "3" and run.data.params["plan.seed"] == "7"
    assert run.data.metrics["time.total_s"] > 0 and run.data.tags["labkit.job"] == "render"
    # the files the user gets are real files here, the same bytes the server keeps
    pngs = [f for f in result.files if f.suffix == ".png"]
    assert pngs and all(f.is_file() for f in result.files)
    assert {f"outputs/{f.name}" for f in result.files} <= _listed(client, result.run_id, "outputs")
    assert "plan.json" in _listed(client, result.run_id)
    assert "View run" not in capsys.readouterr().out  # stdout stays the user's (JSON with --json)
    kept = list(server.artifacts.rglob(f"{result.run_id}/artifacts/outputs/{pngs[0].name}"))
    assert len(kept) == 1 and kept[0].read_bytes() == pngs[0].read_bytes()
    assert not (project / "mlruns" / "artifacts").exists()  # nothing written to a store of the project's own

    assert "tracking server" in lab.doctor()["tracking"]["artifact_root"]
    lab.note("The circle sits **left**, as asked.")
    assert "as asked" in client.get_run(result.run_id).data.tags["mlflow.note.content"]
    assert "as asked" in lab.notes(result.run_id)

    again, check = replay(lab, result.run_id, check=True)
    assert check.identical and check.max_diff == 0 and check.files == sorted(f.name for f in pngs)
    assert client.get_run(again.run_id).data.tags["labkit.replay_of"] == result.run_id

    summaries = {r.run_id: r for r in lab.runs(5, job="render")}
    assert set(summaries) == {result.run_id, again.run_id}
    assert [p.name for p in summaries[result.run_id].images] == sorted(f.name for f in pngs)
    cmp = lab.compare([result.run_id, again.run_id])
    assert list(cmp.differing) == []  # the same plan twice
    # another machine (a project with no copies yet) reads the outputs through the server
    from labkit.tracking.compare import RunSummary
    from labkit.tracking.store import Tracker

    other = project.parent / "elsewhere"
    other.mkdir()
    from labkit.config import LabConfig
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    tracker = Tracker(LabConfig.resolve(other, tracking_uri=server.url))
    fetched = RunSummary.from_mlflow(tracker.client.get_run(result.run_id), tracker)
    assert [p.read_bytes() for p in fetched.images] == [p.read_bytes() for p in sorted(pngs)]
    assert str(other) in str(fetched.images[0])
    # the REST API (`labkit serve` on a project pointed at the server) hands out the same bytes, or a 404
    from labkit.serve.routes import ApiError, _output_path

    served = Lab(other, tracking_uri=server.url, hardware=HardwareProfile.simulated(None))
    assert _output_path(served, result.run_id, pngs[0].name).read_bytes() == pngs[0].read_bytes()
    with pytest.raises(ApiError):
        _output_path(served, result.run_id, "no-such-output.png")


def test_a_sweep_runs_against_the_server(remote_lab, server, tmp_path, one_thread):
    from labkit.sweeps import load_spec, run_sweep

    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\nplan: {prompt: 'a small blue square on the right', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\nseeds: 1\nscore: toyworld\n")
    result = run_sweep(remote_lab, load_spec(spec), progress=False)
    client = _client(server)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    exp = parent.info.experiment_id
    kids = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert len(kids) == 2 and all(k.info.status == "FINISHED" for k in kids)
    assert sorted(k.data.params["point.steps"] for k in kids) == ["2", "3"]
    for k in kids:
        assert 0.0 <= k.data.metrics["adherence.all_correct"] <= 1.0
        assert any(p.endswith(".png") for p in _listed(client, k.info.run_id, "outputs"))
    assert "sweep/spec.json" in _listed(client, result.parent_run_id, "sweep")
    # the summary, with the grid of the points' images (read from this machine's copies of the outputs)
    assert {"summary/summary.csv", "summary/grid.png"} <= _listed(client, result.parent_run_id, "summary")


def test_export_and_import_a_bundle_through_the_server(remote_lab, server, tmp_path, _fresh_store_file):
    import shutil

    from labkit.config import LabConfig
    from labkit.tracking.bundle import ORIGIN_TAG, export_bundle, import_bundle
    from labkit.tracking.store import Tracker

    lab = remote_lab
    with lab.run("bundled", params={"lr": 0.1}) as run:
        run.log_metrics({"loss": 0.5})
        run.log_text("hello", "notes/hello.txt")
    bundle = export_bundle(lab.tracker, [run.run_id], tmp_path / "one.zip")
    assert bundle.runs == 1 and bundle.artifacts >= 1

    # from the server into a local store, and a local store's run into the server
    local = tmp_path / "local"
    (local / "mlruns").mkdir(parents=True)
    shutil.copy(_fresh_store_file, local / "mlruns" / "mlflow.db")
    home = Tracker(LabConfig.resolve(local))
    here = import_bundle(home, bundle.path)
    with home.run("made locally", params={"lr": 0.2}) as mine:
        mine.log_metrics({"loss": 0.25})
        mine.log_text("hi there", "notes/hello.txt")
    there = import_bundle(lab.tracker, export_bundle(home, [mine.run_id], tmp_path / "two.zip").path,
                          experiment="imported")
    for tracker, summary, origin, lr, loss, text in ((home, here, run.run_id, "0.1", 0.5, "hello"),
                                                     (lab.tracker, there, mine.run_id, "0.2", 0.25, "hi there")):
        [new] = summary.imported
        got = tracker.client.get_run(new)
        assert got.info.status == "FINISHED" and got.data.params["lr"] == lr
        assert got.data.metrics["loss"] == loss and got.data.tags[ORIGIN_TAG] == origin
        assert tracker.local_artifacts(new, "notes/hello.txt").read_text() == text
    client = _client(server)
    imported = client.get_run(there.imported[0])
    assert client.get_experiment(imported.info.experiment_id).name == "imported"
    assert imported.info.artifact_uri.startswith("mlflow-artifacts:/")  # kept on the server, not in a local folder
    assert import_bundle(lab.tracker, tmp_path / "two.zip", experiment="imported").imported == []  # once only


def test_an_adapter_logged_on_the_server_is_found_by_its_run_id(remote_lab, server, tmp_path):
    """`run:RUN_ID` (what `labkit generate --adapter` and `labkit compare adapters` take) reads a training run's
    adapter and checkpoints through the server, into the project's copies."""
    import torch
    from safetensors.torch import save_file

    from labkit.evals.adapters import expand
    from labkit.pipelines.lora_files import WEIGHT_NAME, resolve_adapter

    lab = remote_lab
    folder = tmp_path / "trained"
    for sub in ("model", "checkpoints/checkpoint-000002/adapter"):
        (folder / sub).mkdir(parents=True)
        save_file({"lora.down.weight": torch.zeros(2, 2)}, str(folder / sub / WEIGHT_NAME))
    with lab.run("a lora") as run:
        run.log_artifact(folder / "model", "model")
        run.log_artifact(folder / "checkpoints", "checkpoints")
    source = resolve_adapter(f"run:{run.run_id}", tracker=lab.tracker)
    assert source.kind == "run" and source.path.is_file() and lab.config.root in source.path.parents
    assert source.path.read_bytes() == (folder / "model" / WEIGHT_NAME).read_bytes()
    steps = expand(f"run:{run.run_id}", lab.tracker)
    assert [name for name, _ in steps] == ["checkpoint-000002", "final"]


_WRITERS = textwrap.dedent("""
    import os, sys
    import mlflow.tracking  # imported once, before the fork: the 8 writers start at once, not after 8 imports
    from labkit.config import LabConfig
    from labkit.tracking.store import Tracker

    root, url = sys.argv[1], sys.argv[2]
    r, w = os.pipe()
    children = []
    for i in range(8):
        pid = os.fork()
        if pid == 0:  # a writer process: its own Tracker on the server, one run
            os.close(w)
            os.read(r, 1)  # all released together
            try:
                tracker = Tracker(LabConfig.resolve(root, tracking_uri=url, experiment="many", system_metrics=False))
                with tracker.run(f"writer-{i}", params={"i": i, "who": f"process {i}"}) as run:
                    run.log_metrics({"value": i * 1.5})
                    run.log_series("curve", [i, i + 1, i + 2])
                    run.log_text(f"from process {i}", "out/hello.txt")
                # one write: print() makes two (text, then newline) when Python runs unbuffered (PYTHONUNBUFFERED),
                # and eight writers' lines then run into each other
                os.write(1, f"{i} {run.run_id}\\n".encode())
                os._exit(0)
            except BaseException as e:
                print(f"writer {i} failed: {e!r}", file=sys.stderr, flush=True)
                os._exit(1)
        children.append(pid)
    os.close(r)
    os.write(w, b"go" * 8)
    os.close(w)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    sys.exit(0 if codes == [0] * 8 else 1)
""")


def test_eight_processes_logging_at_once_lose_nothing(server, project):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT")}
    done = subprocess.run([sys.executable, "-c", _WRITERS, str(project), server.url], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split() for line in done.stdout.splitlines() if line.strip())  # writer -> its run id
    assert sorted(printed) == [str(i) for i in range(8)], (done.stdout, done.stderr[-3000:])
    ids = set(printed.values())
    assert len(ids) == 8, (done.stdout, done.stderr[-3000:])
    client = _client(server)
    exp = client.get_experiment_by_name("many")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert {r.info.run_id for r in runs} == ids and len(runs) == 8
    for r in runs:
        i = int(r.data.params["i"])
        assert r.info.status == "FINISHED" and r.info.run_name == f"writer-{i}"
        assert r.data.params["who"] == f"process {i}" and r.data.metrics["value"] == i * 1.5
        assert [m.value for m in sorted(client.get_metric_history(r.info.run_id, "curve"), key=lambda m: m.step)] \
            == [i, i + 1, i + 2]
        path = client.download_artifacts(r.info.run_id, "out/hello.txt", str(project / f"dl-{i}"))
        assert Path(path).read_text() == f"from process {i}"
    assert sorted(int(r.data.params["i"]) for r in runs) == list(range(8))


def test_the_cli_refuses_a_port_in_use_and_a_database_it_cannot_reach(server, cli_env, tmp_path):
    port = int(server.url.rsplit(":", 1)[1])
    out = labkit("tracking", "serve", "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'x.db'}",
                 env=cli_env, check=False, timeout=120)
    assert out.returncode == 2 and f"port {port}" in out.stderr and "Fix:" in out.stderr
    cli_env = {**cli_env, "MLFLOW_TRACKING_URI": server.url}
    out = labkit("ui", env=cli_env, timeout=120)  # the server is its own UI: labkit says where, starts nothing
    assert server.url in out.stdout
    free = _free_port()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = labkit("tracking", "serve", "--port", str(free), "--backend-store-uri", f"sqlite:///{blocker}/mlflow.db",
                 env=cli_env, check=False, timeout=120)
    assert out.returncode == 2 and str(blocker) in out.stderr and "Fix:" in out.stderr
    try:
        import psycopg2  # noqa: F401
    except ImportError:  # the usual case here: the driver of a PostgreSQL store is not installed
        out = labkit("tracking", "serve", "--port", str(free), "--backend-store-uri",
                     "postgresql+psycopg2://mlflow:secret@127.0.0.1:1/mlflow", env=cli_env, check=False, timeout=120)
        assert out.returncode == 2 and "pip install psycopg2-binary" in out.stderr
    else:  # installed: nobody listens on port 1
        out = labkit("tracking", "serve", "--port", str(free), "--backend-store-uri",
                     "postgresql+psycopg2://mlflow:secret@127.0.0.1:1/mlflow", env=cli_env, check=False, timeout=120)
        assert out.returncode == 2 and "Cannot reach the database" in out.stderr
    assert "127.0.0.1:1/mlflow" in out.stderr and "secret" not in out.stderr + out.stdout  # the password is not shown
