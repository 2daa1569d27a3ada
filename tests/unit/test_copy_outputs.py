"""`--out` copies: another render's file of the same name is kept, a video's sidecar keeps its video's name."""

from __future__ import annotations

from labkit.outputs import copy_outputs


def test_copies_take_a_version_tag_instead_of_replacing_another_renders_files(tmp_path):
    out = tmp_path / "out"
    runs = []
    for i in range(3):
        src = tmp_path / f"run{i}"
        src.mkdir()
        (src / "t2v-7-00.mp4").write_bytes(b"video %d" % i)
        (src / "t2v-7-00.mp4.json").write_text(f'{{"run": {i}}}')
        runs.append([src / "t2v-7-00.mp4", src / "t2v-7-00.mp4.json"])
    copied = [copy_outputs(files, out) for files in runs]
    assert [[p.name for p in c] for c in copied] == [
        ["t2v-7-00.mp4", "t2v-7-00.mp4.json"], ["t2v-7-00-v2.mp4", "t2v-7-00-v2.mp4.json"],
        ["t2v-7-00-v3.mp4", "t2v-7-00-v3.mp4.json"]]
    assert [c[0].read_bytes() for c in copied] == [b"video 0", b"video 1", b"video 2"]
    assert copy_outputs(runs[0], out) == copied[0]  # the same bytes again: written under their own name
    assert len(list(out.iterdir())) == 6
