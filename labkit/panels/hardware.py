"""The Hardware panel: this machine's profile and the memory strategy each model family gets."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from labkit.panels.common import Panel, Worker, table_html

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab


def hardware_panel(lab: Lab, *, background: bool = False) -> Panel:
    """The Hardware panel for `lab`: the profile (`lab.hardware`), the strategy each model family
    starts from here with its named steps, and every family's starting strategy on every VRAM tier
    (the strategy table, `labkit doctor`), this machine's tier highlighted.

    Controls: refresh, summary, this_machine, matrix, error, log, worker.
    """
    import ipywidgets as widgets

    c: dict[str, Any] = {
        "refresh": widgets.Button(description="Refresh", icon="refresh"),
        "summary": widgets.HTML(),
        "this_machine": widgets.HTML(),
        "matrix": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    worker = Worker([c["refresh"]], c["error"], c["log"], background=background)
    c["worker"] = worker

    def refresh() -> None:
        report = lab.doctor()
        hw = report["hardware"]
        lines = [f"<b>{html.escape(lab.hardware.summary())}</b>", f"tier: <code>{hw['tier']}</code>"]
        lines += [f"<span style='color:#666'>{html.escape(n)}</span>" for n in hw.get("notes", [])]
        c["summary"].value = "<br>".join(lines)
        tier = hw["tier"]
        rows = []
        for fam, name in report["this_machine"].items():
            s = report["strategies"][fam][tier]
            steps = [f"dtype={s['dtype']}", f"offload={s['offload']}",
                     *(k for k in ("vae_tiling", "vae_slicing", "attention_slicing", "forward_chunking",
                                   "channels_last", "compile") if s.get(k))]
            if s.get("decode_chunk_size"):
                steps.append(f"decode_chunk_size={s['decode_chunk_size']}")
            rows.append({"family": fam, "strategy": name, "device": s["device"],
                         "est. peak VRAM (GB)": s.get("est_peak_vram_gb"), "steps": ", ".join(steps)})
        c["this_machine"].value = "<b>On this machine</b>" + table_html(rows)
        tiers = list(next(iter(report["strategies"].values())).keys()) if report["strategies"] else []
        matrix = [{"family": fam, **{t: by_tier[t]["name"] for t in tiers}}
                  for fam, by_tier in report["strategies"].items()]

        def highlight(column: str, value: Any) -> str:
            return "background:#e6f0ff;font-weight:bold;" if column == tier else ""

        c["matrix"].value = ("<b>Starting strategy per VRAM tier (GB)</b>"
                             + table_html(matrix, ["family", *tiers], cell_style=highlight))

    c["refresh"].on_click(lambda _: worker.start(refresh))
    worker.start(refresh)
    widget = widgets.VBox([widgets.HTML("<b>Hardware</b>"), c["summary"], c["this_machine"], c["matrix"],
                           c["refresh"], c["error"], c["log"]])
    widget.add_class("labkit-hardware")
    return Panel(widget, c)
