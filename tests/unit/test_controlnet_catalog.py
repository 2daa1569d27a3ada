"""The catalogue's ControlNets as a user relies on them: the common hub ones pinned with their model cards'
licences (each a licence labkit knows), the toy one shipped in the package, the default for a kind and family,
user files adding or overriding entries, and a broken entry named with its fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import labkit
from labkit.catalog import Catalog
from labkit.errors import ConfigError
from labkit.pipelines.controlnet import controlnet_entries, default_controlnet

HUB = {"sd15-canny": ("lllyasviel/control_v11p_sd15_canny", "sd15", "canny", "openrail"),
       "sd15-openpose": ("lllyasviel/control_v11p_sd15_openpose", "sd15", "pose", "openrail"),
       "sd15-depth": ("lllyasviel/control_v11f1p_sd15_depth", "sd15", "depth", "openrail"),
       "sd15-scribble": ("lllyasviel/control_v11p_sd15_scribble", "sd15", "scribble", "openrail"),
       "sdxl-canny": ("diffusers/controlnet-canny-sdxl-1.0", "sdxl", "canny", "openrail++"),
       "sdxl-depth": ("diffusers/controlnet-depth-sdxl-1.0", "sdxl", "depth", "openrail++"),
       "sdxl-openpose": ("xinsir/controlnet-openpose-sdxl-1.0", "sdxl", "pose", "apache-2.0")}


@pytest.fixture(scope="module")
def shipped():
    return controlnet_entries(Catalog.load(use_env=False))


@pytest.mark.parametrize("cid", sorted(HUB))
def test_the_common_controlnets_are_pinned_with_their_model_cards_licences(shipped, cid):
    from labkit.compliance.licences import LicenceTable

    e = shipped[cid]
    assert (e.repo, e.family, e.kind, e.licence) == HUB[cid]
    assert re.fullmatch(r"[0-9a-f]{40}", e.revision or "")
    assert e.licence in LicenceTable.load()


def test_pins_are_distinct(shipped):
    revisions = [e.revision for e in shipped.values() if e.repo]
    assert len(revisions) == len(set(revisions)) == len(HUB)


def test_the_toy_controlnet_is_shipped_in_the_package(shipped):
    e = shipped["toyworld-controlnet"]
    assert (e.family, e.kind, e.licence, e.repo) == ("toy", "layout", "cc0-1.0", None)
    assert e.folder() == Path(labkit.__file__).parent / "toyworld" / "controlnet"
    assert (e.folder() / "config.json").is_file() and (e.folder() / "diffusion_pytorch_model.safetensors").is_file()
    weights = sum(p.stat().st_size for p in e.folder().iterdir())
    assert weights <= 10e6  # the size limit for a shipped toy model


def test_a_control_without_a_controlnet_gets_the_catalogued_one_for_its_kind_and_family():
    catalog = Catalog.load(use_env=False)
    assert default_controlnet(catalog, "toy", "layout").id == "toyworld-controlnet"
    assert default_controlnet(catalog, "sd15", "pose").id == "sd15-openpose"
    assert default_controlnet(catalog, "sdxl", "canny").id == "sdxl-canny"
    assert default_controlnet(catalog, "sdxl", "scribble") is None


def test_a_user_file_adds_a_controlnet_and_overrides_a_key(tmp_path):
    (tmp_path / "mine").mkdir()
    user = tmp_path / "catalog.toml"
    user.write_text('[controlnets.my-edges]\nname = "mine"\nsource = "path:mine"\nfamily = "sd15"\n'
                    'kind = "canny"\nlicence = "mit"\n\n[controlnets.sd15-depth]\nrevision = "main"\n')
    entries = controlnet_entries(Catalog.load(extra=user, use_env=False))
    assert entries["my-edges"].folder() == tmp_path / "mine"
    assert entries["sd15-depth"].revision == "main" and entries["sd15-depth"].licence == "openrail"


@pytest.mark.parametrize("table, named, fix", [
    ('kind = "edges"\nfamily = "sd15"\nlicence = "mit"\nrepo = "a/b"', "edges", "canny"),
    ('kind = "canny"\nfamily = "sd15"\nrepo = "a/b"', "licence", "licence ="),
    ('kind = "canny"\nfamily = "sd15"\nlicence = "mit"\nrepo = "a/b"\nsource = "path:x"', "repo and source",
     "repo ="),
    ('kind = "canny"\nfamily = "sd15"\nlicence = "mit"\nrepo = "a/b"\nscale = 2', "scale", "use only"),
])
def test_a_broken_entry_is_named_with_its_fix(tmp_path, table, named, fix):
    user = tmp_path / "catalog.toml"
    user.write_text("[controlnets.bad]\n" + table + "\n")
    with pytest.raises(ConfigError) as e:
        controlnet_entries(Catalog.load(extra=user, use_env=False))
    assert "[controlnets.bad]" in e.value.message and named in e.value.message and fix in e.value.fix
