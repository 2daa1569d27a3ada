"""Panels with real ipywidgets objects: set values and click through the controls dict, as a user
would, and check what the user would see — the plan, the images, the run id, the error."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from labkit import panels
from labkit.hardware import HardwareProfile
from labkit.lab import Lab

REQUEST = "a small red circle on the left"


@pytest.fixture(autouse=True)
def _store(migrated_store, one_thread):
    return migrated_store


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from labkit.testing import build_tiny_sd15, build_tiny_svd

    root = tmp_path_factory.mktemp("tiny-panels")
    return {"sd15": build_tiny_sd15(root / "sd15"), "svd": build_tiny_svd(root / "svd")}


def test_importing_panels_loads_no_widgets_or_torch():
    from tests.unit.test_import import HEAVY, _imported_top_level_modules

    loaded = _imported_top_level_modules("import labkit.panels; labkit.panels.Panel")
    assert "labkit" in loaded
    assert not loaded & {*HEAVY, "ipywidgets"}, sorted(loaded & {*HEAVY, "ipywidgets"})


def _png(widget) -> Image.Image:
    return Image.open(io.BytesIO(widget.value))


def _table_text(c) -> str:
    """The Runs table's text, row after row."""
    return " ".join(w.value for w in c["table"].children if hasattr(w, "value") and isinstance(w.value, str))


def _generate(lab: Lab, tiny, **kw):
    return panels.generate_panel(lab, model=str(tiny["sd15"]), size=(32, 32), steps=2, background=False, **kw)


def test_plan_fills_the_fields_and_render_shows_images_run_id_and_terms(lab, tiny, search_runs):
    widget, c = _generate(lab, tiny)
    assert c["model"].value == str(tiny["sd15"]) and (c["width"].value, c["steps"].value) == (32, 2)

    c["request"].value = REQUEST
    c["plan"].click()
    assert c["error"].value == ""
    assert "rules" in c["plan_view"].value
    assert c["prompt"].value == REQUEST            # the rules controller keeps a toy-world caption as the prompt
    assert c["model"].value == "toyworld"          # ... and picks the toy world for it
    assert (c["width"].value, c["height"].value, c["steps"].value) == (64, 64, 20)

    # Edit the plan: the tiny local model, small and quick, a chosen seed, two images.
    c["model"].value = str(tiny["sd15"])
    c["width"].value, c["height"].value, c["steps"].value = 32, 32, 2
    c["seed"].value, c["count"].value, c["negative_prompt"].value = 1234, 2, "blurry"
    c["render"].click()

    assert c["error"].value == ""
    assert len(c["images"].children) == 2
    assert _png(c["images"].children[0]).size == (32, 32)
    assert c["progress"].value == c["progress"].max > 0
    assert "finished" in c["status"].value
    assert "Terms" in c["terms"].value and "commercial" in c["terms"].value
    assert not c["render"].disabled and not c["plan"].disabled and c["cancel"].disabled

    [run] = search_runs(lab.config.tracking_uri)
    assert c["run_id"].value == run.info.run_id
    assert run.data.params["plan.seed"] == "1234"
    assert run.data.params["plan.count"] == "2"
    assert run.data.params["plan.negative_prompt"] == "blurry"
    assert run.data.params["plan.controller.name"] == "rules"   # the plan's author is kept through the edits
    assert lab.last_result.run_id == run.info.run_id


def test_a_bad_value_is_shown_in_the_panel_and_nothing_runs(lab, tiny, search_runs):
    _, c = _generate(lab, tiny)
    c["prompt"].value = REQUEST
    c["width"].value = 33
    c["render"].click()
    assert "width 33 is not a multiple of 8" in c["error"].value
    assert "Fix: use 32 or 40" in c["error"].value
    assert c["images"].children == () and c["run_id"].value == ""
    assert not c["render"].disabled
    assert search_runs(lab.config.tracking_uri) == []

    c["width"].value = 32   # fixing the value and pressing Render again works, and clears the error
    c["render"].click()
    assert c["error"].value == "" and len(c["images"].children) == 1


def test_an_empty_request_and_an_unknown_model_are_errors_not_exceptions(lab, tiny):
    _, c = _generate(lab, tiny)
    c["plan"].click()
    assert "The request is empty" in c["error"].value
    c["prompt"].value = REQUEST
    c["model"].options = [*c["model"].options, ("nope", "no-such-model")]
    c["model"].value = "no-such-model"
    c["render"].click()
    assert "not in the catalogue" in c["error"].value


def test_render_in_the_background_disables_the_buttons_until_done(lab, tiny):
    _, c = panels.generate_panel(lab, prompt=REQUEST, model=str(tiny["sd15"]), size=(32, 32), steps=2, seed=7)
    c["render"].click()
    assert c["render"].disabled and c["plan"].disabled and not c["cancel"].disabled
    c["render"].click()   # a second click while it runs starts nothing
    assert c["worker"].wait(120)
    assert not c["render"].disabled and c["cancel"].disabled
    assert c["error"].value == "" and len(c["images"].children) == 1 and c["run_id"].value
    assert lab.runs(10) and len(lab.runs(10)) == 1


def test_cancel_stops_a_running_render_and_keeps_what_it_made(lab, tiny, search_runs):
    _, c = panels.generate_panel(lab, prompt=REQUEST, model=str(tiny["sd15"]), size=(32, 32), steps=8)
    c["render"].click()
    c["cancel"].click()   # heard while the render runs on its thread: it stops after the current step
    assert c["worker"].wait(120)
    assert c["status"].value.startswith("cancelled") and c["progress"].value < 8
    assert len(c["images"].children) == 1 and c["error"].value == ""
    [run] = search_runs(lab.config.tracking_uri)
    assert run.info.status == "KILLED" and run.info.run_id == c["run_id"].value


def test_reroll_draws_a_new_seed(lab, tiny):
    _, c = _generate(lab, tiny, seed=5)
    assert c["seed"].value == 5
    c["reroll"].click()
    assert c["seed"].value != 5 and 0 <= c["seed"].value < 2**32


def test_model_menu_marks_fit_and_compliance(project):
    lab = Lab(project, hardware=HardwareProfile.simulated(8), compliance_mode="open")
    _, c = panels.generate_panel(lab, background=False)
    labels = dict((v, k) for k, v in c["model"].options)
    assert labels["sd15"].startswith("sd15 — fits")
    assert "needs offload" in labels["sdxl"]                        # SDXL on 8 GB starts with offload
    assert ", blocked" in labels["sd-turbo"]                       # non-commercial licence, mode "open"
    assert "allowed" in labels["sd15"]
    big = Lab(project, hardware=HardwareProfile.simulated(4), compliance_mode="research")
    assert any(m.fit == "too large" for m in big.models())          # something does not fit 4 GB
    cpu = Lab(project, hardware=HardwareProfile.simulated(None))
    marks = {m.id: m.fit for m in cpu.models("txt2img")}
    assert marks["toyworld"] == "fits" and marks["sdxl"] == "too slow on CPU"


def test_video_from_the_last_image_and_from_an_upload(lab, tiny, search_runs):
    _, c = panels.video_panel(lab, source="last image", model=str(tiny["svd"]), frames=3, fps=6, steps=2,
                              size=(32, 32), seed=0, background=False)
    c["render"].click()
    assert "rendered no image yet" in c["error"].value   # nothing rendered in this lab so far

    first = lab.generate(REQUEST, model=str(tiny["sd15"]), size=(32, 32), steps=2, seed=3)
    c["render"].click()
    assert c["error"].value == ""
    assert c["video"].value[4:8] == b"ftyp"               # an MP4 plays in the panel
    assert c["gif"].value[:4] == b"GIF8"                  # and its GIF beside it
    assert c["video"].layout.width == "320px"             # 32 px × 10: wide enough for the player's play/pause
    assert c["gif"].layout.width == "256px" and "labkit-pixelated" in c["gif"]._dom_classes   # 32 px × 8, crisp
    runs = {r.info.run_id: r for r in search_runs(lab.config.tracking_uri)}
    video_run = runs[c["run_id"].value]
    assert video_run.data.params["plan.image"] == str(first.files[0])
    assert video_run.data.params["plan.frames"] == "3"

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, format="PNG")
    c["source"].value = "upload"
    c["upload"].value = ({"name": "red.png", "type": "image/png", "size": len(buf.getvalue()),
                          "content": memoryview(buf.getvalue()),
                          "last_modified": datetime.datetime.now(datetime.UTC)},)
    c["render"].click()
    assert c["error"].value == ""
    uploaded = search_runs(lab.config.tracking_uri)[0]
    assert uploaded.info.run_id == c["run_id"].value
    kept = Path(uploaded.data.params["plan.image"])
    assert kept.parent == lab.config.root / "mlruns" / "inputs" and kept.read_bytes() == buf.getvalue()


def test_a_cancelled_clip_is_a_status_not_an_error_and_has_no_output_terms(lab, tiny):
    _, c = panels.video_panel(lab, request="a red circle moving to the right", model=str(tiny["svd"]), frames=3,
                              fps=6, steps=6, size=(32, 32), seed=0, background=False)

    def press_cancel_at_step_2(change):
        if change["new"] == 2:
            c["cancel"].click()

    c["progress"].observe(press_cancel_at_step_2, names="value")
    c["render"].click()
    assert c["error"].value == ""                        # a cancel is not an error: no red box, no "failed"
    assert c["status"].value.startswith("cancelled at step 2 of 6")   # SVD keeps no partial clip ...
    assert c["video"].layout.display == "none" and c["gif"].layout.display == "none"   # ... so none is shown
    assert c["terms"].value == ""


def test_runs_panel_compares_runs_and_takes_notes(lab, tiny):
    a = lab.generate(REQUEST, model=str(tiny["sd15"]), size=(32, 32), steps=2, seed=1)
    b = lab.generate(REQUEST, model=str(tiny["sd15"]), size=(32, 32), steps=3, seed=2)
    _, c = panels.runs_panel(lab)
    assert set(c["checks"]) == {a.run_id, b.run_id}             # one tick box per row of the table

    c["compare"].click()
    assert "No runs selected" in c["error"].value
    c["checks"][a.run_id].value = c["checks"][b.run_id].value = True
    c["compare"].click()
    assert c["error"].value == ""
    assert "plan.seed, plan.steps" in c["comparison"].value     # exactly what differs, highlighted
    assert c["comparison"].value.count("labkit-differs") == 2
    assert len(c["images"].children) == 2
    assert "seed=1, steps=2" in c["images"].children[1].children[-1].value   # in the table's order: newest first
    assert _png(c["plot"]).size[0] > 100

    c["note_text"].value = "Three steps look no better than two."
    c["add_note"].click()
    assert lab.notes(a.run_id) == lab.notes(b.run_id) == "Three steps look no better than two."
    assert "Three steps" in _table_text(c) and "Note on" in c["notes"].value
    for box in c["checks"].values():
        box.value = False
    c["note_text"].value = "## Study\nseed sweep on the tiny model"
    c["add_note"].click()
    assert lab.notes(experiment=True) == "## Study\nseed sweep on the tiny model"
    assert "Experiment note" in c["notes"].value
    c["add_note"].click()
    assert "The note is empty" in c["error"].value


def test_hardware_panel_shows_the_profile_and_strategies(project):
    lab = Lab(project, hardware=HardwareProfile.simulated(8))
    _, c = panels.hardware_panel(lab)
    assert "simulated 8 GB GPU" in c["summary"].value and "tier: <code>8</code>" in c["summary"].value
    assert lab.strategy("sdxl").name in c["this_machine"].value
    for tier in ("cpu", "4", "24", "40"):
        assert f">{tier}</th>" in c["matrix"].value
    assert c["error"].value == ""


def test_hardware_panel_gpu_line_says_no_gpu_on_a_cpu_machine(project):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the line shows it (tests/gpu checks the figures)")
    _, c = panels.hardware_panel(Lab(project, hardware=HardwareProfile.simulated(None)))
    assert "GPU now</b>: no GPU" in c["gpu"].value
    c["gpu_refresh"].click()
    assert "no GPU" in c["gpu"].value and c["error"].value == ""


def test_hardware_panel_gpu_line_refreshes_by_click_and_automatically(project):
    import threading
    import time

    readings = iter(range(1, 10_000))

    def probe():  # a GPU whose memory use grows by 1 GB per reading
        n = next(readings)
        return {"available": True, "source": "nvml", "name": "Fake H200", "used_gb": float(n),
                "free_gb": 140.0 - n, "total_gb": 140.0, "utilisation_pct": 10 * n % 100, "processes": 2}

    _, c = panels.hardware_panel(Lab(project, hardware=HardwareProfile.simulated(None)), probe=probe,
                                 interval_s=0.05)
    assert "Fake H200 — 1.00 of 140.0 GB used (1 %), 139.00 GB free, utilisation 10 %" in c["gpu"].value
    assert "2 process(es)" in c["gpu"].value
    c["gpu_refresh"].click()
    assert "2.00 of 140.0 GB used" in c["gpu"].value and "utilisation 20 %" in c["gpu"].value

    def auto_threads():
        return [t for t in threading.enumerate() if t.name == "labkit-gpu-refresh" and t.is_alive()]

    assert not auto_threads()  # off until ticked
    c["auto"].value = True
    deadline = time.monotonic() + 30
    while "2.00 of" in c["gpu"].value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "2.00 of" not in c["gpu"].value and "Fake H200" in c["gpu"].value  # it moved without a click
    c["auto"].value = False
    assert not auto_threads()
    shown = c["gpu"].value
    c["gpu_refresh"].click()
    assert c["gpu"].value != shown  # Refresh still works after auto-refresh stopped


def test_hardware_panel_gpu_line_survives_a_failing_probe(project):
    def probe():
        raise RuntimeError("NVML: driver/library version mismatch")

    _, c = panels.hardware_panel(Lab(project, hardware=HardwareProfile.simulated(None)), probe=probe)
    assert "cannot read" in c["gpu"].value and "version mismatch" in c["gpu"].value
    assert "CPU only" in c["summary"].value


def test_compliance_panel_modes_and_dataset_breakdown(lab, tmp_path):
    _, c = panels.compliance_panel(lab)
    assert c["mode"].value == "research"
    assert "sd-turbo" in c["models"].value and "sai-nc-community" in c["models"].value
    c["mode"].value = "open"
    assert "previewing" in c["mode_info"].value
    row = next(r for r in c["models"].value.split("<tr>") if "sd-turbo" in r)
    assert ">block<" in row
    assert lab.compliance.name == "research"   # previewing a mode leaves the lab's mode alone

    c["breakdown"].click()
    assert "No dataset folder given" in c["error"].value
    data = tmp_path / "shapes"
    data.mkdir()
    lines = []
    for i, lic in enumerate(["cc0-1.0", "cc0-1.0", None]):
        Image.new("RGB", (8, 8)).save(data / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": "a shape", **({"licence": lic} if lic else {})}))
    (data / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    c["dataset"].value = str(data)
    c["breakdown"].click()
    assert c["error"].value == ""
    assert _png(c["chart"]).size[0] > 100
    assert "3 items" in c["dataset_table"].value and "2.png" in c["dataset_table"].value
    assert "Mode open</b>: block" in c["dataset_terms"].value   # an item without a licence blocks in "open"


def test_lab_puts_the_panels_in_tabs(lab, tiny):
    tabs, controls = panels.lab(lab, model=str(tiny["sd15"]), background=False)
    assert [tabs.get_title(i) for i in range(6)] == ["Generate", "Video", "Train", "Runs", "Hardware", "Compliance"]
    assert set(controls) == {"generate", "video", "train", "runs", "hardware", "compliance", "tabs"}
    gen = controls["generate"]
    gen["prompt"].value, gen["width"].value, gen["height"].value, gen["steps"].value = REQUEST, 32, 32, 2
    gen["render"].click()
    assert gen["run_id"].value
    tabs.selected_index = 3   # opening the Runs tab refreshes it
    assert gen["run_id"].value in controls["runs"]["checks"]


def test_generate_panel_control_section_previews_the_map_and_renders_with_it(lab, tiny, tmp_path, search_runs):
    from labkit.testing import build_tiny_controlnet

    net = build_tiny_controlnet("sd15", tmp_path / "cn")
    buf = io.BytesIO()
    drawing = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(drawing).ellipse([6, 6, 25, 25], outline="black", width=2)
    drawing.save(buf, format="PNG")
    widget, c = _generate(lab, tiny, prompt="a red circle", seed=2)
    c["control_kind"].value = "canny"
    c["render"].click()  # a kind but no image yet: said in the panel, nothing rendered
    assert "has no image" in c["error"].value and search_runs(lab.config.tracking_uri) == []
    c["control_upload"].value = ({"name": "drawing.png", "type": "image/png", "size": len(buf.getvalue()),
                                  "content": memoryview(buf.getvalue()),
                                  "last_modified": datetime.datetime.now(datetime.UTC)},)
    c["control_preview"].click()
    assert c["error"].value == ""
    upload, preview = c["control_map"].children
    edges = np.asarray(_png(preview).convert("L"))
    assert edges.shape == (32, 32) and edges.max() == 255 and edges[16, 16] == 0  # the circle's outline, not inside
    c["control_model"].value = str(net)
    c["control_scale"].value = 0.5
    c["render"].click()
    assert c["error"].value == "" and c["run_id"].value
    (run,) = search_runs(lab.config.tracking_uri)
    import ast

    controls = ast.literal_eval(run.data.params["plan.controls"])  # MLflow keeps the list's repr
    assert controls[0]["kind"] == "canny" and controls[0]["scale"] == 0.5 and controls[0]["model"] == str(net)
