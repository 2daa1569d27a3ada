"""The shape of every module in labkit/ (issue 20): each says what it is in a docstring, and none is longer
than 700 lines (a module that grows past it holds more than one concern; split it along a seam)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labkit

ROOT = Path(labkit.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))
MAX_LINES = 700


def _name(path: Path) -> str:
    return path.relative_to(ROOT.parent).as_posix()


def test_there_are_modules_to_check():
    assert len(MODULES) > 50 and ROOT / "lab.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_has_a_docstring(path: Path):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc and doc.strip(), f"{_name(path)}: add a module docstring (its contract and one example)"


def test_no_module_is_longer_than_700_lines():
    long = {_name(p): n for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules along a seam (over {MAX_LINES} lines): {long}"


def test_the_version_is_one_string_everywhere():
    import tomllib

    from labkit.version import __version__

    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert labkit.__version__ == __version__ == pyproject["project"]["version"]
