"""The toy-base recipe: train the toy world's text-to-image model from scratch with labkit's engine.

    path = train_toy_base(env, ToyBaseConfig(output_dir="toy-base"))   # env: a TrainEnv or a Lab

Steps: (1) build the untrained components (`labkit.toyworld.model`); (2) train the VAE alone on
toy images (reconstruction + a light KL), then fix its latent scaling factor; (3) pre-train the text
encoder to tell what each caption asks for — what is where, how many, which side of which
(`labkit.training.toy_text`); (4) train the UNet on the VAE's latents with
that text encoder frozen (v-prediction, cosine schedule, 10 % caption dropout for classifier-free
guidance, object pixels weighted up); (5) export the pipeline with `save_pretrained`
(safetensors), a model card and ``"labkit": {"family": "toy"}``, and measure prompt adherence on
held-out prompts with the classical detector. Only ``split="train"`` scenes are ever shown to the model.

Everything is logged to one MLflow parent run ("toy-base") with one child run per phase
("toy-vae", "toy-text", "toy-diffusion").
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.toyworld.geneval import DATA_MIX as _DATA_MIX
from labkit.toyworld.model import LICENCE, ToyModelConfig
from labkit.training.config import RESUME_IF_ANY, TrainConfig, _is_int, _is_real, check_flags, old_names, train_fields
from labkit.training.env import TrainEnv, as_train_env
from labkit.training.task import StepContext, TrainTask, Validation
from labkit.training.toy_text import DATA_DESCRIPTION, ToyTextTask, tokenize

if TYPE_CHECKING:  # pragma: no cover
    import torch



def validation_prompts(single: int = 4, two: int = 2, seed: int = 123) -> tuple[str, ...]:
    """Held-out prompts for validation grids, so they show generalisation, not memory."""
    from labkit.toyworld.captions import prompts

    return tuple(prompts("heldout", n=single, seed=seed, n_objects=1)
                 + prompts("heldout", n=two, seed=seed, n_objects=2))


@old_names(lr="learning_rate")
@dataclass(kw_only=True)
class ToyBaseConfig(TrainConfig):
    """The toy-base recipe's settings: `TrainConfig` — the text-encoder + UNet phase's, here with the defaults
    below (cosine schedule) — plus the recipe's own fields, the VAE and text phases' among them. `lr=` is
    accepted as the old name of `learning_rate`.

    The shipped model is these defaults' run (seed 0; 64 min from scratch with `--threads 2` on 2 idle CPU
    cores): `labkit eval toyworld --n 200` on held-out prompts measured single object 99.5%, two objects 96.5%,
    counting 100%, colours 99%, position 99%, colour attribution 94%. What each part of the recipe bought is in
    the model card (`toy_card`) and the README: one layout per count and relation (random layouts averaged out:
    counting 1.7%), the text pre-training on every caption kind, and its per-phrase head (colour attribution
    56.7% before it, 91.7% with it, the heavier pair and triple mix and 8,000 UNet steps, one run, on the
    recipe's own check). `--data-mix legacy --steps 3500 --text-steps 800` draws the data of the model before
    issue 28 (one and two objects at named positions).

    Attributes:
        output_dir: the recipe's folder: `vae/`, `unet/` (each phase's checkpoints, validation grids and
            export) and `model/` (the final pipeline).
        seed: initialises the models and seeds both phases.
        data_seed: which procedural scenes are drawn.
        vae_steps, vae_batch_size, vae_lr, vae_kl_weight: the VAE phase.
        text_steps, text_batch_size, text_lr: the text encoder's pre-training (0 steps: skip it).
        steps, batch_size, learning_rate, warmup_steps, min_lr_ratio: the text-encoder + UNet phase.
        train_text_encoder: keep training the text encoder with the UNet (default False: frozen as its
            pre-training left it). Trained jointly, it lets the words the denoising loss rewards least
            fade: in the recipe's own run "a large yellow diamond on the right" and "… triangle …" went
            from cosine similarity 0.77 after pre-training to 0.997 after the UNet phase, and the model drew
            triangles for diamonds (held-out shape 52%). Frozen, the UNet has to read the shape word
            (held-out shape 88% at step 2000 of the same run).
        text_encoder_lr_scale: its learning rate as a fraction of `lr` (when trained).
        caption_dropout: fraction of captions replaced by "" (what classifier-free guidance needs).
        min_snr_gamma: Min-SNR-γ loss weighting (Hang et al. 2023; None: off, the default). In
            v-prediction terms it weighs a step by min(SNR, γ) / (SNR + 1), which all but silences the
            high-noise steps where the layout — the position words — is decided: with γ = 5 the samples'
            layout followed the seed, not the prompt (position 19% at step 1000).
        object_weight: extra loss weight on latent pixels covered by an object (objects fill a few % of
            the canvas; without it a misplaced object costs almost nothing).
        guidance_scale, sampling_steps: how validation and the final evaluation render.
        checkpoint_every, validate_every, log_every: as in `TrainConfig`.
        eval_prompts: held-out prompts per kind (single / two objects) for the final adherence check (0: skip).
        data_mix: the scene kinds every phase trains on, as weights (normalised): `single`, `two`, `three`
            (objects at named positions), `count` ("three blue circles") and `relation` ("a red square left of a
            green circle"); a mapping or "single=0.2,two=0.25,…". The default, `geneval.DATA_MIX`, asks each
            kind about as often as the benchmark does. None or "legacy": one or two objects at named
            positions, half and half, what the model before issue 28 was trained on. The text encoder's
            pre-training draws the same mix (see `ToyTextTask` for what it learns from each kind).
        resume: None, or "latest" to continue an interrupted recipe in the same output_dir.
        threads: torch CPU threads (None: torch's default).
        model: component sizes (`ToyModelConfig`).
    """

    # TrainConfig's fields, with this recipe's defaults (the UNet phase's; the others share seed, log_every,
    # licence, checkpoint_every and keep_checkpoints)
    output_dir: str | Path = "toy-base"
    steps: int = 8000
    batch_size: int = 16
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    validate_every: int = 1000
    validation_seeds: tuple[int, ...] = (0, 1, 2)
    log_every: int = 50
    licence: str | None = LICENCE
    # the recipe's own
    data_seed: int = 0
    vae_steps: int = 1000
    vae_batch_size: int = 16
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-6
    text_steps: int = 2500
    text_batch_size: int = 64
    text_lr: float = 1e-3
    train_text_encoder: bool = False
    text_encoder_lr_scale: float = 0.5
    caption_dropout: float = 0.1
    min_snr_gamma: float | None = None
    object_weight: float = 4.0
    guidance_scale: float = 4.0
    sampling_steps: int = 20
    eval_prompts: int = 60
    data_mix: dict[str, float] | str | None = field(default_factory=lambda: dict(_DATA_MIX))
    threads: int | None = None
    model: ToyModelConfig = field(default_factory=ToyModelConfig)

    def validate(self) -> None:
        """Raise `InvalidParameter` for the first value the recipe cannot use, before any model is built or a run
        opens: the resume point (None or "latest"), the VAE and text phases' settings and the recipe's own
        numbers, the data mix, and the engine's checks on the UNet phase's `unet_config()`."""
        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"ToyBaseConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        if self.resume not in (None, "latest"):
            raise InvalidParameter(f"ToyBaseConfig.resume={self.resume!r} is not supported.", value=self.resume,
                                   fix="use None (fresh) or 'latest'.")
        for name in ("vae_steps", "vae_batch_size", "text_batch_size", "sampling_steps"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "use a whole number >= 1.")
        for name in ("text_steps", "data_seed", "eval_prompts"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 (text_steps: skip the pre-training; eval_prompts: no final check) or more.")
        for name in ("vae_lr", "text_lr", "text_encoder_lr_scale"):
            if not _is_real(getattr(self, name)) or not getattr(self, name) > 0:
                raise bad(name, "use a positive number such as 1e-3 (text_encoder_lr_scale: a fraction such as 0.5).")
        for name in ("vae_kl_weight", "object_weight", "guidance_scale"):
            if not _is_real(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 or a positive number.")
        if not _is_real(self.caption_dropout) or not 0.0 <= self.caption_dropout <= 1.0:
            raise bad("caption_dropout", "use a fraction in [0, 1].")
        # min(SNR, γ) / (SNR + 1) weighs each step: γ <= 0 gives every step a weight <= 0 (the loss then rewards
        # error); 0 would be read as off, which None says
        if self.min_snr_gamma is not None and (not _is_real(self.min_snr_gamma) or not self.min_snr_gamma > 0):
            raise bad("min_snr_gamma", "use a positive γ (5 is the paper's), or None to turn the weighting off.")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise bad("threads", "use a whole number >= 1, or None for torch's default.")
        check_flags(self, bad, ("train_text_encoder",))
        self.mix()
        self.unet_config().replace(resume=None).validate()

    def mix(self) -> dict[str, float] | None:
        """The data mix as normalised weights by scene kind (None: the shipped model's data, "legacy")."""
        from labkit.toyworld.geneval import check_mix

        if self.data_mix is None or self.data_mix == "legacy":
            return None
        return check_mix(self.data_mix)

    def unet_config(self) -> TrainConfig:
        """The engine's config of the text-encoder + UNet phase (in `output_dir/unet`)."""
        return train_fields(self, output_dir=Path(self.output_dir) / "unet",
                            validation_prompts=self.validation_prompts or validation_prompts(),
                            resume=RESUME_IF_ANY if self.resume else None)


def _images_to_tensor(images: Sequence[Any]) -> torch.Tensor:
    import numpy as np
    import torch

    arr = np.stack([np.asarray(i) for i in images]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _train_batch(data_seed: int, batch_size: int, index: int, mix: dict[str, float] | None = None
                 ) -> tuple[list[Any], list[str]]:
    """Micro-batch `index`: items [index·bs, (index+1)·bs) of the train-split stream (of scene kinds drawn by
    `mix`; None: one or two objects at named positions, the shipped model's data)."""
    from labkit.toyworld.data import iter_pairs

    pairs = list(iter_pairs(seed=data_seed, split="train", start=index * batch_size, n=batch_size, mix=mix))
    return [p[0] for p in pairs], [p[1] for p in pairs]


class ToyVAETask(TrainTask):
    """Phase 1: the AutoencoderKL learns to reconstruct toy scenes from its posterior mean plus a little noise
    (L1 + MSE + a light KL)."""

    name = "toy-vae"

    def __init__(self, vae, data_seed: int = 0, kl_weight: float = 1e-6, latent_noise: float = 0.05,
                 object_weight: float = 9.0, data_mix: dict[str, float] | None = None):
        self.vae = vae
        self.data_mix = data_mix
        self.data_seed = data_seed
        self.kl_weight = kl_weight
        self.latent_noise = latent_noise
        self.object_weight = object_weight

    def models(self):
        return {"vae": self.vae}

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        i = start
        while True:
            images, _ = _train_batch(self.data_seed, batch_size, i, self.data_mix)
            yield _images_to_tensor(images)
            i += 1

    def loss(self, batch, ctx: StepContext):
        x = batch.to(ctx.device)
        post = self.vae.encode(x).latent_dist
        # The posterior's own noise starts at std 1 (logvar 0) and drowns the colour information for
        # hundreds of steps; a small fixed noise keeps the decoder robust to the UNet's imperfect latents.
        z = post.mean + self.latent_noise * _randn(post.mean.shape, ctx)
        rec = self.vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        # Objects cover a few % of a mostly black image; weighting their pixels keeps colours exact.
        w = 1.0 + self.object_weight * (x.amax(dim=1, keepdim=True) > -0.5).float()
        err = rec - x
        return (w * (err.abs() + err**2)).mean() / w.mean() + self.kl_weight * kl

    def validate(self, prompts, seeds, step):
        import numpy as np
        from PIL import Image

        from labkit.toyworld.adherence import judge
        from labkit.toyworld.captions import parse
        from labkit.toyworld.scenes import render

        scenes = [parse(p) for p in prompts]
        x = _images_to_tensor([render(s) for s in scenes])
        self.vae.eval()
        z = self.vae.encode(x.to(self.vae.device)).latent_dist.mean
        rec = self.vae.decode(z).sample.cpu()
        out = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        orig = ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        images = [Image.fromarray(a) for o, r in zip(orig, out, strict=True) for a in (o, r)]
        ok = sum(v["all_correct"] for v in judge(list(out), scenes))
        mse = float(np.mean((out.astype(np.float32) - orig.astype(np.float32)) ** 2))
        return Validation(images, labels=[f"{k}: {p}" for p in prompts for k in ("original", "reconstruction")],
                          metrics={"recon_mse_uint8": mse, "recon_detector_all_correct": ok / len(scenes)})

    def data_card(self):
        return {"description": DATA_DESCRIPTION, "licence": LICENCE, "source": f"labkit.toyworld seed={self.data_seed}"}


def _randn(shape, ctx: StepContext):
    import torch

    return torch.randn(shape, generator=ctx.generator).to(ctx.device)


class ToyDiffusionTask(TrainTask):
    """Phase 2: text encoder + UNet learn v-prediction on the frozen VAE's latents."""

    name = "toy-diffusion"

    def __init__(self, components: dict[str, Any], data_seed: int = 0, caption_dropout: float = 0.1,
                 train_text_encoder: bool = True, text_encoder_lr_scale: float = 1.0,
                 guidance_scale: float = 4.0, sampling_steps: int = 20, card: str = "",
                 min_snr_gamma: float | None = None, object_weight: float = 0.0,
                 data_mix: dict[str, float] | None = None):
        from diffusers import DDPMScheduler

        self.c = components
        self.data_seed = data_seed
        self.caption_dropout = caption_dropout
        self.train_text_encoder = train_text_encoder
        self.text_encoder_lr_scale = text_encoder_lr_scale
        self.guidance_scale = guidance_scale
        self.sampling_steps = sampling_steps
        self.card = card
        self.min_snr_gamma = min_snr_gamma
        self.object_weight = object_weight
        self.data_mix = data_mix
        self.noise = DDPMScheduler.from_config(components["scheduler"].config)
        self.c["vae"].requires_grad_(False).eval()
        self.c["text_encoder"].requires_grad_(train_text_encoder)
        self.empty_ids = self._tokenize([""])

    def _tokenize(self, texts: Sequence[str]):
        return tokenize(self.c["tokenizer"], texts)

    def models(self):
        out = {"unet": self.c["unet"]}
        if self.train_text_encoder:
            out["text_encoder"] = self.c["text_encoder"]
        return out

    def frozen(self):
        # the VAE encodes every batch; the text encoder, unless it trains, reads every caption
        out = {"vae": self.c["vae"]}
        if not self.train_text_encoder:
            out["text_encoder"] = self.c["text_encoder"]
        return out

    def param_groups(self, learning_rate):
        groups = [{"params": list(self.c["unet"].parameters())}]
        if self.train_text_encoder:
            groups.append({"params": list(self.c["text_encoder"].parameters()),
                           "lr": learning_rate * self.text_encoder_lr_scale})
        return groups

    def batches(self, batch_size, start):
        i = start
        while True:
            images, captions = _train_batch(self.data_seed, batch_size, i, self.data_mix)
            yield _images_to_tensor(images), self._tokenize(captions)
            i += 1

    def loss(self, batch, ctx):
        import torch
        import torch.nn.functional as F

        x, ids = batch
        x, ids = x.to(ctx.device), ids.to(ctx.device)
        vae, unet = self.c["vae"], self.c["unet"]
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        drop = torch.rand(ids.shape[0], generator=ctx.generator) < self.caption_dropout
        ids = torch.where(drop[:, None].to(ctx.device), self.empty_ids.to(ctx.device).expand_as(ids), ids)
        cond = self.c["text_encoder"](ids)[0]
        noise = _randn(latents.shape, ctx)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (latents.shape[0],),
                          generator=ctx.generator).to(ctx.device)
        noisy = self.noise.add_noise(latents, noise, t)
        target = self.noise.get_velocity(latents, noise, t)
        pred = unet(noisy, t, cond).sample
        err = (pred.float() - target.float()) ** 2
        weight = torch.ones_like(err[:, :1])
        if self.object_weight:
            # object pixels (bright on a dark background), at latent resolution
            factor = x.shape[-1] // latents.shape[-1]
            mask = F.max_pool2d((x.amax(dim=1, keepdim=True) > -0.5).float(), factor)
            weight = weight + self.object_weight * mask
        per_sample = (weight * err).mean(dim=(1, 2, 3)) / weight.mean(dim=(1, 2, 3))
        if self.min_snr_gamma:
            # Min-SNR-γ for v-prediction: min(SNR, γ) / (SNR + 1), scaled so SNR = 1 weighs 1
            ac = self.noise.alphas_cumprod.to(ctx.device)[t]
            snr = ac / (1 - ac)
            per_sample = per_sample * torch.clamp(snr, max=self.min_snr_gamma) / (snr + 1) * 2
        return per_sample.mean()

    def pipeline(self):
        from labkit.toyworld.model import make_pipeline

        return make_pipeline(self.c)

    def validate(self, prompts, seeds, step):
        for m in ("unet", "text_encoder"):
            self.c[m].eval()
        pipe = self.pipeline()
        images, labels = [], []
        for p in prompts:
            imgs = render_prompts(pipe, [p] * len(seeds), seeds, self.guidance_scale, self.sampling_steps)
            images += imgs
            labels += [f"{p} (seed {s})" for s in seeds]
        rates = adherence(pipe, n=16, guidance_scale=self.guidance_scale, steps=self.sampling_steps)
        return Validation(images, labels, metrics=rates)

    def export(self, folder):
        from labkit.toyworld.model import save_pipeline

        save_pipeline(self.pipeline(), folder, card=self.card or None, labkit_meta={"trained": True})

    def data_card(self):
        return {"description": DATA_DESCRIPTION, "licence": LICENCE, "source": f"labkit.toyworld seed={self.data_seed}",
                "caption_dropout": self.caption_dropout}


# --- rendering and adherence ---------------------------------------------------------------------


def render_prompts(pipe, prompts: Sequence[str], seeds: Sequence[int], guidance_scale: float = 4.0,
                   steps: int = 20) -> list[Any]:
    """Render `prompts[i]` with `seeds[i]` (one batched call); PIL images."""
    import torch

    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return pipe(list(prompts), num_inference_steps=steps, guidance_scale=guidance_scale, height=64, width=64,
                generator=gens).images


def adherence(pipe, n: int = 60, seed: int = 0, guidance_scale: float = 4.0, steps: int = 20,
              batch: int = 30, categories: Sequence[str] = ()) -> dict[str, float]:
    """Rates of correct attributes on `n` held-out single-object and `n` two-object prompts.

    Single: colour, shape, size, position, all_correct; two: `two_colour` (both objects present
    with the right colours) and `two_all_correct`; plus `geneval.<category>` on `n` held-out prompts of each
    of `categories` (GenEval's, `labkit.toyworld.geneval`). A quick check for training; the full benchmark is
    `labkit eval toyworld`.
    """
    from labkit.toyworld.adherence import both_colours, judge, rates
    from labkit.toyworld.captions import prompts as heldout_prompts

    out: dict[str, float] = {}
    for k in (1, 2):
        ps = heldout_prompts("heldout", n=n, seed=seed, n_objects=k)
        vs = []
        for i in range(0, n, batch):
            chunk = ps[i:i + batch]
            imgs = render_prompts(pipe, chunk, [seed * 100_000 + i + j for j in range(len(chunk))],
                                  guidance_scale, steps)
            vs += judge(imgs, chunk)
        if k == 1:
            out.update(rates(vs, ("colour", "shape", "size", "position", "all_correct")))
        else:
            out["two_colour"] = sum(both_colours(v) for v in vs) / len(vs)
            out["two_all_correct"] = rates(vs, ("all_correct",))["all_correct"]
    from labkit.toyworld.detect import detect
    from labkit.toyworld.geneval import category_prompts, check, read

    for cat in categories:
        ps = [t for t, _ in category_prompts(cat, n, seed)]
        right = 0
        for i in range(0, n, batch):
            chunk = ps[i:i + batch]
            imgs = render_prompts(pipe, chunk, [seed * 100_000 + i + j for j in range(len(chunk))],
                                  guidance_scale, steps)
            right += sum(check(read(p), cat, detect(img))[0] for p, img in zip(chunk, imgs, strict=True))
        out[f"geneval.{cat}"] = right / n if n else 0.0
    return out


# --- the recipe ---------------------------------------------------------------------------------


def _latent_scale(vae, data_seed: int, n: int = 256) -> float:
    import torch

    with torch.no_grad():
        images, _ = _train_batch(data_seed + 7919, n, 0)
        z = vae.encode(_images_to_tensor(images).to(vae.device)).latent_dist.mean
    return float(1.0 / z.std())


def toy_card(config: ToyBaseConfig, steps: dict[str, int], wall_s: float, rates: dict[str, float] | None,
             run_id: str | None) -> str:
    """The toy model's model card (Markdown): what it is, how it was made, its licence, intended use."""
    from labkit.tracking import versions

    rate_lines = [f"- {k}: {v:.1%}" for k, v in (rates or {}).items()]
    return "\n".join([
        "---", "license: cc0-1.0", "library_name: diffusers", "pipeline_tag: text-to-image",
        "tags:", "- labkit", "- toy", "---", "",
        "# labkit toy world: a tiny text-to-image model", "",
        "A Stable Diffusion-layout pipeline (CLIP-style BPE tokenizer, `CLIPTextModel`, `AutoencoderKL` "
        "64×64×3 ↔ 32×32×4, `UNet2DConditionModel` with cross-attention, v-prediction `DDIMScheduler` "
        "with the cosine schedule) that draws labkit's toy world: flat shapes — circle, square, triangle, "
        "diamond — in 7 colours, 2 sizes and 5 positions, on a dark background"
        + (": one to three at named positions, two to four of a kind, two in a relation." if config.mix() else
           ": one or two at named positions.") + " The benchmark it is scored with is `labkit eval toyworld` "
        "(GenEval's six categories on held-out prompts).", "",
        "## Licence", "", "CC0-1.0 (public domain dedication). The training data are scenes rendered "
        "procedurally by `labkit.toyworld`; no third-party image, text or weight was used.", "",
        "## Intended use", "",
        "Offline demos, teaching, and tests that must assert image *quality* on a CPU without a network: "
        "LoRA / DreamBooth (new words such as \"hexagon\" or \"sks\" spell out as several BPE tokens), "
        "ControlNet and motion experiments. Not a general image model: it knows nothing beyond its world.", "",
        "## How it was made", "",
        f"`labkit train toy-base` (labkit.training.toy_base.train_toy_base), seed {config.seed}, data seed "
        f"{config.data_seed}, {wall_s / 60:.1f} minutes on this machine.", "",
        f"1. VAE: {steps.get('vae', 0)} steps × batch {config.vae_batch_size}, AdamW lr {config.vae_lr} (cosine), "
        f"L1 + MSE + {config.vae_kl_weight} × KL; latent scaling factor fixed afterwards.",
        f"2. Text encoder pre-training: {steps.get('text', 0)} steps × batch {config.text_batch_size}, AdamW lr "
        f"{config.text_lr} (cosine): linear heads on the mean hidden state predict what the caption asks for, "
        "order-free: the colour, shape and size at each of the five positions (when it names them), how many "
        "objects of each shape and of each colour, and which shape is left of, right of, above or below which; "
        "and a head on the last token of each object's phrase names that object whole (heads discarded "
        "afterwards).",
        f"3. {'Text encoder + UNet' if config.train_text_encoder else 'UNet'}: {steps.get('unet', 0)} steps × "
        f"batch {config.batch_size}, AdamW lr {config.learning_rate} (cosine, warm-up {config.warmup_steps}"
        + (f"; text encoder × {config.text_encoder_lr_scale}" if config.train_text_encoder else "") + "), "
        "v-prediction, " + (f"Min-SNR-γ {config.min_snr_gamma}, " if config.min_snr_gamma else "")
        + f"object-pixel loss weight 1 + {config.object_weight}, "
        f"caption dropout {config.caption_dropout}"
        + ("; text encoder trained jointly" if config.train_text_encoder
           else "; text encoder frozen " + ("as its pre-training left it" if config.text_steps
                                            else "at its random initialisation")) + ".",
        f"4. Data: {DATA_DESCRIPTION}; scene kinds "
        + (", ".join(f"{k} {v:.0%}" for k, v in mix.items()) if (mix := config.mix()) else "one or two objects, "
           "half and half") + ".", "",
        f"Recommended sampling: {config.sampling_steps} DDIM steps, guidance scale {config.guidance_scale}, 64×64.", "",
        *(_CHANGES if config.mix() else []),
        "## Prompt adherence (held-out prompts, classical detector)", "",
        *(rate_lines or ["- not measured"]), "",
        *([f"MLflow run: `{run_id}`", ""] if run_id else []),
        "## Recipe config", "", "```json", json.dumps(config.to_dict(), indent=2, default=str), "```", "",
        "## Software", "", *(f"- {k} {v}" for k, v in versions().items()), "",
    ])


#: The card's account of what the recipe changed for GenEval's categories (issue 28), and why; each figure is
#: the recipe's own final check (60 held-out prompts of each kind) of the run that tried it.
_CHANGES = [
    "## What changed in the recipe, and why", "",
    "The model before this recipe was trained on one and two objects at named positions only: on held-out "
    "prompts it drew single objects right (99%) but counted 3.5%, placed one shape relative to another 50% of the "
    "time and gave each object its own colour in 26.5% of two- and three-object scenes.", "",
    "- **Every scene kind the benchmark asks about is in the data** (`geneval.DATA_MIX`): counts (\"three blue "
    "circles\"), relations (\"a red square left of a green circle\") and three objects, besides one and two.",
    "- **Count and relation scenes have one layout each** (`geneval.COUNT_LAYOUTS`, `RELATION_LAYOUTS`). Their "
    "captions name no place; on random layouts the model drew the average of them, the asked shape at every "
    "anchor (counting 1.7%).",
    "- **The text encoder's pre-training learns from every caption kind**: counts and relations as well as what "
    "is at each named position (with the layouts fixed: counting 100%, position 98.3%, colour attribution "
    "56.7%).",
    "- **Each object phrase's last token learns its object whole.** The pooled heads alone read every object's "
    "colour right in 20% of held-out two-object captions; the UNet reads token states, and with the per-phrase "
    "head (and a mix weighted toward two and three objects, 8,000 UNet steps instead of 7,000) colour "
    "attribution went from 56.7% to 91.7%.", "",
]


def train_toy_base(env: TrainEnv | Any, config: ToyBaseConfig | None = None) -> Path:
    """Train the toy base model from scratch and export it; return the exported pipeline folder.

    Logged as an MLflow run "toy-base" (params: the recipe config; metrics: the final adherence
    rates; artifacts: the model and its card) with child runs "toy-vae" and "toy-diffusion" from
    the training engine. With `config.resume="latest"` a recipe stopped by Ctrl-C continues: a
    finished VAE phase is reused and the diffusion phase resumes from its latest checkpoint.
    """
    import torch

    from labkit.toyworld.model import build_components, save_pipeline, weights_bytes
    from labkit.training import train

    # 1. settings, folders, the untrained components
    config = config or ToyBaseConfig()
    config.validate()
    mix = config.mix()
    env = as_train_env(env)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out = Path(config.output_dir)
    if config.resume == "latest" and not (out / "vae").is_dir():
        raise InvalidParameter(f"Nothing to resume: {str(out)!r} holds no toy-base run (no 'vae' phase folder).",
                               value=str(out), fix="name the output folder of the stopped run, or leave out "
                                                   "--resume to train from scratch.")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    comps = build_components(out / "build", config.model, seed=config.seed)
    # A recipe stopped in one phase has no checkpoint yet in the later ones: each phase resumes what it has.
    common = {"seed": config.seed, "log_every": config.log_every, "licence": config.licence,
              "checkpoint_every": config.checkpoint_every, "keep_checkpoints": config.keep_checkpoints,
              "resume": RESUME_IF_ANY if config.resume else None}
    with env.run("toy-base", params=config.to_dict(), tags={"labkit.job": "train", "labkit.task": "toy-base"}) as run:
        run_id = run.run_id if run is not None else None  # None: a TrainEnv that logs nothing
        # 2. the VAE
        vae_done = out / "vae" / "model" / "vae.safetensors"
        if config.resume == "latest" and vae_done.is_file():
            from safetensors.torch import load_file

            comps["vae"].load_state_dict(load_file(str(vae_done)))
            vae_steps = config.vae_steps
        else:
            vcfg = TrainConfig(output_dir=out / "vae", steps=config.vae_steps, batch_size=config.vae_batch_size,
                               learning_rate=config.vae_lr, lr_schedule="cosine", warmup_steps=50,
                               min_lr_ratio=0.05, validate_every=max(config.vae_steps // 2, 1),
                               validation_prompts=validation_prompts(4, 0), validation_seeds=(0,), **common)
            res = train(ToyVAETask(comps["vae"], config.data_seed, config.vae_kl_weight, data_mix=mix), vcfg, env=env,
                        parent_run_id=run_id, run_name="toy-vae")
            if res.status != "finished":
                raise KeyboardInterrupt
            vae_steps = res.step
        comps["vae"].register_to_config(scaling_factor=_latent_scale(comps["vae"], config.data_seed))
        comps["vae"].requires_grad_(False).eval()
        if run is not None:
            run.log_metrics({"vae.scaling_factor": comps["vae"].config.scaling_factor})

        # 3. the text encoder's pre-training
        text_steps = 0
        text_done = out / "text" / "model" / "text_encoder.safetensors"
        if config.resume == "latest" and text_done.is_file():
            from safetensors.torch import load_file

            comps["text_encoder"].load_state_dict(load_file(str(text_done)))
            text_steps = config.text_steps
        elif config.text_steps:
            tcfg = TrainConfig(output_dir=out / "text", steps=config.text_steps, batch_size=config.text_batch_size,
                               learning_rate=config.text_lr, lr_schedule="cosine", warmup_steps=50,
                               min_lr_ratio=0.1, validate_every=max(config.text_steps // 2, 1),
                               validation_prompts=("held-out captions",), **common)
            res = train(ToyTextTask(comps["text_encoder"], comps["tokenizer"], config.data_seed, mix), tcfg, env=env,
                        parent_run_id=run_id, run_name="toy-text")
            if res.status != "finished":
                raise KeyboardInterrupt
            text_steps = res.step

        # 4. text encoder + UNet
        task = ToyDiffusionTask(comps, config.data_seed, config.caption_dropout, config.train_text_encoder,
                                config.text_encoder_lr_scale, config.guidance_scale, config.sampling_steps,
                                min_snr_gamma=config.min_snr_gamma, object_weight=config.object_weight, data_mix=mix)
        res = train(task, config.unet_config(), env=env, parent_run_id=run_id, run_name="toy-diffusion")
        if res.status != "finished":
            raise KeyboardInterrupt
        train_wall = time.time() - t0

        # 5. adherence, export, card
        for m in ("unet", "text_encoder"):
            comps[m].eval()
        rates = adherence(task.pipeline(), n=config.eval_prompts, guidance_scale=config.guidance_scale,
                          steps=config.sampling_steps,
                          categories=("counting", "position", "colour_attribution")) if config.eval_prompts else {}
        final = out / "model"
        shutil.rmtree(final, ignore_errors=True)
        card = toy_card(config, {"vae": vae_steps, "text": text_steps, "unet": res.step}, train_wall, rates, run_id)
        save_pipeline(task.pipeline(), final, card=card,
                      labkit_meta={"trained": True, "guidance_scale": config.guidance_scale,
                                   "sampling_steps": config.sampling_steps})
        if run is not None:
            run.log_metrics({**{f"adherence.{k}": v for k, v in rates.items()}, "train_wall_s": train_wall,
                             "weights_mb": weights_bytes(final) / 1e6})
            run.log_artifact(final, "model")
        shutil.rmtree(out / "build", ignore_errors=True)
    return final


__all__ = ["ToyBaseConfig", "ToyDiffusionTask", "ToyTextTask", "ToyVAETask", "adherence",
           "render_prompts", "toy_card", "train_toy_base", "validation_prompts"]
