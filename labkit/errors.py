"""Errors a user can fix.

Every error labkit raises on purpose is a `LabkitError`. Each subclass stands for one kind of
thing a user can change, and each message names the bad value and the fix, so that a notebook
shows a sentence to act on rather than a traceback from inside torch.
"""

from __future__ import annotations


class LabkitError(Exception):
    """Base class: a problem with a named value and a named fix.

    `str(err)` is the full message; `err.value` is the offending value (when there is one) and
    `err.fix` the advice, so panels can show them apart.
    """

    def __init__(self, message: str, *, value: object = None, fix: str | None = None):
        self.message = message
        self.value = value
        self.fix = fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class InvalidParameter(LabkitError, ValueError):
    """A parameter has a value labkit cannot use (bad size, negative steps, unknown tier…)."""


class ConfigError(LabkitError):
    """A data file (catalogue, strategy table, licence table, sweep spec) is malformed."""


class UnknownModel(LabkitError, KeyError):
    """A model id is neither in the catalogue nor a diffusers folder or hub repo."""

    # KeyError's str() quotes its argument; keep the plain sentence.
    __str__ = Exception.__str__


class UnknownFamily(LabkitError, KeyError):
    """A model family has no row in the memory-strategy table."""

    __str__ = Exception.__str__


class ModelNotCached(LabkitError):
    """A hub model is not in the local cache and the hub cannot be reached."""


class UnsafeWeights(LabkitError):
    """Weights are in a pickle format and the caller did not allow pickle files."""


class ComplianceViolation(LabkitError):
    """An asset's licence is not allowed by the active compliance mode."""


class IncompatibleAdapter(LabkitError):
    """A LoRA adapter does not fit the model it is applied to: made for another base family, or
    keys that match no layer of the model (which would otherwise load as a silent no-op)."""


class OutOfMemory(LabkitError, MemoryError):
    """Out of memory after every cheaper memory strategy was tried."""


class TrackingError(LabkitError):
    """The MLflow store cannot be opened or written."""


class Cancelled(LabkitError):
    """The user cancelled a running job; partial outputs were kept."""


class ControllerFailed(LabkitError):
    """An LLM controller gave no usable plan (unreachable, timed out, or invalid output)."""


class MissingDependency(LabkitError, ImportError):
    """An optional dependency a feature needs is not installed; the fix names the pip command."""

    __str__ = Exception.__str__


class CredentialsError(LabkitError):
    """Content credentials (C2PA) cannot be made or read: a bad certificate, key or signed file."""


#: What CUDA libraries say when an allocation of theirs fails; torch passes these on as a plain RuntimeError.
_ALLOC_FAILED = ("CUDA out of memory", "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED",
                 "CUDNN_STATUS_ALLOC_FAILED", "cuFFT error: CUFFT_ALLOC_FAILED")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the GPU running out of memory: torch's `OutOfMemoryError`, also where it arrives wrapped
    (torch.compile raises `BackendCompilerFailed` / `InductorError` with it as `inner_exception` or cause; an
    error raised while handling one keeps it as its context), or a failed allocation of the CUDA runtime or a CUDA
    library, which torch raises as a plain RuntimeError (cuBLAS, cuDNN, cuFFT). An error of labkit's own says
    itself what went wrong, whatever it was raised from; its `OutOfMemory` (every rung tried) is not one: there is
    nothing cheaper left to try."""
    import sys

    torch = sys.modules.get("torch")  # without torch imported, no torch error can have been raised
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, LabkitError):
            return False
        if torch is not None and isinstance(e, torch.OutOfMemoryError):
            return True
        if isinstance(e, RuntimeError) and any(s in str(e) for s in _ALLOC_FAILED):
            return True
        e = getattr(e, "inner_exception", None) or e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return False


#: What a stop without a named reason was: a KeyboardInterrupt from Ctrl-C or a notebook's interrupt button.
CTRL_C = "interrupted by the user (Ctrl-C)"


def stop_reason(exc: BaseException) -> str:
    """Why a KeyboardInterrupt stopped the work: its `reason` ("stopped by SIGTERM", set by whoever turned a
    signal into it: the CLI, the training engine) or Ctrl-C. The tracking store records the same words."""
    return str(getattr(exc, "reason", None) or CTRL_C)


def stop_signal(exc: BaseException) -> str:
    """The signal behind a KeyboardInterrupt: its `signal` ("SIGTERM"), else "SIGINT"."""
    return str(getattr(exc, "signal", None) or "SIGINT")
