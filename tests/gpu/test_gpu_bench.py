"""`labkit bench gpu` on a real CUDA device, on the tiny models (skipped without CUDA): the VRAM columns are filled,
every rung is timed against eager, and the suggested strategies.toml lines name the GPU."""

from __future__ import annotations

import pytest

from labkit.bench_gpu import EAGER, GpuBenchConfig, read_table, run_gpu_bench, suggest_table
from labkit.hardware import strategy_table

pytestmark = pytest.mark.gpu


def test_the_bench_measures_vram_and_speed_of_every_rung_on_cuda(project, tmp_path):
    import torch

    report = run_gpu_bench(GpuBenchConfig(families=("sd15",), out=tmp_path / "out", tiny=True), root=project)
    assert report.device == "cuda" and not report.failed
    rows = read_table(report.csv_path)
    ladder = [r["name"] for r in strategy_table().family("sd15")["ladder"] if r["device"] == "gpu"]
    assert [r["rung"] for r in rows] == [EAGER] + ladder
    name = torch.cuda.get_device_name()
    for r in rows:
        assert r["gpu"] == name and r["speedup_vs_eager"] > 0 and r["it_per_s"] > 0, r
        assert 0 < r["peak_allocated_gb"] <= r["peak_reserved_gb"], r
        # NVML's figure for this process (the CUDA context included); where NVML cannot see it, the note says why
        assert (r["nvml_process_gb"] or 0) > 0.1 or "nvml:" in r["note"], r
    assert rows[0]["dtype"] == "float16"
    text = suggest_table(report.csv_path)
    lines = [line for line in text.splitlines() if line.startswith("est_peak_vram_gb")]
    assert len(lines) == len(ladder) and all(f"measured: {name}" in line for line in lines)
