"""What a render returns and what the lab keeps between renders: `Result`, `Attempt`, `Progress`, `PipelineCache`.

The contract: plain types with no render logic, so that the façade's `Lab` can name them without importing
`labkit.render` (which takes a `Lab`), and neither module imports the other at import time. `labkit.render`
re-exports them, where they were first defined.

    result = lab.render(plan)          # a Result
    result.image, result.files, result.run_id, result.to_dict()
    cache = PipelineCache(8 * 2**30)   # what Lab.pipelines holds: loaded pipelines within a memory budget
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.deps import available
from labkit.hardware import MemoryStrategy
from labkit.plan import Plan

if TYPE_CHECKING:  # pragma: no cover
    from labkit.pipelines.loader import Loaded, ModelRef

#: progress(step, total): called after each denoising step.
Progress = Callable[[int, int], None]


@dataclass
class Attempt:
    """One try at loading or rendering: the model, the strategy, and how it ended."""

    model: str
    strategy: str
    stage: str
    outcome: str

    def to_dict(self) -> dict[str, str]:
        return dict(model=self.model, strategy=self.strategy, stage=self.stage, outcome=self.outcome)


@dataclass
class Result:
    """What a render produced and everything about how.

    Attributes:
        plan: the plan that rendered (its `model` is the model that actually ran).
        images: PIL images (image plans); clips: lists of PIL frames (video plans).
        files: the output files in the run's artifacts (and copies under `out`, when given).
        model: id requested and used, location, revision, family, licence, weight hashes.
        strategy: the memory strategy that succeeded; applied: its steps as applied.
        timings: load_s, step_s (per step), steps_s, decode_s, total_s.
        peak_memory_gb: CUDA allocator peak on GPU, process RSS peak on CPU; memory_kind says which.
        attempts: every load/render try, including the out-of-memory ones.
        fallback_reason: why another model ran instead of the one asked for, if one did.
        run_id: the MLflow run; status: "finished" or "cancelled".
        record: the record embedded in each output file.
        inputs: outputs of other runs this one used (e.g. a rendered first frame), with their models.
        controls: one record per ControlNet (its control map's kind, source, parameters and hash, the
            ControlNet's id and weights hash, scale, start, end); control_maps: the maps (PIL images).
        vram: where torch has CUDA, the run's VRAM in GiB: peak_allocated_gb, peak_reserved_gb, and one
            sample per denoising step (allocated_gb, reserved_gb); empty without CUDA.
    """

    plan: Plan
    images: list[Any] = field(default_factory=list)
    clips: list[list[Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    strategy: MemoryStrategy | None = None
    applied: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    peak_memory_gb: float = 0.0
    memory_kind: str = "rss"
    attempts: list[Attempt] = field(default_factory=list)
    fallback_reason: str | None = None
    run_id: str | None = None
    status: str = "finished"
    record: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)
    control_maps: list[Any] = field(default_factory=list, repr=False)
    vram: dict[str, Any] = field(default_factory=dict)
    ref: ModelRef | None = field(default=None, repr=False)

    @property
    def image(self):
        """The first image (or the first frame of the first clip)."""
        return self.images[0] if self.images else (self.clips[0][0] if self.clips else None)

    @property
    def frames(self) -> list[Any]:
        """The first clip's frames."""
        return self.clips[0] if self.clips else []

    def to_dict(self) -> dict[str, Any]:
        """The result's record as JSON-able data (no pixels): what `--json` prints."""
        return {
            "run_id": self.run_id, "status": self.status, "files": [str(f) for f in self.files],
            "plan": self.plan.to_dict(), "model": self.model,
            "strategy": self.strategy.to_dict() if self.strategy else None, "applied": self.applied,
            "timings": self.timings, "peak_memory_gb": self.peak_memory_gb, "memory_kind": self.memory_kind,
            "attempts": [a.to_dict() for a in self.attempts], "fallback_reason": self.fallback_reason,
        }


class PipelineCache:
    """Loaded pipelines, least recently used first, within a memory budget.

    A second render with the same model and strategy reuses the pipeline. Before a new one
    loads, older ones are dropped until it fits the budget; a pipeline that lives on the GPU
    evicts every other GPU-resident pipeline first, so switching models frees VRAM.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[tuple]:
        return list(self._items)

    def get(self, key: tuple) -> Loaded | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, item: Loaded) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)

    def make_room(self, needed_bytes: int, on_gpu: bool) -> None:
        """Evict until `needed_bytes` more fit the budget (and, for a GPU pipeline, the GPU is free)."""
        with self._lock:
            dropped = []
            if on_gpu:
                dropped += [self._drop(k) for k in [k for k, v in self._items.items() if v.strategy.device == "gpu"]]
            while self._items and sum(v.size_bytes for v in self._items.values()) + needed_bytes > self.budget_bytes:
                dropped.append(self._drop(next(iter(self._items))))
        free_memory(compiled=_compiled_on_gpu(dropped))

    def evict(self, key: tuple) -> None:
        with self._lock:
            dropped = self._drop(key)
        free_memory(compiled=_compiled_on_gpu([dropped]))

    def clear(self) -> None:
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
        free_memory(compiled=_compiled_on_gpu(dropped))

    def _drop(self, key: tuple) -> Loaded | None:
        return self._items.pop(key, None)


def _compiled_on_gpu(items: list[Loaded | None]) -> bool:
    return any(i is not None and i.strategy.device == "gpu" and i.strategy.compile for i in items)


def free_memory(compiled: bool = False) -> None:
    """Release what dropped pipelines held (Python objects, then the CUDA allocator's cache). With `compiled` (a
    dropped pipeline was torch.compiled on the GPU), torch.compile's code goes first: its CUDA graphs' memory
    pools live as long as that code, which outlives the pipeline (a pipeline still cached recompiles on its next
    call)."""
    gc.collect()
    if available("torch"):
        import torch

        if torch.cuda.is_available():
            if compiled:
                torch.compiler.reset()
                gc.collect()
            torch.cuda.empty_cache()


__all__ = ["Attempt", "PipelineCache", "Progress", "Result", "free_memory"]
