"""The MLflow UI as a researcher opens it, through `labkit ui`, in headless Chromium: a project with three toy renders
and one tiny LoRA training run. The address `labkit ui` prints opens the experiment on its runs table (not the GenAI
overview); the compare page it prints for two renders shows both renders' images side by side; the training run
shows its loss chart and its validation grid at the step it was drawn. Screenshots are kept as test artifacts.

Uses the Chromium fixture of test_jupyterlab.py (same needs: the `chromium` package and `playwright`; without them
the test fails under CI and skips elsewhere).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.test_jupyterlab import ARTIFACTS, _free_port, browser_bin, chromium_page, stop  # noqa: F401  (fixture)

RENDERS = (("a red circle on the left", 1), ("a blue square on the right", 2), ("a green triangle", 3))
LORA_STEPS, VALIDATE_EVERY = 4, 2


@pytest.fixture
def study(migrated_store: Path, one_thread):
    """Three toy renders and a four-step toy LoRA (validation grids at steps 2 and 4) in the project's store."""
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.data import write_dataset
    from labkit.training.lora import LoraTrainConfig

    project = migrated_store
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    renders = [lab.generate(prompt, model="toyworld", seed=seed, steps=8) for prompt, seed in RENDERS]
    write_dataset(project / "data", 8, seed=0, n_objects=(1,), shapes=("hexagon",))
    trained = lab.train(LoraTrainConfig(
        data=project / "data", output_dir=project / "lora", steps=LORA_STEPS, batch_size=2, rank=4, resolution=32,
        validate_every=VALIDATE_EVERY, sampling_steps=2, validation_prompts=("a large red hexagon in the centre",),
        validation_seeds=(0, 1), checkpoint_every=0, log_every=1))
    assert trained.status == "finished"
    return {"project": project, "lab": lab, "renders": renders, "trained": trained}


@pytest.fixture
def labkit_ui(study, tmp_path: Path):
    """`labkit ui --compare RUN RUN` for the first two renders (short ids, as the Runs panel shows them), running;
    yields the addresses it printed: {"base", "runs", "compare"}."""
    port = _free_port()
    first, second = (r.run_id[:8] for r in study["renders"][:2])
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT")}
    env.update(LABKIT_ROOT=str(study["project"]), PYTHONPATH=os.pathsep.join(filter(None, (
        str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")))))
    log_path = tmp_path / "ui.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "labkit", "ui", "--port", str(port), "--compare", first, second],
                                cwd=study["project"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            text = log_path.read_text()
            found = dict(re.findall(r"^(Runs of experiment|Compare 2 runs)[^:]*: (\S+)$", text, re.M))
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200 and len(found) == 2:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"labkit ui did not start:\n{text[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "runs": found["Runs of experiment"], "compare": found["Compare 2 runs"]}
    finally:
        stop(proc, 30)


def _loaded_images(page, selector: str) -> list[tuple[str, int]]:
    """(src, natural width) of the images under `selector` that have loaded."""
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => e.complete && e.naturalWidth > 0).map(e => [e.src, e.naturalWidth])")


@pytest.mark.browser
def test_labkit_ui_opens_runs_compares_renders_and_shows_training(browser_bin, labkit_ui, study):  # noqa: F811
    lab, renders, trained = study["lab"], study["renders"], study["trained"]
    exp_id = lab.tracker.experiment_id()
    assert labkit_ui["runs"].startswith(f"{labkit_ui['base']}/#/experiments/{exp_id}/runs")
    assert all(r.run_id in labkit_ui["compare"] for r in renders[:2])  # the short ids, resolved
    with chromium_page(browser_bin, ARTIFACTS / "mlflow-ui-failure.png", height=1000, timeout_s=60) as page:
        # 1. The runs address: the runs table with every run by name, in Model training mode (no GenAI pages)
        page.goto(labkit_ui["runs"])
        for prompt, _ in RENDERS:
            page.get_by_text(f"txt2img: {prompt}", exact=True).wait_for()
        page.get_by_text(trained_name(lab, trained.run_id), exact=True).wait_for()
        assert f"/experiments/{exp_id}/runs" in page.url
        assert page.get_by_text("Model registry", exact=True).is_visible()  # the Model training side bar
        assert page.get_by_text("Evaluation runs", exact=True).count() == 0  # not the GenAI one
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-runs.png"))

        # 2. The compare address: the artifacts every run has, preview.png among them, one image per run
        page.goto(labkit_ui["compare"])
        page.get_by_text(f"txt2img: {RENDERS[1][0]}", exact=True).first.wait_for()
        preview = page.get_by_text("preview.png", exact=True)
        preview.scroll_into_view_if_needed()
        preview.dispatch_event("click")  # MLflow's panel layout covers the tree item for a pointer click
        page.wait_for_function("() => new Set([...document.images].filter(e => e.src.startsWith('blob:') "
                               "&& e.complete && e.naturalWidth === 64).map(e => e.src)).size >= 2")
        shown = {src for src, width in _loaded_images(page, "img") if src.startswith("blob:") and width == 64}
        assert len(shown) == 2  # the two renders' 64-pixel previews, side by side
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-compare.png"), full_page=True)

        # 3. The training run: its loss chart, and its validation grid at the last step it was drawn
        page.goto(f"{labkit_ui['base']}/#/experiments/{exp_id}/runs/{trained.run_id}/model-metrics"
                  f"?workflowType=machine_learning")
        page.get_by_text("loss", exact=True).wait_for()
        page.get_by_text(f"{trained_name(lab, trained.run_id)} (train/loss)", exact=True).wait_for()
        card_title = page.get_by_text("validation", exact=True)
        page.mouse.move(600, 600)
        for _ in range(30):  # the charts are drawn as they scroll into view: scroll down to the image card
            if card_title.count():
                break
            page.mouse.wheel(0, 500)
            page.wait_for_timeout(500)
        card_title.scroll_into_view_if_needed()
        card = page.locator("div").filter(has=card_title).filter(has=page.get_by_role("slider")).last
        track = card.locator("span.TRACK").bounding_box()  # the step slider starts at 0: move it to the end
        page.mouse.click(track["x"] + track["width"] - 1, track["y"] + track["height"] / 2)
        step = f"validation%2Bstep%2B{LORA_STEPS}%2B"
        page.wait_for_function("s => [...document.images].some(e => e.src.includes(s) && e.complete "
                               "&& e.naturalWidth > 0)", arg=step)
        assert card.get_by_role("slider").get_attribute("aria-valuenow") == str(LORA_STEPS)
        assert card.get_by_role("slider").get_attribute("aria-valuemin") == str(VALIDATE_EVERY)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-training.png"))
        card.locator(f"img[src*='{step}']").scroll_into_view_if_needed()  # below the run's params in the card
        card.screenshot(path=str(ARTIFACTS / "mlflow-ui-validation-card.png"))


def trained_name(lab, run_id: str) -> str:
    return lab.tracker.client.get_run(run_id).info.run_name
