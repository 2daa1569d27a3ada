"""A plan's ControlNet controls as data: JSON round trips, every bad value named with its fix."""

from __future__ import annotations

import jsonschema
import pytest

from labkit.errors import InvalidParameter
from labkit.plan import MAX_CONTROLS, ControlRef, Plan, plan_schema

PROMPT = "a small red circle on the left"


def test_controls_round_trip_through_json():
    plan = Plan(prompt=PROMPT, controls=(ControlRef("canny", "photo.png", scale=0.8, params={"low": 50, "high": 150}),
                                         ControlRef("pose", "pose.json", model="lllyasviel/control_v11p_sd15_openpose",
                                                    start=0.1, end=0.9)))
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.controls[0].params == {"low": 50, "high": 150}
    assert plan.to_dict()["controls"][1]["model"] == "lllyasviel/control_v11p_sd15_openpose"
    jsonschema.validate(plan.to_dict(), plan_schema())
    assert Plan.from_dict({"prompt": PROMPT}).controls == ()


@pytest.mark.parametrize("controls, named", [
    ("canny:photo.png", "controls must be a list"),
    (["canny"], "controls[0] must be an object"),
    ([{"kind": "canny"}], "no 'image'"),
    ([{"kind": "canny", "image": "a.png", "weight": 1}], "unknown key(s) 'weight'"),
    ([{"kind": "edges", "image": "a.png"}], "unknown kind 'edges'"),
    ([{"kind": "canny", "image": ""}], "controls[0].image"),
    ([{"kind": "canny", "image": "a.png", "scale": "high"}], "controls[0].scale"),
    ([{"kind": "canny", "image": "a.png", "preprocess": "yes"}], "preprocess must be true or false"),
    ([{"kind": "canny", "image": "a.png", "params": {"low": [1]}}], "params must map names to plain values"),
])
def test_bad_controls_are_named(controls, named):
    with pytest.raises(InvalidParameter) as e:
        Plan.from_dict({"prompt": PROMPT, "controls": controls})
    assert named in e.value.message and e.value.fix


@pytest.mark.parametrize("control, named", [
    (ControlRef("canny", "a.png", scale=2.5), "outside 0–2"),
    (ControlRef("canny", "a.png", scale=-0.1), "outside 0–2"),
    (ControlRef("canny", "a.png", start=0.5, end=0.5), "from 0.5 to 0.5"),
    (ControlRef("canny", "a.png", end=1.5), "to 1.5"),
])
def test_control_ranges_are_checked(control, named):
    with pytest.raises(InvalidParameter, match=named.replace("(", r"\(")):
        Plan(prompt=PROMPT, controls=(control,)).validate()


def test_more_controls_than_a_render_holds():
    plan = Plan(prompt=PROMPT, controls=tuple(ControlRef("canny", f"{i}.png") for i in range(MAX_CONTROLS + 1)))
    with pytest.raises(InvalidParameter, match=f"at most {MAX_CONTROLS}"):
        plan.validate()
    Plan(prompt=PROMPT, controls=plan.controls[:MAX_CONTROLS]).validate()  # the limit itself is fine


def test_a_model_that_takes_no_controls_says_so():
    from labkit.catalog import Catalog

    entry = Catalog.load().get("toyworld-motion")
    with pytest.raises(InvalidParameter) as e:
        Plan(prompt="a blue square moving up", modality="video",
             controls=(ControlRef("canny", "a.png"),)).validate(entry)
    assert "toyworld-motion" in e.value.message and "drop the controls" in e.value.fix
