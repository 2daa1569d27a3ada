"""A render whose pipeline cannot stop part-way (SVD has no `interrupt`: labkit's step callback raises `Cancelled`)
is stopped, not failed: the run ends KILLED without a failure record, and a REST job says "cancelled"."""

from __future__ import annotations

import time

import pytest

from labkit.errors import Cancelled
from labkit.plan import Plan

PLAN = dict(prompt="a red circle on the left", model="toyworld", seed=1, steps=4)


@pytest.fixture
def uninterruptible(monkeypatch):
    """The toy pipeline as one without `interrupt`: the first step's callback raises, as calls.step_callback does."""
    import labkit.pipelines.calls as calls

    def run_image(pipe, **kw):
        raise Cancelled("Cancelled by the user.", value=1, fix="run again to finish it.")

    monkeypatch.setattr(calls, "run_image", run_image)


def test_the_run_ends_killed_with_no_failure_recorded(lab, uninterruptible):
    with pytest.raises(Cancelled):
        lab.render(Plan(**PLAN))
    (run,) = lab.tracker.search_runs()
    assert run.info.status == "KILLED" and run.data.tags["labkit.error"] == "Cancelled by the user."
    assert "labkit.failure" not in run.data.tags


def test_the_rest_job_is_cancelled_not_failed(lab, uninterruptible):
    from labkit.serve.jobs import JobQueue

    queue = JobQueue(lab).start()
    try:
        job = queue.submit(Plan(**PLAN), "renderer")
        for _ in range(600):
            if queue.get(job.id).state in ("finished", "failed", "cancelled"):
                break
            time.sleep(0.1)
        done = queue.get(job.id)
        assert done.state == "cancelled" and done.run_id
        run = lab.tracker.client.get_run(done.run_id)
        assert run.info.status == "KILLED" and run.data.tags["labkit.serve.state"] == "cancelled"
    finally:
        queue.shutdown()
