"""Keeping one MLflow store healthy when many processes share it.

    db = sqlite_path("sqlite:////proj/mlruns/mlflow.db")   # Path('/proj/mlruns/mlflow.db'); None for a server
    check_server("http://127.0.0.1:5000")                  # TrackingError within seconds when nobody answers
    reap_dead_runs(client, db)                             # RUNNING runs of this host whose process is gone → KILLED
    repair_store("sqlite:////proj/mlruns/mlflow.db")       # after an interrupted schema migration

Every run labkit opens carries `process_tags()`: the host, the process id and the process's start time.
A run still RUNNING whose host is this one and whose process no longer exists (or whose pid now belongs
to a younger process) was killed (SIGKILL, a crashed kernel, a power cut): the next `Lab` that opens
the store ends it KILLED, tags why, and adds a line to its note. Runs of other hosts are left alone:
their processes cannot be seen from here.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from contextlib import closing, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from labkit.errors import TrackingError

HOST_TAG = "labkit.host"
PID_TAG = "labkit.pid"
PID_START_TAG = "labkit.pid_start"
REAPED_TAG = "labkit.reaped"
#: How long a tracking server may take to answer before labkit gives up on it (seconds, all tries).
SERVER_TIMEOUT_S = 5.0
#: SQLite waits this long for another writer's lock before "database is locked" (milliseconds).
BUSY_TIMEOUT_MS = 30_000


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?", 1)[0]))


def process_tags() -> dict[str, str]:
    """Who is running this run: host, process id and the process's start time (to tell pid reuse)."""
    import psutil

    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_START_TAG: f"{psutil.Process().create_time():.3f}"}


def _process_alive(pid: int, started: float | None) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return started is None or abs(proc.create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    except psutil.ZombieProcess:  # exited, not yet waited for: it will never close its run
        return False


def check_server(uri: str, timeout: float = SERVER_TIMEOUT_S) -> None:
    """For an http(s) store, fail within `timeout` seconds when no tracking server answers.

    MLflow's own client retries an unreachable server for minutes; labkit asks its `/health`
    once per second until `timeout` and then says what to do.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=max(0.5, deadline - time.monotonic())):
                return
        except urllib.error.HTTPError:
            return  # something answers; MLflow's own errors are more precise than ours from here
        except (OSError, ValueError) as e:
            last = e
        if time.monotonic() + 1.0 >= deadline:
            break
        time.sleep(1.0)
    raise TrackingError(f"No MLflow tracking server answers at {uri!r} ({last}).", value=uri,
                        fix="start it (`labkit tracking serve --port PORT` on the machine that keeps the store, or "
                            "`mlflow server`), or point MLFLOW_TRACKING_URI or [tracking] uri in labkit.toml at a "
                            "store that is up.")


_BUSY_HOOK_INSTALLED = False


def sqlite_busy_timeout() -> None:
    """Make every SQLite connection SQLAlchemy opens in this process wait `BUSY_TIMEOUT_MS` for a
    writer's lock instead of failing after pysqlite's default 5 s. Installed when a store opens."""
    global _BUSY_HOOK_INSTALLED
    if _BUSY_HOOK_INSTALLED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _busy_timeout(dbapi_conn, _record):  # noqa: ANN001
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    _BUSY_HOOK_INSTALLED = True


def enable_wal(db: Path) -> None:
    """Put the database in WAL mode (kept in the file): readers no longer block the one writer."""
    with closing(sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000)) as conn:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")


def half_migrated(db: Path) -> list[str]:
    """Tables an interrupted alembic migration leaves behind (empty when the store is whole)."""
    if not db.is_file():
        return []
    try:
        with closing(sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000)) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    except sqlite3.DatabaseError as e:
        raise TrackingError(f"The MLflow store {str(db)!r} is not a readable SQLite database ({e}).", value=str(db),
                            fix="move it aside (labkit then makes a new store) or restore it from a backup.") from e
    return sorted(n for n in names if n.startswith("_alembic_tmp_"))


def repair_store(uri: str) -> dict[str, Any]:
    """Recover a SQLite store left half-migrated: back the file up, drop the leftover alembic tables, and
    run MLflow's migrations to the end. Returns what was done (backup path, dropped tables)."""
    from labkit.locks import file_lock
    from labkit.tracking.store import _quiet_mlflow_logging

    _quiet_mlflow_logging()
    db = sqlite_path(uri)
    if db is None or not db.is_file():
        raise TrackingError(f"There is no SQLite store to repair at {uri!r}.", value=uri,
                            fix="repair a server's database with `mlflow db upgrade URI`; a missing SQLite store is "
                                "made on first use.")
    with file_lock(db):
        backup = db.with_name(f"{db.name}.backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(backup)) as dst:
            src.backup(dst)  # consistent even with a WAL file beside the database
        dropped = half_migrated(db)
        with closing(sqlite3.connect(db)) as conn, conn:
            for table in dropped:
                conn.execute(f'DROP TABLE "{table}"')
        import sqlalchemy
        from mlflow.store.db.utils import _all_tables_exist, _initialize_tables, _upgrade_db

        engine = sqlalchemy.create_engine(f"sqlite:///{db}")
        try:
            if _all_tables_exist(engine):
                _upgrade_db(engine)
            else:
                _initialize_tables(engine)
        except Exception as e:
            raise TrackingError(f"MLflow's migrations could not finish on {str(db)!r}: {e}", value=str(db),
                                fix=f"the original is kept as {str(backup)!r}; move {str(db)!r} aside to start a "
                                    "new store, then `labkit import` runs you exported.") from e
        finally:
            engine.dispose()
    return {"store": str(db), "backup": str(backup), "dropped_tables": dropped}


def reap_dead_runs(client, db: Path | None = None) -> list[dict[str, str]]:
    """End KILLED every RUNNING run of this host whose process is gone; return what was ended.

    Each ended run gets `labkit.status = KILLED`, `labkit.error` saying which process died, `labkit.reaped`
    (when and by whom), and a line in its note, so the MLflow UI and `labkit doctor` show it.
    """
    from labkit.locks import file_lock
    from labkit.tracking.store import NOTE_TAG

    host = socket.gethostname().replace("'", "")
    try:
        exp_ids = [e.experiment_id for e in client.search_experiments()]
        if not exp_ids:
            return []
        mine = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
        runs = client.search_runs(exp_ids, filter_string=mine, max_results=1000)
    except Exception:  # reaping is housekeeping: a store that cannot be searched fails on real work instead
        return []
    dead = []
    for run in runs:
        tags = run.data.tags
        try:
            pid = int(tags[PID_TAG])
            started = float(tags[PID_START_TAG]) if PID_START_TAG in tags else None
        except (KeyError, ValueError):
            continue
        if not _process_alive(pid, started):
            dead.append((run, pid))
    ended: list[dict[str, str]] = []
    if not dead:
        return ended
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    with file_lock(db) if db is not None else nullcontext():
        for run, pid in dead:
            run_id = run.info.run_id
            if client.get_run(run_id).info.status != "RUNNING":
                continue  # another process ended it meanwhile
            why = f"process {pid} on {host} ended without closing the run (killed or crashed)"
            note = run.data.tags.get(NOTE_TAG, "").rstrip()
            line = f"labkit: marked KILLED on {when}: {why}."
            client.set_tag(run_id, "labkit.status", "KILLED")
            client.set_tag(run_id, "labkit.error", why)
            client.set_tag(run_id, REAPED_TAG, f"{when} by process {os.getpid()}")
            client.set_tag(run_id, NOTE_TAG, f"{note}\n\n{line}" if note else line)
            client.set_terminated(run_id, status="KILLED")
            ended.append({"run_id": run_id, "name": run.info.run_name or "", "pid": str(pid), "host": host})
    return ended
