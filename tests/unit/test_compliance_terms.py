"""Output terms derived from a chain of licences."""

from __future__ import annotations

import json

import pytest

from labkit.compliance import DISCLAIMER, Asset, LicenceTable, derive_terms


@pytest.fixture(scope="module")
def table():
    return LicenceTable.load(use_env=False)


def test_openrail_base_plus_nc_dataset(table):
    t = derive_terms([Asset("model", "sd15", "creativeml-openrail-m"), Asset("dataset", "shapes", "CC-BY-NC-4.0")],
                     licences=table)
    assert t.commercial is False and not t.research_only
    assert t.non_commercial == ("dataset 'shapes' (CC-BY-NC-4.0)",)
    assert t.attribution == ("dataset 'shapes' (CC-BY-NC-4.0)",)   # the model's notices are for redistribution
    assert len(t.restrictions) == 1 and t.restrictions[0].startswith("use restrictions of CreativeML Open RAIL-M apply")
    assert t.text.startswith("non-commercial (dataset 'shapes'")
    assert "attribution required: dataset 'shapes'" in t.text
    assert "use restrictions of CreativeML Open RAIL-M apply" in t.text
    d = t.to_dict()
    json.dumps(d)
    assert d["disclaimer"] == DISCLAIMER and "does not give legal advice" in DISCLAIMER
    assert [s["licence_id"] for s in d["sources"]] == ["creativeml-openrail-m", "cc-by-nc-4.0"]


def test_permissive_chain_is_commercial(table):
    t = derive_terms([("model", "wan", "apache-2.0"), ("adapter", "a", "mit"), ("dataset", "d", "cc0-1.0")],
                     licences=table)
    assert t.commercial is True and t.attribution == () and t.restrictions == ()
    assert t.text == "commercial use allowed"


def test_conditional_licences_make_commercial_conditional(table):
    t = derive_terms([("model", "ltx", "ltxv-open-weights"), ("controller-llm", "llm", "llama3.1")], licences=table)
    assert t.commercial == "conditional"
    assert any("10,000,000" in c for c in t.conditions) and any("700 million" in c for c in t.conditions)
    assert t.text.startswith("commercial use conditional (")
    assert len(t.restrictions) == 2


def test_non_commercial_wins_over_conditional(table):
    t = derive_terms([("model", "svd", "stable-video-diffusion-community"), ("model", "turbo", "sai-nc-community")],
                     licences=table)
    assert t.commercial is False


def test_share_alike_and_cc_by_adapter_attribution(table):
    t = derive_terms([("adapter", "style", "cc-by-4.0"), ("dataset", "wiki", "cc-by-sa-3.0")], licences=table)
    assert t.commercial is True
    assert t.attribution == ("adapter 'style' (cc-by-4.0)", "dataset 'wiki' (cc-by-sa-3.0)")
    assert t.share_alike == ("dataset 'wiki' (cc-by-sa-3.0)",)
    assert "share-alike: dataset 'wiki'" in t.text


def test_research_only_and_unknown(table):
    t = derive_terms([("controller-llm", "q", "qwen-research"), ("model", "m", None), ("adapter", "a", "zzz")],
                     licences=table)
    assert t.commercial is False and t.research_only
    assert t.unknown == ("model 'm' (no licence)", "adapter 'a' (zzz)")
    assert t.text.startswith("research use only") and "licence unknown: model 'm'" in t.text


def test_no_derivatives_training_data(table):
    t = derive_terms([("dataset", "nd", "cc-by-nd-4.0")], licences=table)
    assert t.no_derivatives == ("dataset 'nd' (cc-by-nd-4.0)",)


def test_bare_licence_ids_and_tags(table):
    t = derive_terms(["creativeml-openrail-m", "cc-by-nc-4.0"], licences=table)
    assert t.commercial is False
    tags = t.tags()
    assert tags["labkit.terms.commercial"] == "false" and "non-commercial" in tags["labkit.terms.text"]
