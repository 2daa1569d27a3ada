"""The doctor's advice for a failed render, from the record a failing render writes (`failure_record`): built
here from a simulated GPU machine and a hand-set trace, no pipeline and no MLflow run."""

from __future__ import annotations

import dataclasses

import pytest

from labkit.diagnose import Trace, failure_record, oom_fixes, smaller_models
from labkit.errors import OutOfMemory
from labkit.hardware import HardwareProfile, choose, strategy_table
from labkit.plan import Plan
from labkit.results import Attempt


@pytest.fixture
def gpu_lab(project):
    from labkit.lab import Lab

    return Lab(project, hardware=dataclasses.replace(HardwareProfile.simulated(24), vram_free_gb=20.0))


def _record(lab, family: str, rung_name: str, stage: str, plan: Plan, tried: list[str], vram=None, model="m"):
    names = [r["name"] for r in strategy_table().family(family)["ladder"]]
    trace = Trace()
    trace.model, trace.family, trace.stage = model, family, stage
    trace.strategy = strategy_table().strategy(family, names.index(rung_name), lab.hardware.tier)
    trace.attempts = [Attempt(model, name, stage, "OutOfMemoryError: CUDA out of memory") for name in tried]
    record = failure_record(lab, plan, trace, OutOfMemory("Out of memory.", value=rung_name, fix="lower the size"))
    if vram is not None:
        record["vram"] = vram
    return record


def test_gpu_oom_at_decode_names_the_rung_size_and_the_vram_others_hold(gpu_lab):
    start = choose("sdxl", gpu_lab.hardware).name
    ladder = [r["name"] for r in strategy_table().family("sdxl")["ladder"] if r["device"] == "gpu"]
    plan = Plan(prompt="a cat", width=1024, height=1024, steps=30)
    f = _record(gpu_lab, "sdxl", ladder[-1], "decode", plan, ladder[ladder.index(start):],
                vram={"others_gb": 6.5, "total_gb": 24.0, "free_gb": 0.2})
    assert f["oom"] and f["device"] == "gpu" and f["hardware"]["vram_free_gb"] == 20.0
    fixes = oom_fixes(gpu_lab, f)
    text = "\n".join(fixes)
    assert f"{ladder[-1]!r} is already the cheapest GPU rung of sdxl" in text and "cpu-full" in text
    assert "6.50 GB of 24.0 GB were in use by others" in text and "nvidia-smi" in text
    assert "only 20.0 of 24.0 GB VRAM were free" in text
    assert "--size 720x720 (was 1024x1024)" in text and "VAE decode" in text
    assert "a GPU with more memory" in fixes[-1]


def test_untried_cheaper_rungs_are_named(gpu_lab):
    f = _record(gpu_lab, "sd15", "gpu-full", "denoise", Plan(prompt="x", width=512, height=512, steps=20, count=4),
                ["gpu-full"])
    text = "\n".join(oom_fixes(None, f))
    assert "cheaper gpu rungs were not tried: gpu-sliced, gpu-model-offload, gpu-sequential" in text
    assert "--n 1 (was 4)" in text and "--size 360x360 (was 512x512)" in text


def test_video_oom_suggests_fewer_frames_and_load_oom_suggests_no_size(gpu_lab):
    plan = Plan(prompt="", modality="video", width=1024, height=576, steps=25, frames=25, image="x.png")
    f = _record(gpu_lab, "svd", "gpu-sequential", "denoise", plan, ["gpu-sequential"])
    assert f["frames"] == 25 and "--frames 12 (was 25)" in "\n".join(oom_fixes(None, f))
    f = _record(gpu_lab, "sdxl", "gpu-sequential", "load", Plan(prompt="x", width=1024, height=1024, steps=30),
                ["gpu-sequential"])
    text = "\n".join(oom_fixes(None, f))
    assert "weights alone did not fit" in text and "--size" not in text


def test_smaller_models_are_catalogue_models_of_a_cheaper_family(gpu_lab):
    f = _record(gpu_lab, "sdxl", "gpu-sequential", "denoise", Plan(prompt="x", width=1024, height=1024, steps=30),
                ["gpu-sequential"], model="sdxl")
    smaller = smaller_models(gpu_lab, f)
    assert smaller and all("sdxl" not in s and "toy" not in s for s in smaller)
    sdxl_min = min(r["est_peak_vram_gb"] for r in strategy_table().family("sdxl")["ladder"] if r["device"] == "gpu")
    assert all(float(s.rsplit("~", 1)[1].split(" ")[0]) < sdxl_min for s in smaller)
