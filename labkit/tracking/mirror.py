"""Local copies of the artifacts of runs kept on a tracking server.

A local store's artifacts are folders of this machine; a tracking server's are behind `mlflow-artifacts:` URIs.
For those runs labkit keeps, per project, a mirror folder `<project>/mlruns/server-artifacts/<run id>/` holding
what this machine logged (a render's outputs land there as they are uploaded, so `Result.files` are real files)
and what it downloaded to read (`local_artifacts`).

    local_artifacts(tracker.client, run_id, "outputs", mirror)   # a local folder, downloaded once when needed
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

#: Mirror folders of the trackers this process opened, by tracking URI (so a `Run` made from a bare client,
#: e.g. by a sweep, keeps its copies in its project's mirror too).
_MIRRORS: dict[str, Path] = {}


def register(tracking_uri: str, mirror: Path) -> None:
    _MIRRORS[tracking_uri] = mirror


def mirror_folder(mirror: Path | None, tracking_uri: str | None = None) -> Path:
    """`mirror`, else the mirror of the tracker of `tracking_uri` this process opened, else a folder of this
    user's temporary directory."""
    if mirror is not None:
        return mirror
    if tracking_uri in _MIRRORS:
        return _MIRRORS[tracking_uri]
    import getpass

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"labkit-server-artifacts-{re.sub(r'[^A-Za-z0-9._-]+', '-', user)}"


def known_copy(run_id: str, path: str = "") -> Path | None:
    """The copy of a server run's artifact `path` in a mirror of this process, when one is there (no download)."""
    for mirror in _MIRRORS.values():
        found = mirror / run_id / path
        if found.exists():
            return found
    return None


def local_folder(artifact_uri: str | None) -> Path | None:
    """The folder of a `file:` (or bare path) artifact URI; None for a remote one."""
    if not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("file", "") else None


def local_artifacts(client, run_id: str, path: str = "", mirror: Path | None = None,
                    artifact_uri: str | None = None) -> Path | None:
    """Run `run_id`'s artifact `path` (a file or folder, "" for all) as a path on this machine, or None when
    the run has no such artifact.

    A local store's own folder is returned as it is. A server's artifact is read from the mirror when it is
    there, else downloaded into it (through a temporary folder renamed into place, so a reader never sees half a
    download, and two processes downloading at once both end with a whole copy).
    """
    uri = artifact_uri if artifact_uri is not None else client.get_run(run_id).info.artifact_uri
    folder = local_folder(uri)
    if folder is not None:
        found = folder / path
        return found if found.exists() else None
    root = mirror_folder(mirror, getattr(client, "tracking_uri", None)) / run_id
    target = root / path
    if path and target.exists():  # ("" is never taken from the mirror: it may hold only what this machine logged)
        return target
    try:
        listed = client.list_artifacts(run_id, posix_parent(path) or None)
    except Exception:  # an unknown run, a server gone: nothing to read here
        return None
    if (path and not any(f.path.rstrip("/") == path.rstrip("/") for f in listed)) or not listed:
        return None
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        got = Path(client.download_artifacts(run_id, path, str(tmp)))
        if not path:
            return _place(tmp, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(got, target)
        except OSError:  # a folder another process placed meanwhile: theirs is as good
            if not target.exists():
                raise
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place(tmp: Path, root: Path) -> Path:
    # every top-level artifact not already mirrored, each moved in with one rename
    for item in tmp.iterdir():
        dest = root / item.name
        if not dest.exists():
            try:
                os.replace(item, dest)
            except OSError:  # placed meanwhile by another process
                pass
    return root


def posix_parent(path: str) -> str:
    return path.rstrip("/").rpartition("/")[0]
