"""The LoRA recipe: teach a base model a concept or a style from an image folder, on labkit's engine.

    result = train_lora(lab, LoraTrainConfig(data="hexagons/", output_dir="out/hexagon", steps=600))
    # lab: a Lab, or any TrainEnv (a tracker, hardware, licence policy, model finder)
    lab.generate("a small red hexagon on the left", adapters=[str(result.export_dir)])

Steps (`train_lora`): (1) check the config and the data folder (an imagefolder whose
`metadata.jsonl` gives each image's caption and licence); (2) load the base pipeline, freeze it and
add PEFT LoRA layers to the UNet (and, optionally, the text encoder); (3) encode every image once
with the frozen VAE, and every caption once when the text encoder is frozen; (4) train on the engine
(checkpoints, exact resume, validation grids with and without the adapter, MLflow); (5) export the
adapter in diffusers format (and optionally kohya format) with the base model, the licence chain and
the dataset's licence breakdown in the file's metadata and in the model card.

Every checkpoint folder also holds the adapter as it was at that step (`adapter/`), so checkpoints load
like any adapter and `labkit compare adapters` can set them side by side.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.training.config import TrainConfig, _tuple, check_flags, old_names, train_fields
from labkit.training.lora_checks import check_base_index, check_dataset, check_targets, concept_fix, open_image
from labkit.training.task import StepContext, TrainTask, Validation

if TYPE_CHECKING:  # pragma: no cover
    from labkit.training.engine import TrainResult
    from labkit.training.env import TrainEnv

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@old_names(positional=("data", "output_dir"))
@dataclass(kw_only=True)
class LoraTrainConfig(TrainConfig):
    """Everything a LoRA training job needs (logged once as the run's params): `TrainConfig` (here with the
    defaults below) plus the recipe's own fields.

    Attributes:
        data: an image folder with `metadata.jsonl` (`file_name`, `text`, `licence` per line).
        output_dir: checkpoints, validation grids and the exported adapter (`model/`).
        base: the base model: catalogue id, diffusers repo id or local folder.
        rank, alpha: LoRA rank and alpha (alpha None: = rank, i.e. scale 1).
        target_modules: UNet layers that get LoRA (name suffixes); text_encoder_targets likewise.
        train_text_encoder: also train LoRA layers on the text encoder (else its embeddings are cached).
        text_encoder_lr_scale: the text encoder's learning rate as a fraction of `learning_rate`.
        resolution: image side in pixels (None: the base model's default size).
        steps, batch_size, gradient_accumulation_steps, learning_rate, lr_schedule, warmup_steps, seed:
            as in `TrainConfig`.
        validation_prompts, validation_seeds, validate_every: the validation grid (each prompt × seed,
            with and without the adapter); validate_every 0: off.
        checkpoint_every, keep_checkpoints: as in `TrainConfig` (each checkpoint also holds `adapter/`).
        gradient_checkpointing: trade compute for memory in the UNet.
        use_8bit_adam: None (auto: when bitsandbytes and CUDA are there), True (required) or False.
        mixed_precision: "no", "fp16" (CUDA), "bf16".
        guidance_scale, sampling_steps: how validation renders (None: the base model's defaults).
        licence: the adapter's licence (None: the data's licence when all items share one).
        kohya: also write a kohya-format copy (`lora_kohya.safetensors`).
        resume: None, "latest", or a checkpoint folder.
        threads: torch CPU threads (None: torch's default).
        eval_prompts: toy world only: held-out prompts scored at the end (0: off).
        concept: toy world only: the new shape the adapter teaches (for the final adherence check).
    """

    # TrainConfig's fields, with this recipe's defaults
    steps: int = 500
    batch_size: int = 8
    learning_rate: float = 1e-3
    validation_seeds: tuple[int, ...] = (0, 1)
    validate_every: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int | None = None  # None: a tenth of the steps, at most 25
    # the recipe's own
    data: str | Path
    base: str = "toyworld"
    rank: int = 8
    alpha: float | None = None
    target_modules: tuple[str, ...] = UNET_TARGETS
    text_encoder_targets: tuple[str, ...] = TEXT_ENCODER_TARGETS
    train_text_encoder: bool = False
    text_encoder_lr_scale: float = 0.5
    resolution: int | None = None
    gradient_checkpointing: bool = False
    use_8bit_adam: bool | None = None
    guidance_scale: float | None = None
    sampling_steps: int | None = None
    kohya: bool = False
    threads: int | None = None
    eval_prompts: int = 0
    concept: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.data, (str, os.PathLike)):
            self.data = Path(self.data)
        for name in ("target_modules", "text_encoder_targets"):
            setattr(self, name, _tuple(self, name))

    def validate(self) -> None:
        """Raise `InvalidParameter` naming the first bad value and its fix, before any model loads: the
        numbers (rank, steps, learning rate, batch size…), the switches, the toy `concept` (a shape the toy
        evaluation knows), the output folder, the resume point (a checkpoint must exist for "latest"), and the
        data folder (its metadata.jsonl, and every image it lists opens and decodes)."""
        from labkit.training.config import _is_int, _is_real

        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"LoraTrainConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        if not _is_int(self.rank) or self.rank < 1:
            raise bad("rank", "use a rank >= 1 (4–32 is usual).")
        if self.alpha is not None and (not _is_real(self.alpha) or not self.alpha > 0):
            raise bad("alpha", "use a positive alpha, or None for alpha = rank.")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise bad("target_modules", f"name the UNet layers to adapt, e.g. {list(UNET_TARGETS)}.")
        if self.train_text_encoder and not all(isinstance(t, str) and t for t in self.text_encoder_targets):
            raise bad("text_encoder_targets", f"name text-encoder layers, e.g. {list(TEXT_ENCODER_TARGETS)}.")
        if not _is_real(self.text_encoder_lr_scale) or not self.text_encoder_lr_scale > 0:
            raise bad("text_encoder_lr_scale", "use a positive fraction such as 0.5.")
        if self.resolution is not None and (not _is_int(self.resolution) or self.resolution < 8
                                            or self.resolution % 8):
            raise bad("resolution", "use a multiple of 8, or None for the model's size.")
        if self.guidance_scale is not None and (not _is_real(self.guidance_scale) or self.guidance_scale < 0):
            raise bad("guidance_scale", "use a guidance scale >= 0, or None for the model's default.")
        if self.sampling_steps is not None and (not _is_int(self.sampling_steps) or self.sampling_steps < 1):
            raise bad("sampling_steps", "use a whole number >= 1, or None for the model's default.")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise bad("threads", "use a whole number >= 1, or None for torch's default.")
        if not _is_int(self.eval_prompts) or self.eval_prompts < 0:
            raise bad("eval_prompts", "use 0 (off) or a whole number of held-out prompts.")
        if fix := concept_fix(self.concept):
            raise bad("concept", fix)
        check_flags(self, bad, ("train_text_encoder", "gradient_checkpointing", "kohya"))
        if self.use_8bit_adam is not None and not isinstance(self.use_8bit_adam, bool):
            raise bad("use_8bit_adam", "use True (required), False (off) or None (auto).")
        if not isinstance(self.base, str) or not self.base.strip():
            raise bad("base", "name the base model: a catalogue id, a diffusers repo id or a local folder.")
        if not _is_int(self.steps) or self.steps < 1:
            raise bad("steps", "use a whole number of optimizer steps >= 1, e.g. --steps 500.")
        for name in ("batch_size", "gradient_accumulation_steps", "keep_checkpoints"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "use a whole number >= 1.")
        for name in ("checkpoint_every", "validate_every", "warmup_steps", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "use 0 (off) or a positive whole number.")
        if not _is_real(self.learning_rate) or not self.learning_rate > 0:
            raise bad("learning_rate", "use a positive learning rate such as 1e-4 (--learning-rate).")
        # The engine's own checks (steps, batch size, learning rate, schedule, output folder, resume point),
        # made here too so that nothing loads first.
        self.train_config(7.5, 25).validate()
        check_dataset(self.data)
        if self.use_8bit_adam:
            eight_bit_adam(True)  # required: refused here when it cannot run

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        d["resume"] = None if self.resume is None else str(self.resume)
        return d

    def train_config(self, guidance: float, sampling: int) -> TrainConfig:
        """The engine's `TrainConfig` for this job (the recipe's settings in its params as `extra.lora`);
        validation on without prompts shows the dataset's first caption, as the Train panel does."""
        tc = train_fields(self, log_every=self.log_every or max(1, min(25, self.steps // 10 or 1)),
                          extra={"lora": {**self.to_dict(), "guidance_scale": guidance, "sampling_steps": sampling}})
        if tc.validate_every and not tc.validation_prompts:
            from labkit.compliance.datasets import read_records

            first = next((str(r["text"]) for r in read_records(self.data) if str(r.get("text") or "").strip()), None)
            tc = tc.replace(validation_prompts=(first,)) if first else tc
        return tc


def _lora_layers(*models):
    from peft.tuners.tuners_utils import BaseTunerLayer

    for model in models:
        if model is None:
            continue
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                yield name, module


class LoraTask(TrainTask):
    """PEFT LoRA on a Stable Diffusion-layout pipeline's UNet (and optionally its text encoder).

    `models()` is a module holding only the LoRA weights, so checkpoints hold the adapter and its
    optimizer state, never a copy of the base model.
    """

    name = "lora"

    def __init__(self, pipe: Any, config: LoraTrainConfig, *, base_id: str, base_family: str,
                 base_licence: str | None, base_revision: str | None = None,
                 guidance_scale: float = 7.5, sampling_steps: int = 25, resolution: int = 512):
        from diffusers import DDPMScheduler

        self.pipe = pipe
        self.config = config
        self.base_id, self.base_family, self.base_licence, self.base_revision = (
            base_id, base_family, base_licence, base_revision)
        self.guidance_scale, self.sampling_steps, self.resolution = guidance_scale, sampling_steps, resolution
        self.noise = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction = self.noise.config.prediction_type
        alpha = float(config.alpha) if config.alpha is not None else float(config.rank)
        self.alpha = alpha
        unet, te, vae = pipe.unet, pipe.text_encoder, pipe.vae
        for m in (unet, te, vae):
            m.requires_grad_(False)
        vae.eval()
        te.eval()
        # on the training device from the start: encoding the data and drawing class images run there too
        pipe.to(self.device)
        self._add_trainable(unet, te)
        self._trained_in_fp32()
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self._encode_data()

    @property
    def device(self) -> Any:
        return training_device(self.config.cpu)

    def _trained_in_fp32(self) -> None:
        """The trained weights in float32 where the frozen base is in half precision (CUDA with mixed precision):
        the optimizer then updates fp32 weights (fp16 gradients cannot be unscaled; updates this small vanish in
        bf16), while the forward runs in half precision under the engine's autocast."""
        import torch
        from diffusers.training_utils import cast_training_params

        if any(p.dtype != torch.float32 for p in self.holder.parameters()):
            cast_training_params(self.holder, dtype=torch.float32)

    def _add_trainable(self, unet: Any, te: Any) -> None:
        """Add the LoRA layers to the frozen `unet` (and `te` when the text encoder trains) and gather them in
        `self.holder`, the one module the engine trains and checkpoints."""
        import torch
        from peft import LoraConfig, inject_adapter_in_model

        config, alpha = self.config, self.alpha
        # Gaussian init of A (B = 0): the adapter starts as an exact no-op, as in diffusers' scripts;
        # drawn from the config's seed, so the same config starts from the same adapter.
        check_targets(unet, config.target_modules, "target_modules", self.base_id, UNET_TARGETS)
        if config.train_text_encoder:
            check_targets(te, config.text_encoder_targets, "text_encoder_targets", self.base_id, TEXT_ENCODER_TARGETS)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                        target_modules=list(config.target_modules)))
            if config.train_text_encoder:
                inject_adapter_in_model(LoraConfig(r=config.rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                                   target_modules=list(config.text_encoder_targets)), te)
        self.holder = torch.nn.ModuleDict()
        for prefix, model in (("unet", unet), ("text_encoder", te if config.train_text_encoder else None)):
            for name, layer in _lora_layers(model):
                key = f"{prefix}__{name.replace('.', '__')}"
                self.holder[key] = torch.nn.ModuleDict({"A": layer.lora_A, "B": layer.lora_B})

    # -- data ---------------------------------------------------------------------------------------

    def _encode_data(self) -> None:
        """Read the folder, encode every image once (frozen VAE) and every caption once (frozen text encoder)."""
        records = check_dataset(self.config.data)
        images = [open_image(Path(self.config.data) / r["file_name"]) for r in records]
        self.captions = [str(r["text"]) for r in records]
        self.latents, self.ids, self.embeddings = self.encode(images, self.captions)

    def encode(self, images: Sequence[Any], captions: Sequence[str]) -> tuple[Any, Any, Any]:
        """(latents, token ids, text embeddings — None when the text encoder trains) of PIL `images` (resized to
        the training resolution) and their `captions`, through the frozen VAE and text encoder."""
        import numpy as np
        import torch
        from PIL import Image

        arrays = [np.asarray(im.convert("RGB").resize((self.resolution, self.resolution), Image.BICUBIC),
                             dtype=np.float32) / 127.5 - 1.0 for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        vae, te, tok = self.pipe.vae, self.pipe.text_encoder, self.pipe.tokenizer
        dtype = next(vae.parameters()).dtype
        # a half-precision VAE that asks for float32 (SDXL's overflows in fp16) encodes in float32: a one-off pass
        upcast = dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        if upcast:
            vae.to(torch.float32)
        try:
            with torch.no_grad():
                lat = [vae.encode(x[i:i + 16].to(vae.device, next(vae.parameters()).dtype)).latent_dist.mean
                       for i in range(0, len(x), 16)]
        finally:
            if upcast:
                vae.to(dtype)
        latents = (torch.cat(lat) * vae.config.scaling_factor).float().cpu()
        ids = tok(list(captions), padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        embeddings = None
        if not self.config.train_text_encoder:
            with torch.no_grad():
                embeddings = torch.cat([te(ids[i:i + 64].to(te.device))[0] for i in range(0, len(ids), 64)]).cpu()
        return latents, ids, embeddings

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        """Micro-batch i: items of a per-epoch permutation seeded by (seed, epoch) — resumable anywhere."""
        import numpy as np

        n = len(self.captions)
        i = start
        while True:
            idx = []
            for j in range(i * batch_size, (i + 1) * batch_size):
                epoch, pos = divmod(j, n)
                idx.append(int(np.random.default_rng([self.config.seed, epoch]).permutation(n)[pos]))
            yield idx
            i += 1

    # -- training -----------------------------------------------------------------------------------

    def models(self):
        return {"lora": self.holder}

    def param_groups(self, learning_rate: float):
        unet = [p for k, m in self.holder.items() if k.startswith("unet__") for p in m.parameters()]
        te = [p for k, m in self.holder.items() if k.startswith("text_encoder__") for p in m.parameters()]
        groups = [{"params": unet}]
        if te:
            groups.append({"params": te, "lr": learning_rate * self.config.text_encoder_lr_scale})
        return groups

    def optimizer(self, groups, config):
        """bitsandbytes' 8-bit AdamW when it and CUDA are there (and not switched off)."""
        bnb = eight_bit_adam(self.config.use_8bit_adam)
        if bnb is None:
            return None
        return bnb.optim.AdamW8bit(groups, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_eps,
                                   weight_decay=config.weight_decay)

    def loss(self, idx, ctx: StepContext):
        return self.denoise_loss(self.latents[idx], self.ids[idx],
                                 None if self.embeddings is None else self.embeddings[idx], ctx)

    def denoise_loss(self, latents, ids, embeddings, ctx: StepContext):
        """The diffusion loss of a batch of latents and their captions (cached embeddings, or token ids when the
        text encoder trains), with noise and timesteps drawn from the step's generator."""
        import torch

        unet = self.pipe.unet
        if not _same_device(next(unet.parameters()).device, ctx.device):
            self.pipe.to(ctx.device)
        unet.train()
        latents = latents.to(ctx.device)
        cond = embeddings.to(ctx.device) if embeddings is not None else self.pipe.text_encoder(ids.to(ctx.device))[0]
        noise = torch.randn(latents.shape, generator=ctx.generator).to(ctx.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (latents.shape[0],),
                          generator=ctx.generator).to(ctx.device)
        noisy = self.noise.add_noise(latents, noise, t)
        target = self.noise.get_velocity(latents, noise, t) if self.prediction == "v_prediction" else noise
        pred = unet(noisy, t, cond).sample
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    # -- validation ---------------------------------------------------------------------------------

    def set_enabled(self, enabled: bool) -> None:
        """Switch the LoRA layers on or off (off: the base model exactly)."""
        for _, layer in _lora_layers(self.pipe.unet, self.pipe.text_encoder):
            layer.enable_adapters(enabled)

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Any]:
        import torch

        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.pipe.set_progress_bar_config(disable=True)
        # With mixed precision (CUDA) the frozen parts are in half precision and the trained ones in float32 (a
        # fully fine-tuned UNet): autocast runs them together, as the engine's forward does.
        half = self.pipe.vae.dtype
        with torch.autocast(self.device.type, dtype=half, enabled=half != torch.float32):
            return self.pipe(list(prompts), num_inference_steps=self.sampling_steps,
                             guidance_scale=self.guidance_scale, height=self.resolution, width=self.resolution,
                             generator=gens).images

    def validation_rows(self, prompt: str, seeds: Sequence[int]) -> list[tuple[str, list[Any]]]:
        """The validation grid's rows for one prompt: (label, an image per seed) with the adapter, then without."""
        rows = []
        for which, on in (("adapter", True), ("base", False)):
            self.set_enabled(on)
            rows.append((which, self.render([prompt] * len(seeds), seeds)))
        self.set_enabled(True)
        return rows

    def validate(self, prompts, seeds, step):
        """Each prompt × seed with the adapter, then the same without it (rows alternate: with, without)."""
        self.pipe.unet.eval()
        images, labels, metrics = [], [], {}
        scored: dict[str, list[float]] = {}
        for p in prompts:
            for which, imgs in self.validation_rows(p, seeds):
                images += imgs
                labels += [f"{which}: {p} (seed {s})" for s in seeds]
                if self.base_family == "toy":  # a prompt the toy judge cannot read (e.g. a hexagon) scores nothing
                    scored.setdefault(which, []).extend(toy_scores(p, imgs))
        for which, vals in scored.items():
            if not vals:
                continue
            metrics[f"{which}_all_correct"] = sum(vals) / len(vals)
        return Validation(images, labels, metrics)

    # -- export -------------------------------------------------------------------------------------

    def lora_state(self) -> dict[str, Any]:
        """The adapter in diffusers format ("unet.….lora_A.weight"), with alpha / rank folded into B
        so that it loads with PEFT's alpha == rank convention in every tool."""
        from peft.utils import get_peft_model_state_dict

        scale = self.alpha / self.config.rank
        out: dict[str, Any] = {}
        parts = [("unet", self.pipe.unet)]
        if self.config.train_text_encoder:
            parts.append(("text_encoder", self.pipe.text_encoder))
        for prefix, model in parts:
            for k, v in get_peft_model_state_dict(model).items():
                v = v.detach().float().cpu()
                out[f"{prefix}.{k}"] = v * scale if ".lora_B." in k and scale != 1.0 else v
        return out

    def adapter_metadata(self, step: int | None = None) -> dict[str, Any]:
        """What the adapter file's header says: base model and family, licence, chain, data breakdown."""
        breakdown = self.dataset_breakdown()
        meta: dict[str, Any] = {
            "base_model": self.base_id, "base_family": self.base_family, "base_licence": self.base_licence or "",
            "base_revision": self.base_revision or "", "licence": self.adapter_licence() or "",
            "licence_chain": [a.to_dict() for a in self.licence_chain()],
            "rank": str(self.config.rank), "alpha": str(self.alpha), "trained_alpha_folded": "true",
            "target_modules": list(self.config.target_modules),
            "text_encoder": str(bool(self.config.train_text_encoder)).lower(),
            "resolution": str(self.resolution), "prediction_type": self.prediction, "trainer": "labkit",
        }
        if step is not None:
            meta["step"] = str(step)
        if breakdown is not None:
            meta["dataset"] = {"name": breakdown.name, "items": breakdown.total, "licences": dict(breakdown.counts),
                               "table": breakdown.table(), "missing": len(breakdown.missing),
                               "terms": breakdown.terms.text}
        return meta

    def adapter_licence(self) -> str | None:
        return self.output_licence(self.config.licence)

    def on_checkpoint(self, folder: Path, step: int) -> None:
        from labkit.pipelines.lora import write_adapter

        write_adapter(folder / "adapter", self.lora_state(), self.adapter_metadata(step))

    def export(self, folder: Path) -> None:
        from labkit.pipelines.lora import write_adapter

        write_adapter(folder, self.lora_state(), self.adapter_metadata(), kohya=self.config.kohya)

    # -- records ------------------------------------------------------------------------------------

    def data_card(self):
        return {"folder": str(self.config.data), "name": Path(self.config.data).name,
                "description": f"{len(self.captions)} captioned images (imagefolder)", "items": len(self.captions)}

    def licence_chain(self):
        from labkit.compliance import Asset

        return [Asset("model", self.base_id, self.base_licence, self.base_revision), *super().licence_chain()]

    def card_notes(self) -> str:
        from labkit.pipelines.lora import KOHYA_NAME, WEIGHT_NAME

        files = f"`{WEIGHT_NAME}` (diffusers / PEFT format)" + (
            f" and `{KOHYA_NAME}` (kohya format: A1111, ComfyUI, sd-scripts)" if self.config.kohya else "")
        return "\n".join([
            "## Base model", "",
            f"- base model: `{self.base_id}`" + (f" @ `{self.base_revision}`" if self.base_revision else ""),
            f"- base family: {self.base_family}; base licence: {self.base_licence or 'unknown'}",
            f"- LoRA rank {self.config.rank}, alpha {self.alpha:g} (folded into the weights: load at scale 1), "
            f"UNet layers {list(self.config.target_modules)}"
            + (f", text encoder layers {list(self.config.text_encoder_targets)}" if self.config.train_text_encoder
               else ", text encoder frozen"),
            f"- adapter licence: {self.adapter_licence() or 'not stated'}", "",
            "## How to load", "",
            f"Files: {files}. The safetensors header carries `labkit.base_model`, `labkit.licence_chain` and "
            "`labkit.dataset` (the licence breakdown of the training data).", "",
            "```python", f'lab.generate("…", model="{self.base_id}", adapters=["<this folder>:1.0"])',
            f'pipe.load_lora_weights("<this folder>", weight_name="{WEIGHT_NAME}")   # plain diffusers', "```",
        ])


def toy_scores(prompt: str, images: Sequence[Any]) -> list[float]:
    """1.0 or 0.0 per image: all of a toy-world `prompt` drawn right ([] when it is not a toy-world caption)."""
    from labkit.toyworld.adherence import judge_toy

    verdicts = judge_toy(images, prompt)
    return [float(v["all_correct"]) for v in verdicts] if verdicts is not None else []


def training_device(cpu: bool = False) -> Any:
    """Where a training process computes, as accelerate places it: its GPU (`LOCAL_RANK` under `accelerate launch`,
    modulo the GPUs it sees: a launcher may give each process one), else the CPU."""
    import torch

    if cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1))


def _same_device(a: Any, b: Any) -> bool:
    # accelerate names a lone GPU "cuda", where the weights report "cuda:0": the same device
    import torch

    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def eight_bit_adam(use: bool | None) -> Any:
    """bitsandbytes, where 8-bit AdamW is to train: `use` True (required) or None (auto: where CUDA is and
    bitsandbytes loads); else None. Required but unable to run: InvalidParameter saying why. An installed
    bitsandbytes whose CUDA library does not load is warned about under auto."""
    import importlib.util

    import torch

    if use is False:
        return None
    if not torch.cuda.is_available():
        why = "there is no CUDA GPU"
    elif importlib.util.find_spec("bitsandbytes") is None:
        why = "bitsandbytes is not installed"
    else:
        try:
            import bitsandbytes

            return bitsandbytes
        except Exception as e:  # installed, but its CUDA library does not load here
            why = f"bitsandbytes did not load ({type(e).__name__}: {e})"
            if not use:
                warnings.warn(f"{why}; training with torch's AdamW.", stacklevel=2)
    if use:
        raise InvalidParameter(f"use_8bit_adam=True needs bitsandbytes and a CUDA GPU: {why}.", value=True,
                               fix="pip install bitsandbytes on a CUDA machine, or use_8bit_adam=None (auto).")
    return None


def load_base_pipeline(env: TrainEnv | Any, base: str, mixed_precision: str = "no"):
    """(pipeline, ModelRef) of the Stable Diffusion-layout model a LoRA trains on, found by `env` (a
    `TrainEnv`, or a `Lab`), in fp32 (frozen weights in half precision only on CUDA)."""
    import torch
    from diffusers import DiffusionPipeline

    from labkit.pipelines.loader import quiet_loading
    from labkit.training.env import as_train_env

    ref, folder = as_train_env(env).locate(base)
    check_base_index(base, ref, folder)  # a video or SDXL pipeline is refused before it loads
    dtype = torch.float32
    if torch.cuda.is_available() and mixed_precision in ("fp16", "bf16"):
        dtype = torch.float16 if mixed_precision == "fp16" else torch.bfloat16
    try:
        with quiet_loading():
            pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=dtype, use_safetensors=True,
                                                     local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:  # a component config or file is broken
        from labkit.errors import UnknownModel

        raise UnknownModel(f"Base model {base!r} could not be loaded from {folder}: {type(e).__name__}: {e}",
                           value=base, fix="check that it is a complete diffusers pipeline (re-save it with "
                                           "save_pretrained, or download it again).") from e
    for attr in ("unet", "text_encoder", "vae", "tokenizer"):
        if getattr(pipe, attr, None) is None:
            raise InvalidParameter(f"Base model {base!r} ({type(pipe).__name__}) has no {attr}.", value=base,
                                   fix="train LoRA on a Stable Diffusion-layout model (UNet + CLIP text encoder).")
    pipe.set_progress_bar_config(disable=True)
    return pipe, ref


def base_settings(env: TrainEnv | Any, config: LoraTrainConfig) -> tuple[Any, Any, dict[str, Any]]:
    """The base pipeline of a LoRA-family recipe, its `ModelRef`, and the task's keyword arguments: the base's
    id, family, licence and revision, and how validation renders (guidance, steps and resolution: the config's,
    else the catalogue entry's defaults)."""
    pipe, ref = load_base_pipeline(env, config.base, config.mixed_precision)
    entry = ref.entry
    resolution = int(config.resolution or (entry.default_size[0] if entry else pipe.unet.config.sample_size
                                           * pipe.vae_scale_factor))
    guidance = config.guidance_scale if config.guidance_scale is not None else (
        entry.default_guidance if entry else 7.5)
    sampling = config.sampling_steps or (entry.default_steps if entry else 25)
    return pipe, ref, dict(base_id=entry.id if entry else config.base, base_family=ref.family,
                           base_licence=ref.licence, base_revision=ref.revision if ref.kind == "hub" else None,
                           guidance_scale=guidance, sampling_steps=sampling, resolution=resolution)


def train_lora(env: TrainEnv | Any, config: LoraTrainConfig, *, callbacks: Sequence[Any] = (),
               run_name: str | None = None) -> TrainResult:
    """Train a LoRA adapter (see the module docstring) in `env` (a `TrainEnv`, or a `Lab`); the result's
    `export_dir` holds it.

    With `config.eval_prompts` on the toy world, the finished adapter is also scored on held-out
    prompts with the new concept (`config.concept`) and logged to the run as `eval/…` metrics.
    """
    import torch

    from labkit.training.engine import train
    from labkit.training.env import as_train_env

    # 1. check before any heavy work
    config.validate()
    env = as_train_env(env)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    # 2. the base model, with LoRA layers
    pipe, ref, settings = base_settings(env, config)
    task = LoraTask(pipe, config, **settings)
    # 3. the engine: checkpoints, validation, MLflow, export and card
    result = train(task, config.train_config(task.guidance_scale, task.sampling_steps), env=env, callbacks=callbacks,
                   run_name=run_name or f"lora: {Path(config.data).name}",
                   tags={"labkit.task": "lora", "labkit.base_model": task.base_id})
    # 4. the toy world's adherence check on held-out prompts
    if result.status == "finished" and config.eval_prompts and ref.family == "toy" and result.run_id:
        rates = concept_adherence(task, n=config.eval_prompts, concept=config.concept)
        env.log_metrics(result.run_id, {f"eval/{k}": v for k, v in rates.items()})
        result.metrics.update({f"eval/{k}": v for k, v in rates.items()})
    return result


def concept_adherence(task: LoraTask, n: int = 20, concept: str | None = None, seed: int = 7) -> dict[str, float]:
    """Toy world: the adapter's rate of the right shape (and of all attributes) on `n` held-out prompts
    with the concept, against the base model on the same prompts and seeds."""
    from labkit.toyworld.adherence import judge, rates
    from labkit.toyworld.captions import prompts

    out: dict[str, float] = {}
    shapes = (concept,) if concept else None
    ps = prompts("heldout", n=n, seed=seed, n_objects=1, **({"shapes": shapes} if shapes else {}))
    seeds = list(range(1000, 1000 + n))
    for which, on in (("adapter", True), ("base", False)):
        task.set_enabled(on)
        rated = rates(judge(task.render(ps, seeds), ps), ("shape", "all_correct"))
        out.update({f"{which}_{k}": v for k, v in rated.items()})
    task.set_enabled(True)
    return out


__all__ = ["TEXT_ENCODER_TARGETS", "UNET_TARGETS", "LoraTask", "LoraTrainConfig", "base_settings", "check_dataset",
           "concept_adherence", "eight_bit_adam", "load_base_pipeline", "open_image", "toy_scores", "train_lora",
           "training_device"]
