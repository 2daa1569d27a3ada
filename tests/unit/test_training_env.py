"""What training takes instead of a Lab (`TrainEnv`), how a Lab wires it up (`Lab.train_env`, `Lab.train`), and
the toy recipes' old import paths (issue 20: the recipes moved to labkit/training)."""

from __future__ import annotations

import dataclasses

import pytest

from labkit.errors import InvalidParameter
from labkit.training import TrainEnv, as_train_env


def test_a_labs_train_env_opens_runs_through_the_lab_with_its_tracker_policy_and_catalogue(lab):
    env = as_train_env(lab)
    assert env.tracker is lab.tracker and env.compliance is lab.compliance and env.hardware is lab.hardware
    assert env.open_run == lab.run and env.logs  # Lab.run: hardware and compliance tags, lab.note() bookkeeping
    ref, folder = env.locate("toyworld")  # the lab's catalogue finds the shipped toy model
    assert ref.family == "toy" and (folder / "model_index.json").is_file()
    assert as_train_env(env) is env


def test_an_empty_env_logs_nothing_and_anything_else_is_refused_with_a_fix():
    env = as_train_env(None)
    assert env == TrainEnv() and not env.logs
    with env.run("nothing", tags={"a": 1}) as run:
        assert run is None
    with pytest.raises(InvalidParameter, match="str is not a training environment") as err:
        as_train_env("lab")
    assert "TrainEnv" in err.value.fix


def test_a_model_finder_given_to_the_env_is_what_recipes_use():
    asked = []

    def finder(model):
        asked.append(model)
        raise InvalidParameter(f"no {model!r} here", value=model, fix="none")

    with pytest.raises(InvalidParameter, match="no 'toyworld' here"):
        TrainEnv(find_model=finder).locate("toyworld")
    assert asked == ["toyworld"]


def test_lab_train_runs_the_recipe_of_the_config_and_refuses_other_objects_before_any_run(lab, tmp_path):
    from labkit.training.lora import LoraTrainConfig

    with pytest.raises(InvalidParameter, match="No training recipe takes a dict") as err:
        lab.train({"steps": 10})
    assert "LoraTrainConfig" in err.value.fix
    # the LoRA recipe's own check, reached through Lab.train: the data folder is missing
    with pytest.raises(InvalidParameter, match="missing"):
        lab.train(LoraTrainConfig(data=tmp_path / "missing", output_dir=tmp_path / "out"))
    assert lab.runs() == [] and not (tmp_path / "out").exists()


def test_the_toy_recipes_old_paths_re_export_the_same_objects():
    import labkit.toyworld.motion_train as old_motion
    import labkit.toyworld.train as old_base
    import labkit.toyworld.warp as warp
    import labkit.training.motion_recipes as shared
    import labkit.training.toy_base as toy_base
    import labkit.training.toy_motion as toy_motion
    import labkit.training.toy_warp as toy_warp

    assert old_base.__all__ and all(getattr(old_base, n) is getattr(toy_base, n) for n in old_base.__all__)
    assert set(toy_base.__all__) <= set(old_base.__all__)
    assert all(getattr(old_motion, n) is getattr(toy_motion, n, None) or getattr(old_motion, n) is getattr(shared, n)
               for n in old_motion.__all__)
    assert set(toy_motion.__all__) <= set(old_motion.__all__)
    # the shipped AnimateDiff model's card names labkit.toyworld.motion_train.animate
    assert old_motion.animate is toy_motion.animate
    # the warp model's folder names labkit.toyworld.warp for its pipeline and model classes: they stay there
    assert toy_warp.ToyTrajectoryModel is warp.ToyTrajectoryModel
    assert warp.ToyTrajectoryModel.__module__ == warp.ToyWarpImageToVideoPipeline.__module__ == "labkit.toyworld.warp"
    assert all(getattr(warp, n) is getattr(toy_warp, n) for n in toy_warp.__all__)
    for old in (old_base, old_motion):
        assert "moved to labkit.training" in old.__doc__


def test_each_recipe_config_and_loader_has_one_name():
    import labkit.training.lora as lora
    import labkit.training.toy_motion as toy_motion

    assert not hasattr(lora, "load_base") and not hasattr(toy_motion, "load_base")
    assert lora.load_base_pipeline is not toy_motion.load_base_components
    assert dataclasses.is_dataclass(TrainEnv) and TrainEnv.__dataclass_params__.frozen
