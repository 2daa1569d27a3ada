"""`labkit.testing.build_full` writes folders that load as their family, checked on scaled-down variants.

Real sizes are too big for CI (SDXL: 6.9 GB in fp16), so every family is built with the tiny configs of
`labkit.testing.configs` laid over the published ones (``overrides``): the same code path writes the folder,
and what the override leaves alone (scheduler, class names, keys the tiny config does not set) is the
published model's. The device check (`make gpu-check`) builds them at full size on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from labkit.catalog import Catalog, family_from_model_index  # noqa: E402
from labkit.pipelines.loader import check_weights, resolve_model, safetensors_header  # noqa: E402
from labkit.testing import build_full, tiny_config  # noqa: E402

_UNET_ONLY = ("out_channels", "up_block_types", "sample_size")


def scaled(family: str) -> dict:
    """Tiny-config overrides for ``family``: the published scheduler stays."""
    if family.startswith("controlnet-"):
        unet = tiny_config(family.split("-", 1)[1])["unet"]
        return {"controlnet": {k: v for k, v in unet.items() if k not in _UNET_ONLY}}
    cfg = tiny_config("wan" if family == "t2v" else family)
    cfg.pop("scheduler")
    return cfg


# family -> (pipeline class, labkit family, scheduler class: as the hub repo's model_index.json names them)
PIPELINES = {
    "sd15": ("StableDiffusionPipeline", "sd15", "PNDMScheduler"),
    "sdxl": ("StableDiffusionXLPipeline", "sdxl", "EulerDiscreteScheduler"),
    "svd": ("StableVideoDiffusionPipeline", "svd", "EulerDiscreteScheduler"),
    "t2v": ("WanPipeline", "t2v", "UniPCMultistepScheduler"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("full")
    families = (*PIPELINES, "controlnet-sd15", "controlnet-sdxl")
    return {f: build_full(f, root / f, overrides=scaled(f)) for f in families}


@pytest.mark.parametrize("family", list(PIPELINES))
def test_folder_loads_as_its_family_with_the_published_classes(built, family):
    from diffusers import DiffusionPipeline

    cls, labkit_family, scheduler = PIPELINES[family]
    index = json.loads((built[family] / "model_index.json").read_text())
    assert index["_class_name"] == cls
    assert index["scheduler"] == ["diffusers", scheduler]
    assert family_from_model_index(index) == labkit_family
    ref = resolve_model(str(built[family]), Catalog.load())  # labkit's loader, as for any local folder
    assert (ref.kind, ref.family) == ("folder", labkit_family)
    check_weights(built[family], ref)
    pipe = DiffusionPipeline.from_pretrained(built[family], dtype=torch.float16)
    assert type(pipe).__name__ == cls
    if family == "t2v":
        assert pipe.scheduler.config.flow_shift == 3.0  # the published Wan 2.1 T2V scheduler
        assert pipe.scheduler.config.prediction_type == "flow_prediction"
    if family == "svd":
        assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]
        assert pipe.unet.config.num_frames == 25


@pytest.mark.parametrize("family", ["sd15", "svd", "t2v", "controlnet-sdxl"])
def test_weights_are_safetensors_in_float16_by_default(built, family):
    files = sorted(built[family].rglob("*.safetensors"))
    assert files and not list(built[family].rglob("*.bin"))
    dtypes = {info["dtype"] for f in files for k, info in safetensors_header(f).items() if k != "__metadata__"}
    assert dtypes == {"F16"}


def test_controlnets_load_and_read_as_their_family(built):
    from diffusers import ControlNetModel

    from labkit.pipelines.controlnet import family_of

    for family in ("sd15", "sdxl"):
        folder = built[f"controlnet-{family}"]
        net = ControlNetModel.from_pretrained(folder)
        assert family_of(dict(net.config), folder) == family
        # the published conditioning embedding is kept: the override leaves it alone
        assert tuple(net.config.conditioning_embedding_out_channels) == (16, 32, 96, 256)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = build_full("controlnet-sd15", tmp_path / "a", overrides=scaled("controlnet-sd15"), seed=3)
    b = build_full("controlnet-sd15", tmp_path / "b", overrides=scaled("controlnet-sd15"), seed=3)
    c = build_full("controlnet-sd15", tmp_path / "c", overrides=scaled("controlnet-sd15"), seed=4)
    weights = "diffusion_pytorch_model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes()
    assert (a / weights).read_bytes() != (c / weights).read_bytes()


def test_scaled_sd15_renders_finite_pixels(tmp_path):
    from diffusers import DiffusionPipeline

    folder = build_full("sd15", tmp_path / "sd15", dtype=torch.float32, overrides=scaled("sd15"))
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a lighthouse", num_inference_steps=2, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3)
    assert torch.isfinite(torch.from_numpy(out)).all()
