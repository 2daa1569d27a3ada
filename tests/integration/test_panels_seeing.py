"""What a researcher sees in the panels (issue 27): pixel-true images, a status that is right after a render, an
error and a cancel, a plan banner and defaults that follow the model, a seed that changes only when asked, a
model menu that says what is not downloaded, a Runs table to tick runs in with thumbnails and a grid per run,
only the differing params, notes that say where they went, and a compliance table whose ids stay whole.

Real ipywidgets objects and the shipped toy world (64 px, 2 steps); values are set and buttons clicked through
the controls dict, as a user would."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from labkit import panels
from labkit.panels.common import PANEL_CSS, shown_scale
from labkit.plan import Plan

REQUEST = "a small red circle on the left"


@pytest.fixture(autouse=True)
def _store(migrated_store, one_thread):
    return migrated_store


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it: no catalogue hub model is downloaded."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _toy(lab, **kw):
    return panels.generate_panel(lab, prompt=REQUEST, model="toyworld", steps=2, background=False, **kw)


def _styles(widget) -> str:
    return " ".join(w.value for w in widget.children if "labkit-style" in w._dom_classes)


def test_images_are_shown_pixel_true_at_least_256_px(lab):
    widget, c = _toy(lab, seed=1)
    assert "image-rendering: pixelated" in _styles(widget)       # the panel carries the CSS
    c["render"].click()
    assert c["error"].value == ""
    [img] = c["images"].children
    assert Image.open(io.BytesIO(img.value)).size == (64, 64)   # the image itself is untouched
    assert (img.layout.width, img.layout.height) == ("256px", "256px")  # shown at exactly 4× ...
    assert "labkit-pixelated" in img._dom_classes                # ... with nearest-neighbour upscaling
    assert ".labkit-pixelated" in PANEL_CSS
    assert [shown_scale(w) for w in (32, 64, 100, 256, 512)] == [8, 4, 3, 1, 1]


def test_status_and_outputs_after_a_render_an_error_and_a_cancel(lab, search_runs):
    _, c = _toy(lab, seed=2)
    c["render"].click()
    assert c["status"].value.startswith("finished") and "Terms" in c["terms"].value and c["run_id"].value

    c["width"].value = 33   # an error: nothing of the last render stays beside the red box
    c["render"].click()
    assert "not a multiple of 8" in c["error"].value
    assert "loading" not in c["status"].value and "failed" in c["status"].value
    assert c["images"].children == () and c["terms"].value == "" and c["run_id"].value == ""

    # A cancel: pressed when the progress bar shows step 2 of 20, as a user would.
    c["width"].value, c["steps"].value = 64, 20
    def press_cancel_at_step_2(change):
        if change["new"] == 2:
            c["cancel"].click()

    c["progress"].observe(press_cancel_at_step_2, names="value")
    c["render"].click()
    c["progress"].unobserve(press_cancel_at_step_2, names="value")
    assert c["error"].value == ""
    assert c["status"].value.startswith("cancelled at step 2 of 20") and "loading" not in c["status"].value
    assert len(c["images"].children) == 1 and "labkit-cancelled-output" in c["images"]._dom_classes
    assert c["terms"].value == "" and "commercial" not in c["status"].value  # no output terms on a partial image
    runs = {r.info.run_id: r for r in search_runs(lab.config.tracking_uri)}
    assert runs[c["run_id"].value].info.status == "KILLED"

    c["steps"].value = 2    # the next render is a finished one again, with its terms
    c["render"].click()
    assert c["status"].value.startswith("finished") and "Terms" in c["terms"].value
    assert "labkit-cancelled-output" not in c["images"]._dom_classes


def test_a_model_change_moves_the_banner_and_defaults_and_plan_keeps_the_seed(lab, empty_hub_cache):
    _, c = panels.generate_panel(lab, background=False)
    c["request"].value = REQUEST
    c["seed"].value = 77
    c["plan"].click()
    assert c["error"].value == ""
    assert c["seed"].value == 77                           # Plan does not re-roll the seed
    c["plan"].click()
    assert c["seed"].value == 77
    assert c["model"].value == "toyworld" and (c["width"].value, c["height"].value) == (64, 64)
    assert "model <b>toyworld</b>, 64×64" in c["plan_view"].value

    c["model"].value = "sd-turbo"                          # the user switches the model
    assert (c["width"].value, c["height"].value, c["steps"].value, c["guidance"].value) == (512, 512, 1, 0.0)
    assert c["seed"].value == 77 and c["prompt"].value == REQUEST
    banner = c["plan_view"].value
    assert "model <b>sd-turbo</b>, 512×512, 1 step," in banner and "instead of toyworld" in banner
    assert "model <b>toyworld</b>" not in banner
    assert c["error"].value == ""

    c["steps"].value = 3                                   # the banner follows any edit of the fields
    assert "512×512, 3 steps" in c["plan_view"].value
    c["reroll"].click()                                    # only Re-roll changes the seed
    assert c["seed"].value != 77 and f"seed {c['seed'].value}" in c["plan_view"].value


def test_model_menu_says_not_downloaded_and_render_warns_first(lab, empty_hub_cache, monkeypatch, search_runs):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _, c = panels.generate_panel(lab, prompt=REQUEST, background=False)
    labels = {v: k for k, v in c["model"].options}
    assert labels["sd-turbo"].endswith(", not downloaded") and "not downloaded" not in labels["toyworld"]
    assert c["model_note"].value == ""
    c["model"].value = "sd-turbo"
    assert "not downloaded" in c["model_note"].value
    c["render"].click()                                    # online: a warning, and nothing starts yet
    assert "Render downloads it first" in c["status"].value and "press Render again" in c["status"].value
    assert c["error"].value == "" and search_runs(lab.config.tracking_uri) == []

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")              # offline: it cannot render, and the panel says why
    _, c = panels.generate_panel(lab, prompt=REQUEST, background=False)
    labels = {v: k for k, v in c["model"].options}
    assert labels["sd-turbo"].endswith("not downloaded (offline)")
    c["model"].value = "sd-turbo"
    assert "offline" in c["model_note"].value
    c["render"].click()
    assert "not downloaded and this machine is offline" in c["error"].value
    assert "Fix: download it once" in c["error"].value and "hf download stabilityai/sd-turbo" in c["error"].value
    assert "failed" in c["status"].value and "loading" not in c["status"].value
    assert search_runs(lab.config.tracking_uri) == []


def _toy_run(lab, *, seed: int, count: int, rationale: str):
    plan = Plan(prompt=REQUEST, model="toyworld", steps=2, seed=seed, count=count, rationale=rationale)
    return lab.render(lab.complete(plan))


def test_runs_tab_ticks_in_the_table_shows_thumbnails_a_grid_and_only_differing_params(lab):
    a = _toy_run(lab, seed=1, count=1, rationale="the first try")
    b = _toy_run(lab, seed=2, count=4, rationale="four of them this time")
    widget, c = panels.runs_panel(lab)
    assert "image-rendering: pixelated" in _styles(widget)
    assert list(c["checks"]) == [b.run_id, a.run_id]       # newest first, one tick box per row, no list box
    thumbs = [w for w in c["table"].children if "labkit-run-thumb" in w._dom_classes]
    assert len(thumbs) == 2 and all(w.layout.width == "64px" for w in thumbs)
    assert Image.open(io.BytesIO(thumbs[0].value)).size == (64, 64)

    c["checks"][a.run_id].value = True
    assert a.run_id[:8] in c["selection"].value and "1 selected" in c["selection"].value
    c["checks"][b.run_id].value = True
    c["compare"].click()
    assert c["error"].value == ""
    shown = c["comparison"].value
    assert "<b>Differing</b>: plan.count, plan.seed<" in shown      # the rationale differs too, but is not a param
    assert "rationale" not in shown and "prompt" not in shown      # same values are counted, not listed
    assert shown.count("labkit-differs") == 2 and "other plan params are the same" in shown

    tile_b, tile_a = c["images"].children                        # side by side, in the table's order (newest first)
    assert (tile_a.children[0].layout.width, "labkit-pixelated" in tile_a.children[0]._dom_classes) == ("256px", True)
    grid = tile_b.children[0]
    assert "labkit-image-grid" in grid._dom_classes and len(grid.children) == 4   # count 4: a 2×2 grid
    assert grid.layout.grid_template_columns == "repeat(2, max-content)"
    assert all(w.layout.width == "128px" for w in grid.children)
    assert "count=4, seed=2" in tile_b.children[-1].value

    png = Image.open(io.BytesIO(c["plot"].value))
    assert c["plot"].layout.width == f"{png.width}px" and c["plot"].layout.height == f"{png.height}px"  # native


def test_add_note_says_where_the_note_went(lab):
    run = _toy_run(lab, seed=3, count=1, rationale="")
    _, c = panels.runs_panel(lab)
    c["note_text"].value = "Nothing ticked: this is about the whole study."
    c["add_note"].click()
    assert lab.notes(experiment=True) == "Nothing ticked: this is about the whole study."
    status = c["note_status"].value
    assert "No run ticked" in status and f"the experiment <code>{lab.config.experiment}</code>" in status
    c["checks"][run.run_id].value = True
    c["note_text"].value = "This one."
    c["add_note"].click()
    assert lab.notes(run.run_id) == "This one."
    assert re.search(rf"Note added to 1 run\(s\): <code>{run.run_id[:8]}</code>", c["note_status"].value)


def test_compliance_table_is_compact_and_keeps_licence_ids_whole(lab):
    widget, c = panels.compliance_panel(lab)
    table = c["models"].value
    assert 'class="labkit-table labkit-compact"' in table and ".labkit-compact" in _styles(widget)
    licence_cell = re.search(r"<td style='([^']*)'>sai-nc-community</td>", table)
    assert licence_cell and "white-space:nowrap" in licence_cell.group(1)
    why_cells = re.findall(r"<td style='([^']*)'>[^<]*</td></tr>", table)   # the last column: the reasons
    assert why_cells and not any("nowrap" in s for s in why_cells)          # long reasons still wrap
