"""The speed-first rung (`speed="max"`, `--fast`) and choosing the rung from free VRAM: what `choose` starts on,
and what it records when it cannot do what was asked."""

from __future__ import annotations

import os

import pytest

from labkit.errors import ConfigError, InvalidParameter, OutOfMemory
from labkit.hardware import (
    FAST_RUNG,
    FREE_MARGIN_GB,
    TIERS,
    USABLE_VRAM,
    HardwareProfile,
    StrategyTable,
    choose,
    degrade,
    families,
    strategy_table,
)
from labkit.plan import Plan


def _gpu(vram: float, **kw) -> HardwareProfile:
    return HardwareProfile.simulated(vram, **kw)


# -- speed="max" --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bf16, dtype", [(True, "bfloat16"), (False, "float16")])
def test_max_speed_on_a_24_gb_card_starts_sd15_on_the_fast_rung(bf16, dtype):
    s = choose("sd15", _gpu(24, bf16=bf16), speed="max")
    assert s.name == FAST_RUNG and s.rung == 0 and s.device == "gpu" and s.dtype == dtype
    assert s.fuse_qkv and s.compile and s.compile_vae and s.compile_mode == "reduce-overhead" and s.channels_last
    assert f"dtype={dtype}" in s.steps() and "fuse_qkv" in s.steps() and "compile=reduce-overhead" in s.steps()
    assert any(dtype in n for n in s.notes)
    # recorded like every rung: the run's tags carry the new fields and the notes
    tags = s.tags()
    assert tags["strategy.fuse_qkv"] == "True" and tags["strategy.compile_mode"] == "reduce-overhead"
    assert dtype in tags["strategy.notes"]


def test_max_speed_on_sdxl_fits_a_16_gb_card_but_not_an_8_gb_one():
    assert choose("sdxl", _gpu(16), speed="max").name == FAST_RUNG
    s = choose("sdxl", _gpu(8), speed="max")
    assert s.name == choose("sdxl", _gpu(8)).name == "gpu-model-offload" and not s.compile
    (note,) = s.notes
    assert "gpu-fast" in note and "does not fit" in note and "gpu-model-offload" in note


def test_max_speed_on_a_card_too_small_keeps_the_usual_rung_and_says_why():
    usual = choose("sd15", _gpu(6))
    s = choose("sd15", _gpu(6), speed="max")
    assert s.name == usual.name == "gpu-sliced" and not s.compile and not s.fuse_qkv and s.dtype == "float16"
    assert any("gpu-fast (est. 6.5 GB) does not fit the 5.1 GB usable here" in n for n in s.notes), s.notes


@pytest.mark.parametrize("family", ["svd", "t2v", "toy", "sd-turbo"])
def test_a_family_without_a_fast_rung_is_unchanged_with_the_reason(family):
    usual = choose(family, _gpu(40))
    s = choose(family, _gpu(40), speed="max")
    assert s.name == usual.name and s.dtype == usual.dtype and not s.compile
    assert s.notes == (f"speed=max: family {family!r} has no gpu-fast rung; started on {usual.name}",)


def test_max_speed_on_a_cpu_compiles_and_fuses_the_cpu_rung():
    s = choose("sd15", HardwareProfile.simulated(None), speed="max")
    assert s.name == "cpu-full" and s.device == "cpu" and s.dtype == "float32"
    assert s.fuse_qkv and s.compile and s.compile_mode == "default" and not s.compile_vae
    assert s.steps() == ["dtype=float32", "offload=none", "fuse_qkv", "compile=default"]
    assert "CPU" in s.notes[0]


def test_max_speed_on_apple_mps_stays_eager_and_says_why():
    s = choose("sd15", HardwareProfile.simulated(24, device="mps"), speed="max")
    assert s.name == "gpu-full" and not s.compile and "needs CUDA" in s.notes[0]


def test_lora_adapters_turn_fused_qkv_off_with_the_reason():
    s = choose("sd15", _gpu(24), speed="max", adapters=1)
    assert s.name == FAST_RUNG and not s.fuse_qkv and s.compile
    assert any("LoRA" in n for n in s.notes)


@pytest.mark.parametrize("bad", ["fast", "MAX", "", None, 1])
def test_an_unknown_speed_is_refused_naming_it(bad):
    with pytest.raises(InvalidParameter, match="speed") as e:
        choose("sd15", _gpu(24), speed=bad)
    assert e.value.value == bad and "default" in e.value.fix


def test_default_speed_never_compiles_on_any_tier():
    for fam in families():
        for tier in TIERS:
            s = choose(fam, HardwareProfile.simulated(None if tier == "cpu" else float(tier)))
            assert s.name != FAST_RUNG and not s.compile and not s.fuse_qkv and not s.notes


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_degrade_from_the_fast_rung_goes_to_the_next_gpu_rung(family):
    fast = choose(family, _gpu(40), speed="max")
    nxt = degrade(fast)
    assert nxt.name == "gpu-full" and nxt.device == "gpu" and nxt.rung == 1 and not nxt.compile


# -- the table ----------------------------------------------------------------------------------------------------


def test_the_fast_rung_tops_the_ladders_of_sd15_and_sdxl_with_a_reasoned_estimate():
    ladders = {fam: spec["ladder"] for fam, spec in strategy_table().families.items()}
    for fam in ("sd15", "sdxl"):
        top, full = ladders[fam][0], ladders[fam][1]
        assert top["name"] == FAST_RUNG and top["device"] == "gpu" and top["offload"] == "none"
        assert top["compile"] and top["fuse_qkv"] and top["est_peak_vram_gb"] > full["est_peak_vram_gb"]
    raw = _shipped_text()
    fast_lines = [ln for ln in raw.splitlines() if ln.startswith("est_peak_vram_gb") and "CUDA-graph" in ln]
    assert len(fast_lines) == 2 and all("estimate:" in ln for ln in fast_lines)
    assert "compile is false everywhere" not in raw  # the header says where compile is true


def test_a_table_where_a_tier_starts_on_a_compiling_rung_is_refused(tmp_path):
    raw = _shipped_text()
    bad = raw.replace('[families.sd15.tiers]\ncpu = "cpu-full"\n"4" = "gpu-model-offload"',
                      '[families.sd15.tiers]\ncpu = "cpu-full"\n"4" = "gpu-fast"')
    assert bad != raw
    (tmp_path / "s.toml").write_text(bad)
    with pytest.raises(ConfigError, match="gpu-fast.*opt-in"):
        StrategyTable.load(tmp_path / "s.toml")


def test_a_table_with_an_unknown_compile_mode_is_refused(tmp_path):
    bad = _shipped_text().replace('compile_mode = "reduce-overhead"', 'compile_mode = "ludicrous"', 1)
    (tmp_path / "s.toml").write_text(bad)
    with pytest.raises(ConfigError, match="ludicrous"):
        StrategyTable.load(tmp_path / "s.toml")


def _shipped_text() -> str:
    from importlib import resources

    return resources.files("labkit").joinpath("strategies.toml").read_text(encoding="utf-8")


# -- free VRAM -----------------------------------------------------------------------------------------------------


def test_a_24_gb_card_with_3_gb_free_starts_cheaper_and_says_so():
    s = choose("sd15", _gpu(24, free_gb=3.0))
    assert s.name == "gpu-model-offload" and s.est_peak_vram_gb <= 3.0 - FREE_MARGIN_GB
    assert s.notes == ("started on gpu-model-offload: 3.0 GB free of 24 GB (other processes count)",)


def test_free_vram_below_every_rung_starts_on_the_cheapest_gpu_rung_and_says_so():
    s = choose("sdxl", _gpu(24, free_gb=1.0))
    assert s.name == "gpu-sequential" and s.device == "gpu"
    assert "1.0 GB free of 24 GB" in s.notes[0] and "does not fit" in s.notes[0]
    with pytest.raises(OutOfMemory):
        degrade(s)  # nothing cheaper on the GPU: the OOM path reports it


def test_plenty_of_free_vram_changes_nothing_and_records_nothing():
    for fam in families():
        for vram in (4.0, 8.0, 24.0, 40.0):
            full = choose(fam, _gpu(vram))
            assert choose(fam, _gpu(vram, free_gb=vram)) == full and not full.notes


def test_unknown_free_vram_keeps_the_tier_start():
    import dataclasses

    unknown = dataclasses.replace(_gpu(24), vram_free_gb=None)
    for fam in families():
        assert choose(fam, unknown) == choose(fam, _gpu(24))


def test_free_vram_and_controlnets_count_together():
    # sd15 + 2 ControlNets (0.8 GB each) on a 24 GB card with 5 GB free: gpu-full (5.7 + 1.6) and gpu-sliced
    # (3.2 + 1.6 = 4.8) do not fit 4.5 GB; model offload (2.5 + 1.6) does
    s = choose("sd15", _gpu(24, free_gb=5.0), controls=2)
    assert s.name == "gpu-model-offload" and s.est_peak_vram_gb == pytest.approx(4.1)


def test_the_fast_rung_needs_free_vram_too():
    s = choose("sd15", _gpu(24, free_gb=5.0), speed="max")
    assert s.name == "gpu-sliced" and not s.compile
    assert any("does not fit the 4.5 GB usable" in n for n in s.notes)
    assert choose("sd15", _gpu(24, free_gb=12.0), speed="max").name == FAST_RUNG


def test_simulated_free_vram_and_with_free_vram():
    p = _gpu(24, free_gb=3.0)
    assert (p.vram_total_gb, p.vram_free_gb, p.tier) == (24.0, 3.0, "24") and "3 GB free" in p.notes[0]
    assert p.with_free_vram(10.0).vram_free_gb == 10.0 and p.with_free_vram(None) is p
    cpu = HardwareProfile.simulated(None)
    assert cpu.with_free_vram(5.0) is cpu
    assert USABLE_VRAM * 24 > 3.0  # the free figure, not the card, is what binds here


# -- the plan ------------------------------------------------------------------------------------------------------


def test_the_plan_carries_speed_through_its_round_trip():
    plan = Plan(prompt="a red circle", speed="max")
    assert plan.to_dict()["speed"] == "max"
    assert Plan.from_dict(plan.to_dict()) == plan and Plan.from_json(plan.to_json()).speed == "max"
    assert Plan.from_dict({"prompt": "x"}).speed == "default"  # plans recorded before the field still load
    from labkit.plan import plan_schema

    assert plan_schema()["properties"]["speed"] == {"type": "string", "enum": ["default", "max"]}


@pytest.mark.parametrize("bad", ["fast", 1, None, True])
def test_a_plan_with_an_unknown_speed_is_refused_naming_it(bad):
    with pytest.raises(InvalidParameter, match="speed"):
        Plan.from_dict({"prompt": "x", "speed": bad})
    with pytest.raises(InvalidParameter, match="speed"):
        Plan(prompt="x").replace(speed=bad).validate()


def test_the_fast_flag_of_generate_and_video_sets_speed_max(monkeypatch):
    from labkit.cli import build_parser, generate

    seen = []

    class FakeLab:
        def generate(self, prompt, **kw):
            seen.append(kw["speed"])
            raise SystemExit(0)

        video = generate

    monkeypatch.setattr(generate, "_lab", lambda args: FakeLab())
    parser = build_parser()
    for argv in (["generate", "a red circle", "--fast"], ["generate", "a red circle"], ["video", "x", "--fast"]):
        args = parser.parse_args(argv)
        with pytest.raises(SystemExit):
            args.func(args)
    assert seen == ["max", "default", "max"]
    assert "--fast" in parser._subparsers._group_actions[0].choices["generate"].format_help()


# -- applying the steps (plain torch modules; no pipeline is built) ------------------------------------------------


def _pipe():
    from types import SimpleNamespace

    import torch

    return SimpleNamespace(unet=torch.nn.Linear(4, 4), vae=SimpleNamespace(decoder=torch.nn.Linear(4, 4)))


def test_cuda_graph_modes_fall_back_without_resident_cuda_weights_and_say_so(tmp_path, monkeypatch):
    import dataclasses

    import torch

    from labkit.pipelines.memory import compile_modules, compile_reason, compiled

    if compile_reason("cpu"):
        pytest.skip(f"inductor cannot build here: {compile_reason('cpu')}")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unchanged")  # restored after the test
    s = dataclasses.replace(choose("sd15", _gpu(24), speed="max"), device="cpu")
    pipe = _pipe()
    applied = compile_modules(pipe, s, "cpu", cache=tmp_path / "inductor")
    assert applied == ["compile_mode:reduce-overhead->default(CUDA graphs need CUDA and weights resident on it)",
                       "compile=default", "compile_vae=default"]
    assert compiled(applied) and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    assert (tmp_path / "inductor").is_dir()
    # compiled in place (compilation itself waits for the first call): the weights keep their names
    assert pipe.unet._compiled_call_impl is not None and pipe.vae.decoder._compiled_call_impl is not None
    assert isinstance(pipe.unet, torch.nn.Linear) and set(pipe.unet.state_dict()) == {"weight", "bias"}


def test_compile_is_skipped_with_the_reason_when_dynamo_is_disabled(monkeypatch):
    from labkit.pipelines.memory import compile_modules, compiled

    monkeypatch.setenv("TORCHDYNAMO_DISABLE", "1")
    s = choose("sd15", HardwareProfile.simulated(None), speed="max")
    applied = compile_modules(_pipe(), s, "cpu")
    assert applied == ["compile:skipped(TorchDynamo is disabled (TORCHDYNAMO_DISABLE))"] and not compiled(applied)


def test_fused_qkv_is_skipped_where_the_pipeline_has_no_attention_to_fuse():
    from labkit.pipelines.memory import fuse_qkv

    assert fuse_qkv(object(), None) == "fuse_qkv:skipped(not supported by object)"


class _FakeCache:
    def __init__(self, items):
        self.items = dict(items)

    def keys(self):
        return list(self.items)

    def get(self, key):
        return self.items.get(key)

    def evict(self, key):
        self.items.pop(key, None)


def test_profile_now_evicts_another_models_gpu_pipeline_before_reading_free_vram(monkeypatch):
    import dataclasses
    from types import SimpleNamespace

    from labkit import probes
    from labkit.pipelines.memory import profile_now

    real = dataclasses.replace(_gpu(24), is_simulated=False)
    gpu = SimpleNamespace(strategy=SimpleNamespace(device="gpu"))
    cache = _FakeCache({("folder", "/a", None, "gpu-full"): gpu, ("folder", "/b", None, "gpu-full"): gpu})
    seen = []
    monkeypatch.setattr(probes, "gpu_now", lambda: seen.append(cache.keys()) or {"available": True, "free_gb": 3.1})
    now = profile_now(real, cache, ("folder", "/b", None))
    assert seen == [[("folder", "/b", None, "gpu-full")]]  # /a was evicted before the figure was read
    assert now.vram_free_gb == pytest.approx(3.1) and now.vram_total_gb == 24.0
    assert choose("sd15", now).notes == ("started on gpu-model-offload: 3.1 GB free of 24 GB (other processes count)",)
    sim = _gpu(24, free_gb=3.0)
    assert profile_now(sim, cache, ("folder", "/b", None)) is sim  # a simulated machine is not this one
