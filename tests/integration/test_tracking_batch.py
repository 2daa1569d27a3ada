"""A run's held writes put straight into the SQLite store (`labkit.tracking.batch`) read back through MLflow
exactly as the same writes made through `MlflowClient.log_batch` and `set_terminated`."""

from __future__ import annotations

import math
import sqlite3

import pytest

from labkit.tracking import batch


@pytest.fixture
def store(lab):
    client = lab.tracker.client
    db = lab.tracker._db
    exp = lab.tracker.experiment_id()
    return client, db, exp


def _entities(now: int):
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric("loss", v, now + i, i) for i, v in enumerate([0.9, 0.5, float("nan"), 0.25])]
    metrics += [Metric("loss", 0.25, now + 3, 3),  # a repeat, dropped
                Metric("big", float("inf"), now, 0), Metric("small", float("-inf"), now, 0),
                Metric("late", 2.0, now, 5), Metric("late", 1.0, now + 9, 2)]  # latest: the greatest step, not time
    params = [Param("plan.steps", "20"), Param("plan.prompt", "a red circle"), Param("plan.steps", "20")]
    tags = [RunTag("model.id", "toyworld"), RunTag("model.id", "toyworld-2"), RunTag("mlflow.runName", "renamed")]
    return metrics, params, tags


def _read(client, run_id):
    r = client.get_run(run_id)
    history = {k: sorted((m.step, m.timestamp, m.value if not math.isnan(m.value) else "nan")
                         for m in client.get_metric_history(run_id, k)) for k in r.data.metrics}
    metrics = {k: (v if not math.isnan(v) else "nan") for k, v in r.data.metrics.items()}
    return {"status": r.info.status, "ended": r.info.end_time is not None, "name": r.info.run_name,
            "params": r.data.params, "metrics": metrics, "history": history, "tags": dict(r.data.tags)}


def test_the_installed_mlflow_store_is_written_directly(store):
    client, db, _ = store
    # If this fails, MLflow changed its run tables: check `batch._COLUMNS` and the comparison below against it.
    assert db is not None and batch.direct(db)


def test_a_batch_written_directly_reads_back_as_mlflow_wrote_it(store):
    import time

    client, db, exp = store
    now = int(time.time() * 1000)
    read = {}
    for way, target in (("direct", db), ("client", None)):
        run_id = client.create_run(exp, tags={"labkit.way": way}).info.run_id
        metrics, params, tags = _entities(now)
        batch.write(client, target, run_id, metrics=metrics[:4], params=params[:1])  # two writes: latest updated
        batch.write(client, target, run_id, metrics=metrics[4:], params=params[1:], tags=tags, status="FINISHED")
        read[way] = _read(client, run_id)
        read[way]["tags"].pop("labkit.way")
    assert read["direct"] == read["client"]
    got = read["direct"]
    assert got["status"] == "FINISHED" and got["ended"] and got["name"] == "renamed"
    assert got["metrics"]["loss"] == 0.25 and got["metrics"]["late"] == 2.0  # step 5 beats the later step 2
    assert got["metrics"]["big"] == 1.7976931348623157e308 and got["metrics"]["small"] == -1.7976931348623157e308
    assert [v for _, _, v in got["history"]["loss"]] == [0.9, 0.5, "nan", 0.25]
    assert got["tags"]["model.id"] == "toyworld-2"


@pytest.mark.parametrize("way", ["direct", "client"])
def test_refusals_match_mlflow_and_a_refused_direct_batch_writes_nothing(store, way):
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    client, db, exp = store
    target = db if way == "direct" else None
    run_id = client.create_run(exp).info.run_id
    batch.write(client, target, run_id, params=[Param("steps", "20")])
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        batch.write(client, target, run_id, params=[Param("steps", "30")])
    with pytest.raises(MlflowException):  # a key MLflow refuses
        batch.write(client, target, run_id, metrics=[Metric("bad key?!", 1.0, 0, 0)])
    if way == "direct":  # one transaction: the metric written beside a changed param is not there either
        with pytest.raises(MlflowException):
            batch.write(client, target, run_id, metrics=[Metric("ok", 1.0, 0, 0)], params=[Param("steps", "40")])
        assert "ok" not in client.get_run(run_id).data.metrics
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="active"):
        batch.write(client, target, run_id, params=[Param("other", "1")])
    with pytest.raises(MlflowException):
        batch.write(client, target, "0" * 32, params=[Param("other", "1")])


def test_a_database_of_another_shape_is_written_through_the_client(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, status TEXT)")
    assert not batch.direct(db)
    assert not batch.direct(tmp_path / "missing.db") and not batch.direct(None)
