"""Peak memory during a block on CPU: the kernel's peak RSS reset for the block, or a sampling thread."""

from __future__ import annotations

import threading

import pytest

from labkit import diagnose
from labkit.diagnose import PeakMemory


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _allocate_and_free(mb: int) -> None:
    block = bytearray(mb * 2**20)  # zero-filled: every page is touched
    block[::4096] = b"\1" * len(block[::4096])
    del block


@pytest.mark.parametrize("kernel", [True, False])
def test_the_peak_counts_what_the_block_allocated_and_freed(monkeypatch, kernel):
    if not kernel:
        monkeypatch.setattr(diagnose, "_reset_peak_rss", lambda: False)
    elif not diagnose._reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    _allocate_and_free(300)  # an earlier peak, before the block, that must not count
    before = _rss()
    with PeakMemory("cpu") as mem:
        _allocate_and_free(150)
        threading.Event().wait(0.1)  # the sampling thread's 20 ms period, several times over
    assert mem.kind == "rss"
    assert before + 140 * 2**20 <= mem.peak < before + 290 * 2**20
    assert (mem._thread is None) == kernel


def test_a_block_open_on_another_thread_keeps_the_kernel_peak_for_the_first(monkeypatch):
    outer = PeakMemory("cpu")
    with outer:
        inner = PeakMemory("cpu")
        with inner:  # a reset now would rob the outer block of its peak so far: the inner one samples instead
            pass
        assert inner._thread is not None


class _FakeAllocator:
    """CUDA's allocator counters as torch keeps them (one set for the process): in use now, and the peak since
    the last reset."""

    def __init__(self):
        self.now = self.peak = 0

    def use(self, n: int) -> None:
        self.now = n
        self.peak = max(self.peak, n)

    def reset(self) -> None:
        self.peak = self.now

    def install(self, monkeypatch) -> None:
        import torch

        for name, fn in (("is_available", lambda: True), ("reset_peak_memory_stats", self.reset),
                         ("max_memory_allocated", lambda: self.peak), ("max_memory_reserved", lambda: self.peak),
                         ("memory_allocated", lambda: self.now), ("memory_reserved", lambda: self.now)):
            monkeypatch.setattr(torch.cuda, name, fn)


def test_an_attempts_vram_peak_keeps_its_load_when_the_render_call_measures_its_own(monkeypatch):
    """The render call (PeakMemory) and a compiled pipeline's warm-up (its own Vram) reset the process's peak
    counters; the attempt's record must still hold the peak its loading reached before them."""
    gib = 2**30
    cuda = _FakeAllocator()
    cuda.install(monkeypatch)
    attempt = diagnose.Vram(on_cuda=True)
    cuda.use(9 * gib)  # loading: the weights, and a cast that briefly holds two copies
    cuda.use(5 * gib)
    warm_up = diagnose.Vram(on_cuda=True)
    cuda.use(6 * gib)
    assert warm_up.summary()["peak_allocated_gb"] == 6
    cuda.use(5 * gib)
    with PeakMemory("cuda") as call:
        cuda.use(7 * gib)
        attempt.sample()
        cuda.use(5 * gib)
    assert call.peak == 7 * gib  # the call's own peak, without the load's
    summary = attempt.summary()
    assert summary["peak_allocated_gb"] == summary["peak_reserved_gb"] == 9
    assert summary["allocated_gb"] == [7]
    assert attempt.at_failure()["peak_allocated_gb"] == 9
