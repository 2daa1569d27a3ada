"""What the machine has at this moment: where the process runs (Colab, Kaggle, local), its RAM, and the GPU as the
NVIDIA driver (NVML) or torch sees it. `labkit.hardware.HardwareProfile.detect()` builds a profile from these;
`gpu_now()` is the live view the Hardware panel refreshes. Nothing here raises on a machine without a GPU."""

from __future__ import annotations

import os
import sys
from typing import Any, Literal

Platform = Literal["local", "colab", "kaggle"]


def detect_platform() -> Platform:
    """Where the Python process runs: Colab, Kaggle, or a local machine."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.environ.get("KAGGLE_URL_BASE"):
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG") or os.environ.get("COLAB_GPU"):
        return "colab"
    return "local"


def free_ram_gb() -> float:
    """The memory this machine has available now (GiB; 0.0 when it cannot be read)."""
    return ram_gb()[1]


def gpu_now() -> dict[str, Any]:
    """The memory and utilisation of the GPU labkit runs on (CUDA device 0, see `nvml_handle`) at this moment, for a
    live view (the Hardware panel's Refresh).

    Through NVML when the driver answers: available, source "nvml", name, used_gb, free_gb, total_gb,
    utilisation_pct (the share of the last sample period a kernel ran) and processes (how many hold memory on
    it). Else torch's CUDA view (source "torch": memory only, no utilisation). Without a GPU: available False
    and the reason ("no GPU: ...").
    """
    from labkit.deps import available

    if available("pynvml"):
        import pynvml

        try:
            pynvml.nvmlInit()
        except Exception:  # no NVIDIA driver: try torch below
            pass
        else:
            try:
                h = nvml_handle(pynvml) if pynvml.nvmlDeviceGetCount() > 0 else None
                if h is not None:
                    name = pynvml.nvmlDeviceGetName(h)
                    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                    try:
                        util: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                    except Exception:
                        util = None
                    try:
                        procs: int | None = len(pynvml.nvmlDeviceGetComputeRunningProcesses(h))
                    except Exception:
                        procs = None
                    return {"available": True, "source": "nvml",
                            "name": name.decode() if isinstance(name, bytes) else str(name),
                            "used_gb": round(mem.used / 2**30, 2), "free_gb": round(mem.free / 2**30, 2),
                            "total_gb": round(mem.total / 2**30, 2), "utilisation_pct": util, "processes": procs}
            except Exception:
                pass
            finally:
                try:
                    pynvml.nvmlShutdown()
                except Exception:
                    pass
    if available("torch"):
        import torch

        try:
            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info(0)
                return {"available": True, "source": "torch", "name": torch.cuda.get_device_name(0),
                        "used_gb": round((total - free) / 2**30, 2), "free_gb": round(free / 2**30, 2),
                        "total_gb": round(total / 2**30, 2), "utilisation_pct": None, "processes": None}
        except Exception as e:
            return {"available": False, "reason": f"no GPU: CUDA query failed ({type(e).__name__})"}
    return {"available": False, "reason": "no GPU: neither NVML nor torch sees a CUDA device"}


def ram_gb() -> tuple[float, float]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return round(vm.total / 2**30, 2), round(vm.available / 2**30, 2)
    except Exception:  # psutil missing or no /proc: RAM is informative, never fatal
        return 0.0, 0.0


def nvml_gpu(notes: list[str]) -> dict[str, Any] | None:
    """The GPU labkit runs on (CUDA device 0) as the NVIDIA driver sees it, or None (with the reason in `notes`)."""
    from labkit.deps import available, install_command

    if not available("pynvml"):
        notes.append(f"pynvml not installed ({install_command('pynvml')})")
        return None
    import pynvml

    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded on machines without NVIDIA
        notes.append(f"NVIDIA driver not available: {type(e).__name__}")
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            notes.append("NVIDIA driver loaded but no GPU visible")
            return None
        handle = nvml_handle(pynvml)
        if handle is None:
            notes.append(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} hides every GPU")
            return None
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            cc = tuple(int(x) for x in pynvml.nvmlDeviceGetCudaComputeCapability(handle))
        except Exception:
            cc = None
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        except Exception:
            driver = None
        visible, entries = os.environ.get("CUDA_VISIBLE_DEVICES"), _visible_entries()
        try:
            which = f"GPU {pynvml.nvmlDeviceGetIndex(handle)}"
        except Exception:  # a MIG instance has no index of its own
            which = "the GPU instance"
        notes.append(f"pynvml: {count} NVIDIA GPU(s), using {which}"
                     + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""))
        return dict(
            device="cuda",
            gpu_name=name,
            vram_total_gb=round(mem.total / 2**30, 2),
            vram_free_gb=round(mem.free / 2**30, 2),
            compute_capability=cc,
            bf16=bool(cc and cc[0] >= 8),
            gpu_count=int(count) if entries is None else min(len(entries), int(count)),  # those we may use
            driver=driver,
        )
    except Exception as e:
        notes.append(f"pynvml query failed: {type(e).__name__}: {e}")
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def nvml_handle(pynvml: Any, cuda_index: int = 0) -> Any:
    """NVML's handle of CUDA device `cuda_index` as this process sees it, or None when CUDA_VISIBLE_DEVICES hides
    it: NVML numbers every GPU of the machine, so its GPU 0 is not always ours.

    Where this process has started CUDA, torch names the device's UUID and that decides. Otherwise the variable
    does: entries by index or UUID (a unique prefix of a GPU's is enough; a MIG instance by its full UUID). An
    index counts in CUDA's order, which is NVML's (the PCI bus) with CUDA_DEVICE_ORDER=PCI_BUS_ID or on a box of
    identical cards; on mixed cards CUDA's default puts the fastest first."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch.cuda.get_device_properties(cuda_index).uuid}")
        except Exception:  # a MIG instance, or a driver that names it otherwise: the variable below
            pass
    entries = _visible_entries()
    if entries is None:
        return pynvml.nvmlDeviceGetHandleByIndex(cuda_index)
    if cuda_index >= len(entries):
        return None
    entry = entries[cuda_index]
    if entry.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(entry))
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(entry)
    except Exception:  # a prefix of a GPU's UUID
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            if (uuid.decode() if isinstance(uuid, bytes) else str(uuid)).startswith(entry):
                return handle
    return None


def visible_gpus(count: int) -> list[str]:
    """How a child process names each of this process's `count` GPUs in its CUDA_VISIBLE_DEVICES: this
    process's own entries (an index or a UUID) where the variable is set, else "0", "1", …"""
    entries = _visible_entries()
    return entries[:count] if entries is not None else [str(i) for i in range(count)]


def _visible_entries() -> list[str] | None:
    """The GPUs CUDA_VISIBLE_DEVICES gives this process, in CUDA's order; None where it is not set. CUDA stops the
    list at the first entry it cannot use (empty, or -1), hiding what comes after."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    entries = []
    for v in (v.strip() for v in visible.split(",")):
        if not v or v.startswith("-"):
            break
        entries.append(v)
    return entries


def torch_gpu(notes: list[str]) -> dict[str, Any] | None:
    """A GPU as torch sees it (CUDA without NVML, or Apple MPS), or None."""
    from labkit.deps import available

    if not available("torch"):
        notes.append("torch not installed: cannot probe CUDA/MPS")
        return None
    import torch

    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info(0)
            notes.append("torch: CUDA available (NVML was not)")
            cc = (props.major, props.minor)
            return dict(device="cuda", gpu_name=props.name, vram_total_gb=round(total / 2**30, 2),
                        vram_free_gb=round(free / 2**30, 2), compute_capability=cc, bf16=cc[0] >= 8,
                        gpu_count=torch.cuda.device_count())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            # Apple silicon shares system memory with the GPU: count it as VRAM.
            total, _ = ram_gb()
            notes.append("torch: Apple MPS available (unified memory counted as VRAM)")
            return dict(device="mps", gpu_name="Apple MPS", vram_total_gb=total, vram_free_gb=None, bf16=False)
    except Exception as e:
        notes.append(f"torch GPU probe failed: {type(e).__name__}: {e}")
    return None
