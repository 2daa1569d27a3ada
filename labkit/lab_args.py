"""The checks `Lab`'s methods run on their arguments before any work: each names the argument, the value and
the fix (a `LabkitError`), never a TypeError from deep inside.

Example: `_size_arg((64, 48))` -> (64, 48); `_size_arg("64x48")` raises `InvalidParameter` saying to pass a tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_RUNS = 10_000
_RENDER_KWARGS = ("progress", "cancel", "out", "allow_pickle", "config", "tags")
_TASKS = ("txt2img", "img2img", "txt2vid", "img2vid")


def _describe(value: Any) -> str:
    from labkit.plan import describe

    return describe(value)


def _invalid(message: str, value: Any, fix: str) -> Exception:
    from labkit.errors import InvalidParameter

    return InvalidParameter(message, value=value, fix=fix)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be True or False, got {_describe(value)}.", value, f"pass {name}=True or False.")


def _check_render_kwargs(method: str, kwargs: Mapping[str, Any]) -> None:
    unknown = [k for k in kwargs if k not in _RENDER_KWARGS]
    if unknown:
        raise _invalid(f"lab.{method}() got unknown argument(s) {', '.join(unknown)}.", unknown,
                       f"use the documented arguments; render options are {', '.join(_RENDER_KWARGS)}.")


def _check_run_id(name: str, value: Any) -> None:
    from labkit.plan import check_text

    check_text(name, value, max_chars=200, nonempty=True)


def _check_str_list(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _invalid(f"{name} must be a list of strings, got {_describe(value)}.", value,
                       f"pass {name} as a list, e.g. [{value!r}]." if isinstance(value, str)
                       else f"pass {name} as a list of strings.")
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise _invalid(f"{name} must hold strings, got {_describe(bad[0])}.", bad[0],
                       f"pass {name} as a list of strings.")


def _check_task(task: Any) -> None:
    if task is not None and task not in _TASKS:
        raise _invalid(f"Unknown task {_describe(task)}.", task, f"use one of {', '.join(_TASKS)}, or None for all.")


def _check_job(job: Any) -> None:
    import re

    if job is None:
        return
    if not isinstance(job, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", job):
        raise _invalid(f"job must be a job name such as 'render', got {_describe(job)}.", job,
                       "pass a job name (letters, digits, '_', '-', '.', ':'), e.g. 'render', 'train', 'demo'.")


#: The jobs labkit's own runs are tagged with (`labkit.job`); a user's `lab.run(..., tags=)` may add others.
LABKIT_JOBS = ("render", "train", "demo", "compare", "sweep-point", "bench-gpu", "eval-toyworld", "eval-toymotion",
               "eval-toycontrol", "eval-dreambooth", "eval-controller")


def _check_job_spelling(job: str) -> None:
    """Refuse a job no run has that is close to one of labkit's (a typo, not an empty history)."""
    import difflib

    close = difflib.get_close_matches(job, LABKIT_JOBS, n=1, cutoff=0.75)
    if job not in LABKIT_JOBS and close:
        raise _invalid(f"No run has job {job!r}; did you mean {close[0]!r}?", job,
                       f"pass job={close[0]!r} (labkit's jobs: {', '.join(LABKIT_JOBS)}).")


def _size_arg(size: Any) -> tuple[Any, Any]:
    from labkit.plan import check_size

    return check_size("size", size)


def _path_arg(name: str, value: Any) -> str | None:
    from labkit.plan import MAX_PATH_CHARS, check_text

    if value is None:
        return None
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a file path, got {_describe(value)}.", value,
                       f"pass {name} as a path (str or pathlib.Path), or None.")
    return check_text(name, value, max_chars=MAX_PATH_CHARS, nonempty=True)


def _controls_arg(controls: Any) -> tuple[Any, ...]:
    """`controls` as ControlRefs: None or a list of ControlRef or their dict form."""
    from labkit.plan import Plan

    if controls is None:
        return ()
    if isinstance(controls, (str, bytes)) or not isinstance(controls, (list, tuple)):
        raise _invalid(f"controls must be a list, got {_describe(controls)}.", controls,
                       "pass a list of ControlRef, e.g. [ControlRef('canny', 'photo.png', model=PATH)].")
    return Plan.from_dict({"prompt": "", "controls": list(controls)}).controls


def _adapters_arg(adapters: Any) -> tuple[Any, ...]:
    """`adapters` as AdapterRefs: None or a list of AdapterRef / "PATH_OR_ID[:WEIGHT]" strings."""
    from labkit.pipelines.lora import parse_adapter
    from labkit.plan import MAX_PATH_CHARS, AdapterRef, check_text

    if adapters is None:
        return ()
    if isinstance(adapters, (str, bytes)) or not isinstance(adapters, (list, tuple)):
        raise _invalid(f"adapters must be a list, got {_describe(adapters)}.", adapters,
                       f"pass adapters=[{adapters!r}] (a list of 'PATH_OR_ID[:WEIGHT]' or AdapterRef)."
                       if isinstance(adapters, str) else "pass a list of 'PATH_OR_ID[:WEIGHT]' strings or AdapterRef.")
    refs = []
    for i, a in enumerate(adapters):
        if not isinstance(a, AdapterRef):
            check_text(f"adapters[{i}]", a, max_chars=MAX_PATH_CHARS, nonempty=True)
            a = parse_adapter(a)
        refs.append(a)
    return tuple(refs)


#: `Lab.strategy`'s overrides: the MemoryStrategy fields a user may set, by kind.
_STRATEGY_FLAGS = ("vae_tiling", "vae_slicing", "attention_slicing", "forward_chunking", "channels_last", "fuse_qkv",
                   "compile", "compile_vae")
_STRATEGY_OVERRIDES = ("dtype", "offload", "compile_mode", "decode_chunk_size", "est_peak_vram_gb", *_STRATEGY_FLAGS)


def _check_strategy_args(speed: Any, controls: Any, adapters: Any, overrides: Mapping[str, Any]) -> None:
    """`Lab.strategy`'s arguments: `speed` one of the plan's speeds, `controls` and `adapters` counts, and each
    override a MemoryStrategy field with a value labkit supports (the choices named in the fix)."""
    import math

    from labkit.hardware import COMPILE_MODES, DTYPES, OFFLOAD_MODES
    from labkit.plan import MAX_CONTROLS, SPEEDS, check_int

    if not isinstance(speed, str) or speed not in SPEEDS:
        raise _invalid(f"Unknown speed {_describe(speed)}.", speed,
                       f"use speed={' or '.join(map(repr, SPEEDS))} ('max' opts in to the speed-first rung).")
    check_int("controls", controls, lo=0, hi=MAX_CONTROLS)
    check_int("adapters", adapters, lo=0, hi=1000)
    unknown = sorted(k for k in overrides if k not in _STRATEGY_OVERRIDES)
    if unknown:
        raise _invalid(f"Unknown strategy override(s) {', '.join(unknown)}: the overrides are "
                       f"{', '.join(_STRATEGY_OVERRIDES)}.", unknown,
                       "override only those (the rung's name and device come from the strategy table).")
    choices = {"dtype": DTYPES, "offload": OFFLOAD_MODES, "compile_mode": COMPILE_MODES}
    for name, value in overrides.items():
        if name in choices:
            if not isinstance(value, str) or value not in choices[name]:
                allowed = ", ".join(map(repr, choices[name]))
                raise _invalid(f"{name} {_describe(value)} is not supported: labkit supports {allowed}.", value,
                               f"pass {name}= one of {allowed}.")
        elif name in _STRATEGY_FLAGS:
            _check_bool(name, value)
        elif name == "decode_chunk_size":
            check_int(name, value, lo=0, hi=1024)
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value) or value < 0):  # est_peak_vram_gb
            raise _invalid(f"{name} must be a number of GB >= 0, got {_describe(value)}.", value,
                           f"pass {name} as a number such as 6.5, or None.")
