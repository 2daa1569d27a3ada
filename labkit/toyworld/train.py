"""moved to labkit.training.toy_base (issue 20: the recipes live beside the other recipes); kept so old imports
work. `train_toy_base` now takes a `TrainEnv` or a `Lab`."""

from labkit.training.toy_base import (
    DATA_DESCRIPTION,
    ToyBaseConfig,
    ToyDiffusionTask,
    ToyTextTask,
    ToyVAETask,
    adherence,
    render_prompts,
    toy_card,
    train_toy_base,
    validation_prompts,
)

__all__ = ["DATA_DESCRIPTION", "ToyBaseConfig", "ToyDiffusionTask", "ToyTextTask", "ToyVAETask", "adherence",
           "render_prompts", "toy_card", "train_toy_base", "validation_prompts"]
