"""`labkit.panels.lab()`: every panel in one set of tabs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from labkit.panels.common import Panel

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab

TITLES = {"generate": "Generate", "video": "Video", "train": "Train", "runs": "Runs", "hardware": "Hardware",
          "compliance": "Compliance"}


def lab(lab: Lab | None = None, *, model: str | None = None, video_model: str | None = None,
        train: Mapping[str, Any] | None = None, background: bool = True, **generate: Any) -> Panel:
    """All panels in tabs: Generate, Video, Train, Runs, Hardware, Compliance.

    `lab` defaults to `labkit.Lab()` (the project found from the working directory); `model` and the
    other keyword arguments go to the Generate panel, `video_model` to the Video panel, `train` (a dict of
    starting values: data, steps, …) to the Train panel. Controls: {"generate": {...}, "video": {...},
    "train": {...}, "runs": {...}, "hardware": {...}, "compliance": {...}, "tabs": the Tab widget}.
    """
    import ipywidgets as widgets

    from labkit.panels.compliance import compliance_panel
    from labkit.panels.generate import generate_panel
    from labkit.panels.hardware import hardware_panel
    from labkit.panels.runs import runs_panel
    from labkit.panels.train import train_panel
    from labkit.panels.video import video_panel

    if lab is None:
        from labkit.lab import Lab

        lab = Lab()
    panels = {
        "generate": generate_panel(lab, model=model, background=background, **generate),
        "video": video_panel(lab, model=video_model, background=background),
        "train": train_panel(lab, background=background, **dict(train or {})),
        "runs": runs_panel(lab),
        "hardware": hardware_panel(lab),
        "compliance": compliance_panel(lab),
    }
    tabs = widgets.Tab(children=[p.widget for p in panels.values()])
    for i, key in enumerate(panels):
        tabs.set_title(i, TITLES[key])
    # The Runs tab lists runs as they were when it was built: refresh it whenever it is opened.
    runs_refresh = panels["runs"].controls["refresh"]
    tabs.observe(lambda ch: runs_refresh.click() if ch["new"] == list(panels).index("runs") else None,
                 names="selected_index")
    controls: dict[str, Any] = {key: p.controls for key, p in panels.items()}
    controls["tabs"] = tabs
    return Panel(tabs, controls)
