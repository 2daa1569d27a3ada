"""The published configurations of the real models, one dict per family, for `labkit.testing.build_full`.

Each family maps component name -> keyword arguments of that component's class (the diffusers or
transformers config as the model's hub repo publishes it, minus the bookkeeping keys ``_class_name`` and
``_diffusers_version``). Values left at the class's default in the hub file are written out anyway where
they shape the network, so the dict alone says what is built. Where a value was read from is named
beside it; `SOURCES` lists the file of each component.

How the values were checked (December 2026; the hub itself cannot be reached from the build machine):

- Wan 2.1 T2V 1.3B and SVD-XT: against the diffusers repository (commit 58eb52c0), whose
  ``scripts/convert_wan_to_diffusers.py`` writes the "Wan-T2V-1.3B" transformer config, the T2V scheduler and
  builds the VAE as ``AutoencoderKLWan()``, and whose ``UNetSpatioTemporalConditionModel`` defaults are the
  SVD UNet (XT: ``num_frames`` 25);
- SD 1.5, SDXL, the CLIP and UMT5 encoders and the ControlNets: the hub files' published values, written
  out here; every network's parameter count equals the published figure exactly where one exists
  (`tests/unit/test_full_configs.py` names each figure's source), which a wrong width, depth or head
  layout would not.

Text-encoder vocabularies keep the published size (49,408 for CLIP, 256,384 for UMT5) so that memory is
the real model's; the tokenizers `build_full` writes are the small local ones of `labkit.tokenizers`, whose
ids all fall inside those tables.

Plain data only: importing this module imports no torch.
"""

from __future__ import annotations

import copy
from typing import Any

# openai/clip-vit-large-patch14's text tower, as in runwayml/stable-diffusion-v1-5 text_encoder/config.json
# and stabilityai/stable-diffusion-xl-base-1.0 text_encoder/config.json (CLIPTextModel, 123,060,480 params).
_CLIP_L_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}

# OpenCLIP ViT-bigG/14's text tower: stabilityai/stable-diffusion-xl-base-1.0 text_encoder_2/config.json
# (CLIPTextModelWithProjection, 694,659,840 params).
_CLIP_BIGG_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 1280,
}

# runwayml/stable-diffusion-v1-5 vae/config.json (AutoencoderKL, 83,653,863 params); SDXL's differs in
# sample_size, scaling_factor and force_upcast only.
_SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
}

# runwayml/stable-diffusion-v1-5 unet/config.json (UNet2DConditionModel, 859,520,964 params).
_SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
}

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (UNet2DConditionModel, 2,567,463,684 params).
_SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,  # 768 (CLIP-L) + 1280 (bigG) hidden states, concatenated
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # 6 micro-conditioning ids x 256 + bigG's 1280 pooled
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}

_SD15_SCHEDULER = {  # runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json (PNDMScheduler)
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

_SDXL_SCHEDULER = {  # stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json (EulerDiscrete)
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}

# The ControlNets' conditioning embedding, as both published ControlNets below have it.
_CONTROLNET_COND = {"conditioning_embedding_out_channels": (16, 32, 96, 256), "conditioning_channels": 3}

FULL_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "sd15": {
        "unet": dict(_SD15_UNET),
        "vae": dict(_SD_VAE, scaling_factor=0.18215),
        "text_encoder": dict(_CLIP_L_TEXT),
        "scheduler": dict(_SD15_SCHEDULER),
    },
    "sdxl": {
        "unet": dict(_SDXL_UNET),
        # stabilityai/stable-diffusion-xl-base-1.0 vae/config.json
        "vae": dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        "text_encoder": dict(_CLIP_L_TEXT),
        "text_encoder_2": dict(_CLIP_BIGG_TEXT),
        "scheduler": dict(_SDXL_SCHEDULER),
    },
    "svd": {
        # stabilityai/stable-video-diffusion-img2vid-xt unet/config.json (UNetSpatioTemporalConditionModel,
        # 1,524,623,082 params): the class's defaults, with num_frames 25 (XT) and sample_size 96.
        "unet": {
            "sample_size": 96,
            "in_channels": 8,  # noisy latents + the conditioning image's latents
            "out_channels": 4,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
            "up_block_types": ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
            "cross_attention_dim": 1024,  # the image encoder's projection_dim
            "num_attention_heads": (5, 10, 20, 20),
            "transformer_layers_per_block": 1,
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 768,  # fps, motion_bucket_id, noise_aug_strength x 256
            "num_frames": 25,
        },
        # stabilityai/stable-video-diffusion-img2vid-xt vae/config.json (AutoencoderKLTemporalDecoder)
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": (128, 256, 512, 512),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "layers_per_block": 2,
            "latent_channels": 4,
            "sample_size": 768,
            "scaling_factor": 0.18215,
            "force_upcast": True,
        },
        # stabilityai/stable-video-diffusion-img2vid-xt image_encoder/config.json: OpenCLIP ViT-H/14's vision
        # tower (CLIPVisionModelWithProjection)
        "image_encoder": {
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_attention_heads": 16,
            "num_hidden_layers": 32,
            "patch_size": 14,
            "image_size": 224,
            "num_channels": 3,
            "projection_dim": 1024,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
        },
        # stabilityai/stable-video-diffusion-img2vid-xt feature_extractor/preprocessor_config.json
        "feature_extractor": {
            "size": {"shortest_edge": 224},
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_normalize": True,
            "do_resize": True,
            "resample": 3,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
        },
        # stabilityai/stable-video-diffusion-img2vid-xt scheduler/scheduler_config.json (EulerDiscreteScheduler)
        "scheduler": {
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "interpolation_type": "linear",
            "num_train_timesteps": 1000,
            "prediction_type": "v_prediction",
            "sigma_max": 700.0,
            "sigma_min": 0.002,
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "timestep_type": "continuous",
            "use_karras_sigmas": True,
        },
    },
    "wan": {
        # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json (WanTransformer3DModel), as
        # diffusers' scripts/convert_wan_to_diffusers.py writes it for "Wan-T2V-1.3B"; 1,418,996,800 params.
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 12,
            "attention_head_dim": 128,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 4096,  # UMT5-XXL's d_model
            "freq_dim": 256,
            "ffn_dim": 8960,
            "num_layers": 30,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "added_kv_proj_dim": None,
            "rope_max_seq_len": 1024,
        },
        # Wan-AI/Wan2.1-T2V-1.3B-Diffusers vae/config.json (AutoencoderKLWan): the conversion script builds
        # it as AutoencoderKLWan() with the class defaults, written out here (latents_mean/std left to them).
        "vae": {
            "base_dim": 96,
            "z_dim": 16,
            "dim_mult": [1, 2, 4, 4],  # lists, not tuples: AutoencoderKLWan concatenates them with lists
            "num_res_blocks": 2,
            "attn_scales": [],
            "temperal_downsample": [False, True, True],
            "dropout": 0.0,
        },
        # Wan-AI/Wan2.1-T2V-1.3B-Diffusers text_encoder/config.json: google/umt5-xxl's encoder
        # (UMT5EncoderModel, 5,680,910,336 params; the conversion script loads "google/umt5-xxl").
        "text_encoder": {
            "vocab_size": 256384,
            "d_model": 4096,
            "d_kv": 64,
            "d_ff": 10240,
            "num_layers": 24,
            "num_heads": 64,
            "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128,
            "feed_forward_proj": "gated-gelu",
            "dropout_rate": 0.1,
            "layer_norm_epsilon": 1e-6,
            "tie_word_embeddings": False,
        },
        # Wan-AI/Wan2.1-T2V-1.3B-Diffusers scheduler/scheduler_config.json (UniPCMultistepScheduler), as the
        # conversion script makes it for the T2V models (flow_shift 3.0).
        "scheduler": {
            "prediction_type": "flow_prediction",
            "use_flow_sigmas": True,
            "num_train_timesteps": 1000,
            "flow_shift": 3.0,
        },
    },
}

# UNet keys a ControlNetModel (the encoder half plus zero convolutions) has no use for.
_UNET_ONLY = ("out_channels", "up_block_types", "sample_size", "center_input_sample")

# ControlNetModel configs, by the family they are made for.
FULL_CONTROLNET_CONFIGS: dict[str, dict[str, Any]] = {
    # lllyasviel/control_v11p_sd15_canny config.json: the SD 1.5 UNet's encoder half (361,279,120 params, counted
    # from this config; no published count found)
    "sd15": {
        **{k: v for k, v in _SD15_UNET.items() if k not in _UNET_ONLY},
        **_CONTROLNET_COND,
        "controlnet_conditioning_channel_order": "rgb",
    },
    # diffusers/controlnet-canny-sdxl-1.0 config.json: the SDXL UNet's encoder half (1,251,014,160 params, counted
    # from this config; no published count found)
    "sdxl": {
        **{k: v for k, v in _SDXL_UNET.items() if k not in _UNET_ONLY},
        **_CONTROLNET_COND,
        "controlnet_conditioning_channel_order": "rgb",
    },
}

#: Where each component's config was read from (hub repo and file).
SOURCES: dict[str, dict[str, str]] = {
    "sd15": {c: f"runwayml/stable-diffusion-v1-5 {c}/config.json" for c in ("unet", "vae", "text_encoder")},
    "sdxl": {c: f"stabilityai/stable-diffusion-xl-base-1.0 {c}/config.json"
             for c in ("unet", "vae", "text_encoder", "text_encoder_2")},
    "svd": {c: f"stabilityai/stable-video-diffusion-img2vid-xt {c}/config.json"
            for c in ("unet", "vae", "image_encoder")},
    "wan": {c: f"Wan-AI/Wan2.1-T2V-1.3B-Diffusers {c}/config.json" for c in ("transformer", "vae", "text_encoder")},
    "controlnet-sd15": {"controlnet": "lllyasviel/control_v11p_sd15_canny config.json"},
    "controlnet-sdxl": {"controlnet": "diffusers/controlnet-canny-sdxl-1.0 config.json"},
}

#: The pipeline class each family's hub repo names in its model_index.json.
PIPELINE_CLASSES: dict[str, str] = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "svd": "StableVideoDiffusionPipeline",
    "wan": "WanPipeline",
}

FULL_FAMILIES: tuple[str, ...] = (*FULL_CONFIGS, *(f"controlnet-{f}" for f in FULL_CONTROLNET_CONFIGS))

_ALIASES = {"t2v": "wan", "sd1.5": "sd15", "svd-xt": "svd"}


def canonical_family(family: str) -> str:
    """The name `FULL_CONFIGS` uses for ``family`` ("t2v" -> "wan", "sd1.5" -> "sd15", "svd-xt" -> "svd")."""
    if not isinstance(family, str):
        return family
    if family.startswith("controlnet-"):
        return "controlnet-" + _ALIASES.get(family[len("controlnet-"):], family[len("controlnet-"):])
    return _ALIASES.get(family, family)


def full_config(family: str) -> dict[str, dict[str, Any]]:
    """A deep copy of one family's published configuration (safe to edit); a ControlNet family
    ("controlnet-sd15", "controlnet-sdxl") gives ``{"controlnet": {...}}``. KeyError naming the known ones."""
    name = canonical_family(family)
    if name in FULL_CONFIGS:
        return copy.deepcopy(FULL_CONFIGS[name])
    base = name[len("controlnet-"):] if isinstance(name, str) and name.startswith("controlnet-") else None
    if base in FULL_CONTROLNET_CONFIGS:
        return {"controlnet": copy.deepcopy(FULL_CONTROLNET_CONFIGS[base])}
    raise KeyError(f"no full config for family {family!r}; known: {', '.join(FULL_FAMILIES)} (and t2v for wan)")
