"""`TrainConfig`: the one dataclass that flows through a training job and is logged once as params."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter

LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
CHECKPOINT_ARTIFACTS = ("none", "last", "all")

# Fields that shape the optimisation trajectory: a checkpoint can only be resumed under the same values.
TRAJECTORY_FIELDS = ("batch_size", "gradient_accumulation_steps", "learning_rate", "lr_schedule", "warmup_steps",
                     "min_lr_ratio", "weight_decay", "adam_betas", "adam_eps", "max_grad_norm", "seed",
                     "mixed_precision", "steps")


@dataclass
class TrainConfig:
    """Everything one training job needs besides the task (models, data, loss).

    Attributes:
        output_dir: where checkpoints (`checkpoints/checkpoint-NNNNNN`), validation grids
            (`validation/`) and the final export (`model/`) go.
        steps: optimizer steps to train for (one step = `batch_size` × `gradient_accumulation_steps` samples).
        batch_size: samples per micro-batch (per forward/backward).
        gradient_accumulation_steps: micro-batches summed into one optimizer step.
        learning_rate, lr_schedule ("constant" | "cosine"), warmup_steps (linear warm-up, both
            schedules), min_lr_ratio (the cosine's floor, as a fraction of the peak).
        weight_decay, adam_betas, adam_eps: AdamW's settings.
        max_grad_norm: gradient clipping (None: off).
        seed: seeds the data order and every step's noise; the same seed gives the same run.
        mixed_precision: "no", "fp16" (CUDA only) or "bf16" — accelerate's autocast; weights stay fp32.
        checkpoint_every: save model/optimizer/scheduler/RNG state and data position every N steps (0: off).
        keep_checkpoints: how many checkpoints to keep on disk (older ones are deleted; >= 1).
        checkpoint_artifacts: which checkpoints also go to the MLflow run: "none", "last" (the final
            or interrupted one), "all".
        validate_every: render the validation prompts every N steps (0: off; also at the end when > 0).
        validation_prompts, validation_seeds: what the validation grid shows (rows × columns).
        log_every: log loss / lr / throughput every N steps.
        resume: None (fresh start), "latest" (the newest checkpoint in output_dir, fresh when none) or
            a checkpoint folder.
        cpu: force the CPU even when a GPU is present.
        licence: the licence of the trained weights, for the model card (usually that of the data).
        export: write the final model (safetensors + model card) into `output_dir/model`.
    """

    output_dir: str | Path
    steps: int = 1000
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    seed: int = 0
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    checkpoint_artifacts: str = "last"
    validate_every: int = 500
    validation_prompts: tuple[str, ...] = ()
    validation_seeds: tuple[int, ...] = (0,)
    log_every: int = 10
    resume: str | Path | None = None
    cpu: bool = False
    licence: str | None = None
    export: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.validation_prompts = tuple(self.validation_prompts)
        self.validation_seeds = tuple(int(s) for s in self.validation_seeds)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]

    def validate(self) -> None:
        """Raise `InvalidParameter` naming the first bad value and its fix (called before any work)."""
        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"TrainConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        for name in ("steps", "batch_size", "gradient_accumulation_steps", "log_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "use an integer >= 1.")
        for name in ("checkpoint_every", "validate_every", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise bad(name, "use 0 (off) or a positive integer.")
        if not self.learning_rate > 0:
            raise bad("learning_rate", "use a positive learning rate such as 1e-4.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"use one of {LR_SCHEDULES}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise bad("mixed_precision", f"use one of {MIXED_PRECISION}.")
        if self.checkpoint_artifacts not in CHECKPOINT_ARTIFACTS:
            raise bad("checkpoint_artifacts", f"use one of {CHECKPOINT_ARTIFACTS}.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "use a fraction in [0, 1].")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise bad("max_grad_norm", "use a positive norm, or None to turn clipping off.")
        if self.validate_every and not self.validation_prompts:
            raise bad("validation_prompts", "give at least one prompt, or set validate_every=0.")
        if not self.validation_seeds:
            raise bad("validation_seeds", "give at least one seed.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (paths as strings, tuples as lists)."""
        d = dataclasses.asdict(self)
        d["output_dir"] = str(self.output_dir)
        d["resume"] = None if self.resume is None else str(self.resume)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)
