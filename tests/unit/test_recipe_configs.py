"""Each training recipe's config is `TrainConfig` plus its own fields (issue 20): one name per setting, the old
`lr=` still accepted, and the engine gets the same `TrainConfig` it got before the configs were subclasses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from labkit.errors import InvalidParameter
from labkit.training import TrainConfig
from labkit.training.lora import LoraTrainConfig
from labkit.training.motion_recipes import motion_train_config, validation_prompts
from labkit.training.toy_base import ToyBaseConfig
from labkit.training.toy_base import validation_prompts as base_prompts
from labkit.training.toy_motion import ToyMotionConfig
from labkit.training.toy_warp import ToyWarpConfig

RECIPE_CONFIGS = [ToyBaseConfig, ToyMotionConfig, ToyWarpConfig, LoraTrainConfig]


def _make(cls, tmp_path, **kw):
    return cls(output_dir=tmp_path / "out", **({"data": tmp_path / "data"} if cls is LoraTrainConfig else {}), **kw)


@pytest.mark.parametrize("cls", RECIPE_CONFIGS, ids=lambda c: c.__name__)
def test_a_recipe_config_is_a_train_config_plus_its_own_fields(cls, tmp_path):
    assert issubclass(cls, TrainConfig)
    names = {f.name for f in dataclasses.fields(cls)}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= names and "lr" not in names
    config = _make(cls, tmp_path)
    assert isinstance(config.output_dir, Path) and config.to_dict()["output_dir"] == str(tmp_path / "out")
    assert config.replace(steps=7).steps == 7 and type(config.replace(steps=7)) is cls


@pytest.mark.parametrize("cls", [ToyBaseConfig, ToyMotionConfig, ToyWarpConfig], ids=lambda c: c.__name__)
def test_the_old_lr_name_is_still_accepted_and_read_but_not_together_with_learning_rate(cls, tmp_path):
    config = _make(cls, tmp_path, lr=0.0123)
    assert config.learning_rate == config.lr == 0.0123
    assert "lr" not in config.to_dict() and config.to_dict()["learning_rate"] == 0.0123
    with pytest.raises(InvalidParameter, match="both lr= and learning_rate=") as err:
        _make(cls, tmp_path, lr=0.1, learning_rate=0.2)
    assert "learning_rate" in err.value.fix


def test_positional_arguments_are_the_ones_the_configs_took_before(tmp_path):
    assert ToyWarpConfig("out").output_dir == Path("out")
    lora = LoraTrainConfig("data", "out")
    assert (lora.data, lora.output_dir) == (Path("data"), Path("out"))
    with pytest.raises(InvalidParameter, match="takes 1 positional") as err:
        ToyMotionConfig("out", 100)  # once the second field; now it would land on a TrainConfig field
    assert "by name" in err.value.fix


def test_the_motion_recipes_hand_the_engine_what_they_did_before(tmp_path):
    for config in (ToyMotionConfig(output_dir=tmp_path / "m", steps=50, lr=2e-4),
                   ToyWarpConfig(output_dir=tmp_path / "w", steps=50, validate_every=0, seed=3)):
        recipe = {"arch": "x"}
        before = TrainConfig(  # the literal the recipes built before their configs were TrainConfigs
            output_dir=config.output_dir, steps=config.steps, batch_size=config.batch_size,
            learning_rate=config.learning_rate, lr_schedule="cosine", warmup_steps=min(config.warmup_steps,
                                                                                     config.steps - 1),
            min_lr_ratio=config.min_lr_ratio, validate_every=config.validate_every,
            validation_prompts=validation_prompts() if config.validate_every else (), validation_seeds=(0,),
            log_every=config.log_every, checkpoint_every=config.checkpoint_every, keep_checkpoints=2,
            seed=config.seed, licence="CC0-1.0", resume=config.resume, extra={"recipe": recipe})
        assert motion_train_config(config, recipe) == before


def test_the_toy_base_unet_phase_and_lora_get_the_engine_config_they_did_before(tmp_path):
    base = ToyBaseConfig(output_dir=tmp_path / "b", resume="latest")
    assert base.unet_config() == TrainConfig(
        output_dir=tmp_path / "b" / "unet", steps=8000, batch_size=16, learning_rate=1e-3, lr_schedule="cosine",
        warmup_steps=200, min_lr_ratio=0.05, validate_every=1000, validation_prompts=base_prompts(),
        validation_seeds=(0, 1, 2), seed=0, log_every=50, licence="CC0-1.0", checkpoint_every=250,
        keep_checkpoints=2, resume="latest-if-any")
    lora = LoraTrainConfig(data=tmp_path / "d", output_dir=tmp_path / "l", steps=40, resume="latest")
    got = lora.train_config(7.5, 25)
    assert type(got) is TrainConfig and got.log_every == 4 and got.keep_checkpoints == 3
    assert (got.steps, got.batch_size, got.learning_rate, got.validation_seeds) == (40, 8, 1e-3, (0, 1))
    assert got.extra["lora"]["data"] == str(tmp_path / "d") and got.extra["lora"]["guidance_scale"] == 7.5


def test_bad_values_are_refused_before_any_work_with_the_setting_named(tmp_path):
    with pytest.raises(InvalidParameter, match="resume='yes'"):
        ToyBaseConfig(output_dir=tmp_path / "b", resume="yes").validate()
    with pytest.raises(InvalidParameter, match="learning_rate"):
        ToyWarpConfig(output_dir=tmp_path / "w", lr=-1.0).validate()
    with pytest.raises(InvalidParameter, match="frames"):
        ToyMotionConfig(output_dir=tmp_path / "m", frames=1).validate()
    assert not (tmp_path / "b").exists() and not (tmp_path / "w").exists()


def test_validation_without_prompts_shows_the_datasets_first_caption(tmp_path):
    """`labkit train lora DATA --validate-every N` without --validation-prompt: the dataset's first caption, as the
    Train panel does (it was refused with "validation_prompts=() is not valid")."""
    from labkit.toyworld.data import write_dataset

    data = tmp_path / "hexagons"
    write_dataset(data, 3, n_objects=(1,), shapes=("hexagon",))
    first = json.loads((data / "metadata.jsonl").read_text().splitlines()[0])["text"]
    lora = LoraTrainConfig(data=data, output_dir=tmp_path / "out", steps=4, validate_every=2)
    lora.validate()
    assert lora.train_config(7.5, 25).validation_prompts == (first,)
    given = LoraTrainConfig(data=data, output_dir=tmp_path / "out", validate_every=2, validation_prompts=("x",))
    assert given.train_config(7.5, 25).validation_prompts == ("x",)
    assert LoraTrainConfig(data=data, output_dir=tmp_path / "out").train_config(7.5, 25).validation_prompts == ()
