"""The lab's configuration: where the project is, where runs go, which compliance mode applies.

One `LabConfig` flows through a job. Each field is resolved in the same order: an explicit
argument, then the environment, then `labkit.toml` at the project root, then the default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError

CONFIG_FILE = "labkit.toml"
DEFAULT_EXPERIMENT = "labkit"
DEFAULT_COMPLIANCE_MODE = "research"
DEFAULT_IMAGE_MODEL = "toyworld"
DEFAULT_VIDEO_MODEL = "toyworld-motion"


def find_project_root(start: str | Path | None = None) -> Path:
    """The project folder: `$LABKIT_ROOT`, else the nearest folder at or above `start` (default:
    the working directory) that holds `labkit.toml` or `mlruns/`, else `start` itself.

    Notebooks run from `notebooks/` and find the repository's store one level up this way.
    """
    env = os.environ.get("LABKIT_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / "mlruns").is_dir():
            return folder
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
        system_metrics: log CPU/RAM/GPU system metrics with each run.
        system_metrics_interval: seconds between system-metric samples.
        default_image_model / default_video_model: what a plan without a model uses.
        c2pa_cert / c2pa_key: the certificate chain and private key (PEM) that sign outputs with C2PA
            content credentials (`LABKIT_C2PA_CERT` / `LABKIT_C2PA_KEY`, or `[c2pa] cert` / `key`);
            None: outputs are not signed.
        c2pa_trust: extra trust anchors (PEM) `labkit compliance verify` checks signers against
            (`LABKIT_C2PA_TRUST`, `[c2pa] trust`).
        c2pa_tsa_url: a timestamp authority for signatures (`[c2pa] tsa_url`); None: no timestamp.
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

    @classmethod
    def resolve(
        cls,
        root: str | Path | None = None,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        compliance_mode: str | None = None,
        system_metrics: bool | None = None,
    ) -> LabConfig:
        """Build the config from arguments, environment, `labkit.toml`, then defaults."""
        root = Path(root).expanduser().resolve() if root is not None else find_project_root()
        file_cfg = _read_config_file(root / CONFIG_FILE)
        tracking = file_cfg.get("tracking", {})
        lab = file_cfg.get("lab", {})
        c2pa = file_cfg.get("c2pa", {})

        artifact_root = Path(tracking.get("artifact_root", root / "mlruns" / "artifacts"))
        if not artifact_root.is_absolute():
            artifact_root = root / artifact_root
        uri = (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking.get("uri")
               or f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        # A plain path or file: URI is MLflow's file store, which MLflow 3.13+ refuses.
        if uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks")):
            raise ConfigError(
                f"Tracking URI {uri!r} is a file store, which MLflow 3.13+ refuses.", value=uri,
                fix=f"use a database store such as 'sqlite:///{root / 'mlruns' / 'mlflow.db'}'.",
            )
        return cls(
            root=root,
            tracking_uri=uri,
            artifact_root=artifact_root.resolve(),
            experiment=(experiment or os.environ.get("LABKIT_EXPERIMENT") or tracking.get("experiment")
                        or DEFAULT_EXPERIMENT),
            compliance_mode=(compliance_mode or os.environ.get("LABKIT_COMPLIANCE_MODE")
                             or lab.get("compliance_mode") or DEFAULT_COMPLIANCE_MODE),
            system_metrics=(system_metrics if system_metrics is not None
                            else bool(tracking.get("system_metrics", True))),
            system_metrics_interval=float(tracking.get("system_metrics_interval", 5.0)),
            default_image_model=lab.get("default_image_model", DEFAULT_IMAGE_MODEL),
            default_video_model=lab.get("default_video_model", DEFAULT_VIDEO_MODEL),
            c2pa_cert=_path_setting("LABKIT_C2PA_CERT", c2pa, "cert", root),
            c2pa_key=_path_setting("LABKIT_C2PA_KEY", c2pa, "key", root),
            c2pa_trust=_path_setting("LABKIT_C2PA_TRUST", c2pa, "trust", root),
            c2pa_tsa_url=os.environ.get("LABKIT_C2PA_TSA_URL") or c2pa.get("tsa_url") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root)
        d["artifact_root"] = str(self.artifact_root)
        for key in ("c2pa_cert", "c2pa_key", "c2pa_trust"):
            d[key] = str(d[key]) if d[key] is not None else None
        return d


def _path_setting(env: str, table: dict[str, Any], key: str, root: Path) -> Path | None:
    """A file setting: the environment (relative to the working directory), then `labkit.toml`
    (relative to the project root); None when neither names one."""
    value = os.environ.get(env)
    base = Path.cwd()
    if not value:
        value = table.get(key)
        base = root
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}.", value=str(path),
                          fix="fix the syntax at the position shown, or delete the file.") from e
