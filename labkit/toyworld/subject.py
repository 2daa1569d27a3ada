"""The toy DreamBooth subject: one yellow ring, a shape the toy model never saw, taught as "a yellow sks circle".

    write_subject_dataset("ring/")          # 6 PNGs + metadata.jsonl (CC0): the ring at the training contexts
    subject_prompts("heldout")              # "a large yellow sks circle at the bottom", …: contexts it never saw
    class_prompts()                         # "a large red circle at the bottom", …: what the class word must keep
    write_class_prompts("class_prompts.txt")  # the subject's captions without "sks", then the other half

The subject is a `SUBJECT` object (shape "ring", colour "yellow"); a caption names it as the toy grammar names a
yellow circle, with the identifier before the class noun ("a small yellow sks circle on the left"). So "a small
yellow circle on the left" — a class prompt — differs from it by the identifier alone: the identifier carries
only what is the subject's own (the hole), and prior preservation keeps yellow circles whole. Training images
show it at `TRAIN_CONTEXTS` (each size at three places); held-out contexts are the (size, place) pairs it was
never shown at, so subject fidelity measures the subject in new compositions. The detector reads rings like any
other shape (`scenes.SHAPE_GEOMETRY["ring"]`), so a verdict needs no new code.
"""

from __future__ import annotations

import json
from pathlib import Path

from labkit.errors import InvalidParameter
from labkit.toyworld.captions import _ON
from labkit.toyworld.data import DEFAULT_AUTHOR, prepare_folder
from labkit.toyworld.scenes import COLOURS, POSITIONS, SIZES, Obj, Scene, render

#: The subject's own attributes: what an image of "sks" must show whatever the prompt says around it.
SUBJECT = {"shape": "ring", "colour": "yellow"}
#: The identifier the toy recipe teaches, and the class the subject belongs to.
TOKEN = "sks"
CLASS_NOUN = "circle"
#: (size, position) of the training images: both sizes, four places; every other pair is held out (the bottom
#: was never shown at all).
TRAIN_CONTEXTS: tuple[tuple[str, str], ...] = (("small", "left"), ("small", "top"), ("small", "right"),
                                               ("large", "right"), ("large", "centre"), ("large", "top"))
HELDOUT_CONTEXTS: tuple[tuple[str, str], ...] = tuple(
    (s, p) for s in SIZES for p in POSITIONS if (s, p) not in TRAIN_CONTEXTS)
#: Small shifts of the training images, so the six are not six copies of three pictures.
_JITTER = ((0.0, 0.0), (0.02, 0.03), (0.0, -0.03), (-0.02, 0.0), (0.03, -0.02), (0.0, 0.02))


def subject_caption(size: str, position: str, token: str = TOKEN) -> str:
    """"a small yellow sks circle on the left": the subject named by its colour, identifier and class noun, in a
    context."""
    return f"a {size} {SUBJECT['colour']} {token} {CLASS_NOUN} {_ON[position]}"


def subject_object(size: str, position: str) -> Obj:
    """The subject as a scene object at a named size and position."""
    return Obj(SUBJECT["shape"], SUBJECT["colour"], size, position)


def write_subject_dataset(folder: str | Path, *, licence: str = "CC0-1.0", token: str = TOKEN,
                          overwrite: bool = False) -> Path:
    """Write the subject's training images (one per `TRAIN_CONTEXTS` entry, 64²) and their `metadata.jsonl`
    (`file_name`, `text`, `licence`, `source`, `author`, `scene`); return the metadata path."""
    if not token or not token.strip() or len(token.split()) != 1:
        raise InvalidParameter(f"The identifier {token!r} is not one word.", value=token,
                               fix='use one rare word, e.g. "sks".')
    out, meta = prepare_folder(folder, len(TRAIN_CONTEXTS), licence, overwrite)
    from PIL import Image

    lines = []
    for i, ((size, position), (dx, dy)) in enumerate(zip(TRAIN_CONTEXTS, _JITTER, strict=True)):
        x, y = POSITIONS[position]
        obj = Obj(SUBJECT["shape"], SUBJECT["colour"], size, position, centre=(x + dx, y + dy))
        name = f"{i:06d}.png"
        Image.fromarray(render(Scene((obj,)))).save(out / name)
        lines.append(json.dumps({"file_name": name, "text": subject_caption(size, position, token),
                                 "licence": licence, "source": f"labkit toyworld subject item={i}",
                                 "author": DEFAULT_AUTHOR, "scene": Scene((obj,)).to_dict()}))
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return meta


def subject_prompts(split: str = "heldout", token: str = TOKEN) -> list[tuple[str, Obj]]:
    """(prompt, expected object) for the subject in every context of `split` ("train" or "heldout")."""
    if split not in ("train", "heldout"):
        raise InvalidParameter(f"Unknown split {split!r}.", value=split, fix='use "train" or "heldout".')
    contexts = sorted(set(TRAIN_CONTEXTS)) if split == "train" else list(HELDOUT_CONTEXTS)
    return [(subject_caption(s, p, token), subject_object(s, p)) for s, p in contexts]


def class_prompts(split: str = "eval") -> list[tuple[str, Obj]]:
    """(prompt, expected object) for plain circles: the class word's meaning, which language drift erodes.

    The 70 (colour, size, place) circles fall in two halves of 35 that share no prompt: "eval" (what
    `labkit eval dreambooth` scores) and "train" (what the toy recipe draws its class images from, so prior
    preservation covers every colour of the class without seeing the scored prompts); "all" is both. In each
    half, every colour is asked small at some places and large at the others, and the halves swap them."""
    if split not in ("eval", "train", "all"):
        raise InvalidParameter(f"Unknown split {split!r}.", value=split, fix='use "eval", "train" or "all".')
    out = [_class_prompt(Obj(CLASS_NOUN, c, size, p)) for c in COLOURS for size in SIZES for p in POSITIONS]
    return out if split == "all" else out[split == "train"::2]


def subject_class_prompts() -> list[str]:
    """The subject's captions without the identifier ("a small yellow circle on the left"), one per training
    context: DreamBooth's class prompt, the instance prompt without the identifier. Class images drawn from them
    show the class at the very contexts the subject is shown at, so the identifier, not the context, is what
    tells the ring from a yellow circle."""
    return [_class_prompt(Obj(CLASS_NOUN, SUBJECT["colour"], s, p))[0] for s, p in TRAIN_CONTEXTS]


def _class_prompt(obj: Obj) -> tuple[str, Obj]:
    """A class object's prompt in the captions' first template ("a small red circle at the top"), with it."""
    from labkit.toyworld.captions import caption

    return caption(Scene((obj,)), template=0), obj


def write_class_prompts(path: str | Path) -> Path:
    """Write the toy recipe's class prompts, one per line (what `--class-prompts` reads): the subject's captions
    without the identifier (`subject_class_prompts`), then the "train" half of `class_prompts`; return the path.
    Three of the first six (the yellow circle small on the left and on the right, large at the top) are also
    among the 35 scored prompts; the other 32 are prompts no class image was drawn from."""
    path = Path(path)
    path.write_text("".join(p + "\n" for p in [*subject_class_prompts(), *(p for p, _ in class_prompts("train"))]),
                    encoding="utf-8")
    return path


__all__ = ["CLASS_NOUN", "HELDOUT_CONTEXTS", "SUBJECT", "TOKEN", "TRAIN_CONTEXTS", "class_prompts",
           "subject_caption", "subject_class_prompts", "subject_object", "subject_prompts", "write_class_prompts",
           "write_subject_dataset"]
