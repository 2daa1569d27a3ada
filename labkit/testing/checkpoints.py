"""Other file formats of the tiny pipelines: single-file LDM checkpoints and pickle variants.

`save_single_file_sd15` is the reverse of diffusers' single-file conversion
(`diffusers.loaders.single_file_utils.convert_ldm_unet_checkpoint` / `convert_ldm_vae_checkpoint` /
`convert_ldm_clip_checkpoint`): it renames a diffusers SD 1.5 folder's UNet, VAE and CLIP text
encoder weights to the original CompVis names (``model.diffusion_model.*``,
``first_stage_model.*``, ``cond_stage_model.transformer.*``) so that::

    StableDiffusionPipeline.from_single_file(path, config=folder, local_files_only=True)

loads it offline and renders the same pixels as ``DiffusionPipeline.from_pretrained(folder)``.

The pickle writers exist so loaders can be tested refusing ``.ckpt`` / ``.bin`` files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_RESNET_RENAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_TOP_LEVEL = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}
_VAE_ATTN_RENAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _split(key: str, n: int) -> tuple[list[str], str]:
    parts = key.split(".")
    return parts[:n], ".".join(parts[n:])


def _rename_resnet(rest: str) -> str:
    for new, old in _UNET_RESNET_RENAMES:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(f"unexpected UNet resnet parameter {rest!r}")


def unet_diffusers_to_ldm(state_dict: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Rename a `UNet2DConditionModel` state dict to original LDM names (without the prefix).

    Layout of the original UNet: ``input_blocks.0`` is conv_in; each down level then has
    ``layers_per_block`` blocks (``.0`` resnet, ``.1`` transformer) and, except the last level,
    a downsampler (``.0.op``); ``middle_block.0/1/2`` is resnet/transformer/resnet; each up level has
    ``layers_per_block + 1`` output blocks (``.0`` resnet, ``.1`` transformer) with the upsampler
    at ``.1.conv`` or, after a transformer, ``.2.conv``.
    """
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("only an integer layers_per_block maps onto the original LDM layout")
    has_up_attn = {int(k.split(".")[1]) for k in state_dict if k.startswith("up_blocks.") and ".attentions." in k}
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        head, rest = _split(key, 1)
        stem = key.rsplit(".", 1)[0]
        if stem in _UNET_TOP_LEVEL:
            new = _UNET_TOP_LEVEL[stem] + "." + key.rsplit(".", 1)[1]
        elif head[0] == "down_blocks":
            (_, b, kind, j), rest = _split(key, 4)
            b, j = int(b), int(j)
            if kind == "resnets":
                new = f"input_blocks.{1 + b * (layers + 1) + j}.0.{_rename_resnet(rest)}"
            elif kind == "attentions":
                new = f"input_blocks.{1 + b * (layers + 1) + j}.1.{rest}"
            elif kind == "downsamplers":  # rest is "conv.weight" / "conv.bias"
                new = f"input_blocks.{1 + b * (layers + 1) + layers}.0.op.{rest.split('.', 1)[1]}"
            else:
                raise KeyError(f"unexpected UNet key {key!r}")
        elif head[0] == "mid_block":
            (_, kind, j), rest = _split(key, 3)
            if kind == "resnets":
                new = f"middle_block.{2 * int(j)}.{_rename_resnet(rest)}"
            elif kind == "attentions":
                new = f"middle_block.1.{rest}"
            else:
                raise KeyError(f"unexpected UNet key {key!r}")
        elif head[0] == "up_blocks":
            (_, b, kind, j), rest = _split(key, 4)
            b, j = int(b), int(j)
            if kind == "resnets":
                new = f"output_blocks.{b * (layers + 1) + j}.0.{_rename_resnet(rest)}"
            elif kind == "attentions":
                new = f"output_blocks.{b * (layers + 1) + j}.1.{rest}"
            elif kind == "upsamplers":
                slot = 2 if b in has_up_attn else 1
                new = f"output_blocks.{b * (layers + 1) + layers}.{slot}.{rest}"
            else:
                raise KeyError(f"unexpected UNet key {key!r}")
        else:
            raise KeyError(f"unexpected UNet key {key!r}")
        out[new] = value
    if len(out) != len(state_dict):
        raise AssertionError("two UNet keys mapped to the same LDM name")
    return out


def vae_diffusers_to_ldm(state_dict: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Rename an `AutoencoderKL` state dict to original LDM names (without the prefix).

    The decoder's up blocks run in reverse order in the original (``up.{n-1-i}``), and the
    mid-block attention's linear layers are 1x1 convolutions there.
    """
    n_up = len(config["up_block_types"])
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        stem, leaf = key.rsplit(".", 1)
        side, *parts = stem.split(".")
        if stem in _VAE_TOP_LEVEL:
            new = f"{_VAE_TOP_LEVEL[stem]}.{leaf}"
        elif parts[0] in ("down_blocks", "up_blocks"):
            i = int(parts[1])
            level = f"down.{i}" if parts[0] == "down_blocks" else f"up.{n_up - 1 - i}"
            if parts[2] == "resnets":
                layer = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{level}.block.{parts[3]}.{layer}.{leaf}"
            elif parts[2] == "downsamplers":
                new = f"{side}.{level}.downsample.conv.{leaf}"
            elif parts[2] == "upsamplers":
                new = f"{side}.{level}.upsample.conv.{leaf}"
            else:
                raise KeyError(f"unexpected VAE key {key!r}")
        elif parts[0] == "mid_block" and parts[1] == "resnets":
            layer = ".".join(parts[3:]).replace("conv_shortcut", "nin_shortcut")
            new = f"{side}.mid.block_{int(parts[2]) + 1}.{layer}.{leaf}"
        elif parts[0] == "mid_block" and parts[1] == "attentions":
            inner = ".".join(parts[3:])
            new = f"{side}.mid.attn_1.{_VAE_ATTN_RENAMES[inner]}.{leaf}"
            if leaf == "weight" and inner != "group_norm":
                value = value[:, :, None, None]  # linear -> 1x1 conv
        else:
            raise KeyError(f"unexpected VAE key {key!r}")
        out[new] = value
    if len(out) != len(state_dict):
        raise AssertionError("two VAE keys mapped to the same LDM name")
    return out


def clip_diffusers_to_ldm(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Rename a `CLIPTextModel` state dict to the original names (without the prefix).

    transformers >= 5.6 saves `CLIPTextModel` without its ``text_model.`` wrapper; the original
    checkpoints (and diffusers' detection of them) always have it.
    """
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state_dict.items()}


def _read_component(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    sub = folder / name
    weights = sorted(sub.glob("*.safetensors"))
    if len(weights) != 1:
        raise FileNotFoundError(f"expected one .safetensors file in {sub}, found {[w.name for w in weights]}")
    return load_file(str(weights[0])), json.loads((sub / "config.json").read_text())


def sd15_ldm_state_dict(pipeline_folder: str | Path) -> dict[str, Any]:
    """The whole SD 1.5 pipeline in one state dict with original CompVis key names."""
    folder = Path(pipeline_folder)
    unet, unet_cfg = _read_component(folder, "unet")
    vae, vae_cfg = _read_component(folder, "vae")
    text, _ = _read_component(folder, "text_encoder")
    state: dict[str, Any] = {}
    state.update({LDM_UNET_PREFIX + k: v for k, v in unet_diffusers_to_ldm(unet, unet_cfg).items()})
    state.update({LDM_VAE_PREFIX + k: v for k, v in vae_diffusers_to_ldm(vae, vae_cfg).items()})
    state.update({LDM_CLIP_PREFIX + k: v for k, v in clip_diffusers_to_ldm(text).items()})
    return {k: v.contiguous() for k, v in state.items()}


def save_single_file_sd15(pipeline_folder: str | Path, out_path: str | Path) -> Path:
    """Write the SD 1.5 folder at ``pipeline_folder`` as one original-layout ``.safetensors`` file.

    Load it back offline with
    ``StableDiffusionPipeline.from_single_file(out_path, config=str(pipeline_folder), local_files_only=True)``;
    the folder supplies the component configs, tokenizer and scheduler, as a hub repo would.
    """
    from safetensors.torch import save_file

    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise ValueError(f"single-file checkpoint must end in .safetensors, got {out_path.name!r}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd15_ldm_state_dict(pipeline_folder), str(out_path), metadata={"format": "pt"})
    return out_path


def save_pickle_checkpoint(pipeline_folder: str | Path, out_path: str | Path) -> Path:
    """Write the SD 1.5 folder as a classic pickled ``.ckpt`` (``{"state_dict": ...}``, LDM names).

    Same weights as `save_single_file_sd15`, in the format loaders should refuse unless the user
    allowed pickle files.
    """
    import torch

    out_path = Path(out_path)
    if out_path.suffix not in (".ckpt", ".bin", ".pt", ".pth"):
        raise ValueError(f"pickle checkpoint should end in .ckpt/.bin/.pt/.pth, got {out_path.name!r}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd15_ldm_state_dict(pipeline_folder)}, out_path)
    return out_path


def save_pickle_pipeline(pipeline_folder: str | Path, out_folder: str | Path) -> Path:
    """Copy a diffusers folder with every ``.safetensors`` weight file re-saved as a pickle ``.bin``.

    diffusers components get ``diffusion_pytorch_model.bin`` and transformers ones
    ``pytorch_model.bin`` — the names older hub repos use — so the folder still loads with
    ``from_pretrained(..., use_safetensors=False)``.
    """
    import torch
    from safetensors.torch import load_file

    src, dst = Path(pipeline_folder), Path(out_folder)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"), dirs_exist_ok=True)
    for weights in src.rglob("*.safetensors"):
        rel = weights.relative_to(src)
        name = "pytorch_model.bin" if weights.name.startswith("model") else "diffusion_pytorch_model.bin"
        torch.save(load_file(str(weights)), dst / rel.parent / name)
    return dst
