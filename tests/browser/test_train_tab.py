"""The Train tab in JupyterLab, driven in headless Chromium as a user would: type the dataset folder and check
its licences, start a toy LoRA, watch the loss plot redraw, run another cell while it trains, stop it, resume
it and see it finish with its validation grid — then find both runs in MLflow (the stopped one KILLED with a
checkpoint, the resumed one FINISHED). A screenshot is kept.

Uses the JupyterLab and Chromium fixtures of test_jupyterlab.py (same needs: the `chromium` package and
`playwright`; without them the test fails under CI and skips elsewhere).
"""

from __future__ import annotations

import re

import pytest

from tests.browser.test_jupyterlab import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    browser_bin,
    chromium_page,
    jupyter,
    open_and_run_all,
)

NOTEBOOK = "train_tab.ipynb"
# Enough steps that Stop lands mid-run (about 20 s of training on one CPU thread), few enough to finish quickly.
SETTINGS = dict(steps=400, batch_size=2, rank=4, resolution=32, learning_rate=2e-3, checkpoint_every=0,
                validate_every=200, sampling_steps=2)


def _write_notebook(project) -> None:
    import nbformat

    cells = [
        "import torch\ntorch.set_num_threads(1)\n"
        "from labkit import Lab, panels\nfrom labkit.hardware import HardwareProfile\n"
        "from labkit.toyworld.data import write_dataset\n"
        "write_dataset('hexagons', 8, seed=0, n_objects=(1,), shapes=('hexagon',), licence='CC-BY-NC-4.0')\n"
        "lab = Lab(hardware=HardwareProfile.simulated(None))",
        f"panels.lab(lab, train={SETTINGS!r})",
        "answers = globals().get('answers', 0) + 1\nf'the kernel answered {answers}'",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(project / NOTEBOOK))


@pytest.mark.browser
def test_train_tab_in_jupyterlab_starts_plots_stops_and_resumes(browser_bin, jupyter, project, lab):  # noqa: F811
    _write_notebook(project)
    base, token = jupyter
    shot, failure = ARTIFACTS / "jupyterlab-train-tab.png", ARTIFACTS / "jupyterlab-train-tab-failure.png"

    with chromium_page(browser_bin, failure) as page:
        open_and_run_all(page, base, token, NOTEBOOK)
        panel = page.locator(".labkit-train")
        panel.wait_for(state="attached")                   # the last cell showed the tabs
        page.locator(".lm-TabBar-tab", has_text=re.compile(r"^Train$")).click()
        panel.wait_for(state="visible")

        # The dataset, typed as a user would, and its licences.
        folder = panel.locator("input[placeholder^='folder with images']")
        folder.fill(str(project / "hexagons"))
        panel.locator("button", has_text="Check").click()
        panel.get_by_text("8 images, each with a caption").wait_for()
        assert "cc-by-nc-4.0" in panel.inner_text()

        # Start: the loss plot appears, then is redrawn as the run goes.
        status = panel.locator(".labkit-train-status")
        panel.locator("button", has_text="Start").click()
        plot = panel.locator("img.labkit-loss-plot")
        plot.wait_for(state="visible")
        first_src = plot.get_attribute("src")
        page.wait_for_function("([el, src]) => el.getAttribute('src') !== src",
                               arg=[plot.element_handle(), first_src])
        assert "training: step" in status.inner_text()
        # The run goes on a background thread: meanwhile the kernel runs another cell.
        page.locator(".jp-CodeCell").nth(2).locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        page.get_by_text("the kernel answered 2").wait_for(timeout=30_000)
        assert "training: step" in status.inner_text()
        run_id = panel.locator(".labkit-run-id input")
        page.wait_for_function("el => /^[0-9a-f]{32}$/.test(el.value)", arg=run_id.element_handle())
        stopped_run = run_id.input_value()

        # Stop: the run ends at the next step with a checkpoint.
        panel.locator("button", has_text="Stop").click()
        status.get_by_text("interrupted at step").wait_for()
        stopped_at = int(re.search(r"interrupted at step (\d+) of 400", status.inner_text()).group(1))
        assert 0 < stopped_at < 400
        assert run_id.input_value() == stopped_run

        # Resume: it goes on from the checkpoint to the end.
        panel.locator("button", has_text="Resume").click()
        status.get_by_text("finished: 400 steps").wait_for(timeout=300_000)
        resumed_run = run_id.input_value()
        assert re.fullmatch(r"[0-9a-f]{32}", resumed_run) and resumed_run != stopped_run
        assert panel.locator(".labkit-error").count() == 0
        panel.locator("img.labkit-validation-grid").wait_for(state="visible")
        assert "Validation at step 400" in panel.inner_text()
        page.screenshot(path=str(shot), full_page=True)

    runs = {r.run_id: r for r in lab.runs(10)}
    assert runs[stopped_run].status == "KILLED"
    assert runs[stopped_run].tags["labkit.train_status"] == "interrupted"
    assert runs[resumed_run].status == "FINISHED"
    assert runs[resumed_run].tags["labkit.resumed_at_step"] == str(stopped_at)
    assert (project / "training" / "lora-hexagons" / "model").is_dir()
