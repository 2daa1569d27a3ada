"""A model that is not in the catalogue (a local folder: a fine-tune, a trained toy model, a DreamBooth export) is
completed with its family's defaults and its own sampling settings, not with SD 1.5's 512², 25 steps, 7.5: a
trained toy folder rendered at 512² took 208 s instead of 4 s, and an SDXL fine-tune drew at half its size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labkit.plan import Plan


@pytest.fixture
def toy_copy(tmp_path) -> Path:
    """The shipped toy model copied to a folder of its own, as `labkit train toy-base` leaves one."""
    from labkit.catalog import Catalog

    folder = tmp_path / "my-toy" / "model"
    shutil.copytree(Catalog.load().get("toyworld").local_path(), folder)
    return folder


def _set_meta(folder: Path, **meta) -> None:
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    index["labkit"] = {**index["labkit"], **meta}
    path.write_text(json.dumps(index))


def test_a_trained_toy_folder_gets_the_toy_size_and_its_own_sampling(lab, toy_copy):
    plan = lab.complete(Plan(prompt="a red circle on the left", model=str(toy_copy)))
    assert (plan.width, plan.height, plan.steps, plan.guidance) == (64, 64, 20, 4.0)
    _set_meta(toy_copy, sampling_steps=7, guidance_scale=3)  # what the recipe that made it samples with
    plan = lab.complete(Plan(prompt="a red circle on the left", model=str(toy_copy)))
    assert (plan.width, plan.height, plan.steps, plan.guidance) == (64, 64, 7, 3.0)
    given = lab.complete(Plan(prompt="a red circle", model=str(toy_copy), steps=3, width=96, height=96))
    assert (given.width, given.height, given.steps) == (96, 96, 3)  # what the plan says wins


def test_a_local_sdxl_folder_takes_sdxl_base_defaults_not_the_turbos(lab, tmp_path):
    from labkit.testing import build_tiny_sdxl

    folder = build_tiny_sdxl(tmp_path / "sdxl-finetune")
    plan = lab.complete(Plan(prompt="a lighthouse", model=str(folder)))
    sdxl = lab.catalog.get("sdxl")
    assert (plan.width, plan.height) == tuple(sdxl.default_size) == (1024, 1024)
    assert (plan.steps, plan.guidance) == (sdxl.default_steps, sdxl.default_guidance)


def test_a_bad_sampling_setting_in_the_folder_names_the_file_and_the_key(lab, toy_copy):
    from labkit.errors import UnknownModel

    _set_meta(toy_copy, sampling_steps="many")
    with pytest.raises(UnknownModel, match="sampling_steps") as e:
        lab.complete(Plan(prompt="a red circle", model=str(toy_copy)))
    assert "model_index.json" in str(e.value) and "model_index.json" in e.value.fix


def test_a_trained_toy_folder_renders_at_the_toy_size(lab, toy_copy):
    result = lab.generate("a red circle on the left", model=str(toy_copy), seed=0, steps=2)
    assert [im.size for im in result.images] == [(64, 64)]


def test_a_folders_model_card_gives_its_licence_to_the_render_and_the_compliance_mode(lab, toy_copy, tmp_path):
    """An exported pipeline (a DreamBooth --full or toy-base export, a downloaded fine-tune) carries its licence in
    its model card, as the hub's cards do: the render's record and terms name it, not "licence unknown"."""
    from labkit.errors import ComplianceViolation
    from labkit.lab import Lab

    result = lab.generate("a red circle on the left", model=str(toy_copy), steps=2, size=(32, 32))
    assert result.record["model"]["licence"] == "cc0-1.0"
    terms = result.record["provenance"]["terms"]
    assert terms["unknown"] == [] and terms["text"] == "commercial use allowed", terms
    card = toy_copy / "README.md"
    card.write_text(card.read_text().replace("license: cc0-1.0", "license: cc-by-nc-4.0"))
    strict = Lab(lab.config.root, compliance_mode="open", hardware=lab.hardware)
    with pytest.raises(ComplianceViolation, match="cc-by-nc-4.0"):
        strict.generate("a red circle on the left", model=str(toy_copy), steps=2, size=(32, 32))
    card.unlink()
    from labkit.pipelines.loader import resolve_model

    assert resolve_model(str(toy_copy), lab.catalog).licence is None  # no card, no licence claimed
