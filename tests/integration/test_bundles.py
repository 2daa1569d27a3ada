"""Run bundles: export from one MLflow store, import into another, and MLflow sees the same runs."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.integration.test_cli import labkit


def _make_runs(lab) -> dict[str, str]:
    """A parent with two children: params, a metric history, tags, notes, nested artifacts, one failure."""
    ids = {}
    with lab.run("study", params={"lr": 0.001, "plan": {"steps": 4}}, tags={"labkit.job": "sweep"}) as parent:
        parent.log_series("loss", [1.0, 0.5, 0.25, float("nan")])
        parent.log_text("# study\n", "notes/summary.md")
        lab.note("The parent's note.", parent.run_id)
        ids["parent"] = parent.run_id
        for seed in (0, 1):
            with lab.run(f"child {seed}", params={"seed": seed}, parent_run_id=parent.run_id) as child:
                child.log_metrics({"score": 0.5 + seed}, step=3)
                child.log_metrics({"score": 0.7 + seed}, step=7)
                child.log_dict({"seed": seed}, "outputs/record.json")
                child.log_text("binary-ish \x00\x01", "outputs/deep/folder/blob.bin")
                ids[f"child{seed}"] = child.run_id
    with pytest.raises(ValueError), lab.run("broken", params={"x": 1}):
        raise ValueError("on purpose")
    lab.note("An experiment note.", experiment=True)
    return ids


def _files(run) -> dict[str, bytes]:
    root = Path(run.info.artifact_uri.removeprefix("file://"))
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _history(uri: str, run_id: str, key: str) -> list[tuple]:
    from mlflow import MlflowClient

    return sorted((m.step, m.timestamp, str(m.value)) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_export_then_import_into_an_empty_store_gives_the_same_runs(migrated_store, lab, tmp_path, search_runs,
                                                                     _fresh_store_file):
    from labkit.config import LabConfig
    from labkit.errors import InvalidParameter
    from labkit.tracking.bundle import ORIGIN_TAG, export_bundle, import_bundle, read_manifest
    from labkit.tracking.store import Tracker

    ids = _make_runs(lab)
    bundle = export_bundle(lab.tracker, ["labkit"], tmp_path / "study.zip")
    assert bundle.runs == 4 and bundle.artifacts >= 6
    manifest = read_manifest(bundle.path)
    assert manifest["format"] == "labkit-run-bundle" and manifest["format_version"] == 1
    with zipfile.ZipFile(bundle.path) as zf:  # plain JSON and plain files, not a database
        assert json.loads(zf.read("manifest.json"))["runs"][0]["metrics"] is not None
        assert f"runs/{ids['child0']}/outputs/deep/folder/blob.bin" in zf.namelist()

    other = tmp_path / "other"
    (other / "mlruns").mkdir(parents=True)
    shutil.copy(_fresh_store_file, other / "mlruns" / "mlflow.db")
    target = Tracker(LabConfig.resolve(other))
    first = import_bundle(target, bundle.path)
    assert len(first.imported) == 4 and first.skipped == []

    src_uri, dst_uri = lab.config.tracking_uri, target.uri
    src = {r.info.run_id: r for r in search_runs(src_uri)}
    dst = {r.data.tags[ORIGIN_TAG]: r for r in search_runs(dst_uri)}
    assert set(dst) == set(src)
    for origin, a in src.items():
        b = dst[origin]
        assert b.info.run_id != a.info.run_id
        assert b.info.run_name == a.info.run_name and b.info.status == a.info.status
        assert (b.info.start_time, b.info.end_time) == (a.info.start_time, a.info.end_time)
        assert b.data.params == a.data.params
        assert b.data.metrics.keys() == a.data.metrics.keys()
        for key in a.data.metrics:
            assert _history(dst_uri, b.info.run_id, key) == _history(src_uri, origin, key)
        extra = {ORIGIN_TAG, "labkit.origin.complete", "mlflow.parentRunId"}
        assert {k: v for k, v in b.data.tags.items() if k not in extra} == \
               {k: v for k, v in a.data.tags.items() if k not in extra}
        parent = a.data.tags.get("mlflow.parentRunId")
        if parent:  # the link points at the imported parent, not at the old id
            assert b.data.tags["mlflow.parentRunId"] == dst[parent].info.run_id
        assert _files(b) == _files(a)
    assert dst[ids["parent"]].data.tags["mlflow.note.content"] == "The parent's note."
    assert len(_history(dst_uri, dst[ids["parent"]].info.run_id, "loss")) == 4
    assert "Traceback" in _files(dst[next(o for o, r in src.items() if r.info.run_name == "broken")])["error.txt"]\
        .decode()
    assert target.get_note(experiment="labkit") == "An experiment note."

    again = import_bundle(target, bundle.path)
    assert again.imported == [] and len(again.skipped) == 4
    assert len(search_runs(dst_uri)) == 4
    home = import_bundle(lab.tracker, bundle.path)  # back into the store it came from: nothing new either
    assert home.imported == [] and len(search_runs(src_uri)) == 4
    with pytest.raises(InvalidParameter, match="neither an experiment nor a run"):
        export_bundle(lab.tracker, ["no-such-thing"], tmp_path / "x.zip")


def test_cli_exports_a_run_with_its_children_and_imports_it_once(migrated_store, cli_env, tmp_path, lab, search_runs,
                                                                  _fresh_store_file):
    ids = _make_runs(lab)
    out = labkit("export", ids["parent"], "--out", str(tmp_path / "parent.zip"), env=cli_env)
    assert "exported 3 run(s)" in out.stdout  # the parent and its two children, not the unrelated run
    other = tmp_path / "other"
    (other / "mlruns").mkdir(parents=True)
    shutil.copy(_fresh_store_file, other / "mlruns" / "mlflow.db")
    env = {**cli_env, "LABKIT_ROOT": str(other)}
    assert "imported 3 run(s)" in labkit("import", str(tmp_path / "parent.zip"), env=env).stdout
    assert "imported 0 run(s)" in labkit("import", str(tmp_path / "parent.zip"), env=env).stdout
    assert len(search_runs(f"sqlite:///{other}/mlruns/mlflow.db")) == 3


def test_export_to_a_path_it_cannot_write_names_the_path_and_the_fix(migrated_store, lab, tmp_path, cli_env):
    import os

    from labkit.errors import InvalidParameter
    from labkit.tracking.bundle import export_bundle

    with lab.run("one") as run:
        run.log_text("hello\n", "notes/hello.txt")
    (tmp_path / "a-file").write_text("in the way")
    (tmp_path / "folder.zip").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for out, named in ((tmp_path / "folder.zip", "is an existing folder"),
                       (tmp_path / "a-file" / "study.zip", "is a file, not a folder"),
                       (tmp_path / "a-file" / "deeper" / "study.zip", "is a file, not a folder"),
                       (tmp_path / "study.tar", "must be a .zip file")):
        with pytest.raises(InvalidParameter) as caught:
            export_bundle(lab.tracker, ["labkit"], out)
        assert str(out) in str(caught.value) and named in str(caught.value) and caught.value.fix
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no half-written .part left anywhere

    done = labkit("export", "labkit", "--out", str(tmp_path / "a-file" / "study.zip"), env=cli_env, check=False)
    # the CLI refuses it while reading its options, before the store opens
    assert done.returncode == 2 and "Traceback" not in done.stderr and "a-file' is a file" in done.stderr

    # A missing parent folder is made, as for every file labkit writes.
    made = export_bundle(lab.tracker, "labkit", tmp_path / "new" / "folder" / "study.zip")
    assert made.path.is_file() and made.runs == 1
    assert sorted(p.name for p in made.path.parent.iterdir()) == ["study.zip"]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    else:  # root writes anywhere a mode forbids; sysfs takes no new file even from root
        locked = Path("/sys")
    with pytest.raises(InvalidParameter) as caught:
        export_bundle(lab.tracker, ["labkit"], locked / "study.zip")
    assert str(locked / "study.zip") in str(caught.value) and caught.value.fix


def test_mlflow_images_previews_and_params_of_a_render_and_a_training_run_survive_a_bundle(
        migrated_store, lab, tmp_path, search_runs, _fresh_store_file, one_thread):
    import re

    from labkit.config import LabConfig
    from labkit.lab import Lab
    from labkit.plan import Plan
    from labkit.replay import stored_plan
    from labkit.tracking.bundle import ORIGIN_TAG, export_bundle, import_bundle
    from labkit.tracking.store import Tracker
    from labkit.training import train
    from tests.integration.test_training_engine import TinyTask, _config

    plan = Plan(prompt="a red circle on the left", model="toyworld", steps=4, count=2, seed=5,
                rationale="a toy model draws two quick circles to compare")  # what a controller writes
    render = lab.render(plan)
    trained = train(TinyTask(), _config(tmp_path / "train", steps=4, validate_every=2, checkpoint_every=0), lab=lab)

    src = {r.info.run_id: r for r in search_runs(lab.config.tracking_uri)}
    made = src[render.run_id]
    image_name = r"images/{}\+step\+{}\+timestamp\+\d+\+[0-9a-f-]{{36}}(\+compressed)?\.png"
    render_images = sorted(k for k in _files(made) if k.startswith("images/"))
    assert len(render_images) == 4 and all(re.fullmatch(image_name.format("output-0[01]", 0), k) for k in render_images)
    assert "preview.png" in _files(made) and made.data.tags["mlflow.loggedImages"] == "True"
    assert "plan.rationale" not in made.data.params and made.data.tags["labkit.rationale"] == plan.rationale
    assert made.data.params["plan.prompt"] == plan.prompt and made.data.params["plan.count"] == "2"
    training_images = sorted(k for k in _files(src[trained.run_id]) if k.startswith("images/"))
    assert [re.fullmatch(image_name.format("validation", r"(\d+)"), k).group(1) for k in training_images] == \
           ["2", "2", "4", "4"]

    bundle = export_bundle(lab.tracker, ["labkit"], tmp_path / "images.zip")
    other = tmp_path / "other"
    (other / "mlruns").mkdir(parents=True)
    shutil.copy(_fresh_store_file, other / "mlruns" / "mlflow.db")
    uri = f"sqlite:///{other}/mlruns/mlflow.db"  # named: training may have set MLFLOW_TRACKING_URI to the first store
    assert len(import_bundle(Tracker(LabConfig.resolve(other, tracking_uri=uri)), bundle.path).imported) == 2
    dst = {r.data.tags[ORIGIN_TAG]: r for r in search_runs(uri)}
    for origin, a in src.items():
        b = dst[origin]
        assert _files(b) == _files(a) and b.data.params == a.data.params
        assert b.data.tags["mlflow.note.content"] == a.data.tags.get("mlflow.note.content")
    # labkit's readers on the imported store: the plan (rationale included), the outputs, no note from anyone
    there = Lab(other, hardware=lab.hardware, tracking_uri=uri)
    imported = dst[render.run_id].info.run_id
    assert stored_plan(there, imported) == render.plan
    summary = next(s for s in there.runs(5) if s.run_id == imported)
    assert [p.name for p in summary.files] == [p.name for p in render.files] and summary.note == ""
    assert there.notes(imported) == "" and dst[render.run_id].data.tags["mlflow.note.content"].startswith("txt2img · ")
