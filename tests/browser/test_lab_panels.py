"""The shipped `10_lab_panels` notebook in JupyterLab, driven in headless Chromium as a researcher would (issue 27):
render, then an error, then a cancel in the Generate tab — the status and the outputs are right each time; switch
the model and see the plan banner and the defaults follow; tick two runs in the Runs tab and see their images side
by side with only the differing params listed. Screenshots of each step are kept as test artifacts.

Uses the JupyterLab and Chromium fixtures of test_jupyterlab.py (same needs: the `chromium` package and
`playwright`; without them the test fails under CI and skips elsewhere). The toy world, 64 px, few steps.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.test_jupyterlab import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    REPO,
    browser_bin,
    chromium_page,
    jupyter,
    open_and_run_all,
)

NOTEBOOK = "10_lab_panels.ipynb"
REQUEST = "a small red circle on the left"


def _prepare(project, lab):
    """The shipped notebook with this test's parameters, and two earlier toy renders for the Runs tab."""
    import papermill

    from labkit.plan import Plan

    papermill.execute_notebook(str(REPO / "notebooks" / NOTEBOOK), str(project / NOTEBOOK),
                               parameters={"steps": 2, "root": str(project)}, prepare_only=True,
                               kernel_name="python3", progress_bar=False)
    runs = []
    for seed, count, why in ((1, 1, "one first"), (2, 4, "then four")):
        plan = Plan(prompt=REQUEST, model="toyworld", steps=2, seed=seed, count=count, rationale=why)
        runs.append(lab.render(lab.complete(plan)).run_id)
    return runs


def _set(field, value) -> None:
    """Type into an ipywidgets number field and commit it (it syncs on Enter)."""
    field.fill(str(value))
    field.press("Enter")


@pytest.mark.browser
def test_lab_panels_render_error_cancel_model_switch_and_runs_compare(browser_bin, jupyter, project, lab):  # noqa: F811
    one, four = _prepare(project, lab)
    base, token = jupyter
    with chromium_page(browser_bin, ARTIFACTS / "jupyterlab-panels-failure.png") as page:

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"jupyterlab-panels-{name}.png"), full_page=True)

        open_and_run_all(page, base, token, NOTEBOOK)
        gen = page.locator(".labkit-generate")
        gen.wait_for(state="visible")                      # the last cell showed the tabs, Generate first
        status, terms = gen.locator(".labkit-status"), gen.locator(".labkit-terms")
        images = gen.locator(".labkit-images img")
        field = {name: gen.locator(f".labkit-field-{name} input") for name in ("width", "steps", "seed")}

        # Plan: the fields fill in; the seed stays what it was.
        seed = field["seed"].input_value()
        gen.locator("textarea").first.fill(REQUEST)
        gen.locator("button", has_text="Plan").click()
        banner = gen.locator(".labkit-plan-banner")
        banner.get_by_text("Plan by rules").wait_for()
        assert field["seed"].input_value() == seed
        assert "model toyworld, 64×64" in banner.inner_text()

        # 1. Render: a finished image, pixel-true at 256 px, with its terms.
        _set(field["steps"], 2)
        gen.locator("button", has_text="Render").click()
        status.get_by_text(re.compile(r"^finished")).wait_for()
        assert images.count() == 1
        box = images.first.bounding_box()
        assert box["width"] >= 256 and box["height"] >= 256
        assert images.first.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
        assert "Terms" in terms.inner_text()
        shot("1-render")

        # 2. An error: the red box with its fix, the status says it failed, no outputs of the last run.
        _set(field["width"], 33)
        gen.locator("button", has_text="Render").click()
        gen.locator(".labkit-error").wait_for(state="visible")
        assert "not a multiple of 8" in gen.locator(".labkit-error").inner_text()
        assert "failed" in status.inner_text() and "loading" not in status.inner_text()
        assert images.count() == 0 and terms.inner_text().strip() == ""
        shot("2-error")

        # 3. A cancel mid-render: marked as cancelled, no output terms.
        _set(field["width"], 64)
        _set(field["steps"], 500)
        gen.locator("button", has_text="Render").click()
        status.get_by_text(re.compile(r"^step \d+ of 500")).wait_for()
        gen.locator("button", has_text="Cancel").click()
        status.get_by_text(re.compile(r"^cancelled at step \d+ of 500")).wait_for()
        assert gen.locator(".labkit-error").count() == 0
        assert gen.locator(".labkit-cancelled-output img").count() == 1
        assert "Terms" not in terms.inner_text() and "commercial" not in gen.inner_text()
        shot("3-cancel")

        # 4. Another model: the banner and the size, steps and guidance defaults follow; the seed stays.
        menu = gen.locator("select").first                # the model menu (the controller is a combobox)
        labels = menu.evaluate("s => [...s.options].map(o => o.text)")   # spaces come as U+00A0
        [turbo] = [t for t in labels if t.replace("\xa0", " ").startswith("sd-turbo — ")]
        menu.select_option(label=turbo)
        banner.get_by_text("model sd-turbo, 512×512, 1 step").wait_for()
        assert "instead of toyworld" in banner.inner_text()
        assert (field["width"].input_value(), field["steps"].input_value()) == ("512", "1")
        assert field["seed"].input_value() == seed
        shot("4-model")

        # 5. The Runs tab: tick two runs in the table, Compare: their images side by side, only what differs.
        page.locator(".lm-TabBar-tab", has_text=re.compile(r"^Runs$")).click()
        runs = page.locator(".labkit-runs")
        # Opening the tab refreshes it: two runs when the tabs were built, four now (with the render and
        # the cancelled one above); tick only in the refreshed table.
        runs.locator(".labkit-run-check").nth(3).wait_for()
        runs.locator(f".labkit-run-{four} input").check()
        runs.locator(f".labkit-run-{one} input").check()
        runs.get_by_text("2 selected").wait_for()
        assert runs.locator("img.labkit-run-thumb").count() >= 2
        runs.locator("button", has_text="Compare").click()
        tiles = runs.locator(".labkit-compare-tile")
        tiles.nth(1).wait_for()
        assert tiles.count() == 2
        left, right = tiles.nth(0).bounding_box(), tiles.nth(1).bounding_box()
        assert right["x"] >= left["x"] + left["width"] and abs(right["y"] - left["y"]) < 5   # side by side
        assert tiles.nth(0).locator("img").count() == 4 and tiles.nth(1).locator("img").count() == 1
        compared = runs.locator(".labkit-comparison").inner_text()
        assert "Differing: plan.count, plan.seed" in compared
        assert "rationale" not in compared and "prompt" not in compared
        plot = runs.locator("img.labkit-compare-plot")
        natural = plot.evaluate("img => [img.naturalWidth, img.getBoundingClientRect().width]")
        assert abs(natural[0] - natural[1]) < 2               # the figure at its own size, not stretched
        shot("5-runs")
