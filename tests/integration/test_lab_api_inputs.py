"""Mistakes a notebook user makes with the `Lab` API that escaped as MLflow's or Python's own errors: each is an
`InvalidParameter` naming the value and the fix now, and no run is left open."""

from __future__ import annotations

import pytest

from labkit.errors import InvalidParameter

MISSING = "deadbeef" * 4


def test_a_note_on_a_run_that_does_not_exist_names_the_store_and_where_ids_are(lab):
    for call in (lambda: lab.note("x", MISSING), lambda: lab.notes(MISSING)):
        with pytest.raises(InvalidParameter, match=f"has no run '{MISSING}'") as e:
            call()
        assert "lab.runs()" in e.value.fix


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"params": [1, 2]}, "params must be a mapping"), ({"tags": ["a"]}, "tags must be a mapping"),
    ({"name": 5}, "name must be text"), ({"experiment": 5}, "experiment must be text"),
])
def test_a_run_with_arguments_of_the_wrong_type_is_refused_before_it_opens(lab, search_runs, kwargs, named):
    with pytest.raises(InvalidParameter, match=named):
        with lab.run(**{"name": "x", **kwargs}):
            pass
    assert search_runs(lab.config.tracking_uri) == []  # nothing opened, nothing left RUNNING


def test_a_lab_with_something_else_for_hardware_is_refused(project):
    from labkit.lab import Lab

    with pytest.raises(InvalidParameter, match="hardware must be a HardwareProfile") as e:
        Lab(project, hardware="cpu")
    assert "HardwareProfile.simulated" in e.value.fix


def test_train_refuses_an_argument_its_recipe_does_not_take(lab, tmp_path):
    from labkit.toyworld.data import write_dataset
    from labkit.training.lora import LoraTrainConfig

    data = write_dataset(tmp_path / "hexagons", 2, n_objects=(1,), shapes=("hexagon",)).parent
    config = LoraTrainConfig(data=data, output_dir=tmp_path / "out", base="toyworld", steps=1)
    with pytest.raises(InvalidParameter, match="train_lora takes no bogus") as e:
        lab.train(config, bogus=1)
    assert "callbacks" in e.value.fix


def test_bundles_take_the_lab_a_notebook_holds_as_well_as_its_tracker(lab, tmp_path):
    """`import_bundle(lab, …)` raised AttributeError: 'Lab' object has no attribute 'client'."""
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.tracking.bundle import export_bundle, import_bundle

    with lab.run("kept", params={"x": 1}) as run:
        run.log_metrics({"score": 0.5})
    export_bundle(lab, [run.run_id], tmp_path / "b.zip")
    (tmp_path / "other" / "mlruns").mkdir(parents=True)
    other = Lab(tmp_path / "other", hardware=HardwareProfile.simulated(None))
    assert len(import_bundle(other, tmp_path / "b.zip").imported) == 1
    with pytest.raises(InvalidParameter, match="need a Lab or its tracker"):
        import_bundle("lab", tmp_path / "b.zip")


def test_the_default_model_of_an_unknown_modality_is_refused(lab):
    assert lab.default_model("video") == lab.config.default_video_model
    with pytest.raises(InvalidParameter, match="Unknown modality 'audio'"):
        lab.default_model("audio")  # it answered with the image model
