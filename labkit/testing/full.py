"""Real-size diffusers pipelines with random weights, built offline from the published configs.

`build_full(family, folder)` writes the architecture of SD 1.5, SDXL, SVD-XT, Wan 2.1 T2V 1.3B or an SD 1.5 /
SDXL ControlNet (configs in `labkit.testing.full_configs`) as a standard diffusers folder: same parameter
count, same memory and the same speed as the real model, without the hub. Use it to measure VRAM and speed
on a GPU machine that cannot download; the pictures are noise.

`build_full_models(family, device="meta")` builds only the networks; on the meta device that takes no
memory and a few seconds, which is how the unit tests check the configs against the published parameter
counts (`count_params`).

Memory, in the weights' dtype (fp16/bf16: 2 bytes a parameter) — a folder on disk is the same size:

- sd15: UNet 859.5 M + VAE 83.7 M + CLIP-L 123.1 M = 1.07 G params, 2.1 GB
- sdxl: UNet 2,567.5 M + VAE 83.7 M + CLIP-L 123.1 M + bigG 694.7 M = 3.47 G params, 6.9 GB
- svd (SVD-XT): UNet 1,524.6 M + VAE 97.7 M + ViT-H image encoder 632.1 M = 2.25 G params, 4.5 GB
- wan (Wan 2.1 T2V 1.3B): transformer 1,419.0 M + VAE 126.9 M, plus the text encoder: by default a stand-in
  with UMT5-XXL's width (d_model 4096, so the transformer sees real-size text states) but 2 of its 24
  layers and the local tokenizer's vocabulary (~0.4 G params, 0.8 GB); ``full_text_encoder=True`` builds
  all of UMT5-XXL's encoder (5,680.9 M params: 11.4 GB in fp16 on the device, and as much on disk).
- controlnet-sd15: 361.3 M params, 0.7 GB; controlnet-sdxl: 1,251.0 M params, 2.5 GB.

Weights are drawn on ``device`` directly in ``dtype`` (parameters are made empty first, then filled), so
building needs about the model's size in memory there, not the fp32 copy a plain constructor makes.
Measured on a shared two-core CPU: ``build_full("sd15", folder)`` 63 s, 2.5 GB peak RSS, 2.0 GB on disk; with
these weights the SD 1.5 networks' activations stay within +-39 (fp32 forward of text encoder, UNet and VAE
decoder), far inside float16's range.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter
from labkit.testing.full_configs import FULL_FAMILIES, PIPELINE_CLASSES, canonical_family, full_config
from labkit.tokenizers import CLIP_BOS, CLIP_EOS, t5_unigram_vocab, train_clip_bpe, write_clip_bpe_files

#: The Wan text encoder stand-in: UMT5-XXL's width, 2 of its 24 layers, the local tokenizer's vocabulary.
WAN_STANDIN_LAYERS = 2

_FAMILIES_TEXT = ", ".join(FULL_FAMILIES) + " (t2v means wan)"


def _family(family: Any) -> str:
    name = canonical_family(family)
    if name not in FULL_FAMILIES:
        raise InvalidParameter(f"No full-size build for family {family!r}.", value=family,
                               fix=f"use one of: {_FAMILIES_TEXT}.")
    return name


def _merged(family: str, overrides: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """The published config of ``family`` with ``overrides`` (component -> {key: value}) laid over it."""
    cfg = full_config(family)
    for component, values in (overrides or {}).items():
        if component not in cfg:
            raise InvalidParameter(f"Family {family!r} has no component {component!r} to override.",
                                   value=component, fix=f"override one of: {', '.join(cfg)}.")
        cfg[component].update(copy.deepcopy(dict(values)))
    return cfg


def _clip_text_config(cfg: dict[str, Any]):
    """A CLIPTextConfig of the published size whose special-token ids are the local tokenizer's."""
    from transformers import CLIPTextConfig

    vocab, _ = train_clip_bpe()
    return CLIPTextConfig(bos_token_id=vocab[CLIP_BOS], eos_token_id=vocab[CLIP_EOS], pad_token_id=vocab[CLIP_EOS],
                          **cfg)


def _wan_text_config(cfg: dict[str, Any], full_text_encoder: bool):
    from transformers import UMT5Config

    cfg = dict(cfg)
    if not full_text_encoder:
        cfg.update(num_layers=WAN_STANDIN_LAYERS, vocab_size=len(t5_unigram_vocab()))
    return UMT5Config(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **cfg)


def _constructors(family: str, cfg: dict[str, dict[str, Any]], full_text_encoder: bool) -> dict[str, Any]:
    """Component name -> a function that makes that network (no weights drawn yet)."""
    import diffusers
    import transformers

    if family.startswith("controlnet-"):
        return {"controlnet": lambda: diffusers.ControlNetModel(**cfg["controlnet"])}
    if family in ("sd15", "sdxl"):
        makers = {
            "unet": lambda: diffusers.UNet2DConditionModel(**cfg["unet"]),
            "vae": lambda: diffusers.AutoencoderKL(**cfg["vae"]),
            "text_encoder": lambda: transformers.CLIPTextModel(_clip_text_config(cfg["text_encoder"])),
        }
        if family == "sdxl":
            makers["text_encoder_2"] = lambda: transformers.CLIPTextModelWithProjection(
                _clip_text_config(cfg["text_encoder_2"]))
        return makers
    if family == "svd":
        return {
            "unet": lambda: diffusers.UNetSpatioTemporalConditionModel(**cfg["unet"]),
            "vae": lambda: diffusers.AutoencoderKLTemporalDecoder(**cfg["vae"]),
            "image_encoder": lambda: transformers.CLIPVisionModelWithProjection(
                transformers.CLIPVisionConfig(**cfg["image_encoder"])),
        }
    return {  # wan
        "transformer": lambda: diffusers.WanTransformer3DModel(**cfg["transformer"]),
        "vae": lambda: diffusers.AutoencoderKLWan(**cfg["vae"]),
        "text_encoder": lambda: transformers.UMT5EncoderModel(_wan_text_config(cfg["text_encoder"], full_text_encoder)),
    }


def _is_norm(module: Any, leaf: str) -> bool:
    return leaf in ("gamma", "scale") or "norm" in type(module).__name__.lower()


def _fill_random(model: Any, *, device: Any, dtype: Any, seed: int) -> Any:
    """Replace every parameter of ``model`` (on meta) by one on ``device`` in ``dtype`` with random values that
    keep activations in range: weights ~ N(0, 1/fan_in), norm scales 1, biases 0. Buffers (rotary tables,
    position ids) are the ones the constructor computed, moved to ``device``."""
    import torch

    generator = torch.Generator(device=device).manual_seed(seed)
    made: dict[int, Any] = {}  # id of a meta parameter -> its replacement, so tied weights stay tied
    with torch.no_grad():
        for module in model.modules():
            for leaf, param in list(module._parameters.items()):
                if param is None:
                    continue
                if id(param) in made:
                    module._parameters[leaf] = made[id(param)]
                    continue
                data = torch.empty(param.shape, device=device, dtype=dtype)
                if _is_norm(module, leaf) and leaf != "bias":
                    data.fill_(1.0)
                elif param.dim() < 2:
                    data.zero_()
                else:
                    fan_in = math.prod(param.shape[1:])
                    data.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
                made[id(param)] = module._parameters[leaf] = torch.nn.Parameter(data, requires_grad=False)
        for module in model.modules():
            for leaf, buf in list(module._buffers.items()):
                if buf is not None and buf.device.type != torch.device(device).type:
                    module._buffers[leaf] = buf.to(device)
    if hasattr(model, "tie_weights"):  # transformers: UMT5's shared embedding is the encoder's token table
        model.tie_weights()
    return model.eval()


def build_full_models(family: str, device: Any = "meta", dtype: Any = None, *, seed: int = 0,
                      full_text_encoder: bool = False,
                      overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The networks of ``family`` built from the published configs: component name -> module.

    On ``device="meta"`` (the default) nothing is allocated: count parameters with `count_params`. On a real
    device every parameter is drawn there in ``dtype`` (default float16) from ``seed``. ``overrides`` lays
    ``{component: {key: value}}`` over the published config (a scaled-down variant for tests).
    ``full_text_encoder``: Wan's UMT5-XXL at full size (5.7 G params) instead of the 2-layer stand-in.
    """
    import torch
    from accelerate import init_empty_weights

    family = _family(family)
    cfg = _merged(family, overrides)
    makers = _constructors(family, cfg, full_text_encoder)
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            return {name: make().eval() for name, make in makers.items()}
    dtype = dtype or torch.float16
    models = {}
    for offset, (name, make) in enumerate(makers.items(), start=1):
        with init_empty_weights(include_buffers=False):
            model = make()
        models[name] = _fill_random(model, device=device, dtype=dtype, seed=seed * 1000 + offset)
    return models


def count_params(family: str, *, full_text_encoder: bool = True,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, int]:
    """Parameters of each network of ``family``, counted on the meta device (no memory, a few seconds).
    Counts the full UMT5-XXL for Wan unless ``full_text_encoder=False``."""
    models = build_full_models(family, "meta", full_text_encoder=full_text_encoder, overrides=overrides)
    return {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}


def _clip_tokenizer(workdir: Path, model_max_length: int):
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_bpe_files(workdir)
    return CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=model_max_length)


def _pipeline(family: str, folder: Path, cfg: dict[str, dict[str, Any]], models: dict[str, Any]):
    import diffusers

    if family in ("sd15", "sdxl"):
        extra: dict[str, Any] = {"tokenizer": _clip_tokenizer(folder / "tokenizer", 77)}
        if family == "sd15":
            scheduler = diffusers.PNDMScheduler(**cfg["scheduler"])
            # the hub repo ships a safety checker; a random one would only blank random pictures
            extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            return diffusers.StableDiffusionPipeline(**models, **extra, scheduler=scheduler)
        extra["tokenizer_2"] = _clip_tokenizer(folder / "tokenizer_2", 77)
        return diffusers.StableDiffusionXLPipeline(**models, **extra,
                                                   scheduler=diffusers.EulerDiscreteScheduler(**cfg["scheduler"]))
    if family == "svd":
        from transformers import CLIPImageProcessor

        return diffusers.StableVideoDiffusionPipeline(
            **models, feature_extractor=CLIPImageProcessor(**cfg["feature_extractor"]),
            scheduler=diffusers.EulerDiscreteScheduler(**cfg["scheduler"]))
    from transformers import T5Tokenizer

    return diffusers.WanPipeline(
        **models, tokenizer=T5Tokenizer(vocab=t5_unigram_vocab(), extra_ids=0, model_max_length=512),
        scheduler=diffusers.UniPCMultistepScheduler(**cfg["scheduler"]))


def build_full(family: str, folder: str | Path, device: Any = "cpu", dtype: Any = None, *, seed: int = 0,
               full_text_encoder: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write ``family`` at its published size with random weights to ``folder`` (diffusers layout,
    safetensors, local tokenizers); return the folder.

    ``family``: "sd15", "sdxl", "svd" (SVD-XT), "wan" or "t2v" (Wan 2.1 T2V 1.3B), "controlnet-sd15" or
    "controlnet-sdxl" (a `ControlNetModel` folder). The weights are drawn on ``device`` in ``dtype`` (default
    float16) and saved in that dtype; see the module's notes for the memory each family needs.
    ``overrides`` ({component: {key: value}}) shrinks a build for tests; ``full_text_encoder`` builds Wan's
    UMT5-XXL at full size (11.4 GB in fp16) instead of a 2-layer stand-in of the same width.
    """
    import torch

    family = _family(family)
    if torch.device(device).type == "meta":
        raise InvalidParameter("build_full cannot save weights that live on the meta device.", value=str(device),
                               fix='pass device="cpu" or "cuda"; use build_full_models(family, "meta") to count.')
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = _merged(family, overrides)
    models = build_full_models(family, device, dtype, seed=seed, full_text_encoder=full_text_encoder,
                               overrides=overrides)
    if family.startswith("controlnet-"):
        models["controlnet"].save_pretrained(folder, safe_serialization=True)
        return folder
    pipe = _pipeline(family, folder, cfg, models)
    pipe.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer", "tokenizer_2") if family in ("sd15", "sdxl") else ():
        if (folder / name).is_dir():  # classic BPE files beside tokenizer.json, as hub CLIP repos have them
            write_clip_bpe_files(folder / name)
    _fix_model_index(folder, family)
    return folder


def _fix_model_index(folder: Path, family: str) -> None:
    """Make model_index.json name the classes the hub repo names (transformers may save a PIL-backend image
    processor class without torchvision)."""
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    changed = index.get("_class_name") != PIPELINE_CLASSES[family]
    index["_class_name"] = PIPELINE_CLASSES[family]
    if family == "svd" and index.get("feature_extractor", [None, None])[1] != "CLIPImageProcessor":
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        changed = True
    if changed:
        path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
