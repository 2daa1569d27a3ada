"""The Train panel as a user drives it: a toy LoRA started in the background and watched (loss plot, validation
grid, run id), stopped mid-run and resumed to the weights of a run that never stopped, a DreamBooth run on the
toy subject, the dataset's licences, and bad input shown in the panel with its fix while nothing trains."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from PIL import Image

from labkit import panels

pytestmark = pytest.mark.usefixtures("migrated_store", "one_thread")

TINY = dict(steps=6, batch_size=2, rank=4, resolution=32, learning_rate=2e-3, checkpoint_every=0, sampling_steps=2)


@pytest.fixture
def hexagons(tmp_path):
    from labkit.toyworld.data import write_dataset

    write_dataset(tmp_path / "hexagons", 8, seed=0, n_objects=(1,), shapes=("hexagon",), licence="CC-BY-NC-4.0")
    return tmp_path / "hexagons"


def _panel(lab, data, tmp_path, name="out", **kw):
    return panels.train_panel(lab, data=str(data), output=str(tmp_path / name), **{**TINY, "background": False, **kw})


def _stop_at(c, step: int) -> None:
    """Press Stop when the progress bar reaches `step` (the observer runs inside the training step's callback,
    so the stop lands exactly there)."""
    c["progress"].observe(lambda ch: c["stop"].click() if ch["new"] == step else None, names="value")


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _weights(folder):
    from safetensors.torch import load_file

    from labkit.pipelines.lora import WEIGHT_NAME

    return load_file(str(folder / "model" / WEIGHT_NAME))


def _run(lab, run_id):
    (run,) = [r for r in lab.runs(20) if r.run_id == run_id]
    return run


def test_start_trains_in_the_background_and_shows_the_loss_the_grid_and_the_run_id(lab, hexagons, tmp_path):
    _, c = _panel(lab, hexagons, tmp_path, background=True, validate_every=3,
                  validation_prompts=["a large red hexagon in the centre"])
    c["start"].click()
    # The click returned with the job on its own thread: the buttons wait, Stop is live.
    assert c["start"].disabled and c["resume"].disabled and not c["stop"].disabled
    assert c["worker"].wait(600)
    assert c["error"].value == "", html.unescape(c["error"].value)
    assert c["status"].value.startswith("finished: 6 steps")
    assert [s for s, _ in c["history"]] == [1, 2, 3, 4, 5, 6]
    assert _png(c["plot"].value).size[0] > 200 and c["plot"].layout.display is None
    out = tmp_path / "out"
    assert c["grid"].value == (out / "validation" / "step-000006.png").read_bytes()
    assert "Validation at step 6" in c["grid_caption"].value
    assert re.fullmatch(r"[0-9a-f]{32}", c["run_id"].value)
    run = _run(lab, c["run_id"].value)
    assert run.status == "FINISHED" and run.params["data.items"] == "8"
    assert (out / "model" / "README.md").is_file()
    assert not c["start"].disabled and c["stop"].disabled


def test_stop_mid_run_then_resume_gives_the_weights_of_a_run_that_never_stopped(lab, hexagons, tmp_path):
    import torch

    _, whole = _panel(lab, hexagons, tmp_path, name="whole")
    whole["start"].click()
    assert whole["status"].value.startswith("finished"), html.unescape(whole["error"].value)

    _, c = _panel(lab, hexagons, tmp_path, name="split")
    _stop_at(c, 3)
    c["start"].click()
    assert c["error"].value == ""
    assert c["status"].value.startswith("interrupted at step 3 of 6") and "checkpoint-000003" in c["status"].value
    first = c["run_id"].value
    run = _run(lab, first)
    assert run.status == "KILLED" and run.tags["labkit.train_status"] == "interrupted"
    assert (tmp_path / "split" / "checkpoints" / "checkpoint-000003").is_dir()
    assert not (tmp_path / "split" / "model").exists()
    assert not c["resume"].disabled and c["stop"].disabled

    c["resume"].click()
    assert c["status"].value.startswith("finished: 6 steps"), html.unescape(c["error"].value)
    assert c["run_id"].value != first and _run(lab, c["run_id"].value).tags["labkit.resumed_at_step"] == "3"
    assert [s for s, _ in c["history"]] == [1, 2, 3, 4, 5, 6]      # the plot goes on from the checkpoint
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_dreambooth_trains_the_toy_subject_and_the_identifier_warning_shows(lab, tmp_path):
    from labkit.toyworld.subject import write_subject_dataset
    from labkit.training.dreambooth import CLASS_DIR

    write_subject_dataset(tmp_path / "ring")
    _, c = _panel(lab, tmp_path / "ring", tmp_path, kind="dreambooth", steps=3, num_class_images=2)
    assert c["dreambooth"].layout.display is None
    with pytest.warns(UserWarning, match="'sks' splits into 2 pieces"):   # the recipe's own warning…
        c["start"].click()
    assert c["status"].value.startswith("finished: 3 steps"), html.unescape(c["error"].value)
    assert "&#x27;sks&#x27; splits into 2 pieces" in c["notes"].value      # …shown in the panel too
    run = _run(lab, c["run_id"].value)
    assert run.tags["labkit.task"] == "dreambooth" and run.status == "FINISHED"
    manifest = json.loads((tmp_path / "out" / CLASS_DIR / "manifest.json").read_text())
    assert len(manifest["images"]) == 2


def test_check_shows_the_licence_breakdown_and_the_modes_verdict(lab, hexagons):
    meta = hexagons / "metadata.jsonl"
    records = [json.loads(line) for line in meta.read_text().splitlines()]
    records[0]["licence"] = "CC0-1.0"
    del records[1]["licence"]
    meta.write_text("".join(json.dumps(r) + "\n" for r in records))
    _, c = panels.train_panel(lab, data=str(hexagons), background=False)
    c["check"].click()
    shown = html.unescape(c["breakdown"].value)
    assert c["error"].value == ""
    assert "8 images" in shown and "cc-by-nc-4.0" in shown and "cc0-1.0" in shown and "(none)" in shown
    assert f"without a licence (1): {records[1]['file_name']}" in shown
    assert "non-commercial" in shown and "Mode research</b>: warn" in shown


def test_the_kind_switches_the_recipes_defaults_and_lab_has_a_train_tab(lab, hexagons):
    _, c = panels.train_panel(lab, steps=50, background=False)
    assert c["dreambooth"].layout.display == "none" and c["rank"].value == 8
    c["kind"].value = "dreambooth"
    assert c["dreambooth"].layout.display is None
    assert (c["steps"].value, c["batch_size"].value, c["learning_rate"].value) == (50, 4, 5e-4)  # steps was set
    tabs, controls = panels.lab(lab, train={"data": str(hexagons), "steps": 7}, background=False)
    assert "Train" in [tabs.get_title(i) for i in range(len(tabs.children))]
    assert controls["train"]["data"].value == str(hexagons) and controls["train"]["steps"].value == 7


def _no_metadata(tmp_path, hexagons):
    (tmp_path / "empty").mkdir()
    return {"data": str(tmp_path / "empty")}


def _missing_image(tmp_path, hexagons):
    (hexagons / "000000.png").unlink()
    return {}


def _strict_unlicensed(tmp_path, hexagons):
    meta = hexagons / "metadata.jsonl"
    records = [json.loads(line) for line in meta.read_text().splitlines()]
    del records[2]["licence"]
    meta.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {}


# (changes to the panel's fields, or a function preparing them; fragments the error names)
BAD = {
    "no folder": ({"data": "  "}, ["No dataset folder given"]),
    "no such folder": ({"data": "/no/such/folder"}, ["There is no dataset folder", "/no/such/folder"]),
    "no metadata": (_no_metadata, ["No metadata.jsonl"]),
    "missing image": (_missing_image, ["000000.png", "does not exist"]),
    "steps 0": ({"steps": 0}, ["steps=0"]),
    "rank 0": ({"rank": 0}, ["rank=0"]),
    "learning rate 0": ({"learning_rate": 0.0}, ["learning_rate=0.0"]),
    "resolution 30": ({"resolution": 30}, ["resolution=30", "multiple of 8"]),
    "batch size -1": ({"batch_size": -1}, ["batch_size=-1"]),
    "blank base": ({"base": " "}, ["base="]),
    "token of two words": ({"kind": "dreambooth", "token": "two words"}, ["token='two words'"]),
    "captions without the token": ({"kind": "dreambooth", "token": "zzq"}, ["do not name the subject 'zzq'"]),
    "class images 0": ({"kind": "dreambooth", "num_class_images": 0}, ["num_class_images=0"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_shows_in_the_panel_with_its_fix_and_nothing_trains(lab, hexagons, tmp_path, case):
    changes, fragments = BAD[case]
    _, c = _panel(lab, hexagons, tmp_path)
    if callable(changes):
        changes = changes(tmp_path, hexagons)
    if changes.get("kind") == "dreambooth":
        from labkit.toyworld.subject import write_subject_dataset

        write_subject_dataset(tmp_path / "ring")
        c["data"].value = str(tmp_path / "ring")
    for name, value in changes.items():
        c[name].value = value
    c["start"].click()
    _assert_refused(lab, c, tmp_path, fragments)


def _assert_refused(lab, c, tmp_path, fragments):
    error = html.unescape(c["error"].value)
    assert "labkit-error" in error and "Fix:" in error and "Unexpected error" not in error, error
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    assert "failed" in c["status"].value
    assert not c["start"].disabled and not c["resume"].disabled and c["stop"].disabled
    assert not c["worker"].running
    assert lab.runs(5) == []                                   # no run opened
    assert not (tmp_path / "out" / "checkpoints").exists()     # nothing written


def test_resume_without_a_checkpoint_and_a_start_over_an_earlier_run_are_refused(lab, hexagons, tmp_path):
    _, c = _panel(lab, hexagons, tmp_path)
    c["resume"].click()
    _assert_refused(lab, c, tmp_path, ["Nothing to resume", str(tmp_path / "out" / "checkpoints"), "press Start"])

    _stop_at(c, 2)
    c["start"].click()
    assert c["status"].value.startswith("interrupted at step 2"), html.unescape(c["error"].value)
    c["start"].click()   # a fresh start would mix its checkpoints with the stopped run's
    error = html.unescape(c["error"].value)
    assert "already holds checkpoints" in error and "checkpoint-000002" in error and "press Resume" in error
    assert len(lab.runs(5)) == 1
    c["resume"].click()
    assert c["status"].value.startswith("finished: 6 steps"), html.unescape(c["error"].value)
    c["start"].click()   # over a finished run there is nothing to resume: another folder is the way
    error = html.unescape(c["error"].value)
    assert "earlier finished run" in error and "give another output folder" in error and "Resume" not in error
    assert len(lab.runs(5)) == 2


def test_strict_mode_refuses_a_dataset_with_an_unlicensed_image(project, hexagons, tmp_path):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    _strict_unlicensed(tmp_path, hexagons)
    strict = Lab(project, compliance_mode="strict", hardware=HardwareProfile.simulated(None))
    _, c = _panel(strict, hexagons, tmp_path)
    c["check"].click()
    assert "Mode strict</b>: block" in c["breakdown"].value
    c["start"].click()
    _assert_refused(strict, c, tmp_path, ["without a licence"])
