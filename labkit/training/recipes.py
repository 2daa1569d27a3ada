"""Which recipe trains a config: `run_recipe(env, config)` runs the one whose config type `config` is.

    run_recipe(lab.train_env(), ToyBaseConfig(output_dir="toy-base"))   # what `Lab.train` does

Recipes (each also importable on its own): `LoraTrainConfig` → `lora.train_lora`, `DreamBoothConfig` →
`dreambooth.train_dreambooth` (both return a `TrainResult`),
`ToyBaseConfig` → `toy_base.train_toy_base`, `ToyMotionConfig` → `toy_motion.train_toy_motion`,
`ToyWarpConfig` → `toy_warp.train_toy_warp`, `ToyControlNetConfig` → `toy_controlnet.train_toy_controlnet` (each
returns the exported model's folder).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from labkit.errors import InvalidParameter

#: config class name → (module, recipe function); a subclass of a config takes the recipe of its nearest listed
#: class (DreamBoothConfig, a LoraTrainConfig, trains DreamBooth)
RECIPES = {
    "LoraTrainConfig": ("labkit.training.lora", "train_lora"),
    "DreamBoothConfig": ("labkit.training.dreambooth", "train_dreambooth"),
    "ToyBaseConfig": ("labkit.training.toy_base", "train_toy_base"),
    "ToyMotionConfig": ("labkit.training.toy_motion", "train_toy_motion"),
    "ToyWarpConfig": ("labkit.training.toy_warp", "train_toy_warp"),
    "ToyControlNetConfig": ("labkit.training.toy_controlnet", "train_toy_controlnet"),
}


def run_recipe(env: Any, config: Any, **kwargs: Any) -> Any:
    """Run the recipe of `config` in `env` (a `TrainEnv` or a `Lab`); `kwargs` go to the recipe."""
    # the most specific class wins: the MRO lists a class before its bases
    found = next((RECIPES[c.__name__] for c in type(config).__mro__ if c.__name__ in RECIPES), None)
    if found is None:
        raise InvalidParameter(f"No training recipe takes a {type(config).__name__}.", value=type(config).__name__,
                               fix=f"pass one of {sorted(RECIPES)} (labkit.training).")
    module, name = found
    recipe = getattr(importlib.import_module(module), name)
    takes = [p for p in inspect.signature(recipe).parameters if p not in ("env", "lab", "config")]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise InvalidParameter(f"{name} takes no {', '.join(unknown)}.", value=unknown,
                               fix=f"pass only {', '.join(takes) or 'the config'} (labkit.training.{name}).")
    return recipe(env, config, **kwargs)


__all__ = ["RECIPES", "run_recipe"]
