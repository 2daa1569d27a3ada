"""MLflow tracking: the store, run contexts, and (later) compare helpers and bundles."""

from labkit.tracking.store import Run, Tracker, flatten, versions

__all__ = ["Run", "Tracker", "flatten", "versions"]
