"""`labkit compliance report` over real runs: a render of a catalogued model, training on a folder with
non-commercial and unlicensed items in another experiment, and a run that recorded no licences."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_cli import labkit

pytest.importorskip("torch")


@pytest.fixture
def runs(project, tmp_path, monkeypatch):
    """Three runs in two experiments; returns (render result, training result)."""
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.testing import build_tiny_sd15
    from labkit.training import train
    from tests.integration.test_training_dataset_licences import FolderTask, config, mixed_folder

    model = build_tiny_sd15(tmp_path / "tiny-sd15")
    catalogue = tmp_path / "catalog.toml"
    catalogue.write_text("\n".join([
        "[models.tiny-sd15]", 'name = "tiny sd15"', f'source = "path:{model}"', 'family = "sd15"',
        'tasks = ["txt2img"]', 'licence = "creativeml-openrail-m"', "default_steps = 2", "default_guidance = 2.0",
        "default_size = [32, 32]", "min_size = 16", "max_size = 256", "size_multiple = 8", "default_frames = 0",
        "default_fps = 0", "max_frames = 0"]) + "\n")
    monkeypatch.setenv("LABKIT_CATALOG", str(catalogue))
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    rendered = lab.generate("a red circle on the left", model="tiny-sd15", seed=3)
    with lab.run("notes"):  # records no licences: the report skips it
        pass
    study = Lab(project, hardware=HardwareProfile.simulated(None), experiment="study")
    folder, _ = mixed_folder(tmp_path / "shapes")
    trained = train(FolderTask(folder), config(tmp_path / "out"), lab=study, run_name="train-shapes")
    return rendered, trained


def test_report_lists_assets_licences_and_terms_per_run(runs, cli_env, project):
    rendered, trained = runs
    report = json.loads(labkit("compliance", "report", "--json", env=cli_env).stdout)
    assert sorted(report["experiments"]) == ["labkit", "study"] and report["skipped"] == 1
    by_run = {r["run_id"]: r for r in report["runs"]}
    assert set(by_run) == {rendered.run_id, trained.run_id}

    render = by_run[rendered.run_id]
    assert render["job"] == "render" and render["experiment"] == "labkit"
    assert render["assets"] == [{"kind": "model", "id": "tiny-sd15", "licence": "creativeml-openrail-m",
                                 "licence_id": "creativeml-openrail-m"}]
    assert render["commercial"] == "true" and "use restrictions of CreativeML Open RAIL-M" in render["terms"]
    assert render["terms"] == rendered.record["terms"]  # what the output files say

    training = by_run[trained.run_id]
    assert training["job"] == "train" and training["experiment"] == "study" and training["verdict"] == "warn"
    assert training["commercial"] == "false" and "non-commercial" in training["terms"]
    groups = {a["licence_id"]: a for a in training["assets"]}
    assert set(groups) == {"cc0-1.0", "cc-by-nc-4.0", "unknown"}
    assert "3 item(s)" in groups["cc-by-nc-4.0"]["id"] and "without a licence" in groups["unknown"]["id"]

    assets = {(a["kind"], a["id"]): a for a in report["assets"]}
    assert assets[("model", "tiny-sd15")]["runs"] == 1 and assets[("model", "tiny-sd15")]["run_ids"] == [
        rendered.run_id]
    assert "legal advice" in report["disclaimer"]

    only = json.loads(labkit("compliance", "report", "--experiment", "study", "--json", env=cli_env).stdout)
    assert [r["run_id"] for r in only["runs"]] == [trained.run_id] and only["experiments"] == ["study"]

    text = labkit("compliance", "report", env=cli_env).stdout
    assert "Assets used" in text and "tiny-sd15" in text and "creativeml-openrail-m" in text
    assert f"{rendered.run_id[:8]}  render" in text and "(1 without a licence record skipped)" in text

    unknown = labkit("compliance", "report", "--experiment", "nope", env=cli_env, check=False)
    assert unknown.returncode == 2 and "'nope'" in unknown.stderr and "study" in unknown.stderr


def test_report_library_reads_runs_logged_before_the_chain_was_a_tag(lab):
    from labkit.compliance import compliance_report
    from labkit.errors import InvalidParameter

    with lab.run("old render", tags={"labkit.job": "render", "model.id": "sd15",
                                     "model.licence": "creativeml-openrail-m",
                                     "labkit.terms.text": "use restrictions of CreativeML Open RAIL-M apply",
                                     "labkit.terms.commercial": "true"}) as old:
        pass
    report = compliance_report(lab.tracker)
    assert [r.run_id for r in report.runs] == [old.run_id]
    assert report.runs[0].assets == [{"kind": "model", "id": "sd15", "licence": "creativeml-openrail-m"}]
    assert report.assets()[0]["runs"] == 1 and "sd15" in report.text()
    with pytest.raises(InvalidParameter, match="max_runs=0"):
        compliance_report(lab.tracker, max_runs=0)
