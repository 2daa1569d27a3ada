"""Loading diffusers pipelines: from the hub cache, a local folder, or one `.safetensors` file.

Weights load only from safetensors unless the caller allows pickle files; `trust_remote_code`
is never set. Every weight file's sha256 is recorded. Models are resolved to a `ModelRef`
first (cheap, no torch), so a bad id fails before any heavy work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from labkit.deps import hub_access, offline
from labkit.errors import InvalidParameter, LabkitError, ModelNotCached, UnknownModel, UnsafeWeights, is_out_of_memory
from labkit.files import card_licence

if TYPE_CHECKING:  # pragma: no cover
    from labkit.catalog import Catalog, CatalogEntry
    from labkit.hardware import MemoryStrategy

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
SourceKind = Literal["hub", "folder", "single_file", "package"]


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to where its files are, before anything is loaded.

    Attributes:
        id: what the user asked for (catalogue id, repo id, folder or file).
        kind: "hub", "folder", "single_file" or "package" (shipped inside labkit).
        location: the repo id, or the absolute path.
        revision: the pinned hub revision (hub only).
        family: the memory-strategy family.
        entry: the catalogue entry, when the model is catalogued.
        config: for a single file, the diffusers folder or repo whose configs it uses.
        card_licence: an uncatalogued folder's licence, as its model card declares it (`labkit.files.card_licence`).
    """

    id: str
    kind: SourceKind
    location: str
    family: str
    revision: str | None = None
    entry: CatalogEntry | None = field(default=None, compare=False)
    config: str | None = None
    card_licence: str | None = field(default=None, compare=False)

    @property
    def licence(self) -> str | None:
        return self.entry.licence if self.entry else self.card_licence

    def download_command(self) -> str:
        rev = f" --revision {self.revision}" if self.revision and self.revision != "main" else ""
        return f"hf download {self.location}{rev}"


def resolve_model(model: str, catalog: Catalog, *, family: str | None = None, config: str | None = None) -> ModelRef:
    """Where `model` lives and which family it is: a catalogue id or repo id, a local diffusers
    folder, a single `.safetensors`/`.ckpt` file, or an uncatalogued hub repo id.

    A single file needs `config`: the diffusers folder or repo id whose component configs it
    fills (e.g. the base model it was fine-tuned from)."""
    from labkit.catalog import family_from_model_index
    from labkit.hardware import families

    path = Path(model).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_dir():
            index = path / "model_index.json"
            if not index.is_file():
                raise UnknownModel(f"Folder {str(path)!r} is not a diffusers pipeline (no model_index.json).",
                                   value=str(path), fix="pass a folder saved with pipeline.save_pretrained().")
            fam = family or family_from_model_index(read_model_index(index))
            if fam is None:
                raise UnknownModel(f"Cannot tell the model family of {str(path)!r} from its model_index.json.",
                                   value=str(path),
                                   fix='add "labkit": {"family": NAME} to its model_index.json (NAME one of '
                                       f'{", ".join(families())}), or pass family=NAME from Python.')
            return ModelRef(id=model, kind="folder", location=str(path), family=fam, card_licence=card_licence(path))
        if path.name == "model_index.json":
            raise UnknownModel(f"{str(path)!r} is a pipeline's model_index.json, not a model.", value=str(path),
                               fix=f"pass the folder that holds it: {str(path.parent)!r}.")
        if path.suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
            raise UnknownModel(f"{str(path)!r} is not a weights file (a {path.suffix or 'suffix-less'} file).",
                               value=str(path), fix="pass a diffusers folder (with model_index.json), a "
                                                    ".safetensors checkpoint with config=…, or a catalogue id.")
        fam = family or _family_from_checkpoint(path)
        if config is None:
            raise InvalidParameter(
                f"Single-file checkpoint {str(path)!r} needs the configs of the pipeline it belongs to.",
                value=str(path), fix="pass config=<diffusers folder or repo id of its base model>.")
        return ModelRef(id=model, kind="single_file", location=str(path), family=fam, config=config)

    try:
        entry = catalog.get(model)
    except UnknownModel:
        if model.startswith((".", "/", "~")) or path.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES:
            raise UnknownModel(f"There is no model folder or file at {model!r}.", value=model,
                               fix="check the path (a diffusers folder with model_index.json, or a weights file), "
                                   f"or name a catalogue model: {', '.join(catalog.ids())}.") from None
        if "/" not in model or model.count("/") > 1:
            raise
        entry = None
    if entry is not None:
        if entry.repo is None:  # shipped inside a package, or a folder on this machine (checked when loading)
            kind = "package" if entry.source_kind == "package" else "folder"
            return ModelRef(id=model, kind=kind, location=str(entry.local_path()), family=entry.family, entry=entry)
        return ModelRef(id=model, kind="hub", location=entry.repo, revision=entry.revision, family=entry.family,
                        entry=entry)
    # An uncatalogued hub repo id: the family comes from its model_index.json.
    ref = ModelRef(id=model, kind="hub", location=model, revision="main", family=family or "")
    if not ref.family:
        index = _hub_file(ref, "model_index.json")
        fam = family_from_model_index(read_model_index(Path(index)))
        if fam is None:
            raise UnknownModel(f"Cannot tell the model family of hub repo {model!r}.", value=model,
                               fix="add it to your catalogue with a family, or pass family=….")
        ref = ModelRef(id=model, kind="hub", location=model, revision="main", family=fam)
    return ref


#: The keys of a folder's `model_index.json` "labkit" section that hold its own sampling settings (labkit's
#: recipes write them), and the catalogue default each one stands for.
_OWN_DEFAULTS = {"sampling_steps": "default_steps", "guidance_scale": "default_guidance",
                 "frames": "default_frames", "fps": "default_fps"}


def plan_defaults(ref: ModelRef, catalog: Catalog, modality: str) -> CatalogEntry | None:
    """Where a plan's open fields (size, steps, guidance, frames, fps) come from: the model's catalogue entry.
    An uncatalogued model takes its family's: the catalogue's model of that family for the modality (the one
    named like the family, else the one sampling with the most steps, not a distilled turbo), with a folder's
    own sampling settings ("labkit" in its model_index.json, e.g. a trained toy or DreamBooth model) on top.
    None when the catalogue has no model of the family (the plan's general defaults apply)."""
    import dataclasses

    if ref.entry is not None:
        return ref.entry
    tasks = {"txt2vid", "img2vid"} if modality == "video" else {"txt2img", "img2img"}
    same = [e for e in catalog if e.family == ref.family and tasks & set(e.tasks)]
    if not same:
        return None
    base = next((e for e in same if e.id == ref.family), None) or max(same, key=lambda e: e.default_steps)
    index = Path(ref.location) / "model_index.json"
    meta = read_model_index(index).get("labkit") if ref.kind == "folder" and index.is_file() else None
    own: dict[str, Any] = {}
    for key, field_name in _OWN_DEFAULTS.items():
        value = meta.get(key) if isinstance(meta, Mapping) else None
        if value is None:
            continue
        whole = field_name != "default_guidance"
        kinds = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < (1 if whole else 0):
            raise UnknownModel(f"{str(index)!r} says \"labkit\": {{\"{key}\": {value!r}}}, which is not "
                               f"{'a whole number >= 1' if whole else 'a number >= 0'}.", value=value,
                               fix=f"correct or remove \"{key}\" in the folder's model_index.json.")
        own[field_name] = value if whole else float(value)
    return dataclasses.replace(base, **own)


def read_model_index(path: Path) -> dict[str, Any]:
    """A pipeline folder's parsed `model_index.json`; `UnknownModel` naming the file when it is not UTF-8,
    not JSON (a truncated download) or not a JSON object."""
    from labkit.files import read_text

    fix = ("re-save the pipeline with pipeline.save_pretrained(), or download it again "
           "(a truncated download leaves a cut-off file).")
    text = read_text(path, what="model index", fix=fix, error=UnknownModel)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UnknownModel(f"{str(path)!r} is not valid JSON ({e}).", value=str(path), fix=fix) from e
    if not isinstance(data, dict):
        raise UnknownModel(f"{str(path)!r} holds a JSON {type(data).__name__}, not an object with _class_name.",
                           value=str(path), fix=fix)
    return data


#: A safetensors header larger than this is not a real one (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000


def safetensors_header(path: str | Path, *, what: str = "a weights file",
                       error: type[LabkitError] = InvalidParameter, fix: str | None = None) -> dict[str, Any]:
    """The parsed JSON header of a `.safetensors` file, checked without torch: an 8-byte length, a JSON
    object of tensors whose data lies inside the file. `error` (naming the file and what is wrong) for an
    empty, truncated, garbage or text file, so a bad file fails before any model loads."""
    path = Path(path)
    fix = fix or "download or export the file again: it is cut off or not a safetensors file."

    def bad(problem: str) -> LabkitError:
        return error(f"{str(path)!r} ({what}) is not a valid safetensors file: {problem}.", value=str(path),
                     fix=fix)

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"it is only {size} bytes long")
            n = int.from_bytes(head, "little")
            if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
                raise bad(f"its header claims {n} bytes, the file has {size - 8} after the length")
            raw = f.read(n)
    except OSError as e:
        raise error(f"Cannot read {str(path)!r} ({what}): {e.strerror or e}.", value=str(path), fix=fix) from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("its header is not JSON (is it a text, pickle or other file renamed .safetensors?)") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise bad("its __metadata__ is not an object")
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {name!r} has no valid data_offsets")
        if offsets[1] > data_len:
            raise bad(f"tensor {name!r} ends at byte {offsets[1]} of data, the file holds {data_len} (truncated?)")
    return header


def check_weights(folder: Path, ref: ModelRef) -> None:
    """Check the header of every `.safetensors` file of a pipeline folder (cheap: headers only)."""
    for p in weight_files(folder):
        if p.suffix in SAFE_SUFFIXES:
            safetensors_header(p, what=f"a weights file of model {ref.id!r}", error=UnknownModel)


def _family_from_checkpoint(path: Path) -> str:
    """sd15 or sdxl, from the key names of an original-layout single-file checkpoint."""
    if path.suffix != ".safetensors":
        return "sd15"  # pickle files are refused before loading unless allowed; assume the common case
    header = safetensors_header(path, what="a single-file checkpoint", error=UnknownModel)
    keys = [k for k in header if k != "__metadata__"]
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        return "sdxl"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "sd15"
    raise UnknownModel(f"{str(path)!r} is not a Stable Diffusion checkpoint labkit recognises.", value=str(path),
                       fix="pass a diffusers folder of it (with model_index.json); from Python, family=… names the "
                           "family of this file.")


def _hub_file(ref: ModelRef, filename: str) -> str:
    """One file of a hub repo, from the cache (offline, or the hub unreachable) or the hub; ModelNotCached
    otherwise."""
    from huggingface_hub import hf_hub_download

    cache_only, why = hub_access()
    try:
        return hf_hub_download(ref.location, filename, revision=ref.revision, local_files_only=cache_only)
    except Exception as e:
        raise _not_cached(ref, e, why) from e


def _not_cached(ref: ModelRef, err: Exception, why: str) -> LabkitError:
    return ModelNotCached(
        f"Model {ref.id!r} ({ref.location}@{ref.revision or 'main'}) is not in the local Hugging Face cache and {why} "
        f"({type(err).__name__}).",
        value=ref.id, fix=f"download it once with `{ref.download_command()}` on a machine with internet, then retry.",
    )


def is_available(ref: ModelRef) -> bool:
    """Whether `ref` can load without a download that is impossible right now (cheap: no diffusers).

    Local folders and packaged models must hold a model_index.json; with HF_HUB_OFFLINE set a hub
    model must be in the cache; online, a hub model counts as available (it can be downloaded).
    """
    if ref.kind in ("folder", "package"):
        return (Path(ref.location) / "model_index.json").is_file()
    if ref.kind == "single_file":
        return Path(ref.location).is_file()
    if not offline():
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(ref.location, "model_index.json", revision=ref.revision), str)


def local_folder(ref: ModelRef, *, variant: str | None = None, allow_pickle: bool = False) -> Path:
    """The folder holding the model's files (downloading from the hub unless offline)."""
    if ref.kind in ("folder", "package"):
        folder = Path(ref.location)
        if not is_available(ref):
            where = ref.entry.source if ref.entry else ref.location
            fix = _missing_fix(ref, folder)
            raise ModelNotCached(f"Model {ref.id!r} is not at {where} (no model_index.json in {folder}).",
                                 value=ref.id, fix=fix)
        return folder
    if ref.kind == "single_file":
        return Path(ref.location).parent
    if not is_available(ref):  # offline and not cached: say so without importing diffusers
        raise _not_cached(ref, FileNotFoundError("model_index.json not in the cache"), hub_access()[1])
    from diffusers import DiffusionPipeline

    cache_only, why = hub_access()
    try:
        return Path(DiffusionPipeline.download(
            ref.location, revision=ref.revision, variant=variant, use_safetensors=not allow_pickle,
            local_files_only=cache_only, trust_remote_code=False,
        ))
    except Exception as e:
        raise _not_cached(ref, e, why) from e


def _missing_fix(ref: ModelRef, folder: Path) -> str:
    """How to get a local model that is not there: the toy recipes say which command makes it."""
    if ref.family != "toy":
        return "check the folder, or the source of its catalogue entry."
    if ref.entry is not None and ref.entry.is_video:
        return (f"train it with `labkit train toy-motion --output toy-motion` (add `--arch animatediff` for an "
                f"AnimateDiff model) and copy toy-motion/model/ to {folder} (or pass the folder with --model), or "
                "reinstall labkit.")
    return "train it with `labkit train toy-base`, or reinstall labkit."


def weight_files(folder: Path) -> list[Path]:
    """Every weight file under a pipeline folder (safetensors and pickle formats)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES)


def check_safe(ref: ModelRef, folder: Path, *, allow_pickle: bool) -> None:
    """Refuse a model whose weights exist only as pickle files, unless pickle is allowed, and one whose
    `.safetensors` files have a broken header (garbage, cut off): both before anything loads."""
    if ref.kind == "single_file":
        if Path(ref.location).suffix in SAFE_SUFFIXES:
            safetensors_header(ref.location, what="a single-file checkpoint", error=UnknownModel)
    else:
        check_weights(folder, ref)
    if allow_pickle:
        return
    if ref.kind == "single_file":
        if Path(ref.location).suffix not in SAFE_SUFFIXES:
            raise UnsafeWeights(
                f"{ref.location!r} is a pickle checkpoint, which can run arbitrary code when loaded.",
                value=ref.location,
                fix="use a .safetensors file, or pass allow_pickle=True (--allow-pickle) if you trust its source.")
        return
    components = {p.relative_to(folder).parts[0] for p in weight_files(folder) if len(p.relative_to(folder).parts) > 1}
    for comp in sorted(components):
        files = [p for p in weight_files(folder / comp)]
        if files and not any(p.suffix in SAFE_SUFFIXES for p in files):
            raise UnsafeWeights(
                f"Component {comp!r} of {ref.id!r} has only pickle weights ({files[0].name}), which can run "
                "arbitrary code when loaded.", value=ref.id,
                fix="convert it to safetensors, or pass allow_pickle=True (--allow-pickle) if you trust its source.")


def sha256_file(path: Path, cache: dict[str, Any] | None = None) -> str:
    """The file's sha256. Hub cache blobs are named by their sha256 already, so they are free;
    other files are hashed once and remembered in `cache` by (size, mtime)."""
    real = path.resolve()
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    stat = real.stat()
    key = str(real)
    if cache is not None and (hit := cache.get(key)) and hit[:2] == [stat.st_size, stat.st_mtime_ns]:
        return hit[2]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if cache is not None:
        cache[key] = [stat.st_size, stat.st_mtime_ns, digest]
    return digest


def file_hashes(ref: ModelRef, folder: Path, cache: dict[str, Any] | None = None) -> dict[str, str]:
    """{relative file name: sha256} for the weight files the model loads from."""
    if ref.kind == "single_file":
        p = Path(ref.location)
        return {p.name: sha256_file(p, cache)}
    return {str(p.relative_to(folder)): sha256_file(p, cache) for p in weight_files(folder)}


def model_hash(hashes: dict[str, str]) -> str:
    """One short fingerprint for a whole pipeline: sha256 over its files' hashes, sorted by name."""
    return hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(hashes.items())).encode()).hexdigest()


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@dataclass
class Loaded:
    """A loaded pipeline and what it took: its ref, the strategy applied, the weight hashes."""

    pipe: Any
    ref: ModelRef
    strategy: MemoryStrategy
    hashes: dict[str, str]
    applied: list[str]
    load_s: float
    size_bytes: int
    #: the shapes a compiled pipeline was warmed up at (its first call at a shape compiles)
    warmed: set = field(default_factory=set)

    @property
    def hash(self) -> str:
        return model_hash(self.hashes)


def load_pipeline(ref: ModelRef, strategy: MemoryStrategy, device: str, *, allow_pickle: bool = False,
                  hash_cache: dict[str, Any] | None = None, compile_cache: str | Path | None = None) -> Loaded:
    """Load `ref` with `strategy` applied for `device` ("cuda", "mps" or "cpu").

    Steps: 1. find the files (hub cache, folder, single file); 2. refuse pickle weights unless
    allowed, and weights files whose safetensors header is broken (before anything loads); 3. hash the
    weight files; 4. from_pretrained / from_single_file in the strategy's dtype, safetensors only, no
    remote code; 5. apply the strategy's memory steps (`compile_cache`: inductor's cache folder).
    """
    from labkit.pipelines.memory import apply_strategy

    start = time.perf_counter()
    variant = ref.entry.variant if ref.entry and strategy.dtype == "float16" else None
    folder = local_folder(ref, variant=variant, allow_pickle=allow_pickle)
    check_safe(ref, folder, allow_pickle=allow_pickle)
    hashes = file_hashes(ref, folder, hash_cache)
    dtype = torch_dtype(strategy.dtype)
    try:
        with quiet_loading():
            if ref.kind == "single_file":
                pipe = _from_single_file(ref, dtype)
            else:
                pipe = pipeline_class(folder).from_pretrained(
                    str(folder), dtype=dtype, use_safetensors=None if allow_pickle else True, local_files_only=True,
                    variant=variant if variant and any(f".{variant}." in k for k in hashes) else None,
                )
    except (LabkitError, MemoryError):
        raise
    except Exception as e:
        if is_out_of_memory(e):
            raise
        raise UnknownModel(f"Model {ref.id!r} could not be loaded as a diffusers pipeline: {type(e).__name__}: {e}",
                           value=ref.id, fix="check that it is a complete diffusers pipeline (or a Stable Diffusion "
                           "checkpoint) compatible with diffusers " + _diffusers_version() + ".") from e
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    applied = apply_strategy(pipe, strategy, device, compile_cache=compile_cache)
    size = sum(p.numel() * p.element_size() for c in pipe.components.values()
               if hasattr(c, "parameters") for p in c.parameters())
    return Loaded(pipe, ref, strategy, hashes, applied, time.perf_counter() - start, size)


#: Pipeline classes labkit defines, by the `_class_name` their folders' `model_index.json` gives: diffusers
#: looks a class name up in its own package, so the loader imports these itself (their components name their
#: modules, which diffusers imports).
LABKIT_PIPELINES: Mapping[str, str] = MappingProxyType({
    "ToyWarpImageToVideoPipeline": "labkit.toyworld.warp",
})


def pipeline_class(folder: Path) -> Any:
    """The class whose `from_pretrained` loads the pipeline in `folder`: a labkit pipeline (`LABKIT_PIPELINES`)
    or diffusers' `DiffusionPipeline`, which picks the class `model_index.json` names."""
    import importlib

    try:
        name = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError):
        name = None
    if name in LABKIT_PIPELINES:
        return getattr(importlib.import_module(LABKIT_PIPELINES[name]), name)
    from diffusers import DiffusionPipeline

    return DiffusionPipeline


#: Notices libraries print on every load that no user can act on: transformers' fallback to its PIL image
#: processors (labkit does not use torchvision, on purpose) and diffusers' remark that model_index.json
#: has a key it does not know (labkit's own `labkit` section), and its note, when AnimateDiff joins a UNet
#: and a motion adapter, that an empty list of modules "should be kept in float32".
_NOISE = ("requires torchvision (not installed)", "{'labkit':", "should be kept in float32: []")


class _DropNoise:
    def filter(self, record) -> bool:
        message = record.getMessage()
        return not any(n in message for n in _NOISE)


@contextmanager
def quiet_loading():
    """While a pipeline loads or is saved: no progress bars from the libraries, and none of the `_NOISE`
    notices (added once to the libraries' own log handlers; every other warning still shows)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for lib in (dlog, tlog):
        lib.get_logger()  # makes sure the library's handler exists
        for handler in logging.getLogger(lib.__name__.split(".")[0]).handlers:
            if not any(isinstance(f, _DropNoise) for f in handler.filters):
                handler.addFilter(_DropNoise())
    bars = [(lib, lib.is_progress_bar_enabled()) for lib in (dlog, tlog)]
    for lib, _ in bars:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, was_on in bars:
            if was_on:
                lib.enable_progress_bar()


def _from_single_file(ref: ModelRef, dtype):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if ref.family == "sdxl" else StableDiffusionPipeline
    local = Path(ref.config).is_dir()
    return cls.from_single_file(ref.location, config=ref.config, dtype=dtype,
                                local_files_only=local or offline())


def _diffusers_version() -> str:
    from importlib.metadata import version

    return version("diffusers")


def require_task(ref: ModelRef, pipe: Any, task: str):
    """The pipeline for `task`, sharing the loaded weights (img2img from a txt2img pipeline)."""
    from labkit.pipelines.tasks import pipeline_for_task

    try:
        return pipeline_for_task(pipe, task, first_frame=task == "img2vid" and first_frame_trained(ref))
    except ValueError as e:
        fix = "choose a model whose catalogue entry lists this task."
        if task == "img2vid" and type(pipe).__name__.startswith("AnimateDiff"):
            fix = ("this AnimateDiff model was not trained to continue a given first frame: render text-to-video "
                   "(no image), or use a labkit motion model (toyworld-motion, or one `labkit train toy-motion` "
                   "exported).")
        raise InvalidParameter(f"Model {ref.id!r} ({type(pipe).__name__}) cannot do {task}.", value=task,
                               fix=fix) from e


def first_frame_trained(ref: ModelRef) -> bool:
    """Whether `ref` is a motion model trained to continue a given first frame: its catalogue entry lists
    img2vid, or its folder is a labkit motion export (`model_index.json` "labkit": {"kind": "motion"})."""
    from labkit.pipelines.animatediff import trained_for_first_frame

    if ref.entry is not None and "img2vid" in ref.entry.tasks:
        return True
    return ref.kind in ("folder", "package") and trained_for_first_frame(ref.location)
