"""A store that is broken or cannot be reached fails at once with what to do, and can be repaired."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from labkit.errors import TrackingError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_half_migrated_store_is_detected_with_the_repair_and_the_repair_works(migrated_store: Path):
    from labkit.lab import Lab
    from labkit.tracking.health import repair_store

    db = migrated_store / "mlruns" / "mlflow.db"
    with Lab(migrated_store).run("before") as kept:
        pass
    with closing(sqlite3.connect(db)) as conn, conn:  # what an interrupted alembic batch migration leaves
        conn.execute("CREATE TABLE _alembic_tmp_params (key VARCHAR(250), value VARCHAR(8000))")
    with pytest.raises(TrackingError) as err:
        Lab(migrated_store).runs()
    assert "_alembic_tmp_params" in str(err.value) and "labkit doctor --repair-store" in err.value.fix
    report = Lab(migrated_store).doctor()  # doctor reports it instead of failing
    assert report["tracking"]["status"].startswith("error:")

    done = repair_store(f"sqlite:///{db}")
    assert done["dropped_tables"] == ["_alembic_tmp_params"] and Path(done["backup"]).is_file()
    lab = Lab(migrated_store)
    assert [r.info.run_id for r in lab.tracker.search_runs()] == [kept.run_id]  # nothing lost


def test_labkit_doctor_repair_store_repairs_it_from_the_command_line(migrated_store: Path, monkeypatch, capsys):
    from labkit.cli import main
    from labkit.lab import Lab

    db = migrated_store / "mlruns" / "mlflow.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE _alembic_tmp_metrics (key VARCHAR(250))")
    monkeypatch.setenv("LABKIT_ROOT", str(migrated_store))
    assert main(["doctor", "--json"]) == 0  # reports the broken store and its fix, does not fail
    assert "labkit doctor --repair-store" in capsys.readouterr().out
    assert main(["doctor", "--repair-store"]) == 0
    assert "dropped _alembic_tmp_metrics" in capsys.readouterr().err
    assert Lab(migrated_store).runs() == []


def test_a_store_path_that_is_a_folder_or_under_a_file_fails_naming_it(tmp_path: Path, project: Path):
    from labkit.errors import LabkitError
    from labkit.lab import Lab

    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(LabkitError, match="names the folder") as err:
        Lab(project, tracking_uri=f"sqlite:///{folder}").runs()
    assert err.value.fix
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LabkitError) as err:
        Lab(project, tracking_uri=f"sqlite:///{blocker / 'mlflow.db'}").runs()
    assert str(blocker) in str(err.value) and err.value.fix


def test_a_tracking_server_that_does_not_answer_gives_a_clear_error(project: Path):
    # In a subprocess with a generous bound, so a regression to MLflow's minutes of retries fails the test
    # rather than hanging the suite.
    code = ("import sys\nfrom labkit.lab import Lab\nfrom labkit.errors import TrackingError\n"
            f"try:\n    Lab({str(project)!r}, tracking_uri='http://127.0.0.1:{_free_port()}').runs()\n"
            "except TrackingError as e:\n    print(e); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "No MLflow tracking server answers" in done.stdout and "mlflow server" in done.stdout
