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

The catalogue's `[controlnets.ID]` tables (`controlnet_entries`) name the common ControlNets — hub repos at
pinned revisions, and labkit's own toy ControlNet shipped in the package — with their family, kind and
licence: a control that names no ControlNet gets the catalogue's one for its kind and the model's family
(`default_controlnet`), and a catalogued one brings its licence into the output's licence chain.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter, ModelNotCached, UnknownModel
from labkit.files import card_licence

#: The diffusers class for (family, task).
CLASSES = {("sd15", "txt2img"): "StableDiffusionControlNetPipeline",
           ("sd15", "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
           ("sdxl", "txt2img"): "StableDiffusionXLControlNetPipeline",
           ("sdxl", "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline",
           # the toy model is a StableDiffusionPipeline at toy size
           ("toy", "txt2img"): "StableDiffusionControlNetPipeline",
           ("toy", "img2img"): "StableDiffusionControlNetImg2ImgPipeline"}
#: The file of a labkit-trained ControlNet's folder that names its family, kind and base (`labkit.json`).
SIDECAR = "labkit.json"
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
    licence: str | None = None


@dataclass(frozen=True)
class ControlNetEntry:
    """A `[controlnets.ID]` table of the catalogue: where the ControlNet is (a hub `repo` at `revision`, or a
    `source` folder as models have), the family and kind of map it was made for, and its licence."""

    id: str
    name: str
    family: str
    kind: str
    licence: str
    repo: str | None = None
    source: str | None = None
    revision: str | None = None
    description: str = ""
    origin: str = ""

    def folder(self) -> Path | None:
        """The local folder of a `source` entry (which may not exist yet); None for a hub repo."""
        if self.source is None:
            return None
        from labkit.catalog_files import source_folder

        return source_folder(self.source, self.origin, f"[controlnets.{self.id}]")


_ENTRY_KEYS = {"name", "repo", "source", "revision", "family", "kind", "licence", "description"}


def controlnet_entries(catalog: Any = None) -> dict[str, ControlNetEntry]:
    """The `[controlnets.ID]` tables of the catalogue's files (shipped first, then the user's), by id.

    Keys: family, kind and licence (required); one of repo (hub, with revision) and source ("package:PKG/PATH"
    or "path:FOLDER"); name, description. ConfigError names the entry and field of the first problem.
    """
    from labkit.catalog_files import section_tables
    from labkit.errors import ConfigError
    from labkit.plan import CONTROL_KINDS

    out: dict[str, ControlNetEntry] = {}
    for src, _base, cid, spec in section_tables(catalog, "controlnets"):
        where = f"{src} [controlnets.{cid}]"
        unknown = sorted(set(spec) - _ENTRY_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}.", value=unknown,
                              fix=f"use only {sorted(_ENTRY_KEYS)}.")
        merged = {**(vars(out[cid]) if cid in out else {}), **spec}
        for key in ("family", "kind", "licence"):
            if not isinstance(merged.get(key), str):
                raise ConfigError(f"{where}: field `{key}` is missing or not a string.", value=merged.get(key),
                                  fix=f'add {key} = "…" (the base family, the kind of map, the licence id).')
        if merged["kind"] not in CONTROL_KINDS:
            raise ConfigError(f"{where}: kind {merged['kind']!r} is not a control kind.", value=merged["kind"],
                              fix=f"use one of {', '.join(CONTROL_KINDS)}.")
        if "source" in spec and "repo" not in spec:
            merged.update(repo=None, revision=spec.get("revision"))
        if "repo" in spec and "source" not in spec:
            merged["source"] = None
        if (merged.get("repo") is None) == (merged.get("source") is None):
            raise ConfigError(f"{where}: set exactly one of repo and source.", value=merged.get("repo"),
                              fix='write repo = "owner/name" (hub) or source = "path:FOLDER".')
        merged.update(id=cid, origin=src, name=merged.get("name") or cid,
                      description=merged.get("description") or "")
        out[cid] = ControlNetEntry(**{k: merged.get(k) for k in ControlNetEntry.__dataclass_fields__})
    return out


def default_controlnet(catalog: Any, family: str, kind: str) -> ControlNetEntry | None:
    """The catalogue's first ControlNet for maps of `kind` on `family` models, or None."""
    return next((e for e in controlnet_entries(catalog).values() if e.family == family and e.kind == kind), None)


def family_of(config: dict[str, Any], folder: Path | None = None) -> str:
    """The family a ControlNet was made for: its folder's `labkit.json` says ("toy"), or its `config.json`
    shows it ("sdxl" or "sd15")."""
    if folder is not None and (folder / SIDECAR).is_file():
        try:
            family = json.loads((folder / SIDECAR).read_text()).get("family")
        except (OSError, ValueError, AttributeError):
            family = None
        if isinstance(family, str):
            return family
    return _config_family(config)


def _config_family(config: dict[str, Any]) -> str:
    """"sdxl" or "sd15", from a ControlNet's `config.json`."""
    cross = config.get("cross_attention_dim")
    if config.get("addition_embed_type") == "text_time" or cross == 2048:
        return "sdxl"
    return "sd15"


@dataclass(frozen=True)
class Found:
    """Where a ControlNet a plan names is: its local folder, hub revision, licence and catalogue entry (if any)."""

    folder: Path
    revision: str | None = None
    licence: str | None = None
    entry: ControlNetEntry | None = None


def _hub_folder(repo: str, revision: str | None, model: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True,
                                      allow_patterns=["config.json", "*.safetensors", SIDECAR]))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several kinds for "not here"
        pin = f" --revision {revision}" if revision and revision != "main" else ""
        raise ModelNotCached(f"The ControlNet {model!r} is not in the local Hugging Face cache.", value=model,
                             fix=f"download it once: hf download {repo}{pin} config.json "
                                 "diffusion_pytorch_model.safetensors") from e


def find_controlnet(model: str, catalog: Any = None) -> Found:
    """Where ControlNet `model` is: a catalogue id (`[controlnets.ID]`), a folder, or a hub repo id from the local
    cache — `ModelNotCached` with the download command when a hub repo is not cached, `UnknownModel` otherwise."""
    entry = controlnet_entries(catalog).get(model.lower())
    if entry is not None:
        if entry.repo is not None:
            return Found(_hub_folder(entry.repo, entry.revision, model), entry.revision, entry.licence, entry)
        folder = entry.folder()
        if folder is None or not (folder / "config.json").is_file():
            how = ("train it: labkit train toy-controlnet, and put its model/ folder there"
                   if entry.source and entry.source.startswith("package:labkit/") else "put the ControlNet there")
            raise UnknownModel(f"The ControlNet {model!r} is catalogued at {str(folder)!r}, which holds no ControlNet.",
                               value=model, fix=how + ".")
        return Found(folder, None, entry.licence, entry)
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UnknownModel(f"{model!r} is not a ControlNet folder: it has no config.json.", value=model,
                               fix="give a diffusers ControlNet folder (config.json + diffusion_pytorch_model."
                                   "safetensors) or a hub repo id.")
        return Found(path, None, card_licence(path))
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        known = ", ".join(sorted(controlnet_entries(catalog))) or "none"
        raise UnknownModel(f"No ControlNet {model!r}: not a catalogued one, nor a folder here, nor a hub repo id.",
                           value=model, fix=f"give a catalogued ControlNet ({known}), a folder, or a hub id such as "
                                            "lllyasviel/control_v11p_sd15_canny.")
    folder = _hub_folder(model, None, model)
    return Found(folder, folder.name, card_licence(folder))


def controlnet_licence(model: str, catalog: Any = None) -> tuple[str | None, str | None]:
    """(licence, revision) of ControlNet `model` for a licence chain: the catalogue's, or its model card's; (None,
    None) when it cannot be found (the plan's check says why before any render)."""
    try:
        found = find_controlnet(model, catalog)
    except (UnknownModel, ModelNotCached):
        entry = controlnet_entries(catalog).get(model.lower())
        return (entry.licence, entry.revision) if entry is not None else (None, None)
    return found.licence, found.revision


def _check_family(model: str, net_family: str, family: str, base_id: str) -> None:
    if net_family != family:
        raise InvalidParameter(f"The ControlNet {model!r} is made for {net_family} models, but {base_id} is "
                               f"{family}.", value=model,
                               fix=f"use a {family} ControlNet with {base_id}, or a {net_family} model.")


def check_controlnet(model: str, *, family: str, base_id: str = "the model", catalog: Any = None) -> Found:
    """Find ControlNet `model` and check it is a ControlNet made for `family`, reading its config only
    (what a plan is checked with before a run opens)."""
    entry = controlnet_entries(catalog).get(model.lower())
    if entry is not None:  # the catalogue says the family: no download needed to refuse the wrong one
        _check_family(model, entry.family, family, base_id)
    found = find_controlnet(model, catalog)
    folder = found.folder
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise UnknownModel(f"The ControlNet {model!r} has an unreadable config.json: {e}.", value=model,
                           fix="download it again.") from e
    if not isinstance(config, dict) or config.get("_class_name") not in ("ControlNetModel", None):
        what = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise UnknownModel(f"{model!r} is a {what}, not a ControlNetModel.", value=model,
                           fix="give a ControlNet (its config.json names ControlNetModel).")
    _check_family(model, found.entry.family if found.entry is not None else family_of(config, folder), family,
                  base_id)
    if not any(folder.glob("*.safetensors")):
        raise UnknownModel(f"The ControlNet {model!r} has no .safetensors weights.", value=model,
                           fix="labkit loads ControlNets from safetensors only; download those files.")
    return found


def load_controlnet(model: str, *, family: str, dtype: Any, device: str, base_id: str = "the model",
                    catalog: Any = None) -> ControlNet:
    """ControlNet `model` loaded in `dtype` on `device`, checked to be made for `family`."""
    from labkit.pipelines.loader import quiet_loading, sha256_file

    found = check_controlnet(model, family=family, base_id=base_id, catalog=catalog)
    folder = found.folder
    key = (str(folder.resolve()), str(dtype), device)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    from diffusers import ControlNetModel

    with quiet_loading():
        net = ControlNetModel.from_pretrained(str(folder), torch_dtype=dtype, use_safetensors=True,
                                              local_files_only=True)
    weights = sorted(folder.glob("*.safetensors"))[0]
    loaded = ControlNet(net.to(device).eval(), model, folder, family, sha256_file(weights), found.revision,
                        found.licence)
    _CACHE[key] = loaded
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return loaded


def with_controlnets(pipe: Any, nets: Sequence[ControlNet], *, family: str, task: str) -> Any:
    """Diffusers' ControlNet pipeline for `task` built from `pipe`'s components and `nets`."""
    import diffusers

    name = CLASSES.get((family, task))
    if name is None:
        raise InvalidParameter(f"ControlNets work with SD 1.5, SDXL and toy text- and image-to-image, not {family} "
                               f"{task}.", value=task, fix="drop the controls, or use an SD 1.5 / SDXL model.")
    models = [n.net for n in nets]
    net = models[0] if len(models) == 1 else diffusers.MultiControlNetModel(models)
    # from_pipe casts every component to `dtype` (float32 when not given): keep the loaded pipeline's,
    # or an fp16 pipeline's shared UNet would be turned to fp32 in place
    dtype = getattr(getattr(pipe, "unet", None), "dtype", None)
    controlled = getattr(diffusers, name).from_pipe(pipe, controlnet=net, **({"dtype": dtype} if dtype else {}))
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


def render_controlled(pipe: Any, prompts: Sequence[str], maps: Sequence[Any], seeds: Sequence[int],
                      guidance_scale: float, steps: int, negative_prompt: str = "", scale: float = 1.0) -> list[Any]:
    """`prompts[i]` under `maps[i]` with `seeds[i]`, in one batched call of a single-ControlNet text-to-image
    pipeline (what a benchmark or a training check renders many of); PIL images at the maps' size."""
    import torch

    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    width, height = maps[0].size
    return pipe(list(prompts), image=list(maps), num_inference_steps=steps, guidance_scale=guidance_scale,
                negative_prompt=[negative_prompt] * len(prompts), width=width, height=height,
                controlnet_conditioning_scale=float(scale), generator=gens).images


def clear_cache() -> None:
    """Forget the loaded ControlNets (the memory goes back when nothing else holds them)."""
    _CACHE.clear()
