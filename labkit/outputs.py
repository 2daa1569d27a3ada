"""The files a generation run writes, each carrying the run's record, and readers that get it back.

Every output file embeds the full record (the plan, provenance, seed, model, strategy, timings,
versions, run id …) as JSON, so a file that leaves the lab still says how it was made:

- PNG: a `labkit` text chunk with the JSON record and a `parameters` chunk with the
  AUTOMATIC1111-style text people paste between tools (`Image.open(p).text` shows both).
- MP4 (H.264, yuv420p, `+faststart`): the JSON record in the container's `comment` tag, the
  parameters text in `description`, the prompt in `title`. Arbitrary tag names (say `labkit`)
  do not survive the MP4 muxer, `comment` does. Read back with the ffmpeg binary that
  imageio-ffmpeg ships (`-f ffmetadata`); no ffprobe is needed.
- GIF: the JSON record in the GIF comment extension (Pillow splits it into 255-byte sub-blocks
  and joins them again on read).
- A sidecar `<file>.json` next to a video (and optionally an image) with the same record.

The record is opaque here: it is serialised with `json.dumps(record, sort_keys=True, default=str)`
and never modified — the numbered images get a copy with `"index"` added, nothing else.

Nothing heavy is imported at module level: Pillow, numpy and imageio-ffmpeg are imported inside
the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter, LabkitError
from labkit.grids import captioned_grid  # moved to labkit.grids (issue 20); the old name stays here

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL.Image import Image

log = logging.getLogger(__name__)

#: Text-chunk / metadata key that carries the JSON record in a PNG.
PNG_RECORD_KEY = "labkit"
#: Text-chunk key that carries the human-readable parameters text (AUTOMATIC1111 convention).
PNG_PARAMETERS_KEY = "parameters"
#: MP4 tag that carries the JSON record; one of the few tags the MP4 muxer keeps.
MP4_RECORD_KEY = "comment"
VIDEO_FORMATS = ("mp4", "gif")

# diffusers scheduler class → the sampler name AUTOMATIC1111-style readers expect.
_SAMPLER_NAMES = {
    "DDIMScheduler": "DDIM",
    "DDPMScheduler": "DDPM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "HeunDiscreteScheduler": "Heun",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DPMSolverSinglestepScheduler": "DPM++ 2S",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "UniPCMultistepScheduler": "UniPC",
    "LCMScheduler": "LCM",
}


# ---------------------------------------------------------------------------------------------
# The record as text
# ---------------------------------------------------------------------------------------------


def record_json(record: Mapping[str, Any]) -> str:
    """The record as the JSON every output embeds (sorted keys, ASCII, non-JSON values as str)."""
    return json.dumps(record, sort_keys=True, default=str)


def _quote(text: str) -> str:
    # AUTOMATIC1111 quotes a value that would break its `key: value, key: value` line.
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sampler(scheduler: Any) -> str | None:
    if isinstance(scheduler, Mapping):
        scheduler = scheduler.get("name") or scheduler.get("class") or scheduler.get("_class_name")
    if not scheduler:
        return None
    name = str(scheduler)
    return _SAMPLER_NAMES.get(name, name)


def _terms(terms: Any) -> str:
    if isinstance(terms, Mapping):
        return "; ".join(f"{k}={_fmt(v)}" for k, v in terms.items())
    if isinstance(terms, (list, tuple)):
        return "; ".join(_fmt(t) for t in terms)
    return _fmt(terms)


def parameters_line(record: Mapping[str, Any]) -> str:
    """The human-readable "parameters" text of a record, AUTOMATIC1111 / ComfyUI style.

    The prompt first (it may span lines), then `Negative prompt: …` when there is one, then one
    line of `Key: value` pairs: Steps, Sampler, CFG scale, Seed, Size, Model hash (first 10
    characters), Model, Frames, FPS, Version, Run id, Output terms. Keys absent from the record
    are skipped; values holding `,` `:` or a newline are JSON-quoted as AUTOMATIC1111 does.
    """
    plan = record.get("plan") or {}
    model = record.get("model") or {}
    lines: list[str] = []
    prompt = plan.get("prompt")
    if prompt:
        lines.append(str(prompt))
    negative = plan.get("negative_prompt")
    if negative:
        lines.append(f"Negative prompt: {negative}")

    pairs: list[tuple[str, Any]] = []
    if plan.get("steps") is not None:
        pairs.append(("Steps", plan["steps"]))
    sampler = _sampler(record.get("scheduler"))
    if sampler:
        pairs.append(("Sampler", sampler))
    if plan.get("guidance") is not None:
        pairs.append(("CFG scale", plan["guidance"]))
    seed = plan.get("seed", record.get("seed"))
    if seed is not None:
        pairs.append(("Seed", seed))
    if plan.get("width") is not None and plan.get("height") is not None:
        pairs.append(("Size", f"{plan['width']}x{plan['height']}"))
    model_hash = model.get("hash") if isinstance(model, Mapping) else None
    if model_hash:
        # "sha256:abcd…" → "abcd…"; A1111 shows the first 10 hex characters.
        pairs.append(("Model hash", str(model_hash).rsplit(":", 1)[-1][:10]))
    model_id = model.get("id") if isinstance(model, Mapping) else model
    if model_id:
        pairs.append(("Model", model_id))
    if plan.get("frames") is not None:
        pairs.append(("Frames", plan["frames"]))
    if plan.get("fps") is not None:
        pairs.append(("FPS", plan["fps"]))
    labkit_version = (record.get("versions") or {}).get("labkit")
    if labkit_version:
        pairs.append(("Version", f"labkit {labkit_version}"))
    if record.get("run_id"):
        pairs.append(("Run id", record["run_id"]))
    if record.get("terms"):
        pairs.append(("Output terms", _terms(record["terms"])))
    if pairs:
        lines.append(", ".join(f"{k}: {_quote(_fmt(v))}" for k, v in pairs))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Sidecars
# ---------------------------------------------------------------------------------------------


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """`clip.mp4` → `clip.mp4.json`; a path already ending in `.json` is the sidecar itself."""
    path = Path(path)
    return path if path.suffix.lower() == ".json" else path.with_name(path.name + ".json")


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` through a temporary file and a rename, so a crash mid-write never leaves
    a half file that a later reader takes for the real one. `mode`: the file's permissions (mkstemp's
    0600 when None)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_folder(folder: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """The folder outputs will be written or copied into, checked before any work: `InvalidParameter`
    naming it (and `option`, how the user gave it) when it, or a folder above it, is a file, or when
    the nearest existing folder above it cannot be written. Creates nothing; returns the expanded path."""
    if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
        raise InvalidParameter(f"{option} {folder!r} is not a folder path.", value=folder,
                               fix=f"pass {option} a folder path, e.g. {option} outputs/")
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidParameter(f"{option} {str(path)!r} is a file, not a folder.", value=str(path),
                               fix=f"give {option} a folder (it is created when missing), or move the file away.")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InvalidParameter(f"{option} {str(path)!r} lies under {str(existing)!r}, which is a file.",
                               value=str(path), fix=f"give {option} a folder whose parents are folders.")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidParameter(f"{option} {str(path)!r} cannot be written: {str(existing)!r} is not writable.",
                               value=str(path), fix=f"give {option} a folder you can write to.")
    return path


def copy_outputs(files: Sequence[str | os.PathLike[str]], folder: str | os.PathLike[str], *,
                 option: str = "--out") -> list[Path]:
    """Copy `files` into `folder` (created when missing; checked with `check_output_folder`), each through
    a temporary name and a rename; return the copies' paths, in the order given. `InvalidParameter` naming the
    folder when it cannot be made or written.

    A file of another render already there under the same name (same seed and index, another prompt) is kept:
    the whole batch then takes the first free version tag, `txt2img-7-00-v2.png` (a video's `.mp4.json` sidecar
    keeps its video's name); a file with the same bytes is simply written again."""
    import filecmp
    import shutil

    out = check_output_folder(folder, option=option)
    srcs = [Path(f) for f in files]

    def tagged(name: str, n: int) -> str:  # "txt2img-7-00.mp4.json" → "txt2img-7-00-v2.mp4.json"
        stem = name.split(".", 1)[0]
        return name if n == 1 else f"{stem}-v{n}{name[len(stem):]}"

    def taken(name: str, src: Path) -> bool:
        dst = out / name
        return dst.exists() and not (dst.is_file() and filecmp.cmp(src, dst, shallow=False))

    n = 1
    while any(taken(tagged(s.name, n), s) for s in srcs):
        n += 1
    copies = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for src in srcs:
            dst = out / tagged(src.name, n)
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{src.name}.", suffix=".tmp")
            os.close(fd)
            try:
                shutil.copy2(src, tmp)
                os.replace(tmp, dst)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            copies.append(dst)
    except OSError as e:
        raise InvalidParameter(f"Cannot copy the outputs into {option} {str(out)!r}: {e.strerror or e}.",
                               value=str(out), fix=f"pass {option} a folder you can write to (the run's own "
                                                   "copies are in its artifacts).") from e
    return copies


def write_sidecar(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write the record as JSON next to an output file (`<file>.json`) and return its path.

    `path` is the output the sidecar describes (`clip.mp4` → `clip.mp4.json`), or the sidecar's
    own path when it ends in `.json`. The JSON is indented for people; its content equals the
    record embedded in the output.
    """
    target = sidecar_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, sort_keys=True, default=str, indent=2) + "\n"
    atomic_write_bytes(target, text.encode("utf-8"))
    return target


def _parse_record(text: str | bytes, where: Path, what: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LabkitError(f"The {what} in {where} is not a JSON record ({exc}).", value=str(where),
                          fix="Read a file written by labkit.outputs, or its sidecar .json.") from None
    if not isinstance(record, dict):
        raise LabkitError(f"The {what} in {where} is JSON but not a record (a {type(record).__name__}).",
                          value=str(where), fix="Read a file written by labkit.outputs.")
    return record


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise LabkitError(f"No such output file: {path}.", value=str(path),
                          fix="Check the path; outputs are written under the run's folder.")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record from the sidecar of `path` (`clip.mp4` → reads `clip.mp4.json`)."""
    target = sidecar_path(path)
    _require_file(target)
    return _parse_record(target.read_text(encoding="utf-8"), target, "sidecar")


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------


def _as_rgb_array(frame: Any, index: int) -> np.ndarray:
    """One frame (PIL image or uint8 array) as a contiguous uint8 HxWx3 array."""
    import numpy as np
    from PIL import Image

    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"), dtype=np.uint8)
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8:
            raise InvalidParameter(
                f"Frame {index} is a {frame.dtype} array; frames must be uint8.", value=str(frame.dtype),
                fix="Convert with (x * 255).round().clip(0, 255).astype('uint8'), or ask the pipeline "
                    "for output_type='pil'.")
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or 0 in frame.shape:
            raise InvalidParameter(
                f"Frame {index} has shape {frame.shape}; frames must be HxWx3 (or HxW, HxWx1, HxWx4).",
                value=frame.shape, fix="Pass channels-last arrays, e.g. x.transpose(1, 2, 0) for a CxHxW frame.")
        if frame.shape[2] == 1:
            frame = np.repeat(frame, 3, axis=2)
        elif frame.shape[2] == 4:
            frame = frame[:, :, :3]
        return np.ascontiguousarray(frame)
    raise InvalidParameter(f"Frame {index} is a {type(frame).__name__}; frames must be PIL images or "
                           "uint8 numpy arrays.", value=type(frame).__name__,
                           fix="Pass the pipeline's frames as PIL images (output_type='pil').")


def _validate_frames(frames: Sequence[Any]) -> list[np.ndarray]:
    if isinstance(frames, (str, bytes)) or not hasattr(frames, "__len__"):
        raise InvalidParameter(f"frames must be a list of images, got {type(frames).__name__}.",
                               value=type(frames).__name__, fix="Pass a list of PIL images or uint8 arrays.")
    if len(frames) == 0:
        raise InvalidParameter("frames is empty: a video needs at least one frame.", value=[],
                               fix="Check that the pipeline returned frames (result.frames) before writing.")
    arrays = [_as_rgb_array(f, i) for i, f in enumerate(frames)]
    h, w = arrays[0].shape[:2]
    for i, a in enumerate(arrays):
        if a.shape[:2] != (h, w):
            raise InvalidParameter(
                f"Frame {i} is {a.shape[1]}x{a.shape[0]} but frame 0 is {w}x{h}; all frames of a video "
                "must have one size.", value=f"{a.shape[1]}x{a.shape[0]}",
                fix=f"Resize every frame to {w}x{h} (PIL: frame.resize(({w}, {h}))) before writing.")
    return arrays


def _to_pil(image: Any) -> Image:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    import numpy as np

    if isinstance(image, np.ndarray):
        return Image.fromarray(_as_rgb_array(image, 0))
    raise InvalidParameter(f"image is a {type(image).__name__}; expected a PIL image or a uint8 array.",
                           value=type(image).__name__, fix="Pass result.images[i] (a PIL image).")


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------


def write_png(image: Image | np.ndarray, path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Save `image` as a PNG at `path` carrying the record; return the path.

    Two text chunks: `parameters` (see `parameters_line`, readable by AUTOMATIC1111/ComfyUI-style
    tools; iTXt when the prompt is not Latin-1) and `labkit` (the JSON record, ASCII tEXt).
    """
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    pil = _to_pil(image)
    info = PngInfo()
    info.add_text(PNG_PARAMETERS_KEY, parameters_line(record))
    info.add_text(PNG_RECORD_KEY, record_json(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pil.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_png_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON record embedded in a PNG by `write_png`; `LabkitError` naming the file if none."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _require_file(path)
    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", None) or {})
            fmt = im.format
    except UnidentifiedImageError:
        raise LabkitError(f"{path} is not an image Pillow can read.", value=str(path),
                          fix="Pass a PNG written by labkit.outputs.write_png.") from None
    if PNG_RECORD_KEY not in text:
        raise LabkitError(
            f"{path} ({fmt}) carries no labkit record (no '{PNG_RECORD_KEY}' text chunk; "
            f"found: {sorted(text) or 'none'}).", value=str(path),
            fix="Use the original PNG: many sites and editors strip text chunks. A sidecar "
                f"{sidecar_path(path).name} may still hold the record.")
    return _parse_record(text[PNG_RECORD_KEY], path, "'labkit' text chunk")


def write_image_outputs(images: Sequence[Any], folder: str | os.PathLike[str], stem: str,
                        record: Mapping[str, Any], *, sidecar: bool = False) -> list[Path]:
    """Write numbered PNGs `stem-00.png`, `stem-01.png` … into `folder`; return their paths.

    Each file carries its own copy of the record with `"index": i` added (the caller's record is
    not modified). With `sidecar=True` each also gets `<file>.json`.
    """
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__") or len(images) == 0:
        raise InvalidParameter("images is empty: nothing to write.", value=images,
                               fix="Check that the pipeline returned images (result.images) before writing.")
    if not stem or "/" in stem or "\\" in stem:
        raise InvalidParameter(f"stem {stem!r} is not a plain file name.", value=stem,
                               fix="Pass the folder as `folder` and a bare name such as 'sample' as `stem`.")
    folder = Path(folder)
    width = max(2, len(str(len(images) - 1)))
    paths = []
    for i, image in enumerate(images):
        own = {**record, "index": i}
        p = write_png(image, folder / f"{stem}-{i:0{width}d}.png", own)
        if sidecar:
            write_sidecar(p, own)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmeta_escape(value: str) -> str:
    # ffmetadata format: '=', ';', '#', '\' and newline are escaped with a backslash.
    return "".join("\\" + ch if ch in "=;#\\\n" else ch for ch in value)


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Global tags of an ffmetadata file (stops at the first [STREAM]/[CHAPTER] section)."""
    tags: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        # at the start of a line
        if text[i] == "\n":
            i += 1
            continue
        if text[i] in ";#":  # comment line (the ';FFMETADATA1' header too)
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if text[i] == "[":
            break
        key: list[str] = []
        value: list[str] = []
        cur = key
        while i < n and text[i] != "\n":
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 2
                continue
            if ch == "=" and cur is key:
                cur = value
            else:
                cur.append(ch)
            i += 1
        if cur is value:
            tags["".join(key)] = "".join(value)
    return tags


def _even_pad(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], tuple[int, int], tuple[int, int]]:
    import numpy as np

    h, w = arrays[0].shape[:2]
    h2, w2 = h + h % 2, w + w % 2
    if (h2, w2) == (h, w):
        return arrays, (w, h), (w, h)
    # Edge-replicate rather than resample: every original pixel stays exact; one extra row/column.
    padded = [np.pad(a, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge") for a in arrays]
    return padded, (w, h), (w2, h2)


def _write_mp4(arrays: list[np.ndarray], path: Path, fps: float, record: Mapping[str, Any], crf: int) -> None:
    arrays, (w0, h0), (w, h) = _even_pad(arrays)
    description = parameters_line(record)
    if (w, h) != (w0, h0):
        # libx264 yuv420p needs even sizes; say so in the file and the log, never in the record.
        note = f"labkit: frames padded from {w0}x{h0} to {w}x{h} (H.264 4:2:0 needs even sizes)"
        description = f"{description}\n{note}" if description else note
        log.warning("%s: %s", path.name, note)
    title = str((record.get("plan") or {}).get("prompt") or "").split("\n", 1)[0][:200]
    meta = [";FFMETADATA1", f"{MP4_RECORD_KEY}={_ffmeta_escape(record_json(record))}",
            f"description={_ffmeta_escape(description)}"]
    if title:
        meta.append(f"title={_ffmeta_escape(title)}")

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labkit-mp4-") as tmpdir:
        # The record goes in through an ffmetadata file, not `-metadata comment=…` on the command
        # line: Linux caps one argument at 128 KiB, and a long record must not hit that.
        meta_file = Path(tmpdir) / "meta.txt"
        meta_file.write_text("\n".join(meta) + "\n", encoding="utf-8")
        err_file = Path(tmpdir) / "ffmpeg.log"
        tmp_out = path.with_name(f".{path.name}.tmp")
        cmd = [_ffmpeg(), "-y", "-hide_banner", "-nostdin", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "pipe:0",
               "-f", "ffmetadata", "-i", str(meta_file),
               "-map", "0:v", "-map_metadata", "1",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf),
               "-movflags", "+faststart", "-f", "mp4", str(tmp_out)]
        with open(err_file, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                assert proc.stdin is not None
                for a in arrays:
                    proc.stdin.write(a.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg exited early; its log says why
            rc = proc.wait()
        if rc != 0 or not tmp_out.is_file():
            tmp_out.unlink(missing_ok=True)
            tail = err_file.read_text(errors="replace")[-2000:]
            raise LabkitError(f"ffmpeg could not write {path} (exit {rc}): {tail.strip()}", value=str(path),
                              fix="Check free disk space and that imageio-ffmpeg's binary runs "
                                  "(python -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_version())').")
        os.replace(tmp_out, path)


def _write_gif(arrays: list[np.ndarray], path: Path, fps: float, record: Mapping[str, Any]) -> None:
    from PIL import Image

    images = [Image.fromarray(a) for a in arrays]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # GIF delays are in 1/100 s; Pillow merges identical consecutive frames into one longer one.
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(10, round(1000 / fps)), loop=0,
                       comment=record_json(record).encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _video_paths(path_stem: str | os.PathLike[str], formats: Sequence[str]) -> dict[str, Path]:
    stem = Path(path_stem)
    if stem.suffix.lower() in tuple(f".{f}" for f in VIDEO_FORMATS):
        stem = stem.with_suffix("")
    return {fmt: stem.with_name(f"{stem.name}.{fmt}") for fmt in formats}


def write_video(frames: Sequence[Image | np.ndarray], path_stem: str | os.PathLike[str], fps: float,
                record: Mapping[str, Any], formats: Sequence[str] = ("mp4", "gif"), *,
                sidecar: bool = True, crf: int = 18) -> dict[str, Path]:
    """Write `frames` as a video in each of `formats`, each carrying the record.

    Steps:
    1. Validate everything before any work: frames (non-empty, one size, PIL images or uint8
       HxWx3 arrays), fps > 0, formats among "mp4" and "gif".
    2. MP4: H.264 (libx264, yuv420p, CRF `crf`, `+faststart`) through imageio-ffmpeg's binary;
       the JSON record in the `comment` tag, the parameters text in `description`, the prompt in
       `title`. Odd widths/heights are padded by one edge-replicated row/column (H.264 4:2:0
       needs even sizes); the record is left as it is and the padding is noted in `description`.
    3. GIF: Pillow, `loop=0`, one delay per frame, the JSON record in the comment extension.
    4. Each file gets a sidecar `<file>.json` unless `sidecar=False`.

    `path_stem` is the path without extension (`out/clip` → `out/clip.mp4`, `out/clip.gif`).
    Returns {format: path of the video file}; sidecars are at `sidecar_path(path)`.
    """
    # 1. validate
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(str(f).lower().lstrip(".") for f in formats)
    unknown = [f for f in formats if f not in VIDEO_FORMATS]
    if unknown or not formats:
        raise InvalidParameter(f"Unknown video format(s) {unknown or list(formats)}.", value=unknown or formats,
                               fix=f"Choose formats among {list(VIDEO_FORMATS)}.")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = float("nan")
    if not fps > 0 or fps == float("inf"):
        raise InvalidParameter(f"fps must be a positive number, got {fps!r}.", value=fps,
                               fix="Pass the plan's fps, e.g. 8.")
    arrays = _validate_frames(frames)
    paths = _video_paths(path_stem, formats)

    # 2.–4. write
    for fmt, path in paths.items():
        if fmt == "mp4":
            _write_mp4(arrays, path, fps, record, crf)
        else:
            _write_gif(arrays, path, fps, record)
        if sidecar:
            write_sidecar(path, record)
    return paths


def read_video_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The container's global tags (title, comment, description, encoder …) via ffmpeg's ffmetadata."""
    path = Path(path)
    _require_file(path)
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
           "-f", "ffmetadata", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise LabkitError(f"ffmpeg could not read {path}: {proc.stderr.decode(errors='replace').strip()[-1000:]}",
                          value=str(path), fix="Pass an MP4 written by labkit.outputs.write_video.")
    return _parse_ffmetadata(proc.stdout.decode("utf-8", errors="replace"))


def read_video_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON record embedded in a video by `write_video`.

    GIF: from the comment extension (Pillow). MP4 and other containers: from the `comment` tag,
    read with imageio-ffmpeg's ffmpeg (`-f ffmetadata`). `LabkitError` naming the file if none.
    """
    path = Path(path)
    _require_file(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                comment = im.info.get("comment")
        except UnidentifiedImageError:
            raise LabkitError(f"{path} is not a GIF Pillow can read.", value=str(path),
                              fix="Pass a GIF written by labkit.outputs.write_video.") from None
        if not comment:
            raise LabkitError(f"{path} carries no labkit record (no GIF comment).", value=str(path),
                              fix=f"Use the original file; a sidecar {sidecar_path(path).name} may hold the record.")
        return _parse_record(comment, path, "GIF comment")
    tags = read_video_metadata(path)
    if MP4_RECORD_KEY not in tags:
        raise LabkitError(f"{path} carries no labkit record (no '{MP4_RECORD_KEY}' tag; found: "
                          f"{sorted(tags) or 'none'}).", value=str(path),
                          fix=f"Use the original file (re-encoding may drop tags); a sidecar "
                              f"{sidecar_path(path).name} may hold the record.")
    return _parse_record(tags[MP4_RECORD_KEY], path, f"'{MP4_RECORD_KEY}' tag")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of any labkit output: a PNG, an MP4/GIF, or a sidecar `.json`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_sidecar(path)
    if suffix == ".png":
        return read_png_record(path)
    return read_video_record(path)


__all__ = [
    "parameters_line", "record_json", "write_png", "read_png_record", "write_image_outputs",
    "write_video", "read_video_record", "read_video_metadata", "write_sidecar", "read_sidecar",
    "sidecar_path", "read_record", "captioned_grid",
]

