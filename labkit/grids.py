"""Image grids: the one function that tiles pictures into a sheet, and the captioned sheets built on it.

The contract: `image_grid` places cell i at row i // cols, column i % cols; every cell is `tile` pixels
(default: the first image's size, pasted unscaled) plus a caption band of `label` pixels, with `pad`
pixels of `background` around each; a None cell stays empty. The sheet is
``(cols * (w + pad) + pad, rows * (h + label + pad) + pad)`` with ``rows = max(1, ceil(n / cols))``.

    image_grid(images, cols=4, pad=2, background=(128, 128, 128))     # a training validation grid
    captioned_grid(images, captions)                                   # 64-pixel tiles, caption under each

Used by training validation (`labkit.training.card.image_grid`), the toy evaluations' failure sheets,
the motion evaluation's clip sheet and the sweep report's grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from labkit.errors import InvalidParameter


def image_grid(images: Sequence[Any], cols: int | None = None, *, tile: int | tuple[int, int] | None = None,
               pad: int = 0, background: Any = "white", label: int = 0, label_above: bool = False,
               labels: Sequence[Sequence[str]] | None = None, label_at: tuple[int, int] = (1, 0),
               line_height: int = 10):
    """Tile `images` (PIL images, arrays, or None for an empty cell) row-major into one RGB PIL image.

    Args:
        cols: cells per row; default the square root of the count, rounded up.
        tile: the cell's picture size, (width, height) or one side of a square; each image is resized to
            it. None: the first image's size, and images are pasted as they are.
        pad: pixels of `background` around every cell.
        label: height of the caption band under each picture (above it with `label_above`).
        labels: per cell, the lines of text drawn in black in its band, `line_height` apart, starting
            `label_at` (x, y) from the band's corner; text may run on over the cells to its right.

    Raises InvalidParameter when there is nothing to take the size from (no images and no `tile`) or
    when `labels` does not give one entry per image.
    """
    from PIL import Image, ImageDraw

    images = list(images)
    if tile is None:
        first = next((im for im in images if im is not None), None)
        if first is None:
            raise InvalidParameter("No images to tile.", value=len(images), fix="pass at least one image.")
        w, h = _pil(first).size
    else:
        w, h = (tile, tile) if isinstance(tile, int) else tile
    if labels is not None and len(labels) != len(images):
        raise InvalidParameter(f"{len(labels)} labels for {len(images)} images.", value=len(labels),
                               fix="give one entry (a list of lines, maybe empty) per image.")
    cols = cols or math.ceil(math.sqrt(len(images))) or 1
    rows = max(1, math.ceil(len(images) / cols))
    cell_h = h + label
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (cell_h + pad) + pad), background)
    draw = ImageDraw.Draw(sheet) if labels is not None else None
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), pad + r * (cell_h + pad)
        band_y, pic_y = (y, y + label) if label_above else (y + h, y)
        if draw is not None and label_above:  # the text first: the pictures cover what overflows the band
            _text(draw, labels[i], x + label_at[0], band_y + label_at[1], line_height)
        if im is not None:
            im = _pil(im).convert("RGB")
            sheet.paste(im if tile is None else im.resize((w, h)), (x, pic_y))
        if draw is not None and not label_above:
            _text(draw, labels[i], x + label_at[0], band_y + label_at[1], line_height)
    return sheet


def captioned_grid(images: list[Any], captions: list[str], cols: int = 8):
    """Images in a grid of 64-pixel tiles, each with its caption under it in two short lines."""
    lines = [[" ".join(t.split()[:3])[:14], " ".join(t.split()[3:])[:14]] for t in captions]
    return image_grid(images, cols, tile=64, label=22, labels=lines, label_at=(1, 0), line_height=10)


def _pil(image: Any) -> Any:
    """A PIL image as it is; an array (H, W[, C]) as a PIL image."""
    if hasattr(image, "convert"):
        return image
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.asarray(image))


def _text(draw: Any, lines: Sequence[str], x: int, y: int, line_height: int) -> None:
    for k, line in enumerate(lines):
        if line:
            draw.text((x, y + k * line_height), line, fill="black")


__all__ = ["captioned_grid", "image_grid"]
