"""`labkit bench gpu`: every GPU rung of each family's ladder, measured on the real architectures.

For each family (sd15, sdxl, svd = SVD-XT, t2v = Wan 2.1 T2V 1.3B) the bench builds the published architecture
with random weights (`labkit.testing.build_full`: same memory and speed as the real model, no hub), then in one
process and on the same folder measures

- the baseline: plain diffusers, eager, half precision (``DiffusionPipeline.from_pretrained(folder, dtype=…)
  .to("cuda")`` and a default call; float16, bfloat16 for Wan), and
- every GPU rung of the family's ladder in `strategies.toml`, loaded through labkit's loader: the speed-first
  rung first, then from the cheapest rung up, so that a time limit stops it on the rungs no goal names,

and reports per row: peak VRAM (torch's peak allocated and reserved, NVML's figure for this process), load time,
the 2-step warm-up call's time (where a compiling rung compiles), seconds per image or clip, denoising it/s, and
the speed-up against the baseline (its seconds ÷ the rung's). A rung that runs out of memory is a row saying so;
the bench goes on. The table is written (CSV and markdown, in ladder order, the speed-ups included)
after every row, so a bench stopped by a timeout leaves what it measured; at the end one MLflow run holds the
table and a plot per family (peak VRAM per rung against the table's estimate, and the speed-ups).

Without CUDA, ``tiny=True`` runs the same code path on the tiny models on the CPU: each rung's steps are applied
for the CPU in float32 (offload needs a GPU), the baseline is fp32, and the VRAM columns are empty ("no CUDA").
That is what CI runs; the figures mean something only on a GPU.

GB in the table are GiB (2**30 bytes), as torch and `HardwareProfile` count them.

`suggest_table(csv)` turns a GPU run's CSV into the `est_peak_vram_gb` lines for `strategies.toml`.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import io
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter, OutOfMemory, is_out_of_memory

#: The families the bench knows, and the catalogue entry whose defaults (size, steps, frames) it measures at.
FAMILY_MODELS: Mapping[str, str] = {"sd15": "sd15", "sdxl": "sdxl", "svd": "svd-xt", "t2v": "wan2.1-t2v-1.3b"}

#: `--tiny` sizes: the tiny models render these in well under a second a step on a CPU.
TINY_CASES: Mapping[str, Mapping[str, int]] = {
    "sd15": {"width": 64, "height": 64, "frames": 0, "steps": 3},
    "sdxl": {"width": 64, "height": 64, "frames": 0, "steps": 3},
    "svd": {"width": 64, "height": 64, "frames": 4, "steps": 3},
    "t2v": {"width": 32, "height": 32, "frames": 5, "steps": 3},
}

COLUMNS = ("family", "rung", "dtype", "offload", "size", "frames", "steps", "est_peak_vram_gb", "peak_allocated_gb",
           "peak_reserved_gb", "nvml_process_gb", "load_s", "warmup_s", "s_per_output", "it_per_s", "speedup_vs_eager",
           "gpu", "note")

#: The baseline row's rung name.
EAGER = "eager"
OOM_NOTE = "out of memory"
#: The note of a row the time limit left out (`GpuBenchConfig.time_limit_s`).
NOT_RUN_NOTE = "not run: the bench's time limit was reached"
GB = 2**30


@dataclass(frozen=True)
class GpuBenchConfig:
    """What one `labkit bench gpu` measures.

    families: the families, in order (names of `FAMILY_MODELS`; "wan" is read as "t2v").
    out: the folder the table goes to (None: ``outputs/bench-gpu/<time>`` in the project).
    tiny: the tiny models at `TINY_CASES` sizes instead of the published architectures (the CPU path).
    steps: denoising steps (None: the catalogue's default, or `TINY_CASES` with ``tiny``).
    warmup: one short call (2 steps) before each timed call, so first-call set-up is not timed.
    prompt: the prompt of every call.
    time_limit_s: no row starts after this many seconds from the bench's start; the rows left are in the table
    as not run (`NOT_RUN_NOTE`), and the MLflow run is still written (None: no limit).
    """

    families: tuple[str, ...] = tuple(FAMILY_MODELS)
    out: Path | None = None
    tiny: bool = False
    steps: int | None = None
    warmup: bool = True
    prompt: str = "a red circle on the left"
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        names = tuple("t2v" if f == "wan" else f for f in self.families)
        bad = [f for f in names if f not in FAMILY_MODELS]
        if bad or not names:
            raise InvalidParameter(f"Unknown family for the GPU bench: {', '.join(bad) or '(none given)'}.",
                                   value=",".join(bad), fix=f"use some of: {', '.join(FAMILY_MODELS)}.")
        if self.steps is not None and self.steps < 1:
            raise InvalidParameter(f"steps must be at least 1, got {self.steps}.", value=self.steps,
                                   fix="pass --steps 1 or more.")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise InvalidParameter(f"The time limit must be more than 0 seconds, got {self.time_limit_s}.",
                                   value=self.time_limit_s, fix="pass --time-limit 1 or more, or leave it out.")
        object.__setattr__(self, "families", tuple(dict.fromkeys(names)))


@dataclass(frozen=True)
class Case:
    """One family's call: size, frames (0 for an image), steps, guidance, fps."""

    family: str
    width: int
    height: int
    frames: int
    steps: int
    guidance: float
    fps: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class GpuBenchReport:
    """What a bench produced: its rows (dicts with `COLUMNS`), where the table went, the MLflow run."""

    rows: list[dict[str, Any]]
    csv_path: Path
    markdown_path: Path
    run_id: str | None
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Rows that broke for another reason than running out of memory."""
        return [r for r in self.rows if str(r.get("note", "")).startswith("failed")]

    @property
    def not_run(self) -> list[dict[str, Any]]:
        """Rows the time limit left out."""
        return [r for r in self.rows if r.get("note") == NOT_RUN_NOTE]


def family_case(family: str, catalog: Any, *, tiny: bool, steps: int | None) -> Case:
    """The call the bench makes for `family`: the catalogue entry's defaults, or `TINY_CASES` with ``tiny``."""
    entry = catalog.get(FAMILY_MODELS[family])
    if tiny:
        t = TINY_CASES[family]
        return Case(family, t["width"], t["height"], t["frames"], steps or t["steps"], entry.default_guidance,
                    entry.default_fps)
    width, height = entry.default_size
    return Case(family, width, height, entry.default_frames, steps or entry.default_steps, entry.default_guidance,
                entry.default_fps)


def gpu_rungs(family: str, *, tier: str, table: Any = None) -> list[Any]:
    """Every GPU rung of `family`'s ladder, in ladder order, as `MemoryStrategy` objects for `tier`."""
    from labkit.hardware import strategy_table

    table = table or strategy_table()
    ladder = table.family(family)["ladder"]
    return [table.strategy(family, i, tier) for i, r in enumerate(ladder) if r["device"] == "gpu"]


def half_dtype(family: str, table: Any = None) -> str:
    """The baseline's dtype: the half precision of the family's first GPU rung that does not compile (float16;
    bfloat16 for Wan). The speed-first rung is left out: its bfloat16 is one of the things measured against it."""
    from labkit.hardware import strategy_table

    ladder = (table or strategy_table()).family(family)["ladder"]
    return next((r["dtype"] for r in ladder
                 if r["device"] == "gpu" and r["dtype"] != "float32" and not r.get("compile")), "float16")


# -- measuring ----------------------------------------------------------------------------------------


class Nvml:
    """NVML's memory figure for this process (what `nvidia-smi` shows: the CUDA context and the allocator's
    cache included). `reason` says why it is None: no nvidia-ml-py, no driver, or this process not listed."""

    def __init__(self, cuda: bool):
        self.handle: Any = None
        self.reason = "no CUDA" if not cuda else ""
        if not cuda:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            import torch

            from labkit.probes import nvml_handle

            self.handle = nvml_handle(pynvml, torch.cuda.current_device())
            if self.handle is None:
                self.reason = "nvml: CUDA_VISIBLE_DEVICES names a GPU NVML does not list"
        except ImportError:
            self.reason = "nvml: nvidia-ml-py is not installed"
        except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded and kin
            self.reason = f"nvml: {type(e).__name__}"

    def process_gb(self) -> float | None:
        """This process's GPU memory now (GiB), or None (see `reason`)."""
        if self.handle is None:
            return None
        import pynvml

        try:
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except Exception as e:
            self.reason = f"nvml: {type(e).__name__}"
            return None
        mine = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory is not None]
        if not mine:
            self.reason = "nvml: this process is not in the GPU's process list (another PID namespace?)"
            return None
        return mine[0] / GB


def free_memory(cuda: bool) -> None:
    """What one rung left behind goes before the next: Python's garbage, torch.compile's code and CUDA graphs,
    the allocator's cache, the peaks. The CUDA graphs' private memory pools live as long as the compiled code
    does, and that outlives the pipeline (Dynamo's cache is keyed by the module's class, not the object):
    without the reset every later row would carry the compiled rung's pool in its reserved and NVML figures."""
    gc.collect()
    if cuda:
        import torch

        torch.compiler.reset()
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _call(pipe: Any, case: Case, *, image: Any, prompt: str, steps: int, decode_chunk_size: int,
          on_step: Callable[[int], bool]) -> None:
    """One render of `case` through labkit's call helpers (the same arguments for the baseline and the rungs)."""
    from labkit.pipelines import calls

    common = dict(steps=steps, guidance=case.guidance, width=case.width, height=case.height, seed=0, count=1,
                  on_step=on_step)
    if case.family == "svd":
        calls.run_img2vid(pipe, image=image, frames=case.frames, fps=case.fps, decode_chunk_size=decode_chunk_size,
                          **common)
    elif case.frames:
        calls.run_txt2vid(pipe, prompt=prompt, negative_prompt="", frames=case.frames, **common)
    else:
        calls.run_image(pipe, prompt=prompt, negative_prompt="", **common)


def measure_call(pipe: Any, case: Case, *, cuda: bool, nvml: Nvml, image: Any, prompt: str, warmup: bool,
                 decode_chunk_size: int = 0) -> dict[str, Any]:
    """Time one call of `pipe` (after a 2-step warm-up call when `warmup`): seconds per output, denoising it/s
    from the steps' end times (the first step, which also waits for the prompt encoding, left out), and the
    peaks of torch's allocator and NVML during the timed call."""
    import torch

    warmup_s = None
    if warmup:
        t = time.perf_counter()
        _call(pipe, case, image=image, prompt=prompt, steps=min(2, case.steps), decode_chunk_size=decode_chunk_size,
              on_step=lambda i: False)
        if cuda:
            torch.cuda.synchronize()
        warmup_s = time.perf_counter() - t  # a compiling rung's compile time lands here, apart from the timed call
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    ends: list[float] = []
    nvml_peak = [nvml.process_gb()]

    def on_step(i: int) -> bool:
        if cuda:
            torch.cuda.synchronize()  # a step's end is when its kernels finished, not when they were queued
            nvml_peak.append(nvml.process_gb())
        ends.append(time.perf_counter())
        return False

    start = time.perf_counter()
    _call(pipe, case, image=image, prompt=prompt, steps=case.steps, decode_chunk_size=decode_chunk_size,
          on_step=on_step)
    if cuda:
        torch.cuda.synchronize()
    spent = time.perf_counter() - start
    nvml_peak.append(nvml.process_gb())
    if len(ends) >= 2:
        it_per_s = (len(ends) - 1) / (ends[-1] - ends[0])
    else:
        it_per_s = len(ends) / (ends[0] - start) if ends else None
    out: dict[str, Any] = {"s_per_output": spent, "it_per_s": it_per_s, "warmup_s": warmup_s}
    if cuda:
        seen = [v for v in nvml_peak if v is not None]
        out.update(peak_allocated_gb=torch.cuda.max_memory_allocated() / GB,
                   peak_reserved_gb=torch.cuda.max_memory_reserved() / GB,
                   nvml_process_gb=max(seen) if seen else None)
    return out


def _eager(folder: Path, dtype: str, device: str) -> tuple[Any, float]:
    """Plain diffusers: from_pretrained in `dtype`, moved to `device`; nothing else applied."""
    import torch
    from diffusers import DiffusionPipeline

    from labkit.pipelines.loader import quiet_loading

    start = time.perf_counter()
    with quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=getattr(torch, dtype)).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, time.perf_counter() - start


def measure_family(family: str, folder: Path, case: Case, *, catalog: Any, tier: str, cuda: bool, nvml: Nvml,
                   config: GpuBenchConfig, gpu: str, on_row: Callable[[dict[str, Any]], None],
                   deadline: float | None = None) -> list[dict[str, Any]]:
    """The baseline, then every GPU rung of `family` on the pipeline in `folder`; one row each, handed to
    `on_row` as soon as it is measured. Out of memory on a row is recorded and the next row runs; a row due
    after `deadline` (time.monotonic()) is recorded as not run."""
    from labkit.pipelines.loader import file_hashes, load_pipeline, resolve_model

    device = "cuda" if cuda else "cpu"
    ref = resolve_model(str(folder), catalog, family=family)
    hash_cache: dict[str, Any] = {}
    file_hashes(ref, folder, hash_cache)  # once, before timing: each rung's load time is then comparable
    image = _input_image(case) if family == "svd" else None
    base_dtype = half_dtype(family) if cuda else "float32"
    no_cuda = "" if cuda else "no CUDA: ran on the CPU in float32"
    rows: list[dict[str, Any]] = []

    def row(rung: str, dtype: str, offload: str, est: float | None) -> dict[str, Any]:
        return {**dict.fromkeys(COLUMNS), "family": family, "rung": rung, "dtype": dtype, "offload": offload,
                "size": case.size, "frames": case.frames, "steps": case.steps, "est_peak_vram_gb": est, "gpu": gpu,
                "note": ""}

    def run_one(r: dict[str, Any], load: Callable[[], tuple[Any, float]], chunk: int, notes: list[str]) -> None:
        if deadline is not None and time.monotonic() > deadline:
            r["note"] = NOT_RUN_NOTE
            rows.append(r)
            on_row(r)
            return
        pipe = None
        oom = failed = ""
        try:
            pipe, r["load_s"] = load()
            r.update(measure_call(pipe, case, cuda=cuda, nvml=nvml, image=image, prompt=config.prompt,
                                  warmup=config.warmup, decode_chunk_size=chunk))
        except Exception as e:  # recorded in the row; a failure also in the report's `failed` and the exit status
            if is_out_of_memory(e) or isinstance(e, OutOfMemory):
                oom = OOM_NOTE
            else:
                failed = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        pipe = None  # noqa: F841 - drop the pipeline before freeing the allocator's cache
        free_memory(cuda)
        eager_s = (rows[0] if rows else r)["s_per_output"]  # the baseline is the family's first row
        if eager_s and r["s_per_output"]:
            r["speedup_vs_eager"] = eager_s / r["s_per_output"]
        if cuda and r["nvml_process_gb"] is None and not (oom or failed) and nvml.reason:
            notes.append(nvml.reason)
        r["note"] = "; ".join(n for n in (oom, failed, *notes) if n)
        rows.append(r)
        on_row(r)

    # 1. the baseline: plain diffusers, eager, half precision (fp32 on a CPU)
    base = row(EAGER, base_dtype, "none", None)
    run_one(base, lambda: _eager(folder, base_dtype, device), 0,
            ["plain diffusers from_pretrained(dtype).to(device), default call"] + ([no_cuda] if no_cuda else []))
    # 2. every GPU rung of the ladder, through labkit's loader, in the order that keeps the most when a time
    # limit stops the bench: from the cheapest rung up (the low-VRAM goals, the measured figures that replace
    # strategies.toml's estimates), then the speed-first rung, whose cold compile takes the longest. The table
    # lists them in ladder order (`ladder_order`).
    rungs = gpu_rungs(family, tier=tier)
    for strategy in [s for s in reversed(rungs) if not s.compile] + [s for s in rungs if s.compile]:
        notes = []
        applied = strategy
        if not cuda:
            # compiling a tiny model on a CPU takes a minute and measures nothing the GPU rung does
            off = {"dtype": "float32", **({"compile": False} if strategy.compile else {})}
            applied = dataclasses.replace(strategy, **off, overrides=tuple(f"{k}={v}" for k, v in off.items()))
            notes.append(no_cuda + "".join(f"; {what} not applied" for what, skip in (
                (f"offload={strategy.offload}", strategy.offload != "none"), ("compile", strategy.compile)) if skip))
        r = row(strategy.name, strategy.dtype, strategy.offload, strategy.est_peak_vram_gb)
        run_one(r, lambda s=applied: _labkit_load(load_pipeline, ref, s, device, hash_cache),
                strategy.decode_chunk_size, notes)
    return ladder_order(rows, [family], tier)


def ladder_order(rows: Sequence[dict[str, Any]], families: Sequence[str], tier: str) -> list[dict[str, Any]]:
    """`rows` by family (in `families`' order), each family's baseline first and then its rungs in ladder order."""
    position = {(f, s.name): i for f in families for i, s in enumerate(gpu_rungs(f, tier=tier))}
    return sorted(rows, key=lambda r: (families.index(r["family"]) if r["family"] in families else len(families),
                                       position.get((r["family"], r["rung"]), -1)))


def _labkit_load(load_pipeline: Callable[..., Any], ref: Any, strategy: Any, device: str,
                 hash_cache: dict[str, Any]) -> tuple[Any, float]:
    loaded = load_pipeline(ref, strategy, device, hash_cache=hash_cache)
    return loaded.pipe, loaded.load_s


def _input_image(case: Case) -> Any:
    """SVD's conditioning image: a fixed colour gradient of the case's size (the content does not matter)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:case.height, 0:case.width]
    rgb = np.stack([x * 255 // max(1, case.width - 1), y * 255 // max(1, case.height - 1),
                    np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def build_model(family: str, folder: Path, *, tiny: bool, cuda: bool) -> Path:
    """The family's pipeline folder: the published architecture with random weights, drawn on the GPU in half
    precision (on a CPU that takes minutes), or the tiny model. Wan gets all of UMT5-XXL (11.4 GB in bf16), not
    the 2-layer stand-in: where the text encoder sits on the GPU it sets the peak."""
    from labkit.testing import build_full, build_tiny

    if tiny:
        return build_tiny(family, folder)
    import torch

    path = build_full(family, folder, device="cuda" if cuda else "cpu",
                      dtype=getattr(torch, half_dtype(family)) if cuda else torch.float32,
                      full_text_encoder=family == "t2v")
    free_memory(cuda)
    return path


# -- the whole bench -------------------------------------------------------------------------------------


def run_gpu_bench(config: GpuBenchConfig, *, root: str | Path | None = None, command: str = "labkit bench gpu",
                  echo: Callable[[str], None] | None = None) -> GpuBenchReport:
    """Measure every family of `config` (see the module docstring); write the table after each row, then log one
    MLflow run (experiment "labkit-bench") with the table and a plot per family. `echo` receives a progress line
    per row. Without CUDA only ``tiny`` runs (InvalidParameter otherwise, before anything is built).

    Steps: 1. check the device; 2. per family: build the model in a temporary folder, measure the baseline and
    every GPU rung (`measure_family`), delete the folder; 3. the MLflow run with the table and the plots.
    """
    import torch

    from labkit.lab import Lab

    # 1. the device
    cuda = torch.cuda.is_available()
    if not cuda and not config.tiny:
        raise InvalidParameter("labkit bench gpu needs a CUDA GPU to measure the real architectures; none is "
                               "visible here.", value="cpu",
                               fix="run it on a machine with an NVIDIA GPU, or pass --tiny to run the same code "
                                   "path on the tiny models on this CPU.")
    lab = Lab(root, experiment="labkit-bench")
    out = Path(config.out) if config.out else lab.config.root / "outputs" / "bench-gpu" / time.strftime(
        "%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if cuda else ""
    tier = lab.hardware.tier if cuda else "cpu"
    nvml = Nvml(cuda)
    rows: list[dict[str, Any]] = []
    csv_path, md_path = out / "bench_gpu.csv", out / "bench_gpu.md"
    title = f"{command} on {gpu or 'CPU (no CUDA)'}" + (" (tiny models)" if config.tiny else "")

    def on_row(r: dict[str, Any]) -> None:
        rows.append(r)
        write_table(ladder_order(rows, config.families, tier), csv_path, md_path, title=title)
        if echo:
            echo(f"{r['family']} {r['rung']}: " + ", ".join(f"{k} {_fmt(r[k])}" for k in (
                "peak_allocated_gb", "s_per_output", "it_per_s") if r[k] is not None) + (
                f" ({r['note']})" if r["note"] else ""))

    # 2. the families
    build_s: dict[str, float] = {}
    deadline = time.monotonic() + config.time_limit_s if config.time_limit_s else None
    for family in config.families:
        case = family_case(family, lab.catalog, tiny=config.tiny, steps=config.steps)
        if deadline is not None and time.monotonic() > deadline:
            on_row({**dict.fromkeys(COLUMNS), "family": family, "rung": "(build)", "size": case.size,
                    "frames": case.frames, "steps": case.steps, "gpu": gpu, "note": NOT_RUN_NOTE})
            continue
        with tempfile.TemporaryDirectory(prefix=f"labkit-bench-{family}-") as tmp:
            t = time.perf_counter()
            try:
                folder = build_model(family, Path(tmp) / family, tiny=config.tiny, cuda=cuda)
            except Exception as e:  # the other families still run; the row and the exit status say it
                on_row({**dict.fromkeys(COLUMNS), "family": family, "rung": "(build)", "size": case.size,
                        "frames": case.frames, "steps": case.steps, "gpu": gpu,
                        "note": f"failed: {type(e).__name__}: {str(e)[:200]}"})
                free_memory(cuda)
                continue
            build_s[family] = round(time.perf_counter() - t, 1)
            measure_family(family, folder, case, catalog=lab.catalog, tier=tier, cuda=cuda, nvml=nvml,
                           config=config, gpu=gpu, on_row=on_row, deadline=deadline)
    rows = ladder_order(rows, config.families, tier)
    # 3. the MLflow run
    params = {"job": "bench-gpu", "families": ",".join(config.families), "tiny": config.tiny,
              "steps": config.steps or "default", "device": "cuda" if cuda else "cpu", "gpu": gpu or "none",
              "time_limit_s": config.time_limit_s or "none", "command": command}
    with lab.run("bench gpu", params=params, tags={"labkit.job": "bench-gpu"}) as run:
        run.log_artifact(csv_path, "table")
        run.log_artifact(md_path, "table")
        with tempfile.TemporaryDirectory(prefix="labkit-bench-plots-") as tmp:
            for family in config.families:
                fam_rows = [r for r in rows if r["family"] == family]
                if fam_rows:
                    plot_family(fam_rows, Path(tmp) / f"{family}.png", title=f"{family} on {gpu or 'CPU'}")
            run.log_artifact(tmp, "plots")
        run.record(metrics={f"{r['family']}.{r['rung']}.{k}": r[k] for r in rows
                            for k in ("speedup_vs_eager", "peak_allocated_gb", "s_per_output") if r[k] is not None})
        run_id = run.run_id
    return GpuBenchReport(rows, csv_path, md_path, run_id, "cuda" if cuda else "cpu",
                          {"gpu": gpu, "build_s": build_s, "nvml": nvml.reason or "ok"})


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


# -- the table, the plots, the strategies.toml lines ------------------------------------------------------


def write_table(rows: Sequence[Mapping[str, Any]], csv_path: str | Path, md_path: str | Path, *,
                title: str = "labkit bench gpu") -> None:
    """Write `rows` as CSV (every column, full precision; empty cells for None) and as a markdown table (3
    significant figures). Each file is replaced whole (a temporary name, then a rename)."""
    csv_path, md_path = Path(csv_path), Path(md_path)
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    tmp.replace(csv_path)
    tmp = md_path.with_name(md_path.name + ".tmp")
    tmp.write_text(f"# {title}\n\n{markdown(rows)}\n", encoding="utf-8")
    tmp.replace(md_path)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a markdown table (the `gpu` column left out: the title names the GPU)."""
    cols = [c for c in COLUMNS if c != "gpu"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines)


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """A bench CSV back as rows: numbers as floats (ints for frames and steps), empty numbers as None, text as
    text."""
    numeric = {"est_peak_vram_gb", "peak_allocated_gb", "peak_reserved_gb", "nvml_process_gb", "load_s", "warmup_s",
               "s_per_output", "it_per_s", "speedup_vs_eager"}
    from labkit.files import read_text

    fix = "pass the bench_gpu.csv that `labkit bench gpu` wrote."
    reader = csv.DictReader(io.StringIO(read_text(path, what="bench table", fix=fix, error=InvalidParameter)))
    missing = set(COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise InvalidParameter(f"{str(path)!r} is not a `labkit bench gpu` table: no column(s) "
                               f"{', '.join(sorted(missing))}.", value=str(path), fix=fix)
    rows = []
    for line, raw in enumerate(reader, start=2):
        r: dict[str, Any] = {k: raw[k] for k in COLUMNS}
        try:
            for k in numeric:
                r[k] = float(r[k]) if r[k] else None
            for k in ("frames", "steps"):
                r[k] = int(r[k]) if r[k] else None
        except (TypeError, ValueError) as e:
            raise InvalidParameter(f"{str(path)!r} line {line} is not a bench row: {e}.", value=f"{path}:{line}",
                                   fix=fix) from None
        rows.append(r)
    if not rows:
        raise InvalidParameter(f"{str(path)!r} has no rows: the bench measured nothing.", value=str(path),
                               fix="run `labkit bench gpu` on a CUDA machine and pass its bench_gpu.csv.")
    return rows


def measured_gb(row: Mapping[str, Any]) -> float | None:
    """What a rung needs on a card: NVML's figure for the process (the CUDA context included) when known, else
    torch's peak reserved; None when the row measured nothing."""
    return row.get("nvml_process_gb") or row.get("peak_reserved_gb")


def suggest_table(path: str | Path, *, command: str | None = None) -> str:
    """The `est_peak_vram_gb = …` lines for `strategies.toml` from a GPU run's CSV, one per measured GPU rung
    (rounded up to 0.1 GB), each with a comment naming the GPU, the figure's source, the size and the command.
    Rows without a measurement (no CUDA, out of memory, failed) come out as comments saying so."""
    rows = read_table(path)
    command = command or _command_of(Path(path)) or "labkit bench gpu --families " + ",".join(
        dict.fromkeys(r["family"] for r in rows))
    lines = [f"# est_peak_vram_gb measured by `{command}` ({Path(path).name}); paste each under its rung"]
    for r in rows:
        if r["rung"] == EAGER:
            continue
        where = f"[families.{r['family']}] rung {r['rung']!r}"
        gb = measured_gb(r)
        if gb is None or not r["gpu"]:
            why = r["note"] or "nothing measured"
            lines.append(f"# {where}: not measured ({why})")
            continue
        source = "NVML process peak" if r.get("nvml_process_gb") else "torch peak reserved"
        clip = f", {r['frames']} frames" if r["frames"] else ""
        lines.append(f"# {where}")
        lines.append(f"est_peak_vram_gb = {math.ceil(gb * 10) / 10:.1f}  # measured: {r['gpu']}, {source} "
                     f"({_fmt(r['peak_allocated_gb'])} GB allocated), {r['size']}{clip}, {r['steps']} steps, "
                     f"random weights: {command}")
    return "\n".join(lines) + "\n"


def _command_of(csv_path: Path) -> str | None:
    """The command named in the title of the markdown table written beside `csv_path` ("# COMMAND on GPU")."""
    md = csv_path.with_suffix(".md")
    try:
        first = md.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    if not first.startswith("# labkit "):
        return None
    # where the files went is noise in a strategies.toml comment
    return re.sub(r"\s--(out|root)(=|\s+)\S+", "", first[2:].split(" on ")[0]).strip()


def plot_family(rows: Iterable[Mapping[str, Any]], path: str | Path, *, title: str) -> Path:
    """One family's figure: peak VRAM per rung (torch allocated, reserved, NVML) beside the table's estimate, and
    each rung's speed-up against eager (a line at 1). Rows without figures show as gaps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = list(rows)
    names = [r["rung"] for r in rows]
    x = list(range(len(rows)))
    fig, (mem, speed) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) * 2), 4.2))
    series = [("est_peak_vram_gb", "estimate (strategies.toml)"), ("peak_allocated_gb", "peak allocated"),
              ("peak_reserved_gb", "peak reserved"), ("nvml_process_gb", "NVML process")]
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        mem.bar([v + (i - 1.5) * width for v in x], [r.get(key) or 0.0 for r in rows], width, label=label)
    mem.set_xticks(x, names, rotation=30, ha="right")
    mem.set_ylabel("GB")
    mem.set_title("peak VRAM per rung" + ("" if any(r.get("peak_allocated_gb") for r in rows) else " (no CUDA)"))
    mem.legend(fontsize=7)
    speed.bar(x, [r.get("speedup_vs_eager") or 0.0 for r in rows], color="tab:green")
    speed.axhline(1.0, color="black", linewidth=0.8)
    speed.set_xticks(x, names, rotation=30, ha="right")
    speed.set_ylabel("× eager (higher is faster)")
    speed.set_title("speed-up against plain diffusers eager")
    for xi, r in zip(x, rows, strict=True):
        if OOM_NOTE in str(r.get("note")):
            speed.annotate("OOM", (xi, 0.02), ha="center", fontsize=8, color="red")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["COLUMNS", "EAGER", "FAMILY_MODELS", "TINY_CASES", "Case", "GpuBenchConfig", "GpuBenchReport",
           "family_case", "gpu_rungs", "markdown", "measure_call", "measure_family", "plot_family", "read_table",
           "run_gpu_bench", "suggest_table", "write_table"]
