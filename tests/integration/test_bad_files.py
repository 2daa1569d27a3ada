"""Broken model, adapter and training files through the real entry points (Lab, the loader, the LoRA
recipe, the CLI): each fails with a `LabkitError` naming the file and a fix, before any model loads, and
leaves no run RUNNING. Models are copies of the shipped toy model, corrupted on purpose."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.errors import InvalidParameter, UnknownModel

TOY = Path(__file__).resolve().parents[2] / "labkit" / "toyworld" / "model"
UNET = Path("unet") / "diffusion_pytorch_model.safetensors"


def _toy_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "toy-copy"
    shutil.copytree(TOY, folder)
    return folder


def _no_load(monkeypatch):
    """Make any pipeline load fail loudly, so a test proves its error came before loading."""
    import labkit.pipelines.loader as loader
    import labkit.training.lora as lora

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the bad input was noticed")

    monkeypatch.setattr(loader, "pipeline_class", boom)
    monkeypatch.setattr(loader, "_from_single_file", boom)
    monkeypatch.setattr(lora, "load_base_pipeline", boom)


def _running(lab) -> list:
    return [r for e in lab.tracker.client.search_experiments()
            for r in lab.tracker.client.search_runs([e.experiment_id]) if r.info.status == "RUNNING"]


def _garbage_unet(folder: Path) -> str:
    (folder / UNET).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a json header at all")
    return str(UNET)


def _truncated_unet(folder: Path) -> str:
    data = (folder / UNET).read_bytes()
    (folder / UNET).write_bytes(data[: len(data) // 2])
    return "truncated"


def _truncated_index(folder: Path) -> str:
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipe')
    return "model_index.json"


@pytest.mark.parametrize("damage", [_garbage_unet, _truncated_unet, _truncated_index],
                         ids=["garbage-unet", "truncated-unet", "truncated-model-index"])
def test_a_broken_model_folder_fails_before_loading(lab, tmp_path, monkeypatch, damage):
    folder = _toy_copy(tmp_path)
    token = damage(folder)
    _no_load(monkeypatch)
    with pytest.raises(UnknownModel) as info:
        lab.generate("a red circle on the left", model=str(folder), steps=2, size=(32, 32))
    assert token in str(info.value) and info.value.fix
    assert _running(lab) == []


def test_a_garbage_single_file_checkpoint_with_config(lab, tmp_path, monkeypatch):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"\xff" * 64)
    _no_load(monkeypatch)
    with pytest.raises(UnknownModel, match="model.safetensors") as info:
        lab.generate("a red circle", model=str(ckpt), config=str(TOY), steps=2, size=(32, 32))
    assert "not a valid safetensors file" in str(info.value) and info.value.fix
    assert _running(lab) == []


@pytest.mark.parametrize("name,content,message", [
    ("lora.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}", "not a valid safetensors file"),
    ("notes.txt", b"a text file, not weights", "not a weights file"),
], ids=["garbage-adapter", "text-adapter"])
def test_a_bad_adapter_fails_before_loading(lab, tmp_path, monkeypatch, name, content, message):
    (tmp_path / name).write_bytes(content)
    _no_load(monkeypatch)
    with pytest.raises(InvalidParameter, match=message) as info:
        lab.generate("a red circle", model="toyworld", adapters=[str(tmp_path / name)], steps=2)
    assert name in str(info.value) and "a pickle format" not in str(info.value)
    assert _running(lab) == []


def _dataset(tmp_path: Path) -> Path:
    from labkit.toyworld import write_dataset

    write_dataset(tmp_path / "shapes", 3, size=32)
    return tmp_path / "shapes"


@pytest.mark.parametrize("change,token", [
    ({"steps": 0}, "steps=0"),
    ({"learning_rate": 0.0}, "learning_rate=0.0"),
    ({"rank": 0}, "rank=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"resume": "latest"}, "checkpoints"),
    ({"damage": True}, "000000.png"),
], ids=["steps", "learning-rate", "rank", "batch-size", "resume-without-checkpoint", "png-that-is-text"])
def test_lora_training_refuses_before_the_base_model_loads(lab, tmp_path, monkeypatch, change, token):
    from labkit.training.lora import LoraTrainConfig, train_lora

    data = _dataset(tmp_path)
    if change.pop("damage", False):
        (data / "000000.png").write_text("not pixels")
    _no_load(monkeypatch)
    with pytest.raises(InvalidParameter) as info:
        train_lora(lab, LoraTrainConfig(data=data, output_dir=tmp_path / "out", **{"steps": 4, **change}))
    assert token in str(info.value) and info.value.fix
    assert not (tmp_path / "out").exists()  # nothing written
    assert _running(lab) == []


def test_engine_resume_without_checkpoint_opens_no_run(lab, tmp_path):
    import torch

    from labkit.training import TrainConfig, TrainTask, train

    class Task(TrainTask):
        name = "tiny"

        def __init__(self):
            self.net = torch.nn.Linear(2, 2)

        def models(self):
            return {"net": self.net}

    cfg = TrainConfig(output_dir=tmp_path / "out", steps=2, validate_every=0, resume="latest", cpu=True)
    with pytest.raises(InvalidParameter, match="no checkpoint") as info:
        train(Task(), cfg, lab=lab)
    assert str(tmp_path / "out" / "checkpoints") in str(info.value)
    runs = [r for e in lab.tracker.client.search_experiments()
            for r in lab.tracker.client.search_runs([e.experiment_id])]
    assert runs == []


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_train_lora_bad_steps_and_resume_are_one_line_each(cli_env, tmp_path):
    data = _dataset(tmp_path)
    out = _cli("train", "lora", str(data), "--steps", "0", "--output", str(tmp_path / "out"), env=cli_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "steps=0" in out.stderr and "Fix:" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = _cli("train", "lora", str(data), "--resume", "--output", str(tmp_path / "fresh"), env=cli_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(tmp_path / "fresh" / "checkpoints") in out.stderr and "--resume" in out.stderr


def test_cli_sweep_spec_not_utf8(cli_env, tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_bytes(b"name: caf\xe9\nplan: {prompt: a red circle, model: toyworld}\ngrid: {steps: [2]}\n")
    out = _cli("sweep", str(spec), "--dry-run", env=cli_env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "study.yaml" in out.stderr and "UTF-8" in out.stderr and "line 1" in out.stderr
