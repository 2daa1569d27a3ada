"""labkit.grids.image_grid: the one image grid (training validation, evaluation sheets, sweep grids)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labkit.errors import InvalidParameter
from labkit.grids import captioned_grid, image_grid

BG = (128, 128, 128)


def solid(i: int, size: tuple[int, int] = (8, 6)) -> Image.Image:
    """Image i: one colour of its own (never the background grey or white)."""
    return Image.new("RGB", size, (10 + 20 * i, 200 - 15 * i, (37 * i) % 100))


@pytest.mark.parametrize(("n", "cols", "rows"), [(1, 1, 1), (3, 3, 1), (4, 3, 2), (6, 3, 2), (7, 3, 3), (5, 8, 1)])
@pytest.mark.parametrize("pad", [0, 2])
def test_n_images_in_cols_make_the_sheet_size_and_each_cell_holds_its_image(n, cols, rows, pad):
    w, h = 8, 6
    sheet = image_grid([solid(i) for i in range(n)], cols, pad=pad, background=BG)
    assert sheet.mode == "RGB" and sheet.size == (cols * (w + pad) + pad, rows * (h + pad) + pad)
    px = np.asarray(sheet)
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), pad + r * (h + pad)
        assert (px[y:y + h, x:x + w] == solid(i).getpixel((0, 0))).all(), f"cell {i} (row {r}, col {c})"
    for i in range(n, rows * cols):  # the cells after the last image stay background
        r, c = divmod(i, cols)
        x, y = pad + c * (w + pad), pad + r * (h + pad)
        assert (px[y:y + h, x:x + w] == BG).all()
    if pad:
        assert (px[:pad] == BG).all() and (px[:, :pad] == BG).all()


@pytest.mark.parametrize(("n", "cols"), [(1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4)])
def test_the_default_columns_are_the_square_root_rounded_up(n, cols):
    assert image_grid([solid(i) for i in range(n)]).width == cols * 8


def test_a_tile_resizes_every_image_and_a_none_cell_stays_empty():
    imgs = [solid(0, (30, 10)), None, np.full((5, 5, 3), 250, dtype=np.uint8)]
    sheet = image_grid(imgs, 3, tile=(16, 12))
    assert sheet.size == (48, 12)
    px = np.asarray(sheet)
    assert (px[:, :16] == solid(0).getpixel((0, 0))).all()
    assert (px[:, 16:32] == 255).all()  # white, the default background
    assert (px[:, 32:] == 250).all()  # an array is tiled like an image
    assert image_grid([solid(0)], tile=20).size == (20, 20)


def test_labels_go_in_a_band_under_or_over_the_picture():
    imgs = [Image.new("RGB", (40, 20), "white")] * 2
    below = np.asarray(image_grid(imgs, 2, tile=(40, 20), label=12, labels=[["cat"], []]))
    assert below.shape[:2] == (32, 80)
    assert (below[20:, :40] < 100).any() and not (below[20:, 40:] < 100).any()  # text only where labelled
    assert not (below[:20] < 100).any()  # the pictures are untouched
    above = np.asarray(image_grid(imgs, 2, tile=(40, 20), label=12, label_above=True, labels=[["cat"], []]))
    assert (above[:12, :40] < 100).any() and not (above[12:] < 100).any()


def test_captioned_grid_is_64_pixel_tiles_with_a_22_pixel_caption_band():
    sheet = captioned_grid([solid(i) for i in range(3)], ["a red circle", "b", "c"], cols=2)
    assert sheet.size == (2 * 64, 2 * (64 + 22))
    assert np.asarray(sheet)[0:64, 64:128].tolist() == np.asarray(solid(1).resize((64, 64))).tolist()
    assert captioned_grid([], [], cols=3).size == (3 * 64, 64 + 22)


def test_nothing_to_tile_or_a_label_per_image_missing_is_invalid():
    with pytest.raises(InvalidParameter) as info:
        image_grid([])
    assert isinstance(info.value, ValueError) and info.value.fix  # the old `except ValueError` still catches it
    with pytest.raises(InvalidParameter) as info:
        image_grid([solid(0), solid(1)], labels=[["one"]])
    assert info.value.value == 1
    with pytest.raises(InvalidParameter):
        captioned_grid([solid(0)], ["a", "b"])


def test_the_old_names_are_the_shared_grid():
    from labkit.outputs import captioned_grid as old_captioned
    from labkit.training import image_grid as training_grid

    assert old_captioned is captioned_grid
    imgs = [solid(i) for i in range(5)]
    assert np.array_equal(np.asarray(training_grid(imgs, cols=2)),
                          np.asarray(image_grid(imgs, 2, pad=2, background=BG)))
