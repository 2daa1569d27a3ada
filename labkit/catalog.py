"""The model catalogue: which models labkit knows, pinned, with their licence and defaults.

The data lives in `catalog.toml` (shipped with labkit); a researcher adds or overrides entries in
a TOML file of the same shape, named by `Catalog.load(extra=...)` or the `LABKIT_CATALOG`
environment variable. Nothing is read at import: `Catalog.load()` reads and checks the files.

    cat = Catalog.load()
    entry = cat.get("sd15")                      # or "stable-diffusion-v1-5/stable-diffusion-v1-5"
    validate_size(entry, 768, 512)               # InvalidParameter names the value and the range
    [e.id for e in cat.fallback_chain("sdxl")]   # ["sdxl", "sdxl-turbo", "sd15", "sd-turbo"]

A model family's special steps (the first frame of Stable Video Diffusion's text-to-video, the toy world's
keyframe prompt) are declared in `[families.NAME]` tables, read by `Catalog.family(name)` (`FamilySteps`),
so that no code says `if family == ...`.

`family_from_model_index()` maps a diffusers `model_index.json` to a memory-strategy family for
models that are not in the catalogue (a hub repo id or a local folder).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from labkit.catalog_files import SHIPPED, source_folder
from labkit.errors import ConfigError, InvalidParameter, UnknownFamily, UnknownModel
from labkit.families import FamilySteps, build_family, merge_families

IMAGE_TASKS = ("txt2img", "img2img")
VIDEO_TASKS = ("img2vid", "txt2vid")
TASKS = IMAGE_TASKS + VIDEO_TASKS

ENV_VAR = "LABKIT_CATALOG"

_SHA = re.compile(r"^[0-9a-f]{40}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_LICENCE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_SOURCE_KINDS = ("package", "path")

# key -> (required, accepted types, what to write)
_SPEC: dict[str, tuple[bool, tuple[type, ...], str]] = {
    "name": (True, (str,), "a display name string"),
    "repo": (False, (str,), 'a Hugging Face repo id "owner/name"'),
    "source": (False, (str,), '"package:PKG/PATH" or "path:FOLDER"'),
    "revision": (False, (str,), 'a 40-hex commit sha or "main"'),
    "family": (True, (str,), "a family of strategies.toml"),
    "tasks": (True, (list,), f"a list drawn from {list(TASKS)}"),
    "licence": (True, (str,), "a licence id such as \"apache-2.0\""),
    "variant": (False, (str,), 'a diffusers weight variant such as "fp16"'),
    "default_steps": (True, (int,), "an integer >= 1"),
    "default_guidance": (True, (int, float), "a number >= 0"),
    "default_size": (True, (list,), "[width, height]"),
    "min_size": (True, (int,), "an integer >= 1"),
    "max_size": (True, (int,), "an integer >= min_size"),
    "size_multiple": (True, (int,), "an integer >= 1"),
    "default_frames": (True, (int,), "an integer (0 for image models)"),
    "default_fps": (True, (int,), "an integer (0 for image models)"),
    "max_frames": (True, (int,), "an integer (0 for image models)"),
    "frame_step": (False, (int,), "an integer >= 1"),
    "fallbacks": (False, (list,), "a list of catalogue ids"),
    "description": (False, (str,), "a string"),
}


@dataclass(frozen=True)
class CatalogEntry:
    """One model of the catalogue. Lists are tuples so entries are hashable and immutable.

    Exactly one of `repo` (a diffusers repo on the Hugging Face hub) and `source`
    ("package:PKG/PATH" inside an installed package, or "path:FOLDER") is set. `revision` is the
    pinned commit of a hub repo ("main" when not pinned) and None for the other sources.
    `origin` names the TOML file that defined (or last overrode) the entry.
    """

    id: str
    name: str
    family: str
    tasks: tuple[str, ...]
    licence: str
    default_steps: int
    default_guidance: float
    default_size: tuple[int, int]
    min_size: int
    max_size: int
    size_multiple: int
    repo: str | None = None
    source: str | None = None
    revision: str | None = None
    variant: str | None = None
    default_frames: int = 0
    default_fps: int = 0
    max_frames: int = 0
    frame_step: int = 1
    fallbacks: tuple[str, ...] = ()
    description: str = ""
    origin: str = SHIPPED

    @property
    def width(self) -> int:
        return self.default_size[0]

    @property
    def height(self) -> int:
        return self.default_size[1]

    @property
    def is_video(self) -> bool:
        return any(t in VIDEO_TASKS for t in self.tasks)

    @property
    def is_pinned(self) -> bool:
        """True when the weights are fixed: a hub commit sha, or a model shipped in a package."""
        return self.repo is None or bool(self.revision and _SHA.match(self.revision))

    @property
    def source_kind(self) -> str:
        """"hub", "package" or "path"."""
        if self.repo is not None:
            return "hub"
        return (self.source or "").partition(":")[0]

    def local_path(self) -> Path | None:
        """The folder of a packaged or local-path model (which may not exist yet); None for hub models.

        Only computes the path: whether the folder holds a model is the loader's question.
        """
        if self.source_kind == "hub":
            return None
        return source_folder(self.source or "", self.origin, f"[models.{self.id}]")

    def pretrained_name_or_path(self) -> str:
        """What `DiffusionPipeline.from_pretrained` takes: the repo id, or the local folder."""
        return self.repo if self.repo is not None else str(self.local_path())

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-able data (lists for tuples), for plans and provenance."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


class Catalog:
    """The model catalogue: entries by id, looked up by id or repo id, checked as a whole.

    `families`: the `FamilySteps` declared by family name; None (a catalogue made from entries alone)
    takes the shipped catalogue's."""

    def __init__(self, entries: Iterable[CatalogEntry], sources: Iterable[str] = (SHIPPED,),
                 families: Mapping[str, FamilySteps] | None = None):
        self._entries: dict[str, CatalogEntry] = {}
        for e in entries:
            self._entries[e.id] = e
        self.sources: tuple[str, ...] = tuple(sources)
        self._families = dict(families) if families is not None else None

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path | None = None, extra: str | Path | Iterable[str | Path] | None = None,
             *, use_env: bool = True, check: bool = True) -> Catalog:
        """Read the catalogue, merge user entries over it, and check it.

        1. The base file: `path`, or the `catalog.toml` shipped with labkit when None.
        2. User files, in order: each path in `LABKIT_CATALOG` (several joined by `os.pathsep`;
           skipped when `use_env` is False), then `extra` (one path or several). A table
           `[models.ID]` for an existing id replaces only the keys it sets; a new id must be
           complete.
        3. `check()` the merged catalogue (unless `check=False`), raising ConfigError on the first
           bad entry.
        """
        if path is None:
            text = resources.files("labkit").joinpath("catalog.toml").read_text(encoding="utf-8")
            base_name = SHIPPED
        else:
            base_name = str(path)
            text = _read(Path(path))
        raw: dict[str, dict[str, Any]] = {}
        origins: dict[str, str] = {}
        fams: dict[str, dict[str, Any]] = {}
        fam_origins: dict[str, str] = {}
        models, families = _parse(text, base_name)
        _merge(raw, origins, models, base_name, override=False)
        merge_families(fams, fam_origins, families, base_name)

        user: list[str] = []
        if use_env and os.environ.get(ENV_VAR):
            user += [p for p in os.environ[ENV_VAR].split(os.pathsep) if p.strip()]
        if extra is not None:
            user += [str(extra)] if isinstance(extra, (str, Path)) else [str(p) for p in extra]
        for name in user:
            p = Path(name).expanduser()
            models, families = _parse(_read(p), str(p))
            _merge(raw, origins, models, str(p), override=True)
            merge_families(fams, fam_origins, families, str(p))

        catalog = cls([_build(i, spec, origins[i]) for i, spec in raw.items()], sources=[base_name, *user],
                      families={f: build_family(f, spec, fam_origins[f]) for f, spec in fams.items()})
        if check:
            catalog.check()
        return catalog

    # -- lookup -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.find(key) is not None

    def ids(self) -> list[str]:
        return list(self._entries)

    def find(self, key: str) -> CatalogEntry | None:
        """The entry whose id, repo id or source equals `key` (case-insensitive), else None."""
        k = key.strip().lower()
        if k in self._entries:
            return self._entries[k]
        for e in self._entries.values():
            if k in (e.id.lower(), (e.repo or "").lower(), (e.source or "").lower()):
                return e
        return None

    def get(self, key: str) -> CatalogEntry:
        """The entry for an id ("sd15") or a repo id ("stabilityai/sd-turbo"), case-insensitive.

        Raises UnknownModel naming close matches and the fix.
        """
        if not isinstance(key, str) or not key.strip():
            raise UnknownModel(f"Model id {key!r} is empty or not a string.", value=key,
                               fix=f"use one of {', '.join(self._entries)}.")
        entry = self.find(key)
        if entry is not None:
            return entry
        names = {e.id.lower(): e.id for e in self._entries.values()}
        names.update({e.repo.lower(): e.repo for e in self._entries.values() if e.repo})
        close = [names[m] for m in difflib.get_close_matches(key.strip().lower(), list(names), n=3, cutoff=0.5)]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModel(
            f"Model {key!r} is not in the catalogue.{hint}", value=key,
            fix=(f"use one of {', '.join(self._entries)}, or pass a diffusers repo id (owner/name) or a "
                 f"local folder with a model_index.json; add it to a catalogue file named by {ENV_VAR} "
                 f"to give it defaults and a licence."))

    def entries(self, task: str | None = None, family: str | None = None) -> list[CatalogEntry]:
        """Entries that support `task` and belong to `family` (either filter optional), in file order."""
        if task is not None and task not in TASKS:
            raise InvalidParameter(f"Unknown task {task!r}.", value=task, fix=f"use one of {', '.join(TASKS)}.")
        if family is not None:
            known = set(_families()) | {e.family for e in self._entries.values()}
            if family not in known:
                raise UnknownFamily(f"Unknown model family {family!r}.", value=family,
                                    fix=f"use one of {', '.join(sorted(known))}.")
        return [e for e in self._entries.values()
                if (task is None or task in e.tasks) and (family is None or e.family == family)]

    def family(self, name: str) -> FamilySteps:
        """The special steps declared for model family `name` (an empty `FamilySteps` when none are)."""
        if self._families is None:
            self._families = Catalog.load(use_env=False, check=False)._families or {}
        return self._families.get(name) or FamilySteps(name)

    def fallback_chain(self, key: str) -> list[CatalogEntry]:
        """The entry, then the models to try if it cannot load: its own fallbacks in order, then
        theirs (breadth first), each model once."""
        first = self.get(key)
        chain: list[CatalogEntry] = []
        seen: set[str] = set()
        queue = deque([first.id])
        while queue:
            i = queue.popleft()
            if i in seen or i not in self._entries:
                continue
            seen.add(i)
            chain.append(self._entries[i])
            queue.extend(self._entries[i].fallbacks)
        return chain

    # -- checking -----------------------------------------------------------------------------

    def check(self, families: Iterable[str] | None = None) -> None:
        """Raise ConfigError naming the entry, field, value and fix of the first bad entry.

        Checks each entry alone (`check_entry`), then across entries: fallbacks name existing
        entries, cover the entry's tasks, and form no cycle. `families` defaults to the families
        of labkit's memory-strategy table.
        """
        fams = sorted(families) if families is not None else _families()
        if not self._entries:
            raise ConfigError(f"The catalogue ({', '.join(self.sources)}) defines no [models.*].",
                              value=None, fix="add at least one [models.ID] table.")
        for e in self._entries.values():
            check_entry(e, fams)
        for f in (self._families or {}).values():
            if f.name not in fams:
                raise ConfigError(f"{f.origin} [families.{f.name}]: {f.name!r} has no row in the memory-strategy "
                                  "table.", value=f.name, fix=f"use one of {', '.join(fams)}.")
        for e in self._entries.values():
            for f in e.fallbacks:
                if f == e.id:
                    raise _err(e, "fallbacks", list(e.fallbacks), f"lists the entry itself ({f!r})",
                               "remove it from its own fallbacks.")
                if f not in self._entries:
                    close = difflib.get_close_matches(f, list(self._entries), n=3, cutoff=0.5)
                    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                    raise _err(e, "fallbacks", list(e.fallbacks), f"names {f!r}, which is not in the catalogue{hint}",
                               f"use ids from {', '.join(self._entries)}.")
                missing = [t for t in e.tasks if t not in self._entries[f].tasks]
                if missing:
                    raise _err(e, "fallbacks", list(e.fallbacks),
                               f"names {f!r}, which cannot do {missing} for this entry",
                               f"fall back only to models whose tasks cover {list(e.tasks)}.")
        cycle = _find_cycle({i: e.fallbacks for i, e in self._entries.items()})
        if cycle:
            e = self._entries[cycle[0]]
            raise _err(e, "fallbacks", list(e.fallbacks), f"form a cycle {' -> '.join(cycle)}",
                       "break the cycle: a fallback must not lead back to the model it replaces.")


def check_entry(e: CatalogEntry, families: Iterable[str]) -> None:
    """Check one entry on its own (everything but cross-entry fallback rules)."""
    fams = list(families)
    if not _ID.match(e.id):
        raise _err(e, "id", e.id, "is not a lower-case id",
                   "use lower-case letters, digits, '.', '_' and '-' in [models.ID].")
    if (e.repo is None) == (e.source is None):
        raise _err(e, "repo", e.repo, "and source must not both be set or both be missing"
                   if e.repo is not None else "is missing (and so is source)",
                   'set either repo = "owner/name" (hub) or source = "package:PKG/PATH" / "path:FOLDER".')
    if e.repo is not None:
        if not _REPO.match(e.repo):
            raise _err(e, "repo", e.repo, "is not a Hugging Face repo id", 'write it as "owner/name".')
        if e.revision is None:
            raise _err(e, "revision", None, "is missing",
                       'pin a 40-hex commit sha (the folder name under snapshots/ after '
                       '`huggingface-cli download REPO`), or write "main" to follow the branch.')
        if e.revision != "main" and not _SHA.match(e.revision):
            raise _err(e, "revision", e.revision, 'is neither "main" nor a 40-hex commit sha',
                       'use the full lower-case 40-character commit sha, or "main".')
    else:
        kind, sep, rest = (e.source or "").partition(":")
        if not sep or kind not in _SOURCE_KINDS or not rest:
            raise _err(e, "source", e.source, "is not a package or path source",
                       'write "package:PKG/PATH" (inside an installed package) or "path:FOLDER".')
        if e.revision is not None:
            raise _err(e, "revision", e.revision, f"applies only to hub repos, not a {kind} source",
                       "remove revision: the package version or the folder pins the weights.")
    if e.family not in fams:
        close = difflib.get_close_matches(e.family, fams, n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise _err(e, "family", e.family, f"has no row in the memory-strategy table{hint}",
                   f"use one of {', '.join(fams)}, or add [families.{e.family}] to strategies.toml.")
    if not e.tasks:
        raise _err(e, "tasks", [], "is empty", f"list at least one of {', '.join(TASKS)}.")
    for t in e.tasks:
        if t not in TASKS:
            raise _err(e, "tasks", list(e.tasks), f"contains unknown task {t!r}", f"use only {', '.join(TASKS)}.")
    if len(set(e.tasks)) != len(e.tasks):
        raise _err(e, "tasks", list(e.tasks), "repeats a task", "list each task once.")
    if e.is_video and any(t in IMAGE_TASKS for t in e.tasks):
        raise _err(e, "tasks", list(e.tasks), "mixes image and video tasks",
                   "split the model into an image entry and a video entry.")
    if not _LICENCE.match(e.licence):
        raise _err(e, "licence", e.licence, "is not a licence id",
                   'use the lower-case id of the licence table, e.g. "apache-2.0" or "creativeml-openrail-m".')
    if e.variant is not None and not re.match(r"^[a-z0-9_]+$", e.variant):
        raise _err(e, "variant", e.variant, "is not a diffusers weight variant", 'use e.g. "fp16", or omit it.')
    if e.default_steps < 1:
        raise _err(e, "default_steps", e.default_steps, "must be at least 1", "set default_steps >= 1.")
    if e.default_guidance < 0:
        raise _err(e, "default_guidance", e.default_guidance, "must not be negative",
                   "set default_guidance >= 0 (0 or 1 disables classifier-free guidance).")
    _check_sizes(e)
    _check_frames(e)


def validate_size(entry: CatalogEntry, width: int, height: int) -> tuple[int, int]:
    """Raise InvalidParameter unless width and height suit `entry`; return them unchanged.

    Each must be an integer in [min_size, max_size] and a multiple of size_multiple. Never rounds:
    a silent correction would render something other than what the plan says.
    """
    for label, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidParameter(f"{entry.name}: {label} {v!r} is not a whole number of pixels.", value=v,
                                   fix=f"pass an integer between {entry.min_size} and {entry.max_size}.")
        if not entry.min_size <= v <= entry.max_size:
            raise InvalidParameter(
                f"{entry.name}: {label} {v} is outside {entry.min_size}-{entry.max_size} px.", value=v,
                fix=f"use a {label} between {entry.min_size} and {entry.max_size} "
                    f"(the model's default is {entry.width}x{entry.height}).")
        if v % entry.size_multiple:
            lo = v - v % entry.size_multiple
            options = [x for x in (lo, lo + entry.size_multiple) if entry.min_size <= x <= entry.max_size]
            raise InvalidParameter(
                f"{entry.name}: {label} {v} is not a multiple of {entry.size_multiple}.", value=v,
                fix=f"use a multiple of {entry.size_multiple}"
                    + (f", e.g. {' or '.join(map(str, options))}." if options else "."))
    return width, height


def validate_frames(entry: CatalogEntry, frames: int) -> int:
    """Raise InvalidParameter unless `frames` suits `entry` (0 for image models); return it."""
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise InvalidParameter(f"{entry.name}: frames {frames!r} is not a whole number.", value=frames,
                               fix="pass an integer frame count.")
    if not entry.is_video:
        if frames:
            raise InvalidParameter(f"{entry.name} makes images, not video: frames {frames}.", value=frames,
                                   fix="set frames to 0, or pick a video model.")
        return frames
    if not 1 <= frames <= entry.max_frames:
        raise InvalidParameter(f"{entry.name}: frames {frames} is outside 1-{entry.max_frames}.", value=frames,
                               fix=f"use at most {entry.max_frames} frames (default {entry.default_frames}).")
    if (frames - 1) % entry.frame_step:
        k = (frames - 1) // entry.frame_step
        options = [1 + j * entry.frame_step for j in (k, k + 1) if 1 + j * entry.frame_step <= entry.max_frames]
        raise InvalidParameter(
            f"{entry.name}: frames {frames} is not 1 + a multiple of {entry.frame_step}.", value=frames,
            fix=f"use {' or '.join(map(str, options))} frames.")
    return frames


# -- model_index.json ---------------------------------------------------------------------------

_CLASS_FAMILIES: tuple[tuple[str, str], ...] = (
    # order matters: StableDiffusionXL* before the StableDiffusion* rule
    ("StableDiffusionXL", "sdxl"),
    ("StableVideoDiffusion", "svd"),
    ("Wan", "t2v"),
    ("LTX", "t2v"),
    ("CogVideoX", "t2v"),
    ("HunyuanVideo", "t2v"),
)
# SD 1.x and 2.x share these classes (sd-turbo's model_index also says StableDiffusionPipeline);
# their memory profiles are close enough that the sd15 row serves both.
_SD_CLASSES = frozenset({
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
})


def family_from_model_index(model_index: Mapping[str, Any]) -> str | None:
    """The memory-strategy family of a diffusers pipeline, from its parsed `model_index.json`.

    A `"labkit": {"family": NAME}` key wins (labkit's own models, e.g. the toy world, carry one).
    Otherwise `_class_name` decides: StableDiffusion{,Img2Img,Inpaint}Pipeline -> sd15,
    StableDiffusionXL* -> sdxl, StableVideoDiffusionPipeline -> svd, Wan* / LTX* / CogVideoX* /
    HunyuanVideo* -> t2v. Returns None when the class is not one labkit has a family for.
    """
    if not isinstance(model_index, Mapping):
        raise InvalidParameter(f"model_index must be the parsed JSON object, got {type(model_index).__name__}.",
                               value=model_index, fix="pass json.load(open('model_index.json')).")
    if "labkit" in model_index:
        meta = model_index["labkit"]
        fam = meta.get("family") if isinstance(meta, Mapping) else None
        if not isinstance(fam, str) or not fam:
            raise ConfigError(f"model_index.json key 'labkit' is {meta!r}, without a family name.", value=meta,
                              fix='write "labkit": {"family": "toy"} (a family of strategies.toml), or remove the key.')
        return fam
    cls = model_index.get("_class_name")
    if not isinstance(cls, str):
        return None
    if cls in _SD_CLASSES:
        return "sd15"
    for prefix, family in _CLASS_FAMILIES:
        if cls.startswith(prefix):
            return family
    return None


# -- internals ----------------------------------------------------------------------------------


def _families() -> list[str]:
    from labkit.hardware import families

    return families()


def _read(path: Path) -> str:
    from labkit.files import read_text

    return read_text(path, what=f"catalogue file (from {ENV_VAR} or Catalog.load)",
                     fix=f"pass the path of an existing TOML file (check {ENV_VAR} too).")


def _parse(text: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Catalogue file {name} is not valid TOML: {e}.", value=name,
                          fix="fix the TOML syntax at the position shown.") from e
    models = data.get("models", {})
    # [adapters.ID] and [controlnets.ID] tables are read by labkit.pipelines (`section_tables`)
    unknown = sorted(set(data) - {"models", "adapters", "controlnets", "families"})
    if unknown or not isinstance(models, dict):
        raise ConfigError(f"Catalogue file {name}: unexpected top-level keys {unknown or ['models']}.",
                          value=unknown, fix="put every model in a [models.ID] table.")
    for mid, spec in models.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"Catalogue file {name}: models.{mid} is {spec!r}, not a table.", value=spec,
                              fix=f"write it as a [models.{mid}] table of keys.")
    families = data.get("families", {})
    bad = families if not isinstance(families, dict) else {k: v for k, v in families.items() if not isinstance(v, dict)}
    if bad:
        raise ConfigError(f"Catalogue file {name}: families {bad!r} are not tables.", value=bad,
                          fix="write each as a [families.NAME] table of keys.")
    return models, families


def _merge(raw: dict[str, dict[str, Any]], origins: dict[str, str], models: dict[str, Any], name: str,
           *, override: bool) -> None:
    for mid, spec in models.items():
        key = mid.lower()
        if key != mid:
            raise ConfigError(f"{name} [models.{mid}]: ids are lower-case.", value=mid,
                              fix=f"rename the table to [models.{key}].")
        if key in raw and override:
            merged = {**raw[key], **spec}
            # Pointing a hub entry at a local folder (or back) replaces the other kind of source;
            # a revision only belongs to a hub repo, so it goes with the repo unless set again.
            if "source" in spec and "repo" not in spec:
                merged.pop("repo", None)
                if "revision" not in spec:
                    merged.pop("revision", None)
            if "repo" in spec and "source" not in spec:
                merged.pop("source", None)
            raw[key] = merged
        else:
            raw[key] = dict(spec)
        origins[key] = name


def _build(mid: str, spec: dict[str, Any], origin: str) -> CatalogEntry:
    where = f"{origin} [models.{mid}]"
    unknown = sorted(set(spec) - set(_SPEC))
    if unknown:
        close = {u: difflib.get_close_matches(u, list(_SPEC), n=1) for u in unknown}
        hint = "; ".join(f"{u!r} -> {c[0]!r}?" for u, c in close.items() if c)
        raise ConfigError(f"{where}: unknown field(s) {unknown}{' (' + hint + ')' if hint else ''}.", value=unknown,
                          fix=f"use only {', '.join(_SPEC)}.")
    for key, (required, types, what) in _SPEC.items():
        if key not in spec:
            if required:
                raise ConfigError(f"{where}: field `{key}` is missing.", value=None, fix=f"add {key} = {what}.")
            continue
        v = spec[key]
        if isinstance(v, bool) or not isinstance(v, types):
            raise ConfigError(f"{where}: field `{key}` = {v!r} has the wrong type.", value=v,
                              fix=f"write {key} = {what}.")
    for key in ("tasks", "fallbacks"):
        if any(not isinstance(x, str) for x in spec.get(key, [])):
            raise ConfigError(f"{where}: field `{key}` = {spec[key]!r} must list strings.", value=spec[key],
                              fix=f"write {key} = {_SPEC[key][2]}.")
    size = spec["default_size"]
    if len(size) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in size):
        raise ConfigError(f"{where}: field `default_size` = {size!r} is not [width, height].", value=size,
                          fix="write default_size = [WIDTH, HEIGHT] in pixels.")
    return CatalogEntry(
        id=mid, name=spec["name"], family=spec["family"], tasks=tuple(spec["tasks"]), licence=spec["licence"],
        default_steps=spec["default_steps"], default_guidance=float(spec["default_guidance"]),
        default_size=(size[0], size[1]), min_size=spec["min_size"], max_size=spec["max_size"],
        size_multiple=spec["size_multiple"], repo=spec.get("repo"), source=spec.get("source"),
        revision=spec.get("revision"), variant=spec.get("variant"),
        default_frames=spec["default_frames"], default_fps=spec["default_fps"], max_frames=spec["max_frames"],
        frame_step=spec.get("frame_step", 1), fallbacks=tuple(spec.get("fallbacks", ())),
        description=spec.get("description", ""), origin=origin,
    )


def _err(e: CatalogEntry, field: str, value: Any, problem: str, fix: str) -> ConfigError:
    err = ConfigError(f"{e.origin} [models.{e.id}] field `{field}` = {value!r} {problem}.", value=value, fix=fix)
    err.entry = e.id  # for panels that highlight the offending row
    err.field = field
    return err


def _check_sizes(e: CatalogEntry) -> None:
    m = e.size_multiple
    if m < 1:
        raise _err(e, "size_multiple", m, "must be at least 1", "set size_multiple to 8, 16 or 32.")
    if e.min_size < 1 or e.min_size % m:
        raise _err(e, "min_size", e.min_size, f"must be a positive multiple of size_multiple ({m})",
                   f"round min_size to a multiple of {m}.")
    if e.max_size < e.min_size or e.max_size % m:
        raise _err(e, "max_size", e.max_size, f"must be >= min_size ({e.min_size}) and a multiple of {m}",
                   f"set max_size to a multiple of {m} no smaller than {e.min_size}.")
    for label, v in (("width", e.width), ("height", e.height)):
        if not e.min_size <= v <= e.max_size or v % m:
            raise _err(e, "default_size", list(e.default_size),
                       f"has {label} {v} outside {e.min_size}-{e.max_size} or not a multiple of {m}",
                       "make default_size fit min_size, max_size and size_multiple.")


def _check_frames(e: CatalogEntry) -> None:
    if e.frame_step < 1:
        raise _err(e, "frame_step", e.frame_step, "must be at least 1", "set frame_step >= 1 (1 allows any count).")
    if not e.is_video:
        for f in ("default_frames", "default_fps", "max_frames"):
            if getattr(e, f):
                raise _err(e, f, getattr(e, f), "must be 0 for an image model",
                           f"set {f} = 0, or list a video task in tasks.")
        return
    if e.default_fps < 1:
        raise _err(e, "default_fps", e.default_fps, "must be at least 1 for a video model", "set the clip's fps.")
    if e.max_frames < 1:
        raise _err(e, "max_frames", e.max_frames, "must be at least 1 for a video model",
                   "set the longest clip the model makes.")
    if not 1 <= e.default_frames <= e.max_frames:
        raise _err(e, "default_frames", e.default_frames, f"must be between 1 and max_frames ({e.max_frames})",
                   "set default_frames within max_frames.")
    for f in ("default_frames", "max_frames"):
        if (getattr(e, f) - 1) % e.frame_step:
            raise _err(e, f, getattr(e, f), f"is not 1 + a multiple of frame_step ({e.frame_step})",
                       f"use a count of the form 1 + k*{e.frame_step}.")


def _find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in the fallback graph as [a, b, …, a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in graph.get(n, ()):
            if m not in graph:
                continue
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None
