"""Calling a diffusers pipeline for one task with a plan's parameters.

One function per task family; each takes the pipeline, the plan's numbers, a per-step callback
and explicit seeds, and returns PIL images (image tasks) or lists of PIL frames (video tasks).
Seeds go through CPU generators so the same seed gives the same pixels whatever the offload.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def generators(seed: int, count: int) -> list[Any]:
    """One CPU generator per output: output i depends on seed + i only, not on the batch."""
    import torch

    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(count)]


def _supports(pipe: Any, name: str) -> bool:
    return name in inspect.signature(type(pipe).__call__).parameters


def step_callback(pipe: Any, on_step: Callable[[int], bool]) -> dict[str, Any]:
    """kwargs that make `pipe` call `on_step(i)` after each denoising step.

    `on_step` returns True to stop early: pipelines with an `interrupt` flag stop denoising and
    still decode (the partial output is kept); others get `Cancelled` raised from the callback.
    """
    from labkit.errors import Cancelled

    def callback(p, step, timestep, kwargs):
        if on_step(step + 1):
            if hasattr(type(p), "interrupt"):
                p._interrupt = True
            else:
                raise Cancelled("Cancelled by the user.", value=step + 1, fix="run again to finish it.")
        return kwargs

    return {"callback_on_step_end": callback} if _supports(pipe, "callback_on_step_end") else {}


def run_image(pipe: Any, *, prompt: str, negative_prompt: str, steps: int, guidance: float, width: int, height: int,
              seed: int, count: int, on_step: Callable[[int], bool], image: Any = None,
              strength: float | None = None, control: dict[str, Any] | None = None) -> list[Any]:
    """Text-to-image (image=None) or image-to-image; returns `count` PIL images. `control`: a ControlNet
    pipeline's arguments (`labkit.pipelines.controlnet.control_kwargs`)."""
    kwargs: dict[str, Any] = dict(
        prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, num_images_per_prompt=count,
        generator=generators(seed, count), output_type="pil", **step_callback(pipe, on_step),
    )
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if image is None:
        kwargs.update(width=width, height=height)
    else:
        kwargs.update(image=image.convert("RGB").resize((width, height)), strength=strength)
    if control:
        kwargs.update(control)
    return list(pipe(**kwargs).images)


def run_img2vid(pipe: Any, *, image: Any, steps: int, guidance: float, width: int, height: int, frames: int, fps: int,
                seed: int, count: int, decode_chunk_size: int, on_step: Callable[[int], bool], prompt: str = "",
                negative_prompt: str = "") -> list[list[Any]]:
    """Image-to-video; returns `count` clips of PIL frames. Stable Video Diffusion class: the image alone;
    a labkit motion model (AnimateDiff): the image as frame 0 and `prompt` for the motion."""
    from labkit.pipelines.animatediff import run_first_frame, takes_first_frame

    if takes_first_frame(pipe):
        image = image.convert("RGB")
        return [run_first_frame(pipe, image=image, prompt=prompt, negative_prompt=negative_prompt, steps=steps,
                                guidance=guidance, width=width, height=height, frames=frames, seed=seed + i,
                                on_step=on_step) for i in range(count)]
    clips = []
    for i in range(count):
        kwargs: dict[str, Any] = dict(
            image=image.convert("RGB").resize((width, height)), height=height, width=width, num_frames=frames,
            num_inference_steps=steps, generator=generators(seed + i, 1)[0], output_type="pil",
            **step_callback(pipe, on_step),
        )
        if _supports(pipe, "prompt"):  # an image-to-video model that also reads the caption (the toy world's warp)
            kwargs.update(prompt=prompt, guidance_scale=guidance)
            if negative_prompt:
                kwargs["negative_prompt"] = negative_prompt
        if _supports(pipe, "fps"):
            # SVD is conditioned on fps - 1 (diffusers' SVD guide); the playback rate stays `fps`.
            kwargs["fps"] = max(fps - 1, 1)
        if _supports(pipe, "max_guidance_scale"):
            kwargs["max_guidance_scale"] = max(guidance, 1.0)
            kwargs["min_guidance_scale"] = min(1.0, guidance)
        if _supports(pipe, "decode_chunk_size"):
            kwargs["decode_chunk_size"] = decode_chunk_size or frames
        clips.append(list(pipe(**kwargs).frames[0]))
    return clips


def video_kwargs(pipe: Any, *, prompt: str, negative_prompt: str = "", steps: int, guidance: float, width: int,
                 height: int, frames: int, generator: Any, image: Any = None,
                 on_step: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """The kwargs of one text-to-video call (Wan, LTX … class, AnimateDiff), or of an AnimateDiff call that
    starts from `image` as frame 0: the one place that builds them (render, the benchmarks, the toy motion
    recipe's validation clips).

    A labkit motion model trained with frame-shared noise draws its initial latents from the same prior
    (`animatediff.clip_latents`); with `image` (only for pipelines that `takes_first_frame`), frame 0 is the
    image's clean latent and the step callback puts it back (`animatediff.first_frame_kwargs`). `on_step(i)`
    is called after each step; True stops the denoising (see `step_callback`).
    """
    from labkit.pipelines.animatediff import clip_latents, first_frame_kwargs, shared_noise, takes_first_frame

    kwargs: dict[str, Any] = dict(prompt=prompt, height=height, width=width, num_frames=frames,
                                  num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                                  output_type="pil")
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if image is not None:
        kwargs.update(first_frame_kwargs(pipe, image, frames=frames, generator=generator, height=height, width=width,
                                         on_step=on_step))
        return kwargs
    if on_step is not None:
        kwargs.update(step_callback(pipe, on_step))
    if takes_first_frame(pipe) and shared_noise(pipe) > 0:
        # a labkit motion model trained with frame-shared noise samples from the same prior
        kwargs["latents"] = clip_latents(pipe, frames=frames, generator=generator, height=height, width=width)
    return kwargs


def run_txt2vid(pipe: Any, *, prompt: str, negative_prompt: str, steps: int, guidance: float, width: int, height: int,
                frames: int, seed: int, count: int, on_step: Callable[[int], bool]) -> list[list[Any]]:
    """Text-to-video (Wan, LTX … class, AnimateDiff); returns `count` clips of PIL frames, clip i from seed + i."""
    return [list(pipe(**video_kwargs(pipe, prompt=prompt, negative_prompt=negative_prompt, steps=steps,
                                     guidance=guidance, width=width, height=height, frames=frames,
                                     generator=generators(seed + i, 1)[0], on_step=on_step)).frames[0])
            for i in range(count)]
