"""The speed-first rung (speed="max") on CUDA with tiny sd15 and sdxl pipelines: the steps applied, compile time
reported apart from the render, pixels close to the eager render, and inductor's cache reused by a second process
(skipped without CUDA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from labkit.hardware import HardwareProfile
from labkit.lab import Lab
from labkit.plan import Plan

pytestmark = pytest.mark.gpu

SIZE = {"sd15": 64, "sdxl": 64}


def _px(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(int)


def _plan(folder, speed: str) -> Plan:
    return Plan(prompt="a red circle", model=str(folder), seed=1, steps=4, guidance=5.0, width=64, height=64,
                speed=speed)


@pytest.mark.parametrize("family", list(SIZE))
def test_fast_rung_in_float16_stays_close_to_eager_float16(family, tmp_path, project):
    """bf16=False puts the fast rung in float16, so it is compared with eager float16 alone: compiled, fused and
    CUDA-graphed, the pixels move only by reordered half-precision sums."""
    import torch

    from labkit.testing import build_tiny

    folder = build_tiny(family, tmp_path / family)
    props = torch.cuda.get_device_properties(0)
    lab = Lab(project, hardware=HardwareProfile.simulated(props.total_memory / 2**30, bf16=False))
    eager = lab.render(_plan(folder, "default"))
    fast = lab.render(_plan(folder, "max"))
    assert eager.strategy.name == "gpu-full" and eager.strategy.dtype == "float16"
    assert fast.strategy.name == "gpu-fast" and fast.strategy.dtype == "float16"
    for step in ("fuse_qkv", "channels_last", "compile=reduce-overhead", "compile_vae=reduce-overhead"):
        assert step in fast.applied, (step, fast.applied)
    assert fast.timings["compile_s"] > 0 and eager.timings["compile_s"] == 0.0
    px = _px(fast)
    assert np.isfinite(px).all() and px.std() > 0
    diff = np.abs(px - _px(eager))
    print(f"{family} fp16 fast vs eager: max {diff.max()}, mean {diff.mean():.3f}")
    assert diff.mean() <= 2.0 and diff.max() <= 24, (diff.max(), diff.mean())
    again = lab.render(_plan(folder, "max"))  # the same shape again: compiled already, no warm-up
    assert again.timings["compile_s"] == 0.0 and np.abs(_px(again) - px).max() <= 1
    torch.cuda.empty_cache()


@pytest.mark.parametrize("family", list(SIZE))
def test_fast_rung_uses_bfloat16_where_the_gpu_has_it(family, tmp_path, project):
    import torch

    from labkit.testing import build_tiny

    folder = build_tiny(family, tmp_path / family)
    lab = Lab(project)  # the detected hardware (an H100/H200 has bf16)
    assert lab.hardware.device == "cuda"
    fast = lab.render(_plan(folder, "max"))
    want = "bfloat16" if lab.hardware.bf16 else "float16"
    assert fast.strategy.name == "gpu-fast" and fast.strategy.dtype == want
    assert any(want in n for n in fast.strategy.notes)
    (key,) = lab.pipelines.keys()
    assert lab.pipelines.get(key).pipe.unet.dtype == getattr(torch, want)
    px = _px(fast)
    assert np.isfinite(px).all() and px.std() > 0
    eager = lab.render(_plan(folder, "default"))
    diff = np.abs(px - _px(eager))
    print(f"{family} {want} fast vs eager fp16: max {diff.max()}, mean {diff.mean():.3f}")
    assert diff.mean() <= 6.0, diff.mean()  # bf16 keeps 8 mantissa bits to fp16's 11: close, not equal
    run = lab.tracker.client.get_run(fast.run_id)
    assert run.data.metrics["time.compile_s"] > 0 and run.data.tags["strategy.name"] == "gpu-fast"
    torch.cuda.empty_cache()


_CHILD = """
import json, sys
from labkit.lab import Lab
from labkit.plan import Plan
lab = Lab(sys.argv[1])
r = lab.render(Plan(prompt="a red circle", model=sys.argv[2], seed=1, steps=4, guidance=5.0, width=64, height=64,
                    speed="max"))
print(json.dumps({"compile_s": r.timings["compile_s"], "applied": r.applied}))
"""


def test_a_second_process_reuses_the_inductor_cache(tmp_path, project):
    from labkit.testing import build_tiny

    folder = build_tiny("sd15", tmp_path / "sd15")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)

    def child() -> dict:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(project), str(folder)], env=env, check=True,
                             capture_output=True, text=True, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = child(), child()
    assert "compile=reduce-overhead" in first["applied"]
    cache = project / "mlruns" / "inductor-cache"
    assert any(p.is_file() for p in cache.rglob("*")), "inductor's cache is kept in the project"
    print(f"compile_s: first process {first['compile_s']:.1f}, second {second['compile_s']:.1f}")
    assert second["compile_s"] < first["compile_s"]
