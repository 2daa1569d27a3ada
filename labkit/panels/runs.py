"""The Runs panel: recent runs as a table, several side by side, their timings, research notes."""

from __future__ import annotations

import dataclasses
import html
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.panels.common import Panel, Worker, cell_text, image_grid, native_size_layout, style_widget, thumbnail_png

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.tracking.compare import Comparison, RunSummary

COLUMNS = ("run", "name", "status", "job", "model", "seed", "steps", "size", "total_s", "note")
#: Plan params that say why, not what: never listed as differing (every request words its rationale anew).
NOT_COMPARED = ("plan.rationale",)
THUMB_PX = 64


def runs_panel(lab: Lab, *, n: int = 20, background: bool = False) -> Panel:
    """The Runs panel for `lab`: the experiment's `n` most recent runs.

    The table lists them with a thumbnail of each run's first output; tick runs in the table and
    press Compare to see their images side by side (pixel-true; a run of several images as a grid),
    captioned with the plan params that differ between them, a table of only those params (the
    plan's rationale is not compared), and their timings plotted at the figure's own size. Write a
    note and press Add note to attach it (Markdown, MLflow's own note, so the MLflow UI shows it too)
    to each ticked run — or to the experiment when none is ticked; the panel says which it was.
    Notes of the experiment and of the ticked runs are shown below.

    Controls: refresh, cleaned_up (runs of dead processes ended KILLED when the store opened), table (the
    grid of rows), checks (run id → the row's Checkbox: tick to select), selection, compare, comparison,
    images, plot, note_text, add_note, note_status, notes, error, log, worker.
    """
    import ipywidgets as widgets

    from labkit.plan import check_int

    check_int("n", n, lo=1, hi=10_000)
    columns = ["28px", f"{THUMB_PX + 4}px", *(["max-content"] * len(COLUMNS))]
    c: dict[str, Any] = {
        "refresh": widgets.Button(description="Refresh", icon="refresh"),
        "table": widgets.GridBox([], layout=widgets.Layout(grid_template_columns=" ".join(columns),
                                                           grid_gap="2px 10px", align_items="center")),
        "checks": {},
        "selection": widgets.HTML(),
        "cleaned_up": widgets.HTML(),  # runs whose process died, which opening the store ended KILLED
        "compare": widgets.Button(description="Compare", button_style="primary", icon="columns"),
        "comparison": widgets.HTML(),
        "images": widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap", grid_gap="12px")),
        "plot": widgets.Image(value=b"", format="png", layout=widgets.Layout(display="none")),
        "note_text": widgets.Textarea(placeholder="A note in Markdown: what you tried, what you saw.",
                                      layout=widgets.Layout(width="640px", height="64px")),
        "add_note": widgets.Button(description="Add note", icon="sticky-note"),
        "note_status": widgets.HTML(),
        "notes": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    c["table"].add_class("labkit-runs-table")
    c["images"].add_class("labkit-compare-images")
    c["comparison"].add_class("labkit-comparison")
    c["plot"].add_class("labkit-compare-plot")
    c["note_status"].add_class("labkit-note-status")
    worker = Worker([c["refresh"], c["compare"], c["add_note"]], c["error"], c["log"], background=background)
    c["worker"] = worker
    state: dict[str, Any] = {"runs": [], "thumbs": {}}
    checks: dict[str, Any] = c["checks"]

    def selected() -> list[str]:
        return [rid for rid, box in checks.items() if box.value]

    def on_tick(_: Any = None) -> None:
        ids = selected()
        c["selection"].value = (f"{len(ids)} selected: " + ", ".join(f"<code>{r[:8]}</code>" for r in ids)
                                if ids else "<i>none selected: tick runs in the table</i>")
        if not worker.running:
            show_notes()

    def thumbnail(run: RunSummary):
        source = (run.images or [f for f in run.clips if f.suffix == ".gif"] or [None])[0]
        if source is None:
            return widgets.HTML("<span style='color:#999'>—</span>")
        if source not in state["thumbs"]:
            state["thumbs"][source] = thumbnail_png(source, THUMB_PX)
        w = widgets.Image(value=state["thumbs"][source], format="png",
                          layout=widgets.Layout(width=f"{THUMB_PX}px", height=f"{THUMB_PX}px", object_fit="contain"))
        w.add_class("labkit-pixelated")
        w.add_class("labkit-run-thumb")
        return w

    def refresh() -> None:
        runs = lab.runs(n)
        state["runs"] = runs
        was = set(selected())
        old = list(c["table"].children)
        checks.clear()
        cells: list[Any] = []
        if runs:
            cells += [widgets.HTML(""), widgets.HTML("")]
            cells += [widgets.HTML(f"<b>{html.escape(col)}</b>") for col in COLUMNS]
        for r in runs:
            box = widgets.Checkbox(value=r.run_id in was, indent=False, layout=widgets.Layout(width="24px"))
            box.add_class("labkit-run-check")
            box.add_class(f"labkit-run-{r.run_id}")
            box.observe(on_tick, names="value")
            checks[r.run_id] = box
            row = _row(r)
            cells += [box, thumbnail(r)]
            cells += [widgets.HTML(f"<span style='white-space:nowrap'>{html.escape(cell_text(row[col]))}</span>")
                      for col in COLUMNS]
        c["table"].children = tuple(cells)
        for w in old:  # the previous rows' widgets would otherwise live on in the kernel and the page
            w.close()
        if not runs:
            c["selection"].value = "<i>No runs yet in this experiment.</i>"
        else:
            on_tick()
        c["cleaned_up"].value = "".join(
            f"<div>Ended KILLED: <code>{html.escape(d['run_id'][:8])}</code> {html.escape(d['name'])} "
            f"(its process {html.escape(d['pid'])} on {html.escape(d['host'])} died without closing it)</div>"
            for d in lab.cleaned_up)
        show_notes()

    def show_notes() -> None:
        parts = []
        exp_note = lab.notes(experiment=True)
        if exp_note:
            parts.append(f"<b>Experiment note</b><pre style='white-space:pre-wrap'>{html.escape(exp_note)}</pre>")
        by_id = {r.run_id: r for r in state["runs"]}
        for rid in selected():
            note = lab.notes(rid)
            if note:
                name = by_id[rid].name if rid in by_id else rid
                parts.append(f"<b>Note on {html.escape(name)}</b> <code>{rid[:8]}</code>"
                             f"<pre style='white-space:pre-wrap'>{html.escape(note)}</pre>")
        c["notes"].value = "".join(parts)

    def compare() -> None:
        ids = selected()
        if not ids:
            raise InvalidParameter("No runs selected.", value=ids, fix="tick one or more runs in the table.")
        cmp = lab.compare(ids)
        cmp = dataclasses.replace(cmp, differing=tuple(k for k in cmp.differing if k not in NOT_COMPARED))
        c["comparison"].value = _differing_html(cmp)
        tiles = []
        for run in cmp.runs:
            shown = run.images[:4] or [f for f in run.clips if f.suffix == ".gif"][:1]
            pics = [image_grid(shown, css_class="labkit-compare-image")] if shown else [
                widgets.HTML("<i>no image</i>")]
            caption = widgets.HTML(f"<code>{run.run_id[:8]}</code> {html.escape(run.status.lower())}<br>"
                                   f"{html.escape(cmp.caption(run))}")
            tile = widgets.VBox([*pics, caption], layout=widgets.Layout(width="max-content"))
            tile.add_class("labkit-compare-tile")
            tiles.append(tile)
        old = list(c["images"].children)
        c["images"].children = tuple(tiles)
        for w in old:
            w.close()
        png = cmp.png()
        c["plot"].value = png
        native_size_layout(c["plot"], png)
        c["plot"].layout.display = None
        show_notes()

    def add_note() -> None:
        text = c["note_text"].value.strip()
        if not text:
            raise InvalidParameter("The note is empty.", value=text, fix="write the note in the box above.")
        ids = selected()
        if ids:
            for rid in ids:
                lab.note(text, rid)
            where = (f"Note added to {len(ids)} run(s): " + ", ".join(f"<code>{r[:8]}</code>" for r in ids))
        else:
            lab.note(text, experiment=True)
            where = (f"No run ticked: the note went to the experiment <code>{html.escape(lab.config.experiment)}"
                     "</code> (tick runs first to note them instead).")
        c["note_text"].value = ""
        refresh()
        c["note_status"].value = where

    c["refresh"].on_click(lambda _: worker.start(refresh))
    c["compare"].on_click(lambda _: worker.start(compare))
    c["add_note"].on_click(lambda _: worker.start(add_note))
    c["note_text"].observe(lambda _: setattr(c["note_status"], "value", ""), names="value")
    worker.start(refresh)

    widget = widgets.VBox([
        style_widget(),
        widgets.HTML(f"<b>Runs</b> — the latest {n} runs of experiment <code>{html.escape(lab.config.experiment)}"
                     "</code>; tick several and press Compare."),
        c["refresh"], c["cleaned_up"], c["table"], widgets.HBox([c["compare"], c["selection"]]), c["error"],
        c["images"], c["comparison"], c["plot"],
        widgets.HTML("<b>Research notes</b> — added to the ticked runs, or to the experiment."),
        c["note_text"], widgets.HBox([c["add_note"], c["note_status"]]), c["notes"], c["log"],
    ])
    widget.add_class("labkit-runs")
    return Panel(widget, c)


def _differing_html(cmp: Comparison) -> str:
    """Only the params that differ, one column per run; the ones every run shares are counted, not listed."""
    same = len(cmp.same)
    if not cmp.differing:
        return f"<b>Differing</b>: nothing — the {same} plan params are the same in every run."
    head = "".join(f"<th style='text-align:left;padding:2px 8px'><code>{r.run_id[:8]}</code></th>" for r in cmp.runs)
    rows = "".join(
        f"<tr class='labkit-differs'><td style='padding:2px 8px'>{html.escape(k.removeprefix('plan.'))}</td>"
        + "".join(f"<td style='padding:2px 8px'>{html.escape(str(r.params.get(k, '')))[:120]}</td>" for r in cmp.runs)
        + "</tr>" for k in cmp.differing)
    return (f"<b>Differing</b>: {html.escape(', '.join(cmp.differing))}"
            f"<table class='labkit-compare labkit-differing'><thead><tr><th style='text-align:left;padding:2px 8px'>"
            f"param</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
            f"<span style='color:#666'>{same} other plan params are the same in every run.</span>")




def _row(run: RunSummary) -> dict[str, Any]:
    p = run.params
    size = f"{p['plan.width']}x{p['plan.height']}" if p.get("plan.width") else ""
    return {"run": run.run_id[:8], "name": run.name, "status": run.status, "job": run.job, "model": run.model,
            "seed": p.get("plan.seed", ""), "steps": p.get("plan.steps", ""), "size": size,
            "total_s": run.metrics.get("time.total_s"), "note": run.note.splitlines()[0][:60] if run.note else ""}
