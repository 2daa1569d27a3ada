"""Panels given bad values, as a user would type them: the error and its fix show in the panel, the
buttons come back, the status says it failed, nothing reaches the kernel and no model loads."""

from __future__ import annotations

import datetime
import html

import pytest

from labkit import panels
from labkit.errors import InvalidParameter, LabkitError

REQUEST = "a small red circle on the left"


@pytest.fixture(autouse=True)
def _store(migrated_store):
    return migrated_store


def _generate(lab):
    _, c = panels.generate_panel(lab, prompt=REQUEST, model="toyworld", background=False)
    assert c["error"].value == ""
    return c


def _assert_shown(lab, c, *fragments: str, buttons=("render",)) -> None:
    """The panel shows the error with its fix, the buttons are usable again and nothing ran."""
    error = html.unescape(c["error"].value)
    assert "labkit-error" in error and "Fix:" in error, error
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    assert "Unexpected error" not in error
    assert all(not c[b].disabled for b in buttons)
    assert not c["worker"].running
    assert len(lab.pipelines) == 0      # validation failed before any model loaded
    assert lab.runs(5) == []            # and before any run opened


# (control values, fragments the error names: the bad value and what is wrong)
GENERATE_CASES = {
    "empty prompt": ({"prompt": "   "}, ["The prompt is empty"]),
    "width 0": ({"width": 0}, ["width 0", "8–4096"]),
    "height negative": ({"height": -64}, ["height -64"]),
    "width not a multiple": ({"width": 60}, ["width 60 is not a multiple of 8", "56 or 64"]),
    "steps huge": ({"steps": 10**9}, ["steps 1000000000", "1–500"]),
    "steps 0": ({"steps": 0}, ["steps 0"]),
    "seed negative": ({"seed": -1}, ["seed -1"]),
    "seed too big": ({"seed": 2**40}, [f"seed {2**40}"]),
    "count 0": ({"count": 0}, ["count 0", "1–16"]),
    "count 1000": ({"count": 1000}, ["count 1000"]),
    "guidance negative": ({"guidance": -3.0}, ["guidance -3.0", "0–50"]),
    "guidance nan": ({"guidance": float("nan")}, ["guidance must be a finite number", "nan"]),
    "lone surrogate prompt": ({"prompt": "a red \ud800 circle"}, ["prompt is not valid Unicode", "\\ud800"]),
    "negative prompt too long": ({"negative_prompt": "x" * 5000}, ["negative_prompt has 5000 characters", "4000"]),
    "prompt too long": ({"prompt": "x" * 4001}, ["prompt has 4001 characters"]),
}


@pytest.mark.parametrize("values,fragments", GENERATE_CASES.values(), ids=GENERATE_CASES.keys())
def test_generate_panel_shows_a_bad_field_with_its_fix(lab, values, fragments):
    c = _generate(lab)
    for name, value in values.items():
        c[name].value = value
    c["render"].click()
    _assert_shown(lab, c, *fragments, buttons=("render", "plan", "reroll"))
    assert "failed" in c["status"].value and "loading" not in c["status"].value
    assert c["images"].children == () and c["run_id"].value == ""


def test_generate_panel_with_a_model_that_does_not_exist(lab):
    _, c = panels.generate_panel(lab, prompt=REQUEST, model="no-such-model", background=False)
    assert "no-such-model" in c["error"].value      # said at once, when the fields are filled
    c["render"].click()
    _assert_shown(lab, c, "no-such-model", buttons=("render", "plan"))


@pytest.mark.parametrize("controller,fragment", [("bogus", "Unknown controller 'bogus'"),
                                                 ("rules\ud800", "controller is not valid Unicode")])
def test_generate_panel_plan_with_a_bad_controller(lab, controller, fragment):
    c = _generate(lab)
    c["request"].value = REQUEST
    c["controller"].value = controller
    c["plan"].click()
    _assert_shown(lab, c, fragment, buttons=("render", "plan"))


def test_generate_panel_plan_with_a_request_that_is_not_unicode(lab):
    c = _generate(lab)
    c["request"].value = "a red circle \udcff"
    c["plan"].click()
    _assert_shown(lab, c, "request is not valid Unicode", "\\udcff", buttons=("render", "plan"))


def test_after_an_error_a_good_plan_clears_it(lab):
    c = _generate(lab)
    c["steps"].value = 0
    c["render"].click()
    assert "steps 0" in c["error"].value
    c["request"].value = REQUEST
    c["plan"].click()
    assert c["error"].value == "" and c["steps"].value > 0


VIDEO_CASES = {
    "frames 0": ({"frames": 0}, ["frames 0", "1–257"]),
    "fps 1000": ({"fps": 1000}, ["fps 1000", "1–60"]),
    "steps negative": ({"steps": -5}, ["steps -5"]),
    "width 7": ({"width": 7}, ["width 7"]),
    "seed too big": ({"seed": 2**33}, [f"seed {2**33}"]),
    "empty request": ({"request": ""}, ["The request is empty"]),
    "surrogate request": ({"request": "a circle \ud834"}, ["prompt is not valid Unicode"]),
}


@pytest.mark.parametrize("values,fragments", VIDEO_CASES.values(), ids=VIDEO_CASES.keys())
def test_video_panel_shows_a_bad_field_with_its_fix(lab, values, fragments):
    _, c = panels.video_panel(lab, request="a red circle moving right", background=False)
    for name, value in values.items():
        c[name].value = value
    c["render"].click()
    _assert_shown(lab, c, *fragments)
    assert "failed" in c["status"].value


def test_video_panel_from_an_upload_that_is_not_an_image(lab):
    _, c = panels.video_panel(lab, source="upload", background=False)
    c["upload"].value = ({"name": "notes.png", "type": "image/png", "size": 9, "content": memoryview(b"not a png"),
                          "last_modified": datetime.datetime.now(datetime.UTC)},)
    c["render"].click()
    _assert_shown(lab, c, "cannot be read")


def test_runs_panel_note_that_is_not_unicode(lab):
    _, c = panels.runs_panel(lab)
    c["note_text"].value = "seed 3 \udc80 looks off"
    c["add_note"].click()
    _assert_shown(lab, c, "note is not valid Unicode", buttons=("add_note", "compare", "refresh"))
    assert lab.notes(experiment=True) == ""


BUILDER_CASES = [
    (panels.generate_panel, {"size": "64x64"}, "size must be (width, height), got str '64x64'"),
    (panels.generate_panel, {"steps": "20"}, "steps must be a whole number, got str '20'"),
    (panels.generate_panel, {"seed": 1.5}, "seed must be a whole number, got float 1.5"),
    (panels.generate_panel, {"guidance": "abc"}, "guidance must be a number, got str 'abc'"),
    (panels.generate_panel, {"model": 123}, "model must be text, got int 123"),
    (panels.generate_panel, {"count": True}, "count must be a whole number, got bool True"),
    (panels.video_panel, {"frames": "14"}, "frames must be a whole number, got str '14'"),
    (panels.video_panel, {"size": (64,)}, "size must be (width, height), got tuple (64,)"),
    (panels.video_panel, {"source": "camera"}, "Unknown video source 'camera'"),
    (panels.train_panel, {"steps": "20"}, "steps must be a whole number, got str '20'"),
    (panels.train_panel, {"learning_rate": "1e-3"}, "learning_rate must be a number, got str '1e-3'"),
    (panels.train_panel, {"kind": "textual-inversion"}, "Unknown training kind 'textual-inversion'"),
    (panels.train_panel, {"validation_prompts": "a red hexagon"}, "validation_prompts must be a list of strings"),
    (panels.train_panel, {"data": 5}, "data must be text, got int 5"),
    (panels.runs_panel, {"n": 0}, "n 0 is outside"),
    (panels.compliance_panel, {"dataset": 5}, "dataset must be text, got int 5"),
]


@pytest.mark.parametrize("builder,kwargs,fragment", BUILDER_CASES,
                         ids=[f"{b.__name__}-{next(iter(k))}" for b, k, _ in BUILDER_CASES])
def test_panel_builders_check_their_arguments(lab, builder, kwargs, fragment):
    with pytest.raises(LabkitError) as info:
        builder(lab, **kwargs)
    assert isinstance(info.value, InvalidParameter)
    assert fragment in str(info.value)
    assert info.value.fix


# A starting value Render would refuse stays in its field (never the model's default in its place, which would
# render with another value than the one asked for) and the error box says why at once; Render then refuses it.
START_CASES = {
    "generate steps 0": (panels.generate_panel, {"steps": 0}, "steps", 0, ["steps 0 is outside 1–500"]),
    "generate count 0": (panels.generate_panel, {"count": 0}, "count", 0, ["count 0 is outside 1–16"]),
    "generate guidance 99": (panels.generate_panel, {"guidance": 99}, "guidance", 99, ["guidance 99"]),
    "generate seed -1": (panels.generate_panel, {"seed": -1}, "seed", -1, ["seed -1"]),
    "generate size 60": (panels.generate_panel, {"size": (60, 64)}, "width", 60, ["width 60 is not a multiple"]),
    "video steps 0": (panels.video_panel, {"steps": 0}, "steps", 0, ["steps 0 is outside"]),
    "video frames 0": (panels.video_panel, {"frames": 0}, "frames", 0, ["frames 0 is outside"]),
    "video fps 0": (panels.video_panel, {"fps": 0}, "fps", 0, ["fps 0 is outside 1–60"]),
}


@pytest.mark.parametrize("builder,kwargs,field,shown,fragments", START_CASES.values(), ids=START_CASES.keys())
def test_a_bad_starting_value_stays_in_its_field_and_is_said_at_once(lab, builder, kwargs, field, shown, fragments):
    text = {"prompt": REQUEST} if builder is panels.generate_panel else {"request": "a red circle moving right"}
    _, c = builder(lab, **text, **kwargs, background=False)
    assert c[field].value == shown
    error = html.unescape(c["error"].value)
    assert "Fix:" in error and all(f in error for f in fragments), error
    c["render"].click()
    _assert_shown(lab, c, *fragments)
    assert c[field].value == shown


@pytest.mark.parametrize("builder", [panels.generate_panel, panels.video_panel])
def test_good_starting_values_are_shown_without_an_error(lab, builder):
    _, c = builder(lab, steps=3, seed=7, background=False)
    assert (c["steps"].value, c["seed"].value, c["error"].value) == (3, 7, "")
