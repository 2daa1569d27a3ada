"""Toy-world datasets: (image, caption) pairs on the fly, or written to disk as an imagefolder.

Item `i` of a dataset with seed `s` is drawn from its own generator, `numpy.random.default_rng([s, i])`,
so any item can be regenerated alone, shards of a dataset agree with the whole, and the on-the-fly
stream yields exactly the pairs `write_dataset` writes. No torch here: a training loop wraps
`iter_pairs` in whatever tensor conversion it needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from itertools import count
from pathlib import Path

import numpy as np

from labkit.errors import InvalidParameter
from labkit.toyworld.captions import caption, sample_split_scene
from labkit.toyworld.scenes import BASE_SHAPES, DEFAULT_BACKGROUND, DEFAULT_CANVAS, Scene, render

METADATA_FILE = "metadata.jsonl"
DEFAULT_AUTHOR = "labkit toyworld (procedurally generated)"


def make_item(seed: int, index: int, split: str = "train", n_objects: int | Sequence[int] = (1, 2),
              shapes: Sequence[str] = BASE_SHAPES, backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,),
              mix: Mapping[str, float] | str | None = None) -> tuple[Scene, str]:
    """The scene and caption of item `index` of the dataset with `seed` (no rendering).

    `mix`: draw the scene kind by these weights (`labkit.toyworld.geneval.KINDS`: single, two, three, count,
    relation; e.g. `geneval.DATA_MIX`) instead of `n_objects` objects at named positions."""
    if index < 0:
        raise InvalidParameter(f"Item index {index} is negative.", value=index, fix="Use an index >= 0.")
    rng = np.random.default_rng([int(seed), int(index)])
    if mix is not None:
        from labkit.toyworld.geneval import sample_mixed

        return sample_mixed(rng, mix, split, shapes, backgrounds)
    scene = sample_split_scene(rng, split, n_objects, shapes, backgrounds)
    return scene, caption(scene, rng)


def iter_pairs(seed: int = 0, split: str = "train", n_objects: int | Sequence[int] = (1, 2),
               n: int | None = None, start: int = 0, shapes: Sequence[str] = BASE_SHAPES,
               backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,), size: int = DEFAULT_CANVAS,
               mix: Mapping[str, float] | str | None = None) -> Iterator[tuple[np.ndarray, str]]:
    """Yield (image, caption) pairs — uint8 (size, size, 3) arrays — for items `start`, `start+1`, ….

    Endless when `n` is None, which suits training on the fly; deterministic in `seed`. `mix`: as `make_item`.
    """
    if n is not None and n < 0:
        raise InvalidParameter(f"n={n} is negative.", value=n, fix="Pass n >= 0, or None for an endless stream.")
    indices = count(start) if n is None else range(start, start + n)
    for i in indices:
        scene, text = make_item(seed, i, split, n_objects, shapes, backgrounds, mix)
        yield render(scene, size=size), text


def prepare_folder(folder: str | Path, n: int, licence: str, overwrite: bool, item: str = "image"
                   ) -> tuple[Path, Path]:
    """Check a dataset's size and licence, refuse to overwrite an existing `metadata.jsonl` unless
    asked, create the folder; return (folder, metadata path)."""
    if n < 1:
        raise InvalidParameter(f"n={n}: a dataset needs at least one {item}.", value=n, fix="Pass n >= 1.")
    if not licence or not licence.strip():
        raise InvalidParameter("Empty licence.", value=licence, fix="Pass an SPDX id such as 'CC0-1.0'.")
    out = Path(folder)
    meta = out / METADATA_FILE
    if meta.exists() and not overwrite:
        raise InvalidParameter(f"{meta} already exists.", value=str(meta),
                               fix="Choose an empty folder, or pass overwrite=True.")
    out.mkdir(parents=True, exist_ok=True)
    return out, meta


def write_dataset(folder: str | Path, n: int, seed: int = 0, split: str = "train",
                  n_objects: int | Sequence[int] = (1, 2), licence: str = "CC0-1.0",
                  shapes: Sequence[str] = BASE_SHAPES, backgrounds: Sequence[str] = (DEFAULT_BACKGROUND,),
                  size: int = DEFAULT_CANVAS, author: str = DEFAULT_AUTHOR, overwrite: bool = False) -> Path:
    """Write `n` PNGs and a `metadata.jsonl` in the Hugging Face imagefolder layout; return the metadata path.

    Each JSON line has `file_name`, `text` (the caption), `licence`, `source`
    ("labkit toyworld seed=… item=… split=…"), `author`, and `scene` (the ground truth as a dict),
    so `datasets.load_dataset("imagefolder", data_dir=folder)` reads it and every item carries its
    licence. Refuses to overwrite an existing metadata file unless `overwrite` is set.
    """
    if n >= 1:  # a bad shape, background, object count or size is refused before the folder exists
        render(make_item(seed, 0, split, n_objects, shapes, backgrounds)[0], size=size)
    out, meta = prepare_folder(folder, n, licence, overwrite, item="image")
    from PIL import Image

    lines = []
    for i in range(n):
        scene, text = make_item(seed, i, split, n_objects, shapes, backgrounds)
        name = f"{i:06d}.png"
        Image.fromarray(render(scene, size=size)).save(out / name)
        lines.append(json.dumps({
            "file_name": name,
            "text": text,
            "licence": licence,
            "source": f"labkit toyworld seed={seed} item={i} split={split}",
            "author": author,
            "scene": scene.to_dict(),
        }))
    # Written last and whole, so a crash mid-way never leaves metadata pointing at missing files.
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return meta


def read_metadata(folder: str | Path) -> list[dict]:
    """The records of a folder's `metadata.jsonl`, in order."""
    path = Path(folder) / METADATA_FILE
    if not path.exists():
        raise InvalidParameter(f"No {METADATA_FILE} in {folder}.", value=str(folder),
                               fix="Point at a folder written by write_dataset.")
    text = path.read_text(encoding="utf-8")  # JSON Lines end at "\n" only: a caption may hold U+2028
    return [json.loads(line) for line in text.split("\n") if line.strip()]


__all__ = ["DEFAULT_AUTHOR", "METADATA_FILE", "iter_pairs", "make_item", "read_metadata", "write_dataset"]
