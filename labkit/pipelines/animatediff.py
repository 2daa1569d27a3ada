"""Image-to-video with a plain `AnimateDiffPipeline`: the given image is frame 0, as a clean latent.

A motion model trained the labkit way (labkit's toy-motion recipe: some training clips see their
clean first-frame latent and are not graded on it) continues a given first frame. Sampling does the
same with an ordinary pipeline call: the initial latents carry the image's latent in frame 0, and a
step-end callback puts it back after every scheduler step, so the decoded frame 0 is the image
(through the VAE) and every other frame is denoised knowing it. No extra weights, no custom class.

The noise prior: a labkit motion model may be trained with part of every frame's noise shared by the
whole clip (``"labkit": {"shared_noise": ρ}`` in `model_index.json`); `clip_latents` draws the initial
latents the same way, for text-to-video and image-to-video alike (`labkit.pipelines.calls.video_kwargs`
builds both calls).

Which models may do it: an AnimateDiff folder whose `model_index.json` says
``"labkit": {"kind": "motion"}`` (the recipe's export), or a catalogue entry of such a model that lists
img2vid. A hub AnimateDiff adapter was never trained to read a clean frame 0, so it is refused for
img2vid rather than run badly.

Text-to-video from a keyframe: a motion export whose metadata names a ``"keyframe_model"`` (the recipe's
default: the toy base it was trained on) renders text-to-video in two steps — that image model draws frame 0
from the caption's still prompt (`keyframe_prompt`: the function the model family declares in the
catalogue's `[families.NAME]`; for the toy family, the start scene the motion caption implies), and the
motion model animates it as in image-to-video. `labkit.render` does it with the frame as
its own recorded run (as for an image-to-video model asked for text-to-video); `labkit eval toymotion`
does the same in memory. Such a model learns motion from a given first frame far better than layout and
motion at once from noise (held-out directions: 93% from a keyframe against 2% from noise, 60 prompts,
one model; issue 10's notes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import Catalog

#: Pipeline classes that take a first frame this way.
FIRST_FRAME_CLASSES = ("AnimateDiffPipeline",)


def takes_first_frame(pipe: Any) -> bool:
    """Whether `pipe`'s class can be given a first frame by clean-latent replacement."""
    return type(pipe).__name__ in FIRST_FRAME_CLASSES


def trained_for_first_frame(folder: str | Path) -> bool:
    """Whether the pipeline folder is a labkit motion export (trained to continue a clean first frame)."""
    return _folder_meta(folder).get("kind") == "motion"


def keyframe_model(folder: str | Path) -> str | None:
    """The image model (catalogue id or folder) that draws frame 0 of a text-to-video clip for the labkit
    motion export in `folder` (``"labkit": {"keyframe_model": …}``), or None: render from noise."""
    meta = _folder_meta(folder)
    value = meta.get("keyframe_model") if meta.get("kind") == "motion" else None
    return str(value) if value else None


def keyframe_prompt(family: str, prompt: str, catalog: Catalog | None = None) -> str:
    """What the keyframe model is asked to draw for a text-to-video `prompt`: what the family's declared
    ``keyframe_prompt`` function returns (`catalog.family(family)`, the `[families.NAME]` table of the
    catalogue, default the shipped one: for the toy family the still caption of the clip's start, and
    `InvalidParameter` for a caption that names no single motion), else the prompt itself."""
    from labkit.catalog import Catalog

    hook = (catalog if catalog is not None else Catalog.load()).family(family).function("keyframe_prompt")
    return hook(prompt) if hook else prompt


def _folder_meta(folder: str | Path) -> dict[str, Any]:
    """The ``"labkit"`` section of a pipeline folder's `model_index.json` ({} when there is none)."""
    try:
        meta = json.loads((Path(folder) / "model_index.json").read_text()).get("labkit") or {}
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def shared_noise(pipe: Any) -> float:
    """The share ρ of the initial noise that a labkit motion model wants common to all frames (0: none).

    Read from the pipeline's `_labkit_shared_noise` attribute when set (the training recipe sets it on its
    in-memory pipeline), else from ``"labkit": {"shared_noise": ρ}`` in the loaded folder's `model_index.json`.
    """
    value = getattr(pipe, "_labkit_shared_noise", None)
    if value is None:
        folder = getattr(pipe, "name_or_path", None)
        meta = _folder_meta(folder) if folder else {}
        value = meta.get("shared_noise", 0.0) if meta.get("kind") == "motion" else 0.0
    return float(value or 0.0)


def video_noise(shape: tuple[int, ...], *, generator: Any, shared: float, dtype: Any = None):
    """Noise for a (B, C, F, h, w) clip: each frame N(0, I), with a share `shared` (ρ) of its variance
    common to all frames: sqrt(1-ρ)·ε_frame + sqrt(ρ)·ε_clip (the "mixed" noise prior of video diffusion
    models fine-tuned from image models; ρ=0 is the ordinary independent noise, drawn as before)."""
    import math

    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(tuple(shape), generator=generator, dtype=dtype)
    if shared > 0:
        common = randn_tensor((shape[0], shape[1], 1, *shape[3:]), generator=generator, dtype=dtype)
        noise = math.sqrt(1.0 - shared) * noise + math.sqrt(shared) * common
    return noise


def clip_latents(pipe: Any, *, frames: int, generator: Any, height: int = 64, width: int = 64):
    """The initial latents of one clip as the model was trained (`video_noise` with its `shared_noise`),
    ready for the pipeline's `latents=` (which multiplies them by the scheduler's initial sigma)."""
    shape = (1, pipe.unet.config.in_channels, frames, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return video_noise(shape, generator=generator, shared=shared_noise(pipe)) / pipe.scheduler.init_noise_sigma


def encode_image(pipe: Any, image: Any, width: int | None = None, height: int | None = None):
    """The scaled VAE latent (posterior mean, as in training) of a PIL image: (1, C, h, w)."""
    import numpy as np
    import torch

    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    size = (int(width or side), int(height or width or side))
    arr = np.asarray(image.convert("RGB").resize(size), dtype=np.float32) / 127.5 - 1.0
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].to(pipe.vae.device, pipe.vae.dtype)
    with torch.no_grad():
        return pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor


def first_frame_kwargs(pipe: Any, image: Any, *, frames: int, generator: Any, height: int = 64, width: int = 64,
                       on_step: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """kwargs for an `AnimateDiffPipeline` call that start the clip from `image`: `latents` with the
    image's latent in frame 0 and noise elsewhere, and a step-end callback that puts the latent back
    after every step (and calls `on_step(i)`, stopping the denoising when it returns True)."""
    z0 = encode_image(pipe, image, width, height)
    latents = clip_latents(pipe, frames=frames, generator=generator, height=height, width=width).to(z0.dtype)
    latents[:, :, 0] = z0.cpu() / pipe.scheduler.init_noise_sigma  # the pipeline multiplies it back

    def callback(p, step, timestep, kw):
        lat = kw["latents"]
        lat[:, :, 0] = z0.to(lat.device, lat.dtype)
        if on_step is not None and on_step(step + 1):
            p._interrupt = True
        return {"latents": lat}

    return {"latents": latents, "callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents"]}


def run_first_frame(pipe: Any, *, image: Any, prompt: str, negative_prompt: str, steps: int, guidance: float,
                    width: int, height: int, frames: int, seed: int, on_step: Callable[[int], bool]) -> list[Any]:
    """One clip (PIL frames) that starts from `image` and follows `prompt` (`calls.video_kwargs`)."""
    import torch

    from labkit.pipelines.calls import video_kwargs

    gen = torch.Generator("cpu").manual_seed(int(seed))
    return list(pipe(**video_kwargs(pipe, prompt=prompt, negative_prompt=negative_prompt, steps=steps,
                                    guidance=guidance, width=width, height=height, frames=frames, generator=gen,
                                    image=image, on_step=on_step)).frames[0])
