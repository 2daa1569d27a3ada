"""ControlNets on a loaded SD 1.5 or SDXL pipeline: found, checked against the base model's family, loaded in
its dtype and device, and joined to it for one call.

    nets = [load_controlnet(find_controlnet(c.model), base=loaded) for c in plan.controls]
    pipe = with_controlnets(loaded.pipe, nets, task="txt2img")         # diffusers' ControlNet pipeline
    images = pipe(prompt, **control_kwargs(plan.controls, maps, task="txt2img"), …).images

`with_controlnets` builds diffusers' `StableDiffusion[XL]ControlNet[Img2Img]Pipeline` from the loaded
pipeline's own components (`from_pipe`: nothing is copied, the LoRA adapters active on its UNet stay
active), several ControlNets as a `MultiControlNetModel` with one scale and one start/end per net. A
ControlNet is a folder with a diffusers `config.json` (`ControlNetModel`) or a hub repo in the local cache;
its family is read from its config (SDXL's have ``"addition_embed_type": "text_time"`` and 2048-wide
cross-attention), and one made for another family fails before any step with both families named.
Loaded ControlNets are kept (`_CACHE`, a few) so a series of controlled renders loads each once.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter, ModelNotCached, UnknownModel

#: The diffusers class for (family, task).
CLASSES = {("sd15", "txt2img"): "StableDiffusionControlNetPipeline",
           ("sd15", "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
           ("sdxl", "txt2img"): "StableDiffusionXLControlNetPipeline",
           ("sdxl", "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline"}
_CACHE: OrderedDict[tuple, ControlNet] = OrderedDict()
_CACHE_SIZE = 4


@dataclass(frozen=True)
class ControlNet:
    """A loaded ControlNet: the model, where it came from, its family and the hash of its weights."""

    net: Any
    id: str
    folder: Path
    family: str
    sha256: str
    revision: str | None = None


def family_of(config: dict[str, Any]) -> str:
    """"sdxl" or "sd15", from a ControlNet's `config.json`."""
    cross = config.get("cross_attention_dim")
    if config.get("addition_embed_type") == "text_time" or cross == 2048:
        return "sdxl"
    return "sd15"


def find_controlnet(model: str) -> tuple[Path, str | None]:
    """The local folder of ControlNet `model` (a folder, or a hub repo id from the local cache) and its
    revision (hub) — `ModelNotCached` with the download command when a hub repo is not cached."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UnknownModel(f"{model!r} is not a ControlNet folder: it has no config.json.", value=model,
                               fix="give a diffusers ControlNet folder (config.json + diffusion_pytorch_model."
                                   "safetensors) or a hub repo id.")
        return path, None
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        raise UnknownModel(f"No ControlNet {model!r}: not a folder here, nor a hub repo id.", value=model,
                           fix="give a ControlNet folder or a hub id such as lllyasviel/control_v11p_sd15_canny.")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(model, local_files_only=True,
                                        allow_patterns=["config.json", "*.safetensors"]))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several kinds for "not here"
        raise ModelNotCached(f"The ControlNet {model!r} is not in the local Hugging Face cache.", value=model,
                             fix=f"download it once: hf download {model} config.json "
                                 "diffusion_pytorch_model.safetensors") from e
    return folder, folder.name


def check_controlnet(model: str, *, family: str, base_id: str = "the model") -> tuple[Path, str | None]:
    """Find ControlNet `model` and check it is a ControlNet made for `family`, reading its config only
    (what a plan is checked with before a run opens): its folder and revision."""
    folder, revision = find_controlnet(model)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise UnknownModel(f"The ControlNet {model!r} has an unreadable config.json: {e}.", value=model,
                           fix="download it again.") from e
    if not isinstance(config, dict) or config.get("_class_name") not in ("ControlNetModel", None):
        what = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise UnknownModel(f"{model!r} is a {what}, not a ControlNetModel.", value=model,
                           fix="give a ControlNet (its config.json names ControlNetModel).")
    net_family = family_of(config)
    if net_family != family:
        raise InvalidParameter(f"The ControlNet {model!r} is made for {net_family} models, but {base_id} is "
                               f"{family}.", value=model,
                               fix=f"use a {family} ControlNet with {base_id}, or a {net_family} model.")
    if not any(folder.glob("*.safetensors")):
        raise UnknownModel(f"The ControlNet {model!r} has no .safetensors weights.", value=model,
                           fix="labkit loads ControlNets from safetensors only; download those files.")
    return folder, revision


def load_controlnet(model: str, *, family: str, dtype: Any, device: str, base_id: str = "the model") -> ControlNet:
    """ControlNet `model` loaded in `dtype` on `device`, checked to be made for `family`."""
    from labkit.pipelines.loader import quiet_loading, sha256_file

    folder, revision = check_controlnet(model, family=family, base_id=base_id)
    key = (str(folder.resolve()), str(dtype), device)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    from diffusers import ControlNetModel

    with quiet_loading():
        net = ControlNetModel.from_pretrained(str(folder), torch_dtype=dtype, use_safetensors=True,
                                              local_files_only=True)
    weights = sorted(folder.glob("*.safetensors"))[0]
    loaded = ControlNet(net.to(device).eval(), model, folder, family, sha256_file(weights), revision)
    _CACHE[key] = loaded
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return loaded


def with_controlnets(pipe: Any, nets: Sequence[ControlNet], *, family: str, task: str) -> Any:
    """Diffusers' ControlNet pipeline for `task` built from `pipe`'s components and `nets`."""
    import diffusers

    name = CLASSES.get((family, task))
    if name is None:
        raise InvalidParameter(f"ControlNets work with SD 1.5 and SDXL text- and image-to-image, not {family} "
                               f"{task}.", value=task, fix="drop the controls, or use an SD 1.5 / SDXL model.")
    models = [n.net for n in nets]
    net = models[0] if len(models) == 1 else diffusers.MultiControlNetModel(models)
    controlled = getattr(diffusers, name).from_pipe(pipe, controlnet=net)
    if hasattr(controlled, "set_progress_bar_config"):
        controlled.set_progress_bar_config(disable=True)
    return controlled


def control_kwargs(controls: Sequence[Any], maps: Sequence[Any], *, task: str) -> dict[str, Any]:
    """The pipeline call's ControlNet arguments: the maps (as `image`, or `control_image` for image-to-image),
    and each net's scale and the fraction of the steps it acts on."""
    one = len(controls) == 1

    def each(values: list[Any]) -> Any:
        return values[0] if one else values

    kwargs = {"controlnet_conditioning_scale": each([float(c.scale) for c in controls]),
              "control_guidance_start": each([float(c.start) for c in controls]),
              "control_guidance_end": each([float(c.end) for c in controls])}
    kwargs["control_image" if task == "img2img" else "image"] = each(list(maps))
    return kwargs


def clear_cache() -> None:
    """Forget the loaded ControlNets (the memory goes back when nothing else holds them)."""
    _CACHE.clear()
