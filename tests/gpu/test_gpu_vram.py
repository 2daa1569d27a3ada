"""Live VRAM and the doctor on a real CUDA device (skipped without CUDA): a render records the allocator's peaks and
one VRAM sample per step, the Hardware panel's probe reads the card, and a real CUDA out-of-memory is explained."""

from __future__ import annotations

import pytest

from labkit.controller.plan import Plan
from labkit.errors import OutOfMemory
from labkit.hardware import strategy_table
from labkit.lab import Lab

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    from labkit.testing import build_tiny

    return build_tiny("sd15", tmp_path_factory.mktemp("tiny") / "sd15")


def test_cuda_render_records_peak_and_per_step_vram(sd15, project):
    import torch

    lab = Lab(project)
    assert lab.hardware.device == "cuda"
    r = lab.render(Plan(prompt="a red circle", model=str(sd15), seed=1, width=64, height=64, steps=4))
    v = r.vram
    assert 0 < v["peak_allocated_gb"] <= v["peak_reserved_gb"]
    assert len(v["allocated_gb"]) == len(v["reserved_gb"]) == len(r.timings["step_s"]) >= 4
    assert all(0 < a <= v["peak_allocated_gb"] + 1e-9 for a in v["allocated_gb"])
    client = lab.tracker.client
    metrics = client.get_run(r.run_id).data.metrics
    assert metrics["vram/peak_allocated_gb"] == pytest.approx(v["peak_allocated_gb"])
    assert metrics["vram/peak_reserved_gb"] == pytest.approx(v["peak_reserved_gb"])
    assert len(client.get_metric_history(r.run_id, "vram/allocated_gb")) == len(v["allocated_gb"])
    torch.cuda.empty_cache()


def test_gpu_now_reads_the_card(project):
    from labkit.probes import gpu_now

    lab = Lab(project)
    now = gpu_now()
    assert now["available"] and now["source"] in ("nvml", "torch")
    assert now["total_gb"] == pytest.approx(lab.hardware.vram_total_gb, rel=0.02)
    assert 0 < now["used_gb"] < now["total_gb"] and now["free_gb"] > 0
    if now["source"] == "nvml":
        assert 0 <= now["utilisation_pct"] <= 100


def test_a_real_cuda_out_of_memory_is_recorded_and_explained(sd15, project, monkeypatch):
    """A UNet that asks the allocator for far more than the card has: torch's own OutOfMemoryError on every GPU
    rung, then the doctor names the stage, the cheapest GPU rung and the card's memory."""
    import torch
    from diffusers import UNet2DConditionModel

    real = UNet2DConditionModel.forward

    def greedy(self, *a, **k):
        torch.empty(2**40, dtype=torch.uint8, device="cuda")  # 1 TiB
        return real(self, *a, **k)

    monkeypatch.setattr(UNet2DConditionModel, "forward", greedy)
    lab = Lab(project)
    with pytest.raises(OutOfMemory):
        lab.render(Plan(prompt="a red circle", model=str(sd15), seed=1, width=64, height=64, steps=2))
    (run,) = lab.tracker.search_runs()
    e = lab.explain_run(run.info.run_id)
    assert e["failed"] and e["oom"] and e["stage"] == "denoise" and e["device"] == "gpu"
    gpu_rungs = [r["name"] for r in strategy_table().family("sd15")["ladder"] if r["device"] == "gpu"]
    assert e["strategy"] == gpu_rungs[-1] and e["tried"][-1] == gpu_rungs[-1]
    assert e["vram"]["total_gb"] == pytest.approx(lab.hardware.vram_total_gb, rel=0.02)
    assert any("cheapest GPU rung" in f for f in e["fixes"])
    torch.cuda.empty_cache()
