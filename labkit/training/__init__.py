"""labkit's training engine: one loop (accelerate) that toy-base, LoRA and DreamBooth recipes reuse.

A recipe supplies a `TrainTask` (models, deterministic batches, loss, validation renders, export)
and a `TrainConfig`; `train(task, config, env=env)` runs it inside an MLflow run of the `TrainEnv` (a
tracker, the hardware, the licence policy; `Lab.train_env()` makes one) with checkpoints, exact resume,
validation grids, metrics, a model card, and a clean stop on Ctrl-C. Importing this package imports no torch.
"""

from labkit.training.card import image_grid, model_card
from labkit.training.config import TrainConfig
from labkit.training.engine import (
    Trainer,
    TrainingStopped,
    TrainResult,
    TrainState,
    list_checkpoints,
    micro_seed,
    resolve_resume,
    train,
)
from labkit.training.env import TrainEnv, as_train_env, catalog_finder
from labkit.training.task import StepContext, TrainTask, Validation

__all__ = [
    "StepContext", "TrainConfig", "TrainEnv", "TrainResult", "TrainState", "TrainTask", "Trainer", "TrainingStopped",
    "Validation",
    "as_train_env", "catalog_finder", "image_grid", "list_checkpoints", "micro_seed", "model_card", "resolve_resume",
    "train",
]
