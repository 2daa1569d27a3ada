"""The toy ControlNet recipe: a layout ControlNet for the toy model, trained on labkit's engine.

    path = train_toy_controlnet(env, ToyControlNetConfig(output_dir="toy-controlnet"))  # `labkit train toy-controlnet`

A diffusers `ControlNetModel` made from the toy base's UNet (`ControlNetModel.from_unet`: its encoder copied,
zero-initialised output convolutions, a conditioning embedding that brings the 64² map to the 32² latent) learns
v-prediction on toy layouts (`labkit.toyworld.layout`): one object anywhere at any size, its box filled white on
black as the map, a caption naming its colour and shape only. The base (VAE, text encoder, UNet) stays frozen,
so the ControlNet works with the shipped toy model as it is. The export is a diffusers ControlNet folder with
`labkit.json` naming its family ("toy"), its kind ("layout") and its base, and a model card.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labkit.errors import InvalidParameter
from labkit.files import card_licence
from labkit.pipelines.controlnet import SIDECAR, render_controlled
from labkit.training.config import TrainConfig, _is_int, _is_real
from labkit.training.env import TrainEnv, as_train_env
from labkit.training.motion_recipes import load_base_components
from labkit.training.task import StepContext, TrainTask, Validation

LICENCE = "CC0-1.0"
DATA_DESCRIPTION = ("labkit.toyworld.layout procedural layouts (64x64, one flat shape anywhere at any size on "
                    "black; the map is its box filled white; captions name colour and shape), train split: "
                    "centre cells and radius bands held out")


@dataclass(kw_only=True)
class ToyControlNetConfig(TrainConfig):
    """The toy ControlNet recipe's settings: `TrainConfig` (with the defaults below) plus its own fields.

    Attributes:
        base: the toy text-to-image model the ControlNet steers (frozen).
        data_seed: chooses the layouts.
        conditioning_channels: the conditioning embedding's widths (one stride-2 step per width after the
            first: the toy latent is half the image's size, so two widths).
        object_weight: extra loss weight on the object's pixels (as the base recipe's).
        caption_dropout: share of captions replaced by "" (classifier-free guidance under control).
        guidance_scale, sampling_steps: the recommended call (and validation's).
        eval_prompts: held-out layouts judged at each validation (IoU, colour, shape; 0: none).
        threads: torch CPU threads (None: torch's default).
    """

    output_dir: str | Path = "toy-controlnet"
    steps: int = 4000
    batch_size: int = 16
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validate_every: int = 1000
    log_every: int = 50
    licence: str | None = LICENCE
    validation_prompts: tuple[str, ...] = ("a red circle", "a blue triangle", "a yellow square", "a green diamond")
    validation_seeds: tuple[int, ...] = (0, 1)
    base: str = "toyworld"
    data_seed: int = 0
    conditioning_channels: tuple[int, ...] = (16, 32)
    object_weight: float = 4.0
    caption_dropout: float = 0.1
    guidance_scale: float = 4.0
    sampling_steps: int = 20
    eval_prompts: int = 32
    threads: int | None = None

    def validate(self) -> None:
        """The recipe's own checks, then the engine's (numbers, output folder, resume point)."""
        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"ToyControlNetConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        cc = self.conditioning_channels
        if not isinstance(cc, (tuple, list)) or len(cc) != 2 or not all(_is_int(c) and c >= 1 for c in cc):
            raise bad("conditioning_channels", "give two positive widths, e.g. (16, 32): the toy latent is half the "
                                               "image's size, one downsampling step.")
        if not _is_int(self.sampling_steps) or self.sampling_steps < 1:
            raise bad("sampling_steps", "use an integer >= 1.")
        for name in ("eval_prompts", "data_seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 or more (a whole number).")
        if not _is_real(self.caption_dropout) or not 0.0 <= self.caption_dropout <= 1.0:
            raise bad("caption_dropout", "use a fraction in [0, 1].")
        for name in ("object_weight", "guidance_scale"):
            if not _is_real(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 or more.")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise bad("threads", "use a whole number >= 1, or None for torch's default.")
        super().validate()


def map_tensor(maps: Sequence[Any]) -> torch.Tensor:
    """Control maps (PIL) as the (B, 3, H, W) float tensor in [0, 1] diffusers' ControlNet pipelines feed the net."""
    arr = np.stack([np.asarray(m.convert("RGB"), dtype=np.float32) / 255.0 for m in maps])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def image_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images as the (B, 3, H, W) tensor in [-1, 1] the VAE encodes."""
    arr = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


class ToyControlNetTask(TrainTask):
    """A ControlNet from the toy UNet learns to put the caption's object in the map's box; the base is frozen."""

    name = "toy-controlnet"

    def __init__(self, components: dict[str, Any], config: ToyControlNetConfig, base_id: str = "toyworld",
                 base_licence: str | None = "cc0-1.0", base_revision: str | None = None):
        from diffusers import ControlNetModel, DDIMScheduler, DDPMScheduler

        self.c = components
        self.config = config
        self.base_id, self.base_licence, self.base_revision = base_id, base_licence, base_revision
        for k in ("vae", "text_encoder", "unet"):
            components[k].requires_grad_(False).eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed * 1000 + 29)
            self.net = ControlNetModel.from_unet(components["unet"],
                                                 conditioning_embedding_out_channels=tuple(config.conditioning_channels))
        self.noise = DDPMScheduler.from_config(components["scheduler"].config)
        self.sampler = DDIMScheduler.from_config(components["scheduler"].config)
        self.empty_ids = self._tokenize([""])

    def _tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.c["tokenizer"]
        return tok(list(texts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    def models(self):
        return {"controlnet": self.net}

    def frozen(self):
        # the base the ControlNet steers: every loss encodes the images and captions and runs its UNet
        return {k: self.c[k] for k in ("vae", "text_encoder", "unet")}

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        from labkit.toyworld.layout import layout_map, make_layout_item

        i = start
        while True:
            items = [make_layout_item(self.config.data_seed, i * batch_size + j, "train") for j in range(batch_size)]
            yield (image_tensor([it.image() for it in items]),
                   map_tensor([layout_map([it.box], it.size) for it in items]),
                   self._tokenize([it.caption for it in items]))
            i += 1

    def loss(self, batch, ctx: StepContext):
        import torch.nn.functional as F

        x, cond_map, ids = (t.to(ctx.device) for t in batch)
        vae, unet, te = self.c["vae"], self.c["unet"], self.c["text_encoder"]
        drop = (torch.rand(ids.shape[0], generator=ctx.generator) < self.config.caption_dropout).to(ctx.device)
        ids = torch.where(drop[:, None], self.empty_ids.to(ctx.device).expand_as(ids), ids)
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            text = te(ids)[0]
        noise = torch.randn(latents.shape, generator=ctx.generator).to(ctx.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (latents.shape[0],),
                          generator=ctx.generator).to(ctx.device)
        noisy = self.noise.add_noise(latents, noise, t)
        target = self.noise.get_velocity(latents, noise, t)
        down, mid = self.net(noisy, t, encoder_hidden_states=text, controlnet_cond=cond_map, return_dict=False)
        pred = unet(noisy, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        err = (pred.float() - target.float()) ** 2
        weight = torch.ones_like(err[:, :1])
        if self.config.object_weight:
            # the object's pixels and the map's box, at latent resolution: where the control must act
            factor = x.shape[-1] // latents.shape[-1]
            obj = (x.amax(dim=1, keepdim=True) > -0.5).float()
            box = cond_map[:, :1]
            weight = weight + self.config.object_weight * F.max_pool2d(torch.maximum(obj, box), factor)
        return ((weight * err).mean(dim=(1, 2, 3)) / weight.mean(dim=(1, 2, 3))).mean()

    def pipeline(self) -> Any:
        from diffusers import StableDiffusionControlNetPipeline

        pipe = StableDiffusionControlNetPipeline(
            vae=self.c["vae"], text_encoder=self.c["text_encoder"], tokenizer=self.c["tokenizer"], unet=self.c["unet"],
            controlnet=self.net, scheduler=self.sampler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self, prompts, seeds, step):
        """Each prompt × seed in a held-out layout (the map beside it), and the held-out layout metrics."""
        from PIL import Image

        from labkit.toyworld.layout import layout_map, make_layout_item

        self.net.eval()
        pipe = self.pipeline()
        images, labels = [], []
        for k, p in enumerate(prompts):
            item = make_layout_item(self.config.data_seed + 1, k, "heldout")
            m = layout_map([item.box], item.size)
            for s in seeds:
                out = render_controlled(pipe, [p], [m], [s], self.config.guidance_scale, self.config.sampling_steps)[0]
                pair = Image.new("RGB", (2 * item.size, item.size))
                pair.paste(m, (0, 0))
                pair.paste(out, (item.size, 0))
                images.append(pair)
                labels.append(f"{p} (seed {s})")
        metrics: dict[str, float] = {}
        if self.config.eval_prompts:
            from labkit.toyworld.layout_score import score_layouts

            def draw(ps, ms, ss):
                return render_controlled(pipe, ps, ms, ss, self.config.guidance_scale, self.config.sampling_steps)

            metrics = score_layouts(draw, n=self.config.eval_prompts, seed=self.config.data_seed + 2).rates
        self.net.train()
        return Validation(images, labels, metrics)

    def export(self, folder: Path) -> None:
        folder = Path(folder)
        self.net.save_pretrained(folder, safe_serialization=True)
        cfg = self.config
        (folder / SIDECAR).write_text(json.dumps({
            "family": "toy", "kind": "layout", "base": self.base_id, "guidance_scale": cfg.guidance_scale,
            "sampling_steps": cfg.sampling_steps,
            "map": "the object's box filled white (255) on black, at the image's size (labkit.toyworld.layout)"},
            indent=2, sort_keys=True) + "\n")

    def data_card(self):
        return {"description": DATA_DESCRIPTION, "licence": LICENCE,
                "source": f"labkit.toyworld.layout seed={self.config.data_seed}"}

    def licence_chain(self):
        from labkit.compliance import Asset

        return [Asset("model", self.base_id, self.base_licence, self.base_revision), *super().licence_chain()]

    def card_notes(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return "\n".join([
            "## Model", "",
            f"A layout ControlNet ({n:,} parameters, diffusers `ControlNetModel` made from the UNet of "
            f"`{self.base_id}`, licence {self.base_licence or 'unknown'}) for that model, which stays frozen. "
            "Its map is the box of one object filled white on black at the image's size: the map decides where "
            "and how big, the prompt (\"a red circle\") colour and shape.", "",
            "    labkit generate \"a red circle\" --model toyworld --control layout:box.png "
            "--control-model toyworld-controlnet", ""])


def train_toy_controlnet(env: TrainEnv | Any, config: ToyControlNetConfig | None = None) -> Path:
    """Train the toy layout ControlNet on the frozen toy base and export it; return the export's folder.

    One MLflow run "toy-controlnet" (loss, validation grids of map + picture, held-out IoU / colour / shape,
    checkpoints that resume exactly); the export `output_dir/model` is a diffusers ControlNet folder.
    """
    from labkit.training import train

    config = config or ToyControlNetConfig()
    config.validate()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    env = as_train_env(env)
    comps, ref, base_folder = load_base_components(env, config.base)
    task = ToyControlNetTask(comps, config, base_id=ref.id, base_licence=ref.licence or card_licence(base_folder),
                             base_revision=ref.revision)
    res = train(task, config, env=env, run_name="toy-controlnet", tags={"labkit.task": "toy-controlnet"})
    if res.status != "finished":
        raise KeyboardInterrupt
    return Path(config.output_dir) / "model"


__all__ = ["LICENCE", "ToyControlNetConfig", "ToyControlNetTask", "map_tensor", "train_toy_controlnet"]
