"""A run's held params, metrics and tags, written in one go — with its end, when the run closes.

MLflow's SQLAlchemy store spends about 3 ms of CPU on every operation it opens (a session and its PRAGMAs, the run
read back, an ORM object per row), and a batch is four of them: a toy render's params, metrics, tags, system sample
and end cost it 25 ms of a 0.5 s render (`labkit bench generate --model toyworld`). For a local SQLite store whose
run tables are the ones MLflow 3 made (their columns are checked once per database and process), `write` puts the
same rows in one transaction, by MLflow's rules: MLflow's own validation of every key and value; a param that
would change is refused (MlflowException, as the store raises); tags are upserted and `mlflow.runName` also names
the run; metrics are deduplicated and NaN / ±inf stored as MLflow stores them; `latest_metrics` keeps each key's
most recent (step, timestamp, value); a deleted or missing run is refused. Any other store (a tracking server, a
database of another shape) goes through `MlflowClient.log_batch` and `set_terminated`.
tests/integration/test_tracking_batch.py writes the same batches both ways and compares what MLflow reads back.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.tracking.health import BUSY_TIMEOUT_MS

#: The columns of MLflow's run tables that `write` fills or reads (MLflow 3's schema); a database whose tables
#: differ is written through the client instead.
_COLUMNS = {
    "runs": {"run_uuid", "name", "status", "end_time", "lifecycle_stage"},
    "params": {"key", "value", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}
_KEYS = {"params": ("key", "run_uuid"), "tags": ("key", "run_uuid"), "latest_metrics": ("key", "run_uuid"),
         "metrics": ("key", "timestamp", "step", "run_uuid", "value", "is_nan")}
_checked: dict[tuple[str, int], bool] = {}
_checked_lock = threading.Lock()


def direct(db: Path | None) -> bool:
    """Whether `write` puts a batch straight into SQLite database `db` (None: a store that is not SQLite)."""
    if db is None:
        return False
    try:
        key = (str(db), db.stat().st_ino)
    except OSError:
        return False
    with _checked_lock:
        if key not in _checked:
            _checked[key] = _tables_match(db)
        return _checked[key]


def _tables_match(db: Path) -> bool:
    try:
        conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            for table, needed in _COLUMNS.items():
                info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()  # (cid, name, type, notnull, …, pk)
                if not needed <= {row[1] for row in info}:
                    return False
                if table in _KEYS and tuple(row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]) != \
                        _KEYS[table]:
                    return False  # the upserts below rely on these primary keys
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return True


def write(client: Any, db: Path | None, run_id: str, *, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
          tags: Sequence[Any] = (), status: str | None = None, end_time: int | None = None) -> None:
    """Write `metrics`, `params` and `tags` (MLflow `Metric`, `Param`, `RunTag`) to run `run_id`, and with `status`
    end it (at `end_time`, ms; default now): one SQLite transaction where `direct(db)`, else the client's batches.
    Raises MlflowException as MLflow's store does (a bad key or value, a changed param, a run not active)."""
    if direct(db):
        _write_sqlite(db, run_id, list(metrics), list(params), list(tags), status, end_time)
        return
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:  # MLflow's limits per batch: 100 tags, 100 params, 1000 entries in all
        tag_part, tags = tags[:100], tags[100:]
        param_part, params = params[:100], params[100:]
        room = 1000 - len(tag_part) - len(param_part)
        metric_part, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=metric_part, params=param_part, tags=tag_part)
    if status is not None:
        client.set_terminated(run_id, status=status, end_time=end_time)


def _write_sqlite(db: Path, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any],
                  status: str | None, end_time: int | None) -> None:
    import time

    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
    from mlflow.utils.validation import _validate_batch_log_data, _validate_run_id

    _validate_run_id(run_id)
    metrics, params, tags = _validate_batch_log_data(metrics, params, tags)
    if status is not None:
        RunStatus.from_string(status)  # an unknown status is refused before anything is written
    metric_rows: dict[tuple, tuple] = {}  # (key, timestamp, step, value, is_nan) → row, in order, without repeats
    for m in metrics:
        is_nan, value = _sanitize(float(m.value))
        metric_rows.setdefault((m.key, m.timestamp, m.step, value, is_nan),
                               (m.key, value, m.timestamp, run_id, m.step, int(is_nan)))
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
            if row is None:
                raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
            if row[0] != "active":
                raise MlflowException(f"The run {run_id} must be in the 'active' state. Current state is {row[0]}.",
                                      INVALID_PARAMETER_VALUE)
            if params:
                existing = dict(conn.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
                new: dict[str, str] = {}
                changed = []
                for p in params:
                    old = existing.get(p.key, new.get(p.key))
                    if old is None:
                        new[p.key] = p.value
                    elif old != p.value:
                        changed.append({"key": p.key, "old_value": old, "new_value": p.value})
                if changed:
                    raise MlflowException(f"Changing param values is not allowed. Params were already logged="
                                          f"'{changed}' for run ID='{run_id}'.", INVALID_PARAMETER_VALUE)
                conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                                 [(k, v, run_id) for k, v in new.items()])
            if tags:
                conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?) "
                                 "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                                 [(t.key, t.value, run_id) for t in tags])
                names = [t.value for t in tags if t.key == MLFLOW_RUN_NAME]
                if names:
                    conn.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", (names[-1], run_id))
            if metric_rows:
                conn.executemany("INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", list(metric_rows.values()))
                _update_latest(conn, run_id, metric_rows.values())
            if status is not None:
                conn.execute("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?",
                             (status, end_time if end_time is not None else int(time.time() * 1000), run_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _update_latest(conn: sqlite3.Connection, run_id: str, rows: Any) -> None:
    # MLflow's rule: a key's latest metric is its greatest (step, timestamp, value)
    best: dict[str, tuple] = {}
    for key, value, timestamp, _, step, is_nan in rows:
        if key not in best or (step, timestamp, value) > best[key][:3]:
            best[key] = (step, timestamp, value, is_nan)
    old = {k: (s, t or 0, v) for k, s, t, v in conn.execute(
        "SELECT key, step, timestamp, value FROM latest_metrics WHERE run_uuid = ?", (run_id,))}
    conn.executemany(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, "
        "step = excluded.step, is_nan = excluded.is_nan",
        [(k, v, t, s, n, run_id) for k, (s, t, v, n) in best.items() if k not in old or (s, t, v) > old[k]])


def _sanitize(value: float) -> tuple[bool, float]:
    # as MLflow's SQLAlchemy store: NaN is stored as 0 with is_nan, ±inf as the largest finite floats
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, 1.7976931348623157e308 if value > 0 else -1.7976931348623157e308
    return False, value
