"""`lab.strategy` given values labkit does not support, `lab.note` / `lab.notes` meaning the same target, and lone
strings where a list of strings is meant: refused the same way everywhere (as a walk through the lab found them)."""

from __future__ import annotations

import pytest

from labkit.errors import InvalidParameter, LabkitError
from labkit.hardware import COMPILE_MODES, DTYPES, OFFLOAD_MODES, HardwareProfile


@pytest.fixture
def gpu_lab(project):
    from labkit.lab import Lab

    return Lab(project, hardware=HardwareProfile.simulated(8))


# (overrides, fragments the message names: the value, and the values allowed)
BAD_STRATEGY = {
    "dtype float8": ({"dtype": "float8"}, ["dtype str 'float8'", *map(repr, DTYPES)]),
    "dtype torch name": ({"dtype": "torch.float16"}, ["'torch.float16'", "'float16'"]),
    "dtype not text": ({"dtype": 16}, ["dtype int 16", "'bfloat16'"]),
    "offload disk": ({"offload": "disk"}, ["offload str 'disk'", *map(repr, OFFLOAD_MODES)]),
    "compile_mode fast": ({"compile_mode": "fast"}, ["compile_mode str 'fast'", repr(COMPILE_MODES[-1])]),
    "compile yes": ({"compile": "yes"}, ["compile must be True or False, got str 'yes'"]),
    "vae_tiling 1": ({"vae_tiling": 1}, ["vae_tiling must be True or False, got int 1"]),
    "decode_chunk_size -1": ({"decode_chunk_size": -1}, ["decode_chunk_size -1 is outside"]),
    "est_peak_vram_gb nan": ({"est_peak_vram_gb": float("nan")}, ["est_peak_vram_gb", "nan"]),
    "device tpu": ({"device": "tpu"}, ["Unknown strategy override(s) device", "dtype, offload"]),
    "a typo": ({"vae_tilling": True}, ["vae_tilling", "vae_tiling"]),
    "table": ({"table": None}, ["Unknown strategy override(s) table"]),
    "speed fast": ({"speed": "fast"}, ["Unknown speed str 'fast'", "'max'"]),
    "controls str": ({"controls": "2"}, ["controls must be a whole number, got str '2'"]),
    "controls 99": ({"controls": 99}, ["controls 99 is outside 0–4"]),
    "adapters -1": ({"adapters": -1}, ["adapters -1 is outside"]),
}


@pytest.mark.parametrize("overrides,fragments", BAD_STRATEGY.values(), ids=BAD_STRATEGY.keys())
def test_strategy_refuses_what_labkit_does_not_support_naming_the_allowed_values(gpu_lab, overrides, fragments):
    with pytest.raises(InvalidParameter) as info:
        gpu_lab.strategy("sd15", **overrides)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert info.value.fix


def test_strategy_takes_every_supported_value_and_records_it(gpu_lab):
    for dtype in DTYPES:
        s = gpu_lab.strategy("sd15", dtype=dtype)
        assert s.dtype == dtype and f"dtype={dtype}" in s.overrides
    for offload in OFFLOAD_MODES:
        assert gpu_lab.strategy("sd15", offload=offload).offload == offload
    s = gpu_lab.strategy("sd15", vae_tiling=True, compile=True, compile_mode="max-autotune", decode_chunk_size=4,
                         est_peak_vram_gb=None)
    assert (s.vae_tiling, s.compile, s.compile_mode, s.decode_chunk_size) == (True, True, "max-autotune", 4)
    assert gpu_lab.strategy("sd15", speed="max", controls=1, adapters=1).name  # choose's own arguments pass through
    assert gpu_lab.strategy("sd15") == gpu_lab.strategy("sd15", speed="default", controls=0, adapters=0)


def test_note_and_notes_mean_the_same_target(migrated_store, lab):
    lab.note("about the study")                                    # no run yet: the experiment
    assert lab.notes() == lab.notes(experiment=True) == "about the study"
    with lab.run("first") as run:
        lab.note("inside")
        assert lab.notes() == "inside" == lab.notes(run.run_id)   # the open run, as note() wrote it
    lab.note("after")
    assert lab.notes() == "inside\n\nafter" == lab.notes(run.run_id)   # the last run this lab closed
    assert lab.notes(experiment=True) == "about the study"
    lab.note("for the study", experiment=True)
    assert lab.notes(experiment=True) == "about the study\n\nfor the study"
    for call in (lambda: lab.note("x", run.run_id, experiment=True), lambda: lab.notes(run.run_id, experiment=True)):
        with pytest.raises(InvalidParameter, match="Both a run") as err:
            call()
        assert "experiment=True" in err.value.fix
    with pytest.raises(InvalidParameter, match="experiment must be True or False"):
        lab.notes(experiment="yes")


# A lone string where a list of strings is meant: refused, naming the argument and the list to pass instead,
# never wrapped in one place and refused (or iterated letter by letter) in another.
LONE_STRINGS = {
    "compare": (lambda lab: lab.compare("abc123"), "['abc123']"),
    "check_catalog entries": (lambda lab: lab.check_catalog(entries="sd15"), "['sd15']"),
    "generate adapters": (lambda lab: lab.generate("a red circle", adapters="x.safetensors"), "['x.safetensors']"),
    "train panel validation_prompts": (
        lambda lab: __import__("labkit.panels", fromlist=["train_panel"]).train_panel(
            lab, validation_prompts="a red hexagon"), "['a red hexagon']"),
}


@pytest.mark.parametrize("call,listed", LONE_STRINGS.values(), ids=LONE_STRINGS.keys())
def test_a_lone_string_for_a_list_is_refused_the_same_way(migrated_store, lab, call, listed):
    with pytest.raises(LabkitError) as info:
        call(lab)
    assert "list" in info.value.message and "got" in info.value.message and "str" in info.value.message
    assert listed in info.value.fix
