"""What a training job trains: the `TrainTask` a recipe (toy base, LoRA, DreamBooth…) implements.

The engine owns the loop (devices, mixed precision, accumulation, checkpoints, validation, logging);
a task owns the models, the data and the loss. Two rules make resume exact:

- `batches(batch_size, start)` yields micro-batch `start`, `start + 1`, … — a pure function of the
  task's seed and the index, so a resumed run fast-forwards to where it stopped without replaying.
- all randomness inside `loss` (noise, timesteps, caption dropout) comes from `ctx.generator`,
  which the engine derives from (seed, micro-batch index).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from labkit.compliance import DatasetBreakdown


@dataclass
class StepContext:
    """What `TrainTask.loss` gets besides the batch.

    `step` is the optimizer step being computed (0-based), `micro` the global micro-batch index,
    `generator` a CPU `torch.Generator` seeded from (seed, micro) for every random draw of the step,
    `device` where the models live.
    """

    step: int
    micro: int
    generator: torch.Generator
    device: torch.device


@dataclass
class Validation:
    """Validation output: images (row-major: prompt × seed), a label per image, and optional metrics."""

    images: list[Image.Image]
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class TrainTask:
    """Base class of a training task. Override `models`, `batches` and `loss`; the rest is optional.

    Attributes:
        name: a short name, recorded as the `labkit.task` tag and in the model card.
    """

    name: str = "task"

    def models(self) -> Mapping[str, torch.nn.Module]:
        """The modules to train, by name (their weights go into checkpoints and the export)."""
        raise NotImplementedError

    def frozen(self) -> Mapping[str, torch.nn.Module]:
        """The modules `loss` and `validate` use without training them (a VAE, a text encoder, a frozen UNet), by
        name: the engine puts them on the training device, in eval mode, with the trained ones. Default: none (a
        task that keeps them elsewhere moves its inputs there itself)."""
        return {}

    def param_groups(self, learning_rate: float) -> list[dict[str, Any]] | None:
        """Optimizer parameter groups (e.g. a lower lr for the text encoder); None: one group of all
        trainable parameters of `models()`."""
        return None

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        """An endless iterator of micro-batches beginning at micro-batch index `start` (deterministic)."""
        raise NotImplementedError

    def loss(self, batch: Any, ctx: StepContext) -> torch.Tensor:
        """The scalar loss of one micro-batch."""
        raise NotImplementedError

    def validate(self, prompts: Sequence[str], seeds: Sequence[int], step: int) -> Validation | None:
        """Render `prompts` × `seeds` with the current weights (under no_grad); None: no validation."""
        return None

    def export(self, folder: Path) -> None:
        """Write the trained model into `folder`. Default: `<name>.safetensors` per model of `models()`."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        for name, module in self.models().items():
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(folder / f"{name}.safetensors"))

    def data_card(self) -> dict[str, Any]:
        """What the data is, for the model card and params: description, source, licence, size…

        A task whose data is an image folder in the Hugging Face imagefolder layout (images plus a
        `metadata.jsonl` giving each item's licence) names it as `folder` (and may give it a `name`):
        the licence of every item is then checked before training starts, and the run records the
        folder's licence breakdown (see `dataset_breakdown`).
        """
        return {}

    def output_licence(self, given: str | None = None) -> str | None:
        """The licence of what this training writes, for its model card and header: `given` (the config's),
        else the one licence every item of the training data carries (none missing), else None."""
        if given:
            return given
        breakdown = self.dataset_breakdown()
        if breakdown is not None and len(breakdown.counts) == 1 and not breakdown.missing:
            return next(iter(breakdown.counts))
        return None

    def dataset_breakdown(self) -> DatasetBreakdown | None:
        """The licence breakdown of the folder `data_card()` names as `folder`; None when it names none."""
        card = self.data_card()
        if not card.get("folder"):
            return None
        from labkit.compliance import dataset_breakdown

        return dataset_breakdown(card["folder"], name=card.get("name") or None)

    def licence_chain(self) -> list[Any]:
        """The compliance assets this training combines: by default the dataset of `data_card()` —
        one asset per licence group of its items when it names a `folder`, else one for the dataset.

        Recipes that start from a base model (LoRA, DreamBooth) add it first.
        """
        from labkit.compliance import Asset

        breakdown = self.dataset_breakdown()
        if breakdown is not None:
            return breakdown.assets()
        card = self.data_card()
        return [Asset("dataset", str(card.get("source") or card.get("description") or self.name),
                      card.get("licence"))]

    def optimizer(self, groups: list[dict[str, Any]], config: Any) -> Any:
        """The optimizer for `groups` (e.g. bitsandbytes' 8-bit AdamW); None: the engine's AdamW."""
        return None

    def on_checkpoint(self, folder: Path, step: int) -> None:
        """Called while checkpoint `folder` is being written (before it becomes visible): a task may add
        files of its own there, e.g. a LoRA task writes the adapter so each checkpoint loads as one."""

    def card_notes(self) -> str:
        """Extra Markdown for the model card (intended use, how to load…)."""
        return ""
