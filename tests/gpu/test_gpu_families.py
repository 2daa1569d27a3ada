"""Every family in half precision on CUDA, through the same Lab path as on CPU (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

from labkit.controller.plan import Plan
from labkit.lab import Lab

pytestmark = pytest.mark.gpu

RENDERS = {
    "sd15": dict(modality="image", width=64, height=64, steps=4),
    "sdxl": dict(modality="image", width=64, height=64, steps=4),
    "svd": dict(modality="video", width=64, height=64, steps=4, frames=4, fps=6),
    "t2v": dict(modality="video", width=32, height=32, steps=4, frames=5, fps=8),
}


@pytest.mark.parametrize("family", list(RENDERS))
def test_family_in_half_precision_on_cuda(family, tmp_path, project):
    import torch

    from labkit.testing import build_tiny
    from labkit.toyworld import render_pil, sample_scene

    folder = build_tiny(family, tmp_path / family)
    image = tmp_path / "first.png"
    render_pil(sample_scene(np.random.default_rng(0), n_objects=1)).save(image)
    lab = Lab(project)  # the real, detected hardware
    assert lab.hardware.device == "cuda"
    kw = RENDERS[family]
    plan = Plan(prompt="a red circle", model=str(folder), seed=1, guidance=2.0,
                image=str(image) if family == "svd" else None, **kw)
    a = lab.render(plan)
    assert a.strategy.device == "gpu" and a.strategy.dtype in ("float16", "bfloat16")
    assert a.memory_kind == "cuda" and a.peak_memory_gb > 0
    px = np.stack([np.asarray(f) for f in (a.images or a.frames)])
    assert np.isfinite(px).all() and px.std() > 0  # half precision did not overflow into NaN/black frames
    b = lab.render(plan)
    assert np.abs(np.stack([np.asarray(f) for f in (b.images or b.frames)]).astype(int) - px.astype(int)).max() <= 2
    torch.cuda.empty_cache()


# (simulated VRAM, ControlNets) that start SD 1.5 on each kind of rung (hardware.choose counts the ControlNets)
PLACEMENTS = {"gpu-full": (24.0, 1), "gpu-model-offload": (4.0, 1), "gpu-sequential": (4.0, 2)}


@pytest.mark.parametrize("rung", list(PLACEMENTS))
def test_controlnets_follow_the_memory_strategy_on_cuda(rung, tmp_path, project):
    """The ControlNets are placed as the strategy keeps the UNet, in its dtype, and leave the GPU after the
    render; the cached base pipeline keeps its dtype (from_pipe casts to fp32 unless told)."""
    import torch
    from PIL import Image

    from labkit.hardware import HardwareProfile
    from labkit.pipelines.controlnet import _CACHE
    from labkit.plan import ControlRef
    from labkit.testing import build_tiny, build_tiny_controlnet

    folder = build_tiny("sd15", tmp_path / "sd15")
    net = build_tiny_controlnet("sd15", tmp_path / "cn")
    Image.new("RGB", (64, 64), (255, 255, 255)).save(tmp_path / "map.png")
    vram, n = PLACEMENTS[rung]
    lab = Lab(project, hardware=HardwareProfile.simulated(vram))
    plan = Plan(prompt="a red circle", model=str(folder), seed=1, width=64, height=64, steps=3,
                controls=tuple(ControlRef("none", str(tmp_path / "map.png"), model=str(net)) for _ in range(n)))
    result = lab.render(plan)
    assert result.strategy.name == rung and any(s.startswith("controlnet:") for s in result.applied)
    px = np.asarray(result.images[0])
    assert np.isfinite(px).all() and px.std() > 0
    (key,) = lab.pipelines.keys()
    assert lab.pipelines.get(key).pipe.unet.dtype in (torch.float16, torch.bfloat16)
    assert all(next(c.net.parameters()).device.type == "cpu" for c in _CACHE.values())
    torch.cuda.empty_cache()
