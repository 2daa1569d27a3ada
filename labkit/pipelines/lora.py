"""LoRA adapters on diffusers pipelines: check they fit, load, stack, fuse, unload.

    src = resolve_adapter("my-lora.safetensors", catalog)        # or a folder, "run:RUN_ID", a hub repo, a catalogue id
    activate(pipe, [(src, 0.8)], family="toy")                   # loads once, then only re-weights
    fuse(pipe); ...; unfuse(pipe)                                # unfuse restores the exact base weights
    unload(pipe)                                                 # back to the bare base model

Finding, reading and writing adapter files is `labkit.pipelines.lora_files` (its names are re-exported
here, where they always were). Kohya alphas are folded into the up weights when reading, so every adapter
loads with PEFT's `alpha == rank` convention and nothing depends on how a tool stores its scale.

Checks made before any denoising step: an adapter whose recorded base family differs from the
model's is refused without loading anything; every LoRA layer must land on a layer of the model
with the same shape, else `IncompatibleAdapter` names how many did not (an adapter whose keys
match nothing would otherwise load as a silent no-op).

Text-encoder LoRA layers are injected with PEFT directly rather than through transformers'
`load_adapter`, which refuses the PEFT releases available today (transformers 5 asks for a newer
PEFT than PyPI has); the layers are the same PEFT layers, so `set_adapters`, `fuse_lora`,
`delete_adapters` and `unload_lora_weights` treat them as usual.
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from labkit.errors import IncompatibleAdapter, InvalidParameter
from labkit.pipelines.lora_files import (
    KOHYA_NAME,
    META_PREFIX,
    WEIGHT_NAME,
    AdapterEntry,
    AdapterSource,
    _format_of,
    _module_of,
    adapter_entries,
    check_family,
    parse_adapter,
    read_metadata,
    resolve_adapter,
    resolve_plan_adapters,
    to_kohya,
    write_adapter,
)

#: Adapters kept loaded on a pipeline beyond those the current plan uses (least recently used go first).
MAX_LOADED = 8

# Components a LoRA state dict may address, by the prefix diffusers gives their keys.
_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")


# --------------------------------------------------------------------------------------------------
# Reading state dicts and checking the fit


def _fold_kohya_alphas(sd: dict[str, Any]) -> dict[str, Any]:
    """Kohya keeps a per-layer `alpha` (scale alpha / rank); fold it into `lora_up` so the layer
    has PEFT's alpha == rank convention. Exact up to float rounding."""
    out = dict(sd)
    for key in [k for k in sd if k.endswith(".alpha")]:
        name = key[: -len(".alpha")]
        alpha = float(out.pop(key).float().item())
        down, up = out.get(f"{name}.lora_down.weight"), f"{name}.lora_up.weight"
        if down is not None and up in out:
            rank = down.shape[0]
            if alpha != rank:
                out[up] = (out[up].float() * (alpha / rank)).to(out[up].dtype)
    return out


def _guess_family(keys: Iterable[str]) -> str | None:
    keys = list(keys)
    if any(k.startswith(("lora_te2_", "text_encoder_2.")) or "add_embedding" in k or "lora_unet_input_blocks" in k
           or "lora_unet_output_blocks" in k for k in keys):
        return "sdxl"
    if any(k.startswith(("transformer.", "lora_transformer_", "diffusion_model.")) for k in keys):
        return "a transformer (DiT) model"
    return None


def component_state_dicts(pipe: Any, path: str | Path) -> tuple[dict[str, dict[str, Any]], list[str], dict | None]:
    """The adapter file split by pipeline component, each in PEFT key format:
    ({component: {module.lora_A.weight: tensor, …}}, keys that address no component, lora_adapter_metadata)."""
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path))
        meta_json = read_metadata(path).get("lora_adapter_metadata")
        metadata = json.loads(meta_json) if meta_json else None
    except (SafetensorError, OSError, ValueError) as e:  # a file broken past its header, or bad JSON metadata
        raise InvalidParameter(f"Adapter file {str(path)!r} cannot be read: {type(e).__name__}: {e}.",
                               value=str(path), fix="download or export the adapter again.") from e
    raw = {k: v for k, v in raw.items() if "dora_scale" not in k}
    if _format_of(raw) == "kohya":
        raw = _fold_kohya_alphas(raw)
        kwargs = {"unet_config": pipe.unet.config} if getattr(pipe, "unet", None) is not None else {}
        try:
            sd, _ = type(pipe).lora_state_dict(raw, **kwargs)
        except (ValueError, KeyError) as e:
            raise IncompatibleAdapter(f"Adapter {str(path)!r} is in kohya format but cannot be converted: {e}",
                                      value=str(path),
                                      fix="check that it is a LoRA (not LyCORIS/LoKr) for this model.") from e
    else:
        sd = raw
    loadable = [c for c in getattr(pipe, "_lora_loadable_modules", _COMPONENTS)]
    parts: dict[str, dict[str, Any]] = {}
    stray: list[str] = []
    for key, value in sd.items():
        comp = next((c for c in sorted(loadable, key=len, reverse=True) if key.startswith(f"{c}.")), None)
        if comp is None:
            stray.append(key)
            continue
        parts.setdefault(comp, {})[key[len(comp) + 1:]] = value
    for comp, part in parts.items():
        if getattr(pipe, comp, None) is None:
            continue
        first = next(iter(part))
        if comp in ("unet", "transformer"):
            parts[comp] = part if "lora_A" in first else convert_unet_state_dict_to_peft(part)
        else:
            parts[comp] = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
    return parts, stray, metadata


def check_fit(pipe: Any, src: AdapterSource, model_family: str | None = None,
              parts: tuple[dict, list, Any] | None = None) -> dict[str, int]:
    """Check that every LoRA layer of `src` lands on a model layer of the same shape; return
    {component: layers} on success, raise `IncompatibleAdapter` (naming how many failed, examples,
    and the family the keys suggest) otherwise."""
    comps, stray, _ = parts if parts is not None else component_state_dicts(pipe, src.path)
    missing: list[str] = [f"{k} (no component)" for k in stray]
    wrong: list[str] = []
    counts: dict[str, int] = {}
    total = len(stray)
    for comp, sd in comps.items():
        model = getattr(pipe, comp, None)
        modules = dict(model.named_modules()) if model is not None else {}
        seen: set[str] = set()
        for key, tensor in sd.items():
            mod_name = _module_of(key)
            if mod_name in seen and ".lora_B." not in key:
                continue
            total += ".lora_A." in key
            module = modules.get(mod_name)
            base = getattr(module, "base_layer", module)
            weight = getattr(base, "weight", None)
            if weight is None:
                if ".lora_A." in key:
                    missing.append(f"{comp}.{mod_name}")
                continue
            seen.add(mod_name)
            if ".lora_A." in key and tensor.shape[1] != weight.shape[1]:
                wrong.append(f"{comp}.{mod_name}: in {tensor.shape[1]} vs {weight.shape[1]}")
            elif ".lora_B." in key and tensor.shape[0] != weight.shape[0]:
                wrong.append(f"{comp}.{mod_name}: out {tensor.shape[0]} vs {weight.shape[0]}")
            elif ".lora_A." in key:
                counts[comp] = counts.get(comp, 0) + 1
    if total == 0 or not counts and not missing and not wrong:
        raise IncompatibleAdapter(f"Adapter {src.id!r} holds no LoRA layers labkit can read.", value=src.id,
                                  fix="check that the file is a LoRA (diffusers/PEFT or kohya format).")
    if missing or wrong:
        guess = src.family or _guess_family(list(comps) + stray + [f"{c}.{k}" for c, s in comps.items() for k in s])
        made_for = f" It looks made for {guess}." if guess and guess != model_family else ""
        problems = ([f"{len(missing)} of {total} LoRA layers match no layer of the model (e.g. {missing[0]})"]
                    if missing else [])
        problems += [f"{len(wrong)} have other shapes (e.g. {wrong[0]})"] if wrong else []
        raise IncompatibleAdapter(
            f"Adapter {src.id!r} does not fit the model{f' ({model_family})' if model_family else ''}: "
            + "; ".join(problems) + "." + made_for, value=src.id,
            fix="use the adapter with the base model it was trained for (its model card or metadata names it).")
    return counts


# --------------------------------------------------------------------------------------------------
# Loading, stacking, fusing, unloading


def _state(pipe: Any) -> dict[str, Any]:
    st = pipe.__dict__.get("_labkit_lora")
    if st is None:
        st = {"loaded": OrderedDict(), "fused": None, "active": []}
        object.__setattr__(pipe, "_labkit_lora", st)
    return st


def _inject_text_encoder(text_encoder: Any, sd: dict[str, Any], name: str, metadata: dict | None) -> None:
    """Load a text encoder's LoRA layers with PEFT directly (see the module docstring)."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    if metadata:
        config = LoraConfig(**metadata)
    else:
        ranks = {_module_of(k): v.shape[1] for k, v in sd.items() if ".lora_B." in k and v.ndim > 1}
        r = max(set(ranks.values()), key=list(ranks.values()).count)
        pattern = {k: v for k, v in ranks.items() if v != r}
        config = LoraConfig(r=r, lora_alpha=r, rank_pattern=pattern, alpha_pattern=dict(pattern),
                            target_modules=sorted(ranks))
    with warnings.catch_warnings():  # "already found a peft_config": several adapters is the point
        warnings.filterwarnings("ignore", message=".*peft_config.*")
        inject_adapter_in_model(config, text_encoder, adapter_name=name)
    result = set_peft_model_state_dict(text_encoder, sd, adapter_name=name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise IncompatibleAdapter(f"Text-encoder LoRA keys did not load: {unexpected[:3]}.", value=name,
                                  fix="check that the adapter was made for this model.")
    if not hasattr(text_encoder, "peft_config"):
        text_encoder.peft_config = {}
    text_encoder.peft_config[name] = config
    text_encoder._hf_peft_config_loaded = True


def load_adapter(pipe: Any, src: AdapterSource, model_family: str | None = None) -> dict[str, int]:
    """Check `src` against `pipe` and load it under `src.name` (not yet active). Returns layers per component."""
    import torch

    parts = component_state_dicts(pipe, src.path)
    counts = check_fit(pipe, src, model_family, parts)
    comps, _, metadata = parts
    for comp, sd in comps.items():
        model = getattr(pipe, comp)
        ref = next(model.parameters())
        sd = {k: v.to(device=ref.device, dtype=ref.dtype if v.is_floating_point() else v.dtype) for k, v in sd.items()}
        meta = {k.removeprefix(f"{comp}."): v for k, v in (metadata or {}).items() if k.startswith(f"{comp}.")} or None
        if isinstance(model, torch.nn.Module) and hasattr(model, "load_lora_adapter"):
            with warnings.catch_warnings():  # "already found a peft_config": several adapters is the point
                warnings.filterwarnings("ignore", message=".*peft_config.*")
                model.load_lora_adapter(sd, prefix=None, adapter_name=src.name, metadata=meta, _pipeline=pipe)
        else:
            _inject_text_encoder(model, sd, src.name, meta)
    _state(pipe)["loaded"][src.name] = src
    return counts


def loaded_adapters(pipe: Any) -> list[AdapterSource]:
    """The adapters loaded on `pipe` by labkit, least recently used first."""
    return list(_state(pipe)["loaded"].values())


def activate(pipe: Any, adapters: Sequence[tuple[AdapterSource, float]], *, family: str | None = None,
             max_loaded: int = MAX_LOADED) -> list[dict[str, Any]]:
    """Make exactly `adapters` active on `pipe` at their weights (an empty list: the bare base model).

    Adapters already loaded are only re-weighted, so switching between plans never reloads the base
    model nor the adapters; fused weights are unfused first (exactly); least recently used adapters
    beyond `max_loaded` are deleted. Returns one record per adapter for the output's provenance.
    """
    if adapters and not hasattr(pipe, "set_adapters"):
        raise IncompatibleAdapter(f"{type(pipe).__name__} takes no LoRA adapters.", value=[s.id for s, _ in adapters],
                                  fix="render without adapters, or with a model whose pipeline loads LoRA.")
    st = _state(pipe)
    if st["fused"] is not None:
        unfuse(pipe)
    for src, _ in adapters:
        if family is not None:
            check_family(src, family)
        if src.name not in st["loaded"]:
            load_adapter(pipe, src, family)
        st["loaded"].move_to_end(src.name)
    names = [s.name for s, _ in adapters]
    extra = [n for n in st["loaded"] if n not in names]
    for n in extra[: max(0, len(st["loaded"]) - max(max_loaded, len(names)))]:
        pipe.delete_adapters(n)
        del st["loaded"][n]
    if not st["loaded"]:
        st["active"] = []
        return []
    if not adapters:
        pipe.disable_lora()
        st["active"] = []
        return []
    pipe.enable_lora()
    pipe.set_adapters(names, adapter_weights=[w for _, w in adapters])
    st["active"] = list(zip(names, [w for _, w in adapters], strict=True))
    return [s.record(w) for s, w in adapters]


def _lora_layers(pipe: Any):
    from peft.tuners.tuners_utils import BaseTunerLayer

    for comp in getattr(pipe, "_lora_loadable_modules", _COMPONENTS):
        model = getattr(pipe, comp, None)
        if model is None or not hasattr(model, "modules"):
            continue
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                yield f"{comp}.{name}", module


def fuse(pipe: Any) -> int:
    """Fuse the active adapters, at their current weights, into the base weights (faster steps).

    The base weights are kept, so `unfuse` restores them bit for bit (PEFT's own unmerge subtracts
    the delta again, which leaves float rounding behind). Returns the number of fused layers.
    """
    st = _state(pipe)
    if st["fused"] is not None:
        return len(st["fused"])
    names = [n for n, _ in st["active"]]
    if not names:
        raise InvalidParameter("No adapter is active to fuse.", value=None,
                               fix="activate adapters first (a plan with adapters, or activate()).")
    snapshot = {}
    for key, module in _lora_layers(pipe):
        snapshot[key] = module.get_base_layer().weight.detach().clone()
    comps = [c for c in getattr(pipe, "_lora_loadable_modules", ()) if getattr(pipe, c, None) is not None]
    pipe.fuse_lora(components=comps, lora_scale=1.0, adapter_names=names)
    st["fused"] = snapshot
    return len(snapshot)


def unfuse(pipe: Any) -> None:
    """Undo `fuse`: the base weights exactly as before, the adapters loaded and active as before."""
    import torch

    st = _state(pipe)
    snapshot = st["fused"]
    if snapshot is None:
        return
    comps = [c for c in getattr(pipe, "_lora_loadable_modules", ()) if getattr(pipe, c, None) is not None]
    pipe.unfuse_lora(components=comps)
    with torch.no_grad():
        for key, module in _lora_layers(pipe):
            if key in snapshot:
                module.get_base_layer().weight.copy_(snapshot[key])
    st["fused"] = None


def unload(pipe: Any) -> None:
    """Remove every adapter from `pipe` (unfusing first): the bare base model again."""
    st = _state(pipe)
    if st["fused"] is not None:
        unfuse(pipe)
    if st["loaded"] or any(True for _ in _lora_layers(pipe)):
        pipe.unload_lora_weights()
    st["loaded"].clear()
    st["active"] = []


__all__ = [
    "KOHYA_NAME", "MAX_LOADED", "META_PREFIX", "WEIGHT_NAME", "AdapterEntry", "AdapterSource", "activate",
    "adapter_entries", "check_family", "check_fit", "component_state_dicts", "fuse", "load_adapter", "loaded_adapters",
    "parse_adapter", "read_metadata", "resolve_adapter", "resolve_plan_adapters", "to_kohya", "unfuse", "unload",
    "write_adapter",
]
