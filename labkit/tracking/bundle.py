"""Portable run bundles: move MLflow runs between stores as a zip that any version can read.

    export_bundle(tracker, ["labkit"], "study.zip")          # an experiment (or run ids, with their children)
    import_bundle(tracker, "study.zip")                      # into another store; importing twice adds nothing

The bundle is not a copy of the database. It is a zip holding

    manifest.json                   what is below, as plain JSON (the format is documented in FORMAT)
    runs/<run_id>/<artifact path>   every artifact file of every run, byte for byte

and `manifest.json` is

    {"format": "labkit-run-bundle", "format_version": 1, "created": ISO-8601 time, "labkit": version,
     "mlflow": version, "source": {"tracking_uri": …, "selection": [what was asked for]},
     "experiments": [{"id", "name", "tags": {…}}],
     "runs": [{"run_id", "experiment_id", "name", "status", "start_time", "end_time" (ms since the epoch),
               "parent_run_id", "params": {…}, "tags": {…},
               "metrics": {key: [[step, timestamp_ms, value], …]}      (the full history, in logged order;
                                                                        NaN and ±inf as "NaN", "Infinity", "-Infinity")
               "artifacts": [{"path", "size", "sha256"}]}]}

Import makes each experiment by name in the target store (or uses the one there), creates each run
with its original times, params, tags, metric history and artifacts, and rewrites the parent links
to the new run ids. Every imported run carries `labkit.origin.run_id` (its id where it was made), so
importing a bundle again — or into the store it came from — adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import ConfigError, InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.tracking.store import Tracker

FORMAT = "labkit-run-bundle"
FORMAT_VERSION = 1
ORIGIN_TAG = "labkit.origin.run_id"
ORIGIN_DONE_TAG = "labkit.origin.complete"
PARENT_TAG = "mlflow.parentRunId"
_RUN_ID_CHARS = set("0123456789abcdef")


@dataclass
class BundleSummary:
    """What an export wrote or an import did."""

    path: Path
    experiments: list[str]
    runs: int
    artifacts: int
    imported: list[str] = field(default_factory=list)  # new run ids
    skipped: list[str] = field(default_factory=list)   # origin ids already in the store
    id_map: dict[str, str] = field(default_factory=dict)

    def line(self, verb: str) -> str:
        if verb == "import":
            return (f"imported {len(self.imported)} run(s) into {', '.join(self.experiments)} from {self.path}; "
                    f"{len(self.skipped)} were already there")
        return f"exported {self.runs} run(s) of {', '.join(self.experiments)} with {self.artifacts} artifact file(s) " \
               f"to {self.path}"


def _encode(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _decode(v: float | str) -> float:
    return float(v)  # float() reads "NaN", "Infinity" and "-Infinity"


def _select(tracker: Tracker, selection: Sequence[str]) -> list[Any]:
    """The MLflow runs named by `selection`: experiment names (all their runs) and run ids (each with
    the runs nested under it)."""
    client = tracker.client
    runs: dict[str, Any] = {}
    for item in selection:
        exp = client.get_experiment_by_name(item)
        if exp is not None:
            for r in _search_all(client, [exp.experiment_id], ""):
                runs[r.info.run_id] = r
            continue
        run = None
        if len(item) == 32 and set(item) <= _RUN_ID_CHARS:
            try:
                run = client.get_run(item)
            except Exception:
                run = None
        if run is None:
            names = [e.name for e in client.search_experiments()]
            raise InvalidParameter(f"{item!r} is neither an experiment nor a run in {tracker.uri}.", value=item,
                                   fix=f"name an experiment ({', '.join(names) or 'none yet'}) or run ids from "
                                       "the MLflow UI or `lab.runs()`.")
        stack = [run]
        while stack:
            r = stack.pop()
            if r.info.run_id in runs:
                continue
            runs[r.info.run_id] = r
            stack += _search_all(client, [r.info.experiment_id], f"tags.`{PARENT_TAG}` = '{r.info.run_id}'")
    return list(runs.values())


def _search_all(client, exp_ids: list[str], filter_string: str) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_runs(exp_ids, filter_string=filter_string, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _artifact_files(client, run) -> tuple[Path | None, list[str]]:
    """The run's artifact folder (a local copy) and the relative paths of its files."""
    from urllib.parse import unquote, urlparse

    uri = run.info.artifact_uri or ""
    parsed = urlparse(uri)
    if parsed.scheme in ("file", ""):
        folder = Path(unquote(parsed.path))
        if not folder.is_dir():
            return None, []
    else:  # a remote artifact store: fetch a local copy
        folder = Path(tempfile.mkdtemp(prefix="labkit-bundle-"))
        if client.list_artifacts(run.info.run_id):
            client.download_artifacts(run.info.run_id, "", str(folder))
    files = sorted(str(p.relative_to(folder)).replace("\\", "/") for p in folder.rglob("*") if p.is_file())
    return folder, files


def export_bundle(tracker: Tracker, selection: Sequence[str], out: str | Path) -> BundleSummary:
    """Write the runs named by `selection` (experiment names and/or run ids; a run brings the runs nested
    under it) to the zip `out`, in the format described in the module docstring."""
    from labkit.tracking.store import versions

    if not selection:
        raise InvalidParameter("Nothing to export.", value=selection,
                               fix="name an experiment or one or more run ids.")
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise InvalidParameter(f"The bundle {str(out)!r} must be a .zip file.", value=str(out),
                               fix="pass --out NAME.zip.")
    client = tracker.client
    runs = _select(tracker, selection)
    experiments: dict[str, dict[str, Any]] = {}
    entries, n_files = [], 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp_out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for run in runs:
            info, data = run.info, run.data
            if info.experiment_id not in experiments:
                exp = client.get_experiment(info.experiment_id)
                experiments[info.experiment_id] = {"id": exp.experiment_id, "name": exp.name, "tags": dict(exp.tags)}
            metrics = {}
            for key in data.metrics:
                history = client.get_metric_history(info.run_id, key)
                metrics[key] = [[m.step, m.timestamp, _encode(m.value)] for m in history]
            folder, files = _artifact_files(client, run)
            artifacts = []
            for rel in files:
                path = folder / rel
                blob = path.read_bytes()
                zf.writestr(f"runs/{info.run_id}/{rel}", blob)
                artifacts.append({"path": rel, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
            n_files += len(artifacts)
            entries.append({"run_id": info.run_id, "experiment_id": info.experiment_id, "name": info.run_name,
                            "status": info.status, "start_time": info.start_time, "end_time": info.end_time,
                            "parent_run_id": data.tags.get(PARENT_TAG), "params": dict(data.params),
                            "tags": dict(data.tags), "metrics": metrics, "artifacts": artifacts})
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "labkit": versions().get("labkit"), "mlflow": versions().get("mlflow"),
                    "source": {"tracking_uri": tracker.uri, "selection": list(selection)},
                    "experiments": list(experiments.values()), "runs": entries}
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, allow_nan=False))
    tmp_out.replace(out)
    return BundleSummary(path=out, experiments=[e["name"] for e in experiments.values()], runs=len(entries),
                         artifacts=n_files)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a bundle, after checking it is one this labkit can read."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameter(f"There is no bundle at {str(path)!r}.", value=str(path),
                               fix="pass a .zip written by `labkit export`.")
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise ConfigError(f"{str(path)!r} is not a labkit bundle (no readable manifest.json): {e}.", value=str(path),
                          fix="pass a .zip written by `labkit export`.") from e
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{str(path)!r} is a {manifest.get('format')!r} file, not a labkit run bundle.",
                          value=manifest.get("format"), fix="pass a .zip written by `labkit export`.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} has bundle format version {version!r}; this labkit reads up to "
                          f"{FORMAT_VERSION}.", value=version, fix="upgrade labkit (pip install -U labkit).")
    return manifest


def _imported(client, exp_id: str) -> dict[str, Any]:
    """origin run id → the run imported from it, in experiment `exp_id`."""
    return {r.data.tags[ORIGIN_TAG]: r for r in _search_all(client, [exp_id], f"tags.`{ORIGIN_TAG}` LIKE '%'")}


def import_bundle(tracker: Tracker, path: str | Path, *, experiment: str | None = None) -> BundleSummary:
    """Add the runs of a bundle to `tracker`'s store (into `experiment` when given, else each run's own
    experiment by name). Runs already imported (or made in this store) are skipped; a run whose earlier
    import was cut off is imported again from scratch."""
    from mlflow.entities import Metric, Param, RunTag

    manifest = read_manifest(path)
    client = tracker.client
    exp_names = {e["id"]: (experiment or e["name"]) for e in manifest["experiments"]}
    exp_ids: dict[str, str] = {}
    for e in manifest["experiments"]:
        name = exp_names[e["id"]]
        exp_ids[e["id"]] = tracker.experiment_id(name)
        if experiment is None:
            current = client.get_experiment(exp_ids[e["id"]]).tags
            for k, v in e["tags"].items():
                if not k.startswith("mlflow.") or k == "mlflow.note.content":
                    if k not in current:
                        client.set_experiment_tag(exp_ids[e["id"]], k, v)
    known: dict[str, Any] = {}
    for exp_id in set(exp_ids.values()):
        known.update(_imported(client, exp_id))
    summary = BundleSummary(path=Path(path), experiments=sorted(set(exp_names.values())), runs=len(manifest["runs"]),
                            artifacts=sum(len(r["artifacts"]) for r in manifest["runs"]))
    # Parents before children, so each child's link can point at its parent's new id.
    order, placed, runs = [], set(), {r["run_id"]: r for r in manifest["runs"]}
    def place(rid: str) -> None:
        if rid in placed:
            return
        parent = runs[rid].get("parent_run_id")
        if parent in runs:
            place(parent)
        placed.add(rid)
        order.append(runs[rid])
    for rid in runs:
        place(rid)
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="labkit-import-") as tmp:
        for entry in order:
            origin = entry["tags"].get(ORIGIN_TAG, entry["run_id"])
            existing = known.get(origin) or _same_store_run(client, entry["run_id"])
            if existing is not None:
                if existing.data.tags.get(ORIGIN_DONE_TAG, "1") == "1":
                    summary.skipped.append(origin)
                    summary.id_map[entry["run_id"]] = existing.info.run_id
                    continue
                client.delete_run(existing.info.run_id)  # a cut-off import: start that run again
            tags = {k: v for k, v in entry["tags"].items() if k not in (PARENT_TAG, ORIGIN_TAG, ORIGIN_DONE_TAG)}
            parent = entry.get("parent_run_id")
            if parent:
                tags[PARENT_TAG] = summary.id_map.get(parent, parent)
            tags[ORIGIN_TAG] = origin
            tags[ORIGIN_DONE_TAG] = "0"
            run = client.create_run(exp_ids[entry["experiment_id"]], start_time=entry["start_time"],
                                    tags={"mlflow.runName": entry["name"] or ""} if entry["name"] else None,
                                    run_name=entry["name"] or None)
            rid = run.info.run_id
            summary.id_map[entry["run_id"]] = rid
            params = [Param(k, v) for k, v in entry["params"].items()]
            for i in range(0, len(params), 100):
                client.log_batch(rid, params=params[i:i + 100])
            tag_items = [RunTag(k, v) for k, v in tags.items() if k != "mlflow.runName"]
            for i in range(0, len(tag_items), 100):
                client.log_batch(rid, tags=tag_items[i:i + 100])
            metrics = [Metric(k, _decode(v), ts, step) for k, hist in entry["metrics"].items() for step, ts, v in hist]
            for i in range(0, len(metrics), 1000):
                client.log_batch(rid, metrics=metrics[i:i + 1000])
            if entry["artifacts"]:
                folder = Path(tmp) / entry["run_id"]
                for a in entry["artifacts"]:
                    target = folder / a["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(f"runs/{entry['run_id']}/{a['path']}") as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    if hashlib.sha256(target.read_bytes()).hexdigest() != a["sha256"]:
                        raise ConfigError(f"The bundle {str(path)!r} is damaged: {a['path']} of run "
                                          f"{entry['run_id']} does not match its checksum.", value=a["path"],
                                          fix="export the bundle again.")
                client.log_artifacts(rid, str(folder))
                shutil.rmtree(folder)
            client.set_tag(rid, ORIGIN_DONE_TAG, "1")
            if entry["status"] in ("FINISHED", "FAILED", "KILLED"):  # a run still running there stays RUNNING
                client.set_terminated(rid, status=entry["status"],
                                      end_time=entry["end_time"] or int(time.time() * 1000))
            summary.imported.append(rid)
    return summary


def _same_store_run(client, run_id: str):
    """The run itself, when the bundle is imported into the store it came from."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return None
    return run if run.info.lifecycle_stage == "active" else None


__all__ = ["FORMAT", "FORMAT_VERSION", "ORIGIN_TAG", "BundleSummary", "export_bundle", "import_bundle",
           "read_manifest"]
