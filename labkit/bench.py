"""`labkit bench …`: benchmarks users run on their own hardware.

Every figure is a ratio against a baseline measured in the same run, interleaved, so a noisy
machine slows both sides alike. Absolute times are printed for context, never compared.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchResult:
    """One benchmark: the subject's and the baseline's median times and their ratio."""

    name: str
    subject: str
    baseline: str
    subject_s: float
    baseline_s: float
    ratio: float
    repeats: int
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.name}: {self.subject} takes {self.ratio:.2f}× {self.baseline} "
                f"(median of {self.repeats}: {self.subject_s * 1000:.0f} ms vs {self.baseline_s * 1000:.0f} ms)")


def _time_subprocess(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_import(repeats: int = 10, **_: Any) -> BenchResult:
    """Time `import labkit` in a fresh interpreter against `python -c pass`, interleaved.

    Also reports which heavy modules the import pulled in (there should be none).
    """
    code = "import labkit"
    probe = ("import sys, labkit; print(','.join(m for m in ('torch','diffusers','mlflow','transformers') "
             "if m in sys.modules))")
    _time_subprocess("pass")  # warm the OS file cache before measuring either side
    subject, baseline = [], []
    for _ in range(repeats):
        baseline.append(_time_subprocess("pass"))
        subject.append(_time_subprocess(code))
    heavy = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    s, b = statistics.median(subject), statistics.median(baseline)
    return BenchResult("import", "import labkit", "python -c pass", s, b, s / b, repeats,
                       {"heavy_modules_loaded": heavy.split(",") if heavy else []})


def bench_generate(repeats: int = 5, *, model: str | None = None, steps: int | None = 20,
                   size: tuple[int, int] | None = None, root: str | None = None, **_: Any) -> BenchResult:
    """`Lab.generate` (plan, validation, tracking, files) against a bare diffusers call on the
    same loaded pipeline, steps and seed, interleaved. On CUDA it also measures it/s and peak
    VRAM for every GPU strategy of the model's family.
    """
    from labkit.hardware import choose, degrade
    from labkit.lab import Lab
    from labkit.pipelines import calls
    from labkit.plan import Plan
    from labkit.render import prepare

    lab = Lab(root, experiment="labkit-bench")
    plan, ref = prepare(lab, Plan(prompt="a red circle on the left", model=model, steps=steps or 20, seed=0,
                                  width=size[0] if size else None, height=size[1] if size else None))
    first = lab.render(plan)  # loads and caches the pipeline; not timed
    pipe = lab.pipelines.get(next(k for k in lab.pipelines.keys() if k[1] == ref.location)).pipe

    def bare() -> None:
        calls.run_image(pipe, prompt=plan.prompt, negative_prompt=plan.negative_prompt, steps=plan.steps,
                        guidance=plan.guidance, width=plan.width, height=plan.height, seed=plan.seed, count=1,
                        on_step=lambda i: False)

    subject, baseline, outside = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        bare()
        baseline.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = lab.render(plan)
        subject.append(time.perf_counter() - t)
        # The tracked render's time outside its own pipeline call: what tracking costs, less exposed
        # than the ratio to a shared machine's noise (which lands mostly inside the calls).
        outside.append(subject[-1] - result.timings["steps_s"] - result.timings["decode_s"])
    s, b = statistics.median(subject), statistics.median(baseline)
    # What the cross-process locks cost: a render in a fresh process takes two (opening the store and
    # saving the weight-hash cache), a render on a warm Lab none; measured here uncontended.
    locked = []
    for _ in range(repeats):
        t = time.perf_counter()
        with lab.tracker.lock():
            pass
        locked.append(time.perf_counter() - t)
    lock_s = statistics.median(locked)
    extra: dict[str, Any] = {"model": first.model["id"], "strategy": first.strategy.name, "steps": plan.steps,
                             "size": f"{plan.width}x{plan.height}", "device": lab.hardware.device,
                             "overhead_pct": round((s / b - 1) * 100, 1),
                             "outside_call_ms": round(statistics.median(outside) * 1000, 1),
                             "outside_call_pct_of_bare": round(statistics.median(outside) / b * 100, 1),
                             "store_lock_s": round(lock_s, 6),
                             "two_locks_pct_of_render": round(2 * lock_s / s * 100, 3)}
    if lab.hardware.device == "cuda":
        extra["strategies"] = _cuda_strategies(lab, plan, ref, choose, degrade)
    return BenchResult("generate", "Lab.generate (tracked)", "bare diffusers call", s, b, s / b, repeats, extra)


def _cuda_strategies(lab, plan, ref, choose, degrade) -> list[dict[str, Any]]:
    """it/s and peak VRAM for each GPU rung of the family, from the tier's start down."""
    import torch

    from labkit.errors import OutOfMemory, is_out_of_memory
    from labkit.pipelines import calls
    from labkit.pipelines.loader import load_pipeline

    rows = []
    strategy = choose(ref.family, lab.hardware)
    while True:
        lab.pipelines.clear()
        try:
            loaded = load_pipeline(ref, strategy, "cuda")
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            calls.run_image(loaded.pipe, prompt=plan.prompt, negative_prompt="", steps=plan.steps,
                            guidance=plan.guidance, width=plan.width, height=plan.height, seed=0, count=1,
                            on_step=lambda i: False)
            torch.cuda.synchronize()
            rows.append({"strategy": strategy.name, "it_per_s": round(plan.steps / (time.perf_counter() - t), 2),
                         "peak_vram_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)})
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            rows.append({"strategy": strategy.name, "it_per_s": None, "peak_vram_gb": "out of memory"})
        finally:
            loaded = None
            torch.cuda.empty_cache()
        try:
            strategy = degrade(strategy)
        except OutOfMemory:
            return rows


#: The toy motion model's render target: a 16-frame 64x64 clip on 2 CPU cores (issue 10).
TOY_MOTION_TARGET_S = 5.0


def bench_toy_motion(repeats: int = 5, *, model: str | None = None, steps: int | None = None,
                     size: tuple[int, int] | None = None, root: str | None = None, **_: Any) -> BenchResult:
    """`Lab.video` of a 16-frame toy clip (plan, tracking, MP4 + GIF with the record) against the bare
    pipeline call on the same loaded pipeline, steps and seed, interleaved (for a model with
    a keyframe model, both draw the keyframe first: the bare path with a plain pipeline call).

    `extra` says where the time goes (the keyframe, denoising per step, VAE decode, everything labkit adds: its
    tracking, outputs and records, the keyframe's run included) and how the
    bare clip compares with the toy motion target (`TOY_MOTION_TARGET_S` on 2 CPU cores) as a ratio.
    Steps default to the model's (its catalogue entry).
    """
    import torch

    from labkit.lab import Lab
    from labkit.pipelines import calls
    from labkit.plan import Plan
    from labkit.render import keyframe_drawer, prepare

    lab = Lab(root, experiment="labkit-bench")
    plan, ref = prepare(lab, Plan(prompt="a blue square moving up", modality="video", model=model or "toyworld-motion",
                                  steps=steps, seed=0, width=size[0] if size else None,
                                  height=size[1] if size else None))
    first = lab.render(plan)  # loads and caches the pipeline (and its keyframe model's); not timed
    pipe = lab.pipelines.get(next(k for k in lab.pipelines.keys() if k[1] == ref.location)).pipe
    # the bare path draws the keyframe too, as `Lab.video` does
    draw = keyframe_drawer(lab, ref, steps=plan.steps, width=plan.width, height=plan.height)

    def bare() -> float:
        """One bare clip; returns the seconds its keyframe took (0 without a keyframe model)."""
        common = dict(negative_prompt=plan.negative_prompt, width=plan.width, height=plan.height, seed=plan.seed,
                      count=1, on_step=lambda i: False)
        if draw is None:
            calls.run_txt2vid(pipe, prompt=plan.prompt, steps=plan.steps, guidance=plan.guidance, frames=plan.frames,
                              **common)
            return 0.0
        t = time.perf_counter()
        image = draw(plan.prompt, plan.seed)
        spent = time.perf_counter() - t
        calls.run_img2vid(pipe, image=image, prompt=plan.prompt, steps=plan.steps, guidance=plan.guidance,
                          frames=plan.frames, fps=plan.fps, decode_chunk_size=0, **common)
        return spent

    subject, baseline, timings, keyframes = [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        keyframes.append(bare())
        baseline.append(time.perf_counter() - t)
        t = time.perf_counter()
        timings.append(lab.render(plan).timings)
        subject.append(time.perf_counter() - t)
    s, b = statistics.median(subject), statistics.median(baseline)
    steps_s = statistics.median(t["steps_s"] for t in timings)
    decode_s = statistics.median(t["decode_s"] for t in timings)
    keyframe_s = statistics.median(keyframes)  # drawing frame 0 (bare path), part of both sides
    extra: dict[str, Any] = {
        "model": first.model["id"], "strategy": first.strategy.name, "steps": plan.steps, "guidance": plan.guidance,
        "frames": plan.frames, "size": f"{plan.width}x{plan.height}", "device": lab.hardware.device,
        "torch_threads": torch.get_num_threads(), "clip_s": round(b, 3),
        "clip_vs_target": round(b / TOY_MOTION_TARGET_S, 3), "target_s": TOY_MOTION_TARGET_S,
        "keyframe_s": round(keyframe_s, 3), "denoise_s": round(steps_s, 3), "step_s": round(steps_s / plan.steps, 3),
        "decode_s": round(decode_s, 3), "labkit_s": round(s - keyframe_s - steps_s - decode_s, 3),
        "overhead_pct": round((s / b - 1) * 100, 1)}
    return BenchResult("toy-motion", "Lab.video (tracked, MP4 + GIF)", "bare pipeline call", s, b, s / b, repeats,
                       extra)


def bench_serve(repeats: int = 3, *, model: str | None = None, steps: int | None = 20,
                size: tuple[int, int] | None = None, root: str | None = None, batch: int = 4, **_: Any) -> BenchResult:
    """Renders through `labkit serve`'s API (POST /jobs, poll GET /jobs/{id}, on a server in this process
    sharing the lab's loaded pipeline) against a direct `Lab.render` loop of the same plans, in batches of
    `batch` renders, interleaved. `extra` has the throughput ratio (API renders per second ÷ direct; the goal
    is ≥ 0.9) and /health latency (median, p95) measured while the queue was busy.
    """
    import tempfile
    import threading

    import httpx
    import uvicorn

    from labkit.lab import Lab
    from labkit.plan import Plan
    from labkit.serve import create_app
    from labkit.serve.keys import KeyStore

    lab = Lab(root, experiment="labkit-bench")
    plan = Plan(prompt="a red circle on the left", model=model, steps=steps or 20, seed=0,
                width=size[0] if size else None, height=size[1] if size else None)
    first = lab.render(plan)  # loads and caches the pipeline; not timed
    with tempfile.TemporaryDirectory() as tmp:
        # no keys (loopback, open) and limits a benchmark's polling never reaches
        app = create_app(lab, KeyStore(Path(tmp) / "keys.json"), queue=batch * 4, per_minute=10**9,
                         jobs_in_flight=batch * 4)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.config.port}"
        with httpx.Client(base_url=url, timeout=120) as client:
            while not server.started:
                if not thread.is_alive():  # uvicorn could not bind: another process took the port meanwhile
                    from labkit.errors import LabkitError

                    raise LabkitError(f"The benchmark's server could not listen on {url}.",
                                      fix="run the benchmark again (it picks another free port).")
                time.sleep(0.05)
            body = {"plan": {k: v for k, v in plan.to_dict().items() if k not in ("controller", "rationale")}}
            subject, baseline, health = [], [], []
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(batch):
                    lab.render(plan)
                baseline.append((time.perf_counter() - t) / batch)
                t = time.perf_counter()
                ids = [_ok(client.post("/jobs", json=body))["id"] for _ in range(batch)]
                waiting = set(ids)
                while waiting:
                    h = time.perf_counter()
                    client.get("/health")
                    health.append(time.perf_counter() - h)
                    for job_id in list(waiting):
                        state = _ok(client.get(f"/jobs/{job_id}"))["state"]
                        if state != "queued" and state != "running":
                            if state != "finished":
                                raise RuntimeError(f"bench job {job_id} ended {state}")
                            waiting.discard(job_id)
                    time.sleep(0.02)
                subject.append((time.perf_counter() - t) / batch)
        server.should_exit = True
        thread.join(10)
    s, b = statistics.median(subject), statistics.median(baseline)
    health.sort()
    extra: dict[str, Any] = {
        "model": first.model["id"], "steps": plan.steps, "batch": batch, "device": lab.hardware.device,
        "api_renders_per_s_vs_direct": round(b / s, 3), "goal": ">= 0.9",
        "health_median_ms": round(statistics.median(health) * 1000, 1),
        "health_p95_ms": round(health[min(len(health) - 1, int(0.95 * len(health)))] * 1000, 1),
        "health_samples": len(health)}
    return BenchResult("serve", "a render through the REST API", "Lab.render", s, b, s / b, repeats, extra)


def _ok(response: Any) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                           f"{response.text[:500]}")
    return response.json()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_gpu(repeats: int = 1, *, steps: int | None = None, root: str | None = None,
              families: tuple[str, ...] = ("sd15", "sdxl", "svd", "t2v"), out: str | None = None, tiny: bool = False,
              **_: Any):
    """Every GPU rung of each family against plain diffusers eager on the real architectures: a table (CSV and
    markdown) and one MLflow run; `tiny` runs the same path on the tiny models (on a CPU). See `labkit.bench_gpu`;
    returns its `GpuBenchReport`, not a `BenchResult`."""
    from labkit.bench_gpu import GpuBenchConfig, run_gpu_bench

    return run_gpu_bench(GpuBenchConfig(families=families, out=Path(out) if out else None, tiny=tiny, steps=steps),
                         root=root)


BENCHMARKS = {"import": bench_import, "generate": bench_generate, "toy-motion": bench_toy_motion,
              "serve": bench_serve, "gpu": bench_gpu}
