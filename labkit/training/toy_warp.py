"""The warp recipe: train the toy world's trajectory diffusion model (`labkit.toyworld.warp`) on labkit's engine.

    path = train_toy_warp(env, ToyWarpConfig(output_dir="toy-motion"))   # `labkit train toy-motion`

The model and its diffusers pipeline (`ToyTrajectoryModel`, `ToyWarpImageToVideoPipeline`) stay in
`labkit.toyworld.warp`, the module path a shipped `model_index.json` names; this module is how they are
trained: clips of the toy world's train split, their first frames and their trajectories (`clip_trajectory`),
v-prediction with the base model's text encoder frozen, and the export as a diffusers folder whose
`labkit` metadata names the base as its keyframe model. `env` is a `TrainEnv` (or a `Lab`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labkit.errors import InvalidParameter
from labkit.files import card_licence
from labkit.toyworld.warp import ToyTrajectoryModel, ToyWarpImageToVideoPipeline, clip_trajectory
from labkit.training.config import TrainConfig, _is_int, _is_real, old_names
from labkit.training.env import TrainEnv, as_train_env
from labkit.training.motion_recipes import (
    DATA_DESCRIPTION,
    LICENCE,
    MOTION_WORD_INIT,
    copy_tokenizer_files,
    first_frame_for,
    heldout_metrics,
    init_word_embeddings,
    load_base_components,
    motion_train_config,
    run_motion_recipe,
)
from labkit.training.task import StepContext, TrainTask, Validation


@old_names(lr="learning_rate")
@dataclass(kw_only=True)
class ToyWarpConfig(TrainConfig):
    """The warp recipe's settings (`labkit train toy-motion --arch warp`): `TrainConfig` (here with the defaults
    below: AdamW, cosine schedule) plus the recipe's own fields. `lr=` is accepted as the old name of
    `learning_rate`.

    Attributes:
        output_dir: checkpoints, validation strips and the export (`model/`).
        base: the toy text-to-image model whose text encoder and tokenizer the model reads captions with (kept
            frozen, "up"/"down" started from "top"/"bottom" as in the AnimateDiff recipe) and which it names as
            its keyframe model.
        seed, data_seed: initialise the model and the step noise; choose the clips.
        steps, batch_size, learning_rate, warmup_steps, min_lr_ratio: the optimisation.
        degree: of the Bézier curve of the motion (3: a cubic, which holds any uniform or eased motion; clips of
            any length evaluate it).
        width, depth: the denoiser's residual MLP.
        caption_dropout: share of captions replaced by "" (classifier-free guidance).
        image_noise: standard deviation of the noise added to the conditioning first frame (in [-1, 1] units):
            text-to-video animates a frame the base drew, which is close to, not exactly, a rendered one.
        guidance_scale, sampling_steps: the export's recommended call (and validation's).
        eval_prompts: held-out prompts judged at each validation, from their true first frame (0: none).
    """

    # TrainConfig's fields, with this recipe's defaults
    output_dir: str | Path = "toy-motion"
    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validate_every: int = 1000
    log_every: int = 50
    licence: str | None = LICENCE
    # the recipe's own
    base: str = "toyworld"
    data_seed: int = 0
    degree: int = 3
    width: int = 256
    depth: int = 4
    caption_dropout: float = 0.1
    image_noise: float = 0.05
    word_init: dict[str, str] = field(default_factory=lambda: dict(MOTION_WORD_INIT))
    guidance_scale: float = 2.0
    sampling_steps: int = 20
    frames: int = 16
    fps: int = 8
    eval_prompts: int = 24
    threads: int | None = None

    def validate(self) -> None:
        """`check()`, then the engine's checks (numbers, output folder, resume point) on `motion_train_config`."""
        self.check()
        motion_train_config(self).validate()

    def check(self) -> None:
        """Raise `InvalidParameter` for the first value the recipe cannot use (before any heavy work)."""
        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"ToyWarpConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        from labkit.toyworld.motion import MIN_FRAMES

        if not _is_int(self.frames) or self.frames < MIN_FRAMES:
            raise bad("frames", f"use {MIN_FRAMES} or more frames per training clip (16 by default).")
        if not _is_int(self.degree) or self.degree < 1:
            raise bad("degree", "use 1 or more (1: straight uniform motion only; 3 by default).")
        for name in ("steps", "batch_size", "width", "depth", "sampling_steps", "fps"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "use an integer >= 1.")
        for name in ("warmup_steps", "data_seed", "eval_prompts"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 or a positive integer.")
        if not _is_real(self.caption_dropout) or not 0.0 <= self.caption_dropout <= 1.0:
            raise bad("caption_dropout", "use a fraction in [0, 1].")
        if not _is_real(self.image_noise) or self.image_noise < 0:
            raise bad("image_noise", "use a standard deviation >= 0.")
        if not _is_real(self.guidance_scale) or self.guidance_scale < 0:
            raise bad("guidance_scale", "use 0 or a positive number.")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise bad("threads", "use a whole number >= 1, or None for torch's default.")
        if self.resume not in (None, "latest"):
            raise bad("resume", "use None (fresh) or 'latest'.")



class ToyWarpTask(TrainTask):
    """The trajectory denoiser learns v-prediction on the trajectories of toy clips (train split), given
    their first frame and caption; the text encoder stays the base's (with `word_init`)."""

    name = "toy-motion"

    def __init__(self, components: dict[str, Any], config: ToyWarpConfig, base_id: str = "toyworld",
                 base_licence: str | None = "cc0-1.0", base_revision: str | None = None):
        from diffusers import DDIMScheduler, DDPMScheduler

        self.c = components
        self.config = config
        self.base_id, self.base_licence, self.base_revision = base_id, base_licence, base_revision
        init_word_embeddings(components["tokenizer"], components["text_encoder"], config.word_init)
        components["text_encoder"].requires_grad_(False).eval()
        with torch.random.fork_rng(devices=[]):  # the model's start depends on the seed alone
            torch.manual_seed(config.seed * 1000 + 17)
            self.model = ToyTrajectoryModel(degree=config.degree, width=config.width, depth=config.depth,
                                            text_dim=components["text_encoder"].config.hidden_size)
        self.noise = DDPMScheduler.from_config(components["scheduler"].config)
        self.sampler = DDIMScheduler.from_config(components["scheduler"].config)
        self.tokenizer_files: Path | None = None

    def _tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.c["tokenizer"]
        return tok(list(texts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    def models(self):
        return {"motion": self.model}

    def frozen(self):
        return {"text_encoder": self.c["text_encoder"]}  # reads every caption, never trains

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        from labkit.toyworld.motion import make_clip_item
        from labkit.toyworld.scenes import render

        i = start
        cfg = self.config
        while True:
            items = [make_clip_item(cfg.data_seed, i * batch_size + j, "train", cfg.frames) for j in range(batch_size)]
            firsts = np.stack([render(c.scenes()[0]) for c, _ in items]).astype(np.float32) / 127.5 - 1.0
            image = torch.from_numpy(firsts).permute(0, 3, 1, 2).contiguous()
            traj = torch.from_numpy(np.stack([clip_trajectory(c, cfg.degree) for c, _ in items]))
            yield image, traj, self._tokenize([t for _, t in items])
            i += 1

    def loss(self, batch, ctx: StepContext):
        image, traj, ids = (t.to(ctx.device) for t in batch)
        b = traj.shape[0]
        drop = (torch.rand(b, generator=ctx.generator) < self.config.caption_dropout).to(ctx.device)
        ids = torch.where(drop[:, None], self._tokenize([""]).to(ctx.device).expand_as(ids), ids)
        with torch.no_grad():
            text = self.c["text_encoder"](ids)[0]
        if self.config.image_noise:  # the draws come from the step's CPU generator, then move
            image = image + self.config.image_noise * torch.randn(image.shape, generator=ctx.generator).to(ctx.device)
        noise = torch.randn(traj.shape, generator=ctx.generator).to(ctx.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (b,), generator=ctx.generator).to(ctx.device)
        noisy = self.noise.add_noise(traj, noise, t)
        target = self.noise.get_velocity(traj, noise, t)
        pred = self.model(noisy, t, text, image)
        return torch.nn.functional.mse_loss(pred, target)

    def pipeline(self) -> ToyWarpImageToVideoPipeline:
        pipe = ToyWarpImageToVideoPipeline(motion=self.model, text_encoder=self.c["text_encoder"],
                                           tokenizer=self.c["tokenizer"], scheduler=self.sampler)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def animate(self, pipe, prompt: str, image: Any, seed: int) -> list[Any]:
        gen = torch.Generator("cpu").manual_seed(int(seed))
        return pipe(image=image, prompt=prompt, num_frames=self.config.frames, num_inference_steps=
                    self.config.sampling_steps, guidance_scale=self.config.guidance_scale, generator=gen).frames[0]

    def validate(self, prompts, seeds, step):
        """A strip per prompt × seed from the still the prompt starts from, and the motion checks on
        `eval_prompts` held-out prompts from their true first frame."""
        from PIL import Image

        from labkit.toyworld.motion import parse_motion, strip
        self.model.eval()
        pipe = self.pipeline()
        images, labels = [], []
        for p in prompts:
            first = first_frame_for(parse_motion(p))
            for s in seeds:
                frames = self.animate(pipe, p, first, s)
                images.append(Image.fromarray(strip(np.stack([np.asarray(f) for f in frames]))))
                labels.append(f"{p} (seed {s})")
        metrics = heldout_metrics(self.config, lambda text, first, i: self.animate(pipe, text, first, i))
        self.model.train()
        return Validation(images, labels, metrics)

    def export(self, folder: Path) -> None:
        folder = Path(folder)
        cfg = self.config
        self.pipeline().save_pretrained(folder, safe_serialization=True)
        copy_tokenizer_files(self.tokenizer_files, folder)
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text())
        index["labkit"] = {"family": "toy", "kind": "motion", "architecture": "trajectory-warp",
                           "base": self.base_id, "keyframe_model": self.base_id, "trained": True,
                           "frames": cfg.frames, "fps": cfg.fps, "guidance_scale": cfg.guidance_scale,
                           "sampling_steps": cfg.sampling_steps, "word_init": cfg.word_init,
                           "image_to_video": "the first frame warped along a sampled trajectory "
                                             "(labkit.toyworld.warp)"}
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    def data_card(self):
        return {"description": DATA_DESCRIPTION + " (trajectories and first frames)", "licence": LICENCE,
                "source": f"labkit.toyworld.motion seed={self.config.data_seed}"}

    def licence_chain(self):
        from labkit.compliance import Asset

        return [Asset("model", self.base_id, self.base_licence, self.base_revision), *super().licence_chain()]

    def card_notes(self) -> str:
        return "\n".join([
            "## Model", "",
            f"A trajectory diffusion model ({sum(p.numel() for p in self.model.parameters()):,} parameters) "
            f"and a warp renderer (`labkit.toyworld.warp`), reading captions with the text encoder of "
            f"`{self.base_id}` (licence {self.base_licence or 'unknown'}), which also draws the keyframe of "
            "text-to-video. Load the folder with `ToyWarpImageToVideoPipeline.from_pretrained` (labkit's loader "
            "picks that class from `model_index.json`); "
            "`pipe(image=first_frame, prompt=...)` animates a toy picture.", ""])


def train_toy_warp(env: TrainEnv | Any, config: ToyWarpConfig | None = None) -> Path:
    """Train the trajectory model on the toy base's text encoder and export the pipeline; return its folder.

    Steps: (1) check the settings and load the base; (2) train with labkit's engine (one MLflow run
    "toy-motion": loss, validation strips, held-out motion checks, checkpoints that resume exactly);
    (3) the export, `output_dir/model`, was written by the engine.
    """
    config = config or ToyWarpConfig()
    config.validate()  # output folder and resume point too, before the base loads
    if config.threads:
        torch.set_num_threads(int(config.threads))
    env = as_train_env(env)
    comps, ref, base_folder = load_base_components(env, config.base)
    task = ToyWarpTask(comps, config, base_id=ref.id, base_licence=ref.licence or card_licence(base_folder),
                       base_revision=ref.revision)
    task.tokenizer_files = base_folder / "tokenizer"
    return run_motion_recipe(env, task, config, {"arch": "warp", **config.to_dict()})


__all__ = ["ToyWarpConfig", "ToyWarpTask", "train_toy_warp"]
