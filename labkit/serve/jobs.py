"""The job queue behind `labkit serve`: one worker renders one job at a time, first in, first out.

    queue = JobQueue(lab, max_queue=32).start()
    job = queue.submit(plan, key="alice")     # QueueFull when `max_queue` jobs wait already
    queue.wait(job.id, version=0, timeout=5)  # returns when the job changed (progress, state)
    queue.cancel(job.id)                      # queued: never runs; running: stops after the current step
    queue.shutdown()                          # SIGTERM: the running job's run ends KILLED, queued ones cancelled

A job is a `Lab.render` of one plan, and its MLflow run carries the tags `labkit.serve.job` (the job id),
`labkit.serve.key` (the API key's name) and `labkit.serve.state`, so the API's job list and the MLflow UI
agree and a job can be looked up after the server restarted (`find_run`). A job that never got as far as a
render run (cancelled while queued, failed before its run opened) is still recorded: a run of its own,
KILLED or FAILED, with the plan as `plan.json`. States: queued → running → finished | failed | cancelled.
"""

from __future__ import annotations

import queue as _queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labkit.errors import Cancelled, LabkitError

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.plan import Plan

STATES = ("queued", "running", "finished", "failed", "cancelled")
DONE = ("finished", "failed", "cancelled")
TAG_JOB, TAG_KEY, TAG_STATE = "labkit.serve.job", "labkit.serve.key", "labkit.serve.state"


class QueueFull(Exception):
    """The queue holds `max_queue` waiting jobs: try again later."""


def error_body(e: BaseException) -> dict[str, str]:
    """An error as the API shows it: its type, message and fix."""
    if isinstance(e, LabkitError):
        return {"type": type(e).__name__, "message": e.message, "fix": e.fix or ""}
    return {"type": type(e).__name__, "message": str(e) or type(e).__name__,
            "fix": "this is a bug in labkit: the server log has the traceback."}


@dataclass
class Job:
    """One render asked for over the API, and where it is."""

    id: str
    key: str
    plan: Plan
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "queued"
    step: int = 0
    total: int = 0
    run_id: str | None = None
    error: dict[str, str] | None = None
    result: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "key": self.key, "state": self.state, "step": self.step, "total_steps": self.total,
             "run_id": self.run_id, "error": self.error, "plan": self.plan.to_dict(),
             "created": self.created, "started": self.started, "ended": self.ended}
        if self.result is not None:
            d.update(self.result)
        return d


class JobQueue:
    """Jobs waiting, the one running, and the recent ones (see the module docstring)."""

    def __init__(self, lab: Lab, *, max_queue: int = 32, keep: int = 1000):
        self.lab = lab
        self.max_queue = max_queue
        self.keep = keep
        self._jobs: dict[str, Job] = {}
        self._waiting: _queue.Queue[Job | None] = _queue.Queue()
        self._changed = threading.Condition()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closing = False
        self.running: Job | None = None
        #: Held while a job renders; whatever else loads or frees pipelines (a model switch) takes it too.
        self.device = threading.Lock()

    # -- asking --------------------------------------------------------------------------------

    def start(self) -> JobQueue:
        self._worker = threading.Thread(target=self._work, name="labkit-serve-worker", daemon=True)
        self._worker.start()
        return self

    def submit(self, plan: Plan, key: str, *, tags: Mapping[str, str] | None = None) -> Job:
        """Queue `plan` for the key named `key`; QueueFull when the queue is full or closing."""
        with self._lock:
            if self._closing or self.depth() >= self.max_queue:
                raise QueueFull()
            job = Job(id=uuid.uuid4().hex[:16], key=key, plan=plan, tags=dict(tags or {}))
            self._jobs[job.id] = job
            self._forget_old()
        self._waiting.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """The jobs this server has seen, newest first."""
        return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def depth(self) -> int:
        """Jobs waiting (not the running one)."""
        return sum(1 for j in self._jobs.values() if j.state == "queued")

    def in_flight(self, key: str) -> int:
        """Jobs of `key` queued or running."""
        return sum(1 for j in self._jobs.values() if j.key == key and j.state in ("queued", "running"))

    @property
    def busy(self) -> bool:
        return self.running is not None

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one never runs (recorded KILLED), a running one stops after its current
        step (its run ends KILLED with the partial output kept). A finished job is left as it is."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        job.cancel.set()
        if job.state == "queued":
            self._finish_unrendered(job, "cancelled", None)
        return job

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        """Block until the job's version passes `version` (or `timeout`); the job as it is then."""
        with self._changed:
            self._changed.wait_for(lambda: (j := self._jobs.get(job_id)) is None or j.version > version,
                                   timeout=timeout)
        return self._jobs.get(job_id)

    def shutdown(self, timeout: float = 8.0) -> None:
        """Stop: no new jobs, queued ones cancelled (and recorded), the running one stopped after its
        current step (its run ends KILLED); waits up to `timeout` seconds for it."""
        with self._lock:
            self._closing = True
        for job in list(self._jobs.values()):
            if job.state == "queued":
                job.cancel.set()
                self._finish_unrendered(job, "cancelled", None)
        if self.running is not None:
            self.running.cancel.set()
        self._waiting.put(None)
        if self._worker is not None:
            self._worker.join(timeout)

    # -- working -------------------------------------------------------------------------------

    def _touch(self, job: Job, **changes: Any) -> None:
        with self._changed:
            for k, v in changes.items():
                setattr(job, k, v)
            job.version += 1
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            job = self._waiting.get()
            if job is None:
                return
            if job.state != "queued":  # cancelled while it waited
                continue
            with self.device:
                self.running = job
                try:
                    self._render(job)
                finally:
                    self.running = None

    def _render(self, job: Job) -> None:
        self._touch(job, state="running", started=time.time())

        def progress(step: int, total: int) -> None:
            self._touch(job, step=step, total=total)

        tags = {TAG_JOB: job.id, TAG_KEY: job.key, TAG_STATE: "running", **job.tags}
        try:
            result = self.lab.render(job.plan, progress=progress, cancel=job.cancel, tags=tags)
        except Exception as e:  # noqa: BLE001 - a failed job is a result to report, never a dead worker
            # cancelled where the pipeline cannot stop part-way (it raises Cancelled): no output, but not a failure
            state = "cancelled" if isinstance(e, Cancelled) else "failed"
            run_id = find_run(self.lab, job.id)
            if run_id is None:
                self._finish_unrendered(job, state, e)
            else:
                self._set_state(run_id, state)
                self._touch(job, state=state, run_id=run_id, error=error_body(e), ended=time.time())
            return
        state = "cancelled" if result.status == "cancelled" else "finished"
        self._set_state(result.run_id, state)
        self._touch(job, state=state, run_id=result.run_id, result=result_body(result), ended=time.time())

    def _set_state(self, run_id: str | None, state: str) -> None:
        if run_id:
            try:
                self.lab.tracker.client.set_tag(run_id, TAG_STATE, state)
            except Exception:  # noqa: BLE001 - the job's state in memory is still right
                pass

    def _finish_unrendered(self, job: Job, state: str, error: BaseException | None) -> None:
        """Record a job that has no render run (cancelled while queued, failed before its run opened)."""
        with self._lock:
            if job.state in DONE:
                return
            job.state = state  # claimed: the worker skips it from now on
        run_id = None
        try:
            tags = {TAG_JOB: job.id, TAG_KEY: job.key, TAG_STATE: state, "labkit.job": "render", **job.tags}
            if error is not None:
                tags.update({"labkit.error": error_body(error)["message"][:5000],
                             "labkit.error_type": type(error).__name__})
            from labkit.render import plan_params

            tags["labkit.rationale"] = job.plan.rationale[:8000]  # a sentence, not a param (`plan_params`)
            with self.lab.run(f"job-{job.id}", params=plan_params(job.plan), tags=tags) as run:
                run.log_dict(job.plan.to_dict(), "plan.json")
                run.status = "KILLED" if state == "cancelled" else "FAILED"
                run_id = run.run_id
        except Exception:  # noqa: BLE001 - the store may be what failed; the job's state is still reported
            pass
        self._touch(job, state=state, run_id=run_id, ended=time.time(),
                    error=error_body(error) if error is not None else None)

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.state in DONE]
        for job in sorted(done, key=lambda j: j.created)[: max(0, len(self._jobs) - self.keep)]:
            self._jobs.pop(job.id, None)


def result_body(result: Any) -> dict[str, Any]:
    """What a finished job reports: its outputs (names and URLs), output terms and the full record."""
    names = [p.name for p in result.files if p.parent.name == "outputs"]
    return {"outputs": [{"name": n, "url": f"/outputs/{result.run_id}/{n}"} for n in names],
            "terms": result.record.get("terms"), "record": result.record}


def find_run(lab: Lab, job_id: str) -> str | None:
    """The id of the MLflow run of job `job_id` (newest when several), or None."""
    found = lab.tracker.search_runs(filter_string=f"tags.`{TAG_JOB}` = '{job_id}'", max_results=1)
    return found[0].info.run_id if found else None
