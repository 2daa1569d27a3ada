"""`labkit doctor --run RUN_ID`: what happened to one run, and for a failed render what to change.

While `labkit.render` runs it keeps a `Trace` (and with CUDA a `Vram` sampler); a render that fails records
`failure_record` as the tag `labkit.failure` and the artifact failure.json: the error, the model and its
family, the memory strategy (rung) it ran at and the rungs it tried, the stage (load, controlnet, denoise, decode)
and step, the plan's size, and the machine's memory. `explain_run` reads it back and turns it into advice that
names values: a smaller `--size`, `--n 1`, fewer `--frames`, VRAM other processes hold, a smaller model.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from typing import TYPE_CHECKING, Any

from labkit.errors import OutOfMemory, is_out_of_memory

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab

_STAGE_WORDS = {"load": "while loading the model", "compile": "while compiling (the warm-up call of speed=max)",
                "controlnet": "while placing the ControlNets on the device",
                "denoise": "while denoising", "decode": "while decoding the latents (VAE)",
                "render": "while rendering", "prepare": "before rendering"}


# -- what a failing render records (labkit.render keeps a Trace while it runs) --------------------------

class PeakMemory:
    """Peak memory during a block: the CUDA allocator on GPU; on CPU the process's peak RSS.

    On Linux the kernel keeps that peak (VmHWM) and resets it on request (`/proc/self/clear_refs`), so a block
    alone in its process reads it at its end for nothing; otherwise (another block open on another thread, which
    a reset would rob of its peak; no /proc) a thread samples RSS every 20 ms, at a cost of a few percent of a
    short CPU render (the sampler wakes the interpreter 50 times a second)."""

    _open = 0  # blocks open in this process
    _open_lock = threading.Lock()

    def __init__(self, device: str):
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kernel = False

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            reset_cuda_peaks()
            return self
        with PeakMemory._open_lock:
            PeakMemory._open += 1
            self._kernel = PeakMemory._open == 1 and _reset_peak_rss()
        if not self._kernel:
            import psutil

            proc = psutil.Process()

            def sample():
                while not self._stop.is_set():
                    self.peak = max(self.peak, proc.memory_info().rss)
                    self._stop.wait(0.02)

            self.peak = proc.memory_info().rss
            self._thread = threading.Thread(target=sample, daemon=True, name="labkit-rss")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            import torch

            self.peak = torch.cuda.max_memory_allocated()
            return
        with PeakMemory._open_lock:
            PeakMemory._open -= 1
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak = _peak_rss() or self.peak

    @property
    def kind(self) -> str:
        return "cuda" if self.device == "cuda" else "rss"


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS of this process (Linux ≥ 4.0); False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _peak_rss() > 0
    except OSError:
        return False


def _peak_rss() -> int:
    """The process's peak RSS in bytes since it started or was last reset (VmHWM); 0 where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


_live_vram: weakref.WeakSet[Vram] = weakref.WeakSet()
_live_vram_lock = threading.Lock()


def reset_cuda_peaks() -> None:
    """Reset the CUDA allocator's peak counters for a block that measures its own peak, once every live `Vram` has
    kept the peaks seen so far: the counters are the process's, so a block inside an attempt (the render call, a
    warm-up) would otherwise wipe the attempt's load from its record."""
    import torch

    with _live_vram_lock:
        for vram in list(_live_vram):
            vram._keep_peaks()
        torch.cuda.reset_peak_memory_stats()


class Vram:
    """Live VRAM where torch has CUDA: the allocator's peaks since the attempt began and one sample per
    denoising step (GiB). Without CUDA it records nothing, so a CPU run logs no `vram/*` metric; nor does a CPU
    rung on a CUDA machine whose process has not touched CUDA yet (reading the counters would start a context)."""

    def __init__(self, on_cuda: bool = False):
        import torch

        self.active = torch.cuda.is_available() and (on_cuda or torch.cuda.is_initialized())
        self.allocated: list[float] = []
        self.reserved: list[float] = []
        self._peaks = (0, 0)  # bytes allocated, reserved: the highest seen before a reset of the counters
        if self.active:  # the peaks then belong to this attempt alone (load, denoise and decode)
            reset_cuda_peaks()
            with _live_vram_lock:
                _live_vram.add(self)

    def _keep_peaks(self) -> None:
        import torch

        allocated, reserved = self._peaks
        self._peaks = (max(allocated, torch.cuda.max_memory_allocated()),
                       max(reserved, torch.cuda.max_memory_reserved()))

    def sample(self) -> None:
        if self.active:
            import torch

            self.allocated.append(torch.cuda.memory_allocated() / 2**30)
            self.reserved.append(torch.cuda.memory_reserved() / 2**30)

    def summary(self) -> dict[str, Any]:
        """peak_allocated_gb, peak_reserved_gb, allocated_gb / reserved_gb (per step); {} without CUDA."""
        if not self.active:
            return {}
        with _live_vram_lock:
            self._keep_peaks()
        return {"peak_allocated_gb": self._peaks[0] / 2**30, "peak_reserved_gb": self._peaks[1] / 2**30,
                "allocated_gb": list(self.allocated), "reserved_gb": list(self.reserved)}

    def at_failure(self) -> dict[str, Any]:
        """The peaks plus the card's free memory now and what other processes hold (total − free − ours)."""
        out = {k: v for k, v in self.summary().items() if k.startswith("peak_")}
        if self.active:
            import torch

            try:
                free, total = torch.cuda.mem_get_info()
                ours = torch.cuda.memory_reserved()
                out.update(free_gb=free / 2**30, total_gb=total / 2**30,
                           others_gb=max(total - free - ours, 0) / 2**30)
            except Exception:  # a broken context after the error: the peaks are still worth keeping
                pass
        return {k: round(v, 3) for k, v in out.items()}


class Trace:
    """Where the render is, kept up to date so a run that fails can say where: the model and its family, the
    memory strategy (rung), the stage (load, controlnet, denoise, decode) and the denoising step; every attempt."""

    def __init__(self):
        self.attempts: list[Any] = []  # labkit.results.Attempt
        self.model: str | None = None
        self.family: str | None = None
        self.strategy: Any = None  # labkit.hardware.MemoryStrategy
        self.stage = "prepare"
        self.step = 0
        self.total = 0
        self.vram: Vram | None = None


def failure_record(lab: Lab, plan: Any, trace: Trace, error: BaseException) -> dict[str, Any]:
    """What `labkit doctor --run` needs to explain a render that failed: the error, where it stopped (model,
    family, rung, stage, step), the rungs tried and those left, the plan's size, and the machine's memory."""
    from labkit.hardware import strategy_table

    s = trace.strategy
    ladder = strategy_table().family(trace.family)["ladder"] if trace.family else []
    hw = lab.hardware
    record: dict[str, Any] = {
        "error_type": type(error).__name__, "message": str(getattr(error, "message", error))[:1500],
        "fix": getattr(error, "fix", None),
        "oom": isinstance(error, (OutOfMemory, MemoryError)) or is_out_of_memory(error),
        "model": trace.model, "family": trace.family, "stage": trace.stage, "step": trace.step,
        "total_steps": trace.total,
        "strategy": s.name if s else None, "rung": s.rung if s else None, "device": s.device if s else None,
        "strategy_steps": s.steps() if s else [], "est_peak_vram_gb": s.est_peak_vram_gb if s else None,
        "ladder": [{"name": r["name"], "device": r["device"], "est_peak_vram_gb": r.get("est_peak_vram_gb")}
                   for r in ladder],
        "tried": [a.strategy for a in trace.attempts if a.model == trace.model and a.strategy != "-"],
        "attempts": [a.to_dict() for a in trace.attempts],
        "task": plan.task, "width": plan.width, "height": plan.height, "steps": plan.steps, "count": plan.count,
        "frames": plan.frames if plan.modality == "video" else None,
        "hardware": {"device": hw.device, "gpu_name": hw.gpu_name, "tier": hw.tier,
                     "vram_total_gb": hw.vram_total_gb, "vram_free_gb": hw.vram_free_gb,
                     "ram_total_gb": hw.ram_total_gb, "ram_free_gb": hw.ram_free_gb},
        "vram": trace.vram.at_failure() if trace.vram is not None else {},
    }
    return record


def record_failure(lab: Lab, run: Any, plan: Any, trace: Trace, error: BaseException) -> None:
    """Tag a failing render's run with `failure_record` (tag `labkit.failure`, JSON) and the usual strategy and
    attempt tags. Never raises: the render's own error is the one the user must see."""
    try:
        record = failure_record(lab, plan, trace, error)
        tags = {"labkit.failure": json.dumps(record, default=str)[:8000],
                "labkit.failure.stage": record["stage"], "labkit.failure.strategy": record["strategy"] or "",
                "labkit.attempts": json.dumps(record["attempts"])[:8000]}
        if trace.model:
            entry = lab.catalog.find(trace.model)  # the compliance report reads a failed run's model licence here
            tags.update({"model.id": trace.model, "model.family": trace.family or "",
                         **({"model.licence": entry.licence} if entry is not None and entry.licence else {})})
        if trace.strategy is not None:
            tags.update(trace.strategy.tags())
        run.set_tags(tags)
        run.log_dict(record, "failure.json")
        if record["vram"]:
            run.log_metrics({f"vram/{k}": v for k, v in record["vram"].items() if k.startswith("peak_")})
    except Exception:  # pragma: no cover - recording is best effort on a run that is failing anyway
        pass


# -- reading a run back --------------------------------------------------------------------------------

def explain_run(lab: Lab, run_id: str) -> dict[str, Any]:
    """What run `run_id` of `lab`'s store did: status, model, rung, peak memory; for a FAILED render also the
    error, where it stopped (`stage`, `step`, `strategy`, `rung`), the rungs tried, and `fixes` (sentences that
    name the values to change). Raises InvalidParameter when the store has no such run."""
    from labkit.lab_args import _check_run_id

    _check_run_id("run_id", run_id)
    run = _get_run(lab, run_id)
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    status = run.info.status
    out: dict[str, Any] = {
        "run_id": run.info.run_id, "name": tags.get("mlflow.runName", ""), "status": status,
        "failed": status == "FAILED", "job": tags.get("labkit.job", ""),
        "model": tags.get("model.id") or params.get("plan.model") or None, "family": tags.get("model.family"),
        "strategy": tags.get("strategy.name"), "rung": _int(tags.get("strategy.rung")),
        "device": tags.get("strategy.device"),
        "peak_memory_gb": {k.split(".", 1)[1]: round(v, 3) for k, v in metrics.items() if k.startswith("memory.peak")},
        "vram": {k.split("/", 1)[1]: round(v, 3) for k, v in metrics.items() if k.startswith("vram/")},
        "fixes": [],
    }
    if status != "FAILED":
        out["summary"] = f"The run did not fail: it ended {status}" + (
            f" on rung {out['strategy']!r}" if out["strategy"] else "") + "."
        return out
    out["error_type"] = tags.get("labkit.error_type", "")
    out["error"] = tags.get("labkit.error", "")
    failure = _failure(tags)
    if failure is None:  # not a render, or a run from before failure records
        out["summary"] = f"The run failed with {out['error_type'] or 'an error'}: {out['error'][:300]}"
        out["fixes"] = ["read the traceback in the run's artifact error.txt (MLflow UI: `labkit ui`)."]
        return out
    out.update({k: failure.get(k) for k in ("model", "family", "strategy", "rung", "device", "stage", "step",
                                            "total_steps", "tried", "attempts", "task", "width", "height",
                                            "steps", "count", "frames", "hardware", "oom", "message")})
    out["vram"] = {**out["vram"], **failure.get("vram", {})}
    out["error_type"] = failure.get("error_type") or out["error_type"]
    out["summary"] = _summary(failure)
    out["fixes"] = oom_fixes(lab, failure) if failure.get("oom") else _other_fixes(failure)
    return out


def _get_run(lab: Lab, run_id: str):
    return lab.tracker.get_run(run_id)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _failure(tags: dict[str, str]) -> dict[str, Any] | None:
    raw = tags.get("labkit.failure")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # cut at MLflow's tag limit: the artifact failure.json has it whole, the tags the gist
        return {"stage": tags.get("labkit.failure.stage"), "strategy": tags.get("labkit.failure.strategy"),
                "error_type": tags.get("labkit.error_type"), "oom": "OutOfMemory" in tags.get("labkit.error_type", "")}


def _where(f: dict[str, Any]) -> str:
    stage = f.get("stage") or "?"
    words = _STAGE_WORDS.get(stage, f"at stage {stage}")
    if stage == "denoise" and f.get("total_steps"):
        words += f" (step {min(f.get('step', 0) + 1, f['total_steps'])} of {f['total_steps']})"
    return words


def _summary(f: dict[str, Any]) -> str:
    what = "Out of memory" if f.get("oom") else f"{f.get('error_type', 'Error')}"
    if not f.get("strategy"):  # it failed before a model was chosen
        return f"{what} {_where(f)}" + (f", model {f['model']!r}." if f.get("model") else ".")
    rung = f"rung {f.get('strategy')!r} (#{f.get('rung')} of the {f.get('family')} ladder, {f.get('device')})"
    tried = f.get("tried") or []
    path = f"; rungs tried: {' → '.join(tried)}" if len(tried) > 1 else ""
    return f"{what} {_where(f)} on {rung}, model {f.get('model')!r}{path}."


def _size_down(w: int, h: int) -> tuple[int, int]:
    """About half the pixels (activations scale with them), on multiples of 8."""
    def one(x: int) -> int:
        return max(8, int(x / math.sqrt(2)) // 8 * 8)
    return one(w), one(h)


def oom_fixes(lab: Lab | None, f: dict[str, Any]) -> list[str]:
    """What to change after an out-of-memory failure `f` (a `failure_record`), most effective first."""
    fixes: list[str] = []
    hw = f.get("hardware") or {}
    vram = f.get("vram") or {}
    stage, device = f.get("stage"), f.get("device")
    ladder = f.get("ladder") or []
    tried = set(f.get("tried") or [])
    rung = f.get("rung")
    left = [r["name"] for i, r in enumerate(ladder)
            if rung is not None and i > rung and r["device"] == device and r["name"] not in tried]
    if left:
        fixes.append(f"cheaper {device} rungs were not tried: {', '.join(left)} — render again and labkit moves "
                     "down to them on out-of-memory.")
    elif device == "gpu":
        cpu = [r["name"] for r in ladder if r["device"] == "cpu"]
        fixes.append(f"{f.get('strategy')!r} is already the cheapest GPU rung of {f.get('family')}"
                     + (f"; on a machine without this GPU it runs on the CPU rung {cpu[0]!r} (slow, RAM only)."
                        if cpu else "."))
    if device == "gpu":
        others = vram.get("others_gb")
        if others and others >= 0.25:
            fixes.append(f"free the VRAM other processes hold: {others:.2f} GB of {vram.get('total_gb', 0):.1f} GB "
                         "were in use by others at the failure (see `nvidia-smi`; restart other notebooks' kernels).")
        total, free = hw.get("vram_total_gb"), hw.get("vram_free_gb")
        if total and free is not None and free < 0.9 * total:
            fixes.append(f"only {free:.1f} of {total:.1f} GB VRAM were free when the lab started: close the other "
                         "programs using the GPU.")
    elif hw.get("ram_total_gb"):
        total, free = hw["ram_total_gb"], hw.get("ram_free_gb") or 0.0
        if free < 0.9 * total:
            fixes.append(f"close other programs: only {free:.1f} of {total:.1f} GB RAM were free when the lab started.")
        else:
            fixes.append(f"this machine has {total:.1f} GB RAM ({free:.1f} GB free when the lab started): a machine "
                         "with more RAM, or a GPU.")
    if stage != "load":
        w, h = f.get("width"), f.get("height")
        if w and h:
            w2, h2 = _size_down(int(w), int(h))
            if (w2, h2) != (w, h):
                fixes.append(f"a smaller size: --size {w2}x{h2} (was {w}x{h}): about half the pixels, so about half "
                             "the activation memory" + (" and the VAE decode's." if stage == "decode" else "."))
        if (f.get("count") or 1) > 1:
            fixes.append(f"fewer outputs per call: --n 1 (was {f['count']}); the batch is denoised and decoded "
                         "at once.")
        frames = f.get("frames")
        if frames and frames > 2:
            fixes.append(f"fewer frames: --frames {max(2, frames // 2)} (was {frames}).")
    else:
        fixes.append("the weights alone did not fit: a rung with offload or a smaller model (below) is needed.")
    smaller = smaller_models(lab, f) if lab is not None else []
    if smaller:
        fixes.append(f"a smaller model for {f.get('task')}: {', '.join(smaller)}.")
    if device == "gpu":
        fixes.append("or a GPU with more memory (Colab, Kaggle, a cloud machine).")
    return fixes


def smaller_models(lab: Lab, f: dict[str, Any], limit: int = 3) -> list[str]:
    """Catalogue models doing the same task whose family's cheapest rung on the failed device is estimated
    below the failed family's: 'id (family, ~N GB)'. The toy world's models are left out (they draw shapes only)."""
    from labkit.hardware import strategy_table

    table = strategy_table()
    device = f.get("device") or "gpu"

    def cheapest(family: str) -> float | None:
        try:
            ladder = table.family(family)["ladder"]
        except Exception:
            return None
        ests = [r.get("est_peak_vram_gb") for r in ladder if r["device"] == device]
        ests = [e for e in ests if e is not None]
        return min(ests) if ests else None

    mine = cheapest(f.get("family") or "")
    if mine is None or not f.get("task") or device != "gpu":
        return []
    out = []
    for e in lab.catalog.entries(task=f["task"]):
        est = cheapest(e.family)
        if est is not None and est < mine and e.id != f.get("model") and e.family != "toy":  # toys draw shapes
            out.append((est, f"{e.id} ({e.family}, ~{est:g} GB)"))
    return [s for _, s in sorted(out)[:limit]]


def _other_fixes(f: dict[str, Any]) -> list[str]:
    fix = f.get("fix")
    return [fix] if fix else ["read the traceback in the run's artifact error.txt (MLflow UI: `labkit ui`)."]


def explanation_text(e: dict[str, Any]) -> str:
    """`explain_run`'s answer as lines a person reads."""
    lines = [f"Run {e['run_id']} ({e['name']}): {e['status']}"]
    if not e["failed"]:
        lines.append(e["summary"])
        if e.get("strategy"):
            lines.append(f"  rung: {e['strategy']} (#{e['rung']}, {e.get('device')}), model {e.get('model')}")
        peaks = {**e.get("peak_memory_gb", {}), **{k: v for k, v in e.get("vram", {}).items() if k.startswith("peak")}}
        if peaks:
            lines.append("  peak memory: " + ", ".join(f"{k} {v:.3f} GB" for k, v in sorted(peaks.items())))
        return "\n".join(lines) + "\n"
    lines.append(f"What failed: {e['summary']}")
    if e.get("error"):
        lines.append(f"  error: {e['error'][:500]}")
    if e.get("stage"):
        denoise = e["stage"] == "denoise" and e.get("total_steps")
        step = f", {e['step']}/{e['total_steps']} steps done" if denoise else ""
        lines.append(f"Where: stage {e['stage']}{step}"
                     + f", rung {e.get('strategy')} (#{e.get('rung')}, {e.get('device')}), family {e.get('family')}")
        size = f"{e.get('width')}x{e.get('height')}, {e.get('steps')} steps, {e.get('count')} per call"
        if e.get("frames"):
            size += f", {e['frames']} frames"
        lines.append(f"  plan: {e.get('task')} {size}")
        for a in e.get("attempts") or []:
            lines.append(f"  tried: {a['model']} on {a['strategy']} — {a['stage']}: {a['outcome'][:160]}")
        hw = e.get("hardware") or {}
        if hw:
            gpu = (f"{hw.get('gpu_name')}, {hw.get('vram_free_gb')} of {hw.get('vram_total_gb')} GB VRAM free; "
                   if hw.get("gpu_name") else "no GPU; ")
            lines.append(f"  machine: {gpu}{hw.get('ram_free_gb')} of {hw.get('ram_total_gb')} GB RAM free")
        if e.get("vram"):
            lines.append("  VRAM at the failure: " + ", ".join(f"{k} {v}" for k, v in sorted(e["vram"].items())))
    lines.append("What to change:")
    lines += [f"  - {x}" for x in e["fixes"]]
    return "\n".join(lines) + "\n"
