"""Colab: a notebook to open there, and the import of the bundle it leaves on Google Drive.

    built = build_colab(root, "06_lora_training", {"steps": 2000}, gpu=True)
    built.path        # <root>/colab/06_lora_training.ipynb
    built.link        # https://colab.research.google.com/github/ORG/REPO/blob/BRANCH/colab/06_lora_training.ipynb
    pull_colab(root, "~/Downloads/labkit-runs.zip")

Colab has no API for running notebooks, so a job is a notebook you open: from GitHub through the
"Open in Colab" link once the file is committed and pushed, or uploaded by hand (File → Upload
notebook). Its set-up cell mounts Google Drive (only when it runs on Colab) and keeps the store and
outputs in `MyDrive/labkit/<job>/`; its last cell writes `labkit-runs.zip` there, which you download
(or reach through Drive for desktop) and pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.cloud import SOURCE_TAG
from labkit.cloud.jobs import Job, JobList
from labkit.cloud.prepare import (
    CloudJob,
    assert_no_secret,
    check_parameters,
    default_install,
    github,
    prepare_notebook,
    resolve_notebook,
)
from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.cloud.pull import PullResult
    from labkit.config import LabConfig


@dataclass
class ColabNotebook:
    """A built Colab notebook and how to open it."""

    path: Path
    job: Job
    link: str | None

    def lines(self) -> list[str]:
        out = [f"wrote {self.path} (job {self.job.id})"]
        if self.link:
            out += [f"Open in Colab: {self.link}",
                    "  (the link opens what GitHub has: commit and push the notebook first)"]
        else:
            out += ["This project has no GitHub remote, so there is no Colab link. Open the notebook in Colab "
                    "with File → Upload notebook, or copy it to Google Drive and open it with Colaboratory."]
        out.append("Its last cell writes labkit-runs.zip to MyDrive/labkit/" + self.job.id
                   + "/ — download it, then: labkit cloud colab pull PATH")
        return out


def build_colab(root: str | Path, notebook: str | Path, parameters: Mapping[str, Any] | None = None, *,
                name: str | None = None, gpu: bool = False, install: str | None = None,
                command: str = "labkit cloud colab build") -> ColabNotebook:
    """Write `<root>/colab/<name>.ipynb`: the notebook prepared by papermill with `parameters`, the
    set-up cell (install, Drive, working folder) first and the export cell last; `gpu` asks Colab for
    a GPU runtime."""
    root = Path(root)
    parameters = dict(parameters or {})
    source = resolve_notebook(root, notebook)
    check_parameters(source, parameters)
    name = name or source.stem
    if not name or "/" in name or name.startswith("."):
        raise InvalidParameter(f"{name!r} is not a usable notebook name.", value=name,
                               fix="pass --name with letters, digits, '-' and '_' only.")
    install = install or default_install()
    job_id = f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    spec = CloudJob(platform="colab", job=job_id, notebook=source.stem, parameters=parameters, gpu=gpu,
                    install=install)
    meta: dict[str, Any] = {"colab": {"name": f"{name}.ipynb", "provenance": []}}
    if gpu:
        meta["accelerator"] = "GPU"
        meta["colab"]["gpuType"] = "T4"
    path = root / "colab" / f"{name}.ipynb"
    prepare_notebook(source, path, parameters, spec, command=command, metadata=meta)
    try:
        assert_no_secret([path])
    except Exception:
        path.unlink()
        raise
    gh = github(root)
    link = gh.colab_url(path) if gh is not None and (gh.branch or gh.commit) else None
    job = Job(id=job_id, platform="colab", notebook=str(source), target=str(path), folder=str(path.parent),
              parameters=parameters, gpu=gpu, install=install, url=link)
    JobList.for_root(root).add(job)
    return ColabNotebook(path=path, job=job, link=link)


def pull_colab(root: str | Path, path: str | Path, *, config: LabConfig | None = None) -> PullResult:
    """Import the bundle a Colab session wrote (the zip, or the folder holding it) into the local store."""
    from labkit.cloud.pull import find_bundle, import_cloud_bundle
    from labkit.config import LabConfig

    config = config or LabConfig.resolve(Path(root))
    bundle = find_bundle(Path(path))
    return import_cloud_bundle(config, bundle, {SOURCE_TAG: f"colab:{bundle.resolve()}"})


__all__ = ["ColabNotebook", "build_colab", "pull_colab"]
