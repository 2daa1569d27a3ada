"""Control maps as a ControlNet user checks them: every limb of a hand-written skeleton drawn between the right
joints in its conventional colour, missing joints drawing nothing, the map scaling with the image; the three
keypoint formats agreeing; canny edges where the picture has edges; bad input named with its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from labkit.controls import canny, draw_pose, map_record, read_keypoints
from labkit.controls.pose import COLOURS, FROM_BODY25, FROM_COCO17, JOINTS, LIMB_INTENSITY, LIMBS, stick_width
from labkit.errors import InvalidParameter

# A person standing with arms and legs spread, on a 512 x 512 canvas (COCO-18 order, pixels): far enough
# apart that no two limbs cross near their middles.
BODY = {"nose": (256, 90), "neck": (256, 160), "right_shoulder": (190, 165), "right_elbow": (120, 210),
        "right_wrist": (60, 250), "left_shoulder": (322, 165), "left_elbow": (392, 210), "left_wrist": (452, 250),
        "right_hip": (215, 300), "right_knee": (170, 390), "right_ankle": (140, 480), "left_hip": (297, 300),
        "left_knee": (342, 390), "left_ankle": (372, 480), "right_eye": (236, 70), "left_eye": (276, 70),
        "right_ear": (206, 40), "left_ear": (306, 40)}


def _coco18(missing: tuple[str, ...] = ()) -> list[float]:
    flat: list[float] = []
    for name in JOINTS:
        x, y = BODY[name]
        flat += [0.0, 0.0, 0.0] if name in missing else [float(x), float(y), 0.9]
    return flat


def _openpose(flat: list[float], **extra) -> dict:
    return {"people": [{"pose_keypoints_2d": flat, **extra}], "canvas_width": 512, "canvas_height": 512}


def _pixel(image: Image.Image, point: tuple[float, float]) -> tuple[int, ...]:
    return image.getpixel((int(point[0]), int(point[1])))


def _mid(a: str, b: str, scale: float = 1.0) -> tuple[float, float]:
    (x0, y0), (x1, y1) = BODY[a], BODY[b]
    return (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale


def test_every_limb_is_drawn_between_its_joints_in_its_colour():
    pose = draw_pose(read_keypoints(_openpose(_coco18())), 512, 512)
    assert pose.size == (512, 512) and pose.mode == "RGB"
    for i, (a, b) in enumerate(LIMBS):
        want = tuple(int(c * LIMB_INTENSITY) for c in COLOURS[i])
        got = _pixel(pose, _mid(JOINTS[a], JOINTS[b]))
        assert got == want, (JOINTS[a], JOINTS[b], got, want)
    for j, name in enumerate(JOINTS):  # each joint a disc of its own colour at full intensity
        assert _pixel(pose, BODY[name]) == COLOURS[j], name
    assert _pixel(pose, (500, 10)) == (0, 0, 0)  # the background stays black


def test_a_missing_or_unsure_joint_draws_nothing_and_nor_do_its_limbs():
    flat = _coco18(missing=("left_elbow",))
    flat[3 * JOINTS.index("right_knee") + 2] = 0.05  # under the default threshold
    pose = draw_pose(read_keypoints(_openpose(flat)), 512, 512)
    for gone in [BODY["left_elbow"], _mid("left_shoulder", "left_elbow"), _mid("left_elbow", "left_wrist"),
                 BODY["right_knee"], _mid("right_hip", "right_knee"), _mid("right_knee", "right_ankle")]:
        assert _pixel(pose, gone) == (0, 0, 0), gone
    assert _pixel(pose, BODY["left_wrist"]) == COLOURS[JOINTS.index("left_wrist")]  # the rest is still there
    assert _pixel(pose, _mid("neck", "left_shoulder")) != (0, 0, 0)


def test_the_map_scales_with_the_image():
    poses = read_keypoints(_openpose(_coco18()))
    small, large = draw_pose(poses, 256, 256), draw_pose(poses, 1024, 1024)
    assert stick_width(1024, 1024) == 2 * stick_width(512, 512) == 4 * stick_width(256, 256)
    for i, (a, b) in enumerate(LIMBS):  # the same limb, in the same place, at each size
        want = tuple(int(c * LIMB_INTENSITY) for c in COLOURS[i])
        assert _pixel(small, _mid(JOINTS[a], JOINTS[b], 0.5)) == want
        assert _pixel(large, _mid(JOINTS[a], JOINTS[b], 2.0)) == want
    drawn = [np.count_nonzero(np.asarray(m).any(axis=-1)) / (m.size[0] * m.size[1]) for m in (small, large)]
    assert drawn[0] == pytest.approx(drawn[1], rel=0.25)  # the skeleton covers the same share of the map


def test_body25_coco18_coco17_and_normalized_coordinates_give_the_same_map():
    reference = np.asarray(draw_pose(read_keypoints(_openpose(_coco18())), 512, 512))
    body25 = [0.0] * 75
    for coco, b25 in enumerate(FROM_BODY25):
        body25[3 * b25: 3 * b25 + 3] = _coco18()[3 * coco: 3 * coco + 3]
    body25[3 * 8: 3 * 8 + 3] = [256.0, 300.0, 0.9]  # mid-hip: BODY_25 only, not drawn
    assert np.array_equal(np.asarray(draw_pose(read_keypoints(_openpose(body25)), 512, 512)), reference)

    coco17 = [0.0] * 51
    for coco, c17 in enumerate(FROM_COCO17):
        if c17 is not None:
            x, y = BODY[JOINTS[coco]]
            coco17[3 * c17: 3 * c17 + 3] = [x, y, 2]  # COCO's visibility flag
    poses = read_keypoints({"annotations": [{"keypoints": coco17}], "canvas_width": 512, "canvas_height": 512})
    assert poses.params["format"] == "coco17"
    neck = poses.people[0].body[1]
    assert neck == ((190 + 322) / 2, 165.0)  # between the shoulders, not at the original neck
    assert _pixel(draw_pose(poses, 512, 512), neck) == COLOURS[1]

    normalized = [v / 512 if i % 3 != 2 else v for i, v in enumerate(_coco18())]
    poses = read_keypoints({"people": [{"pose_keypoints_2d": normalized}]})
    assert poses.normalized
    same = np.asarray(draw_pose(poses, 512, 512))
    assert np.mean(np.any(same != reference, axis=-1)) < 0.002  # the same up to rounding at edges


def test_several_people_hands_and_face():
    shifted = [v + 0 if i % 3 == 2 else v * 0.5 for i, v in enumerate(_coco18())]
    hand = []
    for k in range(21):
        hand += [300 + 4 * k, 420 + (k % 4) * 6, 0.9]
    face = [v for k in range(70) for v in (230 + k % 10 * 5, 100 + k // 10 * 4, 0.9)]
    data = {"people": [{"pose_keypoints_2d": _coco18()},
                       {"pose_keypoints_2d": shifted, "hand_right_keypoints_2d": hand, "face_keypoints_2d": face}],
            "canvas_width": 512, "canvas_height": 512}
    poses = read_keypoints(json.dumps(data))
    assert len(poses.people) == 2 and len(poses.people[1].hands) == 1 and len(poses.people[1].face) == 70
    pose = np.asarray(draw_pose(poses, 512, 512))
    assert tuple(pose[int(BODY["nose"][1] * 0.5), int(BODY["nose"][0] * 0.5)]) == COLOURS[0]  # second person
    assert (pose == [0, 0, 255]).all(axis=-1).sum() > 20  # blue hand joints
    assert (pose == [255, 255, 255]).all(axis=-1).sum() > 50  # white face dots


@pytest.mark.parametrize("data, named", [
    ({"people": [{"pose_keypoints_2d": [1, 2]}]}, "triples"),
    ({"people": [{"pose_keypoints_2d": [0.0] * 30}]}, "10 keypoints"),
    ({"people": [{"pose_keypoints_2d": ["a"] * 54}]}, "not a number"),
    ({"people": [{"pose_keypoints_2d": [float("nan")] * 54}]}, "NaN"),
    ({"persons": []}, "'people'"),
    ("{oops", "not valid JSON"),
    ({"people": [], "canvas_width": -5, "canvas_height": 10}, "canvas_width"),
])
def test_bad_keypoints_are_named_with_a_fix(data, named):
    with pytest.raises(InvalidParameter) as e:
        read_keypoints(data)
    assert named in e.value.message and e.value.fix


def test_a_missing_keypoint_file_is_named(tmp_path):
    with pytest.raises(InvalidParameter, match="no-such.json"):
        read_keypoints(tmp_path / "no-such.json")


@pytest.mark.parametrize("size", [(0, 512), (512, 100000), (512.0, 512)])
def test_a_bad_map_size_is_refused(size):
    with pytest.raises(InvalidParameter, match="from 8 to 8192"):
        draw_pose(read_keypoints(_openpose(_coco18())), *size)


def test_canny_finds_the_edges_of_a_square_and_nothing_in_flat_areas():
    picture = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(picture).rectangle([16, 16, 47, 47], fill="white")
    edges = np.asarray(canny(picture))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) <= {0, 255}
    on = edges[..., 0] > 0
    assert on[16:48, 15:18].any() and on[16:48, 46:49].any()  # left and right sides
    assert not on[24:40, 24:40].any() and not on[:8, :8].any()  # inside and outside: flat
    faint = Image.new("RGB", (64, 64), (100, 100, 100))
    ImageDraw.Draw(faint).rectangle([16, 16, 47, 47], fill=(120, 120, 120))  # a weak edge
    assert np.asarray(canny(faint, 20, 40)).any() and not np.asarray(canny(faint, 200, 250)).any()


@pytest.mark.parametrize("kw, named", [({"low": -1}, "low"), ({"high": 300}, "high"), ({"low": 200, "high": 100},
                                                                                       "above")])
def test_canny_thresholds_are_checked(kw, named):
    with pytest.raises(InvalidParameter, match=named):
        canny(Image.new("RGB", (8, 8)), **kw)


def test_a_map_record_names_the_pixels():
    pose = draw_pose(read_keypoints(_openpose(_coco18())), 128, 128)
    record = map_record(pose, "pose", {"threshold": 0.1})
    assert record["kind"] == "pose" and record["size"] == [128, 128] and len(record["sha256"]) == 64
    assert map_record(pose.copy(), "pose", {})["sha256"] == record["sha256"]
    other = draw_pose(read_keypoints(_openpose(_coco18(missing=("nose",)))), 128, 128)
    assert map_record(other, "pose", {})["sha256"] != record["sha256"]


# -- a plan's ControlRef to its map ------------------------------------------------------------------

def _square(path, size=64, fg="white", bg="black"):
    picture = Image.new("RGB", (size, size), bg)
    ImageDraw.Draw(picture).rectangle([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline=fg, width=3)
    picture.save(path)
    return path


def test_control_maps_by_kind_with_their_records(tmp_path):
    from labkit.controls import control_map
    from labkit.plan import ControlRef

    photo = _square(tmp_path / "photo.png", fg="red", bg="white")
    edges, record = control_map(ControlRef("canny", str(photo), params={"low": 50}), 64, 64)
    assert np.asarray(edges).any() and record["params"] == {"low": 50, "high": 200}
    assert record["kind"] == "canny" and record["resized_from"] is None and len(record["source_sha256"]) == 64
    assert record["sha256"] == map_record(edges, "canny", {})["sha256"]

    keypoints = tmp_path / "pose.json"
    keypoints.write_text(json.dumps(_openpose(_coco18())))
    pose, record = control_map(ControlRef("pose", str(keypoints)), 128, 96)
    assert pose.size == (128, 96) and record["params"] == {"threshold": 0.1}
    assert np.array_equal(np.asarray(pose), np.asarray(draw_pose(read_keypoints(keypoints), 128, 96)))

    drawing = _square(tmp_path / "drawing.png", fg="black", bg="white")  # dark strokes on paper
    scribble, _ = control_map(ControlRef("scribble", str(drawing)), 64, 64)
    a = np.asarray(scribble)
    assert a[16, 32].tolist() == [255, 255, 255] and a[2, 2].tolist() == [0, 0, 0]

    ready, record = control_map(ControlRef("canny", str(photo), preprocess=False), 32, 32)
    assert ready.size == (32, 32) and record["resized_from"] == [64, 64]  # resized, and the record says so


@pytest.mark.parametrize("kind", ["pose", "depth"])
def test_a_map_from_a_photo_needs_an_estimator_in_the_cache(tmp_path, kind):
    from labkit.controls import control_map
    from labkit.errors import ModelNotCached
    from labkit.plan import ControlRef

    with pytest.raises(ModelNotCached) as e:
        control_map(ControlRef(kind, str(_square(tmp_path / "photo.png"))), 64, 64)
    assert "hf download" in e.value.fix and "preprocess=False" in e.value.fix


def test_bad_control_inputs_are_named(tmp_path):
    from labkit.controls import control_map
    from labkit.plan import ControlRef

    with pytest.raises(InvalidParameter, match="no-such.png"):
        control_map(ControlRef("canny", str(tmp_path / "no-such.png")), 64, 64)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InvalidParameter, match="cannot be read as an image"):
        control_map(ControlRef("canny", str(junk)), 64, 64)
    with pytest.raises(InvalidParameter, match="unknown params") as e:
        control_map(ControlRef("canny", str(_square(tmp_path / "p.png")), params={"sigma": 2}), 64, 64)
    assert "high" in e.value.fix
