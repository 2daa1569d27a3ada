"""Checks of the LoRA-family recipes (`lora`, `dreambooth`) that need more than a config's own fields: the data
folder (`check_dataset`, `open_image`), the toy concept (`concept_fix`), the base model's pipeline class
(`check_base_index`, read from its model_index.json before it loads) and the layers LoRA targets
(`check_targets`, against the loaded model, before any run opens).

    check_dataset("hexagons/")     # the records, or InvalidParameter naming the folder, line or image
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter

#: The pipeline classes a LoRA-family recipe trains: Stable Diffusion 1.x/2.x layout (a UNet and one CLIP text
#: encoder), text-to-image (validation renders from prompts alone).
LORA_BASE_CLASSES = ("StableDiffusionPipeline",)


def check_dataset(folder: str | Path) -> list[dict[str, Any]]:
    """The records of an imagefolder dataset, checked before any model loads: the folder is a folder with a
    readable metadata.jsonl (see `read_records`), and every image it lists exists, has a caption and
    decodes. InvalidParameter naming the folder, the line or the image otherwise."""
    from labkit.compliance.datasets import read_records

    if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
        raise InvalidParameter(f"LoraTrainConfig.data={folder!r} is not a folder path.", value=folder,
                               fix="point at an image folder with metadata.jsonl (file_name, text, licence per line).")
    records = read_records(folder)
    for r in records:
        if not isinstance(r.get("text"), str) or not r["text"].strip():
            raise InvalidParameter(f"{r['file_name']} has no caption (`text`) in {Path(folder) / 'metadata.jsonl'}.",
                                   value=r["file_name"], fix="give every image a caption in metadata.jsonl.")
        open_image(Path(folder) / r["file_name"]).close()
    return records


def open_image(path: Path):
    """The image at `path` decoded as RGB; InvalidParameter naming the file when it is missing, not an
    image, or cut off."""
    from PIL import Image

    fix = "replace or remove the file, and its line in metadata.jsonl."
    if not path.is_file():
        raise InvalidParameter(f"{path} (listed in metadata.jsonl) does not exist" + (" (it is a folder)." if
                               path.is_dir() else "."), value=str(path), fix="remove its line or add the image.")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError (not an image) is an OSError; PIL reports a cut-off file as OSError or SyntaxError.
        raise InvalidParameter(f"{path} is not an image labkit can read ({type(e).__name__}: {e}).", value=str(path),
                               fix=fix) from e


def concept_fix(concept: Any) -> str | None:
    """None when `concept` (LoraTrainConfig.concept) is None or a shape the toy world draws and its detector
    knows; else the fix to show, naming the close match."""
    from labkit.toyworld.scenes import ALL_SHAPES

    if concept is None or (isinstance(concept, str) and concept in ALL_SHAPES):
        return None
    close = difflib.get_close_matches(str(concept).strip().lower(), ALL_SHAPES, n=1, cutoff=0.6)
    return ((f"did you mean {close[0]!r}? " if close else "") + f"use a shape the toy evaluation knows, one of "
            f"{list(ALL_SHAPES)}, or None (the final adherence check then asks for the base shapes).")


def check_base_index(base: str, ref: Any, folder: Path) -> None:
    """InvalidParameter, before `base` loads, when its folder's model_index.json names a pipeline class that is
    not a Stable Diffusion text-to-image one (a video model, SDXL, an inpainting pipeline…). A folder without a
    readable model_index.json is left to the loader, which names what is broken."""
    try:
        cls = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(cls, str) or cls in LORA_BASE_CLASSES:
        return
    entry = getattr(ref, "entry", None)
    what = f"a {cls}" + (f" (a video model: {', '.join(entry.tasks)})" if entry is not None and entry.is_video
                         else "")
    raise InvalidParameter(f"Base model {base!r} is {what}, not a text-to-image StableDiffusionPipeline: LoRA and "
                           "DreamBooth train a Stable Diffusion 1.x/2.x-layout model (a UNet and one CLIP text "
                           "encoder).", value=base,
                           fix="pass a text-to-image Stable Diffusion base, e.g. base='toyworld' or an SD 1.5 folder "
                               "or repo id (a video model trains with `labkit train toy-motion`).")


def check_targets(model: Any, targets: Sequence[str], field: str, base: str, usual: Sequence[str] = ()) -> None:
    """InvalidParameter naming `field`, the targets that match no layer of `model` (a Linear, Conv or Embedding
    whose name is a target or ends with "." + target, PEFT's rule) and a sample of the names it has (those of
    `usual`, the recipe's defaults, first). PEFT itself refuses only a list of which nothing matches."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Embedding)
    layers = [n for n, m in model.named_modules() if isinstance(m, kinds)]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in layers)]
    if not missing:
        return
    parts = [n.split(".") for n in layers]
    names = sorted({".".join(p[-2:]) if p[-1].isdigit() else p[-1] for p in parts})
    names = [n for n in usual if n in names] + [n for n in names if n not in usual]
    raise InvalidParameter(f"{field}={list(targets)}: {missing} match(es) no layer of {type(model).__name__} in base "
                           f"{base!r}.", value=list(targets),
                           fix=f"name layers it has (name suffixes), e.g. {names[:12]}"
                               + (f" ({len(names)} in all)." if len(names) > 12 else "."))


__all__ = ["LORA_BASE_CLASSES", "check_base_index", "check_dataset", "check_targets", "concept_fix", "open_image"]
