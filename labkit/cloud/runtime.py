"""Inside a cloud notebook: where it runs, where its store and outputs go, which GPU it has, and the
export of its runs. The set-up cell that `labkit cloud … push/build` writes calls

    labkit_cloud = start({"platform": "kaggle", "job": "…", "notebook": "06_lora_training", "gpu": True, …})

and the export cell calls `labkit_cloud.export()`.

Where the session keeps its project (the MLflow store, adapters, checkpoints, the bundle):

    Kaggle   /kaggle/working — what Kaggle keeps as the version's output
    Colab    <Drive>/MyDrive/labkit/<job> — Google Drive is mounted first, so outputs outlive the runtime
    local    ./labkit-cloud/<job> — the same notebook run on your own machine

`LABKIT_CLOUD_WORKDIR` (or `start(workdir=…)`) puts it elsewhere. `LABKIT_ROOT` is set to that
folder, so `labkit.Lab()` in the notebook opens the session's store.

The GPU: the session's `HardwareProfile` is detected (Kaggle's two T4s, Colab's T4, L4 or A100 report
their VRAM tier, so each model's memory strategy comes from `strategies.toml` as anywhere else); a job
built with `--gpu` that finds no GPU stops at once rather than training on the CPU for hours; and
`mixed_precision` advises "bf16" on Ampere or newer, "fp16" on older cards (T4, V100), "no" on CPU.

If a cell raises, the runs made so far are exported all the same, so a failed cloud run still comes
back with its record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.cloud import BUNDLE_NAME, JOB_TAG, NOTEBOOK_TAG, PLATFORM_TAG, SESSION_FILE, CloudError
from labkit.cloud.jobs import now
from labkit.hardware import HardwareProfile
from labkit.probes import Platform, detect_platform

if TYPE_CHECKING:  # pragma: no cover
    from labkit.tracking.bundle import BundleSummary
    from labkit.tracking.store import Tracker

KAGGLE_WORKDIR = Path("/kaggle/working")
COLAB_DRIVE = Path("/content/drive")
WORKDIR_ENV = "LABKIT_CLOUD_WORKDIR"


@dataclass
class CloudSession:
    """One notebook session on Colab, Kaggle (or locally): its job, folder and hardware."""

    platform: Platform
    job: dict[str, Any]
    workdir: Path
    hardware: HardwareProfile
    drive: Path | None = None
    started: str = field(default_factory=now)
    state: str = "running"
    _exporting: bool = False

    @property
    def bundle(self) -> Path:
        """Where `export()` writes the session's runs."""
        return self.workdir / BUNDLE_NAME

    @property
    def mixed_precision(self) -> str:
        """The training precision this GPU runs best: "bf16" (Ampere+), "fp16" (T4, V100…), "no" (CPU)."""
        return self.hardware.training_precision

    def tracker(self) -> Tracker:
        from labkit.config import LabConfig
        from labkit.tracking.store import Tracker

        return Tracker(LabConfig.resolve(self.workdir))

    def lines(self) -> list[str]:
        hw = self.hardware
        if hw.device == "cuda":
            gpus = f"the first of {hw.gpu_count} GPUs" if hw.gpu_count > 1 else "one GPU"
            why = "bf16 runs natively" if hw.bf16 else "this card has no bf16"
            gpu = (f"{gpus}, VRAM tier {hw.tier}: memory strategies for that tier; mixed precision "
                   f"{self.mixed_precision!r} advised ({why})")
        else:
            gpu = "no GPU: everything runs on the CPU"
        where = f" (Google Drive: {self.drive})" if self.drive else ""
        return [f"labkit cloud: job {self.job.get('job')} ({self.job.get('notebook')}) on {self.platform}",
                f"  hardware: {hw.summary()}", f"  GPU strategy: {gpu}",
                f"  project and outputs: {self.workdir}{where}; runs exported to {self.bundle.name} at the end"]

    def _write_state(self, **extra: Any) -> None:
        from labkit import __version__

        data = {"format": "labkit-cloud-session", "job": self.job, "platform": self.platform,
                "workdir": str(self.workdir), "started": self.started, "updated": now(), "state": self.state,
                "labkit": __version__, "hardware": self.hardware.to_dict(), **extra}
        from labkit.outputs import atomic_write_bytes

        atomic_write_bytes(self.workdir / SESSION_FILE, json.dumps(data, indent=1, default=str).encode(), mode=0o644)

    def export(self, *, state: str = "finished") -> BundleSummary | None:
        """Tag every run in the session's store with where it ran, and write them all to `bundle`.
        Returns what was exported (None when the session made no run)."""
        from labkit.tracking.bundle import export_bundle

        if self._exporting:
            return None
        self._exporting = True
        try:
            tracker = self.tracker()
            client = tracker.client
            tags = {PLATFORM_TAG: self.platform, JOB_TAG: str(self.job.get("job", "")),
                    NOTEBOOK_TAG: str(self.job.get("notebook", ""))}
            names = []
            for exp in client.search_experiments():
                runs = _all_runs(client, exp.experiment_id)
                for run in runs:
                    for k, v in tags.items():
                        if run.data.tags.get(k) != v:
                            client.set_tag(run.info.run_id, k, v)
                if runs:
                    names.append(exp.name)
            self.state = state
            if not names:
                self._write_state(runs=0)
                print(f"labkit cloud: this session made no MLflow run; nothing to export ({state}).")
                return None
            summary = export_bundle(tracker, names, self.bundle)
            self._write_state(runs=summary.runs, bundle=self.bundle.name)
            print(f"labkit cloud: {summary.line('export')} ({state}); "
                  f"`labkit cloud {self.job.get('platform', self.platform)} pull` brings them home.")
            return summary
        finally:
            self._exporting = False


def _all_runs(client, experiment_id: str) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _mount_drive(mount: Path) -> Path | None:
    """Google Drive mounted at `mount` (Colab asks the user to allow it); None if that failed."""
    try:
        from google.colab import drive  # only importable on Colab

        drive.mount(str(mount))
    except Exception as e:  # refused, or no Drive: outputs then live only as long as the runtime
        print(f"labkit cloud: Google Drive not mounted ({type(e).__name__}: {e}); outputs stay on the runtime's "
              "disk — download the bundle before the runtime ends.")
        return None
    return mount / "MyDrive"


def working_folder(platform: Platform, job: str, *, drive_mount: Path = COLAB_DRIVE) -> tuple[Path, Path | None]:
    """The session's folder on `platform` (and the mounted Drive, on Colab)."""
    if os.environ.get(WORKDIR_ENV):
        return Path(os.environ[WORKDIR_ENV]).expanduser(), None
    if platform == "kaggle":
        return KAGGLE_WORKDIR, None
    if platform == "colab":
        drive = _mount_drive(drive_mount)
        return ((drive / "labkit" / job) if drive else Path("/content/labkit") / job), drive
    return Path.cwd() / "labkit-cloud" / job, None


def start(job: Mapping[str, Any], *, workdir: str | Path | None = None, drive_mount: str | Path = COLAB_DRIVE,
          hardware: HardwareProfile | None = None) -> CloudSession:
    """Set up a cloud notebook session for `job` (the dict the set-up cell passes).

    Steps: 1. where it runs (`detect_platform`); 2. its working folder (Drive mounted only on Colab),
    made the project root (`LABKIT_ROOT`); 3. its hardware, checked against the job's `gpu`;
    4. the export of the runs made so far if a later cell raises.
    """
    job = dict(job)
    platform = detect_platform()
    drive = None
    if workdir is None:
        folder, drive = working_folder(platform, str(job.get("job") or "session"), drive_mount=Path(drive_mount))
    else:
        folder = Path(workdir)
    folder = folder.expanduser().resolve()
    (folder / "mlruns").mkdir(parents=True, exist_ok=True)
    os.environ["LABKIT_ROOT"] = str(folder)
    hardware = hardware or HardwareProfile.detect()
    session = CloudSession(platform=platform, job=job, workdir=folder, hardware=hardware, drive=drive)
    if job.get("gpu") and hardware.device != "cuda" and platform != "local":  # locally, you know your machine
        session.state = "failed"
        session._write_state(error="no GPU")
        where = {"kaggle": "in the notebook's settings (Session options → Accelerator), or check your weekly "
                           "GPU quota"}.get(platform, "with Runtime → Change runtime type → GPU")
        raise CloudError(f"This job was built with --gpu but the session has no GPU ({hardware.summary()}).",
                         value=hardware.device, fix=f"turn a GPU on {where} and run again; or build the job "
                                                    "without --gpu to run it on the CPU.")
    session._write_state()
    print("\n".join(session.lines()))
    _export_on_error(session)
    return session


def _export_on_error(session: CloudSession) -> None:
    """Export the runs made so far when a cell raises (Kaggle and papermill stop at the first error,
    so the export cell would never run)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def after(result) -> None:
        if result.error_in_exec is not None and session.state == "running":
            try:
                session.export(state="failed")
            except Exception as e:  # the cell's own error is the one to show
                print(f"labkit cloud: could not export after the error: {type(e).__name__}: {e}")

    shell.events.register("post_run_cell", after)


__all__ = ["COLAB_DRIVE", "KAGGLE_WORKDIR", "WORKDIR_ENV", "CloudSession", "start", "working_folder"]
