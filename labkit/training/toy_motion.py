"""The AnimateDiff toy-motion recipe: a motion adapter on the toy text-to-image model.

    # `labkit train toy-motion --arch animatediff`:
    path = train_toy_motion(env, ToyMotionConfig(output_dir="toy-motion"))   # env: a TrainEnv or a Lab

The model is diffusers' AnimateDiff, unchanged: the toy model's `UNet2DConditionModel` becomes a
`UNetMotionModel` (`UNetMotionModel.from_unet2d(unet, MotionAdapter(...))`) whose temporal transformers
(zero-initialised output projections, so an untrained adapter leaves every frame as the base model draws
it) learn v-prediction on moving toy scenes (`toyworld.motion`, train split only). The base's own 2D
weights fine-tune with them at a fifth of the learning rate (`spatial_lr_scale`; 0 freezes them, as
AnimateDiff proper does): temporal attention only mixes a latent pixel with the same pixel in other
frames, so moving an object takes spatial layers that act on what it says, and with the 2D weights frozen
two runs of 1000 steps learnt no motion at all. (With them the shipped `toyworld-animatediff` gets 93% of held-out
directions right, but keeps the object's shape in every frame in only about a tenth of its clips, far
short of issue 10's thresholds; its notes hold the measurements.) The export is an
`AnimateDiffPipeline` folder in diffusers layout — `unet/` a `UNet2DConditionModel` (the base's class
and config, the fine-tuned 2D weights), `motion_adapter/` the trained adapter (a couple of MB, stored in
float16), and `AnimateDiffPipeline.from_pretrained` joins them — with
``"labkit": {"family": "toy", "kind": "motion"}`` in `model_index.json`, so labkit's ordinary loader
loads it.

Image-to-video: first-frame conditioning by clean-latent replacement
---------------------------------------------------------------------
With probability `first_frame_prob` a training clip has its frame 0 replaced, in the UNet's input,
by the clean latent of that frame, and frame 0 is left out of the loss: the motion modules learn to
read a given first frame through temporal attention and continue it. At sampling time
`first_frame_kwargs` does the same with a plain `AnimateDiffPipeline` call: the initial latents carry
the image's latent in frame 0, and a step-end callback puts it back after every scheduler step, so
the decoded frame 0 is the given image (through the VAE) and the other frames are denoised knowing
it. No extra weights, no custom pipeline class. Text-to-video uses the same step: the export names the
base as its keyframe model (`keyframe`), which draws the still of the caption's start ("a small blue
square at the bottom" for "a blue square moving up", `toyworld.motion.still_prompt`), and the motion
model animates it — the recipe trains on given first frames only (`first_frame_prob` 1), since a
model that learns the motion from a given layout got 93% of held-out directions right from a drawn
keyframe against 2% when it drew the layout from noise as well (same checkpoint, 60 prompts).

Chosen over the alternatives diffusers has: `AnimateDiffVideoToVideoPipeline` (re-noises a static clip,
so motion must fight the input), SparseCtrl (a ControlNet copy of the encoder, several MB more than the
adapter) and PIA (a 9-channel conv_in: a second input layout and no text-to-video from the same weights).

A base model must keep the standard 3×3 `conv_in`: diffusers' `UNetMotionModel` hard-codes it, so a
base trained with `conv_in_kernel=7` cannot be animated (`build_motion_unet` says so).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.files import card_licence
from labkit.training.config import TrainConfig, _is_int, _is_real, check_flags, old_names
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
    validation_prompts,
)
from labkit.training.task import StepContext, TrainTask, Validation

if TYPE_CHECKING:  # pragma: no cover
    import torch
#: Block types `UNetMotionModel.from_unet2d` knows how to convert.
_CONVERTIBLE = {"DownBlock2D", "CrossAttnDownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"}


@old_names(lr="learning_rate")
@dataclass(kw_only=True)
class ToyMotionConfig(TrainConfig):
    """The toy-motion recipe's settings: `TrainConfig` (here with the defaults below: AdamW, cosine schedule)
    plus the recipe's own fields. `lr=` is accepted as the old name of `learning_rate`.

    Attributes:
        output_dir: checkpoints, validation strips and the export (`model/`).
        base: the toy text-to-image model to animate (catalogue id, folder or repo id).
        seed, data_seed: initialise the adapter and the step noise; choose the clips.
        steps, batch_size (clips per step), frames (per training clip), learning_rate, warmup_steps,
            min_lr_ratio: the optimisation.
        first_frame_prob: share of clips trained with their clean first frame given (image-to-video). 1 by
            default: with `keyframe`, text-to-video animates a drawn first frame too, so every clip the model
            renders has one (half the clips without it: held-out directions 95% against 98%, GPU sweep at
            1000 steps, 60 prompts; issue 10's notes).
        caption_dropout: share of captions replaced by "" (classifier-free guidance).
        min_snr_gamma: Min-SNR-γ weighting as in the base recipe (None: off). Off by default: it gives the
            high-noise steps, where the frames' common layout and the motion are decided, almost no weight,
            and a run with γ=5 drew several flickering objects per clip after 1000 steps (as did one
            without it while the 2D weights stayed frozen).
        timestep_shift, terminal_share: where training timesteps fall (`sample_timesteps`): shifted toward
            noise by factor s (1: uniform), and a share put on the last step, where the toy scheduler's
            signal is exactly zero. The motion of a sampled clip is decided there: the first of the 8
            sampling steps sees no signal at all, and a one-step x0 at t=999 from the clean first frame got
            17% of held-out directions right, against 92% at t=900 (400 steps, s=3, first frame always
            given). On by default (s=3, share 0.3): in a side-by-side sweep of the recipe (1000 steps, first
            frame given, 60 held-out prompts) they took directions from 27% (s=1, no terminal share) to 98%.
        shared_noise: share ρ of every frame's noise that is common to the clip, in training and sampling
            (exported as ``"shared_noise"`` in the model's `labkit` metadata; see
            `labkit.pipelines.animatediff.video_noise`). With independent noise the frames of a partly
            trained adapter settle on different layouts; sharing 90% of it, at sampling alone, took a
            checkpoint's smooth clips from 0 to 75% (12 held-out prompts).
        spatial_lr_scale: the base UNet's own (2D) weights train too, at this fraction of `learning_rate` (0: frozen,
            as in AnimateDiff proper; see the module docstring for why they train). The export's `unet/`
            then holds the fine-tuned 2D weights.
        text_encoder_lr_scale: the base's text encoder trains too, at this fraction of `learning_rate` (0: frozen;
            the export then holds the fine-tuned encoder). The base never saw a motion caption, and frozen it hardly
            tells "up" from "down": its outputs for "a large red square moving up" and "… moving down" have
            cosine 0.98, against 0.88 for "red" vs "blue" and 0.25 for "left" vs "right".
        word_init: {new word: known word}: the text encoder's input embedding of each new word starts as the
            known word's (`init_word_embeddings`). "up" and "down" were never in a toy base caption: their
            embeddings are still at their random start (norms 0.15 and 0.17, against 0.26–0.29 for left,
            right, top and bottom), which is why the frozen encoder hardly tells them apart. Started from
            "top" and "bottom", one run took held-out "up" clips from 0 of 5 to 2 of 5 in 150 more steps.
        keyframe: the export names the base as its keyframe model (``"keyframe_model"`` in its `labkit`
            metadata): text-to-video then draws frame 0 with the base from the caption's still prompt and
            animates it (`labkit.pipelines.animatediff`), the way the model trains when `first_frame_prob`
            is 1. False: text-to-video denoises every frame from noise.
        object_weight: extra loss weight on latent pixels an object covers in any frame of the clip
            (`path_mask`: the whole path, in every frame).
        motion_heads, max_seq_length, mid_block: the adapter's temporal attention heads, longest clip
            it can take (its positional table) and whether the UNet's middle block gets a motion module.
        guidance_scale, sampling_steps: how validation and the export's recommended call sample.
        checkpoint_every, validate_every, log_every: as in `TrainConfig`.
        eval_prompts: held-out prompts judged at each validation (0: none).
        adapter_dtype: storage dtype of the exported adapter ("float16" keeps it about 1.3 MB).
        resume: None, or "latest" to continue in the same output_dir.
        threads: torch CPU threads (None: torch's default).
    """

    # TrainConfig's fields, with this recipe's defaults
    output_dir: str | Path = "toy-motion"
    steps: int = 1000
    batch_size: int = 2
    learning_rate: float = 5e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    validate_every: int = 500
    log_every: int = 25
    licence: str | None = LICENCE
    # the recipe's own
    base: str = "toyworld"
    data_seed: int = 0
    frames: int = 16
    first_frame_prob: float = 1.0
    caption_dropout: float = 0.1
    min_snr_gamma: float | None = None
    timestep_shift: float = 3.0
    terminal_share: float = 0.3
    shared_noise: float = 0.8
    spatial_lr_scale: float = 0.2
    text_encoder_lr_scale: float = 0.0
    word_init: dict[str, str] = field(default_factory=lambda: dict(MOTION_WORD_INIT))
    keyframe: bool = True
    object_weight: float = 4.0
    motion_heads: int = 4
    max_seq_length: int = 32
    mid_block: bool = True
    guidance_scale: float = 4.0
    sampling_steps: int = 8  # the catalogue entry's default_steps: validation samples as `labkit video` renders
    eval_prompts: int = 12
    adapter_dtype: str = "float16"
    threads: int | None = None
    fps: int = 8
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """`check()`, then the engine's checks (numbers, output folder, resume point) on `motion_train_config`."""
        self.check()
        motion_train_config(self).validate()

    def check(self) -> None:
        """Raise `InvalidParameter` for the first value the recipe cannot use (before any heavy work)."""
        from labkit.toyworld.motion import MIN_FRAMES

        def bad(name: str, fix: str) -> InvalidParameter:
            return InvalidParameter(f"ToyMotionConfig.{name}={getattr(self, name)!r} is not valid.",
                                    value=getattr(self, name), fix=fix)

        # whole numbers first: the range checks below compare them, and "16" < 4 is a TypeError
        for name, low in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("data_seed", 0), ("frames", 1),
                          ("max_seq_length", 1), ("sampling_steps", 1), ("eval_prompts", 0),
                          ("fps", 1)):
            if not _is_int(getattr(self, name)) or getattr(self, name) < low:
                raise bad(name, f"use a whole number >= {low}.")
        for name in ("first_frame_prob", "caption_dropout", "timestep_shift", "terminal_share", "shared_noise",
                     "spatial_lr_scale", "text_encoder_lr_scale", "object_weight", "guidance_scale"):
            if not _is_real(getattr(self, name)):
                raise bad(name, "use a number.")
        if not MIN_FRAMES <= self.frames <= self.max_seq_length:
            raise bad("frames", f"use {MIN_FRAMES}..max_seq_length ({self.max_seq_length}).")
        for name in ("first_frame_prob", "caption_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "use a fraction in [0, 1].")
        if not self.timestep_shift > 0:
            raise bad("timestep_shift", "use a factor > 0 (1: uniform timesteps, > 1: more of them at high noise).")
        if not 0.0 <= self.terminal_share <= 1.0:
            raise bad("terminal_share", "use a fraction in [0, 1].")
        if not 0.0 <= self.shared_noise < 1.0:
            raise bad("shared_noise", "use a share in [0, 1): 1 would leave the frames no noise of their own.")
        if not 0.0 <= self.spatial_lr_scale <= 1.0:
            raise bad("spatial_lr_scale", "use a fraction of lr in [0, 1] (0: the base UNet stays frozen).")
        if not 0.0 <= self.text_encoder_lr_scale <= 1.0:
            raise bad("text_encoder_lr_scale", "use a fraction of lr in [0, 1] (0: the text encoder stays frozen).")
        for name in ("object_weight", "guidance_scale"):
            if getattr(self, name) < 0:
                raise bad(name, "use 0 or a positive number.")
        if self.min_snr_gamma is not None and (not _is_real(self.min_snr_gamma) or not self.min_snr_gamma > 0):
            raise bad("min_snr_gamma", "use a positive γ (the weight is min(SNR, γ) / (SNR + 1)), or None (off).")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise bad("threads", "use a whole number >= 1, or None for torch's default.")
        check_flags(self, bad, ("keyframe", "mid_block"))
        if self.adapter_dtype not in ("float32", "float16"):
            raise bad("adapter_dtype", "use 'float32' or 'float16'.")
        if self.resume not in (None, "latest"):
            raise bad("resume", "use None (fresh) or 'latest'.")
        if not _is_int(self.motion_heads) or self.motion_heads < 1:
            raise bad("motion_heads", "use an integer >= 1 that divides every block's channels.")

# --- the model -----------------------------------------------------------------------------------


def adapter_config(unet_config: Any, heads: int = 4, max_seq_length: int = 32, mid_block: bool = False
                   ) -> dict[str, Any]:
    """`MotionAdapter` kwargs that fit a `UNet2DConditionModel` config; `InvalidParameter` when the UNet
    cannot become a `UNetMotionModel` (non-3×3 conv_in/out, other block types, per-block layer counts)."""
    cfg = dict(unet_config)
    for key in ("conv_in_kernel", "conv_out_kernel"):
        if cfg.get(key, 3) != 3:
            raise InvalidParameter(
                f"The base UNet has {key}={cfg[key]}; diffusers' UNetMotionModel (AnimateDiff) only has a 3x3 "
                f"{key.removesuffix('_kernel')}, so its weights cannot be carried over.", value=cfg[key],
                fix="animate a base model trained with the default 3x3 kernels (ToyModelConfig unet "
                    "conv_in_kernel=3).")
    blocks = set(cfg["down_block_types"]) | set(cfg["up_block_types"])
    if not blocks <= _CONVERTIBLE:
        raise InvalidParameter(f"The base UNet has blocks {sorted(blocks - _CONVERTIBLE)} that AnimateDiff cannot "
                               "convert.", value=sorted(blocks), fix=f"use only {sorted(_CONVERTIBLE)}.")
    if not isinstance(cfg["layers_per_block"], int):
        raise InvalidParameter("The base UNet has per-block layer counts.", value=cfg["layers_per_block"],
                               fix="use one layers_per_block for every block.")
    channels = tuple(cfg["block_out_channels"])
    groups = int(cfg["norm_num_groups"])
    bad = [c for c in channels if c % heads or (c // heads) < 1]
    if bad:
        raise InvalidParameter(f"{heads} motion attention heads do not divide the block channels {bad}.",
                               value=heads, fix=f"use a head count that divides {list(channels)}.")
    # UNetMotionModel builds its motion modules with the UNet's own norm groups, so the adapter must too.
    return {"block_out_channels": channels, "motion_layers_per_block": int(cfg["layers_per_block"]),
            "motion_num_attention_heads": heads, "motion_norm_num_groups": groups,
            "motion_max_seq_length": int(max_seq_length), "use_motion_mid_block": bool(mid_block)}


def build_motion_unet(unet, config: ToyMotionConfig | None = None, seed: int = 0):
    """(motion_unet, adapter_kwargs): the base `unet` as a `UNetMotionModel` with a fresh adapter whose
    temporal output projections are zero (so it starts as the identity), its 2D weights frozen unless
    `config.spatial_lr_scale` > 0."""
    import torch
    from diffusers import MotionAdapter, UNetMotionModel

    config = config or ToyMotionConfig()
    kwargs = adapter_config(unet.config, config.motion_heads, config.max_seq_length, config.mid_block)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 11)
        adapter = MotionAdapter(**kwargs)
    for name, module in adapter.named_modules():
        if name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    motion = UNetMotionModel.from_unet2d(unet, adapter)
    motion.freeze_unet2d_params()
    if config.spatial_lr_scale > 0:
        motion.requires_grad_(True)
    return motion, kwargs


def motion_modules(motion_unet):
    """The trainable part of a `UNetMotionModel`, as one module sharing its parameters."""
    import torch

    parts = {"down": torch.nn.ModuleList([b.motion_modules for b in motion_unet.down_blocks]),
             "up": torch.nn.ModuleList([b.motion_modules for b in motion_unet.up_blocks])}
    mid = getattr(motion_unet.mid_block, "motion_modules", None)
    if mid is not None:
        parts["mid"] = mid
    return torch.nn.ModuleDict(parts)


def _spatial_modules(motion_unet):
    """The 2D (`UNet2DConditionModel`) layers of a `UNetMotionModel`, as one module: the largest submodules that
    hold no motion module's weight (none of them shares a tensor with `motion_modules`)."""
    import torch

    trained = motion_modules(motion_unet)
    motion = {id(t) for t in (*trained.parameters(), *trained.buffers())}
    parts = []

    def walk(module) -> None:
        for child in module.children():
            held = {id(t) for t in (*child.parameters(), *child.buffers())}
            if held and not held & motion:
                parts.append(child)
            elif held - motion:
                walk(child)

    walk(motion_unet)  # (a UNetMotionModel holds no tensor of its own, outside its layers)
    return torch.nn.ModuleList(parts)


def spatial_state(motion_unet) -> dict[str, Any]:
    """The 2D (`UNet2DConditionModel`) weights of a `UNetMotionModel`: every tensor but the motion modules
    (diffusers keeps the 2D names when it converts, so they load into the base's class as they are)."""
    return {k: v.detach().clone() for k, v in motion_unet.state_dict().items() if "motion_modules" not in k}


def extract_adapter(motion_unet, kwargs: dict[str, Any]):
    """A `MotionAdapter` holding a copy of `motion_unet`'s motion modules."""
    from diffusers import MotionAdapter

    adapter = MotionAdapter(**kwargs)
    state = {k: v.detach().clone() for k, v in motion_unet.state_dict().items() if "motion_modules" in k}
    adapter.load_state_dict(state, strict=True)
    return adapter


def make_motion_pipeline(components: dict[str, Any], motion_unet, kwargs: dict[str, Any]):
    """An `AnimateDiffPipeline` over the base components and `motion_unet` (sharing its weights)."""
    from diffusers import AnimateDiffPipeline

    pipe = AnimateDiffPipeline(vae=components["vae"], text_encoder=components["text_encoder"],
                               tokenizer=components["tokenizer"], unet=motion_unet,
                               motion_adapter=extract_adapter(motion_unet, kwargs), scheduler=components["scheduler"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_motion_pipeline(components: dict[str, Any], motion_unet, kwargs: dict[str, Any], folder: str | Path, *,
                         adapter_dtype: str = "float16", meta: dict[str, Any] | None = None,
                         card: str | None = None, tokenizer_files: Path | None = None) -> Path:
    """Write the motion model in diffusers layout: `unet/` a `UNet2DConditionModel` (the base's class and
    config) holding `motion_unet`'s 2D weights, `motion_adapter/` the adapter in `adapter_dtype`, and the base's
    VAE, text encoder, tokenizer and scheduler; `model_index.json` names `AnimateDiffPipeline` and carries
    ``"labkit": {"family": "toy", "kind": "motion", ...meta}``."""
    import torch
    from diffusers import AnimateDiffPipeline

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter = extract_adapter(motion_unet, kwargs).to(getattr(torch, adapter_dtype))
    pipe = AnimateDiffPipeline(vae=components["vae"], text_encoder=components["text_encoder"],
                               tokenizer=components["tokenizer"], unet=motion_unet, motion_adapter=adapter,
                               scheduler=components["scheduler"])
    # Store the 2D UNet in its own class, with the motion UNet's 2D weights (fine-tuned or not):
    # from_pretrained rebuilds the UNetMotionModel from it and the adapter, and no weight is written twice.
    unet2d = copy.deepcopy(components["unet"])
    unet2d.load_state_dict(spatial_state(motion_unet), strict=True)
    pipe.register_modules(unet=unet2d)
    pipe.save_pretrained(folder, safe_serialization=True)
    copy_tokenizer_files(tokenizer_files, folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["labkit"] = {"family": "toy", "kind": "motion", **(meta or {})}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


# --- sampling ------------------------------------------------------------------------------------


def encode_image(pipe, image, size: int | None = None):
    """The scaled VAE latent (posterior mean, as in training) of a PIL image: (1, C, h, w)."""
    from labkit.pipelines.animatediff import encode_image as _encode

    return _encode(pipe, image, size, size)


def first_frame_kwargs(pipe, image, *, frames: int, generator, height: int = 64, width: int = 64,
                       on_step: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """kwargs for an `AnimateDiffPipeline` call that start the clip from `image` (see the module docstring;
    the render path uses the same `labkit.pipelines.animatediff.first_frame_kwargs`)."""
    from labkit.pipelines.animatediff import first_frame_kwargs as _kwargs

    return _kwargs(pipe, image, frames=frames, generator=generator, height=height, width=width, on_step=on_step)


def animate(pipe, prompt: str, *, image=None, frames: int = 16, steps: int = 20, guidance: float = 4.0,
            seed: int = 0, negative_prompt: str = "", on_step: Callable[[int], bool] | None = None) -> list[Any]:
    """One clip (PIL frames) from an `AnimateDiffPipeline`: text-to-video, or image-to-video from `image`."""
    import torch

    gen = torch.Generator("cpu").manual_seed(int(seed))
    kwargs: dict[str, Any] = dict(prompt=prompt, num_frames=frames, height=64, width=64, num_inference_steps=steps,
                                  guidance_scale=guidance, generator=gen, output_type="pil")
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if image is not None:
        kwargs.update(first_frame_kwargs(pipe, image, frames=frames, generator=gen, on_step=on_step))
    else:
        from labkit.pipelines.animatediff import clip_latents, shared_noise
        from labkit.pipelines.calls import step_callback

        if shared_noise(pipe) > 0:
            kwargs["latents"] = clip_latents(pipe, frames=frames, generator=gen)
        if on_step is not None:
            kwargs.update(step_callback(pipe, on_step))
    return list(pipe(**kwargs).frames[0])


# --- the training task ---------------------------------------------------------------------------


def path_mask(video: torch.Tensor, latent_size: int) -> torch.Tensor:
    """(B, 1, 1, h, w) from (B, F, 3, H, W) clips in [-1, 1]: 1 on the latent pixels the object covers in any
    frame, the same in every frame (its whole path), else 0.

    The same mask in every frame weights a missing object and an object drawn where the clip has none alike
    along the path. Weighting only where the object is in each frame made drawing it too big (or in several
    places) cheap whenever the model was unsure where it is: trained frames grew fat blobs around it."""
    import torch.nn.functional as F

    b, f = video.shape[:2]
    obj = (video.amax(dim=2, keepdim=True) > -0.5).float().flatten(0, 1)
    mask = F.max_pool2d(obj, video.shape[-1] // latent_size).unflatten(0, (b, f))
    return mask.amax(dim=1, keepdim=True).permute(0, 2, 1, 3, 4)


def sample_timesteps(batch: int, *, steps: int, shift: float = 1.0, terminal_share: float = 0.0,
                     generator: Any = None) -> torch.Tensor:
    """Training timesteps (long, in [0, steps)): u ~ U(0, 1) moved toward noise by u' = s·u / (1 + (s-1)·u),
    the timestep shift of SD3 and the video diffusion models (s=1: uniform), t = ⌊u'·steps⌋; then a
    share `terminal_share` of them set to the last step, where the toy scheduler's signal is exactly zero."""
    import torch

    u = torch.rand(batch, generator=generator)
    u = shift * u / (1.0 + (shift - 1.0) * u)
    t = (u * steps).long().clamp(0, steps - 1)
    if terminal_share > 0:
        t = torch.where(torch.rand(batch, generator=generator) < terminal_share, torch.full_like(t, steps - 1), t)
    return t


def _clips_to_tensor(clips: Sequence[Any]) -> torch.Tensor:
    """(B, F, 3, H, W) in [-1, 1] from uint8 (F, H, W, 3) arrays."""
    import numpy as np
    import torch

    arr = np.stack(clips).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 1, 4, 2, 3).contiguous()


class ToyMotionTask(TrainTask):
    """Motion modules (and, at `spatial_lr_scale` × lr, the base's 2D weights) learn v-prediction on toy
    clips; the VAE and the text encoder stay the base's."""

    name = "toy-motion"

    def __init__(self, components: dict[str, Any], config: ToyMotionConfig, base_id: str = "toyworld",
                 base_licence: str | None = "cc0-1.0", base_revision: str | None = None, card: str = ""):
        from diffusers import DDPMScheduler

        self.c = components
        self.config = config
        self.base_id, self.base_licence, self.base_revision = base_id, base_licence, base_revision
        self.card = card
        self.unet, self.adapter_kwargs = build_motion_unet(components["unet"], config, seed=config.seed)
        self.motion = motion_modules(self.unet)
        init_word_embeddings(components["tokenizer"], components["text_encoder"], config.word_init)
        components["text_encoder"].requires_grad_(config.text_encoder_lr_scale > 0)
        self.noise = DDPMScheduler.from_config(components["scheduler"].config)
        self.empty_ids = self._tokenize([""])

    def _tokenize(self, texts: Sequence[str]):
        tok = self.c["tokenizer"]
        return tok(list(texts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    def models(self):
        models = {"motion": self.unet if self.config.spatial_lr_scale > 0 else self.motion}
        if self.config.text_encoder_lr_scale > 0:
            models["text_encoder"] = self.c["text_encoder"]
        return models

    def frozen(self):
        # the VAE always; the text encoder at text_encoder_lr_scale 0 (the default); the UNet's 2D layers when
        # only its motion modules train (spatial_lr_scale 0): those are in `models()` already, so not the UNet
        # itself but the largest of its parts that hold none of them
        frozen = {"vae": self.c["vae"]}
        if not self.config.text_encoder_lr_scale > 0:
            frozen["text_encoder"] = self.c["text_encoder"]
        if not self.config.spatial_lr_scale > 0:
            frozen["unet_2d"] = _spatial_modules(self.unet)
        return frozen

    def param_groups(self, learning_rate: float):
        cfg = self.config
        if not (cfg.spatial_lr_scale > 0 or cfg.text_encoder_lr_scale > 0):
            return None
        groups = [{"params": list(self.motion.parameters())}]
        if cfg.spatial_lr_scale > 0:
            motion = {id(p) for p in self.motion.parameters()}
            groups.append({"params": [p for p in self.unet.parameters() if id(p) not in motion],
                           "lr": learning_rate * cfg.spatial_lr_scale})
        if cfg.text_encoder_lr_scale > 0:
            groups.append({"params": list(self.c["text_encoder"].parameters()),
                           "lr": learning_rate * cfg.text_encoder_lr_scale})
        return groups

    def batches(self, batch_size: int, start: int) -> Iterator[Any]:
        from labkit.toyworld.motion import make_clip_item, render_clip

        i = start
        while True:
            items = [make_clip_item(self.config.data_seed, i * batch_size + j, "train", self.config.frames)
                     for j in range(batch_size)]
            yield _clips_to_tensor([render_clip(c) for c, _ in items]), self._tokenize([t for _, t in items])
            i += 1

    def loss(self, batch, ctx: StepContext):
        import torch

        from labkit.pipelines.animatediff import video_noise

        video, ids = batch
        video, ids = video.to(ctx.device), ids.to(ctx.device)
        b, f = video.shape[:2]
        vae = self.c["vae"]
        with torch.no_grad():
            z = vae.encode(video.flatten(0, 1)).latent_dist.mean * vae.config.scaling_factor
            z = z.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w), the pipeline's layout
            drop = torch.rand(b, generator=ctx.generator) < self.config.caption_dropout
            ids = torch.where(drop[:, None].to(ctx.device), self.empty_ids.to(ctx.device).expand_as(ids), ids)
        with torch.set_grad_enabled(self.config.text_encoder_lr_scale > 0):
            cond = self.c["text_encoder"](ids)[0].repeat_interleave(f, dim=0)
        noise = video_noise(tuple(z.shape), generator=ctx.generator, shared=self.config.shared_noise).to(ctx.device)
        t = sample_timesteps(b, steps=self.noise.config.num_train_timesteps, shift=self.config.timestep_shift,
                             terminal_share=self.config.terminal_share, generator=ctx.generator).to(ctx.device)
        noisy = self.noise.add_noise(z, noise, t)
        target = self.noise.get_velocity(z, noise, t)
        # Image-to-video: some clips see their clean first frame and are not graded on it.
        given = (torch.rand(b, generator=ctx.generator) < self.config.first_frame_prob).to(ctx.device)
        noisy[:, :, 0] = torch.where(given[:, None, None, None], z[:, :, 0], noisy[:, :, 0])
        pred = self.unet(noisy, t, cond).sample
        err = (pred.float() - target.float()) ** 2
        weight = torch.ones_like(err[:, :1])
        if self.config.object_weight:
            weight = weight + self.config.object_weight * path_mask(video, z.shape[-1]).to(ctx.device)
        frame_w = torch.ones(b, 1, f, 1, 1, device=ctx.device)
        frame_w[:, :, 0] = torch.where(given, 0.0, 1.0)[:, None, None, None]
        weight = weight * frame_w
        per_sample = (weight * err).sum(dim=(1, 2, 3, 4)) / (weight.expand_as(err)).sum(dim=(1, 2, 3, 4))
        if self.config.min_snr_gamma:
            ac = self.noise.alphas_cumprod.to(ctx.device)[t]
            snr = ac / (1 - ac)
            per_sample = per_sample * torch.clamp(snr, max=self.config.min_snr_gamma) / (snr + 1) * 2
        return per_sample.mean()

    def pipeline(self):
        pipe = make_motion_pipeline(self.c, self.unet, self.adapter_kwargs)
        pipe._labkit_shared_noise = self.config.shared_noise  # what the export's metadata tells the loader
        return pipe

    def validate(self, prompts, seeds, step):
        """A strip per prompt × seed (the last prompt animates its ground-truth first frame), and the
        motion checks on `eval_prompts` held-out prompts (from their true first frame when `keyframe`)."""
        import numpy as np
        from PIL import Image

        from labkit.toyworld.motion import parse_motion, strip

        self.unet.eval()
        pipe = self.pipeline()
        cfg = self.config
        images, labels = [], []
        for k, p in enumerate(prompts):
            first = None
            if k == len(prompts) - 1 and len(prompts) > 1:  # the image-to-video row
                spec = parse_motion(p)
                first = first_frame_for(spec)
            for s in seeds:
                frames = animate(pipe, p, image=first, frames=cfg.frames, steps=cfg.sampling_steps,
                                 guidance=cfg.guidance_scale, seed=s)
                images.append(Image.fromarray(strip(np.stack([np.asarray(f) for f in frames]))))
                labels.append(f"{p} (seed {s}{', from its first frame' if first is not None else ''})")
        # With a keyframe model, text-to-video animates a drawn first frame: judge that step, from the clip's
        # true first frame.
        metrics = heldout_metrics(cfg, lambda text, first, i: animate(
            pipe, text, image=first, frames=cfg.frames, steps=cfg.sampling_steps, guidance=cfg.guidance_scale,
            seed=i), from_first_frame=cfg.keyframe)
        return Validation(images, labels, metrics)

    def export(self, folder: Path) -> None:
        from labkit.toyworld.motion import DEFAULT_FPS

        cfg = self.config
        save_motion_pipeline(
            self.c, self.unet, self.adapter_kwargs, folder, adapter_dtype=cfg.adapter_dtype, card=self.card or None,
            tokenizer_files=getattr(self, "tokenizer_files", None),
            meta={"base": self.base_id, "trained": True, "frames": cfg.frames, "fps": cfg.fps or DEFAULT_FPS,
                  "guidance_scale": cfg.guidance_scale, "sampling_steps": cfg.sampling_steps,
                  "shared_noise": cfg.shared_noise, "word_init": cfg.word_init,
                  **({"keyframe_model": self.base_id} if cfg.keyframe else {}),
                  "image_to_video": "first-frame clean-latent replacement (labkit.training.toy_motion)",
                  **cfg.extra_meta})

    def data_card(self):
        return {"description": DATA_DESCRIPTION, "licence": LICENCE,
                "source": f"labkit.toyworld.motion seed={self.config.data_seed}",
                "first_frame_prob": self.config.first_frame_prob}

    def licence_chain(self):
        from labkit.compliance import Asset

        return [Asset("model", self.base_id, self.base_licence, self.base_revision), *super().licence_chain()]

    def card_notes(self) -> str:
        return "\n".join([
            "## Model", "",
            f"An AnimateDiff `MotionAdapter` trained on the toy model `{self.base_id}` (its 2D UNet "
            f"fine-tuned at {self.config.spatial_lr_scale:g}× the adapter's learning rate, its text encoder at "
            f"{self.config.text_encoder_lr_scale:g}×) "
            f"(licence {self.base_licence or 'unknown'}); load the folder with "
            "`AnimateDiffPipeline.from_pretrained`. Image-to-video: "
            "`labkit.training.toy_motion.animate(pipe, prompt, image=first_frame)`.", ""])


def train_toy_motion(env: TrainEnv | Any, config: ToyMotionConfig | None = None) -> Path:
    """Train the motion adapter on the toy base and export the motion pipeline; return its folder.

    Steps: (1) check the settings and load the base (its UNet must convert to a `UNetMotionModel`);
    (2) train the motion modules (and the 2D UNet at a lower lr) with labkit's engine (one MLflow run
    "toy-motion": loss, validation strips, held-out motion checks, checkpoints that resume exactly);
    (3) export `output_dir/model`.
    """
    import torch

    # 1. settings and the base
    config = config or ToyMotionConfig()
    config.validate()  # output folder and resume point too, before the base loads
    if config.threads:
        torch.set_num_threads(int(config.threads))
    env = as_train_env(env)
    comps, ref, base_folder = load_base_components(env, config.base)
    adapter_config(comps["unet"].config, config.motion_heads, config.max_seq_length, config.mid_block)
    task = ToyMotionTask(comps, config, base_id=ref.id, base_licence=ref.licence or card_licence(base_folder),
                         base_revision=ref.revision)
    task.tokenizer_files = base_folder / "tokenizer"
    # 2. training, and 3. the export (the engine writes it: task.export + model card)
    return run_motion_recipe(env, task, config, {"arch": "animatediff", **config.to_dict()})


__all__ = ["LICENCE", "MOTION_WORD_INIT", "ToyMotionConfig", "ToyMotionTask", "adapter_config", "animate",
           "build_motion_unet", "copy_tokenizer_files", "encode_image", "extract_adapter", "first_frame_kwargs",
           "heldout_metrics", "init_word_embeddings", "load_base_components", "make_motion_pipeline", "motion_modules",
           "path_mask", "run_motion_recipe", "sample_timesteps", "save_motion_pipeline", "train_toy_motion",
           "validation_prompts"]
