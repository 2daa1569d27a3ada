"""calls.video_kwargs: the one builder of text-to-video / AnimateDiff call kwargs (stand-in pipelines, no weights)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labkit.errors import Cancelled
from labkit.pipelines.calls import generators, video_kwargs


class WanPipeline:
    """Shaped like a diffusers text-to-video pipeline's call signature."""

    def __call__(self, prompt, num_frames, height, width, num_inference_steps, guidance_scale, generator,
                 output_type, negative_prompt=None, latents=None, callback_on_step_end=None):
        raise AssertionError("never called")


class AnimateDiffPipeline(WanPipeline):
    """The class name is what marks a first-frame (labkit motion) pipeline; the numbers clip_latents reads."""

    vae_scale_factor = 8

    def __init__(self, shared: float):
        self.unet = SimpleNamespace(config=SimpleNamespace(in_channels=4))
        self.scheduler = SimpleNamespace(init_noise_sigma=1.0)
        self._labkit_shared_noise = shared


ARGS = dict(prompt="a red circle moving up", steps=4, guidance=3.0, width=64, height=48, frames=6)


def test_a_text_to_video_call_carries_the_plan_and_nothing_else():
    gen = generators(3, 1)[0]
    kw = video_kwargs(WanPipeline(), generator=gen, on_step=lambda i: False, **ARGS)
    assert set(kw) == {"prompt", "height", "width", "num_frames", "num_inference_steps", "guidance_scale",
                       "generator", "output_type", "callback_on_step_end"}
    assert (kw["prompt"], kw["num_frames"], kw["height"], kw["width"], kw["num_inference_steps"],
            kw["guidance_scale"], kw["output_type"]) == (ARGS["prompt"], 6, 48, 64, 4, 3.0, "pil")
    assert kw["generator"] is gen
    assert video_kwargs(WanPipeline(), generator=gen, negative_prompt="blurry", **ARGS)["negative_prompt"] == "blurry"
    assert "callback_on_step_end" not in video_kwargs(WanPipeline(), generator=gen, **ARGS)


def test_the_step_callback_stops_a_pipeline_without_an_interrupt_flag():
    kw = video_kwargs(WanPipeline(), generator=generators(0, 1)[0], on_step=lambda i: i >= 2, **ARGS)
    cb = kw["callback_on_step_end"]
    assert cb(None, 0, 0, {"x": 1}) == {"x": 1}  # step 1: go on
    with pytest.raises(Cancelled):
        cb(None, 1, 0, {})


def test_a_motion_model_with_frame_shared_noise_gets_its_latents_from_that_prior():
    import torch

    pipe = AnimateDiffPipeline(shared=0.8)
    kw = video_kwargs(pipe, generator=generators(7, 1)[0], **ARGS)
    lat = kw["latents"]
    assert tuple(lat.shape) == (1, 4, 6, 48 // 8, 64 // 8)
    assert torch.equal(lat, video_kwargs(pipe, generator=generators(7, 1)[0], **ARGS)["latents"])  # seeded
    frames = lat[0].permute(1, 0, 2, 3).reshape(6, -1)
    assert torch.corrcoef(frames)[0, 1:].min() > 0.5  # ρ = 0.8 of the variance is common to the frames
    assert "latents" not in video_kwargs(AnimateDiffPipeline(shared=0.0), generator=generators(7, 1)[0], **ARGS)
    assert "latents" not in video_kwargs(WanPipeline(), generator=generators(7, 1)[0], **ARGS)
