"""Runs whose process dies: SIGKILL and SIGTERM during a render, then the next Lab."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.reliability.conftest import (
    PROMPT,
    assert_outputs_whole,
    spawn,
    statuses,
    store_rows,
    wait_for_running_run,
)

#: Enough denoising (four images of the plan's most steps) that the render is still going when the signal arrives.
LONG = ("--steps", "500", "--n", "4")


def _tags(project: Path, run_id: str) -> dict[str, str]:
    return dict(store_rows(project, "SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))


def test_a_render_killed_with_sigkill_is_ended_killed_by_the_next_lab(project: Path, proc_env):
    proc = spawn("generate", PROMPT, *LONG, env=proc_env)
    run_id = wait_for_running_run(project, proc.pid, proc)
    time.sleep(1.0)
    proc.kill()
    proc.wait(timeout=60)
    assert statuses(project)[run_id] == "RUNNING"  # nobody could close it

    from labkit.lab import Lab
    from labkit.panels.runs import runs_panel

    lab = Lab(project)
    _, controls = runs_panel(lab)  # the Runs panel opens the store and says what it ended
    assert run_id[:8] in controls["cleaned_up"].value and f"process {proc.pid}" in controls["cleaned_up"].value
    assert [r["run_id"] for r in lab.cleaned_up] == [run_id]
    assert statuses(project)[run_id] == "KILLED"
    tags = _tags(project, run_id)
    assert f"process {proc.pid}" in tags["labkit.error"] and "KILLED" in tags["mlflow.note.content"]
    # the store is intact: it lists the run and takes new work
    assert [r.info.run_id for r in lab.tracker.search_runs()] == [run_id]
    lab.note("checked after the kill", run_id=run_id)
    assert_outputs_whole(project)
    # a second Lab finds nothing more to clean up
    assert Lab(project).cleaned_up == []


def test_a_render_stopped_with_sigterm_ends_killed_and_the_process_exits(project: Path, proc_env):
    proc = spawn("generate", PROMPT, *LONG, env=proc_env)
    run_id = wait_for_running_run(project, proc.pid, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in out + err
    assert statuses(project)[run_id] == "KILLED"  # ended by the process itself, before any other Lab opened
    assert_outputs_whole(project)


def test_runs_of_live_processes_and_of_other_hosts_are_left_alone(migrated_store: Path, lab):
    from labkit.lab import Lab

    with lab.run("mine, still open") as live:
        ghost = lab.tracker.client.create_run(lab.tracker.experiment_id(), run_name="another host's",
                                              tags={"labkit.host": "some-other-host", "labkit.pid": "1"})
        assert Lab(migrated_store).cleaned_up == []
        assert statuses(migrated_store)[live.run_id] == "RUNNING"
    assert statuses(migrated_store)[ghost.info.run_id] == "RUNNING"
