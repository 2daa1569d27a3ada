"""labkit.deps: the one place that says whether an optional package is installed and whether we are offline."""

from __future__ import annotations

import sys
import types

import pytest

from labkit import deps
from labkit.errors import LabkitError, MissingDependency


def test_available_is_true_for_an_installed_module_and_false_for_a_missing_one():
    assert deps.available("json") and deps.available("email.mime")
    assert not deps.available("labkit_no_such_package")
    assert not deps.available("labkit_no_such_package.sub")  # a missing parent is an answer, not an error
    assert not deps.available("") and not deps.available("   ")


def test_available_imports_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    assert deps.available("wave")
    assert "wave" not in sys.modules


def test_available_follows_sys_modules_as_import_does(monkeypatch):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # what `import c2pa` sees when it is not installed
    assert not deps.available("c2pa")
    monkeypatch.setitem(sys.modules, "c2pa", types.ModuleType("c2pa"))  # a stand-in without a __spec__
    assert deps.available("c2pa")


def test_require_returns_the_module():
    import json

    assert deps.require("json", feature="reading records") is json


def test_a_missing_package_is_a_labkit_error_that_names_it_and_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle", None)
    with pytest.raises(MissingDependency) as info:
        deps.require("kaggle", feature="Kaggle runs")
    err = info.value
    assert isinstance(err, LabkitError) and isinstance(err, ImportError)  # old `except ImportError` still works
    assert err.value == "kaggle" and "kaggle" in err.message and "Kaggle runs" in err.message
    assert err.fix == "pip install 'kaggle>=2,<3'"


def test_the_pip_command_names_the_distribution_not_the_import_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(MissingDependency) as info:
        deps.require("pynvml", feature="GPU detection")
    assert info.value.value == "nvidia-ml-py" and info.value.fix == "pip install nvidia-ml-py"
    with pytest.raises(MissingDependency) as info:
        deps.require("labkit_no_such_package.sub", feature="a feature")
    assert info.value.fix == "pip install labkit_no_such_package"
    with pytest.raises(MissingDependency) as info:
        deps.require("labkit_no_such_package", feature="a feature", fix="use the other backend.")
    assert info.value.fix == "use the other backend."


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), ("TRUE", True), (" On ", True), ("yes", True),
    ("0", False), ("", False), ("false", False), ("off", False), ("2", False),
])
def test_offline_reads_hf_hub_offline(monkeypatch, value, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert deps.offline() is expected


def test_offline_is_false_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert deps.offline() is False


def test_the_pipeline_loader_and_the_local_controller_read_offline_the_same_way(monkeypatch):
    """They had an `_offline()` each (issue 20); both now ask labkit.deps."""
    from labkit.controller import local

    for value, expected in (("Yes", True), ("no", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert local._offline() is expected is deps.offline()
