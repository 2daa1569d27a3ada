"""The DreamBooth recipe: teach the base model one subject from a few images, with prior preservation.

    result = train_dreambooth(lab, DreamBoothConfig(data="ring/", token="sks", output_dir="db"))

DreamBooth-LoRA on the LoRA recipe's engine (`LoraTask`): the subject's images, each captioned with the
identifier (`metadata.jsonl` text that contains `token`, or `instance_prompt` for all), train LoRA layers;
with prior preservation, class images — drawn by the base model itself from the class prompts before the first
step, with recorded seeds, cached in `output_dir/class_images/` and reused on resume — are mixed into every
micro-batch, and their loss (× `prior_loss_weight`) keeps the class word meaning what it meant (against
"language drift"). Class prompts are `class_prompt`, or each instance caption with the identifier taken out
("a small yellow sks circle on the left" → "a small yellow circle on the left").

The identifier should be rare for the base's tokenizer: `identifier_report` says when it splits into several
pieces or is a common word, and which single-piece rare words the tokenizer has instead.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.locks import file_lock
from labkit.training.config import _is_int, _is_real
from labkit.training.lora import (
    LoraTask,
    LoraTrainConfig,
    base_settings,
    check_dataset,
    eight_bit_adam,
    open_image,
    training_device,
)

if TYPE_CHECKING:  # pragma: no cover
    from labkit.training.engine import TrainResult
    from labkit.training.env import TrainEnv
    from labkit.training.task import StepContext

#: Where the class images and their manifest go inside `output_dir`.
CLASS_DIR = "class_images"
#: How long a process waits for another drawing the class images (a job of several processes): hours on a CPU.
CLASS_LOCK_TIMEOUT_S = 6 * 3600.0
MANIFEST = "manifest.json"
#: Words too common to name a subject: they already mean something to every text encoder.
COMMON_WORDS = frozenset("""
a an the of in on at to and or with for from by as is are be this that it one two three all any
some not but can has was his her you she they
man woman person people dog cat car house tree bird flower face photo picture image style art
red green blue yellow white black big small large new old good best little
""".split())


def identifier_report(tokenizer: Any, token: str) -> dict[str, Any]:
    """How `tokenizer` reads the identifier `token`: its pieces, a warning when it is not rare (several pieces,
    or a common word), and up to five rarer single-piece words of the vocabulary to use instead."""
    pieces = tokenizer.tokenize(token)
    problem = None
    if len(pieces) > 1:
        problem = f"{token!r} splits into {len(pieces)} pieces {pieces} for this tokenizer"
    elif token.lower() in COMMON_WORDS:
        problem = f"{token!r} is a common word: it already means something to the text encoder"
    suggestions: list[str] = []
    if problem:
        vocab = tokenizer.get_vocab()
        words = sorted(k[:-4] for k in vocab if k.endswith("</w>") and re.fullmatch(r"[a-z]{3,4}", k[:-4])
                       and k[:-4] not in COMMON_WORDS)
        suggestions = [w for w in words if not any(c in "aeiou" for c in w[1:2])][:5] or words[:5]
    return {"token": token, "pieces": pieces, "warning": problem, "suggestions": suggestions}


@dataclass(kw_only=True)
class DreamBoothConfig(LoraTrainConfig):
    """The DreamBooth recipe's settings: `LoraTrainConfig` (the subject's folder is `data`) plus its own.

    Attributes:
        token: the identifier that names the subject in captions ("sks").
        instance_prompt: one caption for every subject image (None: each image's `metadata.jsonl` text, which
            must contain `token`).
        class_prompt: the prompt class images are drawn from, or several taken in turn (None: each instance caption
            without `token`). Several prompts that cover what the class word means — every colour, size and place
            of the class, say — keep more of that meaning than one.
        prior_preservation: mix class images into training (the recipe's point; off only to measure drift).
        num_class_images: how many class images to draw (and cache) with the base model.
        prior_loss_weight: the class images' share of the loss.
        class_seed: seeds class image i with `class_seed * 100000 + i`.
        full: fine-tune every UNet weight (and the text encoder's, with `train_text_encoder`) instead of LoRA
            layers, when the machine's memory allows it (`check_full_memory`); the export is then a whole
            diffusers pipeline folder. Full fine-tuning wants a far lower learning rate (5e-6 for SD 1.5).
    """

    output_dir: str | Path = "dreambooth"
    steps: int = 400
    batch_size: int = 4
    learning_rate: float = 5e-4
    token: str = "sks"
    instance_prompt: str | None = None
    class_prompt: str | Sequence[str] | None = None
    prior_preservation: bool = True
    num_class_images: int = 50
    prior_loss_weight: float = 1.0
    class_seed: int = 0
    full: bool = False

    def validate(self) -> None:
        """The LoRA recipe's checks, then the identifier, the prompts and the class images' settings."""
        super().validate()

        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"DreamBoothConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        if not isinstance(self.token, str) or not re.fullmatch(r"[A-Za-z0-9]+", self.token or ""):
            raise bad("token", 'use one rare word of letters or digits, e.g. "sks".')
        if self.instance_prompt is not None and (not isinstance(self.instance_prompt, str)
                                                 or not self.instance_prompt.strip()):
            raise bad("instance_prompt", "give a prompt, or None.")
        cp = self.class_prompt
        prompts = [cp] if isinstance(cp, str) else list(cp) if isinstance(cp, Sequence) else [None]
        if cp is not None and (not prompts or not all(isinstance(p, str) and p.strip() for p in prompts)):
            raise bad("class_prompt", "give a prompt, a non-empty list of prompts, or None.")
        if cp is not None and any(self.token in re.findall(r"[A-Za-z0-9]+", p) for p in prompts):
            raise bad("class_prompt", f"class prompts describe the class, not the subject: leave {self.token!r} out.")
        if self.instance_prompt is not None and self.token not in self.instance_prompt.split():
            raise bad("instance_prompt", f"name the subject by its identifier, e.g. 'a {self.token} dog'.")
        if not _is_int(self.num_class_images) or not 1 <= self.num_class_images <= 10_000:
            raise bad("num_class_images", "use 1 to 10000 (100–200 is usual; 50 for the toy world).")
        if not _is_real(self.prior_loss_weight) or not 0 < self.prior_loss_weight <= 10:
            raise bad("prior_loss_weight", "use a weight in (0, 10]; 1.0 is DreamBooth's.")
        if not _is_int(self.class_seed) or self.class_seed < 0:
            raise bad("class_seed", "use a whole number >= 0.")
        if not isinstance(self.prior_preservation, bool):  # "no" is truthy: it would switch preservation on
            raise bad("prior_preservation", "use True (mix in class images) or False (only to measure drift).")
        if not isinstance(self.full, bool):
            raise bad("full", "use True (full fine-tuning) or False (DreamBooth-LoRA).")
        if self.full and self.kohya:
            raise bad("kohya", "a full fine-tune exports a diffusers pipeline folder, not a LoRA: drop kohya.")
        self.instance_captions()  # every caption names the subject

    def train_config(self, guidance: float, sampling: int):
        """The LoRA recipe's engine config; validation on without prompts shows the first subject caption and the
        first class prompt (each beside the base, on the same seeds)."""
        tc = super().train_config(guidance, sampling)
        if tc.validate_every and not self.validation_prompts:  # not the LoRA recipe's first caption alone
            captions = self.instance_captions()
            tc = tc.replace(validation_prompts=tuple(dict.fromkeys((captions[0], self.class_prompts(captions)[0]))))
        return tc

    def instance_captions(self) -> list[str]:
        """The caption of each subject image: `instance_prompt`, or its metadata text (which must name `token`)."""
        records = check_dataset(self.data)
        if self.instance_prompt is not None:
            return [self.instance_prompt] * len(records)
        missing = [r["file_name"] for r in records if self.token not in re.findall(r"[A-Za-z0-9]+", r["text"])]
        if missing:
            raise InvalidParameter(
                f"{len(missing)} caption(s) in {Path(self.data) / 'metadata.jsonl'} do not name the subject "
                f"{self.token!r} (first: {missing[0]}).", value=missing[:5],
                fix=f"put {self.token!r} in every caption, or give instance_prompt (--instance-prompt) for all.")
        return [str(r["text"]) for r in records]

    def class_prompts(self, captions: Sequence[str]) -> list[str]:
        """The prompts class images are drawn from, in turn: `class_prompt`, or the captions without `token`."""
        if isinstance(self.class_prompt, str):
            return [self.class_prompt]
        if self.class_prompt is not None:
            return list(dict.fromkeys(self.class_prompt))
        out = [re.sub(r"\s+", " ", re.sub(rf"\b{re.escape(self.token)}\b", "", c)).strip() for c in captions]
        return list(dict.fromkeys(out))


class DreamBoothTask(LoraTask):
    """LoRA on the subject's images, each micro-batch also holding as many class images (prior preservation)."""

    name = "dreambooth"

    def __init__(self, pipe: Any, config: DreamBoothConfig, *, compliance: Any = None, **kwargs: Any):
        """`compliance`: the mode the licence chain must pass before class images are drawn (the engine checks
        it again before the first step); None skips the early check."""
        super().__init__(pipe, config, **kwargs)
        self.class_records: list[dict[str, Any]] = []
        self.class_reused = 0
        if compliance is not None:
            from labkit.compliance import enforce

            enforce(self.licence_chain(), compliance)
        self.identifier = identifier_report(pipe.tokenizer, config.token)
        if self.identifier["warning"]:
            warnings.warn(f"{self.identifier['warning']}; rarer single-piece words: "
                          f"{', '.join(self.identifier['suggestions']) or 'none in this vocabulary'}.", stacklevel=2)
        if config.prior_preservation:
            self.class_records = self._class_images()
            from PIL import Image

            images = [Image.open(Path(config.output_dir) / CLASS_DIR / r["file"]) for r in self.class_records]
            self.class_latents, self.class_ids, self.class_embeddings = self.encode(
                images, [r["prompt"] for r in self.class_records])

    def _encode_data(self) -> None:
        cfg: DreamBoothConfig = self.config  # type: ignore[assignment]
        records = check_dataset(cfg.data)
        images = [open_image(Path(cfg.data) / r["file_name"]) for r in records]
        self.captions = cfg.instance_captions()
        self.latents, self.ids, self.embeddings = self.encode(images, self.captions)

    def _class_images(self) -> list[dict[str, Any]]:
        """The class images, drawn by the base model (adapter off) from the class prompts with recorded seeds, or
        read back from `class_images/` when its manifest matches (what a resumed run reuses)."""
        cfg: DreamBoothConfig = self.config  # type: ignore[assignment]
        folder = Path(cfg.output_dir) / CLASS_DIR
        prompts = cfg.class_prompts(self.captions)
        want = {"base": self.base_id, "revision": self.base_revision, "steps": self.sampling_steps,
                "guidance": self.guidance_scale, "resolution": self.resolution}
        planned = [{"file": f"{i:05d}.png", "prompt": prompts[i % len(prompts)], "seed": cfg.class_seed * 100_000 + i}
                   for i in range(cfg.num_class_images)]
        folder.mkdir(parents=True, exist_ok=True)
        # One process draws at a time: in a job of several (--processes), the first draws and the others read
        # back what it drew (the manifest matches), as a resumed run does.
        with file_lock(folder, timeout=CLASS_LOCK_TIMEOUT_S):
            manifest = folder / MANIFEST
            done: dict[str, dict[str, Any]] = {}
            if manifest.is_file():
                try:
                    old = json.loads(manifest.read_text())
                except ValueError:
                    old = {}
                if {k: old.get(k) for k in want} == want:
                    done = {r["file"]: r for r in old.get("images", []) if (folder / r["file"]).is_file()}
            finished = {r["file"] for r in planned if done.get(r["file"]) == r}
            todo = [r for r in planned if r["file"] not in finished]
            self.set_enabled(False)
            try:
                for i in range(0, len(todo), 8):
                    chunk = todo[i:i + 8]
                    for r, im in zip(chunk, self.render([r["prompt"] for r in chunk], [r["seed"] for r in chunk]),
                                     strict=True):
                        im.save(folder / r["file"])
                    # written after each chunk, so a run stopped while drawing keeps what it drew
                    finished.update(r["file"] for r in chunk)
                    manifest.write_text(json.dumps({**want, "images": [r for r in planned if r["file"] in finished]},
                                                   indent=1) + "\n")
            finally:
                self.set_enabled(True)
        self.class_reused = len(planned) - len(todo)
        return planned

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        """Micro-batch i: the LoRA recipe's instance items, plus as many class items (their own permutation)."""
        import numpy as np

        instance = super().batches(batch_size, start)
        if not self.class_records:
            yield from instance
            return
        n = len(self.class_records)
        seed = self.config.seed + 7919
        for i, idx in enumerate(instance, start=start):
            cls = []
            for j in range(i * batch_size, (i + 1) * batch_size):
                epoch, pos = divmod(j, n)
                cls.append(int(np.random.default_rng([seed, epoch]).permutation(n)[pos]))
            yield idx, cls

    def loss(self, batch, ctx: StepContext):
        if not self.class_records:
            return super().loss(batch, ctx)
        idx, cls = batch
        loss = super().loss(idx, ctx)
        prior = self.denoise_loss(self.class_latents[cls], self.class_ids[cls],
                                  None if self.class_embeddings is None else self.class_embeddings[cls], ctx)
        return loss + self.config.prior_loss_weight * prior

    def data_card(self):
        card = super().data_card()
        cfg: DreamBoothConfig = self.config  # type: ignore[assignment]
        card["description"] = f"{len(self.captions)} images of the subject {cfg.token!r}" + (
            f", and {len(self.class_records)} class images drawn by {self.base_id}" if self.class_records else "")
        return card

    def card_notes(self) -> str:
        cfg: DreamBoothConfig = self.config  # type: ignore[assignment]
        ident = self.identifier
        prior = (f"on: {len(self.class_records)} class images drawn by the base model `{self.base_id}` (licence "
                 f"{self.base_licence or 'unknown'}: the class images are its outputs) from "
                 f"{len(cfg.class_prompts(self.captions))} prompt(s), seeds {cfg.class_seed * 100_000} to "
                 f"{cfg.class_seed * 100_000 + len(self.class_records) - 1}, {self.sampling_steps} steps, guidance "
                 f"{self.guidance_scale:g}; listed in `{CLASS_DIR}/{MANIFEST}` of the training folder; prior loss "
                 f"weight {cfg.prior_loss_weight:g}") if self.class_records else "off"
        return "\n".join([
            "## DreamBooth", "",
            f"- identifier: `{cfg.token}` (tokenized as {ident['pieces']})"
            + (f" — {ident['warning']}" if ident["warning"] else ""),
            "- instance captions: " + (f"`{cfg.instance_prompt}` for every image" if cfg.instance_prompt
                                       else "the metadata texts"),
            f"- prior preservation: {prior}", "", super().card_notes()])


class DreamBoothFullTask(DreamBoothTask):
    """Full DreamBooth: every UNet weight trains (and the text encoder's, with `train_text_encoder`); checkpoints
    hold the whole trained models and their optimizer state; the export is a diffusers pipeline folder
    (`save_pretrained`) that loads as a model. There is no adapter to switch off, so what the base draws —
    class images and the validation grid's base row — is drawn before the first step."""

    name = "dreambooth-full"

    def __init__(self, pipe: Any, config: DreamBoothConfig, **kwargs: Any):
        self.base_images: dict[tuple[str, int], Any] = {}
        super().__init__(pipe, config, **kwargs)
        if config.validate_every:
            seeds = list(config.validation_seeds)
            for p in config.train_config(self.guidance_scale, self.sampling_steps).validation_prompts:
                for s, im in zip(seeds, self.render([p] * len(seeds), seeds), strict=True):
                    self.base_images[(p, int(s))] = im

    def _add_trainable(self, unet: Any, te: Any) -> None:
        import torch

        trained = {"unet": unet, **({"text_encoder": te} if self.config.train_text_encoder else {})}
        for m in trained.values():
            m.requires_grad_(True)
        self.holder = torch.nn.ModuleDict(trained)

    def models(self):
        return dict(self.holder)

    def param_groups(self, learning_rate: float):
        groups = [{"params": list(self.holder["unet"].parameters())}]
        if "text_encoder" in self.holder:
            groups.append({"params": list(self.holder["text_encoder"].parameters()),
                           "lr": learning_rate * self.config.text_encoder_lr_scale})
        return groups

    def set_enabled(self, enabled: bool) -> None:
        """Nothing to switch: the base's own pictures are drawn before the first step."""

    def validation_rows(self, prompt: str, seeds: Sequence[int]) -> list[tuple[str, list[Any]]]:
        """The fine-tuned weights' pictures, then the base's drawn before the first step (when it drew them)."""
        rows = [("tuned", self.render([prompt] * len(seeds), seeds))]
        base = [self.base_images.get((prompt, int(s))) for s in seeds]
        return rows + ([("base", base)] if all(im is not None for im in base) else [])

    def on_checkpoint(self, folder: Path, step: int) -> None:
        """The checkpoint's model state is the fine-tuned weights themselves: nothing more to write."""

    def export(self, folder: Path) -> None:
        """The whole pipeline, fine-tuned, as a diffusers folder; its `model_index.json` keeps the base's
        family and sampling defaults and names the base and the recipe."""
        cfg: DreamBoothConfig = self.config  # type: ignore[assignment]
        self.pipe.save_pretrained(str(folder), safe_serialization=True)
        index_path = Path(folder) / "model_index.json"
        index = json.loads(index_path.read_text())
        index["labkit"] = {"family": self.base_family, "guidance_scale": self.guidance_scale,
                           "sampling_steps": self.sampling_steps, "trained": True, "base_model": self.base_id,
                           "base_licence": self.base_licence or "", "recipe": "dreambooth-full", "token": cfg.token}
        index_path.write_text(json.dumps(index, indent=2) + "\n")

    def card_notes(self) -> str:
        cfg: DreamBoothConfig = self.config  # type: ignore[assignment]
        notes = super().card_notes()
        head, _, _ = notes.partition("## Base model")
        return "\n".join([
            head.rstrip(), "", "## Base model", "",
            f"- base model: `{self.base_id}`" + (f" @ `{self.base_revision}`" if self.base_revision else ""),
            f"- base family: {self.base_family}; base licence: {self.base_licence or 'unknown'} (a full fine-tune is "
            "a derivative of the base: its licence applies)",
            "- full fine-tuning: every UNet weight" + (" and the text encoder's" if cfg.train_text_encoder else ""),
            "", "## How to load", "",
            "A diffusers pipeline folder:", "", "```python",
            'lab.generate("…", model="<this folder>")',
            "# plain diffusers: one dtype for every part (float16 on a GPU)",
            'DiffusionPipeline.from_pretrained("<this folder>", dtype=torch.float32)', "```"])


def full_memory_gb(config: DreamBoothConfig, pipe: Any) -> float:
    """What full fine-tuning keeps in memory, in GiB: each trained weight in float32 with its gradient and AdamW's
    two moments (16 bytes; 10 with 8-bit AdamW, which is the default where it runs; 8 more with several processes),
    every frozen weight (its own size), and an allowance of a quarter more for activations (gradient checkpointing
    lowers them)."""
    from labkit.training.distributed import world

    trained = [pipe.unet] + ([pipe.text_encoder] if config.train_text_encoder else [])
    frozen = [m for m in (pipe.vae, pipe.text_encoder) if m is not None and m not in trained]
    per = 10 if eight_bit_adam(config.use_8bit_adam) is not None else 16  # as LoraTask.optimizer picks it
    if world()[1] > 1:
        per += 8  # several processes: DDP's gradient buckets and the all-reduce's flat copy, fp32 each
    n = sum(p.numel() for m in trained for p in m.parameters())
    rest = sum(p.numel() * p.element_size() for m in frozen for p in m.parameters())
    return 1.25 * (n * per + rest) / 2**30


def check_full_memory(config: DreamBoothConfig, pipe: Any, hardware: Any = None) -> None:
    """Refuse full fine-tuning where it would not fit: in `USABLE_VRAM` of the GPU, or half the free RAM on a CPU."""
    if not config.full:
        return
    import torch

    from labkit.hardware import USABLE_VRAM
    from labkit.probes import free_ram_gb

    need = full_memory_gb(config, pipe)
    vram = hardware.vram_total_gb if hardware is not None and hardware.vram_total_gb else None
    device = training_device(config.cpu)
    if device.type == "cuda":
        # no profile given: the card this process trains on (read without starting a CUDA context on GPU 0)
        vram = vram or torch.cuda.get_device_properties(device).total_memory / 2**30
        have, where = USABLE_VRAM * vram, f"{vram:.0f} GB GPU"
    else:
        free = hardware.ram_free_gb if hardware is not None and hardware.ram_free_gb else free_ram_gb()
        have, where = 0.5 * free, f"{free:.1f} GB of free memory (CPU training)"
    if need > have:
        raise InvalidParameter(
            f"Full fine-tuning of {config.base!r} needs about {need:.1f} GB; this machine has a {where}.",
            value={"full": True, "base": config.base},
            fix="drop --full to train DreamBooth-LoRA (a few hundred MB), or train on a GPU with more memory"
                + ("" if config.use_8bit_adam else " (8-bit AdamW cuts the need: use_8bit_adam=True)") + ".")


def check_class_memory(config: DreamBoothConfig, pipe: Any, resolution: int, hardware: Any = None) -> None:
    """Refuse `num_class_images` whose cached latents and text embeddings would take more than half the free RAM
    (the class images are encoded once and kept in memory for the whole run)."""
    if not config.prior_preservation:
        return
    from labkit.probes import free_ram_gb

    free = hardware.ram_free_gb if hardware is not None and hardware.ram_free_gb else free_ram_gb()
    side = resolution // pipe.vae_scale_factor
    te = pipe.text_encoder.config
    per = 4 * side * side * 4 + (0 if config.train_text_encoder else
                                 pipe.tokenizer.model_max_length * te.hidden_size * 4)
    need_gb = config.num_class_images * per / 2**30
    if free and need_gb > 0.5 * free:
        fits = int(0.5 * free * 2**30 // per)
        raise InvalidParameter(
            f"num_class_images={config.num_class_images} would keep {need_gb:.1f} GB of class latents and embeddings "
            f"in memory; {free:.1f} GB is free.", value=config.num_class_images,
            fix=f"use at most {fits} class images (--num-class-images), a lower --resolution, or a machine with "
                "more memory.")


def train_dreambooth(env: TrainEnv | Any, config: DreamBoothConfig, *, callbacks: Sequence[Any] = (),
                     run_name: str | None = None) -> TrainResult:
    """Train a DreamBooth-LoRA adapter (see the module docstring) in `env` (a `TrainEnv`, or a `Lab`); the
    result's `export_dir` holds it. Class images are drawn before the first step (or reused)."""
    import torch

    from labkit.training.engine import train
    from labkit.training.env import as_train_env

    config.validate()
    env = as_train_env(env)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    pipe, _, settings = base_settings(env, config)
    check_class_memory(config, pipe, settings["resolution"], env.hardware)
    check_full_memory(config, pipe, env.hardware)
    task = (DreamBoothFullTask if config.full else DreamBoothTask)(pipe, config, compliance=env.compliance,
                                                                   **settings)
    tc = config.train_config(task.guidance_scale, task.sampling_steps)
    tc.extra["dreambooth"] = {"token": config.token, "pieces": task.identifier["pieces"],
                              "class_images": len(task.class_records), "class_images_reused": task.class_reused,
                              "prior_preservation": config.prior_preservation, "full": config.full}
    return train(task, tc, env=env, callbacks=callbacks, run_name=run_name or f"dreambooth: {Path(config.data).name}",
                 tags={"labkit.task": task.name, "labkit.base_model": task.base_id})


__all__ = ["CLASS_DIR", "COMMON_WORDS", "DreamBoothConfig", "DreamBoothFullTask", "DreamBoothTask",
           "check_class_memory", "check_full_memory", "full_memory_gb", "identifier_report", "train_dreambooth"]
