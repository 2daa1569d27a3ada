"""The toy model that ships inside labkit: small, loaded like any catalogued model, and it draws what
held-out prompts ask for — the ground truth other tests lean on for quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import labkit

SHIPPED = Path(labkit.__file__).parent / "toyworld" / "model"


def test_shipped_weights_are_small_and_say_how_they_were_made():
    from labkit.catalog import Catalog
    from labkit.pipelines.loader import resolve_model
    from labkit.toyworld.model import weights_bytes

    assert 0 < weights_bytes(SHIPPED) <= 10_000_000
    index = json.loads((SHIPPED / "model_index.json").read_text())
    assert index["labkit"]["family"] == "toy" and index["labkit"]["trained"] is True
    card = (SHIPPED / "README.md").read_text()
    assert "license: cc0-1.0" in card and "labkit train toy-base" in card and "## Prompt adherence" in card
    ref = resolve_model("toyworld", Catalog.load())
    assert Path(ref.location).resolve() == SHIPPED.resolve() and ref.entry.licence.upper() == "CC0-1.0"


def test_shipped_model_draws_prompts_it_never_saw(offline):
    """A quick cut of `labkit eval toyworld`: 30 held-out prompts of each kind, with floors a little under
    what the shipped model measures on 200 (colour, size, position 100%, shape 99%, all correct 99%,
    two-object colours 90.5%) — issue 4's targets: colour 95, shape 90, position 90, all correct 85,
    two-object colours 60."""
    from diffusers import StableDiffusionPipeline

    from labkit.toyworld.train import adherence

    pipe = StableDiffusionPipeline.from_pretrained(SHIPPED)
    pipe.set_progress_bar_config(disable=True)
    rates = adherence(pipe, n=30, seed=11)
    print(rates)
    assert rates["colour"] >= 0.95 and rates["position"] >= 0.9 and rates["size"] >= 0.9, rates
    assert rates["shape"] >= 0.9 and rates["all_correct"] >= 0.85 and rates["two_colour"] >= 0.6, rates


def test_demo_renders_the_toy_world_offline(cli_env, project, search_runs):
    from labkit.outputs import read_record
    from tests.integration.test_cli import labkit as run_cli

    out = run_cli("demo", "--out", str(project / "demo-out"), env={**cli_env, "HF_HUB_OFFLINE": "1"})
    assert "Rendered with toyworld" in out.stdout
    pngs = sorted((project / "demo-out").glob("*.png"))
    assert len(pngs) == 4
    record = read_record(pngs[0])
    assert record["model"]["id"] == "toyworld" and record["model"]["licence"].upper() == "CC0-1.0"
    assert "commercial use allowed" in json.dumps(record["terms"])
    runs = search_runs(f"sqlite:///{project}/mlruns/mlflow.db")
    demo = next(r for r in runs if r.data.tags.get("labkit.job") == "demo")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == demo.info.run_id]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert (Path(demo.info.artifact_uri.removeprefix("file://")) / "demo-grid.png").is_file()


@pytest.mark.parametrize("prompt", ["a large blue square at the top"])
def test_replay_of_a_toy_render_gives_the_same_pixels(lab, prompt):
    from labkit.toyworld.detect import verdict

    first = lab.generate(prompt, seed=3)
    assert first.model["id"] == "toyworld" and first.image.size == (64, 64)
    seen = verdict(prompt, first.image)
    assert seen["colour"] and seen["position"], seen  # what the shipped model gets right every time
    again, check = lab.replay(first.run_id, check=True)
    assert check.identical and check.max_diff == 0
