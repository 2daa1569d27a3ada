"""The tiny configurations, one dict per family, in one place.

Each family maps component name -> keyword arguments of that component's config class. Values are
picked to be the smallest that still exercise the real architecture (cross-attention, down/up
sampling, temporal layers), so every pipeline saves in well under 5 MB and renders in about a
second on two CPU cores. Token vocabulary sizes are filled in by the builders from the locally
trained tokenizers (see `labkit.tokenizers`).

Plain data only: importing this module imports no torch.
"""

from __future__ import annotations

import copy
from typing import Any

from labkit.testing.full_configs import FULL_CONFIGS

_CLIP_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-5,
    "hidden_act": "quick_gelu",
    "projection_dim": 32,
}

TINY_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "sd15": {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (8, 16),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "norm_num_groups": 4,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": (8, 16),
            "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
            "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "sample_size": 32,
        },
        "text_encoder": dict(_CLIP_TEXT),
        "scheduler": dict(FULL_CONFIGS["sd15"]["scheduler"]),  # the published SD 1.5 scheduler
    },
    "sdxl": {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (8, 16),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (2, 4),
            "transformer_layers_per_block": (1, 2),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            # 6 micro-conditioning ids x addition_time_embed_dim + text_encoder_2's projection_dim
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "cross_attention_dim": 64,  # text_encoder hidden 32 + text_encoder_2 hidden 32
            "norm_num_groups": 4,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": (8, 16),
            "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
            "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "sample_size": 32,
            "scaling_factor": 0.13025,
        },
        "text_encoder": dict(_CLIP_TEXT),
        "text_encoder_2": dict(_CLIP_TEXT),
        "scheduler": {
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "steps_offset": 1,
            "prediction_type": "epsilon",
            "timestep_spacing": "leading",
            "interpolation_type": "linear",
        },
    },
    "svd": {
        "unet": {
            "sample_size": 16,
            "in_channels": 8,  # noisy latents + image latents
            "out_channels": 4,
            # GroupNorm inside the spatio-temporal blocks is fixed at 32 groups
            "block_out_channels": (32, 32),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            "cross_attention_dim": 32,  # image encoder projection_dim
            "num_attention_heads": (2, 4),
            "addition_time_embed_dim": 8,
            # fps, motion_bucket_id, noise_aug_strength
            "projection_class_embeddings_input_dim": 3 * 8,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": (32, 32),  # 32 GroupNorm groups here too
            "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
            "latent_channels": 4,
            "layers_per_block": 1,
            "sample_size": 32,
        },
        "image_encoder": {
            "hidden_size": 32,
            "intermediate_size": 37,
            "projection_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            # the SVD pipeline always resizes the conditioning image to 224x224 for CLIP
            "image_size": 224,
            "patch_size": 14,  # as in SVD's ViT-H/14: 16x16 patches
            "num_channels": 3,
        },
        "feature_extractor": {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}},
        "scheduler": dict(FULL_CONFIGS["svd"]["scheduler"]),  # the published one: it costs nothing
    },
    "wan": {
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 32,  # text encoder d_model
            "freq_dim": 32,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": 32,
        },
        "vae": {
            "base_dim": 3,
            "z_dim": 16,
            # lists, not tuples: AutoencoderKLWan concatenates them with lists
            "dim_mult": [1, 1, 1, 1],
            "num_res_blocks": 1,
            "temperal_downsample": [False, True, True],
        },
        "text_encoder": {
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 37,
            "num_layers": 2,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 32,
            "feed_forward_proj": "gated-gelu",
            "dropout_rate": 0.0,
        },
        "scheduler": {"shift": 3.0},
    },
}

FAMILIES: tuple[str, ...] = tuple(TINY_CONFIGS)


def tiny_config(family: str) -> dict[str, dict[str, Any]]:
    """A deep copy of one family's tiny configuration (safe to edit)."""
    try:
        return copy.deepcopy(TINY_CONFIGS[family])
    except KeyError:
        raise KeyError(f"no tiny config for family {family!r}; known: {', '.join(FAMILIES)}") from None
