"""Locks for files that many processes of one project share (the store, caches, the job list).

    with file_lock(root / "mlruns" / "weight-hashes.json"):
        data = read(path); data.update(mine); atomic_write_bytes(path, dump(data))

A lock is a `filelock.FileLock` on `<path>.lock` beside the file it guards. The operating system
drops it when the process holding it dies, so a killed process never leaves a project locked.
Waiting longer than `timeout` seconds raises `TrackingError` naming the lock file; nothing waits
forever. Writes under a lock still go through a temporary file and a rename
(`labkit.outputs.atomic_write_bytes`), so a reader that takes no lock never sees half a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.errors import TrackingError

#: Seconds to wait for another process's lock: creating or migrating a store takes seconds.
DEFAULT_TIMEOUT = 120.0


def lock_path(path: str | Path) -> Path:
    """The lock file that guards `path`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def file_lock(path: str | Path, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the cross-process lock of `path` (created beside it) for the body of the `with`."""
    from filelock import FileLock, Timeout

    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    # One lock object per file in a process, so a thread that already holds it may take it again.
    held = FileLock(str(lock), is_singleton=True)
    try:
        held.acquire(timeout=timeout)
    except Timeout as e:
        raise TrackingError(
            f"Another process has held the lock {str(lock)!r} for more than {timeout:.0f} s.", value=str(lock),
            fix="wait for the other labkit process to finish, or end it; a lock of a process that died is "
                "released by the operating system.") from e
    try:
        yield
    finally:
        held.release()
