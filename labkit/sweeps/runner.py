"""Running a sweep: one parent MLflow run, one child run per point and seed.

A plan point is a render (`Lab.render`): its run is the child, with the plan as params, the images as
outputs, and the point's parameters and scores added. A notebook point is a child run that holds the
executed notebook (`notebook/point-NNN.ipynb`), the metrics and files the notebook passed to
`labkit.notebooks.record`, and the means of the metrics of the runs the notebook made (which nest
under it: the kernel gets `LABKIT_PARENT_RUN_ID`). A point that fails is recorded FAILED — for a
notebook with the cell and the error, and what it recorded before — and the sweep goes on. Ctrl-C or
SIGTERM (see `labkit.sweeps.stopping`) kills the running kernels, marks the running points and the sweep KILLED
with the reason, keeps what they recorded, and raises `SweepStopped`. `resume=True` reopens the latest sweep of
the same name and runs only the points without a finished child. Notebook points run on up to `jobs` kernels at
once, each from a worker thread; on a machine with several GPUs each kernel is given one of them in turn
(`kernel_gpus`, tagged `labkit.sweep.gpu` on the child).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.sweeps.spec import Point, SweepSpec
from labkit.sweeps.stopping import SweepStopped, kill_kernels, quiet_dead_kernels, stop_reason, stop_signal

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.tracking.store import Run

#: Tags every sweep run carries.
TAG_JOB = "labkit.job"
TAG_NAME = "labkit.sweep.name"
TAG_KEY = "labkit.sweep.key"
TAG_PARAMS = "labkit.sweep.params"
TAG_INDEX = "labkit.sweep.index"
TAG_DONE = "labkit.sweep.complete"
TAG_ATTEMPT = "labkit.sweep.attempt"
TAG_GPU = "labkit.sweep.gpu"
PARENT_ENV = "LABKIT_PARENT_RUN_ID"
#: Roughly what one notebook kernel with a small model holds in RAM, for bounding --jobs.
KERNEL_GB = 2.0
#: Where a sweep's points run: this process ("local") or tasks on a Ray cluster ("ray", `pip install "labkit[ray]"`).
BACKENDS = ("local", "ray")


@dataclass
class PointOutcome:
    """How one point went: its child run, FINISHED / FAILED / KILLED, the error, its metrics."""

    point: Point
    run_id: str | None
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class SweepResult:
    """A sweep that ran (or was checked, for a dry run)."""

    spec: SweepSpec
    parent_run_id: str | None
    points: list[Point]
    skipped: list[Point] = field(default_factory=list)
    outcomes: list[PointOutcome] = field(default_factory=list)
    jobs: int = 1
    dry_run: bool = False
    report: Any = None

    @property
    def failed(self) -> list[PointOutcome]:
        return [o for o in self.outcomes if o.status != "FINISHED"]

    def lines(self) -> list[str]:
        if self.dry_run:
            head = (f"sweep {self.spec.name!r}: {len(self.points)} runs ({self.spec.kind} points), "
                    f"{len(self.skipped)} already finished")
            axes = self.spec.axes
            rows = [f"  {'done' if p in self.skipped else 'todo'}  {p.index:>4}  {p.label(axes)}" for p in self.points]
            return [head, *rows, "dry run: nothing was started"]
        stopped = sum(o.status == "KILLED" for o in self.outcomes)
        out = [f"sweep {self.spec.name!r}: parent run {self.parent_run_id}",
               f"  {sum(o.status == 'FINISHED' for o in self.outcomes)} finished, "
               f"{len(self.failed) - stopped} failed, " + (f"{stopped} stopped, " if stopped else "")
               + f"{len(self.skipped)} skipped (already finished) of {len(self.points)}"]
        out += [f"  {o.status} point {o.point.index} ({o.point.label()}): {o.error}" for o in self.failed]
        return out


def run_sweep(lab: Lab, spec: SweepSpec, *, jobs: int = 1, resume: bool = False, yes: bool = False,
              dry_run: bool = False, progress: bool = True, summarize: bool = True,
              on_point: Callable[[PointOutcome], None] | None = None, backend: str | None = None,
              address: str | None = None) -> SweepResult:
    """Run every point of `spec` on `lab` and record it in MLflow. See the module docstring.

    Steps: 1. check `jobs` (1 or more), the backend and the spec (every point, before any run starts); 2. with `resume`,
    find the latest sweep of this name and the points it finished; 3. with the Ray backend, join the
    cluster and check its workers can write the store; 4. open (or reopen) the parent run and log the
    spec; 5. run the remaining points, each as a child run — locally, notebook points on up to `jobs`
    kernels at once and plan points one at a time on the shared pipeline; on Ray, each point as a task
    (`labkit.sweeps.ray_backend`); 6. close the parent and, with `summarize`, write the statistics
    (`labkit.sweeps.stats.report`) into it.

    `backend`: "local" or "ray" (default: `[sweep] backend` in labkit.toml, else "local"); `address`: the
    Ray cluster (default `[sweep] address`; see `labkit.sweeps.ray_backend`). `on_point` is called after
    each point (from the thread that ran it locally; on Ray, from this thread). Ctrl-C or SIGTERM once the sweep's
    run is open raises `SweepStopped` (a KeyboardInterrupt) carrying the result so far (`labkit.sweeps.stopping`).
    """
    if not isinstance(spec, SweepSpec):
        raise InvalidParameter(f"run_sweep needs a SweepSpec, not {type(spec).__name__}.", value=type(spec).__name__,
                               fix="read a YAML file with labkit.sweeps.load_spec(path), or a dict with "
                                   "labkit.sweeps.spec_from_dict(data).")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidParameter(f"jobs={jobs!r} is not a number of kernels to run at once.", value=jobs,
                               fix="pass jobs=1 (the default) or more.")
    backend = check_backend(lab.config.sweep_backend if backend is None else backend)
    if address is not None and backend != "ray":
        raise InvalidParameter(f"A Ray address ({address!r}) was given for a sweep on the {backend} backend.",
                               value=address, fix="add --backend ray (backend=\"ray\"), or leave out the address.")
    address = lab.config.sweep_address if address is None else address
    if backend == "ray":
        from labkit.sweeps.ray_backend import check_address, require_ray

        require_ray()  # before any work: without the extra, say so first
        address = check_address(address)
    points = spec.check(lab, yes=yes)
    experiment = spec.experiment or lab.config.experiment
    if experiment != lab.config.experiment:  # renders go to the lab's experiment: give them the spec's
        import dataclasses

        from labkit.lab import Lab

        lab = Lab(config=dataclasses.replace(lab.config, experiment=experiment), hardware=lab.hardware)
    previous = find_sweep(lab, spec.name, experiment) if resume else None
    done_keys = finished_keys(lab, previous, experiment) if previous else set()
    skipped = [p for p in points if p.key in done_keys]
    todo = [p for p in points if p.key not in done_keys]
    jobs = bound_jobs(jobs, lab) if spec.kind == "notebook" else 1
    result = SweepResult(spec=spec, parent_run_id=previous, points=points, skipped=skipped, jobs=jobs,
                         dry_run=dry_run)
    if dry_run:
        return result
    cluster = None
    if backend == "ray":
        from labkit.sweeps.ray_backend import connect

        cluster = connect(lab.config, address)
    try:
        with _parent_run(lab, spec, experiment, previous) as parent:
            result.parent_run_id = parent.run_id
            parent.log_metrics({"sweep.points": len(points)})
            bar = _progress(len(points), len(skipped), spec.name, progress)
            lock = threading.Lock()
            runner = _PointRunner(lab, spec, parent.run_id, experiment, gpus=kernel_gpus(lab, jobs))

            def record(outcome: PointOutcome) -> PointOutcome:
                with lock:
                    result.outcomes.append(outcome)
                    bar.update(1)
                    bar.set_postfix(failed=len(result.failed))
                if on_point is not None:
                    on_point(outcome)
                return outcome

            def one(p: Point) -> PointOutcome:
                return record(runner.run(p))

            try:
                if cluster is not None:
                    from labkit.sweeps.ray_backend import run_points

                    run_points(cluster, runner, todo, record)
                elif spec.kind == "notebook":
                    _run_kernels(runner, todo, jobs, one)
                else:
                    for p in todo:
                        one(p)
            finally:
                bar.close()
                with lock:
                    result.outcomes += [o for o in runner.interrupted if o not in result.outcomes]
                finished = len(skipped) + sum(o.status == "FINISHED" for o in result.outcomes)
                parent.log_metrics({"sweep.finished": finished,
                                    "sweep.failed": sum(o.status == "FAILED" for o in result.outcomes),
                                    "sweep.stopped": sum(o.status == "KILLED" for o in result.outcomes)})
    except KeyboardInterrupt as e:
        if result.parent_run_id is None:  # stopped before the sweep's run opened: nothing to keep or resume
            raise
        raise SweepStopped(stop_signal(e), stop_reason(e), result) from None
    if summarize:
        from labkit.sweeps.stats import report

        result.report = report(lab, result.parent_run_id, log=True)
    return result


def _run_kernels(runner: _PointRunner, todo: list[Point], jobs: int, one: Callable[[Point], PointOutcome]) -> None:
    """Run notebook points on up to `jobs` worker threads, this thread waiting. An interrupt lands here, never inside
    papermill (whose own clean-up asks a busy kernel to shut down, and the kernel prints a ZMQError traceback):
    the points not started are dropped, the running kernels killed (again each half second, for one that was
    starting), and the workers waited for, each recording its point KILLED (a second interrupt stops the waiting:
    the workers close their runs when their kernels are gone)."""
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="labkit-sweep")
    futures = [pool.submit(one, p) for p in todo]
    join = True
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                fut.result()  # an error of on_point (a point's own errors are its outcome)
    except KeyboardInterrupt as e:
        runner.stop(stop_reason(e))
        for fut in futures:
            fut.cancel()
        try:
            with quiet_dead_kernels():
                while not all(f.done() for f in futures):
                    runner.kill_running()
                    wait(futures, timeout=0.5)
        except KeyboardInterrupt:
            join = False
        raise
    finally:
        pool.shutdown(wait=join, cancel_futures=True)


def check_backend(backend: object) -> str:
    """`backend` if it is one of `BACKENDS`; `InvalidParameter` naming the choices otherwise."""
    if backend not in BACKENDS:
        raise InvalidParameter(f"Unknown sweep backend {backend!r}.", value=backend,
                               fix=f"use one of {', '.join(BACKENDS)} (--backend, or [sweep] backend in labkit.toml).")
    return str(backend)


def bound_jobs(jobs: int, lab: Lab) -> int:
    """`jobs` bounded by the cores and by the RAM a kernel needs (`KERNEL_GB` each)."""
    jobs = max(1, int(jobs))
    cores = os.cpu_count() or 1
    ram = lab.hardware.ram_total_gb or KERNEL_GB
    return max(1, min(jobs, cores, int(ram // KERNEL_GB) or 1))


def kernel_gpus(lab: Lab, jobs: int) -> list[str] | None:
    """The GPU each of `jobs` parallel notebook kernels is given (its CUDA_VISIBLE_DEVICES), spreading them over
    this process's GPUs in turn; None for one kernel, or a machine without CUDA, where a kernel inherits this
    process's GPUs. With more kernels than GPUs, kernels share a card, and each picks its rung from the VRAM
    still free when it loads."""
    from labkit.probes import visible_gpus

    hw = lab.hardware
    if jobs <= 1 or hw.device != "cuda" or hw.gpu_count < 1:
        return None
    gpus = visible_gpus(hw.gpu_count)
    return [gpus[k % len(gpus)] for k in range(jobs)] if gpus else None


def _progress(total: int, initial: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="run", disable=not enabled, leave=True)


def find_sweep(lab: Lab, name: str, experiment: str | None = None) -> str | None:
    """The run id of the latest sweep named `name` in `experiment`, or None."""
    client = lab.tracker.client
    exp_id = lab.tracker.experiment_id(experiment)
    runs = client.search_runs([exp_id], filter_string=f"tags.`{TAG_JOB}` = 'sweep' and tags.`{TAG_NAME}` = "
                                                      f"'{_quote(name)}'",
                              max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def children(lab: Lab, parent_run_id: str, experiment: str | None = None) -> list[Any]:
    """The child runs of a sweep (MLflow `Run`s), oldest first."""
    client = lab.tracker.client
    exp_id = client.get_run(parent_run_id).info.experiment_id if experiment is None else \
        lab.tracker.experiment_id(experiment)
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                                  max_results=1000, order_by=["attributes.start_time ASC"], page_token=token)
        out += [r for r in page if TAG_KEY in r.data.tags]
        token = page.token
        if not token:
            return out


def finished_keys(lab: Lab, parent_run_id: str, experiment: str | None = None) -> set[str]:
    """Keys of the points of a sweep that have a finished, completely recorded child."""
    return {r.data.tags[TAG_KEY] for r in children(lab, parent_run_id, experiment)
            if r.info.status == "FINISHED" and r.data.tags.get(TAG_DONE) == "1"}


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


class _parent_run:
    """The sweep's parent run: a new one, or `previous` reopened (RUNNING again) for --resume."""

    def __init__(self, lab: Lab, spec: SweepSpec, experiment: str, previous: str | None):
        self.lab, self.spec, self.experiment, self.previous = lab, spec, experiment, previous
        self._cm = None

    def __enter__(self) -> Run:
        from labkit.tracking.store import Run

        spec = self.spec
        tags = {TAG_JOB: "sweep", TAG_NAME: spec.name, "labkit.sweep.kind": spec.kind,
                "labkit.sweep.spec_sha": spec.sha, "labkit.sweep.axes": json.dumps(list(spec.axes))}
        if self.previous is None:
            params = {"sweep.name": spec.name, "sweep.kind": spec.kind, "sweep.runs": len(spec.points()),
                      "sweep.seeds": json.dumps(list(spec.seeds)) if spec.seeds is not None else "",
                      "sweep.grid": json.dumps(dict(spec.grid), default=str),
                      "sweep.notebook": str(spec.notebook or ""), "sweep.plan": json.dumps(spec.plan, default=str)}
            self._cm = self.lab.run(f"sweep {spec.name}", params=params, tags=tags, experiment=self.experiment)
            run = self._cm.__enter__()
            if spec.description:
                self.lab.tracker.note(spec.description, run.run_id)
        else:
            from labkit.tracking.health import process_tags

            client = self.lab.tracker.client
            info = client.get_run(self.previous).info
            client.update_run(self.previous, status="RUNNING")
            run = Run(client, self.previous, info.experiment_id, info.artifact_uri)
            # this process owns it now (another Lab would otherwise close it as left by the dead one), and the
            # interrupted attempt's error stops describing it
            run.set_tags({**tags, **process_tags(), "labkit.sweep.resumed": int(time.time())})
            stale = client.get_run(self.previous).data.tags
            for key in ("labkit.error", "labkit.status"):
                if key in stale:
                    client.delete_tag(self.previous, key)
        run.log_text(spec.text, f"sweep/{Path(spec.path).name if spec.path else 'sweep.yaml'}")
        run.log_dict(spec.to_dict(), "sweep/spec.json")
        self.run = run
        return run

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._cm is not None:
            return bool(self._cm.__exit__(exc_type, exc, tb))
        # as `Tracker.run` ends a new sweep's parent: a stop with its reason, an error with its type
        status = "FINISHED" if exc is None else "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        if exc is not None:
            self.run.set_tags({"labkit.error": stop_reason(exc) if status == "KILLED" else f"{type(exc).__name__}: "
                                                                                        f"{exc}",
                               "labkit.error_type": status if status == "KILLED" else type(exc).__name__,
                               "labkit.status": status})
        self.lab.tracker.client.set_terminated(self.run.run_id, status=status)
        return False


class _PointRunner:
    def __init__(self, lab: Lab, spec: SweepSpec, parent: str, experiment: str, gpus: list[str] | None = None):
        self.lab, self.spec, self.parent, self.experiment = lab, spec, parent, experiment
        self.axes = spec.axes
        self._render_lock = threading.Lock()  # plan points share one pipeline: one render at a time
        self._gpus: queue.SimpleQueue[str] | None = None  # free kernel slots, each naming its GPU
        if gpus:
            self._gpus = queue.SimpleQueue()
            for gpu in gpus:
                self._gpus.put(gpu)
        self._stop_lock = threading.Lock()
        self.stopping: str | None = None  # the reason, once the sweep is being stopped
        self._running: set[str] = set()  # the point runs whose kernels are (or are about to be) running
        self.interrupted: list[PointOutcome] = []  # points an interrupt ended on this thread (plan points)

    def stop(self, reason: str) -> None:
        """Stop starting kernels: a notebook point from now on ends KILLED with `reason`, its kernel killed."""
        with self._stop_lock:
            self.stopping = reason

    def kill_running(self) -> int:
        """Kill the kernels of the notebook points running now (see `stop`); how many were found."""
        with self._stop_lock:
            running = set(self._running)
        return kill_kernels(running, PARENT_ENV)

    def tags(self, p: Point, attempt: str) -> dict[str, Any]:
        return {"mlflow.parentRunId": self.parent, TAG_NAME: self.spec.name, TAG_KEY: p.key,
                TAG_INDEX: p.index, TAG_PARAMS: json.dumps(p.values, default=str), TAG_ATTEMPT: attempt}

    def name(self, p: Point) -> str:
        return f"{self.spec.name} #{p.index}: {p.label(self.axes)}"

    def params(self, p: Point) -> dict[str, Any]:
        return {f"point.{k}": json.dumps(v, default=str) if isinstance(v, (list, dict)) else v
                for k, v in p.values.items()}

    def run(self, p: Point, attempt: str | None = None) -> PointOutcome:
        """Run one point as a child run; `attempt` tags every run it opens (a fresh id by default)."""
        start = time.perf_counter()
        attempt = attempt or uuid.uuid4().hex
        try:
            if self.spec.kind == "plan":
                with self._render_lock:
                    outcome = self._plan_point(p, attempt)
            else:
                outcome = self._notebook_point(p, attempt)
        except KeyboardInterrupt as e:  # the point's run ended KILLED with the reason (lab.run / the render)
            self.interrupted.append(PointOutcome(p, self._name_stopped(p, attempt), "KILLED", stop_reason(e),
                                                 seconds=time.perf_counter() - start))
            raise
        except Exception as e:
            outcome = self.failed(p, attempt, e)
        outcome.seconds = time.perf_counter() - start
        return outcome

    # -- a plan point: the render run is the child ----------------------------------------------

    def _plan_point(self, p: Point, attempt: str) -> PointOutcome:
        from labkit.tracking.store import Run

        plan = self.spec.plan_for(p)
        result = self.lab.render(plan, tags=self.tags(p, attempt))
        client = self.lab.tracker.client
        info = client.get_run(result.run_id).info
        run = Run(client, result.run_id, info.experiment_id, info.artifact_uri)
        run.set_tags({"mlflow.runName": self.name(p)})
        run.log_params(self.params(p))
        if result.status != "finished":
            return PointOutcome(p, run.run_id, "KILLED", "the render was cancelled")
        metrics = dict(client.get_run(run.run_id).data.metrics)
        if self.spec.score:
            scores = score_images(self.spec.score, [(f, plan.prompt) for f in result.files
                                                    if f.suffix.lower() == ".png" and run.run_id in str(f)])
            run.log_metrics(scores)
            metrics.update(scores)
        run.set_tags({TAG_DONE: "1"})
        return PointOutcome(p, run.run_id, "FINISHED", metrics=metrics)

    # -- a notebook point: a child run holding the executed notebook ------------------------------

    def _notebook_point(self, p: Point, attempt: str) -> PointOutcome:
        from labkit.notebooks import notebook_parameters

        spec, lab = self.spec, self.lab
        values = dict(p.values)
        if "root" in notebook_parameters(spec.notebook) and "root" not in values:
            values["root"] = str(lab.config.root)
        gpu = self._gpus.get() if self._gpus is not None else None  # as many slots as kernels run at once
        try:
            return self._run_notebook(p, attempt, values, gpu)
        finally:
            if gpu is not None:
                self._gpus.put(gpu)

    def _run_notebook(self, p: Point, attempt: str, values: dict[str, Any], gpu: str | None) -> PointOutcome:
        from labkit.notebooks import execute

        spec, lab = self.spec, self.lab
        tags = {**self.tags(p, attempt), "labkit.job": "sweep-point", "labkit.sweep.notebook": str(spec.notebook)}
        if gpu is not None:
            tags[TAG_GPU] = gpu
        outcome = PointOutcome(p, None, "FINISHED")
        with lab.run(self.name(p), params=self.params(p), tags=tags, experiment=self.experiment,
                     parent_run_id=self.parent) as run:
            outcome.run_id = run.run_id
            env = {PARENT_ENV: run.run_id, "LABKIT_ROOT": str(lab.config.root),
                   "MLFLOW_TRACKING_URI": lab.config.tracking_uri, "LABKIT_EXPERIMENT": self.experiment}
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            ex, raised = None, None
            with self._stop_lock:
                start = self.stopping is None
                if start:
                    self._running.add(run.run_id)  # before the kernel starts: `kill_running` finds it from now on
            with tempfile.TemporaryDirectory(prefix="labkit-sweep-") as tmp:
                out = Path(tmp) / f"point-{p.index:03d}.ipynb"
                try:
                    if start:
                        ex = execute(spec.notebook, out, values, kernel=spec.kernel, cwd=lab.config.root, env=env,
                                     timeout=spec.timeout)
                except Exception as e:  # the kernel died, a cell timed out, no such kernel…
                    raised = e
                finally:
                    with self._stop_lock:
                        self._running.discard(run.run_id)
                    if out.is_file():  # what ran, up to the error or the stop
                        run.log_artifact(out, "notebook")
                        if ex is None or ex.error is not None:
                            self._keep_records(run, out)
            if self.stopping is not None and (ex is None or ex.error is not None):
                self._end_stopped(run, self.stopping)
                outcome.status, outcome.error = "KILLED", self.stopping
                return outcome
            if raised is not None:
                raise raised
            assert ex is not None
            if ex.error is not None:
                err = ex.error
                run.set_tags({"labkit.error": err.summary(), "labkit.error_type": err.ename,
                              "labkit.status": "FAILED", "labkit.sweep.failed_cell": err.cell_index,
                              "labkit.sweep.failed_source": err.source[:2000]})
                run.log_text(f"{err.summary()}\n\n--- cell {err.cell_index} ---\n{err.source}\n\n{err.traceback}\n",
                             "error.txt")
                run.status = "FAILED"
                outcome.status, outcome.error = "FAILED", err.summary()
                return outcome
            metrics = nested_metrics(lab, run.run_id, run.experiment_id)
            metrics.update(ex.metrics)
            files = [f for f in ex.files if f.is_file()]
            for f in files:
                run.log_artifact(f, "outputs")
            if spec.score:
                scored = [(f, values.get("prompt", "")) for f in files if f.suffix.lower() == ".png"]
                scored += nested_images(lab, run.run_id, run.experiment_id)
                metrics.update(score_images(spec.score, scored))
            run.log_metrics(metrics)
            run.set_tags({TAG_DONE: "1"})
            outcome.metrics = metrics
        return outcome

    def _keep_records(self, run: Run, notebook: Path) -> None:
        """What a notebook that raised or was stopped passed to `record` before: its metrics and files, on its run."""
        from labkit.notebooks import read_records

        try:
            metrics, files = read_records(notebook)
            run.log_metrics(metrics)
            for f in files:
                f = f if f.is_absolute() else self.lab.config.root / f  # the kernel's working directory
                if f.is_file():
                    run.log_artifact(f, "outputs")
        except Exception as e:  # the error or the stop is what the run reports; this is a bonus
            log.warning("could not keep what point run %s recorded: %s", run.run_id, e)

    def _end_stopped(self, run: Run, reason: str) -> None:
        """A point whose kernel was killed: its run, and the runs the notebook had open under it, end KILLED."""
        run.set_tags({"labkit.error": reason, "labkit.error_type": "KILLED", "labkit.status": "KILLED"})
        run.status = "KILLED"
        client = self.lab.tracker.client
        try:
            nested = client.search_runs([run.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = "
                                                                            f"'{run.run_id}'", max_results=1000)
            for r in nested:
                if r.info.status == "RUNNING":  # its kernel is gone: nobody else will close it
                    client.set_tag(r.info.run_id, "labkit.error", reason)
                    client.set_tag(r.info.run_id, "labkit.status", "KILLED")
                    client.set_terminated(r.info.run_id, status="KILLED")
        except Exception as e:  # the store is busy or gone: a later Lab closes them as left by a dead process
            log.warning("could not close the runs of stopped point run %s: %s", run.run_id, e)

    def _name_stopped(self, p: Point, attempt: str) -> str | None:
        """The run a stopped point's attempt opened (found by its tag), named and labelled as a finished point's
        run is (a render's is still "txt2img"); its id, if there is one."""
        from labkit.tracking.store import Run

        client = self.lab.tracker.client
        try:
            found = client.search_runs([self.lab.tracker.experiment_id(self.experiment)],
                                       filter_string=f"tags.`{TAG_ATTEMPT}` = '{attempt}'", max_results=1)
            if found:
                run = Run(client, found[0].info.run_id, found[0].info.experiment_id, found[0].info.artifact_uri)
                run.set_tags({"mlflow.runName": self.name(p)})
                run.log_params(self.params(p))
        except Exception:  # while stopping: the outcome can go without it
            return None
        return found[0].info.run_id if found else None

    def failed(self, p: Point, attempt: str, exc: BaseException) -> PointOutcome:
        """A point that raised in labkit (not in a notebook): its child run FAILED with the error. A
        render that failed inside its run already is that run; otherwise one is made to say so."""
        client = self.lab.tracker.client
        exp_id = self.lab.tracker.experiment_id(self.experiment)
        found = client.search_runs([exp_id], filter_string=f"tags.`{TAG_ATTEMPT}` = '{attempt}'", max_results=1)
        message = f"{type(exc).__name__}: {exc}"
        if found:
            run_id = found[0].info.run_id
            from labkit.tracking.store import Run

            run = Run(client, run_id, found[0].info.experiment_id, found[0].info.artifact_uri)
            run.set_tags({"mlflow.runName": self.name(p)})  # as a finished point's child is named
            run.log_params(self.params(p))
            if found[0].info.status != "FAILED":
                client.set_tag(run_id, "labkit.error", message[:8000])
                client.set_terminated(run_id, status="FAILED")
            return PointOutcome(p, run_id, "FAILED", message)
        run_id = None
        try:
            with self.lab.run(self.name(p), params=self.params(p),
                              tags={**self.tags(p, attempt), "labkit.job": "sweep-point"},
                              experiment=self.experiment, parent_run_id=self.parent) as run:
                run_id = run.run_id
                raise exc
        except Exception:
            pass
        return PointOutcome(p, run_id, "FAILED", message)


def nested_metrics(lab: Lab, run_id: str, experiment_id: str) -> dict[str, float]:
    """The mean of each metric over the runs nested under `run_id` (what a notebook rendered)."""
    runs = lab.tracker.client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                                          max_results=1000)
    sums: dict[str, list[float]] = {}
    for r in runs:
        for k, v in r.data.metrics.items():
            if not k.startswith("system/"):  # the kernel's machine load is not a result of the point
                sums.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def nested_images(lab: Lab, run_id: str, experiment_id: str) -> list[tuple[Path, str]]:
    """(image, prompt) for every output image of the runs nested under `run_id`."""
    from labkit.tracking.compare import RunSummary

    runs = lab.tracker.client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                                          max_results=1000)
    return [(f, s.prompt) for r in runs for s in [RunSummary.from_mlflow(r, lab.tracker)] for f in s.images]


def score_images(scorer: str, images: list[tuple[Path, str]]) -> dict[str, float]:
    """Scores of images against their prompts. `toyworld`: the share of images the toy-world detector finds
    right on each attribute (`adherence.colour`, …, `adherence.all_correct`; prompts that name each object's
    size and position), and GenEval's categories (`geneval.counting`, …, `geneval.overall`; each image in the
    categories its prompt belongs to, see `labkit.toyworld.geneval`). `geneval.skipped` counts the images whose
    prompt the benchmark cannot read; they are scored in nothing, and their prompts and reasons are logged."""
    if scorer != "toyworld" or not images:
        return {}
    from PIL import Image

    from labkit.toyworld.adherence import judge_toy, rates
    from labkit.toyworld.geneval import score_prompts

    pairs = []
    for path, prompt in images:
        with Image.open(path) as img:
            pairs.append((img.convert("RGB"), prompt))
    verdicts = [v for img, prompt in pairs for v in (judge_toy([img], prompt) or [])]
    out = {f"adherence.{a}": v for a, v in rates(verdicts).items()} if verdicts else {}
    out["adherence.images"] = float(len(verdicts))
    summary, skipped = score_prompts(pairs)
    out.update({f"geneval.{c}": v["score"] for c, v in summary.items() if c != "overall"})
    if summary["overall"] is not None:
        out["geneval.overall"] = summary["overall"]
    out["geneval.skipped"] = float(len(skipped))
    for prompt, reason in sorted({(s["prompt"], s["reason"]) for s in skipped}):
        log.warning("toyworld score: skipped %r: %s", prompt, reason)
    return out


__all__ = ["BACKENDS", "PARENT_ENV", "PointOutcome", "SweepResult", "SweepStopped", "bound_jobs", "check_backend",
           "children", "find_sweep", "finished_keys", "kernel_gpus", "run_sweep", "score_images"]
