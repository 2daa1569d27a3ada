"""Tiny random-weight diffusers pipelines for tests — labkit's and your own CI's.

Every builder writes a folder in standard diffusers layout (``model_index.json``, one folder per
component, safetensors weights, locally built tokenizers) and returns its path, so the model loads
through exactly the path a hub model takes::

    from labkit.testing import build_tiny_sd15
    folder = build_tiny_sd15(tmp_path / "sd15", seed=0)
    pipe = DiffusionPipeline.from_pretrained(folder)   # offline; renders 32x32 in well under a second

Builders (all ``(folder, seed=0) -> Path``; the same seed gives byte-identical weights):

- `build_tiny_sd15` — StableDiffusionPipeline
- `build_tiny_sdxl` — StableDiffusionXLPipeline
- `build_tiny_svd` — StableVideoDiffusionPipeline (image to video)
- `build_tiny_t2v` — WanPipeline (text to video)
- `build_tiny(family, folder, seed=0)` — by family name: "sd15", "sdxl", "svd", "wan"
- `build_tiny_controlnet(family, folder, seed=0)` — ControlNetModel for the tiny "sd15" or "sdxl" pipeline

Other formats of the tiny SD 1.5: `save_single_file_sd15` (one original-layout .safetensors that
``StableDiffusionPipeline.from_single_file(path, config=folder, local_files_only=True)`` loads),
`save_pickle_checkpoint` (the same as a pickled .ckpt) and `save_pickle_pipeline` (a diffusers folder
with pickle .bin weights). The configs live in `TINY_CONFIGS`.

Real sizes, offline: `build_full(family, folder, device="cpu", dtype=torch.float16)` writes SD 1.5, SDXL,
SVD-XT, Wan 2.1 T2V 1.3B ("t2v") or an SD 1.5 / SDXL ControlNet ("controlnet-sd15", "controlnet-sdxl") at the
published architecture with random weights (same memory and speed as the real model, no hub; configs in
`FULL_CONFIGS`, sources named in `labkit.testing.full_configs`). `build_full_models(family)` builds the networks
on the meta device (no memory) and `count_params(family)` counts them.

Random weights draw noise: use these for plumbing, the toy world for quality. Importing this
package imports neither torch nor diffusers; each builder imports them when called.
"""

from __future__ import annotations

from labkit._lazy import lazy_exports

_EXPORTS = {
    "build_tiny": "labkit.testing.builders",
    "build_tiny_controlnet": "labkit.testing.builders",
    "build_tiny_sd15": "labkit.testing.builders",
    "build_tiny_sdxl": "labkit.testing.builders",
    "build_tiny_svd": "labkit.testing.builders",
    "build_tiny_t2v": "labkit.testing.builders",
    "BUILDERS": "labkit.testing.builders",
    "build_full": "labkit.testing.full",
    "build_full_models": "labkit.testing.full",
    "count_params": "labkit.testing.full",
    "FULL_CONFIGS": "labkit.testing.full_configs",
    "FULL_CONTROLNET_CONFIGS": "labkit.testing.full_configs",
    "full_config": "labkit.testing.full_configs",
    "save_single_file_sd15": "labkit.testing.checkpoints",
    "save_pickle_checkpoint": "labkit.testing.checkpoints",
    "save_pickle_pipeline": "labkit.testing.checkpoints",
    "sd15_ldm_state_dict": "labkit.testing.checkpoints",
    "TINY_CONFIGS": "labkit.testing.configs",
    "FAMILIES": "labkit.testing.configs",
    "tiny_config": "labkit.testing.configs",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
