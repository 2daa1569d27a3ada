"""A sweep stopped by SIGTERM (a scheduler, `kill`) or Ctrl-C: the runs say which stopped it, the command exits as
the rest of the CLI does (143 / 130) with one line saying what stopped, what is kept and how to go on, and a
notebook kernel is stopped without a traceback on the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = '''
import pathlib, time
from labkit.notebooks import record

record(before=float(x))  # kept on the point's run whatever happens next
if x == 3:
    raise ValueError("x=3 fails after recording")
if x == 2:
    import labkit

    with labkit.Lab(root).run("inner") as run:
        run.run_id  # in the store now
        pathlib.Path(marker).joinpath("started").write_text("1")
        time.sleep(120)
record(score=float(x))
'''


def _notebook_spec(tmp_path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1\nmarker = ''\nroot = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(NOTEBOOK)]
    nbformat.write(nb, tmp_path / "slow.ipynb")
    spec = tmp_path / "slow.yaml"
    spec.write_text(f"name: slow\nnotebook: slow.ipynb\nparameters: {{marker: '{tmp_path}'}}\ngrid: {{x: [1, 3, 2]}}\n")
    return spec


def _runs(project: Path) -> list:
    from labkit.lab import Lab

    lab = Lab(project)
    return lab.tracker.client.search_runs([lab.tracker.experiment_id()], "")


def _artifacts(run) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://"))


@pytest.mark.notebook
def test_sigterm_stops_a_notebook_sweep_quietly_and_keeps_what_ran(migrated_store, cli_env, project, tmp_path):
    import psutil

    spec = _notebook_spec(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "sweep", str(spec), "--no-progress"], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(1)  # the cell is in its sleep, inside the nested run
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err  # 128 + SIGTERM, as the CLI's error boundary answers SIGTERM
    # one line and no traceback (the stopped kernel's ZMQError, papermill's log); what kernels print on their own in
    # any sweep aside (a warning as each starts; at times, as a finished one is shut down, "KeyboardInterrupt caught
    # in kernel.": jupyter_client interrupts a kernel before it asks it to shut down)
    said = [line for line in err.splitlines() if not line.startswith("[IPKernelApp] ")]
    assert "Traceback" not in err and "ZMQError" not in err and "Kernel died" not in err, err
    assert len(said) == 1, said
    [line] = said
    assert line.startswith("labkit sweep: stopped by SIGTERM: the sweep 'slow'") and "point 2 (x=2)" in line, line
    assert "Ctrl-C" not in line and "kept 1 of 3 points finished and the stopped notebook" in line
    assert line.endswith(f"run the other 2 with: labkit sweep {spec} --no-progress --resume"), line

    runs = {r.info.run_name: r for r in _runs(project)}
    parent, stopped, failed, done = (runs[n] for n in ("sweep slow", "slow #2: x=2", "slow #1: x=3", "slow #0: x=1"))
    for run in (parent, stopped, runs["inner"]):  # the sweep, its point, and the run the notebook had open
        assert run.info.status == "KILLED" and run.data.tags["labkit.error"] == "stopped by SIGTERM", run.info
    assert (_artifacts(stopped) / "notebook" / "point-002.ipynb").is_file()  # the notebook as far as it ran
    assert stopped.data.metrics["before"] == 2  # and what it recorded before the stop
    assert failed.info.status == "FAILED" and failed.data.metrics["before"] == 3  # a failure keeps its records too
    assert done.info.status == "FINISHED" and done.data.metrics["score"] == 1
    assert parent.data.metrics["sweep.stopped"] == 1 and parent.data.metrics["sweep.failed"] == 1
    for p in psutil.process_iter():  # the killed kernel is gone, not left running its sleep
        try:
            assert p.environ().get("LABKIT_PARENT_RUN_ID") != stopped.info.run_id, p
        except (psutil.Error, OSError):
            pass


@pytest.mark.parametrize(("how", "status", "reason"), [("SIGTERM", 143, "stopped by SIGTERM"),
                                                       ("SIGINT", 130, "interrupted by the user (Ctrl-C)")])
def test_a_signal_during_a_render_is_recorded_as_itself(migrated_store, project, tmp_path, monkeypatch, capsys,
                                                        how, status, reason):
    """SIGTERM and Ctrl-C during a plan point's render: the render's run, the sweep's run (new, and reopened by
    --resume) say which stopped them, and `labkit sweep` exits 143 or 130 with one line. No model loads here."""
    from types import SimpleNamespace

    import labkit.render
    from labkit.cli import main

    stop_at = {3}

    def render(lab_, plan, **kw):
        with lab_.run("txt2img", params={"plan": plan.to_dict()}, tags=kw["tags"]) as run:
            if plan.steps in stop_at:
                os.kill(os.getpid(), getattr(signal, how))  # as a scheduler (or the terminal) sends it
                time.sleep(30)  # interrupted by the signal at once
        return SimpleNamespace(run_id=run.run_id, status="finished", files=[])

    monkeypatch.setattr(labkit.render, "render", render)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3, 4]}\n")
    for argv in (["sweep", str(path), "--no-progress"], ["sweep", str(path), "--no-progress", "--resume"]):
        assert main(argv) == status
        out, err = capsys.readouterr()
        [line] = err.splitlines()
        assert line.startswith(f"labkit sweep: {reason}: the sweep 's'") and "point 1 (steps=3)" in line, line
        assert "kept 1 of 3 points finished;" in line and line.endswith(
            f"run the other 2 with: labkit {' '.join(argv)}{'' if '--resume' in argv else ' --resume'}"), line
        runs = _runs(project)
        [parent] = [r for r in runs if r.info.run_name == "sweep s"]
        stopped = [r for r in runs if r.data.tags.get("labkit.sweep.index") == "1"]
        assert len(stopped) == (1 if "--resume" not in argv else 2)
        for run in (parent, *stopped):
            assert run.info.status == "KILLED" and run.data.tags["labkit.error"] == reason, run.data.tags
        # named as a finished point's run is
        assert {r.info.run_name for r in stopped} == {"s #1: steps=3"}
    stop_at.clear()
    assert main(["sweep", str(path), "--no-progress", "--resume"]) == 0  # and it finishes
    assert "2 finished, 0 failed, 1 skipped" in capsys.readouterr().out


def test_a_missing_notebook_names_each_place_once(project):
    """The spec's folder, the project and the working directory are looked in; the project is the working
    directory here, and the message names it once, with the path in full, and the spec to correct."""
    from labkit.errors import ConfigError
    from labkit.sweeps import load_spec

    (project / "experiments").mkdir()
    spec = project / "experiments" / "s.yaml"
    spec.write_text("name: s\nnotebook: notebooks/missing.ipynb\ngrid: {x: [1]}\n")
    with pytest.raises(ConfigError) as e:
        load_spec(Path("experiments") / "s.yaml", root=project)
    text = str(e.value)
    assert text.count(str(project / "notebooks")) == 1, text
    assert text.count(str(project / "experiments" / "notebooks" / "missing.ipynb")) == 1, text
    assert "'notebooks/missing.ipynb'" in e.value.message and "experiments/s.yaml" in e.value.fix
    gone = project / "gone.ipynb"
    spec.write_text(f"name: s\nnotebook: {gone}\ngrid: {{x: [1]}}\n")
    with pytest.raises(ConfigError) as e:
        load_spec(spec, root=project)
    assert str(e.value).count(str(gone)) == 1, str(e.value)


def test_the_summary_calls_a_stopped_point_stopped_not_failed():
    from labkit.sweeps import PointOutcome, SweepResult, SweepStopped, spec_from_dict

    spec = spec_from_dict({"name": "s", "plan": {"prompt": "a red circle"}, "grid": {"steps": [2, 3, 4, 5]}})
    p = spec.points()
    result = SweepResult(spec=spec, parent_run_id="abc", points=p, outcomes=[
        PointOutcome(p[0], "r0", "FINISHED"), PointOutcome(p[1], "r1", "FAILED", "ValueError: no"),
        PointOutcome(p[2], "r2", "KILLED", "stopped by SIGTERM"), PointOutcome(p[3], "r3", "KILLED",
                                                                               "stopped by SIGTERM")])
    lines = result.lines()
    assert lines[1] == "  1 finished, 1 failed, 2 stopped, 0 skipped (already finished) of 4"
    assert lines[2:] == ["  FAILED point 1 (steps=3): ValueError: no", "  KILLED point 2 (steps=4): stopped by SIGTERM",
                         "  KILLED point 3 (steps=5): stopped by SIGTERM"]
    line = SweepStopped("SIGTERM", "stopped by SIGTERM", result).line("labkit sweep s.yaml --resume")
    assert line == ("stopped by SIGTERM: the sweep 's' (run abc) and points 2 (steps=4), 3 (steps=5) ended KILLED; "
                    "kept 1 of 4 points finished; run the other 3 with: labkit sweep s.yaml --resume")
