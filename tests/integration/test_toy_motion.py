"""The toy-motion recipe end to end on a tiny untrained base: a few engine steps, the diffusers export,
the ordinary loader, a 16-frame clip, first-frame conditioning, and the motion benchmark's run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labkit.errors import InvalidParameter


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(lab, base folder, motion model folder): 2 steps of the recipe on a random toy base with 3x3 conv_in."""
    import torch

    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.model import ToyModelConfig, build_untrained
    from labkit.training.toy_motion import ToyMotionConfig, train_toy_motion

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("motion-project")
    (root / "mlruns").mkdir()
    cfg = ToyModelConfig()
    cfg.unet["conv_in_kernel"] = 3
    base = build_untrained(root / "base", cfg)
    lab = Lab(root, hardware=HardwareProfile.simulated(None))
    out = train_toy_motion(lab, ToyMotionConfig(
        output_dir=root / "motion", base=str(base), steps=2, batch_size=1, frames=4, warmup_steps=0,
        validate_every=2, eval_prompts=1, sampling_steps=1, checkpoint_every=1, log_every=1))
    return lab, base, out


def test_training_exports_an_animatediff_folder_of_base_unet_and_small_adapter(trained):
    from safetensors.torch import load_file

    from labkit.toyworld.model import weights_bytes

    lab, base, out = trained
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "AnimateDiffPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["motion_adapter"][1] == "MotionAdapter"
    assert index["labkit"]["family"] == "toy" and index["labkit"]["kind"] == "motion"
    assert index["labkit"]["keyframe_model"] == str(base)  # text-to-video starts from a frame the base draws
    adapter = out / "motion_adapter" / "diffusion_pytorch_model.safetensors"
    assert adapter.stat().st_size < 2_000_000 and weights_bytes(out) < 10_000_000
    # unet/ is the base's UNet2DConditionModel (same tensors) with the 2D weights the recipe fine-tuned.
    ours = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    theirs = load_file(str(base / "unet" / "diffusion_pytorch_model.safetensors"))
    assert ours.keys() == theirs.keys() and any(not np.array_equal(ours[k], theirs[k]) for k in ours)
    trained_adapter = load_file(str(adapter))
    assert any(float(v.float().abs().sum()) > 0 for k, v in trained_adapter.items() if k.endswith("proj_out.weight"))
    assert "license: cc0-1.0" in (out / "README.md").read_text()
    # the engine's side: validation strips and checkpoints
    assert (out.parent / "validation" / "step-000002.png").is_file()
    assert any((out.parent / "checkpoints").iterdir())


def test_loader_loads_it_and_renders_16_frames_from_text_or_a_first_frame(trained):
    from PIL import Image

    from labkit.hardware import choose
    from labkit.pipelines.calls import run_txt2vid
    from labkit.pipelines.loader import load_pipeline, resolve_model
    from labkit.pipelines.tasks import pipeline_kind
    from labkit.training.toy_motion import animate, encode_image

    lab, _, out = trained
    ref = resolve_model(str(out), lab.catalog)
    assert ref.family == "toy"
    loaded = load_pipeline(ref, choose(ref.family, lab.hardware), "cpu")
    pipe = loaded.pipe
    assert type(pipe).__name__ == "AnimateDiffPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"
    assert pipeline_kind(pipe) == "txt2vid"
    # the noise prior it was trained with comes from its model_index.json, and the render path samples from it
    from labkit.pipelines.animatediff import shared_noise
    from labkit.training.toy_motion import ToyMotionConfig

    assert shared_noise(pipe) == ToyMotionConfig().shared_noise > 0
    (clip,) = run_txt2vid(pipe, prompt="a red circle moving right", negative_prompt="", steps=2, guidance=1.0,
                          width=64, height=64, frames=16, seed=0, count=1, on_step=lambda _: False)
    assert len(clip) == 16 and clip[0].size == (64, 64)
    again = run_txt2vid(pipe, prompt="a red circle moving right", negative_prompt="", steps=2, guidance=1.0,
                        width=64, height=64, frames=16, seed=0, count=1, on_step=lambda _: False)[0]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(clip, again, strict=True))
    # image-to-video: frame 0 is the given image as the VAE reproduces it, whatever the (untrained) model does
    first = Image.fromarray(np.full((64, 64, 3), 40, np.uint8))
    frames = animate(pipe, "a red circle moving right", image=first, frames=16, steps=2, guidance=1.0, seed=1)
    import torch

    with torch.no_grad():
        z = encode_image(pipe, first)
        rec = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample
    rec = ((rec[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(frames[0], dtype=np.float32) - rec).mean() < 1.0
    free = animate(pipe, "a red circle moving right", frames=16, steps=2, guidance=1.0, seed=1)
    assert np.abs(np.asarray(free[0], dtype=np.float32) - rec).mean() > 1.0  # without the image: not that frame


def test_motion_benchmark_logs_rates_table_and_failing_clips(trained, search_runs):
    from labkit.toyworld.motion_eval import CHECKS, evaluate_motion

    lab, base, out = trained
    report = evaluate_motion(lab, model=str(out), n=2, seed=4, steps=1, frames=16)
    assert len(report.rows) == 2 and set(report.rates) == set(CHECKS)
    assert report.rates["all_correct"] == 0.0  # random weights draw no tracked, moving shape
    run = next(r for r in search_runs(lab.config.tracking_uri) if r.info.run_id == report.run_id)
    # the recipe's export names its base as keyframe model: text-to-video animates the frame the base draws
    assert run.data.params["n"] == "2" and run.data.params["mode"] == f"text-to-video (keyframe: {base})"
    assert run.data.metrics["motion.all_correct"] == 0.0
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    table = json.loads((art / "verdicts.json").read_text())
    assert len(table["data"]) == 2 and "direction" in table["columns"]
    assert (art / "failures.png").is_file() and len(list((art / "failures").glob("*.gif"))) == 2
    assert "toymotion adherence" in (art / "summary.txt").read_text()


def test_cli_eval_toymotion_prints_json(trained, capsys):
    from labkit.cli import main

    lab, _, out = trained
    code = main(["eval", "toymotion", "--model", str(out), "--n", "1", "--steps", "1", "--image-to-video", "--json",
                 "--root", str(lab.config.root)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mode"] == "image-to-video" and printed["n"] == 1
    kept_and_moved = printed["rates"]["kept_and_moved"]
    assert kept_and_moved == min(printed["rates"]["start"], printed["rates"]["direction"])  # one clip: both or not


def test_the_2d_weights_train_at_a_fraction_of_the_lr_or_stay_frozen(trained):
    from labkit.training.toy_motion import ToyMotionConfig, ToyMotionTask, load_base_components

    lab, base, _ = trained
    comps, _, _ = load_base_components(lab, str(base))
    task = ToyMotionTask(comps, ToyMotionConfig(spatial_lr_scale=0.25))
    motion, spatial = task.param_groups(1e-3)
    assert motion.get("lr") is None and spatial["lr"] == pytest.approx(2.5e-4)  # None: the engine's lr
    every = {id(p) for p in task.unet.parameters()}
    assert {id(p) for p in motion["params"]} | {id(p) for p in spatial["params"]} == every
    assert {id(p) for p in motion["params"]} == {id(p) for p in task.motion.parameters()}
    frozen = ToyMotionTask(comps, ToyMotionConfig(spatial_lr_scale=0.0))
    assert frozen.param_groups(1e-3) is None and frozen.models()["motion"] is frozen.motion
    assert {id(p) for p in frozen.unet.parameters() if p.requires_grad} == {id(p) for p in frozen.motion.parameters()}
    with pytest.raises(InvalidParameter, match="spatial_lr_scale"):
        ToyMotionConfig(spatial_lr_scale=2.0).check()


def test_the_text_encoder_trains_at_its_own_fraction_of_the_lr_or_stays_frozen(trained):
    from labkit.training.toy_motion import ToyMotionConfig, ToyMotionTask, load_base_components

    lab, base, _ = trained
    comps, _, _ = load_base_components(lab, str(base))
    task = ToyMotionTask(comps, ToyMotionConfig(spatial_lr_scale=0.0, text_encoder_lr_scale=0.5))
    assert task.models()["text_encoder"] is comps["text_encoder"]
    motion, text = task.param_groups(1e-3)
    assert text["lr"] == pytest.approx(5e-4)
    assert {id(p) for p in text["params"]} == {id(p) for p in comps["text_encoder"].parameters()}
    assert all(p.requires_grad for p in comps["text_encoder"].parameters())
    frozen = ToyMotionTask(comps, ToyMotionConfig())
    assert "text_encoder" not in frozen.models()
    assert not any(p.requires_grad for p in comps["text_encoder"].parameters())
    with pytest.raises(InvalidParameter, match="text_encoder_lr_scale"):
        ToyMotionConfig(text_encoder_lr_scale=-0.1).check()


def test_up_and_down_start_from_the_base_words_top_and_bottom(trained):
    import torch

    from labkit.training.toy_motion import ToyMotionConfig, ToyMotionTask, init_word_embeddings, load_base_components

    lab, base, _ = trained
    comps, _, _ = load_base_components(lab, str(base))
    tok, table = comps["tokenizer"], comps["text_encoder"].get_input_embeddings().weight

    def row(word):
        (i,) = tok(word, add_special_tokens=False).input_ids
        return table[i].detach().clone()

    before = {w: row(w) for w in ("up", "down", "top", "bottom", "left")}
    assert not torch.equal(before["up"], before["top"])
    ToyMotionTask(comps, ToyMotionConfig())
    assert torch.equal(row("up"), before["top"]) and torch.equal(row("down"), before["bottom"])
    assert torch.equal(row("left"), before["left"]) and torch.equal(row("top"), before["top"])
    with pytest.raises(InvalidParameter, match="sliding"):  # several pieces: no one embedding to copy
        init_word_embeddings(tok, comps["text_encoder"], {"sliding": "left"})


def test_a_trained_text_encoder_is_checkpointed_and_exported(trained, tmp_path):
    from safetensors.torch import load_file

    from labkit.training.toy_motion import ToyMotionConfig, train_toy_motion

    lab, base, _ = trained
    out = train_toy_motion(lab, ToyMotionConfig(
        output_dir=tmp_path / "motion", base=str(base), steps=2, batch_size=1, frames=4, warmup_steps=0,
        validate_every=0, eval_prompts=0, checkpoint_every=1, log_every=1, text_encoder_lr_scale=1.0))
    name = "text_encoder/model.safetensors"
    before, after = load_file(base / name), load_file(out / name)
    assert before.keys() == after.keys()
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)
    # the last checkpoint holds the same encoder (resuming restores it), beside the motion UNet
    last = tmp_path / "motion" / "checkpoints" / "checkpoint-000002"
    saved = [load_file(f) for f in sorted(last.glob("*.safetensors"))]
    text = [d for d in saved if d.keys() == after.keys()]
    assert len(saved) == 2 and len(text) == 1
    assert all(np.allclose(text[0][k].numpy(), after[k].numpy()) for k in after)


def test_frame_shared_noise_has_the_asked_correlation_and_is_plain_noise_at_zero():
    import torch

    from labkit.pipelines.animatediff import video_noise

    shape = (2, 4, 16, 32, 32)
    plain = video_noise(shape, generator=torch.Generator().manual_seed(3), shared=0.0)
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    mixed = video_noise(shape, generator=torch.Generator().manual_seed(3), shared=0.8)
    assert mixed.shape == shape and abs(float(mixed.var()) - 1.0) < 0.05  # every frame stays N(0, I)
    a, b = mixed[:, :, 0].flatten(), mixed[:, :, 9].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) == pytest.approx(0.8, abs=0.03)
    a, b = plain[:, :, 0].flatten(), plain[:, :, 9].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.03


def test_object_weight_covers_the_whole_path_in_every_frame():
    from labkit.toyworld.motion import Clip, render_clip
    from labkit.toyworld.scenes import Obj
    from labkit.training.toy_motion import _clips_to_tensor, path_mask

    clip = Clip(Obj("square", "red", "small", "left"), "right", frames=8)
    frames = render_clip(clip)
    mask = path_mask(_clips_to_tensor([frames]), 32)
    assert mask.shape == (1, 1, 1, 32, 32)
    covered = np.argwhere(mask[0, 0, 0].numpy() > 0)
    # every frame's object is inside the one mask, and the mask spans the path from first to last frame
    for frame in frames[[0, -1]]:
        ys, xs = np.nonzero(frame.max(axis=-1) > 64)
        assert set(zip(ys // 2, xs // 2, strict=True)) <= {tuple(c) for c in covered}
    first_x = np.nonzero(frames[0].max(axis=-1) > 64)[1].mean() / 2
    last_x = np.nonzero(frames[-1].max(axis=-1) > 64)[1].mean() / 2
    assert covered[:, 1].min() < first_x < last_x < covered[:, 1].max()
    assert float(mask.mean()) < 0.1  # the background stays unweighted


def test_timestep_shift_moves_training_steps_toward_noise():
    import torch

    from labkit.training.toy_motion import ToyMotionConfig, sample_timesteps

    def draw(**kw):
        return sample_timesteps(20_000, steps=1000, generator=torch.Generator().manual_seed(0), **kw).float()

    plain = draw()
    assert plain.min() >= 0 and plain.max() <= 999 and float(plain.mean()) == pytest.approx(499.5, abs=8)
    assert float((plain >= 900).float().mean()) == pytest.approx(0.1, abs=0.01)
    shifted = draw(shift=3.0)
    # u' = 3u / (1 + 2u) >= 0.9  <=>  u >= 0.75
    assert float((shifted >= 900).float().mean()) == pytest.approx(0.25, abs=0.015)
    terminal = draw(shift=3.0, terminal_share=0.3)
    assert float((terminal == 999).float().mean()) == pytest.approx(0.3, abs=0.015)
    for bad in ({"timestep_shift": 0.0}, {"terminal_share": 1.5}):
        with pytest.raises(InvalidParameter, match=next(iter(bad))):
            ToyMotionConfig(**bad).check()


def test_cli_passes_the_recipe_options_and_refuses_a_bad_one_before_training(project, tmp_path, cli_env):
    from tests.integration.test_cli import labkit

    out = labkit("train", "toy-motion", "--arch", "animatediff", "--output", str(tmp_path / "m"), "--timestep-shift",
                 "0", "--terminal-share", "0.3", env=cli_env, check=False)
    assert out.returncode == 2 and "timestep_shift=0.0" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m").exists()  # refused before any checkpoint or run


def test_a_base_with_a_7x7_conv_in_is_refused_with_the_reason():
    from labkit.training.toy_motion import adapter_config

    with pytest.raises(InvalidParameter, match="conv_in_kernel=7") as e:
        adapter_config({"conv_in_kernel": 7, "down_block_types": [], "up_block_types": []})
    assert "3x3" in e.value.fix
    with pytest.raises(InvalidParameter, match="heads"):
        adapter_config({"down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"], "layers_per_block": 1,
                        "block_out_channels": (32, 64), "norm_num_groups": 16}, heads=5)


# --- the catalogue entry, the rules controller and the render path ---------------------------------------------
#
# These run on the shipped toy model (its trained VAE draws real toy scenes) with an UNTRAINED motion adapter:
# its temporal output projections start at zero, so every frame is what the base model draws, and the clean
# first-frame latent of image-to-video must come back as frame 0. The catalogue's `toyworld-motion` is pointed
# at that folder through $LABKIT_CATALOG, exactly as a user points it at a model they trained, with the
# AnimateDiff entry's steps and guidance (`ANIMATEDIFF_ENTRY`). The shipped default, the warp model, has its
# own tests (test_toy_warp.py).

SHIPPED_ANIMATEDIFF = Path(__file__).resolve().parents[2] / "labkit" / "toyworld" / "animatediff_model"
ANIMATEDIFF_ENTRY = "default_steps = 8\ndefault_guidance = 4.0\nmax_frames = 32\n"


@pytest.fixture(scope="module")
def motion_catalog(tmp_path_factory):
    """(catalogue override file, model folder): toyworld-motion = the shipped toy base + an untrained adapter."""
    import torch

    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.training.toy_motion import (
        ToyMotionConfig,
        build_motion_unet,
        load_base_components,
        save_motion_pipeline,
    )

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("toy-motion-entry")
    (root / "mlruns").mkdir()
    comps, _, base_folder = load_base_components(Lab(root, hardware=HardwareProfile.simulated(None)), "toyworld")
    unet, kwargs = build_motion_unet(comps["unet"], ToyMotionConfig())
    folder = save_motion_pipeline(comps, unet, kwargs, root / "motion_model", tokenizer_files=base_folder / "tokenizer",
                                  meta={"base": "toyworld", "trained": False})
    override = root / "catalog.toml"
    override.write_text(f'[models.toyworld-motion]\nsource = "path:{folder.as_posix()}"\n{ANIMATEDIFF_ENTRY}')
    return override, folder


@pytest.fixture
def motion_lab(motion_catalog, project, monkeypatch, one_thread, offline):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    monkeypatch.setenv("LABKIT_CATALOG", str(motion_catalog[0]))
    return Lab(project, hardware=HardwareProfile.simulated(None))


def _toy_image(path: Path, shape="square", colour="blue", size="small", position="bottom") -> Path:
    from labkit.toyworld.scenes import Obj, Scene, render_pil

    render_pil(Scene((Obj(shape, colour, size, position),))).save(path)
    return path


def test_catalogue_entry_is_the_packaged_animatediff_model():
    import labkit
    from labkit.catalog import Catalog

    cat = Catalog.load(use_env=False)
    e = cat.get("toyworld-animatediff")
    assert e.source == "package:labkit/toyworld/animatediff_model" and e.source_kind == "package" and e.repo is None
    assert e.local_path() == Path(labkit.__file__).parent / "toyworld" / "animatediff_model" == SHIPPED_ANIMATEDIFF
    assert e.family == "toy" and set(e.tasks) == {"txt2vid", "img2vid"} and e.licence == "cc0-1.0"
    assert (e.default_frames, e.default_fps, tuple(e.default_size)) == (16, 8, (64, 64))
    assert e.max_frames == 32  # the adapter's positional table (ToyMotionConfig.max_seq_length)
    assert (e.default_steps, e.default_guidance) == (8, 4.0)
    index = json.loads((SHIPPED_ANIMATEDIFF / "model_index.json").read_text())
    assert index["_class_name"] == "AnimateDiffPipeline" and index["labkit"]["keyframe_model"] == "toyworld"


def test_the_shipped_animatediff_model_loads_and_animates_its_keyframe(project, one_thread, offline):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.detect import detect

    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    r = lab.video("a blue square moving up", model="toyworld-animatediff", steps=2, seed=1)
    assert r.status == "finished" and r.plan.task == "img2vid" and len(r.frames) == 16
    assert r.record["model"]["pipeline"] == "AnimateDiffPipeline" and r.inputs[0]["id"] == "toyworld"
    (obj,) = detect(r.frames[0])  # the keyframe the toy model drew, kept as frame 0
    assert (obj.colour, obj.shape, obj.position) == ("blue", "square", "bottom")


def test_a_missing_motion_model_says_how_to_train_it(project, tmp_path, monkeypatch, cli_env):
    from labkit.errors import ModelNotCached
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from tests.integration.test_cli import labkit

    override = tmp_path / "missing.toml"
    override.write_text(f'[models.toyworld-motion]\nsource = "path:{(tmp_path / "nothing-here").as_posix()}"\n')
    monkeypatch.setenv("LABKIT_CATALOG", str(override))
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    with pytest.raises(ModelNotCached, match="toyworld-motion") as e:
        lab.video("a blue square moving up")  # the lab's default video model is the toy motion model
    assert "labkit train toy-motion" in e.value.fix
    out = labkit("video", "a blue square moving up", env={**cli_env, "LABKIT_CATALOG": str(override),
                                                         "HF_HUB_OFFLINE": "1"}, check=False)
    assert out.returncode == 2 and "labkit train toy-motion" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("request_text, task, prompt", [
    ("a blue square moving up", "txt2vid", "a blue square moving up"),
    ("make a short clip of a blue square moving up", "txt2vid", "a blue square moving up"),
    ("a small red circle on the left grows, 24 frames", "txt2vid", "a small red circle on the left grows"),
    ("a video of a large green triangle at the top", "txt2vid", "a large green triangle at the top"),
    ("animate first.png: a blue square moving up", "img2vid", "a blue square moving up"),
])
def test_rules_controller_picks_the_toy_motion_model_for_toy_video(request_text, task, prompt):
    from labkit.controller.base import PlanContext, get_controller

    rules = get_controller("rules")
    for tier in ("cpu", "8"):
        plan = rules.plan(request_text, PlanContext.simulated(tier))
        assert (plan.model, plan.task, plan.prompt) == ("toyworld-motion", task, prompt), plan.rationale
        assert "toyworld-motion" in plan.rationale
    plan = rules.plan(request_text, PlanContext.simulated("cpu"))
    assert plan.frames in (None, 24) and plan.width is None  # the entry's 16 frames / 64x64 fill in when rendering


def test_rules_controller_keeps_other_requests_off_the_toy_motion_model():
    from labkit.controller.base import PlanContext, get_controller

    rules = get_controller("rules")
    ctx = PlanContext.simulated("8")
    assert rules.plan("a small red circle on the left", ctx).model == "toyworld"  # a toy image stays an image
    assert rules.plan("a video of a cat chasing a ball", ctx).model != "toyworld-motion"
    off = PlanContext.simulated("8", toy_world=False)
    assert rules.plan("a blue square moving up", off).model != "toyworld-motion"


def video_and_ask(env: dict[str, str], project: Path, search_runs, *video_args: str
                  ) -> list[tuple[dict, str, list, Any]]:
    """`labkit video "a blue square moving up" [video_args]` and `labkit ask "make a short clip of a blue square
    moving up"` in a subprocess each, with `env`: [(the --json result, the controller that planned it, the GIF's
    frames as arrays, its MLflow run)], after checking that each wrote an MP4 and a 16-frame 64x64 GIF whose
    records name the run, the toy motion model and the controller, and that each run finished."""
    from PIL import Image

    from labkit import outputs
    from tests.integration.test_cli import labkit

    env = {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    video = json.loads(labkit("video", "a blue square moving up", *video_args, "--json", env=env).stdout)
    asked = json.loads(labkit("ask", "make a short clip of a blue square moving up", "--json", env=env).stdout)
    runs = {r.info.run_id: r for r in search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")}
    out = []
    for result, controller in ((video, "api"), (asked, "rules")):
        files = [Path(f) for f in result["files"]]
        assert sorted(f.suffix for f in files) == [".gif", ".mp4"] and all(f.stat().st_size > 0 for f in files)
        with Image.open(next(f for f in files if f.suffix == ".gif")) as im:
            assert im.n_frames == 16 and im.size == (64, 64)
            frames = []
            for k in range(im.n_frames):
                im.seek(k)
                frames.append(np.asarray(im.convert("RGB")))
        for f in files:
            record = outputs.read_record(f)
            assert record["run_id"] == result["run_id"] and record["plan"]["model"] == "toyworld-motion"
            assert record["plan"]["frames"] == 16 and record["plan"]["controller"]["name"] == controller
        run = runs[result["run_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["model.id"] == "toyworld-motion"
        assert run.data.tags["labkit.task"] == "txt2vid" and run.data.tags["model.licence"] == "cc0-1.0"
        assert result["plan"]["prompt"] == "a blue square moving up"
        out.append((result, controller, frames, run))
    return out


def test_labkit_video_and_ask_write_mp4_and_gif_with_the_record_logged_offline(motion_catalog, cli_env, project,
                                                                               search_runs):
    from labkit import outputs

    env = {**cli_env, "LABKIT_CATALOG": str(motion_catalog[0])}
    (video, _, _, _), (asked, _, _, _) = video_and_ask(env, project, search_runs, "--steps", "2", "--seed", "3")
    for result in (video, asked):
        for f in result["files"]:
            assert outputs.read_record(Path(f))["model"]["pipeline"] == "AnimateDiffPipeline"
    assert asked["plan"]["steps"] == 8  # the override's default_steps (ANIMATEDIFF_ENTRY), not the shipped entry's


def test_image_to_video_keeps_the_given_toy_image_as_frame_0(motion_lab, tmp_path, search_runs):
    import hashlib

    from labkit.toyworld.detect import detect

    first = _toy_image(tmp_path / "first.png", "triangle", "green", "large", "left")
    r = motion_lab.video("a green triangle moving right", image=first, steps=3, seed=5)
    assert r.plan.task == "img2vid" and r.plan.model == "toyworld-motion" and len(r.frames) == 16
    (obj,) = detect(r.frames[0])
    assert (obj.colour, obj.shape, obj.size, obj.position) == ("green", "triangle", "large", "left")
    given = np.asarray(_rgb(first), dtype=np.float32)
    assert np.abs(np.asarray(r.frames[0], dtype=np.float32) - given).mean() < 4.0  # the VAE's reconstruction
    # provenance: the input image by path and hash, in the record and as an artifact of the run
    inp = r.record["provenance"]["input_image"]
    assert inp["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest() and inp["size"] == [64, 64]
    assert r.record["plan"]["image"] == str(first)
    run = next(x for x in search_runs(motion_lab.config.tracking_uri) if x.info.run_id == r.run_id)
    assert (Path(run.info.artifact_uri.removeprefix("file://")) / "inputs" / "first.png").is_file()
    # without the image the same seed draws its own frame 0, not the given one
    free = motion_lab.video("a green triangle moving right", steps=3, seed=5)
    assert np.abs(np.asarray(free.frames[0], dtype=np.float32) - given).mean() > 4.0


def _rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def test_still_prompt_is_the_start_scene_of_a_motion_caption():
    from labkit.toyworld.motion import still_prompt

    assert still_prompt("a blue square moving up") == "a small blue square at the bottom"
    assert still_prompt("make it go left: a green diamond") == "a small green diamond on the right"
    assert still_prompt("on the left, a large red circle shrinks") == "a large red circle on the left"
    assert still_prompt("a purple triangle grows") == "a small purple triangle in the centre"
    with pytest.raises(InvalidParameter, match="no motion"):
        still_prompt("a blue square")


@pytest.fixture(scope="module")
def keyframe_catalog(motion_catalog, tmp_path_factory):
    """The same untrained motion model with `"keyframe_model": "toyworld"` in its metadata, as the recipe exports."""
    import shutil

    root = tmp_path_factory.mktemp("toy-motion-keyframe")
    folder = Path(shutil.copytree(motion_catalog[1], root / "motion_model"))
    index = json.loads((folder / "model_index.json").read_text())
    index["labkit"]["keyframe_model"] = "toyworld"
    (folder / "model_index.json").write_text(json.dumps(index))
    override = root / "catalog.toml"
    override.write_text(f'[models.toyworld-motion]\nsource = "path:{folder.as_posix()}"\n{ANIMATEDIFF_ENTRY}')
    return override


def test_text_to_video_animates_the_keyframe_the_base_draws_with_both_runs_recorded(
        keyframe_catalog, project, monkeypatch, one_thread, offline, search_runs):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.detect import detect

    monkeypatch.setenv("LABKIT_CATALOG", str(keyframe_catalog))
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    r = lab.video("a blue square moving up", steps=2, seed=3)
    # the toy base drew the still of the clip's start, and the motion model kept it as frame 0
    assert r.plan.model == "toyworld-motion" and r.plan.task == "img2vid" and len(r.frames) == 16
    (obj,) = detect(r.frames[0])
    assert (obj.colour, obj.shape, obj.size, obj.position) == ("blue", "square", "small", "bottom")
    (frame,) = r.inputs
    assert frame["kind"] == "first_frame" and frame["id"] == "toyworld" and frame["licence"] == "cc0-1.0"
    assert np.abs(np.asarray(r.frames[0], dtype=np.float32) - np.asarray(_rgb(frame["file"]), dtype=np.float32)
                  ).mean() < 4.0
    runs = {x.info.run_id: x for x in search_runs(lab.config.tracking_uri)}
    assert runs[r.run_id].data.tags["labkit.first_frame_run"] == frame["run_id"]
    # named for what was asked, text to video, though it animates a frame; the MLflow UI's preview is the GIF
    assert runs[r.run_id].info.run_name == "txt2vid: a blue square moving up"
    clip_run = Path(runs[r.run_id].info.artifact_uri.removeprefix("file://"))
    assert (clip_run / "preview.gif").read_bytes() == next(f for f in r.files if f.suffix == ".gif").read_bytes()
    assert len(list((clip_run / "images").glob("output-00+step+0+*.png"))) == 2  # the first frame and its thumbnail
    still = runs[frame["run_id"]]
    assert still.info.status == "FINISHED" and still.data.tags["model.id"] == "toyworld"
    assert still.data.params["plan.prompt"] == "a small blue square at the bottom"
    assert any(a.get("kind") == "first_frame" and a["id"] == "toyworld" for a in r.record["provenance"]["assets"])
    # a caption that names no motion cannot be staged: a clear error before any rendering
    with pytest.raises(InvalidParameter, match="no motion"):
        lab.video("a blue square", steps=2)


def test_img2vid_is_refused_for_an_animatediff_model_not_trained_on_first_frames(motion_catalog):
    from labkit.catalog import Catalog
    from labkit.errors import InvalidParameter as Invalid
    from labkit.hardware import HardwareProfile, choose
    from labkit.pipelines.loader import ModelRef, load_pipeline, require_task, resolve_model
    from labkit.pipelines.tasks import pipeline_for_task

    ref = resolve_model(str(motion_catalog[1]), Catalog.load())
    pipe = load_pipeline(ref, choose("toy", HardwareProfile.simulated(None)), "cpu").pipe
    assert require_task(ref, pipe, "img2vid") is pipe  # a labkit motion export continues a first frame
    with pytest.raises(ValueError):
        pipeline_for_task(pipe, "img2vid")
    hub = ModelRef(id="someone/animatediff", kind="hub", location="someone/animatediff", family="sd15")
    with pytest.raises(Invalid, match="cannot do img2vid") as e:
        require_task(hub, pipe, "img2vid")
    assert "first frame" in e.value.fix and "toyworld-motion" in e.value.fix


@pytest.mark.parametrize("catalog", ["motion_catalog", "keyframe_catalog"])
def test_bench_toy_motion_reports_ratios_and_where_the_time_goes(catalog, request, cli_env):
    from tests.integration.test_cli import labkit

    override = request.getfixturevalue(catalog)
    override = override[0] if isinstance(override, tuple) else override  # keyframe: both paths draw the frame too
    env = {**cli_env, "LABKIT_CATALOG": str(override), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = json.loads(labkit("bench", "toy-motion", "--repeat", "1", "--steps", "1", "--json", env=env).stdout)
    assert out["name"] == "toy-motion" and out["baseline"] == "bare pipeline call"
    assert out["ratio"] == pytest.approx(out["subject_s"] / out["baseline_s"])
    x = out["extra"]
    assert x["model"] == "toyworld-motion" and x["frames"] == 16 and x["steps"] == 1 and x["size"] == "64x64"
    assert x["clip_vs_target"] == pytest.approx(x["clip_s"] / x["target_s"], abs=1e-3) and x["target_s"] == 5.0
    assert x["denoise_s"] > 0 and x["decode_s"] > 0 and x["torch_threads"] == 1
    # the keyframe is timed on its own where the model names one (it is part of both sides)
    assert (x["keyframe_s"] > 0) == (catalog == "keyframe_catalog")
    assert x["labkit_s"] == pytest.approx(out["subject_s"] - x["keyframe_s"] - x["denoise_s"] - x["decode_s"], abs=2e-3)
