"""The plan cache: the same controller, model revision, request and context give the same plan
without asking the LLM again. One JSON file per plan beside the MLflow store, so it survives
restarts and can be inspected or deleted by hand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from labkit.plan import Plan


class PlanCache:
    """Plans by key, stored as `<folder>/<sha256>.json`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(controller: str, model: str | None, revision: str | None, request: str, context: str) -> str:
        """The cache key: every input that can change the plan, hashed."""
        parts = json.dumps([controller, model, revision, request, context], ensure_ascii=False)
        return hashlib.sha256(parts.encode()).hexdigest()

    def get(self, key: str) -> Plan | None:
        path = self.folder / f"{key}.json"
        try:
            return Plan.from_json(json.loads(path.read_text())["plan"])
        except (OSError, ValueError, KeyError):
            return None  # absent or unreadable: plan afresh

    def put(self, key: str, plan: Plan, request: str) -> None:
        from labkit.outputs import atomic_write_bytes

        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"request": request, "plan": plan.to_json()}, ensure_ascii=False, indent=1)
        atomic_write_bytes(self.folder / f"{key}.json", data.encode(), mode=0o644)  # a reader never sees half a file

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0
