"""Model fit (labkit.controller.fit): whether a model suits a machine and which model a request gets; it
is core and stands apart from the controllers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labkit.controller.fit as fit_module
from labkit.catalog import Catalog
from labkit.controller.base import PlanContext
from labkit.controller.fit import choose_model, model_fit
from labkit.controller.reading import read_request
from labkit.controller.vocabulary import Vocabulary
from labkit.errors import ComplianceViolation
from labkit.hardware import HardwareProfile

NON_NC = ["creativeml-openrail-m", "openrail++", "apache-2.0", "cc0-1.0", "ltxv-open-weights"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(use_env=False)


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.load(use_env=False)


def test_fit_imports_only_the_base_floor_and_the_controllers_plain_parts():
    tree = ast.parse(Path(fit_module.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    labkit = {m for m in imported if m.startswith("labkit")}
    assert labkit <= {"labkit.errors", "labkit.catalog", "labkit.hardware", "labkit.controller.base",
                      "labkit.controller.reading"}, labkit


def test_on_a_cpu_only_the_practical_families_fit(catalog, vocab):
    cpu = HardwareProfile.simulated(None)
    assert model_fit(catalog.find("toyworld"), cpu, vocab).fits
    sdxl = model_fit(catalog.find("sdxl"), cpu, vocab)
    assert (sdxl.fits, sdxl.pace) == (False, 3)


def test_the_headroom_decides_a_gpu_fit(catalog, vocab):
    entry = catalog.find("sdxl")
    profile = HardwareProfile.simulated(8)
    f = model_fit(entry, profile, vocab)
    assert f.fits == (f.est_gb <= vocab.headroom * 8)
    tight = Vocabulary._build({"models": {"headroom": f.est_gb / 8 / 2}}, ("test",))
    assert not model_fit(entry, profile, tight).fits


def test_a_named_model_the_compliance_mode_refuses_names_its_licence(catalog, vocab):
    ctx = PlanContext.simulated("24", catalog=catalog, allowed_licences=NON_NC, compliance_mode="no-nc")
    r = read_request("a lighthouse with sd turbo", vocab, catalog)
    assert r.model == "sd-turbo"
    with pytest.raises(ComplianceViolation, match="sai-nc-community") as info:
        choose_model(r, "txt2img", ctx, vocab)
    assert "sd-turbo" in str(info.value) and info.value.fix


def test_quick_picks_a_turbo_model_that_fits(catalog, vocab):
    ctx = PlanContext.simulated("16", catalog=catalog)
    entry, why = choose_model(read_request("a quick sketch of a fox", vocab, catalog), "txt2img", ctx, vocab)
    assert entry.default_steps <= 4 and "fastest txt2img model that fits" in why


def test_on_a_cpu_where_nothing_fits_the_model_needing_the_least_ram_is_chosen(catalog, vocab):
    """Every CPU rung estimates 0 GB of VRAM, so 'the one needing the least memory' fell to the quality order
    and took SDXL, the heaviest; the RAM a family needs on a CPU (float32) decides now."""
    from labkit.hardware import host_ram_gb

    ctx = PlanContext.simulated("cpu", catalog=catalog, allowed_licences=NON_NC, compliance_mode="no-nc")
    entry, why = choose_model(read_request("a lighthouse at dusk", vocab, catalog), "txt2img", ctx, vocab)
    others = [e for e in catalog if "txt2img" in e.tasks and e.family != "toy" and e.licence in NON_NC]
    assert {e.family for e in others} >= {"sd15", "sdxl"}  # a real choice
    assert host_ram_gb(entry.family, on_cpu=True) == min(host_ram_gb(e.family, on_cpu=True) for e in others)
    assert entry.id == "sd15" and "least memory" in why
