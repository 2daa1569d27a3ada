"""`Plan.from_dict` / `from_json` / `validate` on arbitrary input: a valid plan or a `LabkitError`
naming the field, the value and the fix — never a TypeError, KeyError or AttributeError."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.controller.plan import MAX_PROMPT_CHARS, AdapterRef, ControllerInfo, Plan
from labkit.errors import InvalidParameter, LabkitError

VALID = {
    "prompt": "a red circle on the left", "modality": "image", "negative_prompt": "blurry", "model": "toyworld",
    "adapters": [{"id": "run:0123abcd", "weight": 0.8}], "width": 64, "height": 64, "steps": 20,
    "guidance": 7.5, "seed": 3, "count": 2, "frames": None, "fps": None, "image": None, "strength": None,
    "controller": {"name": "rules", "model": None, "revision": "1", "licence": None, "fallback_reason": None},
    "rationale": "a toy-world caption",
}

# Text as a hostile user or a broken LLM writes it: lone surrogates, NUL, astral characters.
TEXT = st.text(st.characters(codec=None, categories=None), max_size=20) | st.sampled_from(
    ["", " ", "\ud800", "a\udcffb", "\x00", "image", "video", "toyworld", "\U0001f600"])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT | st.sampled_from(list(VALID)), inner, max_size=4), max_leaves=12)


def _outcome(make):
    """A validated Plan, or the LabkitError it raised (any other exception fails the test)."""
    try:
        plan = make()
        assert isinstance(plan, Plan)
        return plan.validate()
    except LabkitError as e:
        assert e.fix, f"no fix in {e!r}"
        assert str(e).strip()
        return e


def _check_valid_plan(plan: Plan) -> None:
    """A plan that validated can be written and read back as it is (what render and replay do)."""
    text = plan.to_json()
    text.encode("utf-8")  # strict: no lone surrogate reaches JSON, PNG text or MLflow
    assert Plan.from_json(text) == plan


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json_gives_a_plan_or_a_labkit_error(data):
    out = _outcome(lambda: Plan.from_dict(data))
    if isinstance(out, Plan):
        _check_valid_plan(out)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(VALID)), JSON)
def test_a_valid_plan_with_one_field_replaced_gives_a_plan_or_a_labkit_error(field, value):
    data = {**VALID, field: value}
    out = _outcome(lambda: Plan.from_dict(data))
    if isinstance(out, Plan):
        _check_valid_plan(out)
    else:
        assert field in str(out) or field in ("adapters", "controller", "modality", "prompt"), (field, str(out))


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["id", "weight", "extra"]), JSON)
def test_an_adapter_with_one_field_replaced(key, value):
    data = {**VALID, "adapters": [{"id": "run:0123abcd", "weight": 1.0, key: value}]}
    out = _outcome(lambda: Plan.from_dict(data))
    if isinstance(out, Plan):
        _check_valid_plan(out)
    else:
        assert "adapters[0]" in str(out)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_as_plan_json(text):
    out = _outcome(lambda: Plan.from_json(text))
    if isinstance(out, Plan):
        _check_valid_plan(out)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["prompt", "negative_prompt", "model", "image", "steps", "guidance", "seed", "width",
                        "count", "strength", "frames", "fps", "modality", "adapters", "controller", "rationale"]),
       JSON)
def test_plan_built_directly_with_any_value_validates_or_raises_a_labkit_error(field, value):
    # Plan(...) itself does not check (a frozen dataclass); validate() must catch every wrong type.
    base = Plan.from_dict(VALID)
    out = _outcome(lambda: base.replace(**{field: value}))
    if isinstance(out, Plan):
        _check_valid_plan(out)


def test_a_valid_plan_round_trips():
    plan = Plan.from_dict(VALID).validate()
    assert plan.adapters == (AdapterRef("run:0123abcd", 0.8),)
    assert plan.controller == ControllerInfo(name="rules", revision="1")
    assert Plan.from_json(plan.to_json()) == plan


def _err(data) -> InvalidParameter:
    with pytest.raises(LabkitError) as info:
        Plan.from_dict(data).validate()
    assert isinstance(info.value, InvalidParameter), type(info.value)
    assert info.value.fix
    return info.value


# (the bad plan, fragments its message names)
CASES = {
    "empty dict": ({}, ["no 'prompt' field"]),
    "a list": ([1, 2], ["must be a mapping", "list [1, 2]"]),
    "a string": ("a red circle", ["must be a mapping", "'a red circle'"]),
    "None": (None, ["must be a mapping", "NoneType"]),
    "unknown key": ({"prompt": "a", "colour": "red"}, ["Unknown plan field", "'colour'"]),
    "non-string key": ({"prompt": "a", 7: 1}, ["Unknown plan field", "7"]),
    "prompt int": ({"prompt": 123}, ["prompt must be text, got int 123"]),
    "prompt list": ({"prompt": ["a"]}, ["prompt must be text, got list ['a']"]),
    "prompt surrogate": ({"prompt": "red \ud800"}, ["prompt is not valid Unicode", "\\ud800", "character 4"]),
    "prompt NUL": ({"prompt": "red\x00circle"}, ["prompt contains a NUL"]),
    "prompt too long": ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, [f"{MAX_PROMPT_CHARS + 1} characters"]),
    "negative too long": ({"prompt": "a", "negative_prompt": "n" * 4001}, ["negative_prompt has 4001 characters"]),
    "negative surrogate": ({"prompt": "a", "negative_prompt": "\udfff"}, ["negative_prompt is not valid Unicode"]),
    "negative None": ({"prompt": "a", "negative_prompt": None}, ["negative_prompt must be text, got NoneType"]),
    "model int": ({"prompt": "a", "model": 123}, ["model must be text, got int 123"]),
    "model blank": ({"prompt": "a", "model": "  "}, ["model is blank"]),
    "image dict": ({"prompt": "a", "image": {"path": "x"}}, ["image must be text, got dict"]),
    "modality": ({"prompt": "a", "modality": "audio"}, ["Unknown modality 'audio'"]),
    "steps True": ({"prompt": "a", "steps": True}, ["steps must be a whole number, got bool True"]),
    "steps float": ({"prompt": "a", "steps": 20.0}, ["steps must be a whole number, got float 20.0"]),
    "steps str": ({"prompt": "a", "steps": "20"}, ["steps must be a whole number, got str '20'"]),
    "steps 0": ({"prompt": "a", "steps": 0}, ["steps 0 is outside 1–500"]),
    "seed huge": ({"prompt": "a", "seed": 2**64}, [f"seed {2**64}"]),
    "count 0": ({"prompt": "a", "count": 0}, ["count 0"]),
    "count None": ({"prompt": "a", "count": None}, ["count must be a whole number, got NoneType None"]),
    "width str": ({"prompt": "a", "width": "64"}, ["width must be a whole number, got str '64'"]),
    "guidance str": ({"prompt": "a", "guidance": "abc"}, ["guidance must be a number, got str 'abc'"]),
    "guidance nan": ({"prompt": "a", "guidance": math.nan}, ["guidance must be a finite number", "nan"]),
    "guidance inf": ({"prompt": "a", "guidance": math.inf}, ["guidance must be a finite number", "inf"]),
    "guidance bool": ({"prompt": "a", "guidance": False}, ["guidance must be a number, got bool False"]),
    "strength 2": ({"prompt": "a", "strength": 2.0, "image": "x.png"}, ["strength 2.0"]),
    "adapters str": ({"prompt": "a", "adapters": "lora.safetensors"}, ["adapters must be a list", "str"]),
    "adapters dict": ({"prompt": "a", "adapters": {"id": "x"}}, ["adapters must be a list", "dict"]),
    "adapter str": ({"prompt": "a", "adapters": ["x"]}, ["adapters[0] must be an object, got str 'x'"]),
    "adapter no id": ({"prompt": "a", "adapters": [{"weight": 1}]}, ["adapters[0] has no 'id'"]),
    "adapter extra": ({"prompt": "a", "adapters": [{"id": "x", "scale": 1}]}, ["unknown key(s) 'scale'"]),
    "adapter weight": ({"prompt": "a", "adapters": [{"id": "x", "weight": "hi"}]},
                       ["adapters[0].weight must be a number, got str 'hi'"]),
    "adapter weight 9": ({"prompt": "a", "adapters": [{"id": "x", "weight": 9}]}, ["weight 9"]),
    "adapter id int": ({"prompt": "a", "adapters": [{"id": 5}]}, ["adapters[0].id must be text, got int 5"]),
    "controller str": ({"prompt": "a", "controller": "rules"}, ["controller must be a ControllerInfo, got str"]),
    "controller extra": ({"prompt": "a", "controller": {"name": "x", "temp": 1}}, ["controller field", "'temp'"]),
    "controller name": ({"prompt": "a", "controller": {"name": None}}, ["controller.name must be text"]),
    "rationale int": ({"prompt": "a", "rationale": 5}, ["rationale must be text, got int 5"]),
    "frames str": ({"prompt": "a", "modality": "video", "frames": "14"}, ["frames must be a whole number"]),
}


@pytest.mark.parametrize("data,fragments", CASES.values(), ids=CASES.keys())
def test_a_bad_plan_names_the_field_the_value_and_the_fix(data, fragments):
    err = _err(data)
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))


JSON_CASES = {
    "not json": ("{prompt: a}", ["must be a JSON object", "JSONDecodeError"]),
    "truncated": ('{"prompt": "a"', ["must be a JSON object"]),
    "deep nesting": ("[" * 100_000, ["must be a JSON object"]),
    "bytes not utf-8": (b'{"prompt": "\xff"}', ["must be a JSON object"]),
    "a number": ("5", ["must be a mapping", "int 5"]),
    "escaped surrogate": ('{"prompt": "a \\ud800"}', ["prompt is not valid Unicode"]),
    "NaN": ('{"prompt": "a", "guidance": NaN}', ["guidance must be a finite number"]),
    "not text": (None, ["must be text, got NoneType"]),
}


@pytest.mark.parametrize("text,fragments", JSON_CASES.values(), ids=JSON_CASES.keys())
def test_bad_plan_json(text, fragments):
    with pytest.raises(InvalidParameter) as info:
        Plan.from_json(text).validate()
    assert info.value.fix
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_replace_with_an_unknown_field_names_it():
    with pytest.raises(InvalidParameter, match="Unknown plan field.*stepz") as info:
        Plan(prompt="a").replace(stepz=3)
    assert "steps" in info.value.fix


def test_an_image_to_video_plan_may_have_an_empty_prompt():
    plan = Plan.from_dict({"prompt": "", "modality": "video", "image": "frame.png"}).validate()
    assert plan.task == "img2vid"


def test_null_adapters_and_controller_mean_none_and_the_default():
    plan = Plan.from_dict({"prompt": "a", "adapters": None, "controller": None})
    assert plan.adapters == () and plan.controller == ControllerInfo()


def test_messages_never_carry_a_lone_surrogate():
    # The message itself is shown in panels and written to error.txt: it must be encodable.
    err = _err({"prompt": "x\ud800y" * 10})
    str(err).encode("utf-8")
    json.dumps(str(err), ensure_ascii=False).encode("utf-8")


PROMPT_OK = "a red circle on the left"
API_ARGS = {
    "generate": ["prompt", "model", "negative_prompt", "steps", "guidance", "seed", "size", "n", "image", "strength",
                 "adapters"],
    "video": ["prompt", "image", "model", "frames", "fps", "seed", "steps", "guidance", "size", "negative_prompt", "n"],
}
API_CALLS = [(method, arg) for method, args in API_ARGS.items() for arg in args]


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from(API_CALLS), JSON | st.tuples(JSON, JSON))
def test_lab_generate_and_video_with_any_value_for_one_argument(lab, monkeypatch, call, value):
    # Render stops at the plan it would start from (model resolved, fields filled, validated): the
    # argument checks are what is under test, not the pixels.
    monkeypatch.setattr(type(lab), "render", lambda self, plan, **kw: self.complete(plan))
    method, name = call
    model = "toyworld" if method == "generate" else "toyworld-motion"
    args = {"prompt": PROMPT_OK, "model": model, **{name: value}}
    try:
        plan = getattr(lab, method)(**args)
    except LabkitError as e:
        assert e.fix and str(e).encode("utf-8")
        return
    assert isinstance(plan, Plan)
    _check_valid_plan(plan)
