"""What a researcher walking through `labkit compliance` met: hand-edited metadata.jsonl lines and the fix a
blocked render shows (found by trying them, kept so they stay fixed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.compliance import dataset_breakdown, enforce, load_modes
from labkit.errors import ComplianceViolation, InvalidParameter


def _metadata(folder: Path, *records: dict, ascii_only: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in records]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_a_caption_with_a_unicode_line_separator_is_one_record(tmp_path):
    # JSON allows U+2028 / U+0085 unescaped inside a string; JSON Lines ends a record at "\n" only.
    folder = _metadata(tmp_path / "ds", {"file_name": "a.png", "text": "line\u2028two", "licence": "mit"},
                       {"file_name": "b.png", "text": "x\x85y", "licence": "cc0-1.0"}, ascii_only=False)
    b = dataset_breakdown(folder)
    assert b.total == 2 and b.counts == {"cc0-1.0": 1, "mit": 1}


@pytest.mark.parametrize("value", [42, ["cc0-1.0", "mit"], {"id": "mit"}])
def test_a_licence_that_is_not_text_names_its_line_instead_of_counting_as_missing(tmp_path, value):
    folder = _metadata(tmp_path / "ds", {"file_name": "a.png", "licence": "mit"},
                       {"file_name": "b.png", "licence": value})
    with pytest.raises(InvalidParameter) as e:
        dataset_breakdown(folder)
    assert "line 2" in str(e.value) and "not a licence id" in str(e.value) and '"cc0-1.0"' in e.value.fix


def test_a_pasted_licence_text_is_refused_not_printed_back(tmp_path):
    text = "Permission is hereby granted, free of charge, to any person obtaining a copy " * 50
    folder = _metadata(tmp_path / "ds", {"file_name": "a.png", "license": text})
    with pytest.raises(InvalidParameter) as e:
        dataset_breakdown(folder)
    assert "line 1" in str(e.value) and f"{len(text):,} characters" in str(e.value)
    assert len(str(e.value)) < 1000


def test_a_block_under_the_labs_mode_object_suggests_the_modes_that_pass():
    # Lab.compliance is a Mode, not a name: the fix still names the modes that would allow the asset.
    mode = load_modes()["open"]
    with pytest.raises(ComplianceViolation) as e:
        enforce([("model", "toyworld", "cc-by-nc-4.0")], mode)
    assert "run in compliance mode 'research'" in e.value.fix.lower()
