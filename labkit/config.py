"""The lab's configuration: where the project is, where runs go, which compliance mode applies.

One `LabConfig` flows through a job. Each field is resolved in the same order: an explicit
argument, then the environment, then `labkit.toml` at the project root, then the default.

`labkit.toml` is checked when it is read: a file that is not UTF-8 or not TOML, a section or key
labkit does not know (a typo would otherwise be ignored without a word), and a value of the wrong
type each raise a `ConfigError` naming the file, the key, the value and the fix. The keys:

    [tracking]  uri (text), artifact_root (text), experiment (text), system_metrics (true/false),
                system_metrics_interval (seconds, a number > 0)
    [lab]       compliance_mode (text), default_image_model (text), default_video_model (text)
    [c2pa]      cert, key, trust, tsa_url (text)
    [serve]     requests_per_minute, jobs_in_flight, queue (whole numbers > 0): `labkit serve`'s limits per
                API key (requests a minute, jobs queued or running at once) and the job queue's length;
                controllers (a list of text): the controllers a REST request may name besides "rules"
    [sweep]     backend ("local" or "ray"): where `labkit sweep` runs its points; address (text): the Ray
                cluster ("local", "auto", "ray://HOST:10001"; see labkit.sweeps.ray_backend)
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, InvalidParameter

CONFIG_FILE = "labkit.toml"
DEFAULT_EXPERIMENT = "labkit"
DEFAULT_COMPLIANCE_MODE = "research"
DEFAULT_IMAGE_MODEL = "toyworld"
DEFAULT_VIDEO_MODEL = "toyworld-motion"

ENV_ROOT = "LABKIT_ROOT"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_EXPERIMENT = "LABKIT_EXPERIMENT"
ENV_COMPLIANCE_MODE = "LABKIT_COMPLIANCE_MODE"

# What labkit.toml may hold: section -> key -> (kind, example for the fix).
_TEXT, _BOOL, _SECONDS = "text", "true or false", "a number of seconds greater than 0"
_COUNT = "a whole number greater than 0"
_TEXT_LIST = "a list of text"
SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    "tracking": {"uri": (_TEXT, '"sqlite:////data/mlflow.db"'), "artifact_root": (_TEXT, '"mlruns/artifacts"'),
                 "experiment": (_TEXT, '"my-study"'), "system_metrics": (_BOOL, "true"),
                 "system_metrics_interval": (_SECONDS, "5.0")},
    "lab": {"compliance_mode": (_TEXT, '"research"'), "default_image_model": (_TEXT, '"toyworld"'),
            "default_video_model": (_TEXT, '"toyworld-motion"')},
    "c2pa": {"cert": (_TEXT, '"c2pa/signer.pem"'), "key": (_TEXT, '"c2pa/signer.key"'),
             "trust": (_TEXT, '"c2pa/ca.pem"'), "tsa_url": (_TEXT, '"http://timestamp.example"')},
    "serve": {"requests_per_minute": (_COUNT, "120"), "jobs_in_flight": (_COUNT, "4"), "queue": (_COUNT, "32"),
              "controllers": (_TEXT_LIST, '["remote:http://127.0.0.1:11434/v1#qwen2.5:3b"]')},
    "sweep": {"backend": (_TEXT, '"ray"'), "address": (_TEXT, '"ray://head-node:10001"')},
}
#: Values a text key may take, where only a few are meaningful.
_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {("sweep", "backend"): ("local", "ray")}
# Text keys where "" means "not set" rather than a mistake.
_MAY_BE_EMPTY = {("c2pa", "cert"), ("c2pa", "key"), ("c2pa", "trust"), ("c2pa", "tsa_url")}


def _env(name: str) -> str | None:
    """An environment variable, refused when it is not UTF-8 text (undecodable bytes become lone surrogates,
    which no record, URI or database can hold)."""
    value = os.environ.get(name)
    if value is not None and not is_utf8(value):
        shown = printable(value)
        raise ConfigError(f"${name} = '{shown}' is not UTF-8 text.", value=shown,
                          fix=f"set {name} to UTF-8 text, or unset it.")
    return value


def is_utf8(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (it cannot when it holds lone surrogates, which is what
    undecodable bytes in argv, the environment or file names become)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """`text` with what is not UTF-8 (undecodable bytes, lone surrogates) written as backslash escapes,
    so printing, logging or sending it can never raise."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def find_project_root(start: str | Path | None = None) -> Path:
    """The project folder: `$LABKIT_ROOT`, else the nearest folder at or above `start` (default:
    the working directory) that holds `labkit.toml` or `mlruns/`, else `start` itself.

    Notebooks run from `notebooks/` and find the repository's store one level up this way.
    `$LABKIT_ROOT` must name an existing folder (a stale or misspelt setting is a `ConfigError`).
    """
    env = _env(ENV_ROOT)
    if env:
        try:
            root = Path(env).expanduser().resolve()
            is_dir, exists = root.is_dir(), root.exists()
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(f"${ENV_ROOT} = {env!r} cannot be used as a project folder: {e}.", value=env,
                              fix=f"set {ENV_ROOT} to an existing project folder, or unset it.") from e
        if not is_dir:
            what = "a file, not a folder" if exists else "a folder that does not exist"
            raise ConfigError(f"${ENV_ROOT} = {env!r} names {what}.", value=env,
                              fix=f"set {ENV_ROOT} to an existing project folder (the one holding labkit.toml or "
                                  "mlruns/), or unset it to find the project from the working directory.")
        return root
    here = Path(start or Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        try:
            if (folder / CONFIG_FILE).is_file() or (folder / "mlruns").is_dir():
                return folder
        except OSError:  # an unreadable folder above the project is not ours to judge
            continue
    return here


@dataclass(frozen=True)
class LabConfig:
    """Everything a Lab needs to know before it does any work.

    Attributes:
        root: the project folder (holds `mlruns/`).
        tracking_uri: the MLflow store; default `sqlite:///<root>/mlruns/mlflow.db`.
        artifact_root: where run artifacts are written; default `<root>/mlruns/artifacts`.
        experiment: the MLflow experiment runs go to.
        compliance_mode: the licence policy (see `labkit.compliance`).
        compliance_mode_source: where `compliance_mode` came from: "argument",
            "$LABKIT_COMPLIANCE_MODE", "<root>/labkit.toml [lab] compliance_mode" or "default"; errors
            about the mode name it (`labkit.compliance.resolve_mode(..., source=)`).
        system_metrics: log CPU/RAM/GPU system metrics with each run.
        system_metrics_interval: seconds between system-metric samples.
        default_image_model / default_video_model: what a plan without a model uses.
        c2pa_cert / c2pa_key: the certificate chain and private key (PEM) that sign outputs with C2PA
            content credentials (`LABKIT_C2PA_CERT` / `LABKIT_C2PA_KEY`, or `[c2pa] cert` / `key`);
            None: outputs are not signed.
        c2pa_trust: extra trust anchors (PEM) `labkit compliance verify` checks signers against
            (`LABKIT_C2PA_TRUST`, `[c2pa] trust`).
        c2pa_tsa_url: a timestamp authority for signatures (`[c2pa] tsa_url`); None: no timestamp.
        serve_requests_per_minute / serve_jobs_in_flight / serve_queue: `labkit serve`'s rate limit per API
            key, jobs a key may have queued or running at once, and the job queue's length (`[serve]`).
        serve_controllers: the controllers a REST request may name besides "rules" (`[serve] controllers`): a
            caller naming a remote one makes the server send the request, with its LLM API key, to that URL.
        sweep_backend / sweep_address: where `labkit sweep` runs its points, "local" or "ray", and the Ray
            cluster's address (`[sweep]`; None: start or find one, see `labkit.sweeps.ray_backend`).
    """

    root: Path
    tracking_uri: str
    artifact_root: Path
    experiment: str = DEFAULT_EXPERIMENT
    compliance_mode: str = DEFAULT_COMPLIANCE_MODE
    system_metrics: bool = True
    system_metrics_interval: float = 5.0
    default_image_model: str = DEFAULT_IMAGE_MODEL
    default_video_model: str = DEFAULT_VIDEO_MODEL
    c2pa_cert: Path | None = None
    c2pa_key: Path | None = None
    c2pa_trust: Path | None = None
    c2pa_tsa_url: str | None = None
    compliance_mode_source: str = "default"
    serve_requests_per_minute: int = 120
    serve_jobs_in_flight: int = 4
    serve_queue: int = 32
    serve_controllers: tuple[str, ...] = ()
    sweep_backend: str = "local"
    sweep_address: str | None = None

    @classmethod
    def resolve(
        cls,
        root: str | Path | None = None,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        compliance_mode: str | None = None,
        system_metrics: bool | None = None,
        create: bool = False,
    ) -> LabConfig:
        """Build the config from arguments, environment, `labkit.toml`, then defaults.

        An explicit `root` must be an existing folder: a misspelt path is refused (naming the close matches
        beside it) rather than starting a new, empty project. `create=True` starts a project there instead:
        the folder (and its parents) is created, and the store in it on first use.

        Raises `InvalidParameter` for an argument of the wrong type and `ConfigError` for a bad
        `labkit.toml`, a `$LABKIT_ROOT` that is not a folder, a root that does not exist (without `create`)
        or is a file, or a tracking URI that is a file store or a SQLite database whose path is a folder.
        """
        for name, value in (("tracking_uri", tracking_uri), ("experiment", experiment),
                            ("compliance_mode", compliance_mode)):
            if value is not None and not isinstance(value, str):
                raise InvalidParameter(f"{name} must be text, not {type(value).__name__} {value!r}.", value=value,
                                       fix=f"pass {name} as a string, or None for the default.")
            if value is not None and ("\x00" in value or not is_utf8(value)):
                raise InvalidParameter(f"{name} = {value!r} is not UTF-8 text without NUL characters.", value=value,
                                       fix=f"pass {name} as UTF-8 text.")
            if value is not None and not value.strip():  # given, but blank: it would fall back without a word
                raise InvalidParameter(f"{name} = {value!r} is blank.", value=value,
                                       fix=f"pass a {name.replace('_', ' ')}, or None (leave the option out) for "
                                           "the default.")
        if system_metrics is not None and not isinstance(system_metrics, bool):
            raise InvalidParameter(f"system_metrics must be True, False or None, not {system_metrics!r}.",
                                   value=system_metrics, fix="pass a bool, or None to use labkit.toml.")
        if not isinstance(create, bool):
            raise InvalidParameter(f"create must be True or False, not {type(create).__name__} {create!r}.",
                                   value=create, fix="pass create=True to start a new project at root, else leave "
                                                     "it out.")
        root = _explicit_root(root, create=create) if root is not None else find_project_root()
        config_path = root / CONFIG_FILE
        file_cfg = _read_config_file(config_path)
        tracking = file_cfg.get("tracking", {})
        lab = file_cfg.get("lab", {})
        c2pa = file_cfg.get("c2pa", {})
        serve = file_cfg.get("serve", {})
        sweep = file_cfg.get("sweep", {})

        artifact_root = _artifact_root(tracking.get("artifact_root"), root, config_path)
        if tracking_uri:
            uri, uri_from = tracking_uri, "the tracking URI argument"
        elif _env(ENV_TRACKING_URI):
            uri, uri_from = os.environ[ENV_TRACKING_URI], f"${ENV_TRACKING_URI}"
        elif tracking.get("uri"):
            uri, uri_from = tracking["uri"], f"{config_path} [tracking] uri"
        else:
            uri, uri_from = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", "the default"
        _check_tracking_uri(uri, uri_from, root)

        if compliance_mode and compliance_mode.strip():
            mode, mode_from = compliance_mode, "argument"
        elif (_env(ENV_COMPLIANCE_MODE) or "").strip():
            mode, mode_from = os.environ[ENV_COMPLIANCE_MODE], f"${ENV_COMPLIANCE_MODE}"
        elif "compliance_mode" in lab:
            mode, mode_from = lab["compliance_mode"], f"{config_path} [lab] compliance_mode"
        else:
            mode, mode_from = DEFAULT_COMPLIANCE_MODE, "default"
        return cls(
            root=root,
            tracking_uri=uri,
            artifact_root=artifact_root,
            experiment=(experiment or _env(ENV_EXPERIMENT) or tracking.get("experiment")
                        or DEFAULT_EXPERIMENT),
            compliance_mode=mode.strip(),
            compliance_mode_source=mode_from,
            system_metrics=(system_metrics if system_metrics is not None
                            else tracking.get("system_metrics", True)),
            system_metrics_interval=float(tracking.get("system_metrics_interval", 5.0)),
            default_image_model=lab.get("default_image_model", DEFAULT_IMAGE_MODEL),
            default_video_model=lab.get("default_video_model", DEFAULT_VIDEO_MODEL),
            c2pa_cert=_path_setting("LABKIT_C2PA_CERT", c2pa, "cert", root),
            c2pa_key=_path_setting("LABKIT_C2PA_KEY", c2pa, "key", root),
            c2pa_trust=_path_setting("LABKIT_C2PA_TRUST", c2pa, "trust", root),
            c2pa_tsa_url=_env("LABKIT_C2PA_TSA_URL") or c2pa.get("tsa_url") or None,
            serve_requests_per_minute=serve.get("requests_per_minute", 120),
            serve_jobs_in_flight=serve.get("jobs_in_flight", 4),
            serve_queue=serve.get("queue", 32),
            serve_controllers=tuple(c.strip() for c in serve.get("controllers", ())),
            sweep_backend=sweep.get("backend", "local"),
            sweep_address=sweep.get("address"),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root)
        d["artifact_root"] = str(self.artifact_root)
        for key in ("c2pa_cert", "c2pa_key", "c2pa_trust"):
            d[key] = str(d[key]) if d[key] is not None else None
        return d


def _explicit_root(root: object, *, create: bool = False) -> Path:
    """The project folder given as an argument: an existing folder, or with `create` one made now; never a file.

    A root that does not exist is refused without `create`: a misspelt path would otherwise start a new, empty
    project and its runs would land apart from the real one."""
    if not isinstance(root, (str, os.PathLike)):
        raise InvalidParameter(f"root must be a folder path, not {type(root).__name__} {root!r}.", value=root,
                               fix="pass the project folder as a str or Path, or None to find it.")
    try:
        path = Path(root).expanduser().resolve()
        exists = path.exists()
        is_file = exists and not path.is_dir()
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"The project folder {str(root)!r} cannot be used: {e}.", value=str(root),
                          fix="pass the path of a folder.") from e
    if is_file:
        raise ConfigError(f"The project folder {str(root)!r} is a file.", value=str(root),
                          fix="pass the folder that holds labkit.toml or mlruns/ (or create=True with a new "
                              "folder to start one).")
    if not exists and not create:
        raise _missing_root(str(root), path)
    if not exists:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"The project folder {str(root)!r} cannot be created: {e.strerror or e}.",
                              value=str(path), fix="pass a folder you can write to.") from e
    return path


def _missing_root(given: str, path: Path) -> ConfigError:
    """The error for an explicit root that does not exist: the folders beside it with a close name, and the fix."""
    import difflib

    parent = path.parent
    try:
        siblings = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    except OSError:
        siblings = []
    close = [str(parent / name) for name in difflib.get_close_matches(path.name, siblings, n=3, cutoff=0.6)]
    where = (f" Close matches beside it: {', '.join(map(repr, close))}." if close else
             "" if parent.is_dir() else f" Its parent {str(parent)!r} does not exist either.")
    fix = (f"did you mean {close[0]!r}? If not, " if close else "check the spelling; ") + (
        f"to start a new project there, create the folder first (mkdir -p {str(path)!r}; in Python "
        f"Lab({given!r}, create=True) does it).")
    full = f" ({str(path)!r})" if str(path) != given else ""
    return ConfigError(f"The project folder {given!r} does not exist{full}.{where}", value=str(path),
                       fix=fix)


def _artifact_root(value: str | None, root: Path, config_path: Path) -> Path:
    if value is None:
        return (root / "mlruns" / "artifacts").resolve()
    try:
        path = Path(value).expanduser()
        path = (path if path.is_absolute() else root / path).resolve()
        is_file = path.exists() and not path.is_dir()
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{config_path}: [tracking] artifact_root = {value!r} is not a usable path: {e}.",
                          value=value, fix="set artifact_root to a folder path, or delete the key.") from e
    if is_file:
        raise ConfigError(f"{config_path}: [tracking] artifact_root = {value!r} is a file, not a folder.",
                          value=value, fix="set artifact_root to a folder, or delete the key for mlruns/artifacts.")
    return path


def _check_tracking_uri(uri: str, where: str, root: Path) -> None:
    """Refuse, before MLflow spends minutes retrying, a URI that cannot be a store."""
    default = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    fix = f"use a database store such as {default!r} (set by MLFLOW_TRACKING_URI or [tracking] uri)."
    if "\x00" in uri:
        raise ConfigError(f"Tracking URI {uri!r} (from {where}) contains a NUL character.", value=uri, fix=fix)
    # A plain path or file: URI is MLflow's file store, which MLflow 3.13+ refuses.
    if uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks")):
        raise ConfigError(f"Tracking URI {uri!r} (from {where}) is a file store, which MLflow 3.13+ refuses.",
                          value=uri, fix=fix)
    if not uri.startswith("sqlite:///"):
        return
    db = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not db or db == ":memory:":
        return
    try:
        path = Path(db)
        if path.is_dir():
            raise ConfigError(f"Tracking URI {uri!r} (from {where}) names the folder {db!r}, not a database file.",
                              value=uri, fix=f"name a file in it, e.g. 'sqlite:///{path / 'mlflow.db'}'.")
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"Tracking URI {uri!r} (from {where}): {str(folder)!r} is a file, so the database "
                              f"cannot be created under it.", value=uri,
                              fix=f"put the database in a folder, e.g. {default!r}.")
    except OSError as e:
        raise ConfigError(f"Tracking URI {uri!r} (from {where}) cannot be checked: {e}.", value=uri, fix=fix) from e


def _path_setting(env: str, table: dict[str, Any], key: str, root: Path) -> Path | None:
    """A file setting: the environment (relative to the working directory), then `labkit.toml`
    (relative to the project root); None when neither names one."""
    value = _env(env)
    base = Path.cwd()
    where = f"${env}"
    if not value:
        value = table.get(key)
        base = root
        where = f"{root / CONFIG_FILE} [c2pa] {key}"
    if not value:
        return None
    try:
        path = Path(str(value)).expanduser()
        return (path if path.is_absolute() else base / path).resolve()
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{where} = {value!r} is not a usable path: {e}.", value=value,
                          fix="name a PEM file, or remove the setting.") from e


def _read_config_file(path: Path) -> dict[str, Any]:
    """`labkit.toml` parsed and checked against `SCHEMA`; {} when there is none."""
    try:
        if not path.exists():
            return {}
        if path.is_dir():
            raise ConfigError(f"{path} is a folder, not a config file.", value=str(path),
                              fix="remove the folder, or put a labkit.toml file there instead.")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path} cannot be read: {e.strerror or e}.", value=str(path),
                          fix="make the file readable, or delete it to use the defaults.") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text: byte {data[e.start:e.start + 1]!r} at line {line}.",
                          value=str(path), fix="save labkit.toml as UTF-8 (TOML files must be).") from e
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}.", value=str(path),
                          fix="fix the syntax at the position shown, or delete the file.") from e
    _check_schema(cfg, path)
    return cfg


def _check_schema(cfg: dict[str, Any], path: Path) -> None:
    for section, table in cfg.items():
        if section not in SCHEMA:
            raise ConfigError(f"{path}: unknown section [{section}].", value=section,
                              fix=f"use only the sections {sorted(SCHEMA)} (see labkit.config), or remove it.")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} = {table!r} is a value, not a section.", value=table,
                              fix=f"write it as a table: [{section}] on its own line, then its keys.")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{path}: [{section}] has an unknown key {key!r}.", value=key,
                                  fix=f"use only {sorted(SCHEMA[section])} in [{section}] (a typo?), or remove it.")
            kind, example = SCHEMA[section][key]
            choices = _CHOICES.get((section, key))
            if choices and isinstance(value, str) and value not in choices:
                raise ConfigError(f"{path}: [{section}] {key} = {value!r} is not one of {', '.join(choices)}.",
                                  value=value, fix=f"write {key} = {example} (one of {', '.join(map(repr, choices))}),"
                                                   " or remove the key for the default.")
            if _fits(kind, value, empty_ok=(section, key) in _MAY_BE_EMPTY):
                continue
            raise ConfigError(f"{path}: [{section}] {key} = {_toml_repr(value)} is not {kind}.", value=value,
                              fix=f"write it as, e.g., {key} = {example}, or remove the key for the default.")


def _fits(kind: str, value: Any, *, empty_ok: bool) -> bool:
    if kind == _TEXT:
        return isinstance(value, str) and "\x00" not in value and (empty_ok or bool(value.strip()))
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _COUNT:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if kind == _TEXT_LIST:
        return isinstance(value, list) and all(_fits(_TEXT, v, empty_ok=False) for v in value)
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
