"""Output files carry the run's record, and the readers get exactly that record back."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from labkit import outputs
from labkit.errors import InvalidParameter, LabkitError


def make_record(**extra):
    rec = {
        "plan": {"prompt": "a red circle, top left", "negative_prompt": "blurry", "steps": 20,
                 "guidance": 7.5, "seed": 42, "width": 512, "height": 512},
        "model": {"id": "stable-diffusion-v1-5", "revision": "main",
                  "hash": "sha256:1a2b3c4d5e6f7a8b9c0d"},
        "scheduler": "DDIMScheduler",
        "versions": {"labkit": "0.1.0", "torch": "2.13.0"},
        "terms": ["non-commercial", "attribution required"],
        "run_id": "abc123",
        # characters the embedding formats escape: ffmetadata's = ; # \ newline, non-ASCII
        "notes": "a=b; c#d \\ back\nslash é 😀 \"quoted\"",
    }
    rec.update(extra)
    return rec


def big_record(n_bytes=40_000):
    rec = make_record()
    rec["provenance"] = {"assets": [{"id": f"org/asset-{i}", "sha256": f"{i:064x}", "licence": "CreativeML OpenRAIL-M",
                                     "note": "x=y;#\\\n é"} for i in range(n_bytes // 150)]}
    size = len(outputs.record_json(rec))
    assert 20_000 <= size <= 60_000, size
    return rec


def frames(n=5, w=32, h=24):
    # distinct frames: a GIF writer merges identical consecutive frames
    out = []
    for i in range(n):
        a = np.zeros((h, w, 3), np.uint8)
        a[:, :, 0] = 40 * i
        a[: h // 2, : w // 2, 1] = 255
        out.append(Image.fromarray(a))
    return out


# -- parameters text --------------------------------------------------------------------------


def test_parameters_line_a1111_format():
    text = outputs.parameters_line(make_record())
    lines = text.split("\n")
    assert lines[0] == "a red circle, top left"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith("Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x512, "
                               "Model hash: 1a2b3c4d5e, Model: stable-diffusion-v1-5, ")
    assert "Version: labkit 0.1.0" in lines[2]
    assert 'Output terms: non-commercial; attribution required' in lines[2]
    assert len(lines) == 3


def test_parameters_line_skips_absent_keys():
    text = outputs.parameters_line({"plan": {"prompt": "p", "steps": 4}})
    assert text == "p\nSteps: 4"
    assert outputs.parameters_line({}) == ""
    # a value with a comma is quoted so the key: value line still parses
    assert 'Output terms: "a, b"' in outputs.parameters_line({"terms": "a, b"})


# -- PNG --------------------------------------------------------------------------------------


def test_png_round_trip(tmp_path):
    rec = make_record()
    p = outputs.write_png(frames(1)[0], tmp_path / "sub" / "x.png", rec)
    assert p == tmp_path / "sub" / "x.png"
    assert outputs.read_png_record(p) == json.loads(json.dumps(rec))
    assert outputs.read_record(p) == rec
    # readable by plain Pillow, as other tools would
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (32, 24)
        params = im.text["parameters"]
        assert json.loads(im.text["labkit"]) == rec
    assert "a red circle" in params and "Seed: 42" in params and "Steps: 20" in params
    assert "Size: 512x512" in params
    assert not list(tmp_path.glob("sub/.*"))  # no temp file left behind


def test_png_non_latin_prompt_and_big_record(tmp_path):
    rec = big_record()
    rec["plan"]["prompt"] = "一只猫 🐱"
    p = outputs.write_png(frames(1)[0], tmp_path / "big.png", rec)
    assert outputs.read_png_record(p) == rec
    with Image.open(p) as im:
        assert im.text["parameters"].startswith("一只猫 🐱\n")


def test_png_without_record_raises_naming_file(tmp_path):
    p = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(p)
    with pytest.raises(LabkitError, match="plain.png"):
        outputs.read_png_record(p)
    with pytest.raises(LabkitError, match="missing.png"):
        outputs.read_png_record(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(LabkitError, match="junk.png"):
        outputs.read_png_record(tmp_path / "junk.png")


def test_write_image_outputs_numbers_and_indexes(tmp_path):
    rec = make_record()
    imgs = frames(3)
    paths = outputs.write_image_outputs(imgs, tmp_path / "out", "sample", rec, sidecar=True)
    assert [p.name for p in paths] == ["sample-00.png", "sample-01.png", "sample-02.png"]
    for i, p in enumerate(paths):
        got = outputs.read_png_record(p)
        assert got == {**rec, "index": i}
        assert outputs.read_sidecar(p) == got
    assert "index" not in rec  # the caller's record is untouched
    with Image.open(paths[2]) as im:
        assert np.array_equal(np.asarray(im), np.asarray(imgs[2]))


def test_write_image_outputs_errors(tmp_path):
    with pytest.raises(InvalidParameter, match="empty"):
        outputs.write_image_outputs([], tmp_path, "s", {})
    with pytest.raises(InvalidParameter, match="stem"):
        outputs.write_image_outputs(frames(1), tmp_path, "a/b", {})


# -- sidecars ---------------------------------------------------------------------------------


def test_sidecar_round_trip(tmp_path):
    rec = make_record()
    sc = outputs.write_sidecar(tmp_path / "clip.mp4", rec)
    assert sc.name == "clip.mp4.json"
    assert outputs.read_sidecar(tmp_path / "clip.mp4") == rec
    assert outputs.read_sidecar(sc) == rec
    assert outputs.read_record(sc) == rec
    with pytest.raises(LabkitError, match="other.mp4.json"):
        outputs.read_sidecar(tmp_path / "other.mp4")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(LabkitError, match="bad.json"):
        outputs.read_sidecar(tmp_path / "bad.json")


# -- video ------------------------------------------------------------------------------------


def _read_mp4(path):
    import imageio.v2 as iio

    return iio.mimread(path, format="FFMPEG", memtest=False)


def test_mp4_and_gif_round_trip(tmp_path):
    rec = make_record(plan={**make_record()["plan"], "frames": 5, "fps": 8})
    fr = frames(5)
    paths = outputs.write_video(fr, tmp_path / "vid" / "clip", 8, rec)
    assert set(paths) == {"mp4", "gif"}
    assert paths["mp4"].name == "clip.mp4" and paths["gif"].name == "clip.gif"

    assert outputs.read_video_record(paths["mp4"]) == rec
    assert outputs.read_record(paths["mp4"]) == rec
    read = _read_mp4(paths["mp4"])
    assert len(read) == 5 and read[0].shape == (24, 32, 3)
    # lossy but close: the red ramp survives the encode
    assert abs(int(read[4][20, 28, 0]) - 160) < 12

    tags = outputs.read_video_metadata(paths["mp4"])
    assert tags["title"] == "a red circle, top left"
    assert "Seed: 42" in tags["description"] and "Frames: 5, FPS: 8" in tags["description"]
    data = paths["mp4"].read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart

    assert outputs.read_video_record(paths["gif"]) == rec
    with Image.open(paths["gif"]) as im:
        assert im.n_frames == 5 and im.size == (32, 24)
        assert im.info["duration"] == 120 or im.info["duration"] == 125
        assert im.info["loop"] == 0

    for p in paths.values():
        assert outputs.read_sidecar(p) == rec
    assert sorted(x.name for x in (tmp_path / "vid").iterdir()) == [
        "clip.gif", "clip.gif.json", "clip.mp4", "clip.mp4.json"]


def test_mp4_odd_size_is_padded_record_unchanged(tmp_path, caplog):
    rec = make_record()
    arrays = [np.asarray(f)[:23, :31] for f in frames(3)]  # 31x23 uint8 arrays
    with caplog.at_level("WARNING", logger="labkit.outputs"):
        paths = outputs.write_video(arrays, tmp_path / "odd", 6, rec, formats=("mp4",), sidecar=False)
    assert list(paths) == ["mp4"]
    assert outputs.read_video_record(paths["mp4"]) == rec
    read = _read_mp4(paths["mp4"])
    assert len(read) == 3 and read[0].shape == (24, 32, 3)
    assert "31x23" in outputs.read_video_metadata(paths["mp4"])["description"]
    assert "31x23" in caplog.text
    assert not (tmp_path / "odd.mp4.json").exists()


def test_big_record_round_trips_in_every_format(tmp_path):
    rec = big_record()
    paths = outputs.write_video(frames(2, 16, 16), tmp_path / "big", 4, rec)
    assert outputs.read_video_record(paths["mp4"]) == rec
    assert outputs.read_video_record(paths["gif"]) == rec
    # the GIF comment really spans many 255-byte sub-blocks
    data = paths["gif"].read_bytes()
    start = data.index(b"\x21\xfe")
    assert data[start + 2] == 255 and len(outputs.record_json(rec)) > 20_000
    png = outputs.write_png(frames(1)[0], tmp_path / "big.png", rec)
    assert outputs.read_png_record(png) == rec


def test_ffmetadata_parser_escapes():
    text = ";FFMETADATA1\ntitle=a\\=b\\;c\\#d\\\\e\\\nline2\ncomment={}\n\n[STREAM]\ncomment=stream\n"
    assert outputs._parse_ffmetadata(text) == {"title": "a=b;c#d\\e\nline2", "comment": "{}"}


@pytest.mark.parametrize("bad, match", [
    ([], "empty"),
    ("frames", "list of images"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], "Frame 1 is 10x8 but frame 0 is 8x8"),
    ([np.zeros((8, 8, 3), np.float32)], "uint8"),
    ([np.zeros((3, 8, 8, 2), np.uint8)], "shape"),
    ([object()], "PIL images"),
])
def test_bad_frames_raise_invalid_parameter(tmp_path, bad, match):
    with pytest.raises(InvalidParameter, match=match) as info:
        outputs.write_video(bad, tmp_path / "v", 8, {})
    assert info.value.fix
    assert not list(tmp_path.iterdir())  # validated before anything was written


def test_bad_fps_and_format(tmp_path):
    with pytest.raises(InvalidParameter, match="fps"):
        outputs.write_video(frames(2), tmp_path / "v", 0, {})
    with pytest.raises(InvalidParameter, match="webm"):
        outputs.write_video(frames(2), tmp_path / "v", 8, {}, formats=("webm",))
    assert not list(tmp_path.iterdir())


def test_video_without_record_raises_naming_file(tmp_path):
    gif = tmp_path / "plain.gif"
    frames(2)[0].save(gif, save_all=True, append_images=frames(2)[1:])
    with pytest.raises(LabkitError, match="plain.gif"):
        outputs.read_video_record(gif)
    mp4 = tmp_path / "plain.mp4"
    subprocess.run([outputs._ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "color=size=16x16:rate=4",
                    "-t", "0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(mp4)], check=True)
    with pytest.raises(LabkitError, match="plain.mp4"):
        outputs.read_video_record(mp4)


def test_import_is_light():
    code = ("import sys, labkit.outputs; heavy = {'torch', 'diffusers', 'mlflow', 'PIL', 'numpy', 'imageio',"
            " 'imageio_ffmpeg'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
