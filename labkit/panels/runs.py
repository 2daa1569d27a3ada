"""The Runs panel: recent runs as a table, several side by side, their timings, research notes."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.panels.common import Panel, Worker, image_widget, table_html

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.tracking.compare import RunSummary

COLUMNS = ("run", "name", "status", "job", "model", "seed", "steps", "size", "total_s", "note")


def runs_panel(lab: Lab, *, n: int = 20, background: bool = False) -> Panel:
    """The Runs panel for `lab`: the experiment's `n` most recent runs.

    Select runs and press Compare to see their images side by side, captioned with the plan
    params that differ between them, a table of their params with the differing rows highlighted,
    and their timings plotted. Write a note and press Add note to attach it (Markdown, MLflow's
    own note, so the MLflow UI shows it too) to each selected run — or to the experiment when none
    is selected. Notes of the experiment and of the selected runs are shown below.

    Controls: refresh, cleaned_up (runs of dead processes ended KILLED when the store opened), table, select,
    compare, comparison, images, plot, note_text, add_note, notes, error, log, worker.
    """
    import ipywidgets as widgets

    from labkit.plan import check_int

    check_int("n", n, lo=1, hi=10_000)
    c: dict[str, Any] = {
        "refresh": widgets.Button(description="Refresh", icon="refresh"),
        "table": widgets.HTML(),
        "cleaned_up": widgets.HTML(),  # runs whose process died, which opening the store ended KILLED
        "select": widgets.SelectMultiple(options=[], rows=8, layout=widgets.Layout(width="640px")),
        "compare": widgets.Button(description="Compare", button_style="primary", icon="columns"),
        "comparison": widgets.HTML(),
        "images": widgets.HBox([]),
        "plot": widgets.Image(value=b"", format="png", layout=widgets.Layout(display="none")),
        "note_text": widgets.Textarea(placeholder="A note in Markdown: what you tried, what you saw.",
                                      layout=widgets.Layout(width="640px", height="64px")),
        "add_note": widgets.Button(description="Add note", icon="sticky-note"),
        "notes": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    c["images"].add_class("labkit-compare-images")
    worker = Worker([c["refresh"], c["compare"], c["add_note"]], c["error"], c["log"], background=background)
    c["worker"] = worker
    state: dict[str, list[RunSummary]] = {"runs": []}

    def refresh() -> None:
        runs = lab.runs(n)
        state["runs"] = runs
        c["table"].value = (table_html([_row(r) for r in runs], COLUMNS) if runs
                            else "<i>No runs yet in this experiment.</i>")
        c["cleaned_up"].value = "".join(
            f"<div>Ended KILLED: <code>{html.escape(d['run_id'][:8])}</code> {html.escape(d['name'])} "
            f"(its process {html.escape(d['pid'])} on {html.escape(d['host'])} died without closing it)</div>"
            for d in lab.cleaned_up)
        selected = set(c["select"].value)
        c["select"].options = [(_label(r), r.run_id) for r in runs]
        c["select"].value = tuple(r.run_id for r in runs if r.run_id in selected)
        show_notes()

    def show_notes() -> None:
        parts = []
        exp_note = lab.notes()
        if exp_note:
            parts.append(f"<b>Experiment note</b><pre style='white-space:pre-wrap'>{html.escape(exp_note)}</pre>")
        by_id = {r.run_id: r for r in state["runs"]}
        for rid in c["select"].value:
            note = lab.notes(rid)
            if note:
                name = by_id[rid].name if rid in by_id else rid
                parts.append(f"<b>Note on {html.escape(name)}</b> <code>{rid[:8]}</code>"
                             f"<pre style='white-space:pre-wrap'>{html.escape(note)}</pre>")
        c["notes"].value = "".join(parts)

    def compare() -> None:
        ids = list(c["select"].value)
        if not ids:
            raise InvalidParameter("No runs selected.", value=ids, fix="select one or more runs in the list.")
        cmp = lab.compare(ids)
        c["comparison"].value = (f"<b>Differing</b>: {html.escape(', '.join(cmp.differing) or 'nothing')}"
                                 + cmp.html())
        tiles = []
        for run in cmp.runs:
            pics = [image_widget(p) for p in (run.images or [f for f in run.clips if f.suffix == '.gif'])[:4]]
            caption = widgets.HTML(f"<code>{run.run_id[:8]}</code><br>{html.escape(cmp.caption(run))}")
            tiles.append(widgets.VBox([*pics, caption]))
        c["images"].children = tuple(tiles)
        c["plot"].value = cmp.png()
        c["plot"].layout.display = None
        show_notes()

    def add_note() -> None:
        text = c["note_text"].value.strip()
        if not text:
            raise InvalidParameter("The note is empty.", value=text, fix="write the note in the box above.")
        ids = list(c["select"].value)
        if ids:
            for rid in ids:
                lab.note(text, rid)
        else:
            lab.note(text, experiment=True)
        c["note_text"].value = ""
        refresh()

    c["refresh"].on_click(lambda _: worker.start(refresh))
    c["compare"].on_click(lambda _: worker.start(compare))
    c["add_note"].on_click(lambda _: worker.start(add_note))
    c["select"].observe(lambda _: show_notes() if not worker.running else None, names="value")
    worker.start(refresh)

    widget = widgets.VBox([
        widgets.HTML(f"<b>Runs</b> — the latest {n} runs of experiment <code>{html.escape(lab.config.experiment)}"
                     "</code>; select several and press Compare."),
        c["refresh"], c["cleaned_up"], c["table"], c["select"], c["compare"], c["error"], c["images"],
        c["comparison"], c["plot"],
        widgets.HTML("<b>Research notes</b> — added to the selected runs, or to the experiment."),
        c["note_text"], c["add_note"], c["notes"], c["log"],
    ])
    widget.add_class("labkit-runs")
    return Panel(widget, c)


def _label(run: RunSummary) -> str:
    start = run.start.strftime("%Y-%m-%d %H:%M") if run.start else ""
    return f"{run.run_id[:8]}  {start}  {run.status.lower()}  {run.name}"[:120]


def _row(run: RunSummary) -> dict[str, Any]:
    p = run.params
    size = f"{p['plan.width']}x{p['plan.height']}" if p.get("plan.width") else ""
    return {"run": run.run_id[:8], "name": run.name, "status": run.status, "job": run.job, "model": run.model,
            "seed": p.get("plan.seed", ""), "steps": p.get("plan.steps", ""), "size": size,
            "total_s": run.metrics.get("time.total_s"), "note": run.note.splitlines()[0][:60] if run.note else ""}
