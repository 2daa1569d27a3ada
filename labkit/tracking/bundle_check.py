"""Checking a run bundle before anything is written: steps 1 and 2 of `labkit.tracking.bundle`.

    manifest = read_manifest("study.zip")    # the schema, every artifact path, every zip member; writes nothing

`MANIFEST_SCHEMA` is the JSON schema of `manifest.json`; `_check_manifest` adds what a schema cannot say
(unique ids, no parent cycle, artifact paths that stay under their run's folder); `_check_members` the zip
itself (no symbolic links, no encrypted members, each declared artifact a plain file of its declared size);
`stage_artifacts` streams each artifact into a private folder, counting and hashing, and stops a zip bomb at its
declared size. Every refusal is a `ConfigError` naming the bad key or value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, InvalidParameter, LabkitError

FORMAT = "labkit-run-bundle"
FORMAT_VERSION = 1
#: The largest manifest.json read (a full metric history of a big study is tens of MB).
MANIFEST_MAX_BYTES = 256 * 1024**2
CHUNK = 1024**2
_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_FIX_BUNDLE = "export the bundle again with `labkit export` (or `export_bundle`) and import that file; " \
              "do not edit a bundle by hand."
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_MS = {"type": ["integer", "null"], "minimum": 0}
_VALUE = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
#: The JSON schema every manifest is validated against before anything is written (step 1 above).
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "format_version", "experiments", "runs"],
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"type": "integer", "minimum": 1, "maximum": FORMAT_VERSION},
        "created": {"type": ["string", "null"]},
        "labkit": {"type": ["string", "null"]},
        "mlflow": {"type": ["string", "null"]},
        "source": {"type": "object"},
        "experiments": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "tags"],
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 256},
                           "name": {"type": "string", "minLength": 1, "maxLength": 500},
                           "tags": _STR_MAP}}},
        "runs": {"type": "array", "items": {
            "type": "object",
            "required": ["run_id", "experiment_id", "name", "status", "start_time", "end_time", "params", "tags",
                         "metrics", "artifacts"],
            "properties": {
                "run_id": {"type": "string", "pattern": r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$"},
                "experiment_id": {"type": "string", "minLength": 1},
                "name": {"type": ["string", "null"]},
                "status": {"enum": ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]},
                "start_time": _MS,
                "end_time": _MS,
                "parent_run_id": {"type": ["string", "null"]},
                "params": _STR_MAP,
                "tags": _STR_MAP,
                "metrics": {"type": "object", "additionalProperties": {"type": "array", "items": {
                    "type": "array", "minItems": 3, "maxItems": 3,
                    "prefixItems": [{"type": "integer"}, {"type": "integer", "minimum": 0}, _VALUE]}}},
                "artifacts": {"type": "array", "items": {
                    "type": "object", "required": ["path", "size", "sha256"],
                    "properties": {"path": {"type": "string", "minLength": 1, "maxLength": 4096},
                                   "size": {"type": "integer", "minimum": 0},
                                   "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
            }}},
    },
}


def short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def refuse(path: Path, what: str, value: Any, fix: str = _FIX_BUNDLE) -> ConfigError:
    return ConfigError(f"The bundle {str(path)!r} is refused: {what}.", value=value, fix=fix)


def _where(parts) -> str:
    out = "manifest"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _read_manifest_bytes(path: Path, zf: zipfile.ZipFile) -> bytes:
    try:
        info = zf.getinfo("manifest.json")
    except KeyError as e:
        raise ConfigError(f"{str(path)!r} is not a labkit bundle (no manifest.json in the zip).", value=str(path),
                          fix="pass a .zip written by `labkit export`.") from e
    if info.file_size > MANIFEST_MAX_BYTES:
        raise refuse(path, f"manifest.json declares {info.file_size:,} bytes, over the {MANIFEST_MAX_BYTES:,} this "
                         "labkit reads", info.file_size)
    with zf.open(info) as f:
        blob = f.read(MANIFEST_MAX_BYTES + 1)
    if len(blob) > MANIFEST_MAX_BYTES:
        raise refuse(path, f"manifest.json holds more than {MANIFEST_MAX_BYTES:,} bytes", len(blob))
    return blob


def _schema_error(path: Path, manifest: Any) -> ConfigError | None:
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if not errors:
        return None
    err = errors[0]
    where = _where(err.absolute_path)
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        what = f"{where} lacks the key {missing[0]!r}" if missing else f"{where}: {err.message}"
        value = missing[0] if missing else err.instance
    elif err.validator == "pattern" and where.endswith(".sha256"):
        what, value = f"{where} is {short(err.instance)}, not a sha256 (64 lowercase hex digits)", err.instance
    elif err.validator == "pattern":
        what, value = f"{where} is {short(err.instance)}, which is not a run id (letters, digits, - and _)", \
            err.instance
    else:
        what, value = f"{where} is {short(err.instance)}: {short(err.message, 200)}", err.instance
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return refuse(path, what + more, value)


def _check_artifact_path(path: Path, where: str, rel: str) -> None:
    """Refuse `rel` unless it is a plain relative path that stays under its run's folder."""
    def bad_path(why: str) -> ConfigError:
        return refuse(path, f"{where} is {short(rel)}, {why}; an artifact path must be a relative path under its "
                            "run's folder", rel)

    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise bad_path("which holds a control character (such as NUL)")
    if "\\" in rel:
        raise bad_path("which holds a backslash")
    if rel.startswith("/"):
        raise bad_path("an absolute path")
    parts = rel.split("/")
    if any(_DRIVE.match(p) for p in parts):
        raise bad_path("which names a drive")
    if any(p in ("..", ".") for p in parts):
        raise bad_path("which climbs out with '..'" if ".." in parts else "which holds a '.' part")
    if any(p == "" for p in parts):
        raise bad_path("which holds an empty part ('//' or a trailing '/')")
    root = Path("/labkit-run")
    if not (root / rel).resolve().is_relative_to(root):  # belt and braces: the checks above already ensure it
        raise bad_path("which leaves the folder")
    return rel


def _check_manifest(path: Path, manifest: Any) -> None:
    """Step 1 on the manifest alone: the schema, then what a schema cannot say."""
    if not isinstance(manifest, dict):
        raise refuse(path, f"manifest.json holds a {type(manifest).__name__}, not an object", short(manifest))
    if "format" in manifest and manifest["format"] != FORMAT:  # a missing key is named by the schema below
        raise ConfigError(f"{str(path)!r} is a {manifest.get('format')!r} file, not a labkit run bundle.",
                          value=manifest.get("format"), fix="pass a .zip written by `labkit export`.")
    version = manifest.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} has bundle format version {version!r}; this labkit reads up to "
                          f"{FORMAT_VERSION}.", value=version, fix="upgrade labkit (pip install -U labkit).")
    error = _schema_error(path, manifest)
    if error is not None:
        raise error
    exp_ids: set[str] = set()
    for i, e in enumerate(manifest["experiments"]):
        if e["id"] in exp_ids:
            raise refuse(path, f"{_where(['experiments', i, 'id'])} repeats the experiment id {e['id']!r}", e["id"])
        exp_ids.add(e["id"])
    runs: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(manifest["runs"]):
        where = _where(["runs", i])
        if not _RUN_ID.fullmatch(r["run_id"]):  # re's `$` in the schema also matches before a final newline
            raise refuse(path, f"{where}.run_id is {short(r['run_id'])}, which is not a run id (letters, digits, "
                             "- and _)", r["run_id"])
        if r["run_id"] in runs:
            raise refuse(path, f"{where}.run_id repeats the run id {r['run_id']!r}", r["run_id"])
        runs[r["run_id"]] = r
        if r["experiment_id"] not in exp_ids:
            raise refuse(path, f"{where}.experiment_id is {r['experiment_id']!r}, which is not among the experiments "
                             f"of the bundle ({', '.join(map(repr, sorted(exp_ids))) or 'none'})", r["experiment_id"])
        seen: set[str] = set()
        for j, a in enumerate(r["artifacts"]):
            rel = a["path"]
            _check_artifact_path(path, f"{where}.artifacts[{j}].path", rel)
            if not _SHA256.fullmatch(a["sha256"]):
                raise refuse(path, f"{where}.artifacts[{j}].sha256 is {short(a['sha256'])}, not a sha256 "
                                 "(64 lowercase hex digits)", a["sha256"])
            if rel in seen:
                raise refuse(path, f"{where}.artifacts[{j}].path repeats {rel!r}", rel)
            seen.add(rel)
        folders = {"/".join(p.split("/")[:k]) for p in seen for k in range(1, p.count("/") + 1)}
        clash = sorted(seen & folders)
        if clash:
            raise refuse(path, f"{where}.artifacts name {clash[0]!r} both as a file and as a folder", clash[0])
    for rid in runs:  # a parent cycle would make the parents-first order loop forever
        chain, cur = [rid], runs[rid].get("parent_run_id")
        while cur in runs:
            if cur in chain:
                raise refuse(path, f"the runs' parent links loop ({' -> '.join([*chain[chain.index(cur):], cur])})",
                           cur)
            chain.append(cur)
            cur = runs[cur].get("parent_run_id")


def _member(path: Path, zf: zipfile.ZipFile, run_id: str, artifact: dict[str, Any]) -> zipfile.ZipInfo:
    """The zip member of a declared artifact, after checking it is a plain file of the declared size."""
    name = f"runs/{run_id}/{artifact['path']}"
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise refuse(path, f"the artifact {artifact['path']!r} of run {run_id} is declared in the manifest but the zip "
                         f"has no member {name!r}", artifact["path"]) from None
    if info.is_dir():
        raise refuse(path, f"the zip member {name!r} is a folder, not a file", name)
    if info.flag_bits & 0x1:
        raise refuse(path, f"the zip member {name!r} is encrypted", name)
    if info.file_size != artifact["size"]:
        raise refuse(path, f"the artifact {artifact['path']!r} of run {run_id} declares {artifact['size']:,} bytes but "
                         f"its zip member holds {info.file_size:,}", artifact["path"])
    return info


def _check_members(path: Path, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    for info in zf.infolist():
        if stat.S_ISLNK(info.external_attr >> 16):
            raise refuse(path, f"the zip member {info.filename!r} is a symbolic link; a bundle holds plain files only",
                       info.filename)
    for r in manifest["runs"]:
        for a in r["artifacts"]:
            _member(path, zf, r["run_id"], a)


def open_checked(path: str | Path) -> tuple[Path, dict[str, Any]]:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidParameter(f"The bundle {short(path)} is not a file path.", value=path,
                               fix="pass the path of a .zip written by `labkit export`.")
    path = Path(path)
    if not path.is_file():
        raise InvalidParameter(f"There is no bundle at {str(path)!r}.", value=str(path),
                               fix="pass a .zip written by `labkit export`.")
    try:
        with zipfile.ZipFile(path) as zf:
            blob = _read_manifest_bytes(path, zf)
            try:
                manifest = json.loads(blob)
            except (ValueError, RecursionError) as e:
                raise ConfigError(f"{str(path)!r} is not a labkit bundle (its manifest.json is not JSON: "
                                  f"{short(str(e), 200)}).", value=str(path),
                                  fix="pass a .zip written by `labkit export`.") from e
            _check_manifest(path, manifest)
            _check_members(path, zf, manifest)
    except LabkitError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{str(path)!r} is not a labkit bundle (not a readable zip: {short(str(e), 200)}).",
                          value=str(path), fix="pass a .zip written by `labkit export`.") from e
    except OSError as e:
        raise InvalidParameter(f"Cannot read the bundle {str(path)!r}: {e.strerror or e}.", value=str(path),
                               fix="check the file's permissions and that it is fully downloaded.") from e
    return path, manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a bundle, after checking it is one this labkit can read: step 1 of the module
    docstring (the schema, the paths, the zip members), without writing anything."""
    return open_checked(path)[1]


def stage_artifacts(path: Path, zf: zipfile.ZipFile, entries: list[dict[str, Any]], staging: Path,
           max_bytes: int) -> dict[str, Path]:
    """Step 2: each artifact of `entries` streamed into `staging`, counted and hashed; run id → its folder."""
    folders, total = {}, 0
    for i, entry in enumerate(entries):
        if not entry["artifacts"]:
            continue
        folder = staging / f"run-{i}"  # not named by the run id: nothing from the bundle names a folder here
        folders[entry["run_id"]] = folder
        for a in entry["artifacts"]:
            info, size, what = _member(path, zf, entry["run_id"], a), a["size"], \
                f"the artifact {a['path']!r} of run {entry['run_id']}"
            target = folder.joinpath(*a["path"].split("/"))
            if not target.resolve().is_relative_to(folder.resolve()):
                raise refuse(path, f"{what} leaves its run's folder", a["path"])
            digest, n = hashlib.sha256(), 0
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as dst:
                    # Never ask for more than one byte past the declared size: a bomb is not inflated.
                    while chunk := src.read(min(CHUNK, size - n + 1)):
                        n += len(chunk)
                        total += len(chunk)
                        if n > size:
                            raise refuse(path, f"{what} holds more than its declared {size:,} bytes", a["path"])
                        if total > max_bytes:
                            raise refuse(path, f"its artifacts hold more than max_bytes={max_bytes:,}", max_bytes,
                                       fix="if you trust the bundle, allow more: --max-bytes N (max_bytes= to "
                                           "import_bundle).")
                        digest.update(chunk)
                        dst.write(chunk)
            except LabkitError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
                raise refuse(path, f"{what} cannot be read from the zip ({short(str(e), 200)})", a["path"]) from e
            except FileExistsError as e:  # two paths that are one on this file system (case-insensitive)
                raise refuse(path, f"{what} collides with another artifact path on this file system", a["path"]) from e
            except OSError as e:
                raise InvalidParameter(f"Cannot stage the bundle {str(path)!r} in {str(staging)!r}: "
                                       f"{e.strerror or e}.", value=str(staging),
                                       fix="free some disk space, or point TMPDIR at a larger disk.") from e
            if n != size:
                raise refuse(path, f"{what} holds {n:,} bytes, not its declared {size:,}", a["path"])
            if digest.hexdigest() != a["sha256"]:
                raise refuse(path, f"{what} does not match its checksum (sha256 {digest.hexdigest()} where the "
                                 f"manifest says {a['sha256']}); the bundle is damaged", a["path"])
    return folders
