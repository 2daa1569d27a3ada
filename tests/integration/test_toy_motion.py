"""The toy-motion recipe end to end on a tiny untrained base: a few engine steps, the diffusers export,
the ordinary loader, a 16-frame clip, first-frame conditioning, and the motion benchmark's run."""

from __future__ import annotations

import json
from pathlib import Path

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
    from labkit.toyworld.motion_train import ToyMotionConfig, train_toy_motion

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
    adapter = out / "motion_adapter" / "diffusion_pytorch_model.safetensors"
    assert adapter.stat().st_size < 2_000_000 and weights_bytes(out) < 10_000_000
    # The base UNet is stored unchanged: only the motion modules were trained.
    ours = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    theirs = load_file(str(base / "unet" / "diffusion_pytorch_model.safetensors"))
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
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
    from labkit.toyworld.motion_train import animate, encode_image

    lab, _, out = trained
    ref = resolve_model(str(out), lab.catalog)
    assert ref.family == "toy"
    loaded = load_pipeline(ref, choose(ref.family, lab.hardware), "cpu")
    pipe = loaded.pipe
    assert type(pipe).__name__ == "AnimateDiffPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"
    assert pipeline_kind(pipe) == "txt2vid"
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

    lab, _, out = trained
    report = evaluate_motion(lab, model=str(out), n=2, seed=4, steps=1, frames=16)
    assert len(report.rows) == 2 and set(report.rates) == set(CHECKS)
    assert report.rates["all_correct"] == 0.0  # random weights draw no tracked, moving shape
    run = next(r for r in search_runs(lab.config.tracking_uri) if r.info.run_id == report.run_id)
    assert run.data.params["n"] == "2" and run.data.params["mode"] == "text-to-video"
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


def test_a_base_with_a_7x7_conv_in_is_refused_with_the_reason():
    from labkit.toyworld.motion_train import adapter_config

    with pytest.raises(InvalidParameter, match="conv_in_kernel=7") as e:
        adapter_config({"conv_in_kernel": 7, "down_block_types": [], "up_block_types": []})
    assert "3x3" in e.value.fix
    with pytest.raises(InvalidParameter, match="heads"):
        adapter_config({"down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"], "layers_per_block": 1,
                        "block_out_channels": (32, 64), "norm_num_groups": 16}, heads=5)
