"""Shared fixtures: every test gets its own project folder and MLflow store."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Under pytest-xdist (`make test`: 2 workers) each worker's torch, and every labkit, kernel or Ray process a test
# starts, would take all the machine's cores for its OpenMP pool: 2 workers × 2 threads on 2 cores, and the
# threads spin waiting for each other (tiny models' steps 10-100x slower, see `one_thread`). xdist names the
# worker count in the environment before this file is imported, so torch, imported later, reads the share.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# In CI the property-based tests draw the same examples every run, so a red CI run means the change broke
# something, not that a new random draw found an old edge case; at a desk they explore anew each run.
if os.environ.get("CI"):
    try:
        from hypothesis import settings as _hypothesis

        _hypothesis.register_profile("ci", derandomize=True, database=None)
        _hypothesis.load_profile("ci")
    except ImportError:
        pass


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items) or _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working directory, with no tracking overrides in effect."""
    root = tmp_path / "project"
    (root / "mlruns").mkdir(parents=True)
    for var in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT", "LABKIT_EXPERIMENT", "LABKIT_COMPLIANCE_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def _fresh_store_file(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema created, made once per session."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def migrated_store(project: Path, _fresh_store_file: Path) -> Path:
    """`project` with its MLflow store already created: a copy of a fresh one, because creating a
    store runs MLflow's schema migrations (seconds each) and tests that open many stores add up."""
    import shutil

    shutil.copy(_fresh_store_file, project / "mlruns" / "mlflow.db")
    return project


@pytest.fixture
def one_thread():
    """torch on one CPU thread for the test: tiny models gain nothing from more, and on a busy
    2-core machine spinning OpenMP threads made each denoising step 10-100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lab(project: Path):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    return Lab(project, hardware=HardwareProfile.simulated(None))


@pytest.fixture
def cli_env(project: Path) -> dict[str, str]:
    """Environment for running the `labkit` command in a subprocess against `project`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT")}
    env["LABKIT_ROOT"] = str(project)
    return env


@pytest.fixture
def search_runs(monkeypatch: pytest.MonkeyPatch):
    """`mlflow.search_runs` against a given store, the way a user queries it."""

    def search(tracking_uri: str, experiment: str = "labkit"):
        import mlflow

        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        return mlflow.search_runs(experiment_names=[experiment], output_format="list")

    return search


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch):
    """No hub: offline mode on, and any attempt at an internet connection fails the test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access during an offline test: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
