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
