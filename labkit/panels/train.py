"""The Train panel: LoRA and DreamBooth from a notebook — a dataset folder and its licences, the key settings,
Start / Stop / Resume, a live loss plot, the latest validation grid and the run's id."""

from __future__ import annotations

import html
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter
from labkit.panels.common import Panel, Worker, action_style, labelled, shown_scale, style_widget, table_html

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.training.engine import TrainResult, TrainState

KINDS = {"LoRA": "lora", "DreamBooth": "dreambooth"}
#: The loss plot is redrawn at most this often (seconds) while a run goes; always at its end.
PLOT_EVERY_S = 1.0
#: Settings whose starting value is the recipe's default, and follow the kind while left unchanged.
RECIPE_DEFAULTS = ("steps", "batch_size", "learning_rate", "rank", "checkpoint_every")


def _defaults(kind: str) -> dict[str, Any]:
    """The recipe's defaults of the settings the panel shows (LoraTrainConfig's or DreamBoothConfig's; the
    number of class images is DreamBooth's either way)."""
    import dataclasses

    from labkit.training.dreambooth import DreamBoothConfig
    from labkit.training.lora import LoraTrainConfig

    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    db = defaults(DreamBoothConfig)
    chosen = db if kind == "dreambooth" else defaults(LoraTrainConfig)
    return {**{k: chosen[k] for k in RECIPE_DEFAULTS}, "num_class_images": db["num_class_images"]}


def train_panel(lab: Lab, *, kind: str = "lora", data: str | None = None, output: str | None = None,
                base: str = "toyworld", steps: int | None = None, rank: int | None = None,
                learning_rate: float | None = None, resolution: int | None = None, batch_size: int | None = None,
                seed: int = 0, checkpoint_every: int | None = None, validate_every: int = 0,
                validation_prompts: Sequence[str] = (), sampling_steps: int | None = None, token: str = "sks",
                class_prompt: str | None = None, prior_preservation: bool = True,
                num_class_images: int | None = None, background: bool = True) -> Panel:
    """The Train panel for `lab`: train a LoRA or DreamBooth-LoRA adapter.

    Name the dataset folder (an imagefolder with `metadata.jsonl`: file name, caption, licence per image) and
    press Check for its licence breakdown and the compliance mode's verdict (every image is opened too). Set
    the key settings — base model, output folder (empty: `training/<kind>-<dataset>` in the project), steps,
    rank, learning rate, resolution (0: the base model's), batch size, seed, checkpoint and validation
    intervals (validation prompts one a line; none given: the dataset's first caption), sampling steps of the
    validation renders (0: the base model's), and for DreamBooth the
    identifier token, the class prompt (empty: each caption without the token), prior preservation and the
    number of class images — then press Start.

    The run goes on a background thread (the kernel stays free): a progress bar and the step, the loss plot
    (redrawn about once a second), the latest validation grid and the MLflow run id follow it. Stop ends it
    cleanly at the next step — the engine's Ctrl-C path: a checkpoint at that step, the run marked KILLED with
    `labkit.train_status=interrupted` — and Resume continues from the newest checkpoint in the output folder
    (with the same settings; on a CPU the result equals an uninterrupted run's). Start refuses an output folder
    that already holds checkpoints (Resume it, or choose another). A bad value shows here with its fix.

    The keyword arguments set the starting values (None: the recipe's default). Controls: kind, data, check,
    breakdown, base, output, steps, rank, learning_rate, resolution, batch_size, seed, checkpoint_every,
    validate_every, validation_prompts, sampling_steps, token, class_prompt, prior_preservation,
    num_class_images, dreambooth (the box of DreamBooth's settings), start, stop, resume, progress, status,
    run_id, plot, grid, grid_caption, notes, error, log, worker, history (the (step, loss) points plotted).
    """
    import ipywidgets as widgets

    from labkit.lab_args import _check_str_list
    from labkit.plan import check_int, check_number, check_text

    if kind not in KINDS.values():
        raise InvalidParameter(f"Unknown training kind {kind!r}.", value=kind,
                               fix=f"use one of {list(KINDS.values())}.")
    for name, value in (("data", data), ("output", output), ("class_prompt", class_prompt)):
        check_text(name, value, optional=True)
    check_text("base", base, nonempty=True)
    check_text("token", token)
    for name, value in (("steps", steps), ("rank", rank), ("resolution", resolution), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every), ("sampling_steps", sampling_steps),
                        ("num_class_images", num_class_images)):
        check_int(name, value, optional=True)
    check_int("seed", seed)
    check_int("validate_every", validate_every)
    check_number("learning_rate", learning_rate, optional=True, example="1e-3")
    _check_str_list("validation_prompts", validation_prompts)  # a lone string is refused, as by the Lab API
    defaults = _defaults(kind)
    given = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "rank": rank,
             "checkpoint_every": checkpoint_every, "num_class_images": num_class_images}
    start_values = {k: defaults[k] if v is None else v for k, v in given.items()}

    small = widgets.Layout(width="110px")
    wide = widgets.Layout(width="480px")
    c: dict[str, Any] = {
        "kind": widgets.ToggleButtons(options=list(KINDS.items()), value=kind),
        "data": widgets.Text(value=data or "", placeholder="folder with images and metadata.jsonl", layout=wide),
        "check": widgets.Button(description="Check", icon="check"),
        "breakdown": widgets.HTML(),
        "base": widgets.Text(value=base, layout=wide),
        "output": widgets.Text(value=output or "", placeholder="empty: training/<kind>-<dataset> in the project",
                               layout=wide),
        "steps": widgets.IntText(value=start_values["steps"], layout=small),
        "rank": widgets.IntText(value=start_values["rank"], layout=small),
        "learning_rate": widgets.FloatText(value=start_values["learning_rate"], layout=small),
        "resolution": widgets.IntText(value=resolution or 0, layout=small),
        "batch_size": widgets.IntText(value=start_values["batch_size"], layout=small),
        "seed": widgets.IntText(value=seed, layout=small),
        "checkpoint_every": widgets.IntText(value=start_values["checkpoint_every"], layout=small),
        "validate_every": widgets.IntText(value=validate_every, layout=small),
        "validation_prompts": widgets.Textarea(value="\n".join(validation_prompts),
                                               placeholder="one prompt a line (empty: the dataset's first caption)",
                                               layout=widgets.Layout(width="480px", height="48px")),
        "sampling_steps": widgets.IntText(value=sampling_steps or 0, layout=small),
        "token": widgets.Text(value=token, layout=small),
        "class_prompt": widgets.Text(value=class_prompt or "", placeholder="empty: each caption without the token",
                                     layout=wide),
        "prior_preservation": widgets.Checkbox(value=prior_preservation, indent=False),
        "num_class_images": widgets.IntText(value=start_values["num_class_images"], layout=small),
        "start": widgets.Button(description="Start", button_style="primary", icon="play"),
        "stop": widgets.Button(description="Stop", icon="stop", disabled=True),
        "resume": widgets.Button(description="Resume", icon="forward"),
        "progress": widgets.IntProgress(value=0, min=0, max=1, description="steps"),
        "status": widgets.HTML(),
        "run_id": widgets.Text(description="run id", disabled=True, layout=wide),
        "plot": widgets.Image(value=b"", format="png", layout=widgets.Layout(display="none")),
        "grid": widgets.Image(value=b"", format="png", layout=widgets.Layout(display="none")),
        "grid_caption": widgets.HTML(),
        "notes": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    c["run_id"].add_class("labkit-run-id")
    c["plot"].add_class("labkit-loss-plot")
    c["grid"].add_class("labkit-validation-grid")
    c["grid"].add_class("labkit-pixelated")
    c["status"].add_class("labkit-train-status")
    worker = Worker([c["start"], c["resume"], c["check"]], c["error"], c["log"], background=background,
                    cancel=c["stop"], status=c["status"])
    c["worker"] = worker
    history: list[tuple[int, float]] = []
    c["history"] = history
    shown: dict[str, Any] = {"plot_t": 0.0, "grid": None, "resumed_at": [], "points": {}}

    # -- the dataset ------------------------------------------------------------------------------

    def folder() -> str:
        value = c["data"].value.strip()
        if not value:
            raise InvalidParameter("No dataset folder given.", value=value,
                                   fix="type the path of a folder with images and a metadata.jsonl "
                                       "(file_name, text, licence per line).")
        return value

    def check() -> list[dict[str, Any]]:
        """The dataset checked (every image opens, every item has a caption) and its licence breakdown shown."""
        from labkit.compliance import dataset_breakdown
        from labkit.training.lora import check_dataset

        path = folder()
        c["breakdown"].value = ""
        records = check_dataset(path)
        b = dataset_breakdown(path)
        verdict = b.check(lab.compliance)
        decisions = [{"group": d.asset.id, "licence": d.licence_label, "action": d.action,
                      "why": "; ".join(d.reasons)} for d in verdict.decisions]
        c["breakdown"].value = (
            f"<b>{html.escape(b.name)}</b>: {b.total} images, each with a caption and readable"
            + table_html(b.table())
            + (f"without a licence ({len(b.missing)}): {html.escape(', '.join(b.missing[:20]))}<br>" if b.missing
               else "")
            + f"<b>Training on it implies</b>: {html.escape(b.terms.text)}<br>"
            + f"<b>Mode {html.escape(verdict.mode)}</b>: {html.escape(verdict.action)}"
            + table_html(decisions, cell_style=action_style))
        return records

    # -- the settings -----------------------------------------------------------------------------

    def output_dir() -> Path:
        value = c["output"].value.strip()
        if value:
            return Path(value).expanduser()
        out = lab.config.root / "training" / f"{c['kind'].value}-{Path(folder()).expanduser().resolve().name}"
        c["output"].value = str(out)  # Resume (and the user) see where it went
        return out

    def config(kind: str, resume: bool):
        from labkit.training.dreambooth import DreamBoothConfig
        from labkit.training.lora import LoraTrainConfig

        records = check()
        prompts = tuple(p.strip() for p in c["validation_prompts"].value.splitlines() if p.strip())
        if c["validate_every"].value and not prompts:
            prompts = (str(records[0]["text"]),)
        settings = dict(
            data=folder(), output_dir=output_dir(), base=c["base"].value.strip(), steps=c["steps"].value,
            rank=c["rank"].value, learning_rate=c["learning_rate"].value, resolution=c["resolution"].value or None,
            batch_size=c["batch_size"].value, seed=c["seed"].value, checkpoint_every=c["checkpoint_every"].value,
            validate_every=c["validate_every"].value, validation_prompts=prompts,
            sampling_steps=c["sampling_steps"].value or None, resume="latest" if resume else None)
        if kind == "dreambooth":
            return DreamBoothConfig(**settings, token=c["token"].value.strip(),
                                    class_prompt=c["class_prompt"].value.strip() or None,
                                    prior_preservation=c["prior_preservation"].value,
                                    num_class_images=c["num_class_images"].value)
        return LoraTrainConfig(**settings)

    # -- the run ----------------------------------------------------------------------------------

    def show_plot(steps: int) -> None:
        if history:
            c["plot"].value = loss_png(history, steps, shown["resumed_at"])
            c["plot"].layout.display = None
        shown["plot_t"] = time.monotonic()

    def show_grid(out: Path, step: int | None = None) -> None:
        """The validation grid of `step` (None: the newest in `out/validation`), when there is one not shown yet."""
        folder_ = out / "validation"
        if step is None:
            found = sorted(folder_.glob("step-*.png")) if folder_.is_dir() else []
            path = found[-1] if found else None
        else:
            path = folder_ / f"step-{step:06d}.png"
        if path is None or not path.is_file() or path == shown["grid"]:
            return
        from PIL import Image

        with Image.open(path) as im:
            width, height = im.size
        k = shown_scale(width)  # toy grids are small: shown at least 256 pixels wide, at a whole-number scale
        c["grid"].value = path.read_bytes()
        c["grid"].layout.width, c["grid"].layout.height = f"{width * k}px", f"{height * k}px"
        c["grid"].layout.display = None
        shown["grid"] = path
        c["grid_caption"].value = (f"<b>Validation at step {int(path.stem.removeprefix('step-'))}</b>: each prompt × "
                                   "seed, rows alternating with the adapter and without it (the base model).")

    def on_step(state: TrainState) -> None:
        history.append((state.step, float(state.loss) if state.loss is not None else float("nan")))
        run = getattr(state.trainer, "run", None)
        if run is not None and c["run_id"].value != run.run_id:
            c["run_id"].value = run.run_id
        c["progress"].max = max(state.steps, 1)
        c["progress"].value = min(state.step, state.steps)
        if state.step == state.steps or time.monotonic() - shown["plot_t"] >= PLOT_EVERY_S:
            loss = "" if state.loss is None else f", loss {state.loss:.4f}"
            c["status"].value = f"training: step {state.step} of {state.steps}{loss}"
            show_plot(state.steps)
        if state.trainer is not None:
            show_grid(Path(state.trainer.config.output_dir), state.step)
            if not c["notes"].value:
                c["notes"].value = _identifier_note(state.trainer.task)
        if worker.cancel_event.is_set():
            # The engine's clean stop: a checkpoint at this step, the run marked interrupted.
            raise KeyboardInterrupt("stopped from the Train panel")

    def train(resume: bool) -> None:
        from labkit.training.engine import list_checkpoints, read_state, resolve_resume

        kind = c["kind"].value  # what this job trains, whatever the menu says meanwhile
        cfg = config(kind, resume)
        if resume and not list_checkpoints(cfg.output_dir):
            raise InvalidParameter(
                f"Nothing to resume: there is no checkpoint in {str(Path(cfg.output_dir) / 'checkpoints')!r}.",
                value=str(cfg.output_dir), fix="set the output folder to the one of the run to continue (its "
                                               "checkpoints/ are there), or press Start for a fresh run.")
        cfg.validate()
        c["notes"].value = ""
        if resume:
            ckpt = resolve_resume(cfg)
            at = int(ckpt.name.rsplit("-", 1)[-1]) if ckpt is not None else 0
            # the plot goes on from the points this panel drew for the output folder, up to the checkpoint
            history[:] = [p for p in shown["points"].get(str(cfg.output_dir), []) if p[0] <= at]
            shown["resumed_at"] = [*[m for m in shown["resumed_at"] if m < at], at]
        else:
            old = list_checkpoints(cfg.output_dir)
            if old:
                state = read_state(old[-1])
                done = state["step"] >= int((state.get("config") or {}).get("steps") or 0) > 0
                raise InvalidParameter(
                    f"The output folder {str(cfg.output_dir)!r} already holds checkpoints of an earlier "
                    + ("finished run" if done else "run") + f" (the newest: {old[-1].name}).",
                    value=str(cfg.output_dir),
                    fix=("give another output folder, or remove this one." if done else
                         "press Resume to continue that run, or give another output folder (or remove this one)."))
            del history[:]
            shown["resumed_at"] = []
            shown["grid"] = None
            c["grid"].layout.display = "none"
            c["grid_caption"].value = ""
        c["run_id"].value = ""
        c["progress"].max, c["progress"].value = max(cfg.steps, 1), 0
        c["status"].value = (f"loading {html.escape(cfg.base)}…" + (" (then drawing the class images)"
                                                                  if kind == "dreambooth" else ""))
        show_grid(Path(cfg.output_dir))
        try:
            result = run_recipe(kind, cfg)
        finally:  # what a later Resume in this folder plots first
            shown["points"][str(cfg.output_dir)] = list(history)
        show_plot(cfg.steps)
        show_grid(Path(cfg.output_dir))
        c["run_id"].value = result.run_id or c["run_id"].value
        c["progress"].value = min(result.step, c["progress"].max)
        c["status"].value = _result_line(result, cfg.steps)
        c["log"].append_stdout(f"run {result.run_id}: {kind} {result.status} at step {result.step} of "
                               f"{cfg.steps} in {cfg.output_dir}\n")

    def run_recipe(kind: str, cfg) -> TrainResult:
        if kind == "dreambooth":
            from labkit.training.dreambooth import train_dreambooth

            return train_dreambooth(lab, cfg, callbacks=[on_step])
        from labkit.training.lora import train_lora

        return train_lora(lab, cfg, callbacks=[on_step])

    def kind_changed(change: dict[str, Any]) -> None:
        old, new = _defaults(change["old"]), _defaults(change["new"])
        for name in RECIPE_DEFAULTS:
            if c[name].value == old[name]:  # left at the recipe's default: follow the new recipe's
                c[name].value = new[name]
        c["dreambooth"].layout.display = None if change["new"] == "dreambooth" else "none"

    c["check"].on_click(lambda _: worker.start(check))
    c["start"].on_click(lambda _: worker.start(lambda: train(resume=False)))
    c["resume"].on_click(lambda _: worker.start(lambda: train(resume=True)))
    c["stop"].on_click(lambda _: worker.cancel_event.set())

    c["dreambooth"] = widgets.VBox([
        labelled("token", c["token"]), labelled("class prompt", c["class_prompt"]),
        labelled("prior preservation", c["prior_preservation"], "140px"),
        labelled("class images", c["num_class_images"])],
        layout=widgets.Layout(display=None if kind == "dreambooth" else "none"))
    c["kind"].observe(kind_changed, names="value")
    numbers = widgets.GridBox(
        [labelled(label, c[name]) for label, name in (
            ("steps", "steps"), ("rank", "rank"), ("learning rate", "learning_rate"), ("resolution", "resolution"),
            ("batch size", "batch_size"), ("seed", "seed"), ("checkpoint every", "checkpoint_every"),
            ("validate every", "validate_every"), ("sampling steps", "sampling_steps"))],
        layout=widgets.Layout(grid_template_columns="repeat(3, 240px)"))
    widget = widgets.VBox([
        style_widget(),
        widgets.HTML("<b>Train</b> — a LoRA or DreamBooth adapter from an image folder; the run goes in the "
                     "background, Stop keeps a checkpoint that Resume continues."),
        labelled("kind", c["kind"]), labelled("dataset", widgets.HBox([c["data"], c["check"]])), c["breakdown"],
        labelled("base model", c["base"]), labelled("output folder", c["output"]), numbers,
        labelled("validation", c["validation_prompts"]), c["dreambooth"],
        widgets.HBox([c["start"], c["stop"], c["resume"], c["progress"]]), c["status"], c["error"], c["notes"],
        c["run_id"], widgets.HBox([c["plot"], widgets.VBox([c["grid"], c["grid_caption"]])],
                                  layout=widgets.Layout(align_items="flex-start")), c["log"],
    ])
    widget.add_class("labkit-train")
    return Panel(widget, c)


def _identifier_note(task: Any) -> str:
    """DreamBooth's warning about an identifier that is not rare for the base's tokenizer (read from the task, not
    caught as a Python warning: `warnings.catch_warnings` is not safe off the main thread)."""
    ident = getattr(task, "identifier", None)
    if not isinstance(ident, dict) or not ident.get("warning"):
        return ""
    rarer = ", ".join(ident.get("suggestions") or []) or "none in this vocabulary"
    return (f"<div style='color:#8a6d00'>Warning: {html.escape(str(ident['warning']))}; rarer single-piece words: "
            f"{html.escape(rarer)}.</div>")


def _result_line(result: TrainResult, steps: int) -> str:
    if result.status == "finished":
        where = f"; adapter in <code>{html.escape(str(result.export_dir))}</code>" if result.export_dir else ""
        return f"finished: {result.step} steps in {result.wall_s:.0f} s{where}"
    ckpt = html.escape(result.checkpoint.name) if result.checkpoint else "none"
    return (f"interrupted at step {result.step} of {steps}: checkpoint <code>{ckpt}</code> kept; "
            "press Resume to continue")


def loss_png(points: Sequence[tuple[int, float]], steps: int, resumed_at: Sequence[int] = ()) -> bytes:
    """The loss curve as a PNG: each step's loss, its moving average, and a dashed line where the run resumed
    (matplotlib's Agg canvas: no pyplot, safe off the main thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    avg, smooth = [], None
    for y in ys:
        smooth = y if smooth is None or smooth != smooth else 0.9 * smooth + 0.1 * y
        avg.append(smooth)
    fig = Figure(figsize=(5.2, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, ys, color="#a9bcdc", lw=0.8, label="loss")
    ax.plot(xs, avg, color="#4c72b0", lw=1.6, label="moving average")
    for at in resumed_at:
        ax.axvline(at, color="#888888", ls="--", lw=0.8)
    ax.set_xlim(0, max(steps, xs[-1] if xs else 1))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"step {xs[-1] if xs else 0} of {steps}", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


__all__ = ["KINDS", "loss_png", "train_panel"]
