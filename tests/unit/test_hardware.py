"""Hardware detection on machines with and without NVIDIA, and simulated profiles."""

from __future__ import annotations

import sys
import types

import pytest

from labkit.errors import InvalidParameter
from labkit.hardware import TIERS, HardwareProfile, tier_for
from labkit.probes import detect_platform


class _NVMLError(Exception):
    pass


def _fake_pynvml(*, init_error: Exception | None = None, total_mib: int = 24564,
                 name: bytes = b"NVIDIA GeForce RTX 4090",
                 cc: tuple[int, int] = (8, 9), count: int = 1) -> types.ModuleType:
    """A stand-in for `pynvml` shaped like the real module's API."""
    mod = types.ModuleType("pynvml")
    mod.NVMLError = _NVMLError

    def nvmlInit():
        if init_error is not None:
            raise init_error

    mem = types.SimpleNamespace(total=total_mib * 2**20, free=(total_mib - 500) * 2**20, used=500 * 2**20)
    mod.nvmlInit = nvmlInit
    mod.nvmlShutdown = lambda: None
    mod.nvmlDeviceGetCount = lambda: count
    mod.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    mod.nvmlDeviceGetIndex = lambda h: h[1]
    mod.nvmlDeviceGetName = lambda h: name
    mod.nvmlDeviceGetMemoryInfo = lambda h: mem
    mod.nvmlDeviceGetCudaComputeCapability = lambda h: cc
    mod.nvmlSystemGetDriverVersion = lambda: "580.95"
    return mod


@pytest.fixture
def no_torch_gpu(monkeypatch):
    """torch reports no CUDA and no MPS, as on this machine."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_detect_without_pynvml_installed_is_cpu(monkeypatch, no_torch_gpu):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    prof = HardwareProfile.detect()
    assert prof.device == "cpu" and prof.tier == "cpu"
    assert prof.gpu_name is None and prof.vram_total_gb is None
    assert any("nvidia-ml-py" in n for n in prof.notes)
    assert prof.ram_total_gb > 0 and prof.cpu_count >= 1


def test_detect_when_nvidia_library_is_missing_is_cpu(monkeypatch, no_torch_gpu):
    class NVMLError_LibraryNotFound(_NVMLError):
        pass

    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error=NVMLError_LibraryNotFound()))
    prof = HardwareProfile.detect()
    assert prof.device == "cpu"
    assert any("NVMLError_LibraryNotFound" in n for n in prof.notes)


def test_detect_on_this_machine_never_raises():
    prof = HardwareProfile.detect()
    assert prof.device in ("cuda", "mps", "cpu") and prof.is_simulated is False
    assert prof.tier in TIERS
    assert prof.summary()


def test_detect_reads_an_nvidia_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    prof = HardwareProfile.detect()
    assert prof.device == "cuda"
    assert prof.gpu_name == "NVIDIA GeForce RTX 4090"
    assert prof.vram_total_gb == pytest.approx(23.99, abs=0.01)
    assert prof.tier == "24"  # sold as 24 GB, reports 23.99 GiB
    assert prof.compute_capability == (8, 9) and prof.bf16
    assert prof.driver == "580.95"


def test_detect_turing_card_has_no_bf16(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(total_mib=15360, name=b"Tesla T4", cc=(7, 5)))
    prof = HardwareProfile.detect()
    assert prof.gpu_name == "Tesla T4" and not prof.bf16
    assert prof.tier == "12"  # 15 GiB usable: the conservative tier


@pytest.mark.parametrize(
    ("vram", "tier"),
    [(2, "4"), (4, "4"), (5.9, "6"), (6, "6"), (8, "8"), (10, "8"), (11, "8"), (12, "12"), (15, "12"),
     (16, "16"), (23.99, "24"), (24, "24"), (32, "24"), (40, "40"), (79.6, "40"), (None, "cpu")],
)
def test_tier_boundaries(vram, tier):
    assert tier_for(vram) == tier


def test_tier_rejects_nonsense():
    with pytest.raises(InvalidParameter, match="-1"):
        tier_for(-1)


@pytest.mark.parametrize("tier", TIERS)
def test_simulated_profile_for_every_tier(tier):
    prof = HardwareProfile.simulated(None if tier == "cpu" else float(tier))
    assert prof.tier == tier and prof.is_simulated
    assert (prof.device == "cpu") == (tier == "cpu")


def test_simulated_needs_positive_vram():
    with pytest.raises(InvalidParameter, match="vram_gb"):
        HardwareProfile.simulated(0)


def test_platform_detection(monkeypatch):
    for var in ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "COLAB_RELEASE_TAG", "COLAB_GPU"):
        monkeypatch.delenv(var, raising=False)
    assert detect_platform() == "local"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    assert detect_platform() == "colab"
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert detect_platform() == "kaggle"


def test_profile_tags_are_flat_strings():
    tags = HardwareProfile.simulated(8).tags()
    assert tags["hardware.tier"] == "8" and tags["hardware.device"] == "cuda"
    assert all(isinstance(v, str) for v in tags.values())


def test_gpu_now_reads_memory_utilisation_and_processes_through_nvml(monkeypatch):
    from labkit.probes import gpu_now

    nvml = _fake_pynvml()
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37, memory=12)
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: [object(), object()]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    now = gpu_now()
    assert now["available"] and now["source"] == "nvml" and now["name"] == "NVIDIA GeForce RTX 4090"
    assert now["used_gb"] == pytest.approx(0.49, abs=0.01) and now["total_gb"] == pytest.approx(23.99, abs=0.01)
    assert now["free_gb"] == pytest.approx(23.5, abs=0.01)
    assert now["utilisation_pct"] == 37 and now["processes"] == 2


def test_gpu_now_without_utilisation_support_still_reads_memory(monkeypatch):
    from labkit.probes import gpu_now

    nvml = _fake_pynvml()

    def unsupported(h):
        raise _NVMLError("Not Supported")

    nvml.nvmlDeviceGetUtilizationRates = nvml.nvmlDeviceGetComputeRunningProcesses = unsupported
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    now = gpu_now()
    assert now["available"] and now["utilisation_pct"] is None and now["processes"] is None and now["used_gb"] > 0


def test_gpu_now_without_a_gpu_says_no_gpu(monkeypatch, no_torch_gpu):
    from labkit.probes import gpu_now

    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error=_NVMLError("Driver Not Loaded")))
    now = gpu_now()
    assert now == {"available": False, "reason": "no GPU: neither NVML nor torch sees a CUDA device"}


def _machine_of_three_gpus() -> types.ModuleType:
    """NVML on a shared box: three different cards; NVML numbers them 0-2 whatever CUDA_VISIBLE_DEVICES says."""
    nvml = _fake_pynvml(count=3)
    cards = [("NVIDIA RTX A4000", 16376, "GPU-1f2e"), ("NVIDIA A100-SXM4-40GB", 40960, "GPU-9c0d"),
             ("NVIDIA H100 80GB HBM3", 81559, "GPU-c3b4")]

    def by_uuid(uuid):
        for i, card in enumerate(cards):
            if card[2] == uuid:
                return ("gpu", i)
        raise _NVMLError("Not Found")

    nvml.nvmlDeviceGetName = lambda h: cards[h[1]][0].encode()
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        total=cards[h[1]][1] * 2**20, free=(cards[h[1]][1] - 1000) * 2**20, used=1000 * 2**20)
    nvml.nvmlDeviceGetUUID = lambda h: cards[h[1]][2]
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    return nvml


@pytest.mark.parametrize("visible", ["2", "2,0", "GPU-c3b4", "GPU-c3"], ids=["index", "first-of-two", "uuid", "prefix"])
def test_the_gpu_read_is_the_one_cuda_visible_devices_gives_the_process(monkeypatch, visible):
    from labkit.probes import gpu_now

    monkeypatch.setitem(sys.modules, "pynvml", _machine_of_three_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    prof = HardwareProfile.detect()
    assert prof.gpu_name == "NVIDIA H100 80GB HBM3" and prof.vram_total_gb == pytest.approx(79.65, abs=0.01)
    assert prof.gpu_count == len(visible.split(","))
    assert any("using GPU 2" in n and f"CUDA_VISIBLE_DEVICES={visible}" in n for n in prof.notes), prof.notes
    now = gpu_now()
    assert now["name"] == "NVIDIA H100 80GB HBM3" and now["total_gb"] == pytest.approx(79.65, abs=0.01)


def test_without_cuda_visible_devices_the_first_gpu_is_read(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _machine_of_three_gpus())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    prof = HardwareProfile.detect()
    assert prof.gpu_name == "NVIDIA RTX A4000" and any("using GPU 0" in n for n in prof.notes)
    assert prof.gpu_count == 3


def test_once_cuda_has_started_the_device_uuid_decides(monkeypatch):
    """CUDA's default order puts the fastest card first, NVML's the PCI bus: index 0 of CUDA_VISIBLE_DEVICES can be
    NVML's GPU 2. A process that has started CUDA (the bench) reads its device's UUID from torch instead."""
    import torch

    from labkit.probes import nvml_handle

    nvml = _machine_of_three_gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="c3b4"))
    assert nvml_handle(nvml) == ("gpu", 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="0000"))
    assert nvml_handle(nvml) == ("gpu", 0)  # a UUID NVML does not know: CUDA_VISIBLE_DEVICES decides


@pytest.mark.parametrize("visible", ["", "-1", "GPU-ffff"], ids=["empty", "minus-one", "unknown-uuid"])
def test_cuda_visible_devices_that_hides_every_gpu_means_the_cpu(monkeypatch, no_torch_gpu, visible):
    from labkit.probes import gpu_now

    monkeypatch.setitem(sys.modules, "pynvml", _machine_of_three_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    prof = HardwareProfile.detect()
    assert prof.device == "cpu" and any("hides every GPU" in n for n in prof.notes), prof.notes
    assert not gpu_now()["available"]
