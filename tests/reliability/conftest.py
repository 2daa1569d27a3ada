"""Helpers for the reliability suite: real `labkit` processes against one project, read back from the store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

#: The toy caption every process renders: cheap on a CPU, and the detector could check it.
PROMPT = "a small red circle on the left"


@pytest.fixture
def proc_env(cli_env: dict[str, str]) -> dict[str, str]:
    """The CLI environment with one torch thread per process: eight processes share two cores."""
    return {**cli_env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labkit", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def store_rows(project: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows of the project's MLflow database, read with sqlite3 as any outside tool could."""
    db = project / "mlruns" / "mlflow.db"
    if not db.is_file():
        return []
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(sql, args).fetchall()


def statuses(project: Path) -> dict[str, str]:
    return dict(store_rows(project, "SELECT run_uuid, status FROM runs"))


def wait_for_running_run(project: Path, pid: int, proc: subprocess.Popen, timeout: float = 240) -> str:
    """The id of the run process `pid` opened, once it is RUNNING (fails if the process ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the render ended before it could be killed: {proc.communicate()}"
        try:
            rows = store_rows(project, "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                       "WHERE r.status = 'RUNNING' AND t.key = 'labkit.pid' AND t.value = ?",
                              (str(pid),))
        except sqlite3.OperationalError:  # the schema is still being made
            rows = []
        if rows:
            return rows[0][0]
        time.sleep(0.2)
    raise AssertionError(f"process {pid} opened no run within {timeout} s")


def assert_outputs_whole(project: Path) -> int:
    """Every output file a reader would take for finished is whole; temporary files start with a dot.
    Returns how many outputs were checked."""
    import json

    from PIL import Image

    checked = 0
    for path in (project / "mlruns" / "artifacts").rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.load()
            checked += 1
        elif path.suffix == ".json":
            json.loads(path.read_text())
            checked += 1
    return checked
