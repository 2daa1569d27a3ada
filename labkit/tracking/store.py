"""The one place that owns MLflow: the store, experiments, and a run context.

The store is a SQLite database at `<project>/mlruns/mlflow.db` with artifacts under
`<project>/mlruns/artifacts` (MLflow 3.13+ refuses the old `./mlruns` file store). A tracking server
(`labkit tracking serve`, an `http://` URI) keeps both itself; runs then keep local copies of their files
under `<project>/mlruns/server-artifacts` (`Run.artifact_dir`, `Tracker.local_artifacts`). Runs are
written through an explicit `MlflowClient` bound to that URI — never the fluent API's global
active run — so two labs in one process, or callbacks on another thread, cannot cross.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.config import LabConfig
from labkit.errors import Cancelled, TrackingError, stop_reason
from labkit.tracking import background
from labkit.tracking.health import (
    check_server,
    enable_wal,
    half_migrated,
    process_tags,
    reap_dead_runs,
    sqlite_busy_timeout,
    sqlite_path,
)
from labkit.tracking.notes import NOTE_TAG  # noqa: F401  (where readers import it)
from labkit.tracking.system_metrics import RunMonitor, Sampler

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

#: MLflow's limit on one param value; longer values go to an artifact instead.
_MAX_PARAM_LEN = 6000
#: The experiment tag by which MLflow 3.17's UI opens an experiment on its runs table ("custom_model_development")
#: instead of its GenAI views ("genai_development", also what it assumes for an experiment without the tag).
KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
_VERSION_PACKAGES = ("labkit", "torch", "diffusers", "transformers", "mlflow")
#: How long a run opened by `Tracker.run` holds what `record` gives it (its params first): a shorter run (a toy
#: render) writes it all with its end in one transaction; a longer one (training, a sweep) has it in the store —
#: seen in the UI, kept if the process dies — after this many seconds.
HOLD_S = 1.0


def versions() -> dict[str, str]:
    """Installed versions of labkit and the stack, read from package metadata (imports nothing).

    Read once per process: every run records them, and what a process has imported does not change
    when a package is upgraded under it.
    """
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version()}
    for pkg in _VERSION_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def check_run_args(**args: Any) -> None:
    """A run's `name`, `experiment`, `parent_run_id` (text or None) and `params`, `tags` (mappings with text keys,
    or None), checked before anything opens: `InvalidParameter` naming the argument otherwise."""
    from labkit.errors import InvalidParameter

    for key, value in args.items():
        if value is None:
            continue
        if key in ("params", "tags"):
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise InvalidParameter(f"A run's {key} must be a mapping of names to values, got "
                                       f"{type(value).__name__} {value!r:.80}.", value=value,
                                       fix=f'pass {key}={{"name": value}}, or leave it out.')
        elif not isinstance(value, str):
            raise InvalidParameter(f"A run's {key} must be text, got {type(value).__name__} {value!r:.80}.",
                                   value=value, fix=f'pass {key}="…" as a string, or leave it out.')


def _metric(key: str, value: Any, ts: int, step: int) -> Any:
    """A `Metric` of a number as MLflow takes it (a bool is 1 or 0); else `InvalidParameter` naming the metric."""
    from mlflow.entities import Metric

    try:
        return Metric(key, float(None if isinstance(value, (str, bytes)) else value), ts, step)
    except (TypeError, ValueError):
        from labkit.errors import InvalidParameter

        raise InvalidParameter(f"Metric {key!r} must be a number, got {type(value).__name__} {value!r:.80}.",
                               value=value, fix="log a number (True/False log as 1/0); log text as a tag.") from None


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}: nested records become MLflow's flat params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"


class Run:
    """A live MLflow run: log params, metrics, tags and artifacts to it.

    Obtained from `Tracker.run()`; every method writes through the tracker's client at once, except
    `record`, whose params, metrics and tags a run opened by `Tracker.run` holds until `flush` or until it
    closes, finished or failed, and then writes in one go with its end (`batch.write`). Set `status` (e.g.
    "KILLED" for a cancelled render whose partial outputs were kept) to end the run with that status instead
    of FINISHED.
    """

    def __init__(self, client: MlflowClient, run_id: str | None, experiment_id: str, artifact_uri: str | None,
                 created: Any = None, mirror: Path | None = None, hold: bool = False, db: Path | None = None):
        self.status: str | None = None
        # where a run of a tracking server keeps, on this machine, the copies of what it logs (`artifact_dir`)
        self._mirror = mirror
        self.client = client
        self._db = db  # the SQLite database of the store (None for a server): `batch.write` may write it directly
        # `created`: the future of the MLflow run being created in the background (`Tracker.run`); its id and
        # artifact URI are then read from it when first asked for.
        self._created = created
        self._run_id = run_id
        self.experiment_id = experiment_id
        self._artifact_uri = artifact_uri
        # `record`'s metrics, params and tags not yet written, when held (`hold`: a run that `Tracker.run` closes)
        self._held: tuple[list[Any], list[Any], list[Any]] | None = ([], [], []) if hold else None
        self._held_lock = threading.Lock()
        self._linger: threading.Timer | None = None
        self._unwritten: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        self._repo: Any = None

    def _info(self) -> None:
        if self._run_id is None:
            try:
                info = self._created.result().info
            except Exception as e:
                raise TrackingError(f"Could not open a run in the MLflow store {self.client.tracking_uri!r}: {e}",
                                    value=self.client.tracking_uri,
                                    fix="check that the store is reachable and writable (`labkit doctor`).") from e
            self._run_id, self._artifact_uri = info.run_id, info.artifact_uri

    @property
    def run_id(self) -> str:
        self._info()
        return self._run_id

    @property
    def artifact_uri(self) -> str:
        self._info()
        return self._artifact_uri

    @property
    def artifact_dir(self) -> Path:
        """The run's artifact folder on this machine.

        For a local store, the store's own folder. For a tracking server (artifacts behind `mlflow-artifacts:`
        or another remote URI), a local folder `<mirror>/<run id>` holding copies of the files this process
        logged with `log_artifact(..., move=True)` and `log_text`, so a render's `Result.files` are real files
        here; the mirror is `<project>/mlruns/server-artifacts` for runs opened by `Tracker.run`. Other
        artifacts of the run are read with `Tracker.local_artifacts` (downloaded into the same folder).
        """
        from urllib.parse import unquote, urlparse

        parsed = urlparse(self.artifact_uri)
        if parsed.scheme in ("file", ""):
            return Path(unquote(parsed.path))
        from labkit.tracking.mirror import mirror_folder

        return mirror_folder(self._mirror, self.client.tracking_uri) / self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (nested dicts are flattened to dotted keys; None becomes '')."""
        from mlflow.entities import Param

        flat = flatten(params)
        long = {k: v for k, v in flat.items() if len(str(v)) > _MAX_PARAM_LEN}
        items = [Param(k, "" if v is None else str(v)) for k, v in flat.items() if k not in long]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        for k, v in long.items():  # too long for a param: keep it whole as an artifact
            self.log_text(str(v), f"params/{k}.txt")
            self.client.log_param(self.run_id, k, f"<{len(str(v))} chars: see params/{k}.txt>")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics at `step` (None values are skipped; see `_metric` for what is a number)."""
        ts = int(time.time() * 1000)
        items = [_metric(k, v, ts, step or 0) for k, v in flatten(metrics).items() if v is not None]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_series(self, key: str, values: list[float]) -> None:
        """Log `values` as the history of metric `key` (steps 0, 1, …) in one write."""
        ts = int(time.time() * 1000)
        items = [_metric(key, v, ts, i) for i, v in enumerate(values)]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values become strings; MLflow keeps up to 8000 characters each)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, "" if v is None else str(v)[:8000]) for k, v in flatten(tags).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, tags=items[i : i + 100])

    def record(self, *, metrics: Mapping[str, float] | None = None, series: Mapping[str, list[float]] | None = None,
               tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None) -> None:
        """Log metrics (at step 0), metric histories (steps 0, 1, …), tags and params together: a run opened by
        `Tracker.run` holds them and writes them in one go when it closes (or at `flush`), other runs at once.

        Values follow `log_metrics`, `log_series`, `set_tags` and `log_params` (None metrics are skipped, tags
        become strings of at most 8000 characters, a param too long for MLflow becomes an artifact); an empty tag
        (None or "") is not written — MLflow would show it as a column with nothing in it.
        """
        from mlflow.entities import Param, RunTag

        ts = int(time.time() * 1000)
        ms = [_metric(k, v, ts, 0) for k, v in flatten(metrics or {}).items() if v is not None]
        for key, values in (series or {}).items():
            ms += [_metric(key, v, ts, i) for i, v in enumerate(values)]
        ts_ = [RunTag(k, str(v)[:8000]) for k, v in flatten(tags or {}).items() if v is not None and str(v) != ""]
        flat = flatten(params or {})
        for k in [k for k, v in flat.items() if len(str(v)) > _MAX_PARAM_LEN]:  # rare: kept whole, written now
            self.log_text(str(flat[k]), f"params/{k}.txt")
            flat[k] = f"<{len(str(flat[k]))} chars: see params/{k}.txt>"
        ps = [Param(k, "" if v is None else str(v)) for k, v in flat.items()]
        with self._held_lock:
            if self._held is not None:
                for held, new in zip(self._held, (ms, ps, ts_), strict=True):
                    held += new
                return
        self._write(ms, ps, ts_)

    def flush(self) -> None:
        """Write what `record` holds; raise TrackingError if the store refuses it (what was held stays held, for
        the run's end to try again and keep what the store accepts)."""
        with self._held_lock:
            if self._held is None or not any(self._held):
                return
            held, self._held = self._held, ([], [], [])
        try:
            self._write(*held)
        except BaseException:
            with self._held_lock:
                if self._held is not None:
                    self._held = tuple(a + b for a, b in zip(held, self._held, strict=True))
            raise

    def _hold_for(self, seconds: float) -> None:
        # what is held is written after `seconds` unless the run has closed by then (`_close`)
        def write_held():
            try:
                self.flush()
            except Exception:  # held again: the run's end writes it, or says why it cannot
                pass

        self._linger = threading.Timer(seconds, write_held)
        self._linger.daemon = True
        self._linger.start()

    def _write(self, metrics: list[Any], params: list[Any], tags: list[Any], status: str | None = None) -> None:
        from labkit.tracking.batch import write

        try:
            write(self.client, self._db, self.run_id, metrics=metrics, params=params, tags=tags, status=status)
        except TrackingError:
            raise
        except Exception as e:
            raise TrackingError(f"Writing to run {self.run_id} failed: {e}", value=self.run_id,
                                fix="check that the MLflow store is reachable and writable (`labkit doctor`), "
                                    "then run again.") from e

    def _close(self, status: str, tags: Mapping[str, Any] | None = None,
               metrics: Mapping[str, float] | None = None) -> None:
        """Write what is held, plus `tags` and `metrics`, and end the run with `status`: in one go."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger.join()  # a write it began ends first
        if tags or metrics:
            self.record(tags=tags, metrics=metrics)
        with self._held_lock:
            held, self._held = self._held or ([], [], []), None
        self._unwritten = held  # kept for `_salvage` until the write succeeds
        self._write(*held, status=status)
        self._unwritten = ([], [], [])

    def _salvage(self, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
        # after a refused `_close`: each kind on its own through MLflow's batches, so what the store accepts is kept
        from labkit.tracking.batch import write

        for part in ({"metrics": metrics}, {"params": params}, {"tags": tags}):
            try:
                write(self.client, None, self.run_id, **part)
            except Exception:
                pass

    @property
    def _artifacts(self):
        # The run's artifact repository, made once from the URI the run was created with: MLflow's
        # client looks the run up in the store to find it (one more database read per run).
        if self._repo is None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            self._repo = get_artifact_repository(self.artifact_uri, tracking_uri=self.client.tracking_uri)
        return self._repo

    @property
    def local(self) -> bool:
        """Whether the run's artifacts are a folder on this machine (a local store, not a server's)."""
        from urllib.parse import urlparse

        return urlparse(self.artifact_uri).scheme in ("file", "")

    def staging(self) -> Path:
        """The folder above the run's artifact folder (on the same file system), to make temporary folders in
        whose contents `log_artifact(..., move=True)` then moves in without copying (for a tracking server: the
        local mirror's folder, see `artifact_dir`)."""
        self.artifact_dir.parent.mkdir(parents=True, exist_ok=True)
        return self.artifact_dir.parent

    def log_artifact(self, path: str | Path, artifact_path: str | None = None, *, move: bool = False) -> None:
        """Copy a file or folder into the run's artifacts (under `artifact_path`). With `move`, a file or folder from
        `staging()` whose destination does not exist yet is moved in whole (one rename) instead; for a tracking
        server it is uploaded, then moved into the run's local mirror (`artifact_dir`)."""
        path = Path(path)
        folder = path.is_dir()
        target = self.artifact_dir / (artifact_path or "") / ("" if folder else path.name)
        movable = move and (artifact_path or not folder) and not target.exists()
        if movable and not self.local:
            (self._artifacts.log_artifacts if folder else self._artifacts.log_artifact)(str(path), artifact_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)
            except OSError:  # another file system: the upload is what counts; keep a copy
                import shutil

                (shutil.copytree if folder else shutil.copy2)(path, target)
        elif movable:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        elif folder:
            self._artifacts.log_artifacts(str(path), artifact_path)
        else:
            self._artifacts.log_artifact(str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write `text` as the artifact `artifact_file` (e.g. 'notes/summary.md')."""
        import posixpath
        import tempfile

        folder, name = posixpath.split(posixpath.normpath(artifact_file))
        if not posixpath.isabs(folder) and ".." not in folder.split("/") and name not in ("", ".."):
            # straight into the run's folder (for a server: its local mirror, then uploaded from there), through a
            # temporary name (no copy from a temporary folder)
            dest = self.artifact_dir / folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, dest)
            if not self.local:
                self._artifacts.log_artifact(str(dest), folder or None)
            return
        with tempfile.TemporaryDirectory(prefix="labkit-text-") as tmp:
            (Path(tmp) / name).write_text(text, encoding="utf-8")
            self._artifacts.log_artifact(str(Path(tmp) / name), folder or None)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Write `data` as a JSON artifact."""
        self.log_text(json.dumps(data, indent=2, default=str), artifact_file)


class Tracker:
    """Runs and experiments in one MLflow store, as configured by a `LabConfig`."""

    def __init__(self, config: LabConfig):
        self.config = config
        self._client: MlflowClient | None = None
        self._experiments: dict[str, str] = {}
        self._db: Path | None = None  # the store's SQLite database, once open (None for a tracking server)
        self._sampler: Sampler | None = None  # a short run's one system-metrics sample (`system_metrics`)
        #: Runs of this host whose process was gone when the store opened, ended KILLED then.
        self.reaped: list[dict[str, str]] = []

    @property
    def uri(self) -> str:
        return self.config.tracking_uri

    @property
    def client(self) -> MlflowClient:
        """The MLflow client for this store, opened on first use.

        Opening (1) checks that the store can be reached at all, failing within seconds instead of
        MLflow's minutes of retries; (2) for SQLite, creates or migrates the database under a lock
        beside it, so many processes starting at once in a new project make one schema, and sets it
        up for many writers (WAL journal, busy timeout); (3) ends KILLED the runs of this host whose
        process is gone (`reaped` lists them).
        """
        self.wait()  # what this process wrote in the background is in the store before a read
        return self._store()

    def get_run(self, run_id: str) -> Any:
        """The MLflow run `run_id` of this store; `InvalidParameter` naming the store and where to find ids when
        it has no such run (MLflow's own error names neither)."""
        from mlflow.exceptions import MlflowException

        from labkit.errors import InvalidParameter

        try:
            return self.client.get_run(run_id)
        except MlflowException as e:
            raise InvalidParameter(
                f"The store {self.uri!r} has no run {run_id!r}.", value=run_id,
                fix="pass the id of one of its runs: `lab.runs()` lists them (newest first), so does the MLflow UI "
                    "(`labkit ui`); or point --root / --tracking-uri at the project the run belongs to.") from e

    def _store(self) -> MlflowClient:
        """The client, opened on first use, without waiting for background writes (for writes that need no order
        with them: opening a run)."""
        if self._client is None:
            _quiet_mlflow_logging()
            db = sqlite_path(self.uri)
            if db is not None:
                client = self._open_sqlite(db)
            else:
                check_server(self.uri)
                client = self._new_client()
            self._client, self._db = client, db
            if db is None:  # runs of this store made from a bare client (`Run(client, …)`) share this mirror
                from labkit.tracking.mirror import register

                register(self.uri, self.mirror)
            self.reaped = reap_dead_runs(client, db)
        return self._client

    def wait(self) -> None:
        """Wait until every write this process handed to the background thread is in the store (a closed run's
        are already: closing waits for them)."""
        background.wait()

    def _new_client(self) -> MlflowClient:
        from mlflow import MlflowClient

        try:
            client = MlflowClient(tracking_uri=self.uri)
            _quiet_run_links(client)
            client.search_experiments(max_results=1)  # the store is made (and migrated) here
            return client
        except Exception as e:
            text = str(e)
            if "alembic" in text.lower() or "migration" in text.lower() or "out-of-date" in text:
                raise TrackingError(
                    f"The MLflow store {self.uri!r} has a half-finished or outdated schema: {text.splitlines()[0]}",
                    value=self.uri, fix="run `labkit doctor --repair-store` (it keeps a backup of the database)."
                ) from e
            raise TrackingError(f"Cannot open the MLflow store {self.uri!r}: {text.splitlines()[0] if text else e}.",
                                value=self.uri,
                                fix="check MLFLOW_TRACKING_URI or [tracking] uri in labkit.toml.") from e

    def _open_sqlite(self, db: Path) -> MlflowClient:
        from labkit.locks import file_lock

        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"Cannot make the folder of the MLflow store {str(db)!r}: {e.strerror}.",
                                value=str(db.parent), fix="point the store at a folder you can write to "
                                "(MLFLOW_TRACKING_URI or [tracking] uri in labkit.toml).") from e
        sqlite_busy_timeout()
        with file_lock(db):  # one process at a time creates or migrates the schema
            leftovers = half_migrated(db)
            if leftovers:
                raise TrackingError(
                    f"The MLflow store {str(db)!r} was left half-migrated by an interrupted process "
                    f"(leftover tables: {', '.join(leftovers)}).", value=str(db),
                    fix="run `labkit doctor --repair-store` (it keeps a backup of the database).")
            client = self._new_client()
            enable_wal(db)
        return client

    def lock(self):
        """A cross-process lock on this store for a read-modify-write (a no-op for a tracking server,
        whose writes labkit cannot serialise from one machine)."""
        from contextlib import nullcontext

        from labkit.locks import file_lock

        db = sqlite_path(self.uri)
        return file_lock(db) if db is not None else nullcontext()

    @property
    def mirror(self) -> Path:
        """Where runs of a tracking server keep local copies of the files they log (`Run.artifact_dir`)."""
        return self.config.root / "mlruns" / "server-artifacts"

    def local_artifacts(self, run_id: str, path: str = "") -> Path | None:
        """Run `run_id`'s artifact `path` ("" for all) as a file or folder on this machine: a local store's own,
        a tracking server's from the mirror (downloaded on first use); None when the run has no such artifact."""
        from labkit.tracking.mirror import local_artifacts

        return local_artifacts(self.client, run_id, path, self.mirror)

    def experiment_id(self, name: str | None = None) -> str:
        """The id of experiment `name` (default: the config's), created with its artifacts under
        the artifact root if it does not exist yet (on a tracking server: under the server's own). labkit's
        experiments carry `mlflow.experimentKind = custom_model_development` (one opened without it gets it)."""
        name = name or self.config.experiment
        if name in self._experiments:
            return self._experiments[name]
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            exp_id = exp.experiment_id
            if KIND_TAG not in exp.tags:  # made before labkit tagged its experiments: the UI would open it as GenAI
                self.client.set_experiment_tag(exp_id, KIND_TAG, MODEL_DEVELOPMENT)
        else:
            # A tracking server stores a new experiment's artifacts itself (proxied: `mlflow-artifacts:/<slug>`,
            # laid out under its --artifacts-destination as a local store lays them out under the artifact root).
            location = (f"mlflow-artifacts:/{_slug(name)}" if self.uri.startswith(("http://", "https://"))
                        else (self.config.artifact_root / _slug(name)).as_uri())
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location,
                                                       tags={KIND_TAG: MODEL_DEVELOPMENT})
            except Exception:  # created meanwhile by another process: use theirs
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    @contextmanager
    def run(
        self,
        name: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        experiment: str | None = None,
        parent_run_id: str | None = None,
        system_metrics: bool | None = None,
    ) -> Iterator[Run]:
        """Open a run; on exit mark it FINISHED, or FAILED (re-raising) if the body raised.

        A failed run keeps everything logged before the error, plus the tags `labkit.error`
        (the message), `labkit.error_type`, and the traceback as `error.txt`. Ctrl-C, or a `Cancelled` job,
        marks the run KILLED. Every run carries the versions of labkit and its stack as `version.*` tags.
        """
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_SOURCE_NAME

        check_run_args(name=name, params=params, tags=tags, experiment=experiment, parent_run_id=parent_run_id)
        all_tags = {f"version.{k}": v for k, v in versions().items()}
        all_tags[MLFLOW_SOURCE_NAME] = "labkit"
        all_tags.update(process_tags())  # so a run whose process dies can be told from a live one
        if name:
            all_tags[MLFLOW_RUN_NAME] = name
        # A notebook run by `labkit sweep` gets its point's run here, so the runs it makes nest under it.
        parent_run_id = parent_run_id or os.environ.get("LABKIT_PARENT_RUN_ID") or None
        if parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        all_tags.update(flatten(tags or {}))
        exp_id = self.experiment_id(experiment)
        # The run is created in the background while the caller goes on (a render starts its pipeline call);
        # its id is read from the store when first asked for. Params (and what `record` adds) are held, and written
        # with the run's end in one go, or after HOLD_S if it lasts longer: a closed run is complete in the store.
        client = self.client
        created = background.submit(client.create_run, exp_id, run_name=name,  # an empty tag is an empty column
                                    tags={k: str(v) for k, v in all_tags.items() if v is not None and str(v) != ""})
        run = Run(client, None, exp_id, None, created=created, mirror=self.mirror, hold=True, db=self._db)
        monitor = self._start_monitor(run, system_metrics)
        run._hold_for(HOLD_S)
        try:
            if params:
                run.record(params=params)
            yield run
        except KeyboardInterrupt as e:
            self._finish(run, monitor, "KILLED", error=stop_reason(e))
            raise
        except Cancelled as e:  # a job cancelled where its pipeline cannot stop part-way: stopped, not failed
            self._finish(run, monitor, "KILLED", error=e.message)
            raise
        except BaseException as e:
            self._finish(run, monitor, "FAILED", error=f"{type(e).__name__}: {e}", exc=e)
            raise
        else:
            self._finish(run, monitor, run.status or "FINISHED")

    def _start_monitor(self, run: Run, enabled: bool | None) -> RunMonitor | None:
        if not (self.config.system_metrics if enabled is None else enabled):
            return None
        if self._sampler is None:
            self._sampler = Sampler(self.uri)
        return RunMonitor(lambda: run.run_id, self.config.system_metrics_interval, self.uri, self._sampler)

    def _finish(self, run: Run, monitor: RunMonitor | None, status: str, error: str | None = None,
                exc: BaseException | None = None) -> None:
        sample = monitor.stop() if monitor is not None else {}
        tags: dict[str, Any] = {}
        if error is not None:
            tags = {"labkit.error": error, "labkit.error_type": type(exc).__name__ if exc else status,
                    "labkit.status": status}
            if exc is not None:
                try:
                    run.log_text("".join(traceback.format_exception(exc)), "error.txt")
                except Exception:  # the run still ends, with its error tags
                    pass
        try:  # what the run holds, its error and sample, and its end: one write
            run._close(status, tags=tags, metrics=sample)
        except TrackingError as e:
            # The store refused what was held (a bad value, a param changed): keep what it accepts, end the run
            # FAILED saying why; that error is raised unless the body's own is on its way.
            run._salvage(*run._unwritten)
            try:
                run.client.set_tag(run.run_id, "labkit.error", (error + " | " if error else "") + e.message)
                run.client.set_terminated(run.run_id, status="FAILED")
            except Exception:
                pass
            if error is None:
                raise

    def search_runs(self, experiment: str | None = None, filter_string: str = "", max_results: int = 100):
        """Runs of `experiment` as MLflow `Run` objects, newest first; `filter_string` in MLflow's search
        syntax (e.g. "params.`plan.steps` = '20' and metrics.`time.total_s` < 5")."""
        from mlflow.exceptions import MlflowException

        from labkit.errors import InvalidParameter

        if not isinstance(filter_string, str):
            raise InvalidParameter(f"The run filter must be text, got {type(filter_string).__name__} "
                                   f"{filter_string!r}.", value=filter_string,
                                   fix="pass an MLflow search string, e.g. \"tags.`labkit.job` = 'render'\".")
        exp_id = self.experiment_id(experiment)
        try:
            return self.client.search_runs([exp_id], filter_string=filter_string, max_results=max_results,
                                           order_by=["attributes.start_time DESC"])
        except MlflowException as e:
            if e.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise InvalidParameter(f"The run filter {filter_string!r} is not valid MLflow search syntax: {e.message}",
                                   value=filter_string,
                                   fix="write clauses as KEY OP VALUE joined by 'and', quoting names with dots in "
                                       "backticks, e.g. \"params.`plan.steps` = '20'\" or \"metrics.score > 0.5\" "
                                       "(https://mlflow.org/docs/latest/search-runs.html).") from e

    def get_note(self, run_id: str | None = None, *, experiment: str | None = None) -> str:
        """The Markdown notes of run `run_id`, or of `experiment` (default: the config's) without one (without the
        summary line a render's description starts with: `labkit.tracking.notes`)."""
        from labkit.tracking.notes import get_note

        return get_note(self, run_id, experiment=experiment)

    def note(self, text: str, run_id: str | None = None, *, experiment: str | None = None,
             replace: bool = False) -> str:
        """Add `text` (Markdown) to the notes of run `run_id`, or of `experiment` without one; return the notes.

        The notes are in MLflow's own description tag, so the MLflow UI shows them (and can edit them). A new
        note goes below the earlier ones, after a blank line, unless `replace`.
        """
        from labkit.tracking.notes import add_note

        return add_note(self, text, run_id, experiment=experiment, replace=replace)


def _quiet_run_links(client) -> None:
    # Against a tracking server, MLflow's `set_terminated` reads the run back and prints two "View run … at"
    # lines to stdout: labkit's stdout carries JSON (`--json`), and the read costs a round trip per run. This
    # client (and only it) skips that; MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT would change the whole process.
    tracking = getattr(client, "_tracking_client", None)
    if tracking is not None and hasattr(tracking, "_log_url"):
        tracking._log_url = lambda run_id: None


def _quiet_mlflow_logging() -> None:
    # Creating a SQLite store logs a page of alembic migrations at INFO; a researcher needs none of it.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils",
                 "mlflow.system_metrics", "mlflow.system_metrics.system_metrics_monitor"):
        logging.getLogger(name).setLevel(logging.WARNING)
