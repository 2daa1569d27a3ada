"""How a sweep stops: Ctrl-C (or a notebook's interrupt), SIGTERM from `kill` or a scheduler, or code raising
KeyboardInterrupt.

A stop ends the point that was running and the sweep's parent run KILLED, each with the reason as its
`labkit.error` ("interrupted by the user (Ctrl-C)", "stopped by SIGTERM"), keeps every finished point and what
the stopped one recorded, and raises `SweepStopped`, which carries the `SweepResult` so far. A notebook point's
kernel is killed (its process group: the kernel and what it started), not asked to shut down: a kernel asked in
the middle of a cell answers on a socket already closed and prints a ZMQError traceback.

Example: `except SweepStopped as e: print(e.reason, len(e.result.outcomes))`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from labkit.errors import CTRL_C, stop_reason, stop_signal


class SweepStopped(KeyboardInterrupt):
    """A sweep stopped by an interrupt, after its clean stop (see the module docstring). A KeyboardInterrupt, so a
    cell or script running sweeps in a loop stops too. `signal`: "SIGINT" or "SIGTERM"; `reason`: the words on the
    runs; `result`: the `SweepResult` so far (its outcomes: the points that ended, the stopped ones KILLED)."""

    def __init__(self, signal: str, reason: str, result: Any):
        self.signal, self.reason, self.result = signal, reason, result
        super().__init__(reason)

    def line(self, resume: str) -> str:
        """One sentence: what was stopped, what was kept, and `resume`, the command (or call) that goes on."""
        r = self.result
        stopped = [o for o in r.outcomes if o.status == "KILLED"]
        finished = len(r.skipped) + sum(o.status == "FINISHED" for o in r.outcomes)
        left = len(r.points) - finished
        running = ", ".join(f"{o.point.index} ({o.point.label(r.spec.axes)})" for o in stopped)
        what = f"the sweep {r.spec.name!r} (run {r.parent_run_id})" + (
            f" and point{'s' if len(stopped) > 1 else ''} {running}" if stopped else "")
        kept = f"{finished} of {len(r.points)} points finished"
        if stopped and r.spec.kind == "notebook":
            kept += " and the stopped notebooks as far as they ran" if len(stopped) > 1 else \
                " and the stopped notebook as far as it ran"
        todo = f"run the other {left} with: {resume}" if left else "nothing is left to run"
        return f"{self.reason}: {what} ended KILLED; kept {kept}; {todo}"


def kill_kernels(run_ids: Iterable[str], env_name: str) -> int:
    """Kill the notebook kernels this process started for the point runs `run_ids` (each kernel has the point's run
    id in its environment as `env_name`), with the processes they started; how many were found.

    A kernel runs in a session of its own (jupyter_client starts it so, so that Ctrl-C in a terminal does not reach
    it): killing its process group ends it with its children, without a word on the terminal."""
    import signal

    import psutil

    wanted = set(run_ids)
    if not wanted:
        return 0
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    found = [p for p in procs if _env_of(p).get(env_name) in wanted]
    ours = os.getpgrp() if hasattr(os, "getpgrp") else None
    for proc in found:
        try:
            group = os.getpgid(proc.pid) if hasattr(os, "getpgid") else None
            if group is not None and group != ours:
                os.killpg(group, signal.SIGKILL)
            else:  # in this process's own group (or on Windows): only the process, never ourselves
                proc.kill()
        except (OSError, psutil.Error):  # gone meanwhile
            pass
    return len(found)


@contextmanager
def quiet_dead_kernels() -> Iterator[None]:
    """While kernels are being killed on purpose, papermill's "Kernel died while waiting for execute reply." (an
    error it logs, and Python prints when logging is not set up) is dropped: the stop has its own line."""
    import logging

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Kernel died")

    logger = logging.getLogger("papermill")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _env_of(proc: Any) -> dict[str, str]:
    import psutil

    try:
        return proc.environ()
    except (psutil.Error, OSError):  # ended meanwhile, or not ours to read
        return {}


__all__ = ["CTRL_C", "SweepStopped", "kill_kernels", "quiet_dead_kernels", "stop_reason", "stop_signal"]
