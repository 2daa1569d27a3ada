"""The memory-strategy table: a choice on every tier, degrade down to the cheapest rung."""

from __future__ import annotations

import pytest

from labkit.errors import ConfigError, InvalidParameter, OutOfMemory, UnknownFamily
from labkit.hardware import (
    SEQUENTIAL_SHARE,
    TIERS,
    USABLE_VRAM,
    HardwareProfile,
    StrategyTable,
    choose,
    controlnet_gb,
    degrade,
    families,
    strategy_matrix,
    strategy_table,
)

REQUIRED_FAMILIES = {"sd15", "sdxl", "sd-turbo", "svd", "t2v", "toy"}


def _profile(tier: str) -> HardwareProfile:
    return HardwareProfile.simulated(None if tier == "cpu" else float(tier))


def test_shipped_table_has_the_required_families():
    assert REQUIRED_FAMILIES <= set(families())


@pytest.mark.parametrize("family", sorted(REQUIRED_FAMILIES))
@pytest.mark.parametrize("tier", TIERS)
def test_choose_on_every_tier(family, tier):
    s = choose(family, _profile(tier))
    assert s.family == family and s.tier == tier
    if tier == "cpu":
        # CPU runs need full precision and have nothing to offload to.
        assert s.device == "cpu" and s.dtype == "float32" and s.offload == "none"
    else:
        assert s.device == "gpu"
        # Real models run in half precision on a GPU; the tiny toy model stays fp32 so GPU and CPU agree.
        assert s.dtype == "float32" if family == "toy" else s.dtype in ("float16", "bfloat16")
        if s.est_peak_vram_gb is not None and family != "toy":
            # The starting rung must fit the card, unless even the cheapest rung does not.
            cheapest = _cheapest_gpu(family)
            assert s.est_peak_vram_gb <= float(tier) or s.name == cheapest.name
    assert not s.compile, "compile is an opt-in, never a table default"


def _cheapest_gpu(family: str):
    s = choose(family, _profile("40"))
    while True:
        try:
            s = degrade(s)
        except OutOfMemory:
            return s


@pytest.mark.parametrize("family", sorted(REQUIRED_FAMILIES))
def test_bigger_cards_never_get_a_cheaper_rung(family):
    rungs = [choose(family, _profile(t)).rung for t in TIERS[1:]]
    assert rungs == sorted(rungs, reverse=True), f"{family}: rung per tier {rungs} should not increase with VRAM"


@pytest.mark.parametrize("family", sorted(REQUIRED_FAMILIES))
@pytest.mark.parametrize("tier", ["cpu", "4", "24", "40"])
def test_degrade_until_nothing_cheaper_is_left(family, tier):
    s = choose(family, _profile(tier))
    tried = [s]
    for _ in range(20):
        try:
            nxt = degrade(s, tried=tried)
        except OutOfMemory as e:
            msg = str(e)
            assert family in msg and s.name in msg
            assert "Fix:" in msg and "lower the size" in msg  # advice the user can act on
            assert all(t.name in msg for t in tried)  # what was tried, in order
            break
        assert nxt.rung > s.rung and nxt.device == s.device and nxt.tier == s.tier
        s = nxt
        tried.append(s)
    else:
        pytest.fail("degrade never ran out of rungs")
    if tier == "cpu":
        assert len(tried) >= 2, "CPU needs at least one cheaper step"


def test_gpu_ladder_reaches_sequential_offload_for_big_families():
    for family in ("sd15", "sdxl", "svd", "t2v"):
        assert _cheapest_gpu(family).offload == "sequential"


def test_svd_chunks_its_unet_and_decode_when_degraded():
    cheapest = _cheapest_gpu("svd")
    assert cheapest.forward_chunking and cheapest.decode_chunk_size >= 1
    assert cheapest.decode_chunk_size < choose("svd", _profile("40")).decode_chunk_size or \
        choose("svd", _profile("40")).decode_chunk_size == 0


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("tier", ["4", "6", "8", "12", "16", "24"])
def test_controlnets_count_in_the_estimate_and_move_the_start_down_when_they_would_not_fit(family, tier):
    plain = choose(family, _profile(tier))
    for n in (1, 2, 4):
        s = choose(family, _profile(tier), controls=n)
        assert s.device == "gpu" and s.rung >= plain.rung  # never a hungrier rung for more ControlNets
        table = strategy_table().family(family)["ladder"]
        share = SEQUENTIAL_SHARE if table[s.rung]["offload"] == "sequential" else 1.0
        assert s.est_peak_vram_gb == pytest.approx(table[s.rung]["est_peak_vram_gb"]
                                                   + n * controlnet_gb(family) * share, abs=0.01)
        cheapest = max(i for i, r in enumerate(table) if r["device"] == "gpu")
        assert s.est_peak_vram_gb <= USABLE_VRAM * float(tier) or s.rung == cheapest
    # where the plain start leaves room, a ControlNet keeps it; where it does not, the start moves
    assert choose("sd15", _profile("24"), controls=2).name == choose("sd15", _profile("24")).name
    assert choose("sdxl", _profile("16"), controls=1).rung > choose("sdxl", _profile("16")).rung


def test_how_many_controlnets_fit_follows_the_card():
    from labkit.hardware import max_controls

    assert max_controls("sdxl", _profile("4"), 4) < max_controls("sdxl", _profile("8"), 4) == 4
    assert max_controls("sdxl", HardwareProfile.simulated(3.0), 4) == 0  # not even the cheapest rung has room
    assert max_controls("sd15", _profile("cpu"), 4) == 4


def test_controlnets_change_nothing_on_a_cpu():
    assert choose("toy", _profile("cpu"), controls=4) == choose("toy", _profile("cpu"))
    assert controlnet_gb("sd15") > 0 and controlnet_gb("sdxl") > controlnet_gb("sd15")


def test_overrides_are_recorded():
    s = choose("sd15", _profile("24"), compile=True)
    assert s.compile and s.overrides == ("compile=True",)
    assert "compile" in s.steps()
    assert s.tags()["strategy.overrides"] == "['compile=True']"


def test_unknown_override_is_refused():
    with pytest.raises(InvalidParameter, match="warp_speed"):
        choose("sd15", _profile("8"), warp_speed=True)


def test_unknown_family_names_the_fix():
    with pytest.raises(UnknownFamily, match="kandinsky.*use one of"):
        choose("kandinsky", _profile("8"))


def test_strategy_matrix_covers_every_family_and_tier():
    m = strategy_matrix()
    assert set(m) == set(families())
    for fam in m:
        assert list(m[fam]) == list(TIERS)
        assert all(m[fam][t]["family"] == fam for t in TIERS)


def test_shipped_table_is_cached_and_user_table_loads(tmp_path):
    assert strategy_table() is strategy_table()
    custom = tmp_path / "mine.toml"
    tiers = "\n".join(f'"{t}" = "{"c" if t == "cpu" else "g"}"' for t in TIERS)
    custom.write_text(f"""
[families.mine]
[[families.mine.ladder]]
name = "g"
device = "gpu"
dtype = "float16"
offload = "none"
[[families.mine.ladder]]
name = "c"
device = "cpu"
dtype = "float32"
offload = "none"
[families.mine.tiers]
{tiers}
""")
    table = StrategyTable.load(custom)
    assert choose("mine", _profile("8"), table=table).name == "g"
    with pytest.raises(OutOfMemory):
        degrade(choose("mine", _profile("cpu"), table=table), table=table)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ('[families.x]\n[[families.x.ladder]]\nname="a"\ndevice="gpu"\ndtype="float8"\noffload="none"', "float8"),
        ('[families.x]\n[[families.x.ladder]]\nname="a"\ndevice="gpu"\ndtype="float16"\noffload="cloud"', "cloud"),
        ('[families.x]\n[[families.x.ladder]]\nname="a"\ndevice="gpu"\ndtype="float16"\noffload="none"\nturbo=1',
         "turbo"),
        ('[families.x]\n[[families.x.ladder]]\nname="a"\ndevice="gpu"\ndtype="float16"\noffload="none"\n'
         '[families.x.tiers]\ncpu="a"', "tier"),
        ("families = [", "not valid TOML"),
    ],
)
def test_malformed_table_names_the_problem(tmp_path, body, complaint):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=complaint):
        StrategyTable.load(path)
