"""`labkit compliance sign` with several files, one of them bad: nothing is signed (found walking the CLI)."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_cli import labkit
from tests.integration.test_compliance_signing import _output


def test_signing_several_files_checks_them_all_first(project, cli_env, tmp_path):
    pytest.importorskip("c2pa")
    made = json.loads(labkit("compliance", "keygen", "--json", env=cli_env).stdout)
    env = {**cli_env, "LABKIT_C2PA_CERT": made["cert"], "LABKIT_C2PA_KEY": made["key"]}
    good = _output(tmp_path)
    before = good.read_bytes()
    bad = labkit("compliance", "sign", str(good), str(tmp_path / "missing.png"), env=env, check=False)
    assert bad.returncode == 2 and "missing.png does not exist" in bad.stderr
    assert good.read_bytes() == before  # the good file was not signed behind the error's back
    folder = labkit("compliance", "verify", str(good), "--trust", str(project / "c2pa"), env=cli_env, check=False)
    assert folder.returncode == 2 and "is a folder, not a PEM file" in folder.stderr and "ca.pem" in folder.stderr
