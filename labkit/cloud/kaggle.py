"""Kaggle: build a kernel folder from a notebook, push it, watch it, pull its runs back.

    kernel = build_kernel(root, "06_lora_training", {"steps": 2000}, owner="alice", gpu=True, internet=True)
    pushed = push(root, "06_lora_training", {"steps": 2000}, gpu=True, internet=True)   # build + push
    status(root, "alice/labkit-06-lora-training")        # KernelStatus("complete", None)
    pull(root, "alice/labkit-06-lora-training")          # outputs → bundle → local store, tagged

A kernel folder, `<root>/kaggle/<slug>/`, holds what `kaggle kernels push` reads:

    kernel-metadata.json   id (owner/slug), title, code_file, language "python", kernel_type "notebook",
                           is_private, enable_gpu, enable_internet, dataset_sources, …
    <slug>.ipynb           the notebook, prepared by papermill, with labkit's set-up and export cells

Everything talks to Kaggle through the official client (`kaggle` 2.x: `KaggleApi.kernels_push`,
`kernels_status`, `kernels_output`), which finds credentials where it always does: `KAGGLE_API_TOKEN`,
`~/.kaggle/access_token`, `~/.kaggle/kaggle.json` (or `KAGGLE_CONFIG_DIR`), `KAGGLE_USERNAME` +
`KAGGLE_KEY`. None of them is ever written into the kernel folder (a check refuses a folder that
holds one). The client ends the process with `exit(1)` when it finds no credentials; here that
becomes a `CloudError` saying where to put them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.cloud import KERNEL_TAG, KERNEL_VERSION_TAG, PLATFORM_TAG, SOURCE_TAG, CloudError
from labkit.cloud.jobs import Job, JobList
from labkit.cloud.prepare import (
    CloudJob,
    assert_no_secret,
    check_parameters,
    default_install,
    prepare_notebook,
    resolve_notebook,
)
from labkit.errors import InvalidParameter, MissingDependency

if TYPE_CHECKING:  # pragma: no cover
    from labkit.cloud.pull import PullResult
    from labkit.config import LabConfig

METADATA_FILE = "kernel-metadata.json"
#: Only these of a kernel's outputs are downloaded by `pull` (the store and adapters stay on Kaggle).
OUTPUT_PATTERN = r"(^|/)labkit-(runs\.zip|cloud\.json)$"
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CREDENTIALS_FIX = ("create a token at kaggle.com → Settings → API and set KAGGLE_API_TOKEN to it (or save it in "
                    "~/.kaggle/access_token); or put the legacy kaggle.json in ~/.kaggle/ (chmod 600), or set "
                    "KAGGLE_USERNAME and KAGGLE_KEY.")


@dataclass
class Kernel:
    """A built kernel folder."""

    folder: Path
    ref: str
    metadata: dict[str, Any]
    notebook: Path
    job: Job

    @property
    def metadata_file(self) -> Path:
        return self.folder / METADATA_FILE


@dataclass
class Pushed:
    """A pushed kernel version."""

    kernel: Kernel
    version: int | None
    url: str | None
    warnings: list[str]


@dataclass
class KernelStatus:
    ref: str
    state: str  # queued, running, complete, error, cancel_requested, cancel_acknowledged, new_script
    message: str | None = None

    def line(self) -> str:
        return f"{self.ref}: {self.state}" + (f" ({self.message})" if self.message else "")


# -- the client ---------------------------------------------------------------------------------


def _client_class():
    try:
        # `import kaggle` signs in at import time and prints help when it cannot: keep that quiet
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as e:
        raise MissingDependency("The Kaggle client is not installed.", value="kaggle",
                                fix="pip install 'kaggle>=2,<3'") from e
    return KaggleApi


def api():
    """An authenticated `KaggleApi`; a `CloudError` (never an exit) when no credentials work."""
    import requests

    client = _client_class()()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            client.authenticate()
    except SystemExit as e:  # the client calls exit(1) when no credential works
        raise CloudError("No usable Kaggle credentials were found (or the token was refused).", value=None,
                         fix=_CREDENTIALS_FIX) from e
    except requests.RequestException as e:
        raise CloudError(f"Cannot reach Kaggle to check the credentials: {e}.", value=None,
                         fix="check the network (and KAGGLE_API_ENVIRONMENT / proxy settings).") from e
    return client


def _call(what: str, fn, *args, **kwargs):
    """A client call with its failures as `CloudError`s."""
    import requests

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(*args, **kwargs)
    except SystemExit as e:
        raise CloudError(f"The Kaggle client stopped during {what}.", value=None, fix=_CREDENTIALS_FIX) from e
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else "?"
        body = ""
        if e.response is not None:
            try:
                body = e.response.json().get("message", "")
            except ValueError:
                body = e.response.text[:200]
        fix = {401: _CREDENTIALS_FIX, 403: "check the kernel ref (owner/slug from its URL) and that these "
                                             "credentials may see it.",
               404: "check the kernel ref: owner/slug[/version] as in kaggle.com/code/OWNER/SLUG."}.get(
            code, "try again later; `kaggle kernels status` shows what Kaggle says.")
        raise CloudError(f"Kaggle refused {what}: HTTP {code} {body or e}.", value=code, fix=fix) from e
    except requests.RequestException as e:
        raise CloudError(f"Cannot reach Kaggle for {what}: {e}.", value=None, fix="check the network.") from e
    except ValueError as e:  # the client's own checks of metadata and refs
        raise CloudError(f"The Kaggle client refused {what}: {e}.", value=str(e),
                         fix="fix the value it names (see kernel-metadata.json).") from e


def configured_username() -> str | None:
    """The Kaggle username from the client's config (`KAGGLE_USERNAME`, kaggle.json), without network."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    client = _client_class()()
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = client.read_config_file(quiet=True)
    return cfg.get("username") or None


def parse_ref(ref: str, username: str | None = None) -> tuple[str, str, int | None]:
    """'owner/slug[/version]' (or a bare slug of `username`) → (owner, slug, version)."""
    parts = [p for p in str(ref).strip().split("/")]
    if len(parts) == 1 and parts[0] and username:
        parts = [username, parts[0]]
    ok = len(parts) in (2, 3) and all(parts) and (len(parts) == 2 or parts[2].removeprefix("v").isdigit())
    if not ok:
        raise InvalidParameter(f"{ref!r} is not a kernel reference.", value=ref,
                               fix="write OWNER/SLUG or OWNER/SLUG/VERSION, as in kaggle.com/code/OWNER/SLUG.")
    version = int(parts[2].removeprefix("v")) if len(parts) == 3 else None
    return parts[0], parts[1], version


# -- build and push -----------------------------------------------------------------------------


def _slug_title(stem: str, slug: str | None, title: str | None) -> tuple[str, str]:
    from slugify import slugify  # python-slugify: what the Kaggle client checks titles with

    from labkit.plan import describe

    for name, value in (("slug", slug), ("title", title)):
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(f"The kernel {name} must be text, got {describe(value)}.", value=value,
                                   fix=f"pass {name} as a string (--{name}), or leave it out.")
    from_title = bool(title) and not slug  # the slug is made from the title the user gave
    title = title or (slug.replace("-", " ") if slug else f"labkit {stem.replace('_', ' ')}")
    slug = slug or slugify(title)
    if from_title and (not _SLUG.match(slug) or not 5 <= len(slug) <= 50):
        raise InvalidParameter(f"The title {title!r} does not make a usable Kaggle kernel: Kaggle names the kernel "
                               f"by the title's slug ({slug!r}: its letters and digits, lowercased, joined by "
                               "hyphens), which must be 5 to 50 characters long.", value=title,
                               fix="pass a title with 5 to 50 letters and digits, e.g. 'labkit lora hexagon' (or "
                                   "pass a valid slug too).")
    if not _SLUG.match(slug) or not 5 <= len(slug) <= 50:
        raise InvalidParameter(f"{slug!r} is not a usable Kaggle kernel slug.", value=slug,
                               fix="use 5 to 50 lowercase letters, digits and hyphens, e.g. labkit-lora-hexagon.")
    if slugify(title) != slug:
        raise InvalidParameter(f"The title {title!r} does not resolve to the slug {slug!r} (Kaggle names a kernel "
                               "by its title).", value=title, fix=f"pass a title whose slug is {slug!r}, or leave "
                                                                  "--title out.")
    if len(title) < 5:
        raise InvalidParameter(f"The title {title!r} is shorter than Kaggle's five characters.", value=title,
                               fix="pass a longer --title.")
    return slug, title


def build_kernel(root: str | Path, notebook: str | Path, parameters: Mapping[str, Any] | None = None, *,
                 owner: str, slug: str | None = None, title: str | None = None, gpu: bool = False,
                 internet: bool = False, datasets: Sequence[str] = (), install: str | None = None,
                 command: str = "labkit cloud kaggle push") -> Kernel:
    """Write `<root>/kaggle/<slug>/`: the prepared notebook and its `kernel-metadata.json`.

    Steps: 1. check the notebook, its parameters, the slug, title and dataset refs; 2. work out where
    the cloud installs labkit from (and that it can reach it); 3. prepare the notebook; 4. write the
    metadata; 5. make sure no credential is in the folder.
    """
    root = Path(root)
    parameters = dict(parameters or {})
    source = resolve_notebook(root, notebook)
    check_parameters(source, parameters)
    slug, title = _slug_title(source.stem, slug, title)
    if not owner or "/" in owner:
        raise InvalidParameter(f"{owner!r} is not a Kaggle username.", value=owner,
                               fix="pass --owner USERNAME (your kaggle.com/USERNAME).")
    client = _client_class()()
    for ds in datasets:
        try:
            client.validate_dataset_string(ds)
        except ValueError as e:
            raise InvalidParameter(f"{ds!r} is not a Kaggle dataset reference: {e}.", value=ds,
                                   fix="write OWNER/DATASET-SLUG as in kaggle.com/datasets/OWNER/DATASET-SLUG.") from e
    install = install or default_install()
    if not internet and not install.startswith("/kaggle/input/"):
        raise InvalidParameter(f"Installing labkit from {install!r} needs the internet, which this kernel would not "
                               "have.", value=install,
                               fix="pass --internet, or attach a dataset holding a labkit wheel (--dataset OWNER/NAME) "
                                   "and pass --install /kaggle/input/NAME/labkit-….whl.")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    job_id = f"{slug}-{stamp}"
    folder = root / "kaggle" / slug
    code_file = f"{slug}.ipynb"
    spec = CloudJob(platform="kaggle", job=job_id, notebook=source.stem, parameters=parameters, gpu=gpu,
                    install=install)
    nb_path = prepare_notebook(source, folder / code_file, parameters, spec, command=command)
    metadata = {"id": f"{owner}/{slug}", "title": title, "code_file": code_file, "language": "python",
                "kernel_type": "notebook", "is_private": True, "enable_gpu": bool(gpu), "enable_tpu": False,
                "enable_internet": bool(internet), "dataset_sources": list(datasets), "competition_sources": [],
                "kernel_sources": [], "model_sources": [], "keywords": []}
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    try:
        assert_no_secret([folder / METADATA_FILE, nb_path])
    except CloudError:
        shutil.rmtree(folder)
        raise
    job = Job(id=job_id, platform="kaggle", notebook=str(source), target=f"{owner}/{slug}", folder=str(folder),
              parameters=parameters, gpu=gpu, internet=internet, datasets=list(datasets), install=install)
    JobList.for_root(root).add(job)
    return Kernel(folder=folder, ref=f"{owner}/{slug}", metadata=metadata, notebook=nb_path, job=job)


def push(root: str | Path, notebook: str | Path, parameters: Mapping[str, Any] | None = None, *,
         owner: str | None = None, dry_run: bool = False, **build: Any) -> Pushed:
    """Build the kernel folder and push it to Kaggle as a new version, which Kaggle queues to run.
    With `dry_run`, build only (no credentials needed when `owner` is given or configured)."""
    root = Path(root)
    client = None
    if dry_run:
        owner = owner or configured_username()
        if not owner:
            raise InvalidParameter("A dry run needs the Kaggle username the kernel will belong to.", value=None,
                                   fix="pass --owner USERNAME (or set KAGGLE_USERNAME).")
    else:
        client = api()
        owner = owner or client.get_config_value("username")
    kernel = build_kernel(root, notebook, parameters, owner=owner, **build)
    if client is None:
        return Pushed(kernel=kernel, version=None, url=None, warnings=[])
    jobs = JobList.for_root(root)
    try:
        response = _call(f"the push of {kernel.ref}", client.kernels_push, str(kernel.folder))
    except CloudError:
        jobs.update(kernel.job.id, state="push failed")
        raise
    if response is None or response.error:
        jobs.update(kernel.job.id, state="push failed")
        raise CloudError(f"Kaggle refused the push of {kernel.ref}: {getattr(response, 'error', None) or 'no answer'}.",
                         value=kernel.ref, fix=f"check {kernel.metadata_file} and the notebook, then push again.")
    warnings = [f"not valid {what}: {', '.join(bad)}" for what, bad in
                (("dataset sources", response.invalid_dataset_sources),
                 ("kernel sources", response.invalid_kernel_sources),
                 ("model sources", response.invalid_model_sources)) if bad]
    version = response.version_number or None
    job = jobs.update(kernel.job.id, state="pushed", version=version, url=response.url or None)
    kernel.job = job or kernel.job
    return Pushed(kernel=kernel, version=version, url=response.url or None, warnings=warnings)


# -- watch and pull -----------------------------------------------------------------------------


def status(root: str | Path, ref: str) -> KernelStatus:
    """What Kaggle says about the kernel's latest (or the named) version; the job list keeps it."""
    client = api()
    owner, slug, version = parse_ref(ref, client.get_config_value("username"))
    full = f"{owner}/{slug}" + (f"/{version}" if version else "")
    response = _call(f"the status of {full}", client.kernels_status, full)
    state = getattr(response.status, "name", str(response.status)).lower()
    result = KernelStatus(ref=full, state=state, message=response.failure_message or None)
    jobs = JobList.for_root(root)
    job = jobs.latest("kaggle", f"{owner}/{slug}")
    if job is not None and (version is None or version == job.version) and job.state != "pulled":
        jobs.update(job.id, state=state)
    return result


def pull(root: str | Path, ref: str, *, source: str | Path | None = None,
         config: LabConfig | None = None) -> PullResult:
    """Download the kernel's output (only labkit's bundle and session file) and import its runs into
    the local store, each tagged with the kernel and version it came from.

    `source`: a folder (or the zip) already downloaded from Kaggle, instead of asking Kaggle.
    """
    from labkit.cloud.pull import find_bundle, import_cloud_bundle
    from labkit.config import LabConfig

    root = Path(root)
    config = config or LabConfig.resolve(root)
    if source is not None:
        owner, slug, version = parse_ref(ref, configured_username())
        bundle = find_bundle(Path(source))
    else:
        client = api()
        owner, slug, version = parse_ref(ref, client.get_config_value("username"))
        full = f"{owner}/{slug}" + (f"/{version}" if version else "")
        dest = config.root / "mlruns" / "cloud" / "kaggle" / owner / slug / (f"v{version}" if version else "latest")
        if dest.exists():
            shutil.rmtree(dest)
        _call(f"the output of {full}", client.kernels_output, full, str(dest), file_pattern=OUTPUT_PATTERN,
              force=True, quiet=True)
        bundle = find_bundle(dest)
    job = JobList.for_root(config.root).latest("kaggle", f"{owner}/{slug}")
    if version is None and job is not None:
        version = job.version  # the version this project last pushed, which `output` without a version returns
    tags = {PLATFORM_TAG: "kaggle", KERNEL_TAG: f"{owner}/{slug}", KERNEL_VERSION_TAG: str(version or "latest"),
            SOURCE_TAG: f"https://www.kaggle.com/code/{owner}/{slug}"}
    return import_cloud_bundle(config, bundle, tags)


__all__ = ["METADATA_FILE", "Kernel", "KernelStatus", "Pushed", "api", "build_kernel", "configured_username",
           "parse_ref", "pull", "push", "status"]
