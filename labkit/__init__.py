"""labkit — a research lab for generative image and video models that lives in Jupyter.

`import labkit` is cheap: it loads no torch, diffusers or mlflow. The public names below are
imported on first use. The package's face names everything, the `Lab` included, so it sits on the top
floor (views); modules below import what they need from its submodules (`labkit.version` for the version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit._lazy import lazy_exports
from labkit.version import __version__

# public name -> module that defines it
_LAZY = {
    "Lab": "labkit.lab",
    "LabConfig": "labkit.config",
    "HardwareProfile": "labkit.hardware",
    "MemoryStrategy": "labkit.hardware",
    "choose": "labkit.hardware",
    "degrade": "labkit.hardware",
    "Tracker": "labkit.tracking",
    "LabkitError": "labkit.errors",
    "InvalidParameter": "labkit.errors",
    "UnknownModel": "labkit.errors",
    "ModelNotCached": "labkit.errors",
    "ComplianceViolation": "labkit.errors",
    "OutOfMemory": "labkit.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from labkit.config import LabConfig
    from labkit.errors import (
        ComplianceViolation,
        InvalidParameter,
        LabkitError,
        ModelNotCached,
        OutOfMemory,
        UnknownModel,
    )
    from labkit.hardware import HardwareProfile, MemoryStrategy, choose, degrade
    from labkit.lab import Lab
    from labkit.tracking import Tracker


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
