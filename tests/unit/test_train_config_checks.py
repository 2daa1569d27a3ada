"""Training configs refuse what they cannot use before any model loads or any MLflow run opens, naming the field,
the value and the fix; `Lab.train` finds the recipe of every config (DreamBooth's included)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from labkit.errors import InvalidParameter
from labkit.training import TrainConfig, TrainEnv
from labkit.training.dreambooth import DreamBoothConfig
from labkit.training.lora import LoraTrainConfig
from labkit.training.toy_base import ToyBaseConfig
from labkit.training.toy_controlnet import ToyControlNetConfig
from labkit.training.toy_motion import ToyMotionConfig
from labkit.training.toy_warp import ToyWarpConfig


@pytest.fixture
def data(tmp_path: Path) -> Path:
    from labkit.toyworld import write_dataset

    write_dataset(tmp_path / "shapes", 3, size=32)
    return tmp_path / "shapes"


@pytest.fixture
def runs() -> tuple[TrainEnv, list[str]]:
    """A TrainEnv that records every run a recipe opens (and fails it: none should open)."""
    opened: list[str] = []

    def open_run(name, **kwargs):
        opened.append(name)
        raise AssertionError(f"run {name!r} opened before the bad setting was noticed")

    return TrainEnv(open_run=open_run), opened


def _config(cls, tmp_path: Path, data: Path | None = None, **kw):
    lora = issubclass(cls, LoraTrainConfig)
    return cls(output_dir=tmp_path / "out", **({"data": data or tmp_path / "none"} if lora else {}), **kw)


# 1. Lab.train dispatches DreamBoothConfig to the DreamBooth recipe


def test_lab_train_runs_the_dreambooth_recipe_for_a_dreambooth_config(lab, tmp_path, data):
    # the DreamBooth recipe's own check (the identifier), reached through Lab.train, before any run
    with pytest.raises(InvalidParameter, match="DreamBoothConfig.token='two words'"):
        lab.train(DreamBoothConfig(data=data, output_dir=tmp_path / "db", token="two words"))
    assert lab.runs() == [] and not (tmp_path / "db").exists()


def test_the_most_specific_config_class_picks_the_recipe(monkeypatch, tmp_path):
    import labkit.training.dreambooth as dreambooth
    import labkit.training.lora as lora
    from labkit.training.recipes import run_recipe

    called = []
    monkeypatch.setattr(lora, "train_lora", lambda env, config: called.append("lora"))
    monkeypatch.setattr(dreambooth, "train_dreambooth", lambda env, config: called.append("dreambooth"))

    class MyDreamBooth(DreamBoothConfig):
        pass

    for config in (LoraTrainConfig(data=tmp_path, output_dir=tmp_path), DreamBoothConfig(data=tmp_path),
                   MyDreamBooth(data=tmp_path)):
        run_recipe(None, config)
    assert called == ["lora", "dreambooth", "dreambooth"]


# 2. the toy concept


def test_a_misspelt_concept_is_refused_naming_the_field_and_the_close_shape(tmp_path):
    with pytest.raises(InvalidParameter, match="LoraTrainConfig.concept='hexgon'") as err:
        _config(LoraTrainConfig, tmp_path, eval_prompts=2, concept="hexgon").validate()
    assert "did you mean 'hexagon'" in err.value.fix and "star" in err.value.fix


def test_a_known_concept_passes(tmp_path, data):
    _config(LoraTrainConfig, tmp_path, data, eval_prompts=2, concept="hexagon").validate()


# 3. switches are True or False


@pytest.mark.parametrize("cls,name,value", [
    (DreamBoothConfig, "prior_preservation", "no"),
    (LoraTrainConfig, "kohya", "yes"),
    (LoraTrainConfig, "train_text_encoder", 1),
    (LoraTrainConfig, "gradient_checkpointing", "false"),
    (LoraTrainConfig, "use_8bit_adam", "auto"),
    (TrainConfig, "cpu", "no"),
    (TrainConfig, "export", 0),
    (ToyBaseConfig, "train_text_encoder", "no"),
    (ToyMotionConfig, "keyframe", "no"),
    (ToyMotionConfig, "mid_block", 1),
], ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_a_switch_that_is_not_true_or_false_is_refused(cls, name, value, tmp_path, data):
    with pytest.raises(InvalidParameter, match=rf"{name}={value!r} is not valid") as err:
        _config(cls, tmp_path, data, **{name: value}).validate()
    assert "True" in err.value.fix and "False" in err.value.fix


# 4. LoRA targets that match no layer


@pytest.mark.parametrize("change,field", [
    ({"target_modules": ("nope",)}, "target_modules"),
    ({"target_modules": ("to_q", "to_kk")}, "target_modules"),  # one typo among good names: peft ignored it
    ({"train_text_encoder": True, "text_encoder_targets": ("q_prj",)}, "text_encoder_targets"),
], ids=["none-match", "one-typo", "text-encoder"])
def test_lora_targets_that_match_no_layer_are_refused_before_the_run_opens(tmp_path, data, runs, one_thread,
                                                                             change, field):
    from labkit.training.lora import train_lora

    env, opened = runs
    with pytest.raises(InvalidParameter, match=rf"{field}=\[") as err:
        train_lora(env, _config(LoraTrainConfig, tmp_path, data, steps=1, **change))
    assert "match(es) no layer" in str(err.value) and "'toyworld'" in str(err.value)
    assert ("to_q" if field == "target_modules" else "q_proj") in err.value.fix
    assert opened == [] and not (tmp_path / "out").exists()


# 5. the toy base recipe's own phases and numbers


def test_toy_base_names_vae_steps_and_opens_no_run(tmp_path, runs):
    from labkit.training.toy_base import train_toy_base

    env, opened = runs
    with pytest.raises(InvalidParameter, match="ToyBaseConfig.vae_steps=0 is not valid"):
        train_toy_base(env, _config(ToyBaseConfig, tmp_path, vae_steps=0))
    assert opened == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("gamma", [-1, 0, 0.0, "5"])
def test_toy_min_snr_gamma_must_be_positive_or_none(tmp_path, gamma):
    for cls in (ToyBaseConfig, ToyMotionConfig):
        with pytest.raises(InvalidParameter, match=f"min_snr_gamma={gamma!r}") as err:
            _config(cls, tmp_path, min_snr_gamma=gamma).validate()
        assert "None" in err.value.fix
    for ok in (None, 5.0):
        _config(ToyBaseConfig, tmp_path, min_snr_gamma=ok).validate()


# 6. sizes and counts of the toy recipes are whole numbers


@pytest.mark.parametrize("cls,name,value", [
    (ToyWarpConfig, "width", "256"),
    (ToyWarpConfig, "depth", 2.0),
    (ToyWarpConfig, "steps", "5"),
    (ToyWarpConfig, "image_noise", "0.1"),
    (ToyMotionConfig, "frames", "16"),
    (ToyMotionConfig, "steps", "5"),
    (ToyMotionConfig, "caption_dropout", "0.1"),
    (ToyControlNetConfig, "sampling_steps", "20"),
    (ToyControlNetConfig, "conditioning_channels", ("16", "32")),
    (ToyBaseConfig, "vae_batch_size", "16"),
    (ToyBaseConfig, "text_steps", -1),
], ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_a_toy_recipe_refuses_a_number_of_the_wrong_type(cls, name, value, tmp_path):
    with pytest.raises(InvalidParameter, match=rf"{cls.__name__}.{name}=") as err:
        _config(cls, tmp_path, **{name: value}).validate()
    assert err.value.value == value and err.value.fix


# 7. a base that is not a Stable Diffusion text-to-image model


def test_lora_on_a_video_model_is_refused_naming_the_base_before_it_loads(tmp_path, data, runs, monkeypatch):
    import diffusers

    from labkit.training.lora import train_lora

    def boom(*a, **k):
        raise AssertionError("the base was loaded before its class was checked")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", boom)
    env, opened = runs
    with pytest.raises(InvalidParameter, match="'toyworld-motion' is a ToyWarpImageToVideoPipeline") as err:
        train_lora(env, _config(LoraTrainConfig, tmp_path, data, base="toyworld-motion", steps=1))
    assert "video model" in str(err.value) and "toyworld" in err.value.fix
    assert opened == []


# 8. fp16 without CUDA


def test_fp16_without_cuda_is_refused_at_validation_and_before_a_toy_run_opens(tmp_path, runs, monkeypatch):
    from labkit.training.toy_base import train_toy_base

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidParameter, match="mixed_precision='fp16'") as err:
        TrainConfig(output_dir=tmp_path / "o", mixed_precision="fp16", validate_every=0).validate()
    assert "bf16" in err.value.fix
    env, opened = runs
    with pytest.raises(InvalidParameter, match="mixed_precision='fp16'"):
        train_toy_base(env, _config(ToyBaseConfig, tmp_path, mixed_precision="fp16"))
    assert opened == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(InvalidParameter, match="cpu=True"):
        TrainConfig(output_dir=tmp_path / "o", mixed_precision="fp16", validate_every=0, cpu=True).validate()
    TrainConfig(output_dir=tmp_path / "o", mixed_precision="fp16", validate_every=0).validate()  # a GPU: fine


# 9. a licence labkit does not know


def test_an_unknown_licence_warns_at_validation_naming_the_close_match(tmp_path, data):
    with pytest.warns(UserWarning, match=r"licence='cc0-1\.O' is not in labkit's licence table \(did you mean "
                                         r"'cc0-1\.0'\?\).*blocked in the open and strict"):
        _config(LoraTrainConfig, tmp_path, data, licence="cc0-1.O").validate()
    with pytest.warns(UserWarning, match="my-weird-licence.*LABKIT_LICENCES"):
        TrainConfig(output_dir=tmp_path / "o", validate_every=0, licence="my-weird-licence").validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(output_dir=tmp_path / "o", validate_every=0, licence="CC-BY-4.0").validate()
        TrainConfig(output_dir=tmp_path / "o", validate_every=0, licence=None).validate()
