"""ControlNet renders on tiny random SD 1.5 and SDXL pipelines, loaded through the loader like hub models:
single and several ControlNets, text- and image-to-image, with a LoRA; scale 0 is the uncontrolled picture;
a ControlNet of the wrong family fails before any step; the maps and their records travel with the run and
a replay reproduces the render."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from labkit.errors import InvalidParameter
from labkit.plan import ControlRef, Plan

PROMPT = "a red circle"
SIZE = (32, 32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from labkit.testing import build_tiny_controlnet, build_tiny_sd15, build_tiny_sdxl

    root = tmp_path_factory.mktemp("tiny-controlnet")
    built = {"sd15": build_tiny_sd15(root / "sd15"), "sdxl": build_tiny_sdxl(root / "sdxl"),
             "cn15": build_tiny_controlnet("sd15", root / "cn15"),
             "cn15b": build_tiny_controlnet("sd15", root / "cn15b", seed=1),
             "cnxl": build_tiny_controlnet("sdxl", root / "cnxl")}
    picture = Image.new("RGB", SIZE, "white")
    ImageDraw.Draw(picture).ellipse([6, 6, 25, 25], outline="black", width=2)
    picture.save(root / "drawing.png")
    built["drawing"] = root / "drawing.png"
    built["lora"] = _tiny_lora(built["sd15"], root / "lora")
    return built


def _tiny_lora(base, folder):
    """A random LoRA on the tiny SD 1.5 UNet, saved as diffusers saves one (non-zero B: it changes pixels)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for name, p in pipe.unet.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    return folder


@pytest.fixture
def lab(project, one_thread):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    return Lab(project, hardware=HardwareProfile.simulated(None))


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def _gen(lab, tiny, family="sd15", controls=(), **kw):
    return lab.generate(PROMPT, model=str(tiny[family]), size=SIZE, steps=2, seed=3, guidance=1.0,
                        controls=list(controls), **kw)


def test_a_control_steers_the_picture_and_scale_zero_leaves_it_alone(lab, tiny):
    plain = _gen(lab, tiny)
    canny = ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cn15"]), params={"low": 50, "high": 100})
    controlled = _gen(lab, tiny, controls=[canny])
    off = _gen(lab, tiny, controls=[ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cn15"]), scale=0.0)])
    assert np.abs(_pixels(controlled) - _pixels(plain)).max() > 10
    assert np.abs(_pixels(off) - _pixels(plain)).max() <= 2
    (record,) = controlled.record["controls"]
    assert record["kind"] == "canny" and record["model"] == str(tiny["cn15"]) and record["params"]["low"] == 50
    assert len(record["sha256"]) == 64 and len(record["model_sha256"]) == 64 and record["scale"] == 1.0
    assert any(a["kind"] == "controlnet" for a in controlled.record["provenance"]["assets"])
    maps = lab.tracker.client.list_artifacts(controlled.run_id, "controls")
    assert [m.path for m in maps] == ["controls/control-0-canny.png"]
    assert json.loads(lab.tracker.client.get_run(controlled.run_id).data.params["plan.controls"].replace("'", '"')
                      .replace("True", "true").replace("False", "false"))[0]["kind"] == "canny"


def test_two_controlnets_with_their_own_scales_and_a_lora(lab, tiny):
    a = ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cn15"]), scale=0.7, end=0.5)
    b = ControlRef("scribble", str(tiny["drawing"]), model=str(tiny["cn15b"]), scale=1.2)
    both = _gen(lab, tiny, controls=[a, b])
    only_a = _gen(lab, tiny, controls=[a])
    assert np.abs(_pixels(both) - _pixels(only_a)).max() > 2
    assert [c["kind"] for c in both.record["controls"]] == ["canny", "scribble"]
    with_lora = _gen(lab, tiny, controls=[a, b], adapters=[f"{tiny['lora']}:1.0"])
    assert np.abs(_pixels(with_lora) - _pixels(both)).max() > 2
    assert with_lora.model.get("adapters")


def test_image_to_image_with_a_control(lab, tiny, tmp_path):
    start = tmp_path / "start.png"
    Image.new("RGB", SIZE, (200, 40, 40)).save(start)
    control = ControlRef("scribble", str(tiny["drawing"]), model=str(tiny["cn15"]))
    plain = _gen(lab, tiny, image=start, strength=0.8)
    controlled = _gen(lab, tiny, image=start, strength=0.8, controls=[control])
    assert controlled.plan.task == "img2img" and np.abs(_pixels(controlled) - _pixels(plain)).max() > 2


def test_sdxl_controlnet_text_and_image_to_image(lab, tiny, tmp_path):
    control = ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cnxl"]))
    plain = _gen(lab, tiny, "sdxl")
    controlled = _gen(lab, tiny, "sdxl", controls=[control])
    assert np.abs(_pixels(controlled) - _pixels(plain)).max() > 2
    start = tmp_path / "start.png"
    Image.new("RGB", SIZE, (40, 40, 200)).save(start)
    assert _gen(lab, tiny, "sdxl", image=start, strength=0.7, controls=[control]).images


def test_a_controlnet_of_another_family_fails_before_any_step(lab, tiny):
    steps = []
    with pytest.raises(InvalidParameter) as e:
        _gen(lab, tiny, controls=[ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cnxl"]))],
             progress=lambda i, n: steps.append(i))
    assert "sdxl" in e.value.message and "sd15" in e.value.message and str(tiny["cnxl"]) in e.value.message
    assert steps == [] and lab.runs(5) == []  # refused before a run opened


@pytest.mark.parametrize("control, named", [
    (ControlRef("canny", "/no/such/photo.png", model="X"), "/no/such/photo.png"),
    # no ControlNet named: the catalogue's for (sd15, canny), which is not downloaded here
    (ControlRef("canny", "DRAWING", model=None), "hf download lllyasviel/control_v11p_sd15_canny --revision"),
    # none catalogued for (sd15, layout): the error lists the ones that are
    (ControlRef("layout", "DRAWING", model=None), "names no ControlNet"),
    (ControlRef("canny", "DRAWING", model="/no/such/controlnet"), "/no/such/controlnet"),
])
def test_bad_controls_are_refused_before_a_run(lab, tiny, control, named):
    import dataclasses

    if control.image == "DRAWING":
        control = dataclasses.replace(control, image=str(tiny["drawing"]))
    if control.model == "X":
        control = dataclasses.replace(control, model=str(tiny["cn15"]))
    with pytest.raises(Exception) as e:
        _gen(lab, tiny, controls=[control])
    assert named in str(e.value) and lab.runs(5) == []


def test_more_controlnets_than_the_gpu_fits_are_refused_before_loading(project, tiny):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    lab = Lab(project, hardware=HardwareProfile.simulated(4.0))  # SDXL's cheapest rung fits 3 ControlNets here
    controls = [ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cnxl"]))] * 4
    with pytest.raises(Exception) as e:
        _gen(lab, tiny, family="sdxl", controls=controls)
    assert "4 ControlNets" in e.value.message and "at most 3" in e.value.fix and lab.runs(5) == []


def test_replay_check_reproduces_a_controlled_render(lab, tiny, tmp_path):
    keypoints = tmp_path / "pose.json"
    body = [v for j in range(18) for v in (6 + j % 5 * 5, 4 + j // 5 * 7, 0.9)]
    keypoints.write_text(json.dumps({"people": [{"pose_keypoints_2d": body}], "canvas_width": 32,
                                     "canvas_height": 32}))
    first = _gen(lab, tiny, controls=[ControlRef("pose", str(keypoints), model=str(tiny["cn15"]))])
    again, check = lab.replay(first.run_id, check=True)
    assert check.identical and again.record["controls"][0]["sha256"] == first.record["controls"][0]["sha256"]


def test_cli_generate_with_controls(tiny, cli_env, project):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "labkit", "generate", PROMPT, "--model", str(tiny["sd15"]),
                          "--size", "32x32", "--steps", "2", "--seed", "1", "--json",
                          "--control", f"canny:{tiny['drawing']}:0.5", "--control", f"scribble:{tiny['drawing']}",
                          "--control-model", str(tiny["cn15"]), "--control-model", str(tiny["cn15b"])],
                         capture_output=True, text=True, env=cli_env, timeout=300)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)["plan"]
    assert [(c["kind"], c["scale"], c["model"]) for c in plan["controls"]] == [
        ("canny", 0.5, str(tiny["cn15"])), ("scribble", 1.0, str(tiny["cn15b"]))]
    bad = subprocess.run([sys.executable, "-m", "labkit", "generate", PROMPT, "--model", str(tiny["sd15"]),
                          "--control", "edges:x.png"], capture_output=True, text=True, env=cli_env, timeout=300)
    assert bad.returncode == 2 and "edges" in bad.stderr and "canny" in bad.stderr


def test_plan_with_controls_round_trips_through_the_lab(lab, tiny):
    plan = Plan(prompt=PROMPT, model=str(tiny["sd15"]), width=32, height=32, steps=2, seed=1,
                controls=(ControlRef("canny", str(tiny["drawing"]), model=str(tiny["cn15"])),))
    assert Plan.from_json(lab.complete(plan).to_json()).controls == plan.controls
