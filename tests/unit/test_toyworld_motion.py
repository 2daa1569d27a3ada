"""Moving toy scenes, their captions and split, and the motion tracker on ground-truth clips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labkit.errors import InvalidParameter
from labkit.toyworld.motion import (
    DIRECTIONS,
    MOTIONS,
    Clip,
    combinations,
    is_held_out_motion,
    make_clip_item,
    motion_caption,
    motion_prompts,
    parse_motion,
    read_clip,
    render_clip,
    write_clip_dataset,
)
from labkit.toyworld.motion_eval import motion_verdict
from labkit.toyworld.scenes import BACKGROUNDS, Obj


def test_clip_is_16_frames_of_64px_and_deterministic_in_its_seed():
    clip, text = make_clip_item(seed=3, index=5)
    frames = render_clip(clip)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    again, text_again = make_clip_item(seed=3, index=5)
    assert again == clip and text_again == text and np.array_equal(render_clip(again), frames)
    assert make_clip_item(seed=4, index=5) != (clip, text)


def test_translation_is_uniform_and_growth_changes_the_radius():
    right = Clip(Obj("circle", "red", "small", "left"), "right", travel=0.3)
    xs = [o.xy[0] for o in right.objects()]
    assert xs[-1] - xs[0] == pytest.approx(0.3) and np.allclose(np.diff(xs, 2), 0)
    assert {o.xy[1] for o in right.objects()} == {0.5}
    grows = Clip(Obj("square", "blue", "small", "centre"), "grows", growth=1.5)
    radii = [o.radius for o in grows.objects()]
    assert radii[-1] / radii[0] == pytest.approx(1.5) and bool(np.all(np.diff(radii) > 0))
    assert all(o.attributes == grows.obj.attributes for o in grows.objects())  # named attributes: frame 0's


def test_every_sampled_clip_stays_on_the_canvas():
    bg = np.array(BACKGROUNDS["black"], dtype=np.uint8)
    for split in ("train", "heldout"):
        for i in range(40):
            frames = render_clip(make_clip_item(11, i, split)[0])
            border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
            assert (border == bg).all(), f"item {i} of {split} touches the edge"


def test_splits_are_disjoint_fixed_and_cover_every_motion():
    train, held = combinations("train"), combinations("heldout")
    assert not {(o, m) for o, m in train} & {(o, m) for o, m in held}
    assert {m for _, m in train} == set(MOTIONS) and {m for _, m in held} == set(MOTIONS)
    assert 0.08 < len(held) / (len(train) + len(held)) < 0.25
    for i in range(30):
        assert not is_held_out_motion(make_clip_item(0, i, "train")[0])
        assert is_held_out_motion(make_clip_item(0, i, "heldout")[0])
    with pytest.raises(InvalidParameter, match="Unknown split"):
        combinations("test")


def test_captions_parse_back_to_what_the_clip_does():
    for i in range(60):
        clip, text = make_clip_item(1, i)
        spec = parse_motion(text)
        assert (spec.shape, spec.colour, spec.motion) == (clip.obj.shape, clip.obj.colour, clip.motion), text
        assert spec.size in (None, clip.obj.size) and spec.position in (None, clip.obj.position), text
    clip = Clip(Obj("triangle", "green", "large", "top"), "down")
    assert motion_caption(clip, template=2, verb=2) == "at the top, a large green triangle sliding down"
    assert parse_motion("a red circle moving right").position is None
    assert parse_motion("A BIG magenta diamond on the left drifting to the right") == parse_motion(
        "a large purple diamond on the left moving right")
    assert parse_motion("a small blue square grows").motion == "grows"
    assert parse_motion("the white circle is getting smaller").motion == "shrinks"


@pytest.mark.parametrize("text, what", [
    ("a red circle on the left", "no motion"),
    ("a red circle moving left and growing", "several motions"),
    ("a circle moving up", "0 colour"),
    ("a red blue circle moving up", "2 colour"),
])
def test_parser_names_what_is_wrong(text, what):
    with pytest.raises(InvalidParameter, match=what) as e:
        parse_motion(text)
    assert e.value.fix


def test_bad_clip_settings_fail_with_a_fix():
    with pytest.raises(InvalidParameter, match="motion") as e:
        Clip(Obj("circle", "red", "small", "left"), "spins")
    assert "grows" in e.value.fix
    with pytest.raises(InvalidParameter, match="frames"):
        Clip(Obj("circle", "red", "small", "left"), "right", frames=2)
    with pytest.raises(InvalidParameter, match="below 1"):
        Clip(Obj("circle", "red", "small", "centre"), "shrinks", growth=0.5)


def test_tracker_gets_every_ground_truth_clip_right():
    cases = motion_prompts("heldout", n=18, seed=2) + motion_prompts("train", n=6, seed=3)
    for text, clip in cases:
        frames = render_clip(clip)
        for expected in (text, clip):  # the caption, and the full spec (start position included)
            v = motion_verdict(expected, frames)
            assert v["all_correct"], (text, {k: v[k] for k in ("direction", "identity", "count", "smooth", "start")})
            assert v["jerk_px"] < 0.5 and v["found"] == 16


def test_tracker_catches_wrong_direction_jumps_and_identity_changes():
    clip = Clip(Obj("square", "yellow", "small", "left"), "right", travel=0.28)
    frames = render_clip(clip)
    assert not motion_verdict("a yellow square moving left", frames)["direction"]
    assert not motion_verdict("a yellow square moving up", frames)["direction"]
    assert not motion_verdict("a yellow square moving right", frames[::-1])["direction"]
    shuffled = frames[np.random.default_rng(0).permutation(16)]
    assert not motion_verdict("a yellow square moving right", shuffled)["smooth"]
    swapped = frames.copy()
    other = render_clip(Clip(Obj("square", "cyan", "small", "left"), "right", travel=0.28))
    swapped[8:] = other[8:]
    v = motion_verdict("a yellow square moving right", swapped)
    assert v["direction"] and not v["identity"] and not v["all_correct"]
    blank = frames.copy()
    blank[5] = blank[5, :1, :1]  # the object vanishes for a frame
    assert not motion_verdict("a yellow square moving right", blank)["identity"]
    shrink = render_clip(Clip(Obj("circle", "red", "large", "centre"), "shrinks"))
    assert motion_verdict("a red circle shrinks", shrink)["direction"]
    assert not motion_verdict("a red circle grows", shrink)["direction"]
    assert set(DIRECTIONS) < set(MOTIONS)


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_clip_dataset_round_trips_with_licences(tmp_path, fmt):
    meta = write_clip_dataset(tmp_path / fmt, n=3, seed=9, fmt=fmt)
    records = [json.loads(line) for line in meta.read_text().splitlines()]
    assert [r["licence"] for r in records] == ["CC0-1.0"] * 3
    for i, r in enumerate(records):
        clip, text = make_clip_item(9, i)
        assert r["text"] == text and Clip.from_dict(r["clip"]) == clip and r["frames"] == 16
        got = read_clip(tmp_path / fmt, r)
        want = render_clip(clip)
        assert got.shape == want.shape
        if fmt == "png":
            assert np.array_equal(got, want)
        else:  # GIF quantises to a palette; the tracker still reads it
            assert motion_verdict(clip, got)["all_correct"]
    with pytest.raises(InvalidParameter, match="already exists"):
        write_clip_dataset(tmp_path / fmt, n=1)
    with pytest.raises(InvalidParameter, match="format"):
        write_clip_dataset(tmp_path / "x", n=1, fmt="webm")
