"""Toy-world scenes, captions, the held-out split and the dataset writer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labkit.errors import InvalidParameter
from labkit.toyworld import (
    ALL_SHAPES,
    BACKGROUNDS,
    BASE_SHAPES,
    COLOURS,
    OBJECT_TEMPLATES,
    POSITIONS,
    SIZES,
    Obj,
    Scene,
    caption,
    is_held_out,
    iter_pairs,
    parse,
    prompts,
    read_metadata,
    render,
    render_pil,
    sample_scene,
    split_of,
    write_dataset,
)
from labkit.toyworld.scenes import all_objects, coverage

REPO = Path(__file__).resolve().parents[2]


# --- scenes -------------------------------------------------------------------------------------


def test_vocabulary_keeps_new_concepts_out_of_the_base_world():
    assert set(BASE_SHAPES) == {"circle", "square", "triangle", "diamond"}
    assert set(ALL_SHAPES) == set(BASE_SHAPES) | {"hexagon", "star", "ring"}
    assert len(COLOURS) >= 6 and set(SIZES) == {"small", "large"}
    assert set(POSITIONS) == {"left", "right", "top", "bottom", "centre"}
    rng = np.random.default_rng(0)
    seen = {o.shape for _ in range(300) for o in sample_scene(rng).objects}
    assert seen == set(BASE_SHAPES)


def test_palette_stays_separable_from_itself_and_every_background():
    # The detector names colours by nearest palette entry; a colour added between two others
    # (orange between red and yellow) would make that guesswork under noise.
    cols = np.array(list(COLOURS.values()), dtype=float)
    bgs = np.array(list(BACKGROUNDS.values()), dtype=float)
    between = np.linalg.norm(cols[:, None] - cols[None], axis=2) + np.eye(len(cols)) * 1e9
    assert between.min() > 130
    assert np.linalg.norm(cols[:, None] - bgs[None], axis=2).min() > 150


def test_sample_scene_and_render_are_deterministic_in_the_seed():
    def draw(seed: int) -> list[Scene]:
        rng = np.random.default_rng(seed)
        return [sample_scene(rng, n_objects=(1, 2), backgrounds=tuple(BACKGROUNDS)) for _ in range(20)]

    a, b, c = draw(7), draw(7), draw(8)
    assert a == b
    assert a != c
    for s, t in zip(a, b, strict=True):
        assert np.array_equal(render(s), render(t))
    img = render(a[0])
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert render(a[0], size=32).shape == (32, 32, 3)
    assert render_pil(a[0]).size == (64, 64)


def test_two_object_scenes_use_two_positions_and_every_count_occurs():
    rng = np.random.default_rng(1)
    counts = Counter()
    for _ in range(200):
        s = sample_scene(rng, n_objects=(1, 2))
        counts[len(s.objects)] += 1
        assert len({o.position for o in s.objects}) == len(s.objects)
    assert counts[1] > 50 and counts[2] > 50
    assert all(len(sample_scene(rng, n_objects=2).objects) == 2 for _ in range(20))


def test_objects_at_different_anchors_never_touch_and_keep_off_the_border():
    # The union over every shape at an anchor and size is the most any object there can cover.
    masks = {
        (p, sz): np.max([coverage(sh, x * 64, y * 64, SIZES[sz] * 64, 64, 64) for sh in ALL_SHAPES], axis=0) > 0
        for p, (x, y) in POSITIONS.items() for sz in SIZES
    }
    for (p, sz), m in masks.items():
        assert not (m[:2].any() or m[-2:].any() or m[:, :2].any() or m[:, -2:].any()), (p, sz)
        grown = m.copy()
        for _ in range(2):  # two pixels of clearance, so blur cannot bridge two objects
            g = np.pad(grown, 1)
            grown = np.max([g[dy:dy + 64, dx:dx + 64] for dy in range(3) for dx in range(3)], axis=0)
        for (q, sz2), other in masks.items():
            if q != p:
                assert not (grown & other).any(), (p, sz, q, sz2)


def test_render_paints_the_object_colour_at_its_anchor_on_the_background():
    s = Scene((Obj("square", "red", "large", "left"),), background="slate")
    img = render(s)
    x, y = POSITIONS["left"]
    assert tuple(img[int(y * 64), int(x * 64)]) == COLOURS["red"]
    assert tuple(img[2, 2]) == BACKGROUNDS["slate"]
    assert tuple(img[int(y * 64), int(POSITIONS["right"][0] * 64)]) == BACKGROUNDS["slate"]


def test_continuous_geometry_moves_and_scales_an_object():
    # A motion model renders frames with a continuous centre; the mask's centroid must follow it.
    for cx in (0.3, 0.41, 0.55):
        s = Scene((Obj("circle", "white", "small", "left", centre=(cx, 0.6), scale=0.1),))
        m = render(s)[..., 0].astype(float) - BACKGROUNDS["black"][0]
        ys, xs = np.mgrid[0:64, 0:64]
        assert abs((m * (xs + 0.5)).sum() / m.sum() - cx * 64) < 0.1
        assert abs((m * (ys + 0.5)).sum() / m.sum() - 0.6 * 64) < 0.1
        assert abs(m.sum() / (COLOURS["white"][0] - BACKGROUNDS["black"][0]) - np.pi * 6.4**2) < 2.0
    upright = render(Scene((Obj("square", "red", "large", "centre"),)))
    turned = render(Scene((Obj("square", "red", "large", "centre", angle=45.0),)))
    assert not np.array_equal(upright, turned)


def test_bad_attribute_names_fail_loudly():
    with pytest.raises(InvalidParameter, match="orange"):
        Obj("circle", "orange", "small", "left")
    with pytest.raises(InvalidParameter):
        Scene(())
    with pytest.raises(InvalidParameter):
        sample_scene(np.random.default_rng(0), n_objects=5)


def test_scene_dict_round_trip():
    s = Scene((Obj("star", "cyan", "large", "top", centre=(0.4, 0.2), scale=0.12, angle=10.0),
               Obj("circle", "red", "small", "bottom")), background="plum")
    assert Scene.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# --- captions -----------------------------------------------------------------------------------


def test_every_template_parses_back_to_its_scene():
    rng = np.random.default_rng(2)
    scenes = [sample_scene(rng, n_objects=(1, 2), shapes=ALL_SHAPES) for _ in range(60)]
    scenes += [Scene((o,)) for o in all_objects(ALL_SHAPES)]  # every word of the vocabulary
    for s in scenes:
        for t in range(len(OBJECT_TEMPLATES)):
            for reverse in (False, True):
                text = caption(s, template=t, reverse=reverse)
                assert parse(text) == s, (t, text)


def test_captions_read_as_the_examples_and_paraphrase():
    s = Scene((Obj("circle", "red", "small", "left"),))
    texts = {caption(s, template=t) for t in range(len(OBJECT_TEMPLATES))}
    assert "a small red circle on the left" in texts
    assert "left: one small red circle" in texts
    assert "a red circle, small, at the left" in texts
    two = Scene((Obj("circle", "red", "small", "left"), Obj("square", "blue", "large", "right")))
    assert caption(two, template=0) == "a small red circle on the left and a large blue square on the right"
    rng = np.random.default_rng(3)
    assert len({caption(two, rng) for _ in range(50)}) >= 6
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    assert [caption(two, r1) for _ in range(10)] == [caption(two, r2) for _ in range(10)]


def test_parse_reads_hand_written_prompts_and_rejects_incomplete_ones():
    assert parse("One LARGE blue square in the center.") == Scene((Obj("square", "blue", "large", "centre"),))
    assert parse("a big magenta star at the top").objects[0].colour == "purple"
    with pytest.raises(InvalidParameter, match="size"):
        parse("a red circle on the left")
    with pytest.raises(InvalidParameter, match="colour"):
        parse("a small red blue circle on the left")
    with pytest.raises(InvalidParameter, match="same position"):
        parse("a small red circle on the left and a large blue square on the left")
    with pytest.raises(InvalidParameter):
        parse("a photo of a cat")


def test_held_out_split_is_fixed_disjoint_and_leaves_every_word_in_train():
    objs = all_objects(BASE_SHAPES)
    held = [o for o in objs if is_held_out(o)]
    train = [o for o in objs if not is_held_out(o)]
    assert 0.10 < len(held) / len(objs) < 0.25
    # Pinned: the split is a hash, so these never change (a changed split invalidates evaluations).
    assert len(held) == 50
    assert Obj("circle", "red", "small", "left") in train
    for k, attr in enumerate(("shape", "colour", "size", "position")):
        assert {o.attributes[k] for o in train} == {o.attributes[k] for o in objs}, attr
    heldout_prompts = prompts("heldout", n=200, seed=0, n_objects=(1, 2))
    train_prompts = prompts("train", n=200, seed=0, n_objects=(1, 2))
    assert heldout_prompts == prompts("heldout", n=200, seed=0, n_objects=(1, 2))
    assert all(split_of(parse(p)) == "heldout" for p in heldout_prompts)
    assert all(split_of(parse(p)) == "train" for p in train_prompts)
    held_combos = {o.attributes for p in heldout_prompts for o in parse(p).objects}
    train_combos = {o.attributes for p in train_prompts for o in parse(p).objects}
    assert held_combos and train_combos and not held_combos & train_combos
    assert any(len(parse(p).objects) == 2 for p in heldout_prompts)


# --- datasets -----------------------------------------------------------------------------------


def test_write_dataset_makes_an_imagefolder_with_licensed_metadata(tmp_path):
    meta = write_dataset(tmp_path / "ds", n=12, seed=4, licence="CC0-1.0")
    assert meta == tmp_path / "ds" / "metadata.jsonl"
    records = read_metadata(tmp_path / "ds")
    assert len(records) == 12
    assert len(list((tmp_path / "ds").glob("*.png"))) == 12
    streamed = list(iter_pairs(seed=4, n=12))
    for rec, (img, text) in zip(records, streamed, strict=True):
        assert {"file_name", "text", "licence", "source", "author"} <= set(rec)
        assert rec["licence"] == "CC0-1.0" and rec["source"].startswith("labkit toyworld seed=4")
        assert rec["text"] == text
        on_disk = np.asarray(Image.open(tmp_path / "ds" / rec["file_name"]))
        assert np.array_equal(on_disk, img)
        # The caption alone says what is in the picture.
        assert np.array_equal(on_disk, render(parse(rec["text"])))
        assert Scene.from_dict(rec["scene"]) == parse(rec["text"])
        assert split_of(parse(rec["text"])) == "train"
    with pytest.raises(InvalidParameter, match="exists"):
        write_dataset(tmp_path / "ds", n=2, seed=4)
    write_dataset(tmp_path / "ds", n=2, seed=5, overwrite=True)
    assert len(read_metadata(tmp_path / "ds")) == 2


def test_stream_is_endless_and_items_are_independent_of_where_it_starts():
    stream = iter_pairs(seed=11, split="heldout")
    first = [next(stream) for _ in range(5)]
    later = list(iter_pairs(seed=11, split="heldout", start=3, n=2))
    assert [t for _, t in first[3:]] == [t for _, t in later]
    assert all(split_of(parse(t)) == "heldout" for _, t in first)


def test_toyworld_imports_without_torch():
    code = "import sys, labkit.toyworld; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("write, kw, named", [
    ("image", {"shapes": ("hexagn",)}, "hexagn"),  # a misspelt concept (the LoRA notebook's parameter)
    ("image", {"backgrounds": ("pink",)}, "pink"),
    ("image", {"size": 3}, "size 3"),
    ("clip", {"frames": 0}, "frames=0"),
    ("clip", {"split": "nope"}, "nope"),
])
def test_a_dataset_that_cannot_be_written_leaves_no_folder_behind(tmp_path, write, kw, named):
    from labkit.toyworld.data import write_dataset
    from labkit.toyworld.motion import write_clip_dataset

    folder = tmp_path / "new" / "data"
    with pytest.raises(InvalidParameter, match=named):
        (write_dataset if write == "image" else write_clip_dataset)(folder, 2, **kw)
    assert not (tmp_path / "new").exists()  # an empty folder would pass for a dataset being written


def test_metadata_with_a_unicode_line_separator_in_a_caption_reads_back(tmp_path):
    from labkit.toyworld.data import read_metadata, write_dataset

    meta = write_dataset(tmp_path / "d", 2)
    lines = meta.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["text"] += "\u2028second line"  # valid JSON Lines: json.dumps keeps U+2028 as it is with ensure_ascii off
    meta.write_text(json.dumps(record, ensure_ascii=False) + "\n" + lines[1] + "\n", encoding="utf-8")
    assert [r["text"].endswith("\u2028second line") for r in read_metadata(tmp_path / "d")] == [True, False]
