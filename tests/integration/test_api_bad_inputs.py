"""The Python API given wrong types and values, as a new user would pass them: each call raises a
`LabkitError` whose message names the bad value and whose `fix` says what to do — before any model
loads and before any run opens — and never a TypeError, ValueError or AttributeError from inside."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from labkit.controller.plan import Plan
from labkit.errors import LabkitError

PROMPT = "a red circle on the left"
HERE = Path(__file__)


@pytest.fixture(autouse=True)
def _store(migrated_store):
    return migrated_store


@pytest.fixture(scope="module")
def tiny_sd15(tmp_path_factory) -> Path:
    from labkit.testing import build_tiny_sd15

    return build_tiny_sd15(tmp_path_factory.mktemp("tiny-bad-inputs") / "sd15")


def _a_file(lab) -> str:
    path = lab.config.root / "a-file.txt"
    path.write_text("not a folder")
    return str(path)


# (call on the lab, fragments the message must name). `lab` is the Lab; `f` a file in the project.
CASES = {
    # generate: the tester's cases first
    "generate prompt int": (lambda lab: lab.generate(123), ["prompt must be text, got int 123"]),
    "generate prompt None": (lambda lab: lab.generate(None), ["prompt must be text, got NoneType None"]),
    "generate prompt surrogate": (lambda lab: lab.generate("red \ud800"), ["prompt is not valid Unicode", "\\ud800"]),
    "generate prompt NUL": (lambda lab: lab.generate("red\x00"), ["prompt contains a NUL"]),
    "generate prompt blank": (lambda lab: lab.generate("  "), ["The prompt is empty"]),
    "generate guidance str": (lambda lab: lab.generate(PROMPT, guidance="abc"),
                              ["guidance must be a number, got str 'abc'"]),
    "generate guidance nan": (lambda lab: lab.generate(PROMPT, guidance=math.nan), ["guidance must be a finite"]),
    "generate guidance 99": (lambda lab: lab.generate(PROMPT, guidance=99), ["guidance 99 is outside 0–50"]),
    "generate size str": (lambda lab: lab.generate(PROMPT, size="64x64"),
                          ["size must be (width, height), got str '64x64'"]),
    "generate size one": (lambda lab: lab.generate(PROMPT, size=(64,)), ["size must be (width, height)", "(64,)"]),
    "generate size float": (lambda lab: lab.generate(PROMPT, size=(64.0, 64)), ["width (size[0])", "float 64.0"]),
    "generate size 0": (lambda lab: lab.generate(PROMPT, size=(0, 64)), ["width 0 is outside"]),
    "generate model int": (lambda lab: lab.generate(PROMPT, model=123), ["model must be text, got int 123"]),
    "generate model blank": (lambda lab: lab.generate(PROMPT, model=""), ["model is blank"]),
    "generate model unknown": (lambda lab: lab.generate(PROMPT, model="no-such-model"), ["no-such-model"]),
    "generate adapters str": (lambda lab: lab.generate(PROMPT, adapters="x.safetensors"),
                              ["adapters must be a list, got str 'x.safetensors'"]),
    "generate adapters int item": (lambda lab: lab.generate(PROMPT, adapters=[5]),
                                   ["adapters[0] must be text, got int 5"]),
    "generate adapters dict": (lambda lab: lab.generate(PROMPT, adapters={"x": 1}), ["adapters must be a list"]),
    "generate adapters None ok, steps bad": (lambda lab: lab.generate(PROMPT, adapters=None, steps=0),
                                             ["steps 0 is outside"]),
    "generate steps True": (lambda lab: lab.generate(PROMPT, steps=True),
                            ["steps must be a whole number, got bool True"]),
    "generate steps str": (lambda lab: lab.generate(PROMPT, steps="20"), ["steps must be a whole number, got str"]),
    "generate steps huge": (lambda lab: lab.generate(PROMPT, steps=10**6), ["steps 1000000 is outside"]),
    "generate seed str": (lambda lab: lab.generate(PROMPT, seed="7"), ["seed must be a whole number, got str '7'"]),
    "generate seed negative": (lambda lab: lab.generate(PROMPT, seed=-1), ["seed -1 is outside"]),
    "generate n 0": (lambda lab: lab.generate(PROMPT, n=0), ["n 0 is outside 1–16"]),
    "generate n str": (lambda lab: lab.generate(PROMPT, n="2"), ["n must be a whole number, got str '2'"]),
    "generate image int": (lambda lab: lab.generate(PROMPT, image=5), ["image must be a file path, got int 5"]),
    "generate image missing": (lambda lab: lab.generate(PROMPT, image="nope.png", model="sd15"), ["nope.png"]),
    "generate strength str": (lambda lab: lab.generate(PROMPT, image="x.png", strength="a"),
                              ["strength must be a number, got str 'a'"]),
    "generate negative int": (lambda lab: lab.generate(PROMPT, negative_prompt=5),
                              ["negative_prompt must be text, got int 5"]),
    "generate negative long": (lambda lab: lab.generate(PROMPT, negative_prompt="n" * 4001),
                               ["negative_prompt has 4001 characters", "4000"]),
    "generate unknown kwarg": (lambda lab: lab.generate(PROMPT, stepz=3), ["unknown argument(s) stepz"]),
    "generate out is a file": (lambda lab: lab.generate(PROMPT, out=_a_file(lab)), ["a-file.txt", "is a file"]),
    "generate out int": (lambda lab: lab.generate(PROMPT, out=5), ["out must be a folder path, got int 5"]),
    "generate progress int": (lambda lab: lab.generate(PROMPT, progress=5), ["progress must be a function"]),
    "generate cancel str": (lambda lab: lab.generate(PROMPT, cancel="stop"), ["cancel must be a threading.Event"]),
    "generate allow_pickle str": (lambda lab: lab.generate(PROMPT, allow_pickle="yes"),
                                  ["allow_pickle must be True or False, got str 'yes'"]),
    "generate tags list": (lambda lab: lab.generate(PROMPT, tags=["a"]), ["tags must be a mapping", "['a']"]),
    "generate config int": (lambda lab: lab.generate(PROMPT, config=7), ["config must be text, got int 7"]),
    # video
    "video prompt int": (lambda lab: lab.video(5), ["prompt must be text, got int 5"]),
    "video frames str": (lambda lab: lab.video(PROMPT, frames="14"), ["frames must be a whole number, got str"]),
    "video frames 0": (lambda lab: lab.video(PROMPT, frames=0), ["frames 0 is outside"]),
    "video fps 0": (lambda lab: lab.video(PROMPT, fps=0), ["fps 0 is outside"]),
    "video size str": (lambda lab: lab.video(PROMPT, size="64x64"), ["size must be (width, height)"]),
    "video image list": (lambda lab: lab.video(image=["a.png"]), ["image must be a file path, got list"]),
    "video n 0": (lambda lab: lab.video(PROMPT, n=0), ["n 0 is outside"]),
    "video unknown kwarg": (lambda lab: lab.video(PROMPT, frame=3), ["unknown argument(s) frame"]),
    # render and complete
    "render text": (lambda lab: lab.render("text"), ["render needs a Plan, got str 'text'", "lab.generate"]),
    "render None": (lambda lab: lab.render(None), ["render needs a Plan, got NoneType"]),
    "render dict": (lambda lab: lab.render({"prompt": PROMPT}), ["render needs a Plan, got dict"]),
    "render plan bad steps": (lambda lab: lab.render(Plan(prompt=PROMPT, steps="20")),
                              ["steps must be a whole number, got str '20'"]),
    "render plan bad model": (lambda lab: lab.render(Plan(prompt=PROMPT, model=123)), ["model must be text"]),
    "render plan adapters list": (lambda lab: lab.render(Plan(prompt=PROMPT, adapters=["x"])),
                                  ["adapters must be a tuple of AdapterRef"]),
    "complete validate str": (lambda lab: lab.complete(Plan(prompt=PROMPT), validate="no"),
                              ["validate must be True or False, got str 'no'"]),
    "complete text": (lambda lab: lab.complete("text"), ["render needs a Plan, got str"]),
    # plan and ask
    "plan request int": (lambda lab: lab.plan(123), ["request must be text, got int 123"]),
    "plan request blank": (lambda lab: lab.plan(" "), ["request is blank"]),
    "plan request surrogate": (lambda lab: lab.plan("a \udc00 circle"), ["request is not valid Unicode"]),
    "plan controller int": (lambda lab: lab.plan(PROMPT, controller=5), ["controller must be text, got int 5"]),
    "plan controller unknown": (lambda lab: lab.plan(PROMPT, controller="magic"), ["Unknown controller 'magic'"]),
    "plan use_cache str": (lambda lab: lab.plan(PROMPT, use_cache="no"), ["use_cache must be True or False"]),
    "ask int": (lambda lab: lab.ask(42), ["request must be text, got int 42"]),
    "ask unknown kwarg": (lambda lab: lab.ask(PROMPT, steps=3), ["unknown argument(s) steps"]),
    # notes and runs
    "note int": (lambda lab: lab.note(5), ["note must be text, got int 5"]),
    "note blank": (lambda lab: lab.note("  "), ["The note is empty"]),
    "note too long": (lambda lab: lab.note("x" * 30_000, experiment=True), ["at most 20000"]),
    "note surrogate": (lambda lab: lab.note("seed \ud83d"), ["note is not valid Unicode"]),
    "note run_id int": (lambda lab: lab.note("hi", 5), ["run_id must be text, got int 5"]),
    "note experiment str": (lambda lab: lab.note("hi", experiment="yes"), ["experiment must be True or False"]),
    "notes run_id list": (lambda lab: lab.notes(["a"]), ["run_id must be text, got list"]),
    "runs n 0": (lambda lab: lab.runs(0), ["n 0 is outside"]),
    "runs n str": (lambda lab: lab.runs("5"), ["n must be a whole number, got str '5'"]),
    "runs n True": (lambda lab: lab.runs(True), ["n must be a whole number, got bool True"]),
    "runs job quote": (lambda lab: lab.runs(job="x' or '1"), ["job must be a job name", "x' or '1"]),
    "runs filter int": (lambda lab: lab.runs(filter_string=5), ["filter_string must be text, got int 5"]),
    "runs filter malformed": (lambda lab: lab.runs(filter_string="params.seed === 3"),
                              ["params.seed === 3", "not valid MLflow search syntax"]),
    "runs_frame n negative": (lambda lab: lab.runs_frame(-1), ["n -1 is outside"]),
    "compare str": (lambda lab: lab.compare("abc"), ["a list of run ids, got one string 'abc'"]),
    "compare empty": (lambda lab: lab.compare([]), ["No runs to compare"]),
    "compare int ids": (lambda lab: lab.compare([1, 2]), ["run_ids must hold strings, got int 1"]),
    "compare unknown id": (lambda lab: lab.compare(["nope"]), ["has no run 'nope'"]),
    "runs job misspelt": (lambda lab: lab.runs(job="rendr"), ["No run has job 'rendr'; did you mean 'render'?"]),
    "note unknown run": (lambda lab: lab.note("hi", "nope"), ["has no run 'nope'"]),
    "compare None": (lambda lab: lab.compare(None), ["run_ids must be a list of strings, got NoneType"]),
    "replay int": (lambda lab: lab.replay(5), ["run_id must be text, got int 5"]),
    "replay unknown": (lambda lab: lab.replay("nope"), ["nope"]),
    "replay check str": (lambda lab: lab.replay("nope", check="yes"), ["check must be True or False"]),
    # catalogue and files
    "models task unknown": (lambda lab: lab.models("txt2xyz"), ["Unknown task str 'txt2xyz'", "txt2img"]),
    "check_catalog entries str": (lambda lab: lab.check_catalog(entries="sd15"),
                                  ["entries must be a list of strings, got str 'sd15'"]),
    "check_catalog mode int": (lambda lab: lab.check_catalog(mode=5), ["mode must be text, got int 5"]),
    "strategy family int": (lambda lab: lab.strategy(5), ["family must be text, got int 5"]),
    "keep_input str": (lambda lab: lab.keep_input("pixels", "a.png"), ["needs the file's bytes, got str"]),
    "keep_input name int": (lambda lab: lab.keep_input(b"x", 5), ["name must be text, got int 5"]),
    "demo out is a file": (lambda lab: lab.demo(out=_a_file(lab)), ["a-file.txt", "is a file"]),
}


@pytest.mark.parametrize("call,fragments", CASES.values(), ids=CASES.keys())
def test_a_bad_argument_is_a_labkit_error_naming_it_with_a_fix(lab, call, fragments):
    with pytest.raises(LabkitError) as info:
        call(lab)
    err = info.value
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
    assert err.fix, f"no fix in {err!r}"
    str(err).encode("utf-8")                  # printable and loggable as it is
    assert len(lab.pipelines) == 0            # refused before any model loaded
    assert lab.runs(5) == []                  # ... and before any run opened
    assert not list((lab.config.root / "mlruns").glob("**/*.png"))


def test_the_toy_model_still_renders_with_adapters_none_and_a_path_out(lab, tiny_sd15, one_thread, tmp_path):
    # The checks refuse only what is wrong: None adapters, a Path out, an Event, a progress function.
    steps = []
    result = lab.generate(PROMPT, model=str(tiny_sd15), size=(32, 32), steps=2, seed=1, adapters=None,
                          out=tmp_path / "out", cancel=threading.Event(), progress=lambda i, n: steps.append(i),
                          tags={"study": "bad-inputs"})
    assert result.status == "finished" and steps and (tmp_path / "out").is_dir()
    [run] = lab.runs(5)
    assert run.status == "FINISHED"
    assert lab.compare([run.run_id]).runs[0].run_id == run.run_id
    assert lab.note("checked", run.run_id)["target"] == "run"
    # the first characters of a run id, as lab.runs() and the Runs panel show them
    assert lab.compare([run.run_id[:8]]).runs[0].run_id == run.run_id
    assert lab.note("and again", run.run_id[:8])["id"] == run.run_id and "and again" in lab.notes(run.run_id[:8])
    assert [r.run_id for r in lab.runs(5, job="render")] == [run.run_id]
    assert lab.runs(5, job="train") == []  # an empty history is no error


def test_a_failed_bad_input_leaves_the_lab_usable(lab, tiny_sd15, one_thread):
    with pytest.raises(LabkitError):
        lab.generate(PROMPT, model=str(tiny_sd15), size=(32, 32), steps=2, guidance="abc")
    result = lab.generate(PROMPT, model=str(tiny_sd15), size=(32, 32), steps=2, guidance=2.0)
    assert result.status == "finished" and len(lab.runs(5)) == 1
