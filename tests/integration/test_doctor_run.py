"""`labkit doctor --run`: a render that runs out of memory (injected at a chosen stage of a real tiny pipeline) is
recorded with what the doctor needs, and the doctor names the stage, the rung and a concrete fix. Live VRAM:
with CUDA (faked here) a render records peak and per-step VRAM; without it, nothing vram/*."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from labkit.errors import InvalidParameter, OutOfMemory
from labkit.testing import build_tiny_sd15


@pytest.fixture(scope="module")
def sd15(tmp_path_factory) -> Path:
    return build_tiny_sd15(tmp_path_factory.mktemp("tiny") / "sd15")


def _oom(*_a, **_k):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _failed_run(lab, search_runs):
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.status == "FAILED"
    return run


def test_oom_while_decoding_is_recorded_and_explained(sd15, lab, monkeypatch, search_runs, one_thread):
    from diffusers import AutoencoderKL

    monkeypatch.setattr(AutoencoderKL, "decode", _oom)  # every rung runs out in the VAE decode
    with pytest.raises(OutOfMemory):
        lab.generate("a red circle", model=str(sd15), steps=2, size=(32, 32), seed=1)
    run = _failed_run(lab, search_runs)
    failure = json.loads(run.data.tags["labkit.failure"])
    assert failure["stage"] == "decode" and failure["family"] == "sd15"
    assert failure["tried"] == ["cpu-full", "cpu-lean"] and failure["strategy"] == "cpu-lean"
    assert (failure["width"], failure["height"], failure["steps"]) == (32, 32, 2)
    assert failure["hardware"]["ram_total_gb"] == lab.hardware.ram_total_gb
    assert run.data.tags["strategy.name"] == "cpu-lean" and run.data.tags["labkit.failure.stage"] == "decode"

    e = lab.explain_run(run.info.run_id)
    assert e["failed"] and e["oom"] and e["stage"] == "decode" and e["strategy"] == "cpu-lean" and e["rung"] == 6
    assert "while decoding" in e["summary"] and "cpu-full → cpu-lean" in e["summary"]
    assert any("--size 16x16 (was 32x32)" in f for f in e["fixes"]), e["fixes"]
    assert any("RAM" in f for f in e["fixes"])  # on the CPU: what else holds memory


def test_oom_while_denoising_names_the_step_and_the_batch(sd15, lab, monkeypatch, search_runs, one_thread):
    from diffusers import UNet2DConditionModel

    real = UNet2DConditionModel.forward
    calls = itertools.count(1)

    def second_step_fails(self, *a, **k):  # step 1 of each rung runs, step 2 runs out
        if next(calls) % 2 == 0:
            _oom()
        return real(self, *a, **k)

    monkeypatch.setattr(UNet2DConditionModel, "forward", second_step_fails)
    with pytest.raises(OutOfMemory):
        lab.generate("a red circle", model=str(sd15), steps=2, size=(32, 32), seed=1, n=2)
    run = _failed_run(lab, search_runs)
    attempts = json.loads(run.data.tags["labkit.attempts"])
    n = json.loads(run.data.tags["labkit.failure"])["total_steps"]  # the scheduler's own count (PNDM: 3 for 2)
    assert n >= 2 and [a["stage"] for a in attempts] == [f"denoise (1/{n} steps done)"] * 2
    e = lab.explain_run(run.info.run_id)
    assert e["stage"] == "denoise" and e["step"] == 1 and f"step 2 of {n}" in e["summary"]
    assert any("--n 1 (was 2)" in f for f in e["fixes"])


def test_a_failure_that_is_not_out_of_memory_is_explained_without_memory_advice(sd15, lab, monkeypatch,
                                                                                  search_runs, one_thread):
    from diffusers import AutoencoderKL

    def broken(*_a, **_k):
        raise ValueError("latents have the wrong shape")

    monkeypatch.setattr(AutoencoderKL, "decode", broken)
    with pytest.raises(ValueError):
        lab.generate("a red circle", model=str(sd15), steps=1, size=(32, 32), seed=1)
    run = _failed_run(lab, search_runs)
    e = lab.explain_run(run.info.run_id)
    assert not e["oom"] and e["error_type"] == "ValueError" and e["stage"] == "decode"
    assert e["strategy"] == "cpu-full" and e["tried"] == []  # no out-of-memory, so no degrade
    assert "ValueError while decoding" in e["summary"] and "wrong shape" in e["error"]
    assert e["fixes"] == ["read the traceback in the run's artifact error.txt (MLflow UI: `labkit ui`)."]


def test_cli_doctor_run_explains_a_failed_render_as_text_and_json(sd15, lab, monkeypatch, search_runs, cli_env):
    from diffusers import AutoencoderKL

    from tests.integration.test_cli import labkit

    monkeypatch.setattr(AutoencoderKL, "decode", _oom)
    with pytest.raises(OutOfMemory):
        lab.generate("a red circle", model=str(sd15), steps=1, size=(48, 32), seed=1)
    run_id = _failed_run(lab, search_runs).info.run_id
    text = labkit("doctor", "--run", run_id, env=cli_env).stdout
    assert f"Run {run_id}" in text and "FAILED" in text
    assert "Out of memory while decoding the latents (VAE) on rung 'cpu-lean'" in text
    assert "What to change:" in text and "--size 32x16 (was 48x32)" in text
    data = json.loads(labkit("doctor", "--run", run_id, "--json", env=cli_env).stdout)
    assert data["status"] == "FAILED" and data["stage"] == "decode" and data["tried"] == ["cpu-full", "cpu-lean"]
    assert data["error_type"] == "OutOfMemory" and data["fixes"]


def test_doctor_on_a_finished_run_says_so_with_its_rung_and_peak(sd15, lab, one_thread):
    from labkit.diagnose import explanation_text

    r = lab.generate("a red circle", model=str(sd15), steps=1, size=(32, 32), seed=1)
    e = lab.explain_run(r.run_id)
    assert not e["failed"] and e["status"] == "FINISHED" and "did not fail" in e["summary"]
    assert e["strategy"] == "cpu-full" and e["rung"] == 5 and e["peak_memory_gb"]["peak_rss_gb"] > 0
    text = explanation_text(e)
    assert "cpu-full" in text and "peak memory: peak_rss_gb" in text and "What to change" not in text


def test_unknown_run_id_is_a_clear_error(lab, cli_env):
    from tests.integration.test_cli import labkit

    with pytest.raises(InvalidParameter, match="no run 'deadbeef'") as err:
        lab.explain_run("deadbeef")
    assert "lab.runs()" in err.value.fix
    bad = labkit("doctor", "--run", "deadbeef", env=cli_env, check=False)
    assert bad.returncode != 0 and "deadbeef" in bad.stderr and "Traceback" not in bad.stderr


class _FakeCuda:
    """torch.cuda's memory counters as a CUDA run would see them: allocations grow by 0.25 GiB per read."""

    def __init__(self):
        self.allocated = 0

    def memory_allocated(self, *_a):
        self.allocated += 2**28
        return self.allocated

    def memory_reserved(self, *_a):
        return self.allocated + 2**29

    def max_memory_allocated(self, *_a):
        return self.allocated + 2**28

    def max_memory_reserved(self, *_a):
        return self.allocated + 2**30


def test_cuda_run_logs_peak_and_per_step_vram(sd15, lab, monkeypatch, one_thread):
    fake = _FakeCuda()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # the toy renders on a CPU rung here
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    r = lab.generate("a red circle", model=str(sd15), steps=3, size=(32, 32), seed=1)
    client = lab.tracker.client
    metrics = client.get_run(r.run_id).data.metrics
    steps = len(r.timings["step_s"])  # one sample per denoising step the scheduler ran
    assert steps >= 3
    series = client.get_metric_history(r.run_id, "vram/allocated_gb")
    assert [m.value for m in sorted(series, key=lambda m: m.step)] == pytest.approx([0.25 * i for i in
                                                                                     range(1, steps + 1)])
    assert len(client.get_metric_history(r.run_id, "vram/reserved_gb")) == steps
    assert metrics["vram/peak_allocated_gb"] == pytest.approx(0.25 * steps + 0.25)
    assert metrics["vram/peak_reserved_gb"] == pytest.approx(0.25 * steps + 1.0)
    assert r.vram["peak_allocated_gb"] == pytest.approx(0.25 * steps + 0.25)


def test_without_cuda_no_vram_metric_is_logged(sd15, lab, one_thread):
    assert not torch.cuda.is_available()
    r = lab.generate("a red circle", model=str(sd15), steps=2, size=(32, 32), seed=1)
    metrics = lab.tracker.client.get_run(r.run_id).data.metrics
    assert not [k for k in metrics if k.startswith("vram/")] and r.vram == {}
    assert metrics["memory.peak_rss_gb"] > 0
