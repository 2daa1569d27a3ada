"""Generation end to end on tiny pipelines of every family: load, render, record, recover."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit import outputs
from labkit.controller.plan import Plan
from labkit.errors import InvalidParameter, ModelNotCached, OutOfMemory, UnsafeWeights
from labkit.hardware import HardwareProfile
from labkit.lab import Lab
from labkit.testing import (
    build_tiny_sd15,
    build_tiny_sdxl,
    build_tiny_svd,
    build_tiny_t2v,
    save_pickle_checkpoint,
    save_pickle_pipeline,
    save_single_file_sd15,
)

# family -> (builder, catalogue tasks, render kwargs)
FAMILIES = {
    "sd15": (build_tiny_sd15, ["txt2img", "img2img"], dict(modality="image", width=32, height=32, steps=2)),
    "sdxl": (build_tiny_sdxl, ["txt2img", "img2img"], dict(modality="image", width=32, height=48, steps=2)),
    "svd": (build_tiny_svd, ["img2vid"], dict(modality="video", width=32, height=32, steps=2, frames=3, fps=6)),
    "t2v": (build_tiny_t2v, ["txt2vid"], dict(modality="video", width=32, height=16, steps=2, frames=5, fps=8)),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {fam: builder(root / fam) for fam, (builder, _, _) in FAMILIES.items()}


@pytest.fixture
def catalogued(tiny, tmp_path, monkeypatch) -> Path:
    """A user catalogue naming each tiny pipeline, the way a researcher adds a local model."""
    lines = []
    for fam, (_, tasks, kw) in FAMILIES.items():
        video = kw["modality"] == "video"
        lines += [f"[models.tiny-{fam}]", f'name = "tiny {fam}"', f'source = "path:{tiny[fam]}"',
                  f'family = "{fam}"', f"tasks = {json.dumps(tasks)}", 'licence = "apache-2.0"',
                  "default_steps = 2", "default_guidance = 2.0", f"default_size = [{kw['width']}, {kw['height']}]",
                  "min_size = 16", "max_size = 256", "size_multiple = 8",
                  f"default_frames = {kw.get('frames', 0)}", f"default_fps = {kw.get('fps', 0)}",
                  f"max_frames = {16 if video else 0}", ""]
    path = tmp_path / "my-catalog.toml"
    path.write_text("\n".join(lines))
    monkeypatch.setenv("LABKIT_CATALOG", str(path))
    return path


@pytest.fixture(scope="module")
def input_image(tmp_path_factory) -> Path:
    from labkit.toyworld import render_pil, sample_scene

    path = tmp_path_factory.mktemp("img") / "scene.png"
    render_pil(sample_scene(np.random.default_rng(0), n_objects=1)).resize((32, 32)).save(path)
    return path


def _plan(family: str, model: str, seed: int, image: Path | None) -> Plan:
    kw = dict(FAMILIES[family][2])
    return Plan(prompt="a red circle on the left", model=model, seed=seed, guidance=2.0,
                image=str(image) if family == "svd" else None, **kw)


def _pixels(result) -> np.ndarray:
    frames = result.images or result.clips[0]
    return np.stack([np.asarray(f) for f in frames])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_renders_records_and_reproduces(family, tiny, catalogued, project, input_image, search_runs):
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    by_path = lab.render(_plan(family, str(tiny[family]), 7, input_image))
    kw = FAMILIES[family][2]
    px = _pixels(by_path)
    if kw["modality"] == "image":
        assert px.shape == (1, kw["height"], kw["width"], 3)
    else:
        assert px.shape == (kw["frames"], kw["height"], kw["width"], 3)

    # The same plan through a catalogue entry: same pipeline, same seed, same pixels.
    by_entry = lab.render(_plan(family, f"tiny-{family}", 7, input_image))
    assert by_entry.model["location"] == str(tiny[family]) and by_entry.model["licence"] == "apache-2.0"
    assert np.array_equal(_pixels(by_entry), px)
    other_seed = lab.render(_plan(family, f"tiny-{family}", 8, input_image))
    assert np.abs(_pixels(other_seed).astype(int) - px.astype(int)).max() > 0

    # The embedded record comes back from the files.
    for path in by_entry.files:
        record = outputs.read_record(path)
        assert record["plan"]["seed"] == 7 and record["plan"]["model"] == f"tiny-{family}"
        assert record["model"]["hash"] == by_entry.model["hash"] and record["run_id"] == by_entry.run_id
        assert record["strategy"]["name"] == by_entry.strategy.name
        # The licence chain and the terms that follow from it travel with every output.
        assert record["provenance"]["assets"][0]["licence"] == "apache-2.0"
        assert record["provenance"]["terms"]["commercial"] is True and record["terms"]
    suffixes = {p.suffix for p in by_entry.files}
    assert suffixes == ({".png"} if kw["modality"] == "image" else {".mp4", ".gif"})

    # The MLflow run has the plan, timings, memory, tags and files.
    runs = {r.info.run_id: r for r in search_runs(lab.config.tracking_uri)}
    run = runs[by_entry.run_id]
    assert run.info.status == "FINISHED"
    assert run.data.params["plan.seed"] == "7" and run.data.params["plan.prompt"] == "a red circle on the left"
    assert run.data.params["plan.steps"] == "2"
    assert run.data.metrics["time.total_s"] > 0 and run.data.metrics["memory.peak_rss_gb"] > 0
    assert len(lab.tracker.client.get_metric_history(by_entry.run_id, "time.step_s")) == len(by_entry.timings["step_s"])
    assert run.data.tags["model.family"] == family and run.data.tags["strategy.name"] == by_entry.strategy.name
    assert run.data.tags["model.hash"] == by_entry.model["hash"]
    files = json.loads(run.data.tags["model.files"])
    assert files and all(len(h) == 64 for h in files.values())
    assert run.data.tags["hardware.device"] == "cpu"
    assert run.data.tags["labkit.compliance.mode"] == "research" and run.data.tags["labkit.terms.commercial"]
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert json.loads((artifacts / "plan.json").read_text())["seed"] == 7
    assert sorted(p.name for p in by_entry.files) == sorted(
        p.name for p in (artifacts / "outputs").iterdir() if p.suffix != ".json")


def test_second_render_reuses_the_loaded_pipeline(tiny, lab):
    first = lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1)
    second = lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1)
    assert first.timings["load_s"] > 0 and second.timings["load_s"] == 0
    assert len(lab.pipelines) == 1
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))


def test_switching_models_frees_the_old_one_within_budget(tiny, lab):
    lab.generate("a cat", model=str(tiny["sd15"]), steps=1, size=(32, 32), seed=1)
    (loaded,) = [lab.pipelines.get(k) for k in lab.pipelines.keys()]
    lab.pipelines.budget_bytes = int(loaded.size_bytes * 1.5)  # room for one tiny pipeline, not two
    lab.generate("a cat", model=str(tiny["sdxl"]), steps=1, size=(32, 32), seed=1)
    assert [k[1] for k in lab.pipelines.keys()] == [str(tiny["sdxl"])]


def test_img2img_and_batches(tiny, lab, input_image):
    r = lab.generate("a blue square", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=5, n=3)
    assert len(r.images) == 3 and len(r.files) == 3
    # Output i depends on seed + i only, not on the batch it was rendered in.
    alone = lab.generate("a blue square", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=6)
    assert np.abs(np.asarray(alone.image, int) - np.asarray(r.images[1], int)).max() <= 1
    i2i = lab.generate("a blue square", model=str(tiny["sd15"]), steps=4, size=(32, 32), seed=5,
                       image=input_image, strength=0.5)
    assert i2i.plan.task == "img2img" and i2i.image.size == (32, 32)


def test_negative_prompt_changes_the_image(tiny, lab):
    a = lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1, guidance=5.0)
    b = lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1, guidance=5.0,
                     negative_prompt="blurry dog")
    assert not np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert b.record["plan"]["negative_prompt"] == "blurry dog"


def test_single_file_checkpoint_loads_through_from_single_file(tiny, lab, tmp_path):
    ckpt = save_single_file_sd15(tiny["sd15"], tmp_path / "tiny-sd15.safetensors")
    from labkit.pipelines.loader import resolve_model

    ref = resolve_model(str(ckpt), lab.catalog, config=str(tiny["sd15"]))
    assert ref.kind == "single_file" and ref.family == "sd15"
    folder = lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=3)
    single = lab.generate("a cat", model=str(ckpt), config=str(tiny["sd15"]), steps=2, size=(32, 32), seed=3)
    assert single.model["kind"] == "single_file" and list(single.model["files"]) == ["tiny-sd15.safetensors"]
    assert np.array_equal(np.asarray(single.image), np.asarray(folder.image))


def test_single_file_without_config_is_a_clear_error(tiny, lab, tmp_path):
    ckpt = save_single_file_sd15(tiny["sd15"], tmp_path / "tiny.safetensors")
    with pytest.raises(InvalidParameter, match="config="):
        lab.generate("a cat", model=str(ckpt))


def test_pickle_weights_are_refused_unless_allowed(tiny, lab, tmp_path):
    pickled = save_pickle_pipeline(tiny["sd15"], tmp_path / "pickled")
    with pytest.raises(UnsafeWeights, match="allow_pickle=True"):
        lab.generate("a cat", model=str(pickled), steps=2, size=(32, 32), seed=1)
    ok = lab.generate("a cat", model=str(pickled), steps=2, size=(32, 32), seed=1, allow_pickle=True)
    assert ok.image.size == (32, 32)
    ckpt = save_pickle_checkpoint(tiny["sd15"], tmp_path / "tiny.ckpt")
    from labkit.pipelines.loader import check_safe, resolve_model

    ref = resolve_model(str(ckpt), lab.catalog, config=str(tiny["sd15"]))
    with pytest.raises(UnsafeWeights, match=r"tiny\.ckpt"):
        check_safe(ref, ckpt.parent, allow_pickle=False)


def test_injected_oom_degrades_and_both_attempts_are_recorded(tiny, lab, monkeypatch, search_runs):
    import labkit.pipelines.calls as calls

    real = calls.run_image
    seen = []

    def flaky(pipe, **kw):
        seen.append(pipe)
        if len(seen) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pipe, **kw)

    monkeypatch.setattr(calls, "run_image", flaky)
    r = lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1)
    assert [a.outcome.split(":")[0] for a in r.attempts] == ["OutOfMemoryError", "ok"]
    first, second = r.attempts
    assert first.strategy == "cpu-full" and second.strategy == r.strategy.name != "cpu-full"
    assert r.image.size == (32, 32)
    run = {x.info.run_id: x for x in search_runs(lab.config.tracking_uri)}[r.run_id]
    attempts = json.loads(run.data.tags["labkit.attempts"])
    assert [a["strategy"] for a in attempts] == ["cpu-full", r.strategy.name]
    assert run.data.metrics["attempts"] == 2


def test_oom_on_every_strategy_is_one_clear_error_and_a_failed_run(tiny, lab, monkeypatch, search_runs):
    import labkit.pipelines.calls as calls

    def always(pipe, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(calls, "run_image", always)
    with pytest.raises(OutOfMemory) as err:
        lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1)
    assert "cpu-full" in str(err.value) and "lower the size" in str(err.value)
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.status == "FAILED" and run.data.tags["labkit.error_type"] == "OutOfMemory"


def test_the_rung_that_ran_out_of_memory_is_let_go_before_the_next_one_loads(tiny, lab, monkeypatch):
    """On a GPU the next rung must load into the memory the failed one held: nothing may keep that pipeline (or
    the failed call's tensors) alive while the cheaper rung loads. A cuBLAS allocation failure, which torch raises
    as a plain RuntimeError, counts as running out of memory."""
    import gc
    import weakref

    import labkit.pipelines.calls as calls
    import labkit.pipelines.loader as loader

    real_run, real_load = calls.run_image, loader.load_pipeline
    failed: list[weakref.ref] = []
    alive_at_next_load: list[bool] = []

    def run_image(pipe, **kw):
        if not failed:
            failed.append(weakref.ref(pipe))
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return real_run(pipe, **kw)

    def load_pipeline(ref, strategy, device, **kw):
        if failed:
            gc.collect()
            alive_at_next_load.append(failed[0]() is not None)
        return real_load(ref, strategy, device, **kw)

    monkeypatch.setattr(calls, "run_image", run_image)
    monkeypatch.setattr(loader, "load_pipeline", load_pipeline)
    r = lab.generate("a cat", model=str(tiny["sd15"]), steps=1, size=(32, 32), seed=1)
    assert [a.outcome.split(":")[0] for a in r.attempts] == ["OutOfMemoryError", "ok"]
    assert alive_at_next_load == [False]


def test_an_error_that_is_not_out_of_memory_fails_the_render_on_its_rung(tiny, lab, monkeypatch, search_runs):
    import labkit.pipelines.calls as calls

    def broken(pipe, **kw):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(calls, "run_image", broken)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        lab.generate("a cat", model=str(tiny["sd15"]), steps=1, size=(32, 32), seed=1)
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.status == "FAILED" and run.data.tags["labkit.failure.strategy"] == "cpu-full"


def test_oom_while_loading_degrades_too(tiny, lab, monkeypatch):
    import labkit.pipelines.loader as loader

    real = loader.load_pipeline
    calls_made = []

    def flaky(ref, strategy, device, **kw):
        calls_made.append(strategy.name)
        if len(calls_made) == 1:
            raise torch.OutOfMemoryError("out of memory while loading")
        return real(ref, strategy, device, **kw)

    monkeypatch.setattr(loader, "load_pipeline", flaky)
    r = lab.generate("a cat", model=str(tiny["sd15"]), steps=1, size=(32, 32), seed=1)
    assert r.attempts[0].stage == "load" and len(calls_made) == 2


def test_uncached_hub_model_fails_offline_without_touching_the_network(lab, monkeypatch, tmp_path):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("labkit tried to reach the network with HF_HUB_OFFLINE=1")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(ModelNotCached) as err:
        lab.generate("a cat", model="sdxl-turbo")
    msg = str(err.value)
    assert "hf download stabilityai/sdxl-turbo --revision 71153311d3dbb46851df1931d3ca6e939de83304" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_a_catalogued_model_that_fails_to_load_keeps_its_licence_on_the_failed_run(tiny, catalogued, project,
                                                                                   monkeypatch, search_runs):
    """The compliance report reads a failed render's model licence from its run: it said "(none)"."""
    import labkit.pipelines.loader as loader
    from labkit.lab import Lab

    def broken(*_a, **_k):
        raise OSError("the download was cut off")

    monkeypatch.setattr(loader, "load_pipeline", broken)
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    with pytest.raises(OSError):
        lab.generate("a red circle", model="tiny-sd15", steps=1, size=(32, 32))
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.status == "FAILED" and run.data.tags["model.id"] == "tiny-sd15"
    assert run.data.tags["model.licence"] == "apache-2.0"


def test_fallback_runs_the_next_catalogued_model_and_says_why(tiny, catalogued, project, tmp_path, monkeypatch):
    extra = tmp_path / "fallback.toml"
    extra.write_text(catalogued.read_text() + "\n".join([
        "[models.missing]", 'name = "missing"', f'source = "path:{tmp_path / "nowhere"}"', 'family = "sd15"',
        'tasks = ["txt2img", "img2img"]', 'licence = "apache-2.0"', "default_steps = 2", "default_guidance = 2.0",
        "default_size = [32, 32]", "min_size = 16", "max_size = 256", "size_multiple = 8",
        "default_frames = 0", "default_fps = 0", "max_frames = 0", 'fallbacks = ["tiny-sd15"]', ""]))
    monkeypatch.setenv("LABKIT_CATALOG", str(extra))
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    r = lab.generate("a cat", model="missing", seed=1)
    assert r.model["id"] == "tiny-sd15" and r.plan.model == "tiny-sd15"
    assert "missing" in r.fallback_reason


def test_bad_size_fails_before_any_run(tiny, lab, search_runs):
    with pytest.raises(InvalidParameter, match="multiple of 8"):
        lab.generate("a cat", model=str(tiny["sd15"]), size=(33, 32))
    assert search_runs(lab.config.tracking_uri) == []


def test_progress_and_cancel_keep_the_partial_output(tiny, lab, search_runs):
    seen = []
    cancel = threading.Event()

    def progress(step, total):
        seen.append((step, total))
        if step == 2:
            cancel.set()

    r = lab.generate("a cat", model=str(tiny["sd15"]), steps=6, size=(32, 32), seed=1, progress=progress,
                     cancel=cancel)
    assert seen[:2] == [(1, 6), (2, 6)] and len(seen) < 6
    assert r.status == "cancelled" and r.files and r.files[0].is_file()
    (run,) = search_runs(lab.config.tracking_uri)
    assert run.info.status == "KILLED" and run.data.tags["labkit.status"] == "cancelled"


def test_cli_generate_and_video_print_the_record(tiny, cli_env, project, input_image):
    from tests.integration.test_cli import labkit

    out = labkit("generate", "a red circle", "--model", str(tiny["sd15"]), "--steps", "2", "--size", "32x32",
                 "--seed", "4", "--n", "2", "--out", str(project / "out"), "--json", env=cli_env)
    rec = json.loads(out.stdout)
    assert rec["plan"]["seed"] == 4 and rec["plan"]["count"] == 2 and rec["run_id"]
    pngs = sorted((project / "out").glob("*.png"))
    assert len(pngs) == 2 and outputs.read_record(pngs[0])["run_id"] == rec["run_id"]
    out = labkit("video", "--image", str(input_image), "--model", str(tiny["svd"]), "--frames", "3", "--fps", "6",
                 "--steps", "2", "--size", "32x32", "--seed", "1", "--json", env=cli_env)
    rec = json.loads(out.stdout)
    assert {Path(f).suffix for f in rec["files"]} == {".mp4", ".gif"}
    bad = labkit("generate", "a cat", "--model", str(tiny["sd15"]), "--size", "30x32", env=cli_env, check=False)
    assert bad.returncode == 2 and "multiple of 8" in bad.stderr and "Traceback" not in bad.stderr


def test_bench_generate_reports_a_ratio_against_bare_diffusers(tiny, cli_env, project):
    from tests.integration.test_cli import labkit

    out = labkit("bench", "generate", "--model", str(tiny["sd15"]), "--steps", "2", "--size", "32x32",
                 "--repeat", "2", "--json", "--root", str(project), env=cli_env)
    result = json.loads(out.stdout)
    assert result["baseline"] == "bare diffusers call"
    assert result["ratio"] == pytest.approx(result["subject_s"] / result["baseline_s"])
    assert result["extra"]["strategy"] == "cpu-full" and result["extra"]["steps"] == 2
    assert 0 < result["extra"]["outside_call_ms"] < result["subject_s"] * 1000  # a part of the tracked render


def test_text_to_video_through_an_image_to_video_model(tiny, project, search_runs):
    (project / "labkit.toml").write_text(f'[lab]\ndefault_image_model = "{tiny["sd15"]}"\n')
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    r = lab.video("a red circle moving right", model=str(tiny["svd"]), frames=3, fps=6, steps=2, size=(32, 32),
                  seed=9)
    assert r.plan.task == "img2vid" and r.plan.image.endswith(".png") and len(r.frames) == 3
    first = r.inputs[0]
    assert first["kind"] == "first_frame" and first["id"] == str(tiny["sd15"])
    assert outputs.read_record(r.plan.image)["run_id"] == first["run_id"]
    assert any(a.get("kind") == "first_frame" for a in r.record["provenance"]["assets"])
    runs = {x.info.run_id: x for x in search_runs(lab.config.tracking_uri)}
    assert runs[r.run_id].data.tags["labkit.first_frame_run"] == first["run_id"] and first["run_id"] in runs


def test_replay_reproduces_a_run_bit_for_bit(tiny, cli_env, project, search_runs):
    from tests.integration.test_cli import labkit

    out = labkit("generate", "a red circle", "--model", str(tiny["sd15"]), "--steps", "2", "--size", "32x32",
                 "--n", "2", "--json", env=cli_env)
    original = json.loads(out.stdout)["run_id"]
    again = labkit("replay", original, "--check", "--json", env=cli_env)
    check = json.loads(again.stdout)["check"]
    assert "Downloading artifacts" not in again.stderr  # no MLflow progress bar around the command's output
    assert check["identical"] and check["max_diff"] == 0 and len(check["files"]) == 2
    runs = {r.info.run_id: r for r in search_runs(f"sqlite:///{project}/mlruns/mlflow.db")}
    assert runs[check["replay_run"]].data.tags["labkit.replay_of"] == original

    # A tampered original is caught: the check fails with a non-zero exit.
    from PIL import Image

    png = next((Path(runs[original].info.artifact_uri.removeprefix("file://")) / "outputs").glob("*.png"))
    img = Image.open(png).convert("RGB")
    img.putpixel((0, 0), tuple(255 - v for v in img.getpixel((0, 0))))
    img.save(png)
    bad = labkit("replay", original, "--check", env=cli_env, check=False)
    assert bad.returncode == 1 and "DIFFERENT" in bad.stdout


def test_replay_of_an_unknown_run_is_a_clear_error(cli_env):
    from tests.integration.test_cli import labkit

    out = labkit("replay", "0123456789abcdef", env=cli_env, check=False)
    assert out.returncode == 2 and "No run '0123456789abcdef'" in out.stderr


def test_strict_mode_blocks_an_unlicensed_model_before_any_run(tiny, project, search_runs):
    from labkit.errors import ComplianceViolation

    lab = Lab(project, hardware=HardwareProfile.simulated(None), compliance_mode="strict")
    with pytest.raises(ComplianceViolation) as err:
        lab.generate("a cat", model=str(tiny["sd15"]), steps=2, size=(32, 32), seed=1)
    assert "strict" in str(err.value) and str(tiny["sd15"]) in str(err.value)
    assert search_runs(lab.config.tracking_uri) == []


def test_open_mode_blocks_a_non_commercial_model(tiny, catalogued, project, tmp_path, monkeypatch):
    from labkit.errors import ComplianceViolation

    nc = tmp_path / "nc.toml"
    nc.write_text('[models.tiny-sd15]\nlicence = "cc-by-nc-4.0"\n')  # merged over the first file, key by key
    monkeypatch.setenv("LABKIT_CATALOG", os.pathsep.join([str(catalogued), str(nc)]))
    research = Lab(project, hardware=HardwareProfile.simulated(None))
    r = research.generate("a cat", model="tiny-sd15", seed=1)
    assert r.record["provenance"]["terms"]["commercial"] is False and "non-commercial" in r.record["terms"]
    assert "non-commercial" in outputs.read_png_record(r.files[0])["terms"]
    assert "Output terms" in __import__("PIL.Image").Image.open(r.files[0]).text["parameters"]
    opened = Lab(project, hardware=HardwareProfile.simulated(None), compliance_mode="open")
    with pytest.raises(ComplianceViolation, match="cc-by-nc-4.0"):
        opened.generate("a cat", model="tiny-sd15", seed=1)


def test_cli_mode_flag(tiny, cli_env):
    from tests.integration.test_cli import labkit

    out = labkit("generate", "a cat", "--model", str(tiny["sd15"]), "--mode", "strict", env=cli_env, check=False)
    assert out.returncode == 2 and "strict" in out.stderr and "Traceback" not in out.stderr
    out = labkit("generate", "a cat", "--model", str(tiny["sd15"]), "--mode", "nonsense", env=cli_env, check=False)
    assert out.returncode == 2 and "nonsense" in out.stderr
