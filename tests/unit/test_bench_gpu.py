"""`labkit bench gpu`'s pieces that need no pipeline: the table it writes and reads back, the strategies.toml lines
it suggests from a GPU run's CSV, the rungs and sizes it measures, and its refusals."""

from __future__ import annotations

import csv

import pytest

from labkit.bench_gpu import (
    COLUMNS,
    EAGER,
    FAMILY_MODELS,
    GpuBenchConfig,
    family_case,
    gpu_rungs,
    half_dtype,
    markdown,
    read_table,
    suggest_table,
    write_table,
)
from labkit.errors import InvalidParameter
from labkit.hardware import strategy_table


def _row(rung, **kw):
    row = {c: None for c in COLUMNS}
    row.update(family="sdxl", rung=rung, dtype="float16", offload="none", size="1024x1024", frames=0, steps=25,
               gpu="NVIDIA H200", note="")
    row.update(kw)
    return row


GPU_ROWS = [
    _row(EAGER, peak_allocated_gb=10.21, peak_reserved_gb=11.5, nvml_process_gb=12.04, load_s=3.1, s_per_output=2.0,
         it_per_s=14.2, speedup_vs_eager=1.0, note="plain diffusers"),
    _row("gpu-full", est_peak_vram_gb=11.0, peak_allocated_gb=9.87, peak_reserved_gb=10.92, nvml_process_gb=11.43,
         load_s=2.5, s_per_output=1.6, it_per_s=16.0, speedup_vs_eager=1.25),
    _row("gpu-sequential", offload="sequential", est_peak_vram_gb=3.0, peak_allocated_gb=1.2, peak_reserved_gb=1.81,
         load_s=4.0, s_per_output=20.0, it_per_s=1.3, speedup_vs_eager=0.1,
         note="nvml: this process is not in the GPU's process list (another PID namespace?)"),
    _row("gpu-group-offload", offload="group", est_peak_vram_gb=4.0, note="out of memory"),
]


def test_the_table_round_trips_through_csv_and_markdown(tmp_path):
    csv_path, md_path = tmp_path / "t.csv", tmp_path / "t.md"
    write_table(GPU_ROWS, csv_path, md_path, title="bench on NVIDIA H200")
    with open(csv_path, newline="") as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    back = read_table(csv_path)
    assert back == GPU_ROWS  # numbers come back as numbers, empty cells as None
    md = md_path.read_text().splitlines()
    assert md[0] == "# bench on NVIDIA H200"
    header = md[2].strip("| ").split(" | ")
    assert header == [c for c in COLUMNS if c != "gpu"]
    assert len(md) == 4 + len(GPU_ROWS)
    oom = next(line for line in md if "gpu-group-offload" in line)
    assert "out of memory" in oom and "| 4 |" in oom
    assert not list(tmp_path.glob("*.tmp"))  # written under a temporary name, then renamed


def test_markdown_keeps_a_pipe_in_a_note_from_breaking_the_row():
    (line,) = markdown([_row("gpu-full", note="a | b")]).splitlines()[2:]
    assert line.count("|") == len(COLUMNS)  # one column fewer (gpu) plus the two ends


def test_suggested_lines_name_the_gpu_the_source_and_the_command(tmp_path):
    csv_path = tmp_path / "bench_gpu.csv"
    write_table(GPU_ROWS, csv_path, tmp_path / "t.md")
    text = suggest_table(csv_path, command="labkit bench gpu --families sdxl")
    lines = text.splitlines()
    values = [line for line in lines if line.startswith("est_peak_vram_gb")]
    # NVML's process figure when known (11.43 -> 11.5, rounded up), else torch's peak reserved (1.81 -> 1.9)
    assert values[0].startswith("est_peak_vram_gb = 11.5  # measured: NVIDIA H200, NVML process peak")
    assert values[1].startswith("est_peak_vram_gb = 1.9  # measured: NVIDIA H200, torch peak reserved")
    assert all("1024x1024" in v and "labkit bench gpu --families sdxl" in v for v in values)
    assert len(values) == 2  # no line for the baseline, none for the rung that ran out of memory
    assert "# [families.sdxl] rung 'gpu-group-offload': not measured (out of memory)" in lines
    assert lines.index("# [families.sdxl] rung 'gpu-full'") == lines.index(values[0]) - 1
    import tomllib

    assert tomllib.loads("\n".join(values[:1]))["est_peak_vram_gb"] == 11.5  # pastes as valid TOML


def test_a_cpu_run_suggests_nothing(tmp_path):
    rows = [_row("gpu-full", gpu="", s_per_output=0.2, speedup_vs_eager=1.0, note="no CUDA: ran on the CPU")]
    write_table(rows, tmp_path / "c.csv", tmp_path / "other.md")
    text = suggest_table(tmp_path / "c.csv")
    assert "est_peak_vram_gb =" not in text and "not measured (no CUDA" in text
    assert "`labkit bench gpu --families sdxl`" in text.splitlines()[0]  # no markdown beside it: from the rows


def test_the_command_comes_from_the_markdown_title_without_the_paths(tmp_path):
    write_table(GPU_ROWS, tmp_path / "bench_gpu.csv", tmp_path / "bench_gpu.md",
                title="labkit bench gpu --families sdxl --steps 25 --out /tmp/x --root=/tmp/p on NVIDIA H200")
    text = suggest_table(tmp_path / "bench_gpu.csv")
    assert "`labkit bench gpu --families sdxl --steps 25`" in text.splitlines()[0]
    assert all(line.endswith("labkit bench gpu --families sdxl --steps 25") for line in text.splitlines()
               if line.startswith("est_peak_vram_gb"))


def test_a_csv_that_is_not_a_bench_table_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidParameter, match="not a `labkit bench gpu` table") as e:
        read_table(path)
    assert "bench_gpu.csv" in e.value.fix


def test_every_gpu_rung_of_each_ladder_is_measured_in_order():
    table = strategy_table()
    for family in FAMILY_MODELS:
        ladder = table.family(family)["ladder"]
        rungs = gpu_rungs(family, tier="24")
        assert [s.name for s in rungs] == [r["name"] for r in ladder if r["device"] == "gpu"]
        assert rungs and all(s.device == "gpu" and s.tier == "24" for s in rungs)


def test_the_baseline_is_plain_half_precision_not_the_fast_rungs_bfloat16():
    """The issue's baseline is diffusers eager in fp16: sd15 and sdxl start their ladders on the bf16 speed-first
    rung, which is measured against it, not taken for it; Wan runs in bf16 on every rung."""
    for family in ("sd15", "sdxl"):
        assert gpu_rungs(family, tier="24")[0].dtype == "bfloat16"  # the fast rung tops the ladder
        assert half_dtype(family) == "float16"
    assert half_dtype("svd") == "float16" and half_dtype("t2v") == "bfloat16"


def test_the_sizes_are_the_catalogue_defaults_or_tiny():
    from labkit.catalog import Catalog

    catalog = Catalog.load()
    sdxl = family_case("sdxl", catalog, tiny=False, steps=None)
    assert (sdxl.width, sdxl.height, sdxl.frames, sdxl.steps) == (1024, 1024, 0, 30)
    svd = family_case("svd", catalog, tiny=False, steps=20)
    assert (svd.size, svd.frames, svd.steps) == ("1024x576", 25, 20)  # SVD-XT: 25 frames
    wan = family_case("t2v", catalog, tiny=False, steps=None)
    assert (wan.size, wan.frames) == ("832x480", 81)
    tiny = family_case("sd15", catalog, tiny=True, steps=None)
    assert tiny.width <= 64 and tiny.steps <= 4


def test_the_config_names_a_bad_family_and_reads_wan_as_t2v():
    assert GpuBenchConfig(families=("wan", "sd15", "t2v")).families == ("t2v", "sd15")
    with pytest.raises(InvalidParameter, match="sd3") as e:
        GpuBenchConfig(families=("sd15", "sd3"))
    assert "sd15, sdxl, svd, t2v" in e.value.fix
    with pytest.raises(InvalidParameter, match="steps"):
        GpuBenchConfig(steps=0)
    for bad in (0, -5.0):
        with pytest.raises(InvalidParameter, match="time limit") as e:
            GpuBenchConfig(time_limit_s=bad)
        assert "--time-limit" in e.value.fix
