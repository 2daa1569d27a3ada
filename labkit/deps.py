"""What this environment provides: the optional packages a feature needs, and whether the hub may be reached.

The contract: every "is X installed?" question in labkit goes through `available` (a yes/no that imports
nothing) or `require` (the module, or a `MissingDependency` that names the feature and the pip command),
and every "are we offline?" question through `offline`. Nothing is probed at import.

    if available("bitsandbytes"): ...                      # find_spec only: the package is not imported
    c2pa = require("c2pa", feature="signing outputs (C2PA)")
    # MissingDependency: c2pa-python is not installed; signing outputs (C2PA) needs it.
    #                    Fix: pip install "labkit[c2pa]"
    offline()                                               # HF_HUB_OFFLINE is 1 / true / yes / on

`PIP` lists the install command of each optional package labkit knows; any other name gets
``pip install <name>``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from labkit.errors import MissingDependency

#: import name -> (the distribution's name on PyPI, the command that installs it for labkit).
PIP: dict[str, tuple[str, str]] = {
    "c2pa": ("c2pa-python", 'pip install "labkit[c2pa]"'),
    "cryptography": ("cryptography", 'pip install "labkit[c2pa]"'),
    "kaggle": ("kaggle", "pip install 'kaggle>=2,<3'"),
    "bitsandbytes": ("bitsandbytes", "pip install bitsandbytes (on a CUDA machine)"),
    "llguidance": ("llguidance", "pip install llguidance"),
    "pynvml": ("nvidia-ml-py", "pip install nvidia-ml-py"),
    "peft": ("peft", "pip install peft"),
    "torch": ("torch", "pip install torch"),
    "diffusers": ("diffusers", "pip install diffusers"),
    "transformers": ("transformers", "pip install transformers"),
    "mlflow": ("mlflow", "pip install mlflow"),
    "ray": ("ray", 'pip install "labkit[ray]"'),
}

_TRUE = ("1", "true", "yes", "on")


def available(name: str) -> bool:
    """Whether module `name` (dotted names allowed) can be imported here, without importing it.

    A module already in `sys.modules` counts (None there means missing, as for `import`); a dotted name
    whose parent package is missing is False (not an error)."""
    if not isinstance(name, str) or not name.strip():
        return False
    name = name.strip()
    if name in sys.modules:  # imported (or set by a test: None stands for "not installed")
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # the parent package is missing, or a module with __spec__ None
        return False


def install_command(name: str) -> str:
    """The command that installs the package that provides module `name`."""
    top = name.strip().partition(".")[0]
    return PIP.get(top, (top, f"pip install {top}"))[1]


def pip_name(name: str) -> str:
    """The PyPI distribution that provides module `name` (`pynvml` -> `nvidia-ml-py`)."""
    top = name.strip().partition(".")[0]
    return PIP.get(top, (top, ""))[0]


def require(name: str, *, feature: str, fix: str | None = None) -> ModuleType:
    """Import and return module `name`, or raise `MissingDependency` saying that `feature` needs it and how
    to install it (`fix`, default `install_command(name)`). Its `value` is the PyPI name."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise MissingDependency(f"{pip_name(name)} is not installed; {feature} needs it.",
                                value=pip_name(name), fix=fix or install_command(name)) from e


def offline() -> bool:
    """Whether the Hugging Face hub must not be reached: ``HF_HUB_OFFLINE`` is 1, true, yes or on (any case,
    surrounding spaces ignored), as `huggingface_hub` reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from here (its host name does not resolve), else None.
    Asked before a download: a machine without a network then reads its cache, or fails, at once, not after
    huggingface_hub's five retries (about 25 s of "Retrying in 8s" lines)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname
    try:
        if host:
            socket.getaddrinfo(host, 443)
    except socket.gaierror as e:
        return f"cannot resolve {host}: {e.strerror or e}"
    return None


def hub_access() -> tuple[bool, str]:
    """How a download may go now: (cache only, why a file not in the cache cannot be fetched). Cache only with
    HF_HUB_OFFLINE set or the hub's name not resolving (`hub_unreachable`), which the reason then names."""
    if offline():
        return True, "HF_HUB_OFFLINE is set"
    unreachable = hub_unreachable()
    if unreachable:
        return True, f"the hub cannot be reached ({unreachable})"
    return False, "the hub could not be reached"


__all__ = ["PIP", "available", "hub_access", "hub_unreachable", "install_command", "offline", "pip_name",
           "require"]
