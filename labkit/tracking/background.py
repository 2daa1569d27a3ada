"""The one background thread that writes to the tracking store for this process.

Creating a run is handed to this thread, so the caller goes on (a render starts its pipeline call) while the store
writes; the run's id is read from it when first asked for. What the run logs next is held by the run and written
with its end (`Run.record`, `labkit.tracking.batch`); `Tracker.client` waits (`wait()`) for this thread before a read.

Not MLflow's `synchronous=False` logging: closing a run (`set_terminated`) shuts its queue down, and that
waits up to a second for the queue's poll to time out — 1 s on every run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

_THREAD_PREFIX = "labkit-tracking"
_lock = threading.Lock()
_executor: Any = None
_last: Any = None  # the future of the last write submitted: when it is done, all are (one thread, in order)


def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any):
    """Run `fn(*args, **kwargs)` on the background thread after every write submitted before it; returns its
    future (its exception, if any, is raised by `future.result()`)."""
    global _executor, _last
    with _lock:
        if _executor is None:
            from concurrent.futures import ThreadPoolExecutor

            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=_THREAD_PREFIX)
        _last = _executor.submit(fn, *args, **kwargs)
        return _last


def wait() -> None:
    """Block until every write submitted so far has run (a no-op on the background thread itself, and when
    nothing is pending). The writes' own errors are not raised here but by `Run.flush`, which closing calls."""
    last = _last
    if last is None or last.done() or threading.current_thread().name.startswith(_THREAD_PREFIX):
        return
    try:
        last.result()
    except BaseException:  # reported by whoever waits on that write's own future
        pass


def _forget_in_child() -> None:
    # A forked child has no copy of the parent's thread: it starts its own on its first write.
    global _executor, _last, _lock
    _executor, _last, _lock = None, None, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_in_child)
