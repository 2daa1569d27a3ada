"""The Compliance panel: the mode, the licence of every catalogue model, a dataset's licence breakdown."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.panels.common import Panel, Worker, compact_style, native_size_layout, style_widget, table_html

COMPACT = "labkit-table labkit-compact"

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab


def compliance_panel(lab: Lab, *, dataset: str | None = None, background: bool = False) -> Panel:
    """The Compliance panel for `lab`.

    Shows the lab's compliance mode and, for the mode chosen in the menu (the lab's by default —
    choosing another previews it, the lab's own mode does not change), what it decides for the
    licence of every catalogue model and why (a compact table; ids never wrap mid-token). Name a
    dataset folder (imagefolder layout with a `metadata.jsonl`) and press Breakdown for its licence
    counts, a chart, the items without a licence, the terms training on it implies and the mode's
    verdict. labkit records what licences say; it does not give legal advice.

    Controls: mode, mode_info, models, dataset, breakdown, chart, dataset_table, dataset_terms,
    error, log, worker.
    """
    import ipywidgets as widgets

    from labkit.compliance import DISCLAIMER, load_modes
    from labkit.plan import check_text

    check_text("dataset", dataset, optional=True)
    modes = load_modes()
    c: dict[str, Any] = {
        "mode": widgets.Dropdown(options=sorted(modes), value=lab.compliance.name, description="mode"),
        "mode_info": widgets.HTML(),
        "models": widgets.HTML(),
        "dataset": widgets.Text(value=dataset or "", placeholder="folder with images and metadata.jsonl",
                                layout=widgets.Layout(width="480px")),
        "breakdown": widgets.Button(description="Breakdown", icon="pie-chart"),
        "chart": widgets.Image(value=b"", format="png", layout=widgets.Layout(display="none")),
        "dataset_table": widgets.HTML(),
        "dataset_terms": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    worker = Worker([c["breakdown"]], c["error"], c["log"], background=background)
    c["worker"] = worker

    def show_models() -> None:
        mode = c["mode"].value
        note = "" if mode == lab.compliance.name else f" (previewing; the lab's mode is <b>{lab.compliance.name}</b>)"
        c["mode_info"].value = f"<b>Mode {html.escape(mode)}</b>{note}: {html.escape(modes[mode].description)}"
        verdict = lab.check_catalog(mode)
        rows = [{"model": d.asset.id, "licence": d.licence_label, "action": d.action,
                 "why": "; ".join(d.reasons)} for d in verdict.decisions]
        c["models"].value = "<b>Catalogue models</b>" + table_html(rows, cell_style=compact_style, css_class=COMPACT)

    def breakdown() -> None:
        from labkit.compliance import dataset_breakdown

        folder = c["dataset"].value.strip()
        if not folder:
            raise InvalidParameter("No dataset folder given.", value=folder,
                                   fix="type the path of a folder with images and a metadata.jsonl.")
        b = dataset_breakdown(folder)
        with tempfile.TemporaryDirectory(prefix="labkit-chart-") as tmp:
            c["chart"].value = b.chart(Path(tmp) / "breakdown.png").read_bytes()
        native_size_layout(c["chart"], c["chart"].value)
        c["chart"].layout.display = None
        verdict = b.check(c["mode"].value)
        c["dataset_table"].value = (f"<b>{html.escape(b.name)}</b>: {b.total} items" + table_html(b.table())
                                    + (f"<br>without a licence: {html.escape(', '.join(b.missing[:20]))}"
                                       if b.missing else ""))
        decisions = [{"group": d.asset.id, "licence": d.licence_label, "action": d.action,
                      "why": "; ".join(d.reasons)} for d in verdict.decisions]
        c["dataset_terms"].value = (f"<b>Training on it implies</b>: {html.escape(b.terms.text)}<br>"
                                    f"<b>Mode {html.escape(verdict.mode)}</b>: {verdict.action}"
                                    + table_html(decisions, cell_style=compact_style, css_class=COMPACT)
                                    + f"<p style='color:#666;font-size:smaller'>{html.escape(DISCLAIMER)}</p>")

    c["mode"].observe(lambda _: worker.start(show_models), names="value")
    c["breakdown"].on_click(lambda _: worker.start(breakdown))
    worker.start(show_models)
    widget = widgets.VBox([
        style_widget(), widgets.HTML("<b>Compliance</b>"), c["mode"], c["mode_info"], c["models"],
        widgets.HTML("<b>Dataset licences</b>"), widgets.HBox([c["dataset"], c["breakdown"]]), c["error"],
        c["chart"], c["dataset_table"], c["dataset_terms"], c["log"],
        widgets.HTML(f"<p style='color:#666;font-size:smaller'>{html.escape(DISCLAIMER)}</p>"),
    ])
    widget.add_class("labkit-compliance")
    return Panel(widget, c)
