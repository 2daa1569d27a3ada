"""Dataset licence breakdown on a folder written by labkit.toyworld.data.write_dataset."""

from __future__ import annotations

import json

import pytest

from labkit.compliance import LicenceTable, dataset_breakdown
from labkit.compliance.datasets import MISSING
from labkit.errors import ComplianceViolation, InvalidParameter
from labkit.toyworld.data import METADATA_FILE, write_dataset


@pytest.fixture(scope="module")
def table():
    return LicenceTable.load(use_env=False)


@pytest.fixture()
def mixed(tmp_path):
    """12 items: 5 CC0 (three spellings), 3 CC-BY-NC (three spellings), 1 CC-BY (under the key `license`),
    1 without a licence key, 1 with an empty licence, 1 under a licence labkit does not know."""
    folder = tmp_path / "shapes"
    write_dataset(folder, n=12, seed=3, size=16)
    meta = folder / METADATA_FILE
    lines = [json.loads(x) for x in meta.read_text().splitlines()]
    plan = {0: "CC0-1.0", 1: "cc0-1.0", 2: "CC0-1.0", 3: "cc0", 4: "CC0-1.0",
            5: "CC-BY-NC-4.0", 6: "cc-by-nc-4.0", 7: "CC BY-NC 4.0", 8: "CC-BY-4.0",
            9: None, 10: "", 11: "mystery-licence"}
    for i, lic in plan.items():
        if lic is None:
            del lines[i]["licence"]
        else:
            lines[i]["licence"] = lic
    lines[8]["license"] = lines[8].pop("licence")         # the Hugging Face spelling of the key
    meta.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder


def test_counts_shares_and_missing(mixed, table):
    b = dataset_breakdown(mixed, licences=table)
    assert b.total == 12 and b.name == "shapes"
    assert b.counts == {"cc0-1.0": 5, "cc-by-nc-4.0": 3, MISSING: 2, "cc-by-4.0": 1, "unknown": 1}
    assert list(b.counts) == ["cc0-1.0", "cc-by-nc-4.0", MISSING, "cc-by-4.0", "unknown"]
    assert b.shares["cc0-1.0"] == pytest.approx(5 / 12)
    assert sum(b.shares.values()) == pytest.approx(1.0)
    assert b.missing == ["000009.png", "000010.png"]
    assert b.unrecognised == {"mystery-licence": ["000011.png"]}
    assert set(b.spellings["cc-by-nc-4.0"]) == {"CC-BY-NC-4.0", "cc-by-nc-4.0", "CC BY-NC 4.0"}
    assert b.table()[0] == {"licence": "cc0-1.0", "count": 5, "share": 41.7}


def test_terms_of_training_on_it(mixed, table):
    t = dataset_breakdown(mixed, licences=table).terms
    assert t.commercial is False
    assert any("cc-by-nc-4.0" in x for x in t.non_commercial)
    assert {x.split(" (")[-1] for x in t.attribution} == {"cc-by-nc-4.0)", "cc-by-4.0)"}
    assert len(t.unknown) == 2     # the items without a licence, and the mystery licence


def test_json_summary_round_trips(mixed, table):
    d = dataset_breakdown(mixed, licences=table).to_dict()
    back = json.loads(json.dumps(d))
    assert back["counts"]["cc-by-nc-4.0"] == 3 and back["missing"] == ["000009.png", "000010.png"]
    assert back["terms"]["commercial"] is False and "legal advice" in back["disclaimer"]


def test_chart_is_written(mixed, table, tmp_path):
    out = dataset_breakdown(mixed, licences=table).chart(tmp_path / "charts" / "licences.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] == 640 and im.size[1] > 200


def test_dataset_check_per_mode(mixed, table):
    b = dataset_breakdown(mixed, licences=table)
    research = b.check("research", licences=table)
    assert research.action == "warn"
    assert {d.asset.licence for d in research.warnings} == {None, "mystery-licence"}
    with pytest.raises(ComplianceViolation) as info:
        b.check("strict", licences=table).raise_if_blocked()
    assert "shapes: 2 item(s) without a licence (000009.png, 000010.png)" in str(info.value)
    assert "'strict'" in str(info.value) and "metadata.jsonl" in info.value.fix
    open_ = b.check("open", licences=table)
    assert {d.asset.licence for d in open_.blocked} == {"cc-by-nc-4.0", None, "mystery-licence"}


def test_clean_dataset_passes_strict(tmp_path, table):
    folder = tmp_path / "clean"
    write_dataset(folder, n=3, seed=0, size=16)
    b = dataset_breakdown(folder, licences=table)
    assert b.counts == {"cc0-1.0": 3} and b.missing == []
    assert b.check("strict", licences=table).action == "allow"
    assert b.terms.commercial is True


def test_folder_without_metadata_is_named(tmp_path):
    with pytest.raises(InvalidParameter, match="No metadata.jsonl") as info:
        dataset_breakdown(tmp_path)
    assert "file_name" in info.value.fix


def test_bad_line_is_named(tmp_path):
    (tmp_path / METADATA_FILE).write_text('{"file_name": "a.png"}\n{"text": "no name"}\n')
    with pytest.raises(InvalidParameter, match="line 2 has no file_name"):
        dataset_breakdown(tmp_path)
