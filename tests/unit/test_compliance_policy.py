"""Compliance modes applied to asset licences: the allow / warn / block matrix, mode resolution,
error messages, user-defined modes, and the licence_ok predicate."""

from __future__ import annotations

import pytest

from labkit.compliance import Asset, LicenceTable, check, enforce, licence_ok, load_modes, resolve_mode
from labkit.errors import ComplianceViolation, ConfigError, InvalidParameter


@pytest.fixture(scope="module")
def licences():
    return LicenceTable.load(use_env=False)


@pytest.fixture(scope="module")
def modes():
    return load_modes(use_env=False)


# (kind, licence as recorded, {mode: expected action})
MATRIX = [
    # base models of the catalogue
    ("model", "creativeml-openrail-m", dict(research="allow", open="allow", strict="allow")),
    ("model", "openrail++", dict(research="allow", open="allow", strict="allow")),
    ("model", "CreativeML-OpenRAIL++-M", dict(research="allow", open="allow", strict="allow")),
    ("model", "sai-nc-community", dict(research="allow", open="block", strict="allow")),
    ("model", "stable-video-diffusion-community", dict(research="allow", open="warn", strict="allow")),
    ("model", "stable-video-diffusion-nc-community", dict(research="allow", open="block", strict="allow")),
    ("model", "apache-2.0", dict(research="allow", open="allow", strict="allow")),
    ("model", "ltxv-open-weights", dict(research="allow", open="warn", strict="allow")),
    ("model", "cc0-1.0", dict(research="allow", open="allow", strict="allow")),
    ("model", "flux-1-dev-non-commercial-license", dict(research="allow", open="block", strict="allow")),
    ("model", "other", dict(research="warn", open="block", strict="block")),
    ("model", None, dict(research="warn", open="block", strict="block")),
    ("model", "my-own-licence-v2", dict(research="warn", open="block", strict="block")),
    # adapters
    ("adapter", "CC-BY-NC-4.0", dict(research="allow", open="block", strict="allow")),
    ("adapter", "cc-by-4.0", dict(research="allow", open="allow", strict="allow")),
    ("adapter", "MIT", dict(research="allow", open="allow", strict="allow")),
    ("adapter", "cc-by-sa-4.0", dict(research="allow", open="warn", strict="allow")),
    ("adapter", "", dict(research="warn", open="block", strict="block")),
    ("adapter", "cc-by-nd-4.0", dict(research="allow", open="allow", strict="allow")),
    # ControlNets
    ("controlnet", "creativeml-openrail-m", dict(research="allow", open="allow", strict="allow")),
    ("controlnet", "stability-ai-community", dict(research="allow", open="warn", strict="allow")),
    # controller LLMs
    ("controller-llm", "llama3.1", dict(research="allow", open="warn", strict="allow")),
    ("controller-llm", "gemma", dict(research="allow", open="allow", strict="allow")),
    ("controller-llm", "qwen-research", dict(research="allow", open="block", strict="allow")),
    ("controller-llm", "apache-2.0", dict(research="allow", open="allow", strict="allow")),
    ("controller-llm", None, dict(research="warn", open="block", strict="block")),
    # datasets and their items
    ("dataset", "cc-by-nc-sa-4.0", dict(research="allow", open="block", strict="allow")),
    ("dataset", "cc-by-nd-4.0", dict(research="warn", open="block", strict="block")),
    ("dataset", "cc0-1.0", dict(research="allow", open="allow", strict="allow")),
    ("dataset", None, dict(research="warn", open="block", strict="block")),
    ("dataset-item", "CC0-1.0", dict(research="allow", open="allow", strict="allow")),
    ("dataset-item", "cc-by-4.0", dict(research="allow", open="allow", strict="allow")),
    ("dataset-item", "cc-by-nc-4.0", dict(research="allow", open="block", strict="allow")),
    ("dataset-item", None, dict(research="warn", open="block", strict="block")),
    ("dataset-item", "   ", dict(research="warn", open="block", strict="block")),
    ("dataset-item", "cc-by-nc-nd-4.0", dict(research="warn", open="block", strict="block")),
    ("dataset-item", "public-domain", dict(research="allow", open="allow", strict="allow")),
]
CASES = [(kind, lic, mode, want) for kind, lic, wants in MATRIX for mode, want in wants.items()]


def test_matrix_has_at_least_fifty_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize("kind,lic,mode,want", CASES, ids=[f"{k}-{lic}-{m}" for k, lic, m, _ in CASES])
def test_matrix(kind, lic, mode, want, licences, modes):
    verdict = check([Asset(kind, "asset-under-test", lic)], mode, licences=licences, modes=modes)
    decision = verdict.decisions[0]
    assert decision.action == want, decision.reasons
    assert verdict.ok == (want != "block")
    assert decision.reasons, "every non-trivial decision says why"
    assert bool(decision.fixes) == (want == "block")


def test_chain_takes_the_strictest_action_and_keeps_order(licences, modes):
    chain = [("model", "sd15", "creativeml-openrail-m"), ("adapter", "lora", "cc-by-nc-4.0"),
             ("controller-llm", "llm", None)]
    v = check(chain, "research", licences=licences, modes=modes)
    assert [d.asset.id for d in v.decisions] == ["sd15", "lora", "llm"]
    assert v.action == "warn" and [d.asset.id for d in v.warnings] == ["llm"]
    v = check(chain, "open", licences=licences, modes=modes)
    assert v.action == "block" and [d.asset.id for d in v.blocked] == ["lora", "llm"]
    assert [d.asset.id for d in v.allowed] == ["sd15"]


def test_enforce_message_names_asset_licence_mode_and_fix(licences, modes):
    with pytest.raises(ComplianceViolation) as info:
        enforce([("model", "sd15", "creativeml-openrail-m"), ("model", "sd-turbo", "sai-nc-community")], "open",
                licences=licences, modes=modes)
    err = info.value
    msg = str(err)
    assert "sd-turbo" in msg and "sai-nc-community" in msg and "'open'" in msg
    assert "commercial" in msg
    assert err.value == "sd-turbo" and err.mode == "open" and err.licence == "sai-nc-community"
    # what would make it pass: another mode, and a differently licensed model
    assert "'research'" in err.fix and "--mode" in err.fix
    assert "creativeml-openrail-m" in err.fix
    assert err.verdict.blocked[0].asset.id == "sd-turbo"


def test_enforce_missing_item_licence_says_to_add_one(licences, modes):
    with pytest.raises(ComplianceViolation) as info:
        enforce([Asset("dataset-item", "shapes/000003.png", None)], "strict", licences=licences, modes=modes)
    err = info.value
    assert "shapes/000003.png" in str(err) and "no licence recorded" in str(err) and "'strict'" in str(err)
    assert "metadata.jsonl" in err.fix and "LABKIT_LICENCES" in err.fix
    assert "'research' (with a warning)" in err.fix


def test_enforce_lists_every_blocked_asset(licences, modes):
    with pytest.raises(ComplianceViolation, match=r"Also blocked: adapter 'b'"):
        enforce([("adapter", "a", "cc-by-nc-4.0"), ("adapter", "b", None)], "open", licences=licences, modes=modes)


def test_enforce_returns_verdict_with_warnings(licences, modes):
    v = enforce([("model", "m", "unheard-of")], "research", licences=licences, modes=modes)
    assert v.action == "warn"
    assert "not in labkit's licence table" in v.messages()[0]
    tags = v.tags()
    assert tags["labkit.compliance.mode"] == "research" and tags["labkit.compliance.verdict"] == "warn"
    assert "unheard-of" in tags["labkit.compliance.warnings"]


def test_alias_spelling_is_shown_with_table_id(licences, modes):
    d = check([("adapter", "x", "CC-BY-NC-4.0")], "open", licences=licences, modes=modes).decisions[0]
    assert d.licence.id == "cc-by-nc-4.0" and d.licence_label == "CC-BY-NC-4.0 = cc-by-nc-4.0"


def test_mode_resolution_order(monkeypatch, modes):
    monkeypatch.delenv("LABKIT_COMPLIANCE_MODE", raising=False)
    assert resolve_mode(None, modes).name == "research"
    monkeypatch.setenv("LABKIT_COMPLIANCE_MODE", "strict")
    assert resolve_mode(None, modes).name == "strict"
    assert resolve_mode("open", modes).name == "open"
    monkeypatch.setenv("LABKIT_COMPLIANCE_MODE", "lenient")
    with pytest.raises(InvalidParameter, match=r"'lenient' \(from \$LABKIT_COMPLIANCE_MODE\)") as info:
        resolve_mode(None, modes)
    assert "open" in info.value.fix and "LABKIT_COMPLIANCE_MODES" in info.value.fix


def test_env_mode_used_by_check(monkeypatch, licences, modes):
    monkeypatch.setenv("LABKIT_COMPLIANCE_MODE", "open")
    assert check([("model", "m", "sai-nc-community")], licences=licences, modes=modes).action == "block"
    monkeypatch.delenv("LABKIT_COMPLIANCE_MODE")
    assert check([("model", "m", "sai-nc-community")], licences=licences, modes=modes).action == "allow"


def test_strict_requires_records_and_open_too(modes):
    assert modes["strict"].require_record and modes["open"].require_record
    assert not modes["research"].require_record


def test_user_mode_extends_and_overrides_per_kind(tmp_path, licences):
    extra = tmp_path / "modes.toml"
    extra.write_text(
        '[modes.teaching]\nextends = "open"\ndescription = "class work"\nnon_commercial = "warn"\n'
        '[modes.teaching.kinds.controller-llm]\nnon_commercial = "allow"\n'
        '[modes.research]\nunknown = "block"\n')
    modes = load_modes(extra=extra, use_env=False)
    assert modes["teaching"].rules["research_only"] == "block"      # inherited from open
    chain = [("model", "m", "sai-nc-community"), ("controller-llm", "l", "qwen-research"),
             ("controller-llm", "l2", "cc-by-nc-4.0")]
    v = check(chain, "teaching", licences=licences, modes=modes)
    assert [d.action for d in v.decisions] == ["warn", "block", "allow"]
    # an override of a shipped mode changes only the key it sets
    v = check([("model", "m", "mystery")], "research", licences=licences, modes=modes)
    assert v.action == "block"
    assert modes["research"].rules["missing"] == "warn"


def test_bad_mode_file_names_key_and_fix(tmp_path):
    bad = tmp_path / "modes.toml"
    bad.write_text('[modes.sloppy]\nextends = "research"\nunknown = "ignore"\n')
    with pytest.raises(ConfigError, match=r"modes\.sloppy\.unknown = 'ignore'") as info:
        load_modes(extra=bad, use_env=False)
    assert "allow" in info.value.fix
    bad.write_text('[modes.half]\nmissing = "warn"\n')
    with pytest.raises(ConfigError, match=r"modes\.half does not say what to do for 'unknown'"):
        load_modes(extra=bad, use_env=False)


def test_env_modes_file(tmp_path, monkeypatch):
    f = tmp_path / "m.toml"
    f.write_text('[modes.lab]\nextends = "strict"\n')
    monkeypatch.setenv("LABKIT_COMPLIANCE_MODES", str(f))
    assert "lab" in load_modes()


def test_licence_ok_predicate(licences, modes):
    ok_open = licence_ok("open", licences=licences, modes=modes)
    assert ok_open("creativeml-openrail-m") and ok_open("apache-2.0")
    assert not ok_open("sai-nc-community") and not ok_open(None) and not ok_open("who-knows")
    assert ok_open("ltxv-open-weights")                         # conditional: warns, so allowed
    assert not licence_ok("open", allow_warnings=False, licences=licences, modes=modes)("ltxv-open-weights")
    ok_research = licence_ok("research", licences=licences, modes=modes)
    assert ok_research("sai-nc-community") and ok_research(None)
    assert not licence_ok("strict", licences=licences, modes=modes)(None)


def test_catalogue_licences_are_all_known(licences):
    from labkit.catalog import Catalog

    entries = list(Catalog.load(use_env=False))
    assert entries
    for entry in entries:
        assert licences.canonical(entry.licence) not in (None, "unknown"), entry.id


def test_asset_kinds_are_checked():
    with pytest.raises(InvalidParameter, match="'vae'"):
        Asset("vae", "x", "mit")
    assert Asset.of({"kind": "model", "id": "m", "license": "MIT"}).licence == "MIT"
    assert Asset.of(("adapter", "a")).licence is None
