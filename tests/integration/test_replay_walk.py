"""Run history as a researcher walks it: replaying by a run id's first characters, a failed render, an input
changed since the original, and comparing the same run twice. Toy model, 2 steps at 64², tiny SD 1.5 at 32²."""

from __future__ import annotations

import shutil

import pytest

from labkit.errors import InvalidParameter, LabkitError

pytest.importorskip("torch")


def _statuses(lab) -> list[str]:
    return [r.status for r in lab.runs(50)]


def test_replay_takes_the_first_characters_of_a_run_id(lab, one_thread):
    first = lab.generate("a red circle on the left", model="toyworld", steps=2, size=(64, 64), seed=3)
    again, check = lab.replay(first.run_id[:8], check=True)
    assert check.identical and check.original_run == first.run_id
    assert lab.tracker.client.get_run(again.run_id).data.tags["labkit.replay_of"] == first.run_id
    with pytest.raises(InvalidParameter, match="No run 'zz'"):
        lab.replay("zz")


def test_replay_refuses_an_input_image_changed_since_the_original(lab, one_thread, tmp_path):
    from PIL import Image

    source = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(source)
    first = lab.video("a red circle moving right", image=str(source), model="toyworld-motion", frames=4, steps=2,
                      size=(64, 64), seed=3)
    Image.new("RGB", (64, 64), (30, 30, 200)).save(source)
    before = _statuses(lab)
    with pytest.raises(InvalidParameter) as e:
        lab.replay(first.run_id)
    assert str(source) in e.value.message and "changed" in e.value.message and "put the original" in e.value.fix
    assert _statuses(lab) == before  # refused before any render


def test_a_failed_render_replays_once_its_model_is_fixed(lab, one_thread, tmp_path):
    from labkit.testing import build_tiny_sd15

    model = build_tiny_sd15(tmp_path / "tiny")
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:1000])
    with pytest.raises(LabkitError, match="not a valid safetensors file"):
        lab.generate("a red circle", model=str(model), steps=2, size=(32, 32), seed=1)
    failed = lab.runs(1)[0]
    assert failed.status == "FAILED"
    with pytest.raises(InvalidParameter, match="ended FAILED") as e:
        lab.replay(failed.run_id, check=True)  # nothing to compare with: refused before rendering
    assert "without --check" in e.value.fix
    weights.write_bytes(good)
    again, _ = lab.replay(failed.run_id)
    assert again.status == "finished" and again.plan.seed == 1 and (again.plan.width, again.plan.height) == (32, 32)
    assert str(again.plan.model) == str(model)
    shutil.rmtree(model)


def test_comparing_a_run_with_itself_is_refused(lab):
    from labkit.tracking.links import resolve_runs

    with lab.run("a") as a:
        pass
    with lab.run("b") as b:
        pass
    assert [r.info.run_id for r in resolve_runs(lab.tracker, [a.run_id[:8], b.run_id])] == [a.run_id, b.run_id]
    with pytest.raises(InvalidParameter, match="name the same run"):
        resolve_runs(lab.tracker, [a.run_id[:8], a.run_id])


def test_compare_adapters_names_an_unknown_run_and_repeated_seeds(lab):
    from labkit.evals.adapters import compare_adapters

    with pytest.raises(InvalidParameter, match="seeds lists \\[0\\] more than once"):
        compare_adapters(lab, ["x.safetensors"], prompts=["a red circle"], seeds=[0, 0])
    with pytest.raises(InvalidParameter, match="no run 'feedbeef'") as e:
        compare_adapters(lab, ["run:feedbeef"], prompts=["a red circle"], model="toyworld")
    assert "run:RUN_ID" in e.value.fix


def test_a_second_render_into_the_same_out_folder_keeps_the_first_ones_files(lab, one_thread, tmp_path):
    """Same seed, another prompt: both wrote out/txt2img-7-00.png, and the first result's file then held the
    second picture under the first run's name."""
    from labkit.outputs import read_record

    out = tmp_path / "picked"
    first = lab.generate("a red circle on the left", model="toyworld", steps=2, size=(64, 64), seed=7, out=out)
    second = lab.generate("a blue square on the right", model="toyworld", steps=2, size=(64, 64), seed=7, out=out)
    (a,), (b,) = [[f for f in r.files if f.parent == out] for r in (first, second)]
    assert a.name == "txt2img-7-00.png" and b.name == "txt2img-7-00-v2.png"
    assert read_record(a)["plan"]["prompt"] == "a red circle on the left"
    assert read_record(b)["plan"]["prompt"] == "a blue square on the right"
    assert sorted(p.name for p in out.iterdir()) == ["txt2img-7-00-v2.png", "txt2img-7-00.png"]
