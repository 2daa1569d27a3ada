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
to the new run ids (a run exported without its parent, when the parent is not in this store either, gets
no link but a `labkit.origin.parent_run_id` tag). Every imported run carries `labkit.origin.run_id` (its
id where it was made), so importing a bundle again — or into the store it came from — adds nothing.

A bundle is untrusted input (it may come from a cloud notebook or a colleague). Import therefore
works in three steps and writes nothing to the store until the first two have passed:

1. Check (nothing written anywhere). The manifest is read with a size cap and validated against
   `MANIFEST_SCHEMA` (every key present, every value of its type: run ids of letters, digits, `-`
   and `_`; each run's experiment listed; artifact entries `{path, size: int >= 0, sha256: 64 hex}`),
   then checked across entries: unique ids, no parent cycle, and every artifact path a plain
   relative path that stays under its run's artifact folder — no `..` or `.` parts, no absolute
   path, no drive letter, no backslash, no control character (NUL included), no empty part, no path
   that is both a file and a folder. In the zip, the member `runs/<run_id>/<path>` of every declared
   artifact must exist and be a plain file whose stored size is the declared one; a bundle with a
   symbolic link member anywhere, or an encrypted member, is refused. The declared sizes must add up
   to at most `max_bytes` (default `DEFAULT_MAX_BYTES`, 20 GiB). Zip members not named in the manifest
   are never read.
2. Stage (only a temporary folder). Each artifact is streamed from the zip in 1 MiB chunks into a
   fresh file of a private temporary folder, counting and hashing as it goes: reading stops as soon
   as a member gives more than its declared size (a zip bomb never gets written beyond its declared
   size), and the count and sha256 must match the manifest. The total is counted against `max_bytes`.
3. Write. Experiments and runs are created, artifacts copied in from the staging folder, and each
   run ended with its original status. If anything fails here (MLflow refuses a value, the disk
   fills, Ctrl-C), every run this import created is ended FAILED and deleted, with its artifact
   folder, and an experiment this import created is renamed aside and deleted, so the store holds
   no RUNNING or half-imported run and the name is free: importing again works.

Every refusal is a `ConfigError` (a bad bundle) or an `InvalidParameter` (a bad argument) that names
the bad key or value and the fix. A run that was RUNNING where it was exported is imported RUNNING.
Steps 1 and 2 live in `labkit.tracking.bundle_check`; this module exports, and does step 3.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter, LabkitError, TrackingError
from labkit.tracking.bundle_check import (
    CHUNK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_SCHEMA,
    open_checked,
    read_manifest,
    refuse,
    short,
    stage_artifacts,
)

if TYPE_CHECKING:  # pragma: no cover
    from labkit.tracking.store import Tracker

log = logging.getLogger(__name__)

ORIGIN_TAG = "labkit.origin.run_id"
ORIGIN_DONE_TAG = "labkit.origin.complete"
ORIGIN_PARENT_TAG = "labkit.origin.parent_run_id"
PARENT_TAG = "mlflow.parentRunId"
#: The most an import writes unless the caller passes a larger `max_bytes`.
DEFAULT_MAX_BYTES = 20 * 1024**3
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




# ---------------------------------------------------------------------------------------------- export


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


def _search_all(client, exp_ids: list[str], filter_string: str, view_type: int | None = None) -> list[Any]:
    out, token = [], None
    kwargs = {} if view_type is None else {"run_view_type": view_type}
    while True:
        page = client.search_runs(exp_ids, filter_string=filter_string, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token, **kwargs)
        out += list(page)
        token = page.token
        if not token:
            return out


def _artifact_files(client, run) -> tuple[Path | None, list[str], bool]:
    """The run's artifact folder (a local copy), the relative paths of its files, and whether the
    folder is a temporary download to remove afterwards."""
    from urllib.parse import unquote, urlparse

    uri = run.info.artifact_uri or ""
    parsed = urlparse(uri)
    if parsed.scheme in ("file", ""):
        folder = Path(unquote(parsed.path))
        if not folder.is_dir():
            return None, [], False
        temporary = False
    else:  # a remote artifact store: fetch a local copy
        folder = Path(tempfile.mkdtemp(prefix="labkit-bundle-"))
        temporary = True
        if client.list_artifacts(run.info.run_id):
            client.download_artifacts(run.info.run_id, "", str(folder))
    files = sorted(str(p.relative_to(folder)).replace("\\", "/") for p in folder.rglob("*") if p.is_file())
    return folder, files, temporary


def _check_out(out: str | Path) -> Path:
    """`out` as a path a bundle can be written to, or an InvalidParameter naming it and the fix.
    A missing parent folder is created, as for every other file labkit writes."""
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise InvalidParameter(f"The bundle path {short(out)} is not a file path.", value=out,
                               fix="pass a path ending in .zip, e.g. runs/study.zip.")
    out = Path(out)
    if out.is_dir():
        raise InvalidParameter(f"The bundle path {str(out)!r} is an existing folder.", value=str(out),
                               fix=f"pass a file path inside it, e.g. {str(out / 'study.zip')!r}.")
    if out.suffix.lower() != ".zip":
        raise InvalidParameter(f"The bundle {str(out)!r} must be a .zip file.", value=str(out),
                               fix="pass --out NAME.zip.")
    parent = out.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InvalidParameter(f"Cannot write the bundle {str(out)!r}: {str(folder)!r} is a file, not a "
                                       "folder.", value=str(out),
                                       fix="pass --out in an existing folder (or a new one under a folder).")
            break
    return out


def _writable_parent(out: Path) -> Path:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidParameter(f"Cannot create the folder {str(parent)!r} for the bundle {str(out)!r}: "
                               f"{e.strerror or e}.", value=str(out),
                               fix="pass --out in a folder you can write to.") from e
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidParameter(f"Cannot write the bundle {str(out)!r}: the folder {str(parent)!r} is not "
                               "writable.", value=str(out), fix="pass --out in a folder you can write to.")
    return parent


def _add_file(zf: zipfile.ZipFile, path: Path, arcname: str) -> dict[str, Any]:
    """Stream `path` into the zip as `arcname`; its size and sha256 come from the very bytes written."""
    info = zipfile.ZipInfo.from_file(path, arcname)
    info.compress_type = zipfile.ZIP_DEFLATED
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def _tracker(given: Any, who: str = "Bundles need") -> Tracker:
    """The store to read or write: a `Tracker`, or the `Lab` a notebook holds (its tracker); `who` starts the
    message when it is neither."""
    tracker = getattr(given, "tracker", given)
    if not callable(getattr(type(tracker), "run", None)) or not hasattr(tracker, "client"):
        raise InvalidParameter(f"{who} a Lab or its tracker, got {type(given).__name__}.", value=given,
                               fix="pass lab (or lab.tracker).")
    return tracker


def export_bundle(tracker: Tracker, selection: Sequence[str], out: str | Path) -> BundleSummary:
    """Write the runs named by `selection` (experiment names and/or run ids; a run brings the runs nested
    under it) of `tracker` (a `Tracker`, or a `Lab`) to the zip `out`, in the format described in the module
    docstring. The zip is written to a unique temporary name beside `out` and renamed into place, so `out` is
    never half-written."""
    from labkit.tracking.store import versions

    tracker = _tracker(tracker)
    if isinstance(selection, str):
        selection = [selection]
    if not selection or not isinstance(selection, Sequence) or \
            not all(isinstance(s, str) and s.strip() for s in selection):
        raise InvalidParameter(f"Nothing to export: {short(selection)}.", value=selection,
                               fix="name an experiment or one or more run ids (a list of strings).")
    out = _check_out(out)
    client = tracker.client
    runs = _select(tracker, selection)
    parent = _writable_parent(out)
    experiments: dict[str, dict[str, Any]] = {}
    for item in selection:  # a named experiment travels with its tags and notes even when it has no runs
        exp = client.get_experiment_by_name(item)
        if exp is not None:
            experiments[exp.experiment_id] = {"id": exp.experiment_id, "name": exp.name, "tags": dict(exp.tags)}
    entries, n_files = [], 0
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=parent)
        os.close(fd)
    except OSError as e:
        raise InvalidParameter(f"Cannot write the bundle {str(out)!r}: {e.strerror or e}.", value=str(out),
                               fix="pass --out in a folder you can write to.") from e
    tmp_out = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp_out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for run in runs:
                info, data = run.info, run.data
                if info.experiment_id not in experiments:
                    exp = client.get_experiment(info.experiment_id)
                    experiments[info.experiment_id] = {"id": exp.experiment_id, "name": exp.name,
                                                       "tags": dict(exp.tags)}
                metrics = {}
                for key in data.metrics:
                    history = client.get_metric_history(info.run_id, key)
                    metrics[key] = [[m.step, m.timestamp, _encode(m.value)] for m in history]
                folder, files, temporary = _artifact_files(client, run)
                artifacts = []
                try:
                    for rel in files:
                        artifacts.append({"path": rel, **_add_file(zf, folder / rel, f"runs/{info.run_id}/{rel}")})
                finally:
                    if temporary:
                        shutil.rmtree(folder, ignore_errors=True)
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
    except OSError as e:
        raise InvalidParameter(f"Cannot write the bundle {str(out)!r}: {e.strerror or e}"
                               f"{f' ({e.filename})' if e.filename else ''}.", value=str(out),
                               fix="free some disk space or pass --out on another disk.") from e
    finally:
        tmp_out.unlink(missing_ok=True)
    return BundleSummary(path=out, experiments=[e["name"] for e in experiments.values()], runs=len(entries),
                         artifacts=n_files)


# ---------------------------------------------------------------------------------------------- import






















def _imported(client, exp_id: str) -> dict[str, Any]:
    """origin run id → the run imported from it, in experiment `exp_id`."""
    return {r.data.tags[ORIGIN_TAG]: r for r in _search_all(client, [exp_id], f"tags.`{ORIGIN_TAG}` LIKE '%'")}




def _order(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs, parents before children, so each child's link can point at its parent's new id."""
    order, placed, runs = [], set(), {r["run_id"]: r for r in manifest["runs"]}
    for rid in runs:
        chain = []
        cur = rid
        while cur in runs and cur not in placed:  # no cycles: _check_manifest refused them
            chain.append(cur)
            placed.add(cur)
            cur = runs[cur].get("parent_run_id")
        order += [runs[c] for c in reversed(chain)]
    return order


def _rollback(tracker: Tracker, created_runs: list[str], created_exps: dict[str, str]) -> None:
    """Undo a failed step 3: end and delete the runs it created (and their artifact folders), and set
    aside the experiments it created, renamed so their names are free for the next import."""
    from urllib.parse import unquote, urlparse

    from mlflow.entities import ViewType

    client = tracker.client
    for rid in reversed(created_runs):
        try:
            uri = client.get_run(rid).info.artifact_uri or ""
            client.set_terminated(rid, status="FAILED")
            client.delete_run(rid)
            parsed = urlparse(uri)
            run_folder = Path(unquote(parsed.path)).parent
            if parsed.scheme in ("file", "") and run_folder.name == rid:  # <experiment>/<run id>/artifacts
                shutil.rmtree(run_folder, ignore_errors=True)
        except Exception:  # keep undoing the rest; the caller raises the error that started this
            log.warning("could not undo the imported run %s", rid, exc_info=True)
    for name, exp_id in created_exps.items():
        getattr(tracker, "_experiments", {}).pop(name, None)
        try:
            if _search_all(client, [exp_id], "", ViewType.ACTIVE_ONLY):
                continue  # another process put runs there meanwhile: it is theirs now
            client.rename_experiment(exp_id, f"{name} (failed import {uuid.uuid4().hex[:8]})")
            client.delete_experiment(exp_id)
        except Exception:
            log.warning("could not undo the imported experiment %s", name, exc_info=True)


def import_bundle(tracker: Tracker, path: str | Path, *, experiment: str | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> BundleSummary:
    """Add the runs of a bundle to `tracker`'s store (a `Tracker`, or a `Lab`), into `experiment` when given, else
    each run's own experiment by name. Runs already imported (or made in this store) are skipped; a run whose earlier
    import was cut off is imported again from scratch.

    The bundle is checked whole and its artifacts staged and verified before the store is touched, and
    a failure while writing undoes what this import wrote (see the module docstring). `max_bytes` caps
    the artifact bytes one import writes (default 20 GiB). Raises `ConfigError` for a bundle that is
    damaged or hostile, `InvalidParameter` for bad arguments or a disk that cannot hold the bundle."""
    tracker = _tracker(tracker)
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise InvalidParameter(f"The experiment {short(experiment)} is not a name.", value=experiment,
                               fix="pass an experiment name, or None to keep each run's own experiment.")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise InvalidParameter(f"max_bytes={short(max_bytes)} is not a positive number of bytes.", value=max_bytes,
                               fix=f"pass a positive int, e.g. {DEFAULT_MAX_BYTES} (20 GiB).")
    # 1. Check: the manifest, the paths, the zip members, the total size. Nothing is written.
    path, manifest = open_checked(path)
    # From reading which runs are here to the last write, one import at a time per store: two processes importing
    # the same bundle at once would each find nothing there and each write every run.
    with _import_lock(tracker):
        return _import_checked(tracker, path, manifest, experiment, max_bytes)


#: Seconds an import waits for another import into the same store (it may be copying gigabytes).
IMPORT_LOCK_TIMEOUT = 3600.0


def _import_lock(tracker: Tracker):
    """The cross-process lock that serialises imports into `tracker`'s store: beside a SQLite database, else in
    the project's mlruns/ (a tracking server: imports from this machine)."""
    from contextlib import nullcontext

    from labkit.locks import file_lock
    from labkit.tracking.health import sqlite_path

    db = sqlite_path(tracker.uri)
    root = getattr(getattr(tracker, "config", None), "root", None)
    target = (db.with_name(db.name + ".import") if db is not None
              else root / "mlruns" / "bundle-import" if root is not None else None)
    return file_lock(target, timeout=IMPORT_LOCK_TIMEOUT) if target is not None else nullcontext()


def _import_checked(tracker: Tracker, path: Path, manifest: dict[str, Any], experiment: str | None,
                    max_bytes: int) -> BundleSummary:
    """Steps 2 and 3 of `import_bundle`, for a bundle `open_checked` passed, under the import lock."""
    from mlflow.entities import Metric, Param, RunTag

    client = tracker.client
    exp_names = {e["id"]: (experiment or e["name"]) for e in manifest["experiments"]}
    existing_exps: dict[str, str] = {}
    for name in sorted(set(exp_names.values())):
        exp = client.get_experiment_by_name(name)
        if exp is None:
            continue
        if exp.lifecycle_stage != "active":
            raise InvalidParameter(f"The experiment {name!r} of the bundle {str(path)!r} is deleted in "
                                   f"{tracker.uri}.", value=name,
                                   fix=f"restore it (`mlflow experiments restore --experiment-id "
                                       f"{exp.experiment_id}`) or import into another experiment (--into NAME).")
        existing_exps[name] = exp.experiment_id
    known: dict[str, Any] = {}
    for exp_id in existing_exps.values():
        known.update(_imported(client, exp_id))
    summary = BundleSummary(path=path, experiments=sorted(set(exp_names.values())), runs=len(manifest["runs"]),
                            artifacts=sum(len(r["artifacts"]) for r in manifest["runs"]))
    plan: list[tuple[dict[str, Any], str, Any]] = []  # (entry, origin id, the run already here or None)
    for entry in _order(manifest):
        origin = entry["tags"].get(ORIGIN_TAG, entry["run_id"])
        plan.append((entry, origin, known.get(origin) or _same_store_run(client, entry["run_id"])))
    todo = [entry for entry, _, there in plan
            if there is None or there.data.tags.get(ORIGIN_DONE_TAG, "1") != "1"]
    declared = sum(a["size"] for entry in todo for a in entry["artifacts"])
    if declared > max_bytes:
        raise refuse(path, f"its artifacts declare {declared:,} bytes, over max_bytes={max_bytes:,}", declared,
                   fix="if you trust the bundle, allow more: --max-bytes N (max_bytes= to import_bundle).")
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="labkit-import-") as tmp:
        # 2. Stage: every artifact to import, streamed, counted and hashed into a private folder.
        folders = stage_artifacts(path, zf, todo, Path(tmp), max_bytes)
        # 3. Write, undoing everything this import wrote if any of it fails.
        created_runs: list[str] = []
        created_exps: dict[str, str] = {}
        try:
            exp_ids: dict[str, str] = {}
            for e in manifest["experiments"]:
                name = exp_names[e["id"]]
                if name not in existing_exps and name not in created_exps:
                    created_exps[name] = tracker.experiment_id(name)
                exp_ids[e["id"]] = existing_exps.get(name) or created_exps[name]
            for entry, origin, existing in plan:
                if existing is not None:
                    if existing.data.tags.get(ORIGIN_DONE_TAG, "1") == "1":
                        summary.skipped.append(origin)
                        summary.id_map[entry["run_id"]] = existing.info.run_id
                        continue
                    client.delete_run(existing.info.run_id)  # a cut-off import: start that run again
                tags = {k: v for k, v in entry["tags"].items() if k not in (PARENT_TAG, ORIGIN_TAG, ORIGIN_DONE_TAG)}
                parent = entry.get("parent_run_id")
                here = summary.id_map.get(parent) or (known[parent].info.run_id if parent in known else None) \
                    or (parent if parent and _same_store_run(client, parent) is not None else None)
                if here:
                    tags[PARENT_TAG] = here
                elif parent:  # exported without its parent: no link to a run this store lacks, but keep its id
                    tags[ORIGIN_PARENT_TAG] = parent
                tags[ORIGIN_TAG] = origin
                tags[ORIGIN_DONE_TAG] = "0"
                run = client.create_run(exp_ids[entry["experiment_id"]], start_time=entry["start_time"],
                                        tags={"mlflow.runName": entry["name"] or ""} if entry["name"] else None,
                                        run_name=entry["name"] or None)
                rid = run.info.run_id
                created_runs.append(rid)
                summary.id_map[entry["run_id"]] = rid
                params = [Param(k, v) for k, v in entry["params"].items()]
                for i in range(0, len(params), 100):
                    client.log_batch(rid, params=params[i:i + 100])
                tag_items = [RunTag(k, v) for k, v in tags.items() if k != "mlflow.runName"]
                for i in range(0, len(tag_items), 100):
                    client.log_batch(rid, tags=tag_items[i:i + 100])
                metrics = [Metric(k, _decode(v), ts, step) for k, hist in entry["metrics"].items()
                           for step, ts, v in hist]
                for i in range(0, len(metrics), 1000):
                    client.log_batch(rid, metrics=metrics[i:i + 1000])
                folder = folders.get(entry["run_id"])
                if folder is not None:
                    client.log_artifacts(rid, str(folder))
                    shutil.rmtree(folder)
                client.set_tag(rid, ORIGIN_DONE_TAG, "1")
                if entry["status"] in ("FINISHED", "FAILED", "KILLED"):  # a run still running there stays RUNNING
                    client.set_terminated(rid, status=entry["status"],
                                          end_time=entry["end_time"] or int(time.time() * 1000))
                summary.imported.append(rid)
            if experiment is None:  # last, so a failed import adds no tag to an experiment that was there
                for e in manifest["experiments"]:
                    exp_id = exp_ids[e["id"]]
                    current = client.get_experiment(exp_id).tags
                    for k, v in e["tags"].items():
                        if (not k.startswith("mlflow.") or k == "mlflow.note.content") and k not in current:
                            client.set_experiment_tag(exp_id, k, v)
        except BaseException as e:
            _rollback(tracker, created_runs, created_exps)
            if isinstance(e, LabkitError) or not isinstance(e, Exception):
                raise
            raise _write_error(path, tracker, e) from e
    return summary


def _write_error(path: Path, tracker: Tracker, e: Exception) -> LabkitError:
    from mlflow.exceptions import MlflowException

    first = short(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 300)
    if isinstance(e, MlflowException) and getattr(e, "error_code", "") == "INVALID_PARAMETER_VALUE":
        return refuse(path, f"MLflow refuses one of its values ({first}); nothing was imported", first)
    if isinstance(e, OSError):
        return InvalidParameter(f"Cannot write the artifacts of the bundle {str(path)!r} into {tracker.uri}: "
                                f"{first}; nothing was imported.", value=str(path),
                                fix="free some disk space (or check the artifact folder's permissions) and import "
                                    "again.")
    return TrackingError(f"Importing the bundle {str(path)!r} into {tracker.uri} failed: {first}; nothing was "
                         "imported.", value=str(path), fix="check that the store opens (`labkit doctor`) and "
                                                           "import again.")


def _same_store_run(client, run_id: str):
    """The run itself, when the bundle is imported into the store it came from."""
    try:
        run = client.get_run(run_id)
    except Exception:
        return None
    return run if run.info.lifecycle_stage == "active" else None


__all__ = ["DEFAULT_MAX_BYTES", "FORMAT", "FORMAT_VERSION", "MANIFEST_SCHEMA", "ORIGIN_TAG", "BundleSummary",
           "export_bundle", "import_bundle", "read_manifest"]
