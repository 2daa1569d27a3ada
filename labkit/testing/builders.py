"""Builders for tiny random-weight diffusers pipelines, saved in standard diffusers layout.

Each ``build_tiny_*`` writes ``model_index.json`` plus one folder per component (safetensors
weights, JSON configs, tokenizer files) and returns the folder, so a test loads it with
``DiffusionPipeline.from_pretrained(folder)`` — exactly the path a hub model takes. Nothing is
downloaded: tokenizers are trained locally (`labkit.tokenizers`) and every model is built from
the configs in `labkit.testing.configs`.

The weights are random, so the pictures are noise: use these models to test plumbing (loading,
memory strategies, shapes, seeding, file formats), and the toy world for anything about quality.
The same ``seed`` gives byte-identical weight files; the caller's global torch RNG is left as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.testing.configs import tiny_config
from labkit.tokenizers import CLIP_BOS, CLIP_EOS, t5_unigram_vocab, train_clip_bpe, write_clip_bpe_files


def _seeded(seed: int, offset: int, make: Callable[[], Any]) -> Any:
    """Build one component from its own seed, leaving the global RNG untouched.

    Each component gets ``seed * 1000 + offset`` so that changing one component's config does not
    shift the random weights of the others.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + offset)
        module = make()
    return module.eval()


def _clip_tokenizer(workdir: Path, model_max_length: int):
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_bpe_files(workdir)
    return CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=model_max_length)


def _clip_text_config(cfg: dict[str, Any]):
    from transformers import CLIPTextConfig

    vocab, _ = train_clip_bpe()
    return CLIPTextConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab[CLIP_BOS],
        eos_token_id=vocab[CLIP_EOS],
        pad_token_id=vocab[CLIP_EOS],
        **cfg,
    )


def _save(pipe, folder: str | Path, tokenizer_dirs: tuple[str, ...] = ()) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(folder, safe_serialization=True)
    # transformers 5 saves only tokenizer.json; keep the classic BPE files beside it as hub CLIP
    # repos have them, for tools that read vocab.json/merges.txt directly.
    for name in tokenizer_dirs:
        write_clip_bpe_files(folder / name)
    return folder


def build_tiny_sd15(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random `StableDiffusionPipeline` (SD 1.5 layout) to ``folder``; return it.

    Components: `UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextModel`, a local byte-level BPE
    `CLIPTokenizer` and a `PNDMScheduler`; no safety checker or feature extractor. Saves ~0.6 MB.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    cfg = tiny_config("sd15")
    folder = Path(folder)
    unet = _seeded(seed, 1, lambda: UNet2DConditionModel(**cfg["unet"]))
    vae = _seeded(seed, 2, lambda: AutoencoderKL(**cfg["vae"]))
    text_encoder = _seeded(seed, 3, lambda: CLIPTextModel(_clip_text_config(cfg["text_encoder"])))
    tokenizer = _clip_tokenizer(folder / "tokenizer", cfg["text_encoder"]["max_position_embeddings"])
    scheduler = PNDMScheduler(**cfg["scheduler"])
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _save(pipe, folder, ("tokenizer",))


def build_tiny_sdxl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random `StableDiffusionXLPipeline` to ``folder``; return it.

    Two text encoders (`CLIPTextModel`, `CLIPTextModelWithProjection`) with two local BPE tokenizers,
    a ``text_time`` UNet whose ``projection_class_embeddings_input_dim`` matches them, an
    `AutoencoderKL` and an `EulerDiscreteScheduler`.
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cfg = tiny_config("sdxl")
    folder = Path(folder)
    unet = _seeded(seed, 1, lambda: UNet2DConditionModel(**cfg["unet"]))
    vae = _seeded(seed, 2, lambda: AutoencoderKL(**cfg["vae"]))
    text_encoder = _seeded(seed, 3, lambda: CLIPTextModel(_clip_text_config(cfg["text_encoder"])))
    text_encoder_2 = _seeded(seed, 4, lambda: CLIPTextModelWithProjection(_clip_text_config(cfg["text_encoder_2"])))
    tokenizer = _clip_tokenizer(folder / "tokenizer", cfg["text_encoder"]["max_position_embeddings"])
    tokenizer_2 = _clip_tokenizer(folder / "tokenizer_2", cfg["text_encoder_2"]["max_position_embeddings"])
    scheduler = EulerDiscreteScheduler(**cfg["scheduler"])
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    return _save(pipe, folder, ("tokenizer", "tokenizer_2"))


def build_tiny_svd(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random `StableVideoDiffusionPipeline` (image-to-video) to ``folder``; return it.

    Components: `UNetSpatioTemporalConditionModel`, `AutoencoderKLTemporalDecoder`,
    `CLIPVisionModelWithProjection`, `CLIPImageProcessor` and a v-prediction Karras
    `EulerDiscreteScheduler`, as in the hub SVD checkpoints.
    """
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = tiny_config("svd")
    folder = Path(folder)
    unet = _seeded(seed, 1, lambda: UNetSpatioTemporalConditionModel(**cfg["unet"]))
    vae = _seeded(seed, 2, lambda: AutoencoderKLTemporalDecoder(**cfg["vae"]))
    image_encoder = _seeded(seed, 3, lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"])))
    feature_extractor = CLIPImageProcessor(**cfg["feature_extractor"])
    scheduler = EulerDiscreteScheduler(**cfg["scheduler"])
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
    folder = _save(pipe, folder)
    # Without torchvision transformers hands back its PIL-backend class; record the class name hub
    # SVD repos use, so loading resolves it the way it would for them.
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    if index.get("feature_extractor", [None, None])[1] != "CLIPImageProcessor":
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return folder


def build_tiny_t2v(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random `WanPipeline` (text-to-video, Wan 2.1 layout) to ``folder``; return it.

    Components: `WanTransformer3DModel`, `AutoencoderKLWan`, `UMT5EncoderModel`, a local unigram
    `T5Tokenizer` (UMT5's tokenizer family) and a `FlowMatchEulerDiscreteScheduler`.
    """
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    cfg = tiny_config("wan")
    folder = Path(folder)
    vocab = t5_unigram_vocab()
    transformer = _seeded(seed, 1, lambda: WanTransformer3DModel(**cfg["transformer"]))
    vae = _seeded(seed, 2, lambda: AutoencoderKLWan(**cfg["vae"]))
    text_encoder = _seeded(
        seed,
        3,
        lambda: UMT5EncoderModel(
            UMT5Config(vocab_size=len(vocab), pad_token_id=0, eos_token_id=1, **cfg["text_encoder"])
        ),
    )
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    scheduler = FlowMatchEulerDiscreteScheduler(**cfg["scheduler"])
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    return _save(pipe, folder)


def build_tiny_controlnet(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random `ControlNetModel` for the tiny ``family`` pipeline ("sd15" or "sdxl") to ``folder``.

    Made from that family's tiny UNet config (`ControlNetModel.from_unet`, as the diffusers training script
    starts one), with a conditioning embedding that downsamples as much as the tiny VAE does (2x), and with
    its zero convolutions given small random weights instead of zeros, so that a control image changes the
    picture (a freshly made ControlNet does nothing until trained). Its family shows in its config as a
    hub ControlNet's does (SDXL's has ``"addition_embed_type": "text_time"``).
    """
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    family = _ALIASES.get(family, family)
    if family not in ("sd15", "sdxl"):
        raise KeyError(f"no tiny ControlNet for family {family!r}; known: sd15, sdxl")
    cfg = tiny_config(family)

    def make():
        unet = UNet2DConditionModel(**cfg["unet"])
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
        with torch.no_grad():
            for block in (*net.controlnet_down_blocks, net.controlnet_mid_block):
                block.weight.normal_(0.0, 0.2)
                block.bias.normal_(0.0, 0.05)
            net.controlnet_cond_embedding.conv_out.weight.normal_(0.0, 0.2)
        return net

    net = _seeded(seed, 7, make)
    folder = Path(folder)
    net.save_pretrained(folder, safe_serialization=True)
    return folder


BUILDERS: dict[str, Callable[..., Path]] = {
    "sd15": build_tiny_sd15,
    "sdxl": build_tiny_sdxl,
    "svd": build_tiny_svd,
    "wan": build_tiny_t2v,
}


_ALIASES = {"t2v": "wan", "sd1.5": "sd15"}


def build_tiny(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline of ``family`` (one of `BUILDERS`; "t2v" means "wan") into ``folder``."""
    try:
        builder = BUILDERS[_ALIASES.get(family, family)]
    except KeyError:
        raise KeyError(f"no tiny builder for family {family!r}; known: {', '.join(BUILDERS)}") from None
    return builder(folder, seed=seed)
