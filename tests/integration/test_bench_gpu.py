"""`labkit bench gpu --tiny` as CI runs it: the GPU bench's whole code path on the tiny models on a CPU, through the
command, into a table and one MLflow run."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.bench_gpu import EAGER, read_table
from labkit.hardware import strategy_table
from tests.integration.test_cli import _has_cuda, labkit

FAMILIES = ("sd15", "t2v")  # an image family and a video family; both tiny renders take well under a second


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One `labkit bench gpu --tiny` over FAMILIES in a fresh project (module-scoped: the run takes ~20 s)."""
    import os

    project = tmp_path_factory.mktemp("bench-gpu") / "project"
    (project / "mlruns").mkdir(parents=True)
    out = project / "results"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT")}
    # one thread: on a busy 2-core machine spinning OpenMP threads made tiny denoising steps 10-100x slower
    env.update(LABKIT_ROOT=str(project), OMP_NUM_THREADS="1")
    proc = labkit("bench", "gpu", "--tiny", "--families", ",".join(FAMILIES), "--out", str(out), env=env)
    return {"project": project, "out": out, "proc": proc, "env": env}


def test_the_table_has_the_baseline_and_every_gpu_rung_of_each_ladder(bench):
    rows = read_table(bench["out"] / "bench_gpu.csv")
    table = strategy_table()
    expected = [(f, rung) for f in FAMILIES for rung in
                [EAGER] + [r["name"] for r in table.family(f)["ladder"] if r["device"] == "gpu"]]
    assert [(r["family"], r["rung"]) for r in rows] == expected
    for r in rows:
        assert r["speedup_vs_eager"] > 0 and r["s_per_output"] > 0 and r["it_per_s"] > 0, r
        assert r["load_s"] > 0 and r["warmup_s"] > 0 and r["steps"] >= 1
    for f in FAMILIES:
        (eager,) = [r for r in rows if r["family"] == f and r["rung"] == EAGER]
        assert eager["speedup_vs_eager"] == pytest.approx(1.0)
        for r in rows:
            if r["family"] == f and r["rung"] != EAGER:
                # the speed-up is the baseline's seconds over the rung's, in the same run
                assert r["speedup_vs_eager"] == pytest.approx(eager["s_per_output"] / r["s_per_output"], rel=1e-6)
                assert r["est_peak_vram_gb"] == next(x["est_peak_vram_gb"] for x in table.family(f)["ladder"]
                                                     if x["name"] == r["rung"])
    if not _has_cuda():
        assert all(r["peak_allocated_gb"] is None and r["peak_reserved_gb"] is None and r["nvml_process_gb"] is None
                   for r in rows)
        assert all("no CUDA" in r["note"] for r in rows) and all(r["gpu"] == "" for r in rows)
        assert [r["dtype"] for r in rows if r["rung"] == EAGER] == ["float32"] * len(FAMILIES)


def test_the_rungs_are_measured_from_the_cheapest_up_and_the_compiled_one_last(bench):
    """The order the progress lines come in: a time limit that stops the bench (`make gpu-check` gives it four
    and a half minutes) then keeps the low-VRAM rungs whose figures replace strategies.toml's estimates, and loses
    at most the speed-first rung, whose cold compile takes longest; the table above is in ladder order all the
    same."""
    measured = [line.split(":")[0].split(" ", 1) for line in bench["proc"].stderr.splitlines()
                if line.split(" ", 1)[0] in FAMILIES and ":" in line]
    table = strategy_table()
    for f in FAMILIES:
        gpu = [r for r in table.family(f)["ladder"] if r["device"] == "gpu"]
        expected = [EAGER] + [r["name"] for r in reversed(gpu) if not r.get("compile")] + [
            r["name"] for r in gpu if r.get("compile")]
        assert [rung for family, rung in measured if family == f] == expected


def test_a_time_limit_lists_the_rows_it_left_out_and_still_writes_the_run(bench, tmp_path):
    """`--time-limit`: no row starts after it; the rows left are in the table as not run, the command says how
    many, exits 0 (nothing failed), and the MLflow run is written all the same."""
    from mlflow import MlflowClient

    from labkit.bench_gpu import NOT_RUN_NOTE

    project, out = tmp_path / "project", tmp_path / "limited"
    (project / "mlruns").mkdir(parents=True)
    proc = labkit("bench", "gpu", "--tiny", "--families", "sd15,t2v", "--out", str(out), "--time-limit", "0.001",
                  "--root", str(project), env=bench["env"])
    assert proc.returncode == 0, proc.stderr
    rows = read_table(out / "bench_gpu.csv")
    assert [(r["family"], r["rung"], r["note"]) for r in rows] == [
        ("sd15", "(build)", NOT_RUN_NOTE), ("t2v", "(build)", NOT_RUN_NOTE)]
    assert "2 row(s) not run: the time limit (0.001 s) was reached" in proc.stderr
    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("labkit-bench").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["time_limit_s"] == "0.001"
    assert "--time-limit 0.001" in run.data.params["command"]


@pytest.mark.parametrize("argv, foreign", [
    (["generate", "--tiny"], "--tiny"),
    (["import", "--model", "toyworld"], "--model"),
    (["gpu", "--tiny", "--size", "64x64"], "--size"),
    (["serve", "--time-limit", "5"], "--time-limit"),
])
def test_another_benchmarks_option_is_refused_not_ignored(bench, argv, foreign):
    proc = labkit("bench", *argv, env=bench["env"], check=False)
    assert proc.returncode != 0 and f"labkit bench {argv[0]} takes no {foreign}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_markdown_is_printed_and_written(bench):
    md = (bench["out"] / "bench_gpu.md").read_text()
    printed = bench["proc"].stdout
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(read_table(bench["out"] / "bench_gpu.csv"))
    assert all(line in printed for line in table_lines)
    assert "(tiny models)" in md.splitlines()[0]


def test_one_mlflow_run_holds_the_table_and_a_plot_per_family(bench):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{bench['project']}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("labkit-bench")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["labkit.job"] == "bench-gpu"
    assert run.info.run_id in bench["proc"].stdout
    assert run.data.params["families"] == ",".join(FAMILIES) and run.data.params["tiny"] == "True"
    names = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert names == {f"plots/{f}.png" for f in FAMILIES}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "table")} == {"table/bench_gpu.csv",
                                                                                  "table/bench_gpu.md"}
    from PIL import Image

    local = Path(client.download_artifacts(run.info.run_id, f"plots/{FAMILIES[0]}.png", str(bench["out"] / "dl")))
    with Image.open(local) as img:
        assert img.width > 400 and img.height > 200
    assert run.data.metrics[f"{FAMILIES[0]}.{EAGER}.speedup_vs_eager"] == pytest.approx(1.0)


def test_suggest_table_on_a_cpu_run_measures_nothing(bench):
    out = labkit("bench", "gpu", "--suggest-table", str(bench["out"] / "bench_gpu.csv"), env=bench["env"]).stdout
    if not _has_cuda():
        assert "est_peak_vram_gb =" not in out and "not measured (no CUDA" in out


def test_real_sizes_without_cuda_and_an_unknown_family_are_refused_before_any_work(bench, tmp_path):
    if not _has_cuda():
        p = labkit("bench", "gpu", "--families", "sd15", "--out", str(tmp_path / "x"), env=bench["env"], check=False)
        assert p.returncode == 2 and "needs a CUDA GPU" in p.stderr and "--tiny" in p.stderr
        assert not (tmp_path / "x" / "bench_gpu.csv").exists()
    p = labkit("bench", "gpu", "--tiny", "--families", "sd15,sd3", env=bench["env"], check=False)
    assert p.returncode == 2 and "sd3" in p.stderr and "Traceback" not in p.stderr


def test_the_device_check_runs_dry_on_a_cpu_and_leaves_its_seven_files(tmp_path):
    """`GPU_CHECK_DRY=1 make gpu-check`, the script a lent GPU machine runs, end to end on this CPU: every step
    ok, the carried cp312 wheels not installed into another Python, the folder the device tool brings back."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    if python != "3.12":  # on 3.12 a dry run installs the wheels: leave none
        (wheels / "example-1.0-cp312-cp312-manylinux_2_17_x86_64.whl").write_bytes(b"not a wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT", "PYTHONPATH")}
    env.update(GPU_CHECK_DRY="1", GPU_CHECK_WHEELS=str(wheels), GPU_CHECK_SITE=str(tmp_path / "site"),
               PYTHON=sys.executable, OMP_NUM_THREADS="1")
    out = tmp_path / "results"
    proc = subprocess.run(["bash", str(repo / "scripts" / "gpu_check.sh"), str(out)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stderr[-2000:]
    assert ("install: skipped in a dry run" in summary) == (python != "3.12"), summary
    for step in ("probe", "bench", "pytest"):
        assert f"{step}: ok" in summary, summary
    assert "tests collected" in summary
    files = {p.name for p in out.iterdir()}
    assert files == {"bench_gpu.csv", "bench_gpu.md", "suggested_vram.txt", "mlruns.tar.gz", "junit.xml",
                     "gpu_check.log", "summary.txt"}, files
    assert len(files) <= 8  # what the device tool brings back
    assert read_table(out / "bench_gpu.csv")  # a table the --suggest-table step could read
