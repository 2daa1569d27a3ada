"""Colab and Kaggle: one more place a notebook runs.

    labkit cloud kaggle push notebooks/06_lora_training.ipynb -p steps=2000 --gpu --internet
    labkit cloud kaggle status alice/labkit-06-lora-training
    labkit cloud kaggle pull alice/labkit-06-lora-training      # its runs join the local MLflow store
    labkit cloud colab build notebooks/06_lora_training.ipynb -p steps=2000 --gpu
    labkit cloud colab pull ~/Downloads/labkit-runs.zip
    labkit cloud jobs

A notebook goes to the cloud prepared by papermill (parameters injected, nothing executed) between
two cells labkit adds: a first one that installs labkit when the cloud machine lacks it and calls
`labkit.cloud.runtime.start(...)` (the store and every output go to the session's working folder:
`/kaggle/working`, or Google Drive on Colab), and a last one that exports the session's runs as a
bundle (`labkit-runs.zip`, see `labkit.tracking.bundle`). `pull` imports that bundle and tags each
run with where it ran (`labkit.cloud.*`). What was pushed or built, with which parameters, and its
last known state are kept in `<root>/mlruns/cloud-jobs.json` (`labkit.cloud.jobs`).

Modules: `prepare` (notebook → cloud notebook), `kaggle`, `colab`, `jobs`, `runtime` (inside the
cloud notebook). Nothing here is imported by `import labkit`.
"""

from __future__ import annotations

from labkit.errors import LabkitError


class CloudError(LabkitError):
    """A cloud job cannot go ahead: no credentials, a refused push, an output without a bundle…"""


#: Tags every run made in a cloud session carries (set in the cloud, before export).
PLATFORM_TAG = "labkit.cloud.platform"
JOB_TAG = "labkit.cloud.job"
NOTEBOOK_TAG = "labkit.cloud.notebook"
#: Tags added when a run is pulled into the local store.
KERNEL_TAG = "labkit.cloud.kaggle.kernel"
KERNEL_VERSION_TAG = "labkit.cloud.kaggle.version"
SOURCE_TAG = "labkit.cloud.source"
PULLED_TAG = "labkit.cloud.pulled"

#: What a cloud session leaves in its working folder.
BUNDLE_NAME = "labkit-runs.zip"
SESSION_FILE = "labkit-cloud.json"

__all__ = ["BUNDLE_NAME", "JOB_TAG", "KERNEL_TAG", "KERNEL_VERSION_TAG", "NOTEBOOK_TAG", "PLATFORM_TAG",
           "PULLED_TAG", "SESSION_FILE", "SOURCE_TAG", "CloudError"]
