"""Which errors count as the GPU running out of memory (the render then tries a cheaper rung; anything else fails
the render where it is): torch's own, the same wrapped by torch.compile, and CUDA libraries' failed allocations."""

from __future__ import annotations

import pytest
import torch

from labkit.errors import InvalidParameter, OutOfMemory, is_out_of_memory


def _raised_from(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as e:
            raise RuntimeError("while running the pipeline") from e
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),  # older torch raised it as RuntimeError
    RuntimeError("CUDA error: out of memory"),  # the CUDA runtime itself (torch.AcceleratorError)
    _raised_from(torch.OutOfMemoryError("CUDA out of memory.")),
], ids=["torch", "cublas", "cudnn", "runtime-error", "cuda-runtime", "cause"])
def test_out_of_memory_is_recognised(error):
    assert is_out_of_memory(error)


def test_torch_compiles_wrapper_is_seen_through():
    from torch._dynamo.exc import BackendCompilerFailed

    inner = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    assert is_out_of_memory(BackendCompilerFailed(lambda *a: None, inner, None))
    assert not is_out_of_memory(BackendCompilerFailed(lambda *a: None, RuntimeError("no C++ toolchain"), None))


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA error: an illegal memory access was encountered"),
    RuntimeError("Input type (float) and bias type (c10::Half) should be the same"),
    ValueError("out of memory"),  # not a runtime error of torch's
    InvalidParameter("Width 7 is not a multiple of 8.", value=7, fix="use 8"),
    OutOfMemory("Out of memory on every strategy."),  # labkit's own: nothing cheaper is left to try
], ids=["illegal-access", "dtype", "value-error", "labkit", "every-rung"])
def test_other_errors_are_not(error):
    assert not is_out_of_memory(error)


def test_a_cycle_of_causes_ends():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_out_of_memory(a)


def test_an_error_raised_while_handling_one_keeps_it_as_context():
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        except torch.OutOfMemoryError:
            raise RuntimeError("the pipeline's cleanup failed too")  # noqa: B904 - what a library might do
    except RuntimeError as e:
        assert is_out_of_memory(e)
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        except torch.OutOfMemoryError:
            raise ValueError("a bad size") from None  # said not to be about the first one
    except ValueError as e:
        assert not is_out_of_memory(e)


def test_labkits_own_error_raised_from_an_out_of_memory_is_its_own_verdict():
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        except torch.OutOfMemoryError as e:
            raise OutOfMemory("Out of memory on every strategy.", fix="lower the size") from e
    except OutOfMemory as e:
        assert not is_out_of_memory(e)
