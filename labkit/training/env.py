"""`TrainEnv`: what a training job takes from its surroundings — where its runs go, the hardware they ran
on, the licence policy, and how to find a model — so the engine and the recipes need no `Lab`.

    env = TrainEnv(tracker=Tracker(LabConfig.resolve()), hardware=HardwareProfile.detect(),
                   compliance=resolve_mode("research"))
    train_lora(env, LoraTrainConfig(data="hexagons/", output_dir="out"))

`Lab.train_env()` builds one from a lab (runs then open through `Lab.run`, with its tags and bookkeeping),
and every recipe also accepts an object with a `train_env()` method, so `train_lora(lab, config)` keeps
working. `TrainEnv()` alone logs nothing and checks no licence: what tests of a task's loss need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import Catalog
    from labkit.compliance import Mode
    from labkit.hardware import HardwareProfile
    from labkit.pipelines.loader import ModelRef
    from labkit.tracking import Run, Tracker

#: Model id → (its `ModelRef`, the local folder of its files, checked safe to load).
ModelFinder = Callable[[str], "tuple[ModelRef, Path]"]
#: Opens an MLflow run: `open_run(name, params=..., tags=..., parent_run_id=...)` as a context manager.
RunOpener = Callable[..., "AbstractContextManager[Run]"]


def catalog_finder(catalog: Catalog | Callable[[], Catalog] | None = None) -> ModelFinder:
    """A `ModelFinder` over `catalog` (or a function returning it, read on first use; None: the shipped
    catalogue plus `$LABKIT_CATALOG`): the model's ref and local folder, refusing pickle-only weights."""

    def find(model: str) -> tuple[ModelRef, Path]:
        from labkit.catalog import Catalog
        from labkit.pipelines.loader import check_safe, local_folder, resolve_model

        cat = catalog() if callable(catalog) else catalog
        ref = resolve_model(model, cat if cat is not None else Catalog.load())
        folder = local_folder(ref)
        check_safe(ref, folder, allow_pickle=False)
        return ref, folder

    return find


@dataclass(frozen=True)
class TrainEnv:
    """What the training engine and recipes use besides their config.

    Attributes:
        tracker: where runs go (None: nothing is logged to MLflow).
        hardware: the machine's profile, recorded as `hardware.*` tags on every run.
        compliance: the licence policy checked before the first step (None: no check).
        find_model: how a recipe finds its base model (default: `catalog_finder()`).
        tags: more tags for every run (e.g. `labkit.compliance_mode`).
        open_run: how to open a run, when not `tracker.run` with the tags above (`Lab.run` for a lab).
    """

    tracker: Tracker | None = None
    hardware: HardwareProfile | None = None
    compliance: Mode | None = None
    find_model: ModelFinder | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    open_run: RunOpener | None = None

    @property
    def logs(self) -> bool:
        """Whether runs are recorded at all."""
        return self.open_run is not None or self.tracker is not None

    def run(self, name: str, *, params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
            parent_run_id: str | None = None) -> AbstractContextManager[Run | None]:
        """A new run named `name` (a context manager; it yields None when nothing is logged)."""
        kwargs = {"parent_run_id": parent_run_id} if parent_run_id else {}
        if self.open_run is not None:
            return self.open_run(name, params=params, tags=tags, **kwargs)
        if self.tracker is None:
            return nullcontext(None)
        all_tags = {**(self.hardware.tags() if self.hardware is not None else {}), **self.tags, **(tags or {})}
        return self.tracker.run(name, params=params, tags=all_tags, **kwargs)

    def locate(self, model: str) -> tuple[ModelRef, Path]:
        """(ModelRef, local folder) of `model`, checked safe to load."""
        return (self.find_model or catalog_finder())(model)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Add metrics to a run that has already closed (e.g. a final evaluation after training)."""
        if self.tracker is None or not metrics:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.tracker.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def as_train_env(env: Any) -> TrainEnv:
    """`env` as a `TrainEnv`: itself, None as `TrainEnv()`, or what its `train_env()` gives (a `Lab`)."""
    if env is None:
        return TrainEnv()
    if isinstance(env, TrainEnv):
        return env
    make = getattr(env, "train_env", None)
    if callable(make):
        return make()
    raise InvalidParameter(f"{type(env).__name__} is not a training environment.", value=repr(env)[:200],
                           fix="pass a labkit.training.TrainEnv, or a Lab (its train_env() is used).")


__all__ = ["ModelFinder", "RunOpener", "TrainEnv", "as_train_env", "catalog_finder"]
