"""The licence table: aliases, entry checks, user extensions, and that the data says what it claims."""

from __future__ import annotations

import pytest

from labkit.compliance import LicenceTable
from labkit.errors import ConfigError, InvalidParameter


@pytest.fixture(scope="module")
def table():
    return LicenceTable.load(use_env=False)


def test_catalogue_ids_and_spdx_spellings_resolve(table):
    for spelling, cid in [("creativeml-openrail-m", "creativeml-openrail-m"), ("openrail++", "openrail++"),
                          ("creativeml-openrail++-m", "openrail++"), ("CreativeML-OpenRAIL++-M", "openrail++"),
                          ("sai-nc-community", "sai-nc-community"), ("CC-BY-NC-4.0", "cc-by-nc-4.0"),
                          ("cc by-nc 4.0", "cc-by-nc-4.0"), ("Apache-2.0", "apache-2.0"), ("CC0-1.0", "cc0-1.0"),
                          ("stable-video-diffusion-community", "stable-video-diffusion-community"),
                          ("ltxv-open-weights", "ltxv-open-weights"), ("other", "unknown"),
                          ("BSD-3-Clause", "bsd-3-clause")]:
        assert table.canonical(spelling) == cid, spelling
    assert table.canonical("no-such-licence") is None and table.canonical(None) is None
    assert table.resolve(None).id == "unknown" and table.resolve("no-such-licence").is_unknown


def test_required_licences_present_with_their_terms(table):
    for lid in ["apache-2.0", "mit", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
                "cc-by-nc-sa-4.0", "cc-by-nd-4.0", "creativeml-openrail-m", "openrail++", "stability-ai-community",
                "sai-nc-community", "stable-video-diffusion-community", "ltxv-open-weights", "llama3.1", "gemma",
                "qwen", "unknown"]:
        assert lid in table, lid
    nc = table["cc-by-nc-4.0"]
    assert nc.commercial_use is False and nc.attribution_required and not nc.share_alike and nc.derivatives
    assert table["cc-by-sa-4.0"].share_alike and table["cc-by-sa-4.0"].commercial_use is True
    assert table["cc-by-nd-4.0"].derivatives is False
    assert table["cc0-1.0"].attribution_required is False
    rail = table["creativeml-openrail-m"]
    assert rail.commercial_use is True and rail.use_restrictions and "Attachment A" in rail.use_restrictions_summary
    assert table["sai-nc-community"].commercial_use is False
    assert table["stability-ai-community"].commercial_use == "conditional"
    assert "1,000,000" in table["stability-ai-community"].commercial_condition
    assert "10,000,000" in table["ltxv-open-weights"].commercial_condition
    assert "700 million" in table["llama3.1"].commercial_condition
    assert table["qwen-research"].research_only


def test_every_entry_cites_a_check_or_says_it_was_not_checked(table):
    for lic in table.values():
        if lic.is_unknown:
            continue
        assert lic.url, lic.id
        assert lic.checked in ("yes", "partial", "no")
        if lic.checked in ("yes", "partial"):
            assert lic.checked_against.startswith("http"), lic.id
        if lic.checked != "yes":
            assert lic.notes, f"{lic.id}: an entry not fully checked must say what is unconfirmed"


def test_require_suggests_close_ids(table):
    with pytest.raises(InvalidParameter, match="cc-by-nc-4.0") as info:
        table.require("cc-by-nc-4")
    assert "LABKIT_LICENCES" in info.value.fix


def test_user_table_overrides_and_adds(tmp_path, monkeypatch):
    extra = tmp_path / "lic.toml"
    extra.write_text('[licences.my-lab-licence]\nname = "My lab licence"\nurl = "https://example.org/l"\n'
                     'commercial_use = false\naliases = ["MLL-1"]\n'
                     '[licences.mit]\nnotes = "overridden"\n')
    monkeypatch.setenv("LABKIT_LICENCES", str(extra))
    t = LicenceTable.load()
    assert t.canonical("mll-1") == "my-lab-licence" and t["my-lab-licence"].commercial_use is False
    assert t["mit"].notes == "overridden" and t["mit"].commercial_use is True
    assert t["my-lab-licence"].origin == str(extra)


@pytest.mark.parametrize("body,match", [
    ('[licences.x]\nname = "X"\ncommercial_use = "maybe"\n', r"licences\.x\.commercial_use = 'maybe'"),
    ('[licences.x]\nname = "X"\ncommercial_use = "conditional"\n', r"commercial_condition"),
    ('[licences.x]\nname = "X"\nsharealike = true\n', r"unknown key 'sharealike'"),
    ('[licences.X-Upper]\nname = "X"\n', r"not a lower-case id"),
    ('[licences.x]\nname = "X"\naliases = ["MIT"]\n', r"'MIT' names both"),
    ('[licences.x]\nname = "X"\nderivatives = "yes"\n', r"derivatives = 'yes'"),
])
def test_bad_entries_are_named(tmp_path, body, match):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=match):
        LicenceTable.load(extra=f, use_env=False)


def test_missing_extra_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        LicenceTable.load(extra=tmp_path / "nope.toml", use_env=False)


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, labkit.compliance; "
            "print(sorted(m for m in ('torch','diffusers','mlflow','matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
