"""The group-offload rung as labkit sets it up for CUDA, checked on the CPU with a real tiny SDXL pipeline: every
component is offloaded leaf by leaf, the UNet and text encoders on CUDA's side stream, the VAE without it.

diffusers' streamed path keeps a pinned CPU copy of each weight in the dtype it had when offload began and onloads
from that copy, so the float32 cast SDXL and SVD give their float16 VAE before decoding (`force_upcast`) would be
undone under float32 latents ("Input type (float) and bias type (c10::Half) should be the same"). Streams need
CUDA, so the calls are recorded here; tests/gpu renders the rung for real. The VAE's own path, leaf offload without
a stream, is run for real below: after it, a cast to float32 holds through a decode."""

from __future__ import annotations

import pytest
import torch

from labkit.hardware import strategy_table
from labkit.pipelines.memory import apply_strategy


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    from diffusers import StableDiffusionXLPipeline

    from labkit.testing import build_tiny

    folder = build_tiny("sdxl", tmp_path_factory.mktemp("tiny") / "sdxl")
    return lambda: StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True)


def _group_rung():
    table = strategy_table()
    names = [r["name"] for r in table.family("sdxl")["ladder"]]
    return table.strategy("sdxl", names.index("gpu-group-offload"), "8")


def test_on_cuda_the_vae_is_offloaded_without_the_side_stream(sdxl, monkeypatch):
    pipe = sdxl()
    calls = {}
    monkeypatch.setattr(pipe, "enable_group_offload", lambda **kw: calls.setdefault("pipe", kw))
    monkeypatch.setattr(pipe.vae, "enable_group_offload", lambda **kw: calls.setdefault("vae", kw))
    applied = apply_strategy(pipe, _group_rung(), "cuda")
    assert "offload=group" in applied and "vae:offload=group(no stream)" in applied
    assert calls["pipe"]["use_stream"] and calls["pipe"]["exclude_modules"] == ["vae"]
    assert calls["pipe"]["onload_device"] == torch.device("cuda") and calls["pipe"]["offload_type"] == "leaf_level"
    assert not calls["vae"]["use_stream"] and calls["vae"]["onload_device"] == torch.device("cuda")
    assert calls["vae"]["offload_device"] == torch.device("cpu") and calls["vae"]["offload_type"] == "leaf_level"


def test_a_vae_offloaded_without_the_stream_keeps_the_float32_cast_through_a_decode(sdxl):
    vae = sdxl().vae.to(torch.float16)
    vae.enable_group_offload(onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                             offload_type="leaf_level", use_stream=False)
    vae.to(dtype=torch.float32)  # what the SDXL pipeline does before decoding when force_upcast is set
    latents = torch.randn(1, vae.config.latent_channels, 8, 8)
    image = vae.decode(latents).sample
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    assert all(p.dtype == torch.float32 for p in vae.parameters())
