"""What the two toy-motion recipes share (`toy_motion`: the AnimateDiff adapter; `toy_warp`: trajectory
diffusion): the data's licence and description, the base model's components, the new motion words, the
engine's config and run, the held-out motion checks their validation reports, and the export's files.

    comps, ref, folder = load_base_components(env, "toyworld")
    path = run_motion_recipe(env, task, config, {"arch": "warp", **config.to_dict()})
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter
from labkit.training.config import TrainConfig, train_fields
from labkit.training.env import TrainEnv, as_train_env
from labkit.training.task import TrainTask

LICENCE = "CC0-1.0"
DATA_DESCRIPTION = ("labkit.toyworld.motion procedural clips (64x64, one flat shape moving left/right/up/down, "
                    "growing or shrinking, uniform motion), train split only: about 15% of (shape, colour, size, "
                    "motion) combinations and the base model's held-out objects are never shown")
#: Direction words the toy base never saw (its captions name positions, not motions), each started from the
#: embedding of the position word it leads to (`init_word_embeddings`).
MOTION_WORD_INIT = {"up": "top", "down": "bottom"}


def load_base_components(env: TrainEnv | Any, base: str) -> tuple[dict[str, Any], Any, Path]:
    """The components of the text-to-image model a motion recipe animates (fp32, CPU, frozen), its `ModelRef`
    and its folder; `env` (a `TrainEnv`, or a `Lab`) finds it. InvalidParameter when it is not a
    StableDiffusionPipeline."""
    from diffusers import DiffusionPipeline

    from labkit.pipelines.loader import quiet_loading

    ref, folder = as_train_env(env).locate(base)
    index = json.loads((folder / "model_index.json").read_text())
    if index.get("_class_name") != "StableDiffusionPipeline":
        raise InvalidParameter(f"Base model {base!r} is a {index.get('_class_name')}, not a text-to-image "
                               "StableDiffusionPipeline.", value=base,
                               fix="animate the toy text-to-image model (--base toyworld or its folder).")
    with quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(str(folder), use_safetensors=True, local_files_only=True)
    comps = {k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    for k in ("vae", "text_encoder", "unet"):
        comps[k].requires_grad_(False).eval()
    return comps, ref, folder


def init_word_embeddings(tokenizer, text_encoder, mapping: dict[str, str]) -> None:
    """Set the input embedding of each word `new` in `mapping` to that of `mapping[new]` (both must be single
    tokens of `tokenizer`); `InvalidParameter` names a word that is not."""
    import torch

    def token(word: str) -> int:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise InvalidParameter(f"{word!r} is not one token of the base's tokenizer ({len(ids)} pieces), so its "
                                   "embedding cannot be started from another word's.", value=word,
                                   fix="map single-token words only (ToyMotionConfig.word_init), or pass {}.")
        return ids[0]

    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for new, known in mapping.items():
            table[token(new)] = table[token(known)]


def heldout_metrics(config: Any, animate: Callable[[str, Any, int], Sequence[Any]], *,
                    from_first_frame: bool = True) -> dict[str, float]:
    """The rates of the motion checks on `config.eval_prompts` held-out prompts ({} for none), for a recipe's
    validation: `animate(caption, first frame or None, seed)` renders prompt i with seed i, from the clip's true
    first frame when `from_first_frame` (then judged against the clip, else against the caption)."""
    from PIL import Image

    from labkit.toyworld.motion import make_clip_item, render_clip
    from labkit.toyworld.motion_score import motion_verdict

    verdicts = []
    for i in range(config.eval_prompts):
        clip, text = make_clip_item(10_000 + config.data_seed, i, "heldout", config.frames)
        first = Image.fromarray(render_clip(clip)[0]) if from_first_frame else None
        verdicts.append(motion_verdict(clip if from_first_frame else text, animate(text, first, i)))
    if not verdicts:
        return {}
    return {f"heldout_{key}": sum(bool(v[key]) for v in verdicts) / len(verdicts)
            for key in ("direction", "identity", "smooth", "all_correct")}


def first_frame_for(spec) -> Any:
    """A toy image of what a motion spec starts from (`toyworld.motion.start_object`)."""
    from labkit.toyworld.motion import start_object
    from labkit.toyworld.scenes import Scene, render_pil

    return render_pil(Scene((start_object(spec),)))


def validation_prompts(seed: int = 321) -> tuple[str, ...]:
    """Held-out motion prompts for the validation strips (the last one also animates its first frame)."""
    from labkit.toyworld.motion import motion_prompts

    return tuple(p for p, _ in motion_prompts("heldout", n=3, seed=seed))


def motion_train_config(config: TrainConfig, recipe: dict[str, Any] | None = None) -> TrainConfig:
    """The engine's `TrainConfig` for a toy-motion recipe `config` (either architecture's: each is a
    `TrainConfig` plus its own fields), with `recipe` in its params (`extra.recipe`) and the validation
    strips' held-out prompts when validation is on and the config names none."""
    prompts = config.validation_prompts or (validation_prompts() if config.validate_every else ())
    return train_fields(config, warmup_steps=min(config.warmup_steps, config.steps - 1), validation_prompts=prompts,
                        extra={**config.extra, "recipe": recipe or {}})


def run_motion_recipe(env: TrainEnv | Any, task: TrainTask, config: Any, recipe: dict[str, Any]) -> Path:
    """Train a toy-motion `task` with labkit's engine under a recipe `config` — one MLflow run "toy-motion"
    with `recipe` in its params — and return the export's folder; KeyboardInterrupt when the run was
    stopped (it resumes)."""
    from labkit.training import train

    res = train(task, motion_train_config(config, recipe), env=env, run_name="toy-motion",
                tags={"labkit.task": "toy-motion"})
    if res.status != "finished":
        raise KeyboardInterrupt
    return Path(config.output_dir) / "model"


def copy_tokenizer_files(source: Path | None, folder: Path) -> None:
    """Copy the base's BPE files (vocab.json, merges.txt) into an export's `tokenizer/` when it lacks them."""
    if source is None:
        return
    tok = Path(folder) / "tokenizer"
    for name in ("vocab.json", "merges.txt"):
        if (source / name).is_file() and not (tok / name).exists():
            shutil.copy(source / name, tok / name)


__all__ = ["DATA_DESCRIPTION", "LICENCE", "MOTION_WORD_INIT", "copy_tokenizer_files", "first_frame_for",
           "heldout_metrics", "init_word_embeddings", "load_base_components", "motion_train_config",
           "run_motion_recipe", "validation_prompts"]
