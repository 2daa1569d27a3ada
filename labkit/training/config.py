"""`TrainConfig`: the one dataclass that flows through a training job and is logged once as params."""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter

LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")
CHECKPOINT_ARTIFACTS = ("none", "last", "all")
#: `resume` values besides a checkpoint folder: the newest checkpoint (which must exist), or it when there is one.
RESUME_LATEST = "latest"
RESUME_IF_ANY = "latest-if-any"

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
        resume: None (fresh start), "latest" (the newest checkpoint in output_dir; an error when there is
            none), "latest-if-any" (the newest checkpoint when there is one, else a fresh start: for
            recipes whose later phases may not have begun) or a checkpoint folder.
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
        if isinstance(self.output_dir, (str, os.PathLike)):
            self.output_dir = Path(self.output_dir)
        self.validation_prompts = _tuple(self, "validation_prompts")
        self.validation_seeds = _tuple(self, "validation_seeds")
        self.adam_betas = _tuple(self, "adam_betas")  # type: ignore[assignment]

    def validate(self) -> None:
        """Raise `InvalidParameter` naming the first bad value and its fix: types and ranges of every
        number, the switches (True or False only), fp16 only where a CUDA GPU trains, the output folder (not a
        file), and the resume point (a checkpoint must exist and have been made with the same trajectory
        settings); a licence not in labkit's licence table warns. Cheap: recipes call it before any model loads."""
        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"TrainConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir).strip():
            raise bad("output_dir", "pass a folder path for checkpoints and the export.")
        for name in ("steps", "batch_size", "gradient_accumulation_steps", "log_every", "keep_checkpoints"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "use a whole number >= 1.")
        for name in ("checkpoint_every", "validate_every", "warmup_steps", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 (off) or a positive whole number." if name != "seed" else
                          "use a whole number >= 0.")
        if not _is_real(self.learning_rate) or not self.learning_rate > 0:
            raise bad("learning_rate", "use a positive learning rate such as 1e-4.")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "use 0 or a small positive number such as 0.01.")
        if not _is_real(self.adam_eps) or not self.adam_eps > 0:
            raise bad("adam_eps", "use a small positive number such as 1e-8.")
        if len(self.adam_betas) != 2 or not all(_is_real(b) and 0 <= b < 1 for b in self.adam_betas):
            raise bad("adam_betas", "use two numbers in [0, 1), e.g. (0.9, 0.999).")
        if not isinstance(self.lr_schedule, str) or self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"use one of {LR_SCHEDULES}.")
        if not isinstance(self.mixed_precision, str) or self.mixed_precision not in MIXED_PRECISION:
            raise bad("mixed_precision", f"use one of {MIXED_PRECISION}.")
        check_flags(self, bad, ("cpu", "export"))
        if self.mixed_precision == "fp16" and (self.cpu or not _has_cuda()):
            raise bad("mixed_precision", "fp16 autocast needs a CUDA GPU, and this job trains on the CPU"
                      + (" (cpu=True)" if self.cpu else "") + ": use 'bf16' or 'no'.")
        if not isinstance(self.checkpoint_artifacts, str) or self.checkpoint_artifacts not in CHECKPOINT_ARTIFACTS:
            raise bad("checkpoint_artifacts", f"use one of {CHECKPOINT_ARTIFACTS}.")
        if not _is_real(self.min_lr_ratio) or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "use a fraction in [0, 1].")
        if self.max_grad_norm is not None and (not _is_real(self.max_grad_norm) or not self.max_grad_norm > 0):
            raise bad("max_grad_norm", "use a positive norm, or None to turn clipping off.")
        if not all(isinstance(p, str) for p in self.validation_prompts):
            raise bad("validation_prompts", "give the prompts as strings.")
        if self.validate_every and not self.validation_prompts:
            raise bad("validation_prompts", "give at least one prompt, or set validate_every=0.")
        if not self.validation_seeds or not all(_is_int(x) and x >= 0 for x in self.validation_seeds):
            raise bad("validation_seeds", "give at least one seed (whole numbers >= 0).")
        if self.licence is not None and not isinstance(self.licence, str):
            raise bad("licence", 'use a licence id such as "cc0-1.0", or None.')
        if self.licence is not None:
            warn_unknown_licence(self.licence)
        from labkit.outputs import check_output_folder

        check_output_folder(self.output_dir, option="--output (output_dir)")
        from labkit.training.engine import resolve_resume

        resolve_resume(self)

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


def train_fields(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A plain `TrainConfig` holding the `TrainConfig` fields of `config` (a recipe's config, which is a
    TrainConfig plus fields of its own), with `changes` applied: what a recipe hands the engine."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**values, **changes})


def old_names(positional: tuple[str, ...] = ("output_dir",), **renamed: str):
    """Class decorator for a recipe's config (a `TrainConfig` subclass): it takes the fields `positional` in
    that order as positional arguments (what the config took before it was a subclass; any other positional
    argument is refused), and each old field name (`lr=` for `learning_rate=`) as a keyword, read back as a
    property, so the callers of a renamed field keep working."""

    def wrap(cls):
        init = cls.__init__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if len(args) > len(positional):
                raise InvalidParameter(f"{cls.__name__} takes {len(positional)} positional argument(s) "
                                       f"({', '.join(positional)}), got {len(args)}.", value=len(args),
                                       fix=f"pass the other settings by name, e.g. {cls.__name__}(steps=100).")
            for name, value in zip(positional, args, strict=False):
                if name in kwargs:
                    raise InvalidParameter(f"{cls.__name__} got {name} twice.", value=name,
                                           fix=f"pass {name} once.")
                kwargs[name] = value
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise InvalidParameter(f"{cls.__name__} got both {old}= and {new}= (the same setting).",
                                               value=old, fix=f"pass {new}= only ({old} is its old name).")
                    kwargs[new] = kwargs.pop(old)
            init(self, **kwargs)

        __init__.__doc__ = init.__doc__
        __init__.__signature__ = inspect.signature(init)  # what help() and IDEs show: the fields
        cls.__init__ = __init__
        for old, new in renamed.items():
            setattr(cls, old, property(lambda self, _n=new: getattr(self, _n), doc=f"The old name of `{new}`."))
        return cls

    return wrap


def check_flags(config: Any, bad: Callable[[str, str], InvalidParameter], names: tuple[str, ...]) -> None:
    """`bad(name, fix)` raised for the first of the switches `names` of `config` that is not True or False
    ("no" and 1 are refused: a non-empty string is truthy, so prior_preservation="no" would switch it on)."""
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise bad(name, f"use True or False (not {type(getattr(config, name)).__name__}).")


def warn_unknown_licence(licence: str) -> None:
    """Warn when `licence` is not in labkit's licence table, naming the close matches: the default compliance
    mode warns about an unknown licence too (open and strict block it), and a new id may belong in the table
    (LABKIT_LICENCES) rather than be a misspelling, so a job is not refused for it."""
    from labkit.compliance.licences import ENV_VAR, LicenceTable

    table = LicenceTable.load()
    if table.canonical(licence) is None:
        close = table.close_matches(licence)
        # stacklevel 1, one location: a config validated several times in one job warns once
        warnings.warn(f"licence={licence!r} is not in labkit's licence table"
                      + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
                      + ": the trained weights will be blocked in the open and strict compliance modes. Fix: use "
                        f"an id of labkit/compliance/licences.toml, or add an entry to a TOML file named by {ENV_VAR}.",
                      stacklevel=1)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _tuple(config: Any, name: str) -> tuple:
    """A sequence field as a tuple (a lone string or number is an error, not a tuple of characters)."""
    value = getattr(config, name)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InvalidParameter(f"{type(config).__name__}.{name}={value!r} is not a list.", value=value,
                               fix=f"give {name} as a list or tuple, e.g. {name}=({value!r},).")
    return tuple(value)
