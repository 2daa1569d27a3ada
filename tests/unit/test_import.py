"""`import labkit` stays fast: no torch, diffusers or mlflow until a function needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "mlflow", "transformers", "accelerate", "peft", "pandas", "matplotlib", "ray")


def _imported_top_level_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True)
    names = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("code", ["import labkit", "import labkit.cli; labkit.cli.build_parser()",
                                  "import labkit.errors, labkit.config, labkit.tracking",
                                  "import labkit.hardware, labkit.lab, labkit.bench",
                                  "import labkit.render, labkit.pipelines.loader, labkit.catalog, labkit.outputs",
                                  "import labkit.sweeps.runner, labkit.sweeps.ray_backend, labkit.cli.runs"])
def test_no_heavy_import(code):
    loaded = _imported_top_level_modules(code)
    assert "labkit" in loaded  # the probe sees labkit itself, so it would see the others
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_public_names_resolve_lazily():
    import labkit

    assert labkit.HardwareProfile.simulated(8).tier == "8"
    assert issubclass(labkit.OutOfMemory, labkit.LabkitError)
    with pytest.raises(AttributeError):
        labkit.NoSuchThing  # noqa: B018
