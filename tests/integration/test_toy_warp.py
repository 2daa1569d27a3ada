"""The toy motion model that ships (`toyworld-motion`): trajectory diffusion and a warp renderer
(`labkit.toyworld.warp`) — its motion representation, the recipe on a few engine steps, the diffusers folder
and labkit's loader, the render path from a request to an MP4 and a GIF, and issue 10's thresholds on the
shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labkit.errors import InvalidParameter

SHIPPED = Path(__file__).resolve().parents[2] / "labkit" / "toyworld" / "motion_model"


def _frames(tensor) -> list[np.ndarray]:
    """uint8 (H, W, 3) frames from a (F, 3, H, W) tensor in [-1, 1]."""
    return list(((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())


# --- the motion representation and the renderer ----------------------------------------------------


def test_the_renderer_redraws_held_out_clips_from_their_first_frame_and_trajectory():
    import dataclasses

    import torch
    from PIL import Image

    from labkit.toyworld.motion import motion_prompts, render_clip
    from labkit.toyworld.motion_eval import motion_verdict
    from labkit.toyworld.warp import clip_trajectory, image_tensor, warp_frames

    for frames in (16, 24):
        for _, clip in motion_prompts("heldout", n=30, seed=4):
            clip = dataclasses.replace(clip, frames=frames)
            truth = render_clip(clip)
            state = torch.from_numpy(clip_trajectory(clip))[None]
            out = _frames(warp_frames(image_tensor([Image.fromarray(truth[0])], 64), state, frames)[0])
            assert len(out) == frames
            assert np.abs(np.stack(out).astype(float) - truth.astype(float)).mean() < 1.5  # of 255: resampling only
            v = motion_verdict(clip, out)
            assert v["direction"] and v["identity"] and v["count"] and v["smooth"], (clip, v)


def test_a_trajectory_is_the_start_and_the_control_points_of_the_motion():
    from labkit.toyworld.motion import Clip
    from labkit.toyworld.scenes import Obj
    from labkit.toyworld.warp import clip_trajectory, state_dim

    right = clip_trajectory(Clip(Obj("square", "red", "small", "left"), "right", travel=0.24))
    assert right.shape == (state_dim(3),) == (11,)
    assert right[:2] == pytest.approx([2 * 0.18 - 1, 0.0], abs=1e-6)  # the centre of "left", in [-1, 1]
    points = right[2:].reshape(3, 3)  # uniform motion: control points evenly spaced on the line
    assert points[:, 0] == pytest.approx([0.08 / 0.3, 0.16 / 0.3, 0.24 / 0.3], abs=1e-5)
    assert points[:, 1:] == pytest.approx(np.zeros((3, 2)), abs=1e-6)
    grows = clip_trajectory(Clip(Obj("circle", "blue", "small", "centre"), "grows", growth=1.6)).reshape(-1)[2:]
    assert grows.reshape(3, 3)[:, :2] == pytest.approx(np.zeros((3, 2)), abs=1e-6)
    assert grows.reshape(3, 3)[-1, 2] == pytest.approx(1.0, abs=1e-5)  # log 1.6 / log SCALE_SCALE


# --- the recipe, the export and the loader -----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(lab, model folder): a few steps of the warp recipe on the shipped toy base, trained without a Lab —
    the recipe gets a tracker, a hardware profile, the licence policy and a model finder (`TrainEnv`); the Lab
    is made afterwards, only to read the runs back."""
    import torch

    from labkit.catalog import Catalog
    from labkit.compliance import resolve_mode
    from labkit.config import LabConfig
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.tracking import Tracker
    from labkit.training import TrainEnv, catalog_finder
    from labkit.training.toy_warp import ToyWarpConfig, train_toy_warp

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("warp-project")
    (root / "mlruns").mkdir()
    env = TrainEnv(tracker=Tracker(LabConfig.resolve(root)), hardware=HardwareProfile.simulated(None),
                   compliance=resolve_mode("research"), find_model=catalog_finder(Catalog.load()))
    out = train_toy_warp(env, ToyWarpConfig(output_dir=root / "warp", steps=6, batch_size=4, warmup_steps=0,
                                            validate_every=6, eval_prompts=2, sampling_steps=2, checkpoint_every=3,
                                            log_every=1, width=32, depth=1))
    return Lab(root, hardware=HardwareProfile.simulated(None)), out


def test_training_exports_a_diffusers_folder_that_names_its_classes_and_keyframe_model(trained):
    _, folder = trained
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "ToyWarpImageToVideoPipeline"
    assert index["motion"] == ["labkit.toyworld.warp", "ToyTrajectoryModel"]  # diffusers imports it by module
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"] and index["scheduler"][1] == "DDIMScheduler"
    meta = index["labkit"]
    assert (meta["family"], meta["kind"], meta["keyframe_model"], meta["architecture"]) == (
        "toy", "motion", "toyworld", "trajectory-warp")
    assert (folder / "motion" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "tokenizer" / "vocab.json").is_file() and (folder / "README.md").is_file()
    assert "trajectory diffusion" in (folder / "README.md").read_text()


def test_the_training_run_logs_loss_validation_and_held_out_checks(trained, search_runs):
    lab, _ = trained
    (run,) = [r for r in search_runs(lab.config.tracking_uri) if r.data.tags.get("labkit.task") == "toy-motion"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["train/loss"] > 0 and 0.0 <= run.data.metrics["val/heldout_identity"] <= 1.0
    assert "val/heldout_direction" in run.data.metrics
    assert run.data.params["extra.recipe.arch"] == "warp" and run.data.params["extra.recipe.degree"] == "3"
    # what the TrainEnv gave: the hardware profile's tags and the licence check's verdict
    assert run.data.tags["hardware.tier"] == "cpu" and run.data.tags["labkit.compliance.verdict"] == "allow"


def test_diffusers_and_the_labkit_loader_load_it_and_frame_0_is_the_given_image(trained):
    import torch
    from PIL import Image

    from labkit.catalog import Catalog
    from labkit.hardware import HardwareProfile, choose
    from labkit.pipelines.loader import load_pipeline, require_task, resolve_model
    from labkit.pipelines.tasks import pipeline_kind
    from labkit.toyworld.motion import Clip, render_clip
    from labkit.toyworld.scenes import Obj
    from labkit.toyworld.warp import ToyWarpImageToVideoPipeline

    _, folder = trained
    direct = ToyWarpImageToVideoPipeline.from_pretrained(folder)
    ref = resolve_model(str(folder), Catalog.load())
    loaded = load_pipeline(ref, choose("toy", HardwareProfile.simulated(None)), "cpu")
    pipe = loaded.pipe
    assert type(pipe) is type(direct) and pipeline_kind(pipe) == "img2vid"
    assert require_task(ref, pipe, "img2vid") is pipe and loaded.hashes  # weights hashed for the record
    first = Image.fromarray(render_clip(Clip(Obj("diamond", "yellow", "large", "top"), "down"))[0])
    out = pipe(image=first, prompt="a yellow diamond moving down", num_frames=12, num_inference_steps=3,
               generator=torch.Generator().manual_seed(0))
    (frames,) = out.frames
    assert len(frames) == 12 and frames[0].size == (64, 64)
    assert np.array_equal(np.asarray(frames[0]), np.asarray(first))  # the warp at time 0 is the identity
    assert out.trajectories.shape == (1, 11)
    big = pipe(image=first, prompt="a yellow diamond moving down", num_frames=4, width=128, height=128,
               num_inference_steps=2).frames[0]
    assert big[0].size == (128, 128)
    with pytest.raises(ValueError, match="image="):
        pipe(prompt="a yellow diamond moving down")


def test_a_step_callback_can_stop_the_sampling_and_the_clip_still_renders(trained):
    from PIL import Image

    from labkit.toyworld.warp import ToyWarpImageToVideoPipeline

    _, folder = trained
    pipe = ToyWarpImageToVideoPipeline.from_pretrained(folder)
    seen = []

    def stop(p, i, t, kw):
        seen.append(i)
        p._interrupt = True
        return kw

    frames = pipe(image=Image.new("RGB", (64, 64), (16, 16, 24)), prompt="a red circle moving left",
                  num_inference_steps=5, callback_on_step_end=stop).frames[0]
    assert seen == [0] and len(frames) == 16


def test_cli_trains_the_warp_model_by_default_and_refuses_animatediff_options(project, tmp_path, cli_env):
    from tests.integration.test_cli import labkit

    env = {**cli_env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = labkit("train", "toy-motion", "--output", str(tmp_path / "m"), "--spatial-lr-scale", "0.1", env=env,
                 check=False)
    assert out.returncode == 2 and "--arch animatediff" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m").exists()
    bad = labkit("train", "toy-motion", "--output", str(tmp_path / "m"), "--steps", "0", env=env, check=False)
    assert bad.returncode == 2 and "steps" in bad.stderr and "Traceback" not in bad.stderr


# --- the shipped model ------------------------------------------------------------------------------


needs_shipped = pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(),
                                   reason="no motion model shipped (labkit train toy-motion, then copy its model/ "
                                          "to labkit/toyworld/motion_model)")


@needs_shipped
def test_catalogue_entry_is_the_packaged_warp_model():
    import labkit
    from labkit.catalog import Catalog
    from labkit.toyworld.model import weights_bytes

    e = Catalog.load(use_env=False).get("toyworld-motion")
    assert e.source == "package:labkit/toyworld/motion_model" and e.source_kind == "package"
    assert e.local_path() == Path(labkit.__file__).parent / "toyworld" / "motion_model" == SHIPPED
    assert e.family == "toy" and set(e.tasks) == {"txt2vid", "img2vid"} and e.licence == "cc0-1.0"
    assert (e.default_frames, e.default_fps, tuple(e.default_size)) == (16, 8, (64, 64))
    index = json.loads((SHIPPED / "model_index.json").read_text())
    assert index["_class_name"] == "ToyWarpImageToVideoPipeline" and index["labkit"]["trained"] is True
    assert weights_bytes(SHIPPED) <= 10_000_000


@needs_shipped
def test_labkit_video_and_ask_render_the_shipped_model_to_mp4_and_gif_logged_offline(cli_env, project, search_runs):
    from labkit import outputs
    from labkit.toyworld.detect import detect
    from labkit.toyworld.motion_eval import motion_verdict
    from tests.integration.test_toy_motion import video_and_ask

    for result, _, frames, run in video_and_ask(cli_env, project, search_runs, "--seed", "3"):
        # the clip does what the caption says: a blue square that rises, the same square in every frame
        v = motion_verdict("a blue square moving up", frames)
        assert v["direction"] and v["identity"], v
        assert [(d.colour, d.shape) for d in detect(frames[0])] == [("blue", "square")]
        for f in result["files"]:
            assert outputs.read_record(Path(f))["model"]["pipeline"] == "ToyWarpImageToVideoPipeline"
        runs = {r.info.run_id: r for r in search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")}
        still = runs[run.data.tags["labkit.first_frame_run"]]  # the keyframe, its own recorded run
        assert still.info.status == "FINISHED" and still.data.tags["model.id"] == "toyworld"
        assert still.data.params["plan.prompt"] == "a small blue square at the bottom"


@needs_shipped
def test_image_to_video_keeps_the_given_picture_as_frame_0_and_moves_it(project, tmp_path, one_thread, offline):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.detect import detect
    from labkit.toyworld.motion_eval import motion_verdict
    from labkit.toyworld.scenes import Obj, Scene, render_pil

    first = tmp_path / "first.png"
    render_pil(Scene((Obj("triangle", "green", "large", "left"),))).save(first)
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    r = lab.video("a green triangle moving right", image=first, seed=5)
    assert r.plan.task == "img2vid" and r.plan.model == "toyworld-motion" and len(r.frames) == 16
    with __import__("PIL.Image").Image.open(first) as im:
        assert np.array_equal(np.asarray(r.frames[0]), np.asarray(im.convert("RGB")))
    (obj,) = detect(r.frames[-1])
    assert (obj.colour, obj.shape) == ("green", "triangle")
    assert motion_verdict("a green triangle moving right", r.frames)["direction"]
    with pytest.raises(InvalidParameter, match="frames 65"):  # the entry's max_frames, before any rendering
        lab.video("a green triangle moving right", image=first, frames=65)


@needs_shipped
def test_shipped_motion_model_meets_the_issue_thresholds(project, one_thread):
    """Issue 10's acceptance on 60 held-out prompts each way (combinations the model never trained on)."""
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.motion_eval import evaluate_motion

    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    text = evaluate_motion(lab, n=60, seed=0)
    assert text.rates["direction"] >= 0.85 and text.rates["identity"] >= 0.90, text.rates
    image = evaluate_motion(lab, n=60, seed=0, image_to_video=True)
    assert image.rates["kept_and_moved"] >= 0.70 and image.rates["identity"] >= 0.90, image.rates


def test_bad_recipe_settings_are_refused_before_any_work():
    from labkit.training.toy_warp import ToyWarpConfig

    for bad in ({"degree": 0}, {"frames": 1}, {"caption_dropout": 1.5}, {"image_noise": -1.0}, {"resume": "yes"}):
        with pytest.raises(InvalidParameter, match=next(iter(bad))):
            ToyWarpConfig(**bad).check()


@pytest.mark.parametrize("recipe", ["warp", "animatediff"])
def test_resume_with_no_checkpoint_is_refused_before_the_base_loads(lab, tmp_path, monkeypatch, recipe):
    import dataclasses

    from labkit.training.toy_motion import ToyMotionConfig, train_toy_motion
    from labkit.training.toy_warp import ToyWarpConfig, train_toy_warp

    def no_load(*a, **k):
        raise AssertionError("the base model was looked up before the settings were checked")

    env = dataclasses.replace(lab.train_env(), find_model=no_load)
    train, config = (train_toy_warp, ToyWarpConfig) if recipe == "warp" else (train_toy_motion, ToyMotionConfig)
    with pytest.raises(InvalidParameter, match="Nothing to resume") as err:
        train(env, config(output_dir=str(tmp_path / "empty"), resume="latest"))
    assert err.value.fix and lab.runs() == []
