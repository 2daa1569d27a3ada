"""The cloud job list: what was pushed or built, where, with which parameters, and its last known state.

It is one small JSON file beside the store, `<root>/mlruns/cloud-jobs.json`:

    {"format": "labkit-cloud-jobs", "jobs": [
        {"id", "platform" ("kaggle" | "colab"), "notebook", "target" (kernel ref | notebook path),
         "folder" (what was built), "parameters", "gpu", "internet", "datasets", "install",
         "created", "updated" (ISO-8601), "state", "version" (Kaggle), "url", "runs" (ids pulled)}]}

`state` moves built → pushed → queued/running/complete/error (from `status`) → pulled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.cloud import CloudError

FILE_NAME = "cloud-jobs.json"
FORMAT = "labkit-cloud-jobs"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    """One notebook sent (or ready to be sent) to a cloud platform."""

    id: str
    platform: str
    notebook: str
    target: str
    folder: str
    parameters: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    internet: bool = False
    datasets: list[str] = field(default_factory=list)
    install: str = ""
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    state: str = "built"
    version: int | None = None
    url: str | None = None
    runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items()) or "defaults"
        where = self.target + (f" v{self.version}" if self.version else "")
        runs = f", {len(self.runs)} run(s) pulled" if self.runs else ""
        return f"{self.updated}  {self.platform:6s} {self.state:9s} {where}  ({self.notebook}; {params}{runs})"


class JobList:
    """The jobs of one project, read from and written back to `path` at each change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def for_root(cls, root: str | Path) -> JobList:
        return cls(Path(root) / "mlruns" / FILE_NAME)

    def all(self) -> list[Job]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            names = set(Job.__dataclass_fields__)
            return [Job(**{k: v for k, v in j.items() if k in names}) for j in data["jobs"]]
        except (ValueError, KeyError, TypeError) as e:
            raise CloudError(f"The cloud job list {str(self.path)!r} cannot be read: {e}.", value=str(self.path),
                             fix="move the file aside; `labkit cloud jobs` starts a new list.") from e

    def _write(self, jobs: list[Job]) -> None:
        from labkit.outputs import atomic_write_bytes

        data = json.dumps({"format": FORMAT, "jobs": [j.to_dict() for j in jobs]}, indent=1)
        atomic_write_bytes(self.path, data.encode(), mode=0o644)

    def add(self, job: Job) -> Job:
        from labkit.locks import file_lock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path):  # read-modify-write: another process may add or update a job meanwhile
            jobs = [j for j in self.all() if j.id != job.id]
            self._write([*jobs, job])
        return job

    def update(self, job_id: str, **changes: Any) -> Job | None:
        from labkit.locks import file_lock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path):
            jobs = self.all()
            for job in jobs:
                if job.id == job_id:
                    for k, v in changes.items():
                        setattr(job, k, v)
                    job.updated = now()
                    self._write(jobs)
                    return job
        return None

    def latest(self, platform: str, target: str) -> Job | None:
        """The newest job of `platform` sent to `target` (a kernel ref without version, a notebook path)."""
        found = [j for j in self.all() if j.platform == platform and j.target == target]
        return found[-1] if found else None  # `add` appends, so the list is in order of creation

    def find(self, job_id: str) -> Job | None:
        return next((j for j in self.all() if j.id == job_id), None)


__all__ = ["FILE_NAME", "Job", "JobList"]
