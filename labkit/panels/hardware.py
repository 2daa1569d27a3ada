"""The Hardware panel: this machine's profile and the memory strategy each model family gets."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labkit.panels.common import Panel, Worker, table_html

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab


def gpu_line(now: dict[str, Any]) -> str:
    """One line of HTML for `labkit.probes.gpu_now()`: the GPU's memory in use and its utilisation, or 'no GPU'."""
    import time

    stamp = time.strftime("%H:%M:%S")
    if not now.get("available"):
        return f"<b>GPU now</b>: no GPU ({html.escape(str(now.get('reason', '')).removeprefix('no GPU: '))})"
    used, total = now["used_gb"], now["total_gb"]
    parts = [f"{used:.2f} of {total:.1f} GB used ({100 * used / total:.0f} %)" if total else f"{used:.2f} GB used",
             f"{now['free_gb']:.2f} GB free"]
    if now.get("utilisation_pct") is not None:
        parts.append(f"utilisation {now['utilisation_pct']} %")
    if now.get("processes") is not None:
        parts.append(f"{now['processes']} process(es) holding memory")
    return (f"<b>GPU now</b>: {html.escape(str(now.get('name', 'GPU')))} — {', '.join(parts)} "
            f"<span style='color:#666'>({now.get('source')}, {stamp})</span>")


def hardware_panel(lab: Lab, *, background: bool = False, probe: Callable[[], dict[str, Any]] | None = None,
                   interval_s: float = 2.0) -> Panel:
    """The Hardware panel for `lab`: the profile (`lab.hardware`), the GPU's memory and utilisation now
    (`probe`, default `labkit.probes.gpu_now`; Refresh GPU reads it again, Auto-refresh every `interval_s`
    seconds while ticked), the strategy each model family starts from here with its named steps, and every
    family's starting strategy on every VRAM tier (the strategy table, `labkit doctor`), this machine's tier
    highlighted.

    Controls: refresh, summary, gpu, gpu_refresh, auto, this_machine, matrix, error, log, worker.
    """
    import threading

    import ipywidgets as widgets

    if probe is None:
        from labkit.probes import gpu_now as probe

    c: dict[str, Any] = {
        "refresh": widgets.Button(description="Refresh", icon="refresh"),
        "summary": widgets.HTML(),
        "gpu": widgets.HTML(),
        "gpu_refresh": widgets.Button(description="Refresh GPU", icon="refresh"),
        "auto": widgets.Checkbox(value=False, description=f"Auto-refresh every {interval_s:g} s", indent=False),
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
                     *(k for k in ("vae_tiling", "vae_slicing", "attention_slicing", "forward_chunking", "fuse_qkv",
                                   "channels_last", "compile", "compile_vae") if s.get(k))]
            if s.get("compile_mode") and s.get("compile"):
                steps.append(f"compile_mode={s['compile_mode']}")
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

    def show_gpu() -> None:
        try:
            c["gpu"].value = gpu_line(probe())
        except Exception as e:  # a probe that fails says so in the line; the panel keeps working
            c["gpu"].value = f"<b>GPU now</b>: cannot read ({html.escape(type(e).__name__)}: {html.escape(str(e))})"

    # Auto-refresh: one daemon thread while the box is ticked; unticking sets `stop` and it ends within a tick.
    state: dict[str, Any] = {"thread": None, "stop": threading.Event()}

    def loop(stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            show_gpu()

    def on_auto(change: dict[str, Any]) -> None:
        state["stop"].set()
        if state["thread"] is not None:
            state["thread"].join(timeout=interval_s + 1)
            state["thread"] = None
        if change["new"]:
            state["stop"] = threading.Event()
            state["thread"] = threading.Thread(target=loop, args=(state["stop"],), daemon=True,
                                               name="labkit-gpu-refresh")
            state["thread"].start()

    c["auto"].observe(on_auto, names="value")
    c["gpu_refresh"].on_click(lambda _: show_gpu())
    c["refresh"].on_click(lambda _: worker.start(refresh))
    show_gpu()
    worker.start(refresh)
    widget = widgets.VBox([widgets.HTML("<b>Hardware</b>"), c["summary"],
                           widgets.HBox([c["gpu_refresh"], c["auto"]]), c["gpu"], c["this_machine"], c["matrix"],
                           c["refresh"], c["error"], c["log"]])
    widget.add_class("labkit-hardware")
    return Panel(widget, c)
