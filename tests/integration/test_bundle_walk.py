"""Bundles as a researcher met them: an empty experiment, a child exported without its parent, two processes
importing one bundle at once (found by trying them, kept so they stay fixed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def _other_store(tmp_path: Path, fresh: Path):
    from labkit.config import LabConfig
    from labkit.tracking.store import Tracker

    other = tmp_path / "other"
    (other / "mlruns").mkdir(parents=True)
    shutil.copy(fresh, other / "mlruns" / "mlflow.db")
    return other, Tracker(LabConfig.resolve(other))


def test_an_empty_experiment_travels_by_name_with_its_note(migrated_store, lab, tmp_path, _fresh_store_file):
    from labkit.tracking.bundle import export_bundle, import_bundle
    from labkit.tracking.notes import add_note

    add_note(lab.tracker, "Plans for the study.", experiment="notes-only")
    out = export_bundle(lab, ["notes-only"], tmp_path / "empty.zip")
    assert out.experiments == ["notes-only"] and "of notes-only" in out.line("export")
    _, target = _other_store(tmp_path, _fresh_store_file)
    assert import_bundle(target, out.path).experiments == ["notes-only"]
    assert target.client.get_experiment_by_name("notes-only") is not None
    assert target.get_note(experiment="notes-only") == "Plans for the study."


def test_a_child_exported_alone_gets_no_link_to_a_run_the_store_lacks(migrated_store, lab, tmp_path,
                                                                      _fresh_store_file, search_runs):
    from labkit.tracking.bundle import ORIGIN_PARENT_TAG, export_bundle, import_bundle

    with lab.run("sweep") as parent, lab.run("point", parent_run_id=parent.run_id) as child:
        pass
    out = export_bundle(lab, [child.run_id], tmp_path / "child.zip")
    _, target = _other_store(tmp_path, _fresh_store_file)
    import_bundle(target, out.path)
    (run,) = search_runs(target.uri)
    assert "mlflow.parentRunId" not in run.data.tags and run.data.tags[ORIGIN_PARENT_TAG] == parent.run_id
    home = import_bundle(lab, out.path)  # back home the parent is there: nothing new, the link untouched
    assert home.imported == [] and lab.tracker.client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == \
        parent.run_id


def test_two_processes_importing_one_bundle_write_each_run_once(migrated_store, lab, tmp_path, _fresh_store_file,
                                                                 search_runs):
    from labkit.tracking.bundle import export_bundle

    for i in range(3):
        with lab.run(f"r{i}") as run:
            run.log_text("x", "outputs/x.txt")
    out = export_bundle(lab, ["labkit"], tmp_path / "study.zip")
    other, target = _other_store(tmp_path, _fresh_store_file)
    start = time.time() + 20  # both processes import at the same moment, after their (slow) start-up
    code = textwrap.dedent(f"""
        import time
        from labkit.config import LabConfig
        from labkit.tracking.bundle import import_bundle
        from labkit.tracking.store import Tracker
        tracker = Tracker(LabConfig.resolve({str(other)!r}))
        tracker.client.search_experiments()
        time.sleep(max(0.0, {start} - time.time()))
        print(len(import_bundle(tracker, {str(out.path)!r}).imported))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = sorted(int(p.communicate(timeout=120)[0].strip()) for p in procs)
    assert counts == [0, 3]
    assert len(search_runs(target.uri)) == 3
