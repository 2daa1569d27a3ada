"""Ray as a sweep backend: each point of a sweep is a Ray task on a cluster.

`run_sweep(..., backend="ray", address=...)` (or `labkit sweep FILE --backend ray`, or `[sweep] backend = "ray"`
in labkit.toml) runs the same points as the local backend and records them the same way: the task runs
`_PointRunner.run` on the worker, so each child run has the same name, params, tags and parent link; a
point that raises is FAILED there, a worker that dies is recorded FAILED by the driver, and `--resume`
reads the store as before. Only the driver's loop differs (`run_points`).

- Resources: a point asks for one CPU, one GPU when the cluster has GPUs and the point's model family has a
  GPU strategy, and the RAM its family's memory strategy needs (`point_resources`).
- Workers are reused processes: each keeps one `Lab` per configuration in a module global, so the plan
  points a worker runs share its loaded pipeline (the Lab's pipeline cache).
- The store: tasks get the driver's `LabConfig` and write to its tracking URI. On a cluster of this machine
  alone a SQLite store works; a cluster with other machines needs a tracking server (`labkit tracking serve`,
  then `[tracking] uri = "http://HOST:PORT"`), and a SQLite store is refused before anything starts.
- Addresses: None starts a local cluster or joins the one `ray.init()` finds (`$RAY_ADDRESS`); "local"
  always starts one; "auto" joins a running cluster of this machine; "ray://HOST:10001" (Ray client) or
  "HOST:6379" join a remote one. A cluster this process already joined (`ray.init` in a notebook) is used
  as it is, whatever the address.

Ray is imported only here, and only when a sweep asks for it: `pip install "labkit[ray]"`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.errors import ConfigError, InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.config import LabConfig
    from labkit.lab import Lab
    from labkit.sweeps.runner import PointOutcome, _PointRunner
    from labkit.sweeps.spec import Point, SweepSpec

INSTALL = 'pip install "labkit[ray]"'
#: The least RAM a point reserves (GiB): a worker process with torch and a small pipeline.
MIN_TASK_GB = 1.0
#: Seconds the driver waits, after Ctrl-C, for cancelled tasks to mark their runs KILLED.
CANCEL_WAIT_S = 20.0
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
    from labkit.hardware import HardwareProfile, choose, strategy_table

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
        peak = max((r.get("est_peak_vram_gb") or 0.0) for r in table.family(family)["ladder"])
        gb = max(gb, peak * (2.0 if strategy.device == "cpu" else 1.0))
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
    """The body of a point's Ray task: the local backend's `_PointRunner.run` on the worker's Lab."""
    from labkit.sweeps.runner import _PointRunner

    return _PointRunner(_worker_lab(config), spec, parent, experiment).run(point, attempt)


# -- the driver's side ----------------------------------------------------------------------------

def run_points(cluster: Cluster, runner: _PointRunner, points: list[Point],
               record: Callable[[PointOutcome], None]) -> None:
    """Submit each point as a Ray task and `record` each outcome as it arrives (on this thread).

    A task that could not run or whose worker died is recorded FAILED with Ray's error (its run, if it
    opened one, is marked FAILED). Ctrl-C cancels the tasks still queued or running (they end KILLED)
    and re-raises."""
    ray = require_ray()
    task = ray.remote(run_point_task)
    lab = runner.lab
    hardware = lab.hardware
    families: dict[str, str | None] = {}  # by model: completing a plan reads the catalogue
    refs: dict[Any, tuple[Point, str]] = {}
    for p in points:
        model = str(runner.spec.plan_for(p).model if runner.spec.kind == "plan" else p.values.get("model"))
        if model not in families:
            families[model] = point_family(lab, runner.spec, p)
        res = cluster.fit(point_resources(families[model], hardware, cluster.gpus))
        attempt = uuid.uuid4().hex
        # max_retries=0: a retried point would open a second child run; --resume is the retry.
        ref = task.options(max_retries=0, name=f"labkit sweep {runner.spec.name} #{p.index}", **res).remote(
            lab.config, runner.spec, runner.parent, runner.experiment, p, attempt)
        refs[ref] = (p, attempt)
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                p, attempt = refs[ref]
                try:
                    outcome = ray.get(ref)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # the task could not run, or its worker died
                    outcome = runner.failed(p, attempt, _cause(e))
                record(outcome)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)  # a running point gets KeyboardInterrupt: its run ends KILLED, as locally
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
        raise


def _cause(exc: BaseException) -> BaseException:
    """The error a task raised (Ray wraps it in a RayTaskError), or Ray's own error."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


__all__ = ["INSTALL", "Cluster", "check_address", "check_store", "connect", "point_family", "point_resources",
           "require_ray", "run_point_task", "run_points"]
