"""Bring a cloud session's runs home: import its bundle into the local store and tag each new run with
where it came from (`labkit.cloud.*`), then mark its job pulled."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.cloud import BUNDLE_NAME, JOB_TAG, PULLED_TAG, SESSION_FILE, CloudError
from labkit.cloud.jobs import Job, JobList, now

if TYPE_CHECKING:  # pragma: no cover
    from labkit.config import LabConfig
    from labkit.tracking.bundle import BundleSummary


@dataclass
class PullResult:
    """What a pull found and did."""

    bundle: Path
    summary: BundleSummary
    tags: dict[str, str]
    session: dict[str, Any] | None = None
    job: Job | None = None

    def lines(self) -> list[str]:
        out = [self.summary.line("import")]
        if self.session and self.session.get("state") == "failed":
            out.append("the cloud session stopped at an error; these are its runs up to that point")
        if self.summary.imported:  # runs already in the store (skipped) were left as they were
            out.append(f"{len(self.summary.imported)} run(s) tagged "
                       + ", ".join(f"{k}={v}" for k, v in self.tags.items() if k != PULLED_TAG))
        return out


def find_bundle(path: Path) -> Path:
    """The bundle at `path`: the zip itself, or `labkit-runs.zip` in the folder (searched below it)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        direct = path / BUNDLE_NAME
        if direct.is_file():
            return direct
        found = sorted(path.rglob(BUNDLE_NAME))
        if found:
            return found[0]
        raise CloudError(f"There is no {BUNDLE_NAME} in {str(path)!r}.", value=str(path),
                         fix="check that the cloud run finished (its last cell exports the runs) and that the "
                             "notebook was built by `labkit cloud`; then download its output again.")
    raise CloudError(f"{str(path)!r} does not exist.", value=str(path),
                     fix=f"pass the {BUNDLE_NAME} you downloaded (or the folder holding it).")


def read_session(bundle: Path) -> dict[str, Any] | None:
    """The session file the cloud wrote beside the bundle, if it came along."""
    side = bundle.parent / SESSION_FILE
    try:
        return json.loads(side.read_text()) if side.is_file() else None
    except ValueError:
        return None


def _job_ids(bundle: Path) -> list[str]:
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    return sorted({r["tags"][JOB_TAG] for r in manifest.get("runs", []) if r.get("tags", {}).get(JOB_TAG)})


def import_cloud_bundle(config: LabConfig, bundle: Path, tags: Mapping[str, str]) -> PullResult:
    """Import `bundle` into `config`'s store; every run imported now gets `tags` (and the time it was
    pulled). The job the runs came from is marked "pulled" in the job list."""
    from labkit.tracking.bundle import import_bundle
    from labkit.tracking.store import Tracker

    tracker = Tracker(config)
    summary = import_bundle(tracker, bundle)
    tags = {**{k: str(v) for k, v in tags.items()}, PULLED_TAG: now()}
    for rid in summary.imported:
        for k, v in tags.items():
            tracker.client.set_tag(rid, k, v)
    session = read_session(bundle)
    jobs = JobList.for_root(config.root)
    job = None
    ids = _job_ids(bundle) or ([session["job"]["job"]] if session and session.get("job", {}).get("job") else [])
    for job_id in ids:
        known = jobs.find(job_id)
        if known is not None:
            job = jobs.update(job_id, state="pulled" if not session or session.get("state") != "failed"
                              else "failed (pulled)", runs=sorted(set(known.runs) | set(summary.id_map.values())))
    return PullResult(bundle=bundle, summary=summary, tags=dict(tags), session=session, job=job)


__all__ = ["PullResult", "find_bundle", "import_cloud_bundle", "read_session"]
