"""Every GPU rung of every family's ladder renders on a real CUDA device, and a real CUDA out-of-memory degrades the
render to a cheaper rung (skipped without CUDA).

The rung is forced by standing in for `choose` where the renderer calls it: on one big card every family starts on
its first rung, and several rungs start no tier at all. The speed-first rung (torch.compile) is left to
test_gpu_fast.py, whose compile times this file's share of `make gpu-check` cannot afford.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from labkit.controller.plan import Plan
from labkit.hardware import strategy_table
from labkit.lab import Lab

pytestmark = pytest.mark.gpu

FAMILIES = ("sd15", "sdxl", "svd", "t2v")
RENDERS = {
    "sd15": dict(modality="image", width=64, height=64, steps=3),
    "sdxl": dict(modality="image", width=64, height=64, steps=3),
    "svd": dict(modality="video", width=64, height=64, steps=3, frames=4, fps=6),
    "t2v": dict(modality="video", width=32, height=32, steps=3, frames=5, fps=8),
}


def _gpu_rungs(family: str) -> list[tuple[int, dict]]:
    """(index on the ladder, rung) of every GPU rung that does not compile."""
    ladder = strategy_table().family(family)["ladder"]
    return [(i, r) for i, r in enumerate(ladder) if r["device"] == "gpu" and not r.get("compile")]


CASES = [(f, r["name"]) for f in FAMILIES for _, r in _gpu_rungs(f)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """family -> its tiny model folder, built on first use (once per module and test process)."""
    from labkit.testing import build_tiny

    base = tmp_path_factory.mktemp("tiny-rungs")
    made: dict[str, object] = {}

    def get(family: str):
        if family not in made:
            made[family] = build_tiny(family, base / family)
        return made[family]

    return get


@pytest.fixture(scope="module")
def first_frame(tmp_path_factory):
    from labkit.toyworld import render_pil, sample_scene

    path = tmp_path_factory.mktemp("frame") / "first.png"
    render_pil(sample_scene(np.random.default_rng(0), n_objects=1)).save(path)
    return path


def _force(monkeypatch, family: str, index: int) -> None:
    """Make the renderer start `family` on ladder rung `index` (every other family as the table says)."""
    import labkit.render
    from labkit.hardware import choose

    table = strategy_table()

    def forced(fam, profile, **kw):
        if fam != family:
            return choose(fam, profile, **kw)
        return table.strategy(fam, index, profile.tier)

    monkeypatch.setattr(labkit.render, "choose", forced)


def _free() -> None:
    import torch

    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def _plan(family: str, folder, first_frame, **kw) -> Plan:
    return Plan(prompt="a red circle", model=str(folder), seed=1, guidance=2.0,
                image=str(first_frame) if family == "svd" else None, **{**RENDERS[family], **kw})


@pytest.mark.parametrize(("family", "rung"), CASES, ids=[f"{f}-{r}" for f, r in CASES])
def test_every_gpu_rung_renders_on_cuda(family, rung, folders, first_frame, project, monkeypatch):
    """The rung's steps are applied as the table says, the weights sit where its offload puts them, and the
    pictures are finite and not blank in the rung's half precision."""
    import torch

    index, spec = next((i, r) for i, r in _gpu_rungs(family) if r["name"] == rung)
    _force(monkeypatch, family, index)
    lab = Lab(project)
    assert lab.hardware.device == "cuda"
    result = lab.render(_plan(family, folders(family), first_frame))
    assert result.status == "finished" and result.strategy.name == rung
    assert [a.strategy for a in result.attempts] == [rung]  # no degrade on a tiny model
    assert result.strategy.dtype == spec["dtype"] and result.memory_kind == "cuda" and result.peak_memory_gb > 0
    applied = result.applied
    if spec["offload"] == "none":
        assert "device=cuda" in applied
    else:
        assert f"offload={spec['offload']}" in applied
    for flag in ("vae_tiling", "vae_slicing", "attention_slicing", "forward_chunking"):
        if spec[flag]:  # applied, or recorded as skipped where the pipeline cannot take it
            assert any(a == flag or a.startswith(f"{flag}:skipped") for a in applied), (flag, applied)
    pipe = lab.pipelines.get(next(iter(lab.pipelines.keys()))).pipe
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    where = {p.device.type for p in denoiser.parameters()}
    if spec["offload"] == "none":
        assert where == {"cuda"}
    elif spec["offload"] in ("model", "sequential"):
        assert "cuda" not in where, where  # back off the GPU after the call (group offload keeps no promise)
    by_dtype: dict = {}
    for p in denoiser.parameters():  # most weights; diffusers keeps a few norms and embedders in fp32 (Wan)
        by_dtype[p.dtype] = by_dtype.get(p.dtype, 0) + p.numel()
    assert max(by_dtype, key=by_dtype.get) == getattr(torch, spec["dtype"]), by_dtype
    px = np.stack([np.asarray(f) for f in (result.images or result.frames)])
    assert np.isfinite(px).all() and px.std() > 0
    lab.pipelines.clear()
    _free()


def _peak_reserved(lab: Lab, plan: Plan) -> float:
    """Bytes the caching allocator held at most while `plan` rendered from nothing (no cached pipeline)."""
    import torch

    lab.pipelines.clear()
    _free()
    result = lab.render(plan)
    assert result.status == "finished"
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_reserved()
    lab.pipelines.clear()
    _free()
    return peak


def test_a_real_cuda_out_of_memory_degrades_to_a_cheaper_rung(folders, project, monkeypatch):
    """Each rung's peak is measured first; then the process's share of the card is capped between the first rung's
    peak and that of a clearly cheaper one, and the same render, started on the first rung, runs out of memory
    there for real and finishes on a rung below it. The run records every attempt."""
    import json

    import torch

    family = "sdxl"  # its second rung differs from the first only by a tiled VAE: decode memory, not attention
    # a large picture for a tiny model: the untiled decode (the VAE upcast to fp32) dominates the peak
    plan = Plan(prompt="a red circle", model=str(folders(family)), seed=1, guidance=2.0, width=768, height=768,
                steps=2)
    rungs = _gpu_rungs(family)
    lab = Lab(project)
    peaks: list[tuple[str, float]] = []
    for index, spec in rungs:
        _force(monkeypatch, family, index)
        peaks.append((spec["name"], _peak_reserved(lab, plan)))
        if len(peaks) > 1 and peaks[-1][1] < 0.8 * peaks[0][1]:
            break
    first, full = peaks[0]
    cheaper = [(n, p) for n, p in peaks[1:] if p < 0.8 * full]
    mib = {n: round(p / 2**20, 1) for n, p in peaks}
    assert cheaper, f"no GPU rung of {family} needs clearly less than {first} at 768²: peaks in MiB {mib}"
    cap = (cheaper[0][1] + full) / 2
    # the render may stop on any later rung whose peak is clearly under the cap; one near it may go either way
    fits = [n for n, p in peaks[1:] if p < 0.95 * cap]
    maybe = [n for n, p in peaks[1:] if 0.95 * cap <= p < 1.05 * cap]
    total = torch.cuda.get_device_properties(0).total_memory
    _force(monkeypatch, family, rungs[0][0])
    lab.pipelines.clear()
    _free()
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        result = lab.render(plan)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        lab.pipelines.clear()
        _free()
    tried = [a.strategy for a in result.attempts]
    assert tried[0] == first and result.attempts[0].outcome.startswith("OutOfMemoryError"), (tried, mib)
    assert result.strategy.name in fits + maybe and result.strategy.name != first, (result.strategy.name, mib)
    assert result.attempts[-1].outcome == "ok" and tried[-1] == result.strategy.name
    px = np.asarray(result.images[0])
    assert np.isfinite(px).all() and px.std() > 0
    recorded = json.loads(lab.tracker.client.get_run(result.run_id).data.tags["labkit.attempts"])
    assert [a["strategy"] for a in recorded] == tried and "OutOfMemoryError" in recorded[0]["outcome"]
