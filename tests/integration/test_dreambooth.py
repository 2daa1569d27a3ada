"""DreamBooth as a researcher runs it on the toy subject: class images drawn once by the base (seeds recorded,
reused on resume), a stopped run resumed to the same weights, the card naming where everything came from, the
benchmark's two figures, and bad input refused before any work."""

from __future__ import annotations

import json

import pytest
import torch

from labkit.errors import InvalidParameter, LabkitError
from labkit.toyworld.subject import write_subject_dataset
from labkit.training.dreambooth import CLASS_DIR, DreamBoothConfig, train_dreambooth

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ring(tmp_path):
    write_subject_dataset(tmp_path / "ring")
    return tmp_path / "ring"


def _cfg(ring, out, **kw):
    base = dict(data=ring, output_dir=out, steps=6, batch_size=2, checkpoint_every=3, num_class_images=6, rank=4,
                sampling_steps=4, learning_rate=2e-3)
    return DreamBoothConfig(**{**base, **kw})


def test_class_images_are_drawn_once_with_their_seeds_and_a_resumed_run_matches(lab, ring, tmp_path):
    from safetensors.torch import load_file

    from labkit.pipelines.lora import WEIGHT_NAME

    with pytest.warns(UserWarning, match="'sks' splits into 2 pieces"):
        full = train_dreambooth(lab, _cfg(ring, tmp_path / "full"))
    manifest = json.loads((tmp_path / "full" / CLASS_DIR / "manifest.json").read_text())
    assert [r["seed"] for r in manifest["images"]] == list(range(6))
    assert manifest["images"][0]["prompt"] == "a small yellow circle on the left" and manifest["base"] == "toyworld"

    def stop_at_3(state):
        if state.step == 3:
            raise KeyboardInterrupt

    split = _cfg(ring, tmp_path / "split", validate_every=6, validation_seeds=(0, 1))
    first = train_dreambooth(lab, split, callbacks=[stop_at_3])
    assert first.status == "interrupted" and first.step == 3
    drawn = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "split" / CLASS_DIR).glob("*.png")}
    second = train_dreambooth(lab, split.replace(resume="latest"))
    assert second.status == "finished" and second.step == 6
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "split" / CLASS_DIR).glob("*.png")} == drawn
    a, b = load_file(str(full.export_dir / WEIGHT_NAME)), load_file(str(second.export_dir / WEIGHT_NAME))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    shown = json.loads((tmp_path / "split" / "validation" / "step-000006.json").read_text())["labels"]
    assert [x.split(" (seed")[0] for x in shown[::2]] == [  # validation on, no prompts: a caption and a class prompt
        "adapter: a small yellow sks circle on the left", "base: a small yellow sks circle on the left",
        "adapter: a small yellow circle on the left", "base: a small yellow circle on the left"]
    card = (second.export_dir / "README.md").read_text()
    assert "## DreamBooth" in card and "6 class images drawn by the base model `toyworld`" in card
    assert "cc0-1.0" in card.lower()


def test_the_benchmark_reports_fidelity_and_drift_into_mlflow(lab, ring, tmp_path):
    from labkit.evals.dreambooth import evaluate_dreambooth

    train_dreambooth(lab, _cfg(ring, tmp_path / "db", steps=4))
    report = evaluate_dreambooth(lab, str(tmp_path / "db"), seeds=(0,), class_every=10, steps=4)
    assert 0.0 <= report.subject_fidelity <= 1.0 and len([r for r in report.rows if r["kind"] == "subject"]) == 4
    assert report.drift_points == pytest.approx(100 * (report.class_base - report.class_adapted))
    (run,) = [r for r in lab.runs(10) if r.tags.get("labkit.job") == "eval-dreambooth"]
    assert run.metrics["language_drift_points"] == pytest.approx(report.drift_points)
    assert run.metrics["subject_fidelity"] == pytest.approx(report.subject_fidelity)


@pytest.mark.parametrize("change, named", [
    ({"token": "two words"}, "token"),
    ({"token": ""}, "token"),
    ({"token": "!!"}, "token"),
    ({"instance_prompt": "a photo of a ring"}, "instance_prompt"),
    ({"token": "zzq"}, "do not name the subject 'zzq'"),
    ({"num_class_images": 0}, "num_class_images"),
    ({"prior_loss_weight": -1.0}, "prior_loss_weight"),
    ({"class_prompt": ["a sks circle"]}, "class_prompt"),
    ({"full": True, "kohya": True}, "kohya"),
    ({"concept": "hexagn"}, "concept"),
    ({"base": "toywrld"}, "toywrld"),
])
def test_bad_settings_are_refused_before_any_work(lab, ring, tmp_path, change, named):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(LabkitError) as e:
        train_dreambooth(lab, _cfg(ring, tmp_path / "out", **change))
    assert named in e.value.message and e.value.fix and not (tmp_path / "out").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before   # nothing left behind


def test_an_empty_folder_and_class_images_that_do_not_fit_are_refused(lab, ring, tmp_path, project):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameter) as e:
        train_dreambooth(lab, _cfg(tmp_path / "empty", tmp_path / "a"))
    assert "metadata.jsonl" in e.value.message
    small = Lab(project, hardware=HardwareProfile.simulated(None, ram_gb=0.001))
    with pytest.raises(InvalidParameter) as e:
        train_dreambooth(small, _cfg(ring, tmp_path / "b", num_class_images=5000))
    assert "num_class_images=5000" in e.value.message and "at most" in e.value.fix
    assert not (tmp_path / "b" / CLASS_DIR).exists()


def test_full_fine_tuning_exports_a_pipeline_that_renders_and_resumes_exactly(lab, ring, tmp_path):
    from safetensors.torch import load_file

    kw = dict(full=True, learning_rate=1e-4, validate_every=4, validation_seeds=(0,))
    whole = train_dreambooth(lab, _cfg(ring, tmp_path / "whole", **kw))

    def stop_at_3(state):
        if state.step == 3:
            raise KeyboardInterrupt

    split = _cfg(ring, tmp_path / "split", **kw)
    assert train_dreambooth(lab, split, callbacks=[stop_at_3]).status == "interrupted"
    resumed = train_dreambooth(lab, split.replace(resume="latest"))
    assert resumed.status == "finished" and resumed.step == 6
    name = "unet/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(whole.export_dir / name)), load_file(str(resumed.export_dir / name))
    base = load_file(str(lab.catalog.get("toyworld").local_path() / name))
    assert set(a) == set(b) == set(base) and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], base[k]) for k in a)  # every weight was free to move, and some did
    index = json.loads((whole.export_dir / "model_index.json").read_text())
    assert index["labkit"]["family"] == "toy" and index["labkit"]["recipe"] == "dreambooth-full"
    assert "full fine-tuning: every UNet weight" in (whole.export_dir / "README.md").read_text()
    # the validation grid shows the tuned model beside the base drawn before the first step
    labels = json.loads((tmp_path / "whole" / "validation" / "step-000004.json").read_text())["labels"]
    assert [x.split(" (seed")[0] for x in labels] == [  # the default prompts: a caption and a class prompt
        "tuned: a small yellow sks circle on the left", "base: a small yellow sks circle on the left",
        "tuned: a small yellow circle on the left", "base: a small yellow circle on the left"]
    result = lab.generate("a large yellow sks circle at the bottom", model=str(whole.export_dir), seed=0, steps=4,
                          size=(64, 64))
    assert result.images[0].size == (64, 64)


def test_full_fine_tuning_that_would_not_fit_is_refused_before_any_work(ring, tmp_path, project):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    small = Lab(project, hardware=HardwareProfile.simulated(None, ram_gb=0.001))
    with pytest.raises(InvalidParameter) as e:
        train_dreambooth(small, _cfg(ring, tmp_path / "full", full=True))
    assert "Full fine-tuning of 'toyworld' needs about" in e.value.message and "drop --full" in e.value.fix
    assert not (tmp_path / "full" / CLASS_DIR).exists()


def test_the_adapter_also_exports_in_kohya_format(lab, ring, tmp_path):
    from safetensors.torch import load_file

    from labkit.pipelines.lora import KOHYA_NAME

    result = train_dreambooth(lab, _cfg(ring, tmp_path / "k", steps=2, kohya=True, prior_preservation=False))
    keys = list(load_file(str(result.export_dir / KOHYA_NAME)))
    assert keys and all(k.startswith("lora_unet_") for k in keys)


def test_strict_mode_refuses_subject_images_without_a_licence_before_drawing_class_images(ring, tmp_path, project):
    from labkit.errors import ComplianceViolation
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    meta = ring / "metadata.jsonl"
    records = [json.loads(line) for line in meta.read_text().splitlines()]
    del records[1]["licence"]
    meta.write_text("".join(json.dumps(r) + "\n" for r in records))
    strict = Lab(project, compliance_mode="strict", hardware=HardwareProfile.simulated(None))
    with pytest.raises(ComplianceViolation) as e:
        train_dreambooth(strict, _cfg(ring, tmp_path / "out"))
    assert "strict" in e.value.message and e.value.fix
    assert not (tmp_path / "out" / CLASS_DIR).exists() and strict.runs(5) == []
