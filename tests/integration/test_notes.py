"""Research notes: `lab.note()` writes MLflow's own note tag on a run or the experiment, where the
MLflow UI and the Runs panel read it."""

from __future__ import annotations

import pytest

from labkit.errors import InvalidParameter


@pytest.fixture(autouse=True)
def _store(migrated_store):
    return migrated_store


def _experiment_note(lab) -> str:
    from mlflow import MlflowClient

    exp = MlflowClient(lab.config.tracking_uri).get_experiment_by_name(lab.config.experiment)
    return exp.tags.get("mlflow.note.content", "")


def test_a_note_before_any_run_goes_to_the_experiment(lab):
    out = lab.note("## Plan\nTry three seeds.")
    assert out["target"] == "experiment"
    assert _experiment_note(lab) == "## Plan\nTry three seeds." == lab.notes()


def test_a_note_goes_to_the_open_run_then_to_the_last_run(lab, search_runs):
    with lab.run("first") as run:
        assert lab.note("inside")["id"] == run.run_id
    assert lab.note("after")["id"] == run.run_id
    [stored] = search_runs(lab.config.tracking_uri)
    assert stored.data.tags["mlflow.note.content"] == "inside\n\nafter"   # notes add up, oldest first
    assert lab.note("fresh start", replace=True)["note"] == "fresh start"
    assert lab.note("for the study", experiment=True)["target"] == "experiment"
    assert _experiment_note(lab) == "for the study" and lab.notes(run.run_id) == "fresh start"


def test_a_note_to_a_named_run(lab):
    with lab.run("a") as a:
        pass
    with lab.run("b"):
        pass
    lab.note("about a", a.run_id)
    assert lab.notes(a.run_id) == "about a"
    assert lab.runs(2)[1].note == "about a"   # the Runs panel's view of it


def test_bad_notes_are_refused_with_a_fix(lab):
    with pytest.raises(InvalidParameter, match="The note is empty"):
        lab.note("   ")
    with lab.run("x") as run:
        pass
    with pytest.raises(InvalidParameter, match="at most 8000") as err:
        lab.note("x" * 9000, run.run_id)
    assert "artifact" in err.value.fix
    assert lab.notes(run.run_id) == ""   # nothing truncated silently
