"""`labkit compliance dataset` on a generated image folder."""

from __future__ import annotations

import json

from labkit.toyworld.data import write_dataset
from tests.integration.test_cli import labkit


def test_dataset_breakdown_counts_chart_and_missing(tmp_path, cli_env):
    folder = tmp_path / "shapes"
    meta = write_dataset(folder, n=10, seed=1)
    lines = [json.loads(x) for x in meta.read_text().splitlines()]
    for i, item in enumerate(lines):
        if i < 3:
            item["licence"] = "CC-BY-NC-4.0"
        elif i < 5:
            item.pop("licence")
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))

    out = labkit("compliance", "dataset", str(folder), "--json", env=cli_env)
    report = json.loads(out.stdout)
    assert report["total"] == 10
    assert report["counts"]["cc0-1.0"] == 5 and report["counts"]["cc-by-nc-4.0"] == 3
    assert sorted(report["missing"]) == sorted(x["file_name"] for x in lines[3:5])
    assert report["terms"]["commercial"] is False
    assert (folder / "licences.png").read_bytes()[:4] == b"\x89PNG"

    strict = labkit("compliance", "dataset", str(folder), "--mode", "strict", env=cli_env, check=False)
    assert strict.returncode == 1 and "block" in strict.stdout
