"""Ray as a sweep backend: each point of a sweep is a task on a Ray cluster.

`run_sweep(..., backend="ray", address=...)` (or `labkit sweep FILE --backend ray`, or `[sweep] backend = "ray"`
in labkit.toml) runs the same points as the local backend and records them the same way: a worker runs
`_PointRunner.run` for the point, so each child run has the same name, params, tags and parent link; a
point that raises is FAILED there, a worker that dies is recorded FAILED by the driver, and `--resume`
reads the store as before. Only the driver's loop differs (`run_points`).

- Resources: a point asks for one CPU, one GPU when the cluster has GPUs and the point's model family has a
  GPU strategy, and the RAM its family's memory strategy needs (`point_resources`), never more than one
  node offers (`Cluster.fit`).
- Workers: points that ask for the same resources run on a pool of `PointWorker` actors, as many as the
  cluster holds at once; an actor runs its points one after another and keeps one `Lab` per configuration,
  so the plan points it runs share its loaded pipeline, and it holds its GPU for its whole life. A worker that
  asked for no GPU sees none (`worker_options`), so it runs on the CPU rung it was sized for.
- The store: workers get the driver's `LabConfig` and write to its tracking URI. On a cluster of this machine
  alone a SQLite store works; a cluster with other machines needs a tracking server (`labkit tracking serve`,
  then `[tracking] uri = "http://HOST:PORT"`), and a SQLite store is refused before anything starts.
- Addresses: None starts a local cluster or joins the one `ray.init()` finds (`$RAY_ADDRESS`, the latest
  cluster started here); "local" always starts one; "auto" joins a running cluster of this machine;
  "ray://HOST:10001" (Ray client) or "HOST:6379" join a remote one. A cluster this process already joined
  (`ray.init` in a notebook) is used as it is, whatever the address.

Ray is imported only here, and only when a sweep asks for it: `pip install "labkit[ray]"`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.errors import ConfigError, InvalidParameter
from labkit.sweeps.stopping import stop_reason

if TYPE_CHECKING:  # pragma: no cover
    from labkit.config import LabConfig
    from labkit.lab import Lab
    from labkit.sweeps.runner import PointOutcome, _PointRunner
    from labkit.sweeps.spec import Point, SweepSpec

INSTALL = 'pip install "labkit[ray]"'
#: The least RAM a point reserves (GiB): a worker process with torch and a small pipeline.
MIN_TASK_GB = 1.0
#: When the driver has no GPU but the cluster has, strategies are planned for a card this size (GiB).
CLUSTER_GPU_GB = 24.0
_LOCAL_ADDRESSES = (None, "local", "auto")


def require_ray() -> Any:
    """The `ray` module, or `MissingDependency` naming the extra that installs it."""
    from labkit.deps import require

    return require("ray", feature="Running a sweep on Ray (--backend ray)", fix=INSTALL)


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a sweep runs on: its address as given, whether every node is this machine, its GPUs and
    CPUs, and the most `memory` (bytes) one node offers, and one node with a GPU (0 without GPUs)."""

    address: str | None
    local: bool
    gpus: float
    cpus: float
    node_memory: float = 0.0
    gpu_node_memory: float = 0.0

    def fit(self, resources: dict[str, float]) -> dict[str, float]:
        """`resources` with `memory` no more than one node that could run the task offers: a task asking more
        than any node has would wait for ever, and the strategy's estimate is a reservation, not a need."""
        most = self.gpu_node_memory if resources.get("num_gpus") else self.node_memory
        if most and resources.get("memory", 0.0) > most:
            return {**resources, "memory": float(int(most))}
        return resources


def check_address(address: Any) -> str | None:
    """`address` as given (None, "local", "auto", "ray://HOST:PORT" or "HOST:PORT"); `InvalidParameter` otherwise."""
    if address is None or address in _LOCAL_ADDRESSES:
        return address
    if not isinstance(address, str) or not address.strip() or any(c.isspace() for c in address.strip()):
        raise InvalidParameter(f"Ray address {address!r} is not an address.", value=address,
                               fix='use "local", "auto", "ray://HOST:10001" (Ray client) or "HOST:6379".')
    address = address.strip()
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f"Ray address {address!r} has no HOST:PORT.", value=address,
                               fix='write e.g. "ray://head-node:10001" (Ray client) or "head-node:6379".')
    return address


def connect(config: LabConfig, address: str | None) -> Cluster:
    """Join (or start) the Ray cluster for a sweep and check that its workers can write to the store.

    Raises `MissingDependency` without Ray, and `ConfigError` for a SQLite store with a cluster that has
    other machines (their workers cannot write this machine's file)."""
    ray = require_ray()
    address = check_address(address)
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                  "configure_logging": False}
        if address in (None, "local"):
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"Cannot join the Ray cluster at {address!r}: {e}", value=address,
                              fix="start it (`ray start --head`), check the address (ray://HOST:10001 for Ray "
                                  "client), or use --address local for a cluster of this machine.") from e
    here = ray.util.get_node_ip_address()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    local = all(n.get("NodeManagerAddress") == here for n in nodes)  # every node is this machine
    total = ray.cluster_resources()
    mem = [float(n.get("Resources", {}).get("memory", 0.0)) for n in nodes]
    gpu_mem = [float(n.get("Resources", {}).get("memory", 0.0)) for n in nodes if n.get("Resources", {}).get("GPU")]
    cluster = Cluster(address=address, local=local, gpus=float(total.get("GPU", 0.0)),
                      cpus=float(total.get("CPU", 0.0)), node_memory=max(mem, default=0.0),
                      gpu_node_memory=max(gpu_mem, default=0.0))
    check_store(config, cluster)
    return cluster


def check_store(config: LabConfig, cluster: Cluster) -> None:
    """Refuse a store the cluster's workers cannot write: a SQLite file with machines other than this one."""
    if cluster.local or not config.tracking_uri.startswith("sqlite:"):
        return
    raise ConfigError(
        f"The Ray cluster at {cluster.address!r} has machines other than this one, and the tracking store "
        f"{config.tracking_uri!r} is a SQLite file on this machine, which their workers cannot write.",
        value=config.tracking_uri,
        fix='start a tracking server for the project (`labkit tracking serve --host 0.0.0.0`) and point the '
            'project at it: [tracking] uri = "http://THIS-HOST:5000" in labkit.toml (or $MLFLOW_TRACKING_URI); '
            "or run the sweep on a cluster of this machine (--address local).")


def point_family(lab: Lab, spec: SweepSpec, point: Point) -> str | None:
    """The model family a point renders with (None when its model is not in the catalogue): the plan's
    model, or for a notebook point its `model` parameter, else the lab's default image model."""
    if spec.kind == "plan":
        model = lab.complete(spec.plan_for(point), validate=False).model
    else:
        model = point.values.get("model") or lab.config.default_image_model
    entry = lab.catalog.find(model) if isinstance(model, str) and model.strip() else None
    return entry.family if entry is not None else None


def point_resources(family: str | None, hardware: Any, cluster_gpus: float) -> dict[str, float]:
    """What a point asks Ray for: 1 CPU; 1 GPU when the cluster has GPUs and the family's strategy for a
    GPU machine runs on the GPU (an unknown family is assumed to want one); and `memory` in bytes, the
    RAM the family's strategy needs: its largest peak estimate on the ladder (the weights pass through
    host memory while loading), twice that on a CPU rung (float32 weights), at least `MIN_TASK_GB`."""
    from labkit.hardware import HardwareProfile, choose, host_ram_gb, strategy_table

    out: dict[str, float] = {"num_cpus": 1.0, "num_gpus": 0.0}
    gb = MIN_TASK_GB
    if family is None:
        out["num_gpus"] = 1.0 if cluster_gpus > 0 else 0.0
    else:
        table = strategy_table()
        if cluster_gpus > 0:
            profile = hardware if getattr(hardware, "device", "cpu") == "cuda" else \
                HardwareProfile.simulated(CLUSTER_GPU_GB)
        else:
            profile = HardwareProfile.simulated(None)
        strategy = choose(family, profile, table=table)
        if strategy.device == "gpu":
            out["num_gpus"] = 1.0
        gb = max(gb, host_ram_gb(family, on_cpu=strategy.device == "cpu", table=table))
    out["memory"] = float(int(gb * 2**30))
    return out


# -- the worker's side ----------------------------------------------------------------------------

#: One Lab per configuration in each worker process: the plan points a worker runs share its pipelines.
_LABS: dict[Any, Lab] = {}


def _worker_lab(config: LabConfig) -> Lab:
    lab = _LABS.get(config)
    if lab is None:
        from labkit.lab import Lab

        lab = _LABS[config] = Lab(config=config)  # this worker's own hardware, detected on first use
    return lab


def run_point_task(config: LabConfig, spec: SweepSpec, parent: str, experiment: str, point: Point,
                   attempt: str) -> PointOutcome:
    """What a worker does for one point: the local backend's `_PointRunner.run` on the worker's Lab."""
    from labkit.sweeps.runner import _PointRunner

    return _PointRunner(_worker_lab(config), spec, parent, experiment).run(point, attempt)


class PointWorker:
    """A Ray actor that runs points one after another in one process, holding its resources (its GPU) for its
    life: its Lab keeps the loaded pipeline for the next point. (Plain tasks would not do: Ray runs each GPU
    task in a fresh process by default, and a process reused for another GPU would keep its first CUDA device.)"""

    def run(self, config: LabConfig, spec: SweepSpec, parent: str, experiment: str, point: Point,
            attempt: str) -> PointOutcome:
        return run_point_task(config, spec, parent, experiment, point, attempt)


# -- the driver's side ----------------------------------------------------------------------------

def pool_size(resources: dict[str, float], cluster: Cluster, points: int) -> int:
    """How many workers a group of points with these resources gets: as many as the cluster's GPUs (or CPUs)
    hold at once, no more than there are points, at least one."""
    if resources.get("num_gpus"):
        fits = cluster.gpus // resources["num_gpus"]
    else:
        fits = cluster.cpus // max(resources.get("num_cpus", 1.0), 1e-9)
    return int(max(1, min(points, fits)))


def worker_options(resources: dict[str, float]) -> dict[str, Any]:
    """The actor options for a worker with these resources. A worker without a GPU is started with every GPU
    hidden (CUDA_VISIBLE_DEVICES=""): recent Ray (2.60 here) no longer hides them from an actor that asked for
    none, and its Lab would otherwise find the node's GPU and render there, beside the GPU workers that hold it."""
    if resources.get("num_gpus"):
        return dict(resources)
    return {**resources, "runtime_env": {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}}


def run_points(cluster: Cluster, runner: _PointRunner, points: list[Point],
               record: Callable[[PointOutcome], None]) -> None:
    """Run the points on pools of `PointWorker` actors and `record` each outcome as it arrives (on this thread).

    Points that ask for the same resources share a pool (`pool_size` workers), each worker taking the next
    point when it finishes one, and leaving when none is left (freeing its resources for the next pool). A
    point whose worker died is recorded FAILED with Ray's error (its run, if it opened one, is marked FAILED)
    and a fresh worker takes the pool's next point. Ctrl-C stops every worker, marks the points they were
    running KILLED, and re-raises."""
    ray = require_ray()
    actor_class = ray.remote(PointWorker)
    lab, spec = runner.lab, runner.spec
    families: dict[str, str | None] = {}  # by model: completing a plan reads the catalogue
    shapes: dict[tuple, dict[str, float]] = {}
    queues: dict[tuple, list[Point]] = {}
    for p in points:
        model = str(spec.plan_for(p).model if spec.kind == "plan" else p.values.get("model"))
        if model not in families:
            families[model] = point_family(lab, spec, p)
        res = cluster.fit(point_resources(families[model], lab.hardware, cluster.gpus))
        key = tuple(sorted(res.items()))
        shapes[key] = res
        queues.setdefault(key, []).append(p)
    for q in queues.values():
        q.reverse()  # pop() from the end: the points run in order
    in_flight: dict[Any, tuple[tuple, Any, Point, str]] = {}
    workers: list[Any] = []

    def start(key: tuple) -> Any:
        # max_restarts=0 / max_task_retries=0: a retried point would open a second child run; --resume is the retry.
        actor = actor_class.options(max_restarts=0, max_task_retries=0, **worker_options(shapes[key])).remote()
        workers.append(actor)
        return actor

    def feed(key: tuple, actor: Any) -> None:
        if not queues[key]:
            ray.kill(actor)  # the pool's work is done: free its GPU / CPU / memory for the other pools
            workers.remove(actor)
            return
        p = queues[key].pop()
        attempt = uuid.uuid4().hex
        ref = actor.run.remote(lab.config, spec, runner.parent, runner.experiment, p, attempt)
        in_flight[ref] = (key, actor, p, attempt)

    try:
        for key, res in shapes.items():
            for _ in range(pool_size(res, cluster, len(queues[key]))):
                feed(key, start(key))
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                key, actor, p, attempt = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # the worker died (or could not start): a fresh one takes the next point
                    outcome = runner.failed(p, attempt, _cause(e))
                    ray.kill(actor)
                    workers.remove(actor)
                    actor = start(key)
                record(outcome)
                feed(key, actor)
    except BaseException as e:
        for actor in workers:
            ray.kill(actor)
        # a stop (Ctrl-C, SIGTERM) ends the running points KILLED with its reason; an error of the driver, FAILED
        from labkit.sweeps.runner import PointOutcome

        stopped = isinstance(e, KeyboardInterrupt)
        why = stop_reason(e) if stopped else f"{type(e).__name__}: {e}"
        for _, _, p, attempt in in_flight.values():
            mark_killed(lab, runner.experiment, attempt, reason=why, status="KILLED" if stopped else "FAILED")
            if stopped:
                runner.interrupted.append(PointOutcome(p, None, "KILLED", why))
        raise


def mark_killed(lab: Lab, experiment: str, attempt: str, reason: str | None = None, status: str = "KILLED") -> None:
    """End the runs a stopped point left RUNNING (found by their attempt tag) as `status` (KILLED, as a local Ctrl-C
    does; FAILED when the driver failed), with `reason` as their `labkit.error`."""
    from labkit.sweeps.runner import TAG_ATTEMPT

    client = lab.tracker.client
    exp_id = lab.tracker.experiment_id(experiment)
    for run in client.search_runs([exp_id], filter_string=f"tags.`{TAG_ATTEMPT}` = '{attempt}'"):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "labkit.status", status)
            if reason:
                client.set_tag(run.info.run_id, "labkit.error", reason[:8000])
            client.set_terminated(run.info.run_id, status=status)


def _cause(exc: BaseException) -> BaseException:
    """The error a task raised (Ray wraps it in a RayTaskError), or Ray's own error."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


__all__ = ["INSTALL", "Cluster", "PointWorker", "check_address", "check_store", "connect", "mark_killed",
           "point_family", "point_resources", "pool_size", "require_ray", "run_point_task", "run_points",
           "worker_options"]
