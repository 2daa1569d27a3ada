"""The published configs of `labkit.testing.build_full` build the real models: counted on the meta device.

Nothing is allocated: each network is constructed under ``torch.device("meta")`` and its parameters counted.
Each expected figure says where it comes from. Exact counts are the diffusers/transformers parameter counts
of the hub checkpoints; the rounded published figure beside each is what the model's paper, card or
OpenCLIP's model profile table states, which the exact count must round to.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from labkit.errors import InvalidParameter  # noqa: E402
from labkit.testing import FULL_CONFIGS, build_full, build_full_models, count_params, full_config  # noqa: E402
from labkit.testing.full_configs import FULL_CONTROLNET_CONFIGS, FULL_FAMILIES, SOURCES  # noqa: E402

# (family, component, exact count, published rounded figure in millions, where the figure comes from)
PUBLISHED = [
    ("sd15", "unet", 859_520_964, 859.5,
     "SD 1.5 UNet: 859,520,964 (issue 24; the Stable Diffusion model card's '860M UNet')"),
    ("sd15", "vae", 83_653_863, 83.7, "SD VAE (kl-f8): 83,653,863 (issue 24)"),
    ("sd15", "text_encoder", 123_060_480, 123.1,
     "CLIP ViT-L/14 text tower: 123,060,480 (issue 24; OpenCLIP's ViT-L-14 text 123.65 M includes the 0.59 M "
     "text projection that CLIPTextModel leaves out)"),
    ("sdxl", "unet", 2_567_463_684, 2567.5, "SDXL UNet: 2,567,463,684 (issue 24; SDXL paper, Table 1: 2.6 B)"),
    ("sdxl", "vae", 83_653_863, 83.7, "SDXL's VAE has the SD VAE's architecture (same count)"),
    ("sdxl", "text_encoder", 123_060_480, 123.1, "CLIP ViT-L/14 text tower, as sd15"),
    ("sdxl", "text_encoder_2", 694_659_840, 694.7,
     "OpenCLIP ViT-bigG/14 text tower: 694,659,840 (issue 24; OpenCLIP model profile: 694.66 M; SDXL paper: 694 M)"),
    ("svd", "unet", 1_524_623_082, 1524.6, "SVD-XT UNet: ~1,524.6 M (issue 24; SVD paper: 1.5 B)"),
    ("svd", "image_encoder", 632_076_800, 632.1, "OpenCLIP ViT-H/14 vision tower: OpenCLIP model profile 632.08 M"),
    ("wan", "transformer", 1_418_996_800, 1419.0,
     "Wan 2.1 T2V 1.3B transformer: ~1,418 M (issue 24; the model's name: 1.3 B)"),
    ("wan", "text_encoder", 5_680_910_336, 5680.9, "UMT5-XXL encoder: ~5.7 B (issue 24)"),
]

# Counted from the published config only (no published figure found): they guard the configs against drift.
COUNTED = [
    ("svd", "vae", 97_742_847),  # AutoencoderKLTemporalDecoder: the SD encoder + a temporal decoder
    ("wan", "vae", 126_892_531),  # AutoencoderKLWan (Wan 2.1 VAE)
    ("controlnet-sd15", "controlnet", 361_279_120),  # 1.45 GB fp32 file on the hub: ~361 M
    ("controlnet-sdxl", "controlnet", 1_251_014_160),  # 2.5 GB fp16 file on the hub: ~1.25 B
]

_cache: dict[str, dict[str, int]] = {}


def counts(family: str) -> dict[str, int]:
    if family not in _cache:
        _cache[family] = count_params(family)
    return _cache[family]


@pytest.mark.parametrize(("family", "component", "exact", "millions", "source"), PUBLISHED,
                         ids=[f"{f}-{c}" for f, c, *_ in PUBLISHED])
def test_parameter_count_matches_the_published_model(family, component, exact, millions, source):
    n = counts(family)[component]
    assert n == exact, f"{family} {component}: {n:,} parameters, published {exact:,} ({source})"
    assert round(n / 1e6, 1) == millions


@pytest.mark.parametrize(("family", "component", "exact"), COUNTED, ids=[f"{f}-{c}" for f, c, _ in COUNTED])
def test_parameter_count_of_configs_without_a_published_figure(family, component, exact):
    assert counts(family)[component] == exact


def test_meta_build_allocates_nothing():
    models = build_full_models("sdxl")  # meta is the default
    assert set(models) == {"unet", "vae", "text_encoder", "text_encoder_2"}
    for name, model in models.items():
        assert {p.device.type for p in model.parameters()} == {"meta"}, name


def test_wan_stand_in_text_encoder_keeps_the_width_and_drops_the_size():
    stand_in = build_full_models("t2v", full_text_encoder=False)["text_encoder"]
    assert stand_in.config.d_model == FULL_CONFIGS["wan"]["transformer"]["text_dim"] == 4096
    assert stand_in.config.num_layers == 2
    n = sum(p.numel() for p in stand_in.parameters())
    assert n < counts("wan")["text_encoder"] / 10


def test_the_configs_fit_together():
    sdxl = FULL_CONFIGS["sdxl"]
    assert sdxl["unet"]["cross_attention_dim"] == (sdxl["text_encoder"]["hidden_size"]
                                                   + sdxl["text_encoder_2"]["hidden_size"])
    assert sdxl["unet"]["projection_class_embeddings_input_dim"] == (
        6 * sdxl["unet"]["addition_time_embed_dim"] + sdxl["text_encoder_2"]["projection_dim"])
    assert FULL_CONFIGS["sd15"]["unet"]["cross_attention_dim"] == FULL_CONFIGS["sd15"]["text_encoder"]["hidden_size"]
    svd = FULL_CONFIGS["svd"]
    assert svd["unet"]["cross_attention_dim"] == svd["image_encoder"]["projection_dim"]
    assert svd["unet"]["num_frames"] == 25  # XT, not the 14-frame SVD
    assert FULL_CONFIGS["wan"]["transformer"]["text_dim"] == FULL_CONFIGS["wan"]["text_encoder"]["d_model"]
    for family, net in FULL_CONTROLNET_CONFIGS.items():
        unet = FULL_CONFIGS[family]["unet"]
        for key in ("block_out_channels", "down_block_types", "cross_attention_dim", "attention_head_dim"):
            assert net[key] == unet[key], (family, key)


def test_labkit_reads_each_controlnet_as_its_family():
    from labkit.pipelines.controlnet import family_of

    assert family_of(full_config("controlnet-sd15")["controlnet"]) == "sd15"
    assert family_of(full_config("controlnet-sdxl")["controlnet"]) == "sdxl"


def test_every_network_names_its_source():
    for family in FULL_FAMILIES:
        networks = set(build_full_models(family, full_text_encoder=False)) if family.startswith("controlnet") \
            else {c for c in full_config(family) if c not in ("scheduler", "feature_extractor")}
        assert networks <= set(SOURCES[family]), family
        assert all("config.json" in SOURCES[family][c] for c in networks)


def test_full_config_is_a_copy():
    cfg = full_config("sd15")
    cfg["unet"]["block_out_channels"] = (1,)
    assert FULL_CONFIGS["sd15"]["unet"]["block_out_channels"] == (320, 640, 1280, 1280)
    assert full_config("t2v") == full_config("wan")


def test_unknown_family_is_refused_with_the_known_ones():
    with pytest.raises(InvalidParameter) as e:
        build_full_models("sd3")
    assert "'sd3'" in str(e.value) and "sdxl" in e.value.fix
    with pytest.raises(KeyError, match="'sd3'"):
        full_config("sd3")


def test_override_of_a_component_the_family_lacks_is_refused():
    with pytest.raises(InvalidParameter) as e:
        count_params("sd15", overrides={"transformer": {"num_layers": 1}})
    assert "'transformer'" in str(e.value) and "unet" in e.value.fix


def test_build_full_on_meta_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(InvalidParameter) as e:
        build_full("sd15", tmp_path / "out", device="meta")
    assert "meta" in str(e.value) and e.value.fix
    assert not (tmp_path / "out").exists()


def test_importing_the_configs_imports_no_torch():
    code = "import sys, labkit.testing.full_configs, labkit.testing.full; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
