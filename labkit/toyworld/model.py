"""The toy model's parts, built from configs: a real Stable Diffusion layout at toy size.

`build_components()` returns the five components of a `StableDiffusionPipeline` — a CLIP-style
byte-level BPE `CLIPTokenizer`, a small `CLIPTextModel`, a small `AutoencoderKL` (64×64×3 ↔
32×32×4), a small `UNet2DConditionModel` with cross-attention, and a v-prediction `DDIMScheduler`
with the cosine ("squaredcos_cap_v2") schedule — and `save_pipeline()` writes them with
`save_pretrained` (safetensors) plus `"labkit": {"family": "toy"}` in `model_index.json`. The
folder therefore loads with `StableDiffusionPipeline.from_pretrained(folder)`, and diffusers'
LoRA / ControlNet / AnimateDiff machinery applies to it unchanged.

The tokenizer is a real BPE in CLIP's format (byte symbols with and without the ``</w>`` end-of-word
mark, merges learned from the toy world's captions plus common English words), so words it never
saw — "hexagon", "sks" — spell out as several known tokens and new concepts need no new tokenizer.

Nothing happens at import; torch, diffusers and transformers are imported inside the builders.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Licence of the toy model's weights: trained only on procedurally generated scenes.
LICENCE = "CC0-1.0"
#: model_index.json key labkit's loader reads to tell the model family.
FAMILY = "toy"
#: Image size the toy model renders, and the VAE's downsampling factor.
IMAGE_SIZE = 64
VAE_FACTOR = 2

# Common English words the tokenizer learns merges from, besides the toy world's caption words.
# New-concept words ("hexagon", "star", "sks") are deliberately absent, so they spell out.
ENGLISH_WORDS: tuple[str, ...] = tuple("""
a an the of in on at to and or with without for from by as is are be this that it its
one two three four five six seven eight nine ten first second some many few no not all each both
left right top bottom center centre middle up down above below under over near far next beside between
small large big tiny little huge medium tall short wide long thin thick round flat sharp soft
red green blue yellow purple cyan white black orange pink brown gray grey gold silver violet magenta
dark light bright pale deep colour color shape shapes object objects thing picture photo image
painting drawing sketch render scene background foreground style art simple plain clean
circle square triangle diamond ring dot line box ball block
cat dog car tree house sky sun moon water fire cloud flower bird fish person man woman face hand
new old good best beautiful pretty nice happy high low front back side corner edge
""".split())

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"


def caption_corpus() -> list[str]:
    """Words of every caption template applied to every object combination (with repetitions): what
    the BPE's merges are learned from, weighted by how often the toy grammar uses each word."""
    import re

    from labkit.toyworld.captions import _JOINERS, OBJECT_TEMPLATES, caption
    from labkit.toyworld.scenes import Scene, all_objects

    words: list[str] = []
    for obj in all_objects():
        for t in range(len(OBJECT_TEMPLATES)):
            words += re.findall(r"[a-z]+", caption(Scene((obj,)), template=t))
    for j in _JOINERS:
        words += re.findall(r"[a-z]+", j) * 50
    # the benchmark's count and relation captions ("three blue circles", "a red square left of a green circle"),
    # so a model trained on them reads "three", "circles", "above" as one token each
    import numpy as np

    from labkit.toyworld.geneval import scene_for

    rng = np.random.default_rng(0)
    for kind in ("count", "relation"):
        for _ in range(400):
            words += re.findall(r"[a-z]+", scene_for(rng, kind)[1])
    return words


def train_tokenizer_files(folder: str | Path, max_merges: int = 2000) -> tuple[Path, Path]:
    """Learn the toy tokenizer's BPE and write `vocab.json` + `merges.txt` (CLIP's format) into `folder`.

    Merges are learned (deterministically) from the toy captions' word frequencies plus one count of
    each word in `ENGLISH_WORDS`, until every corpus word is one token or `max_merges` is reached.
    """
    from labkit.tokenizers import train_clip_bpe

    counts = Counter(caption_corpus())
    for w in ENGLISH_WORDS:
        counts[w] += 1
    words = tuple(w for w, c in sorted(counts.items()) for _ in range(c))
    vocab, merges = train_clip_bpe(words, max_merges=max_merges)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


@dataclass
class ToyModelConfig:
    """Sizes of the toy model's components (kwargs of each diffusers / transformers config class).

    The defaults follow DESIGN.md's data point: a ~1.7 M-parameter UNet with blocks 32/64/64, one
    layer per block, cross-attention dim 64, 16 groups, v-prediction on a cosine schedule — here in
    the 32×32×4 latent space of a small VAE instead of pixel space.
    """

    max_length: int = 32
    text_encoder: dict[str, Any] = field(default_factory=lambda: {
        "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
        "projection_dim": 64, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    })
    vae: dict[str, Any] = field(default_factory=lambda: {
        "in_channels": 3, "out_channels": 3, "block_out_channels": (16, 32),
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 8, "sample_size": IMAGE_SIZE,
        "mid_block_add_attention": False, "scaling_factor": 1.0,
    })
    unet: dict[str, Any] = field(default_factory=lambda: {
        "sample_size": IMAGE_SIZE // VAE_FACTOR, "in_channels": 4, "out_channels": 4,
        "block_out_channels": (32, 64, 64), "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        # conv_in stays 3×3: diffusers' UNetMotionModel and ControlNetModel hard-code it, and the toy
        # UNet must take AnimateDiff and ControlNet unchanged.
        "cross_attention_dim": 64, "attention_head_dim": 4, "norm_num_groups": 16,
    })
    scheduler: dict[str, Any] = field(default_factory=lambda: {
        "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
        "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "trailing",
    })

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))


def build_tokenizer(folder: str | Path, config: ToyModelConfig | None = None):
    """The toy `CLIPTokenizer`, its files written into `folder` (learned locally; no download)."""
    from transformers import CLIPTokenizer

    config = config or ToyModelConfig()
    vocab_path, merges_path = train_tokenizer_files(folder)
    return CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=config.max_length)


def _seeded(seed: int, make):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_components(workdir: str | Path, config: ToyModelConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Fresh (untrained) toy components: tokenizer, text_encoder, vae, unet, scheduler.

    Each model is initialised from its own seed derived from `seed`, leaving the global RNG as it was.
    The tokenizer's files go to `workdir/tokenizer`.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = config or ToyModelConfig()
    tokenizer = build_tokenizer(Path(workdir) / "tokenizer", config)
    vocab = tokenizer.get_vocab()
    text_cfg = CLIPTextConfig(vocab_size=len(vocab), max_position_embeddings=config.max_length,
                              bos_token_id=vocab[CLIP_BOS], eos_token_id=vocab[CLIP_EOS],
                              pad_token_id=vocab[CLIP_EOS], **config.text_encoder)
    if config.unet["cross_attention_dim"] != text_cfg.hidden_size:
        from labkit.errors import InvalidParameter

        raise InvalidParameter(
            f"UNet cross_attention_dim {config.unet['cross_attention_dim']} differs from the text encoder's "
            f"hidden size {text_cfg.hidden_size}.", value=config.unet["cross_attention_dim"],
            fix="make them equal.")
    return {
        "tokenizer": tokenizer,
        "text_encoder": _seeded(seed * 1000 + 3, lambda: CLIPTextModel(text_cfg)),
        "vae": _seeded(seed * 1000 + 2, lambda: AutoencoderKL(**config.vae)),
        "unet": _seeded(seed * 1000 + 1, lambda: UNet2DConditionModel(**config.unet)),
        "scheduler": DDIMScheduler(**config.scheduler),
    }


def make_pipeline(components: dict[str, Any]):
    """A `StableDiffusionPipeline` from toy components (no safety checker, no feature extractor)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=components["vae"], text_encoder=components["text_encoder"], tokenizer=components["tokenizer"],
        unet=components["unet"], scheduler=components["scheduler"], safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(components_or_pipe: Any, folder: str | Path, card: str | None = None,
                  labkit_meta: dict[str, Any] | None = None) -> Path:
    """Write the toy pipeline to `folder` in diffusers layout (safetensors), tag its family, add a card.

    `model_index.json` gets ``"labkit": {"family": "toy", ...labkit_meta}``; the tokenizer folder also
    keeps the classic `vocab.json` / `merges.txt`; `card` (Markdown) is written as `README.md`.
    """
    import shutil
    import tempfile

    from labkit.pipelines.loader import quiet_loading

    pipe = components_or_pipe if hasattr(components_or_pipe, "save_pretrained") else make_pipeline(components_or_pipe)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        pipe.save_pretrained(folder, safe_serialization=True)
    tok_dir = folder / "tokenizer"
    src = Path(getattr(pipe.tokenizer, "vocab_file", "") or "")
    if src.is_file() and not (tok_dir / "vocab.json").exists():
        shutil.copy(src, tok_dir / "vocab.json")
        shutil.copy(src.with_name("merges.txt"), tok_dir / "merges.txt")
    elif not (tok_dir / "vocab.json").exists():
        with tempfile.TemporaryDirectory() as tmp:
            v, m = train_tokenizer_files(tmp)
            shutil.copy(v, tok_dir / "vocab.json")
            shutil.copy(m, tok_dir / "merges.txt")
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["labkit"] = {"family": FAMILY, **(labkit_meta or {})}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def build_untrained(folder: str | Path, config: ToyModelConfig | None = None, seed: int = 0) -> Path:
    """Write an untrained toy pipeline to `folder` (for plumbing tests); return the folder."""
    folder = Path(folder)
    comps = build_components(folder / "_build", config, seed)
    out = save_pipeline(comps, folder, labkit_meta={"trained": False})
    import shutil

    shutil.rmtree(folder / "_build", ignore_errors=True)
    return out


def weights_bytes(folder: str | Path) -> int:
    """Total size of the weight files (*.safetensors / *.bin) under `folder`."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.suffix in (".safetensors", ".bin"))


__all__ = [
    "ENGLISH_WORDS", "FAMILY", "IMAGE_SIZE", "LICENCE", "VAE_FACTOR", "ToyModelConfig", "build_components",
    "build_tokenizer", "build_untrained", "caption_corpus", "make_pipeline", "save_pipeline",
    "train_tokenizer_files", "weights_bytes",
]
