"""C2PA content credentials as a user meets them: `labkit compliance keygen / sign / verify` in a real
subprocess, outputs signed on render once a certificate is configured, and the message without c2pa-python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labkit import outputs
from tests.integration.test_cli import labkit
from tests.unit.test_compliance_signing import RECORD, _change_one_pixel

INSTALL = 'pip install "labkit[c2pa]"'


def _output(folder: Path) -> Path:
    pixels = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return outputs.write_image_outputs([pixels], folder, "txt2img-42", RECORD)[0]


def test_keygen_sign_verify_from_the_command_line(project, cli_env, tmp_path):
    pytest.importorskip("c2pa")
    made = json.loads(labkit("compliance", "keygen", "--json", env=cli_env).stdout)
    keys = project / "c2pa"
    assert made["cert"] == str(keys / "signer.pem") and (keys / "signer.key").is_file()
    again = labkit("compliance", "keygen", env=cli_env, check=False)
    assert again.returncode == 2 and "already exist" in again.stderr and "--force" in again.stderr

    png = _output(tmp_path)
    unset = labkit("compliance", "sign", str(png), env=cli_env, check=False)
    assert unset.returncode == 2 and "No signing certificate" in unset.stderr and "keygen" in unset.stderr

    env = {**cli_env, "LABKIT_C2PA_CERT": made["cert"], "LABKIT_C2PA_KEY": made["key"]}
    signed = labkit("compliance", "sign", str(png), env=env)
    assert f"signed {png}" in signed.stdout

    v = json.loads(labkit("compliance", "verify", str(png), "--json", env=cli_env).stdout)
    assert v["state"] == "Valid" and v["valid"] and not v["trusted"]
    assert v["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert v["provenance"]["model"]["licence"] == "apache-2.0" and v["provenance"]["seed"] == 42
    trusted = labkit("compliance", "verify", str(png), "--trust", made["ca"], env=cli_env)
    assert trusted.stdout.startswith(f"{png}: Trusted")
    # [c2pa] trust in labkit.toml does the same as --trust
    (project / "labkit.toml").write_text(f'[c2pa]\ntrust = "{made["ca"]}"\n')
    assert ": Trusted" in labkit("compliance", "verify", str(png), env=cli_env).stdout

    changed = _change_one_pixel(png, tmp_path / "changed.png")
    bad = labkit("compliance", "verify", str(changed), env=cli_env, check=False)
    assert bad.returncode == 1 and f"{changed}: Invalid" in bad.stdout and "assertion.dataHash.mismatch" in bad.stdout
    unsigned = labkit("compliance", "verify", str(_output(tmp_path / "plain")), env=cli_env, check=False)
    assert unsigned.returncode == 1 and "no content credentials" in unsigned.stdout


def test_without_c2pa_the_commands_say_how_to_install_it(project, cli_env, tmp_path):
    """c2pa hidden in a fresh interpreter: the C2PA commands end with the pip command, the rest still works."""
    from labkit.toyworld.data import write_dataset

    png = _output(tmp_path)
    write_dataset(tmp_path / "shapes", n=3, seed=0, size=32)
    script = ("import sys; sys.modules['c2pa'] = None\n"
              "from labkit.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, *args], env=cli_env, capture_output=True, text=True,
                              timeout=300)

    for args in (("compliance", "verify", str(png)), ("compliance", "sign", str(png), "--cert", str(png),
                                                     "--key", str(png))):
        out = run(*args)
        assert out.returncode == 2, out.stderr
        assert INSTALL in out.stderr and "Traceback" not in out.stderr
    assert run("compliance", "dataset", str(tmp_path / "shapes")).returncode == 0
    assert run("compliance", "report").returncode == 0


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch")
    from labkit.testing import build_tiny_sd15, build_tiny_svd

    root = tmp_path_factory.mktemp("tiny")
    return {"sd15": build_tiny_sd15(root / "sd15"), "svd": build_tiny_svd(root / "svd")}


def test_outputs_are_signed_when_a_certificate_is_configured(project, tiny_models, search_runs):
    pytest.importorskip("c2pa")
    from labkit.compliance.signing import keygen, verify
    from labkit.errors import ConfigError
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    keys = keygen(project / "c2pa")
    (project / "labkit.toml").write_text('[c2pa]\ncert = "c2pa/signer.pem"\n')
    half = Lab(project, hardware=HardwareProfile.simulated(None))
    with pytest.raises(ConfigError, match="half configured"):  # before any run opens or anything renders
        half.generate("a red circle", model=str(tiny_models["sd15"]), steps=2, size=(32, 32), seed=1)
    assert search_runs(half.config.tracking_uri) == []

    (project / "labkit.toml").write_text(keys.toml())
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    image = lab.generate("a red circle on the left", model=str(tiny_models["sd15"]), steps=2, size=(32, 32), seed=7)
    png = image.files[0]
    v = verify(png, trust=keys.ca)
    assert v.state == "Trusted", v.failures
    assert v.provenance["model"]["hash"] == image.model["hash"] and v.provenance["seed"] == 7
    assert v.provenance["run_id"] == image.run_id and v.provenance["terms"]["text"] == image.record["terms"]
    assert outputs.read_png_record(png)["run_id"] == image.run_id  # the embedded record is still there
    tags = lab.tracker.client.get_run(image.run_id).data.tags
    assert tags["labkit.c2pa"] == "signed" and tags["labkit.c2pa.signer"] == "labkit local test signer"

    clip = lab.video(image=str(png), model=str(tiny_models["svd"]), steps=2, frames=3, fps=6, size=(32, 32), seed=1)
    mp4 = next(p for p in clip.files if p.suffix == ".mp4")
    gif = next(p for p in clip.files if p.suffix == ".gif")
    assert verify(mp4).state == "Valid" and verify(mp4).provenance["model"]["hash"] == clip.model["hash"]
    assert verify(gif).signed is False  # PNG and MP4 are signed; GIFs on request (`labkit compliance sign`)
