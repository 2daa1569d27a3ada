"""LoRA adapter files: find the file a plan names, read what it says about itself, write labkit's own.

The contract: `resolve_adapter` turns what a plan names — a `.safetensors` file, a folder holding one,
"run:RUN_ID" (what a labkit training run logged), an `[adapters.ID]` catalogue entry, or a hub repo
"owner/name" — into an `AdapterSource` (path, format, hash, base family, licence and licence chain), reading
file headers only; nothing here touches a pipeline (that is `labkit.pipelines.lora`).

    ref = parse_adapter("my-lora.safetensors:0.8")           # AdapterRef(id="my-lora.safetensors", weight=0.8)
    src = resolve_adapter(ref.id, catalog)
    src.family, src.licence, src.format                      # e.g. "toy", "cc0-1.0", "peft"
    write_adapter(folder, state, metadata, kohya=True)       # diffusers' file and a kohya copy beside it

Formats: diffusers / PEFT (`unet.….lora_A.weight`, what `save_lora_weights` writes, and the older
`….lora.down.weight` spelling) and kohya (`lora_unet_…​.lora_down.weight` with `.alpha`, what
sd-scripts, A1111 and ComfyUI use).

The safetensors header of a labkit-trained adapter carries `labkit.*` metadata: the base model and
its family, the adapter's licence, and its licence chain (the base model plus one asset per licence
group of the training data); that chain joins the chain of every output rendered with it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import IncompatibleAdapter, InvalidParameter, ModelNotCached, UnsafeWeights

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import Catalog
    from labkit.plan import AdapterRef

#: File names labkit writes: diffusers' own default, and the kohya copy beside it.
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
KOHYA_NAME = "lora_kohya.safetensors"
#: safetensors metadata keys labkit writes (all values are strings; JSON where structured).
META_PREFIX = "labkit."

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")


# --------------------------------------------------------------------------------------------------
# Parsing and resolving


def parse_adapter(text: str) -> AdapterRef:
    """`PATH_OR_ID[:WEIGHT]` → AdapterRef, e.g. "hexagon.safetensors:0.8" or "run:3f…:1.2" or "owner/repo".

    The part after the last colon is a weight only when it reads as a number, so Windows paths
    and "run:ID" keep their colons (a run id of digits included).
    """
    from labkit.plan import AdapterRef

    spec = str(text).strip()
    if not spec:
        raise InvalidParameter("An empty adapter was given.", value=text,
                               fix="pass PATH_OR_ID[:WEIGHT], e.g. my-lora.safetensors:0.8.")
    head, sep, tail = spec.rpartition(":")
    if sep and head and head != "run":  # "run:0123…": a run id that happens to read as a number, not a weight
        try:
            weight = float(tail)
        except ValueError:
            return AdapterRef(spec, 1.0)
        return AdapterRef(head, weight)
    return AdapterRef(spec, 1.0)


@dataclass(frozen=True)
class AdapterSource:
    """An adapter found on disk (downloaded first when it comes from the hub), before loading.

    Attributes:
        id: what the plan names (path, run id, catalogue id or repo id).
        kind: "file", "run", "catalog" or "hub".
        path: the `.safetensors` file.
        format: "peft" (diffusers / PEFT), "diffusers-old" or "kohya".
        family: the base family it was made for, when known (labkit metadata or the catalogue).
        base_model: the base model it was trained from, when recorded.
        licence: the adapter's licence (catalogue entry or labkit metadata), None when unknown.
        chain: the licence-chain assets it brings along besides itself (its training data), as dicts.
        sha256: the file's hash; `name` (the adapter name on the pipeline) derives from it.
        metadata: the file's whole safetensors header metadata.
    """

    id: str
    kind: str
    path: Path
    format: str
    sha256: str
    family: str | None = None
    base_model: str | None = None
    licence: str | None = None
    revision: str | None = None
    chain: tuple[Mapping[str, Any], ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        """The adapter's name on a pipeline: one per file content, so the same file loads once."""
        return f"lk_{self.sha256[:16]}"

    def assets(self) -> list[Mapping[str, Any]]:
        """The adapter and what it brings (its training data) as plain asset dicts (kind, id, licence, …):
        the caller (the façade) makes licence-chain assets of them, so pipelines need not import the
        licence checks."""
        out: list[Mapping[str, Any]] = [{"kind": "adapter", "id": self.id, "licence": self.licence,
                                         "revision": self.revision}]
        for a in self.chain:
            if a.get("kind") == "model":  # its base model: the render's own model is in the chain already
                continue
            out.append(a)
        return out

    def record(self, weight: float) -> dict[str, Any]:
        """What an output's record says about this adapter."""
        return {"id": self.id, "kind": self.kind, "path": str(self.path), "format": self.format, "weight": weight,
                "hash": self.sha256, "family": self.family, "base_model": self.base_model, "licence": self.licence}


@dataclass(frozen=True)
class AdapterEntry:
    """An `[adapters.ID]` table of a catalogue file: where the adapter is, its base family and licence."""

    id: str
    family: str
    licence: str
    repo: str | None = None
    path: str | None = None
    weight_name: str = WEIGHT_NAME
    revision: str | None = None
    name: str = ""
    description: str = ""


_ADAPTER_KEYS = {"name", "repo", "path", "weight_name", "revision", "family", "licence", "description"}


def adapter_entries(catalog: Catalog | None) -> dict[str, AdapterEntry]:
    """The `[adapters.ID]` tables of the catalogue's files (shipped first, then the user's), by id.

    Keys: family and licence (required), one of repo (hub, with optional revision and weight_name)
    and path (a `.safetensors` file, relative to the TOML file), name, description.
    """
    from labkit.catalog_files import section_tables
    from labkit.errors import ConfigError

    out: dict[str, AdapterEntry] = {}
    for src, base, aid, spec in section_tables(catalog, "adapters"):
        where = f"{src} [adapters.{aid}]"
        unknown = sorted(set(spec) - _ADAPTER_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}.", value=unknown,
                              fix=f"use only {sorted(_ADAPTER_KEYS)}.")
        for key in ("family", "licence"):
            if not isinstance(spec.get(key), str):
                raise ConfigError(f"{where}: field `{key}` is missing.", value=None,
                                  fix=f'add {key} = "…" (the base family it was made for, its licence).')
        for key in ("repo", "path", "weight_name", "revision", "name", "description"):
            if key in spec and not isinstance(spec[key], str):
                raise ConfigError(f"{where}: field `{key}` = {spec[key]!r} is not a string.", value=spec[key],
                                  fix=f'write {key} = "…".')
        if ("repo" in spec) == ("path" in spec):
            raise ConfigError(f"{where}: set exactly one of repo and path.",
                              value=spec.get("repo") or spec.get("path"),
                              fix='write repo = "owner/name" (hub) or path = "FILE.safetensors".')
        path = spec.get("path")
        if path is not None and base is not None and not Path(path).expanduser().is_absolute():
            path = str((base / path).resolve())
        out[aid] = AdapterEntry(id=aid, family=spec["family"], licence=spec["licence"], repo=spec.get("repo"),
                                path=path, weight_name=spec.get("weight_name", WEIGHT_NAME),
                                revision=spec.get("revision"), name=spec.get("name", aid),
                                description=spec.get("description", ""))
    return out


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of `path` (reads the header only); InvalidParameter naming the file
    when it is not a safetensors file."""
    from labkit.pipelines.loader import safetensors_header

    meta = safetensors_header(path, what="a LoRA adapter").get("__metadata__") or {}
    return dict(meta) if isinstance(meta, dict) else {}


def _file_in(folder: Path) -> Path:
    """The adapter file of a folder: diffusers' default name, a labkit run or checkpoint folder, or
    the folder's only `.safetensors`."""
    for cand in (folder / WEIGHT_NAME, folder / "model" / WEIGHT_NAME, folder / "adapter" / WEIGHT_NAME):
        if cand.is_file():
            return cand
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    raise InvalidParameter(
        f"Folder {str(folder)!r} holds no adapter labkit can pick"
        + (f" ({len(files)} .safetensors files)." if files else " (no .safetensors file)."),
        value=str(folder), fix=f"pass the .safetensors file itself, or a folder with {WEIGHT_NAME}.")


def _format_of(keys: Iterable[str]) -> str:
    keys = list(keys)
    if keys and all(k.startswith(_KOHYA_PREFIXES) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "peft"
    return "diffusers-old"


def _source(spec: str, kind: str, path: Path, *, family: str | None = None, licence: str | None = None,
            revision: str | None = None, hash_cache: dict | None = None) -> AdapterSource:
    from labkit.pipelines.loader import PICKLE_SUFFIXES, safetensors_header, sha256_file

    if path.suffix in PICKLE_SUFFIXES:
        raise UnsafeWeights(f"Adapter {spec!r} is {path.name}, a pickle format that can run code when loaded.",
                            value=spec, fix="use the adapter's .safetensors file (convert it once if you trust it).")
    if path.suffix != ".safetensors":
        raise InvalidParameter(f"Adapter {spec!r} is {path.name}, not a weights file (a LoRA adapter is a "
                               ".safetensors file).", value=spec,
                               fix="pass the adapter's .safetensors file, or the folder that holds it.")
    header = safetensors_header(path, what=f"the LoRA adapter {spec!r}" if str(path) != spec else "a LoRA adapter",
                                fix="pass a LoRA adapter saved as .safetensors (download or export it again if "
                                    "it was cut off).")
    meta = header.get("__metadata__") or {}
    if not all(isinstance(v, str) for v in meta.values()):
        raise InvalidParameter(f"Adapter {spec!r} has a safetensors header whose metadata is not text.", value=spec,
                               fix="export the adapter again with safetensors' save_file.")
    fmt = _format_of(k for k in header if k != "__metadata__")
    try:
        chain = json.loads(meta.get(f"{META_PREFIX}licence_chain", "[]"))
    except ValueError:
        chain = None
    if not isinstance(chain, list) or not all(isinstance(a, Mapping) for a in chain):
        raise InvalidParameter(f"Adapter {spec!r} records a licence chain labkit cannot read "
                               f"({META_PREFIX}licence_chain).", value=spec,
                               fix="export the adapter again with labkit, or remove that metadata key.")
    return AdapterSource(
        id=spec, kind=kind, path=path, format=fmt, sha256=sha256_file(path, hash_cache),
        family=family or meta.get(f"{META_PREFIX}base_family") or None,
        base_model=meta.get(f"{META_PREFIX}base_model") or None,
        licence=licence or meta.get(f"{META_PREFIX}licence") or None, revision=revision,
        chain=tuple(chain), metadata=meta)


def resolve_adapter(spec: str, catalog: Catalog | None = None, *, tracker: Any = None,
                    hash_cache: dict | None = None) -> AdapterSource:
    """Find the adapter a plan names: a `.safetensors` file, a folder holding one (a labkit run's
    output or checkpoint folder too), "run:RUN_ID" (the adapter a labkit training run logged), an
    `[adapters.ID]` catalogue entry, or a hub repo "owner/name" (its `pytorch_lora_weights.safetensors`;
    "owner/name/FILE.safetensors" for another file). Hub files come from the local cache when
    HF_HUB_OFFLINE is set; one that is not cached raises `ModelNotCached` naming the download command.
    """
    from labkit.deps import hub_access

    text = str(spec).strip()
    path = Path(text).expanduser()
    if path.exists():
        path = path.resolve()
        return _source(text, "file", _file_in(path) if path.is_dir() else path, hash_cache=hash_cache)

    run_id = text.removeprefix("run:")
    if text.startswith("run:") or _RUN_ID.match(text):
        if tracker is None:
            raise InvalidParameter(f"Adapter {text!r} names a run, but no tracking store was given.", value=text,
                                   fix="render through a Lab (lab.render), or pass the adapter file's path.")
        try:
            run = tracker.client.get_run(run_id)
        except Exception as e:
            raise InvalidParameter(f"Adapter {text!r}: no run {run_id!r} in the tracking store ({type(e).__name__}).",
                                   value=text, fix="check the run id (`labkit compliance report` lists runs).") from e
        from labkit.tracking.mirror import local_artifacts

        # a local store's own file; a tracking server's downloaded into the project's mirror (once)
        found = local_artifacts(tracker.client, run_id, f"model/{WEIGHT_NAME}", getattr(tracker, "mirror", None),
                                artifact_uri=run.info.artifact_uri)
        if found is None or not found.is_file():
            raise InvalidParameter(f"Run {run_id!r} logged no adapter (no model/{WEIGHT_NAME} in its artifacts).",
                                   value=text, fix="pass a LoRA training run (labkit train lora) that finished.")
        return _source(text, "run", found, hash_cache=hash_cache)

    entries = adapter_entries(catalog)
    entry = entries.get(text.lower())
    if entry is not None:
        if entry.path is not None:
            p = Path(entry.path).expanduser()
            if not p.is_file():
                raise ModelNotCached(f"Adapter {text!r} is not at {entry.path}.", value=text,
                                     fix="check the path of its [adapters] entry.")
            return _source(text, "catalog", p, family=entry.family, licence=entry.licence, hash_cache=hash_cache)
        repo, weight_name, revision = entry.repo, entry.weight_name, entry.revision
    elif _REPO.match(text) or (text.count("/") == 2 and text.endswith(".safetensors")):
        parts = text.split("/")
        repo, weight_name, revision = "/".join(parts[:2]), (parts[2] if len(parts) == 3 else WEIGHT_NAME), None
    else:
        raise InvalidParameter(
            f"Adapter {text!r} is not a file, a folder, a run, a catalogue adapter or a hub repo id.", value=text,
            fix="pass a .safetensors path, run:RUN_ID, an [adapters.ID] of your catalogue"
                + (f" ({', '.join(entries)})" if entries else "") + ", or owner/name on the hub.")
    from huggingface_hub import hf_hub_download

    cache_only, why = hub_access()
    try:
        local = hf_hub_download(repo, weight_name, revision=revision, local_files_only=cache_only)
    except Exception as e:
        rev = f" --revision {revision}" if revision and revision != "main" else ""
        raise ModelNotCached(
            f"Adapter {text!r} ({repo}/{weight_name}) is not in the local Hugging Face cache and {why} "
            f"({type(e).__name__}).", value=text,
            fix=f"download it once with `hf download {repo} {weight_name}{rev}` on a machine with internet.") from e
    return _source(text, "catalog" if entry else "hub", Path(local), family=entry.family if entry else None,
                   licence=entry.licence if entry else None, revision=revision, hash_cache=hash_cache)


def resolve_plan_adapters(adapters: Sequence[AdapterRef], catalog: Catalog | None = None, *, tracker: Any = None,
                          family: str | None = None, hash_cache: dict | None = None
                          ) -> list[tuple[AdapterSource, float]]:
    """Resolve each of a plan's adapters; with `family`, refuse one recorded as made for another family
    (before anything loads). Two entries for the same file are an error."""
    out: list[tuple[AdapterSource, float]] = []
    seen: dict[str, str] = {}
    for a in adapters:
        src = resolve_adapter(a.id, catalog, tracker=tracker, hash_cache=hash_cache)
        if src.name in seen:
            raise InvalidParameter(f"Adapters {seen[src.name]!r} and {a.id!r} are the same file.", value=a.id,
                                   fix="list each adapter once, with the weight you want.")
        seen[src.name] = a.id
        if family is not None:
            check_family(src, family)
        out.append((src, float(a.weight)))
    return out


def check_family(src: AdapterSource, family: str) -> None:
    """Refuse an adapter whose recorded base family is not `family`."""
    if src.family and src.family != family:
        raise IncompatibleAdapter(
            f"Adapter {src.id!r} was made for the {src.family!r} family; the model is {family!r}.",
            value=src.id, fix=f"use a {src.family} model with it, or an adapter trained on a {family} model.")


def _module_of(key: str) -> str:
    for marker in (".lora_A.", ".lora_B.", ".lora_magnitude_vector"):
        if marker in key:
            return key.split(marker)[0]
    return key.rsplit(".", 1)[0]


# --------------------------------------------------------------------------------------------------
# Writing adapters (what labkit's LoRA training exports)


def to_kohya(state: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers/PEFT-format LoRA state dict ("unet.….lora_A.weight") in kohya's format
    ("lora_unet_…​.lora_down.weight" plus `.alpha` = rank), which diffusers, A1111 and ComfyUI read."""
    import torch

    out: dict[str, Any] = {}
    prefixes = {"unet.": "lora_unet_", "text_encoder.": "lora_te_", "text_encoder_2.": "lora_te2_"}
    for key, value in state.items():
        pre = next((p for p in sorted(prefixes, key=len, reverse=True) if key.startswith(p)), None)
        if pre is None:
            raise InvalidParameter(f"Cannot write {key!r} in kohya format.", value=key,
                                   fix="only unet and text-encoder LoRA layers have a kohya spelling.")
        module = _module_of(key[len(pre):])
        name = prefixes[pre] + module.replace(".", "_")
        if ".lora_A." in key:
            out[f"{name}.lora_down.weight"] = value
            out[f"{name}.alpha"] = torch.tensor(float(value.shape[0]))
        elif ".lora_B." in key:
            out[f"{name}.lora_up.weight"] = value
    return out


def write_adapter(folder: str | Path, state: Mapping[str, Any], metadata: Mapping[str, Any], *,
                  kohya: bool = False) -> dict[str, Path]:
    """Write a LoRA state dict (keys "unet.…" / "text_encoder.…", PEFT format, alpha == rank) as
    `folder/pytorch_lora_weights.safetensors` with `metadata` in its header (values that are not
    strings are stored as JSON, under `labkit.` keys), and optionally a kohya copy. Returns the paths."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt"}
    for k, v in metadata.items():
        key = k if k.startswith(("ss_", "modelspec.")) else f"{META_PREFIX}{k}"
        meta[key] = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    paths = {"diffusers": folder / WEIGHT_NAME}
    tmp = paths["diffusers"].with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, paths["diffusers"])
    if kohya:
        rank = next((v.shape[0] for k, v in tensors.items() if ".lora_A." in k), 0)
        kmeta = {**meta, "ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                 "ss_network_alpha": str(rank)}
        paths["kohya"] = folder / KOHYA_NAME
        save_file({k: v.contiguous() for k, v in to_kohya(tensors).items()}, str(paths["kohya"]), metadata=kmeta)
    return paths


__all__ = [
    "KOHYA_NAME", "META_PREFIX", "WEIGHT_NAME", "AdapterEntry", "AdapterSource", "adapter_entries", "check_family",
    "parse_adapter", "read_metadata", "resolve_adapter", "resolve_plan_adapters", "to_kohya", "write_adapter",
]
