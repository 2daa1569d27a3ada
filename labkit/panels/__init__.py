"""ipywidgets panels: the lab bench in a notebook, each a view over the `Lab` API.

Each builder takes a `Lab` and returns a `Panel` — a (widget, controls) pair: the widget to show
and a dict of its named controls, which tests (and scripts) set and click through::

    from labkit import Lab, panels
    lab = Lab()
    panel = panels.generate_panel(lab)        # shown when it is the last expression of a cell
    widget, controls = panel
    controls["request"].value = "a small red circle on the left"
    controls["plan"].click(); controls["render"].click()

- `generate_panel` — request and controller → the plan as editable fields → render, with
  progress, images, run id, output terms; the model menu marks each model against this machine,
  the compliance mode and whether its weights are downloaded.
- `video_panel` — a clip from a request, the last rendered image or an uploaded one.
- `train_panel` — LoRA or DreamBooth from a dataset folder (its licence breakdown first): Start / Stop /
  Resume, a live loss plot, the latest validation grid, the run id; training runs in the background.
- `runs_panel` — recent runs with thumbnails; tick several in the table to see them side by side
  with only the params that differ, and their timings plotted; research notes.
- `hardware_panel` — the profile and the memory strategy each model family gets.
- `compliance_panel` — the mode, the licence of every catalogue model, a dataset's breakdown.
- `lab()` — all of them in tabs.

Renders (Generate, Video) and training (Train) run on a background thread, so Cancel is heard and the notebook stays
usable; the quick jobs of the other panels run in the callback. Either way the panel's buttons are
disabled while a job runs, widgets are written only through trait assignment and
`Output.append_stdout` (safe from any thread, and from a comm subshell), and a `LabkitError` is
shown in the panel with its fix instead of being raised into the kernel. Images are shown
pixel-true (whole-number nearest-neighbour upscaling, at least 256 px wide: toy outputs are 64 px).
`background=False` makes a render run in the callback (what the tests use).

Importing this package imports no ipywidgets; each builder does.
"""

from __future__ import annotations

from labkit._lazy import lazy_exports

_EXPORTS = {
    "Panel": "labkit.panels.common",
    "generate_panel": "labkit.panels.generate",
    "video_panel": "labkit.panels.video",
    "train_panel": "labkit.panels.train",
    "runs_panel": "labkit.panels.runs",
    "hardware_panel": "labkit.panels.hardware",
    "compliance_panel": "labkit.panels.compliance",
    "lab": "labkit.panels.tabs",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
