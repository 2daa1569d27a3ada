"""The Generate panel: a request → the plan as editable fields → a render with its full record."""

from __future__ import annotations

import html
import random
from typing import TYPE_CHECKING, Any

from labkit.errors import LabkitError
from labkit.panels.common import Panel, Worker, ensure_option, error_html, image_widget, labelled, model_options

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.plan import Plan

CONTROLLERS = ["rules"]


def generate_panel(lab: Lab, *, request: str = "", prompt: str = "", model: str | None = None,
                   controller: str = "rules", steps: int | None = None, size: tuple[int, int] | None = None,
                   guidance: float | None = None, seed: int | None = None, count: int = 1,
                   background: bool = True) -> Panel:
    """The Generate panel for `lab`.

    Type a request and press Plan: the controller's plan fills the fields (model, prompt, negative
    prompt, size, steps, guidance, seed, count), which stay editable; Render renders what the fields
    say, with a progress bar per denoising step, then shows the images, the run id and the output
    terms. The model menu marks each catalogue model against this machine (fits / needs offload /
    too large) and the compliance mode (allowed / licence warns / blocked).

    The keyword arguments set the fields' starting values (open ones come from the model's
    catalogue entry); `model` may also be a local diffusers folder or a hub repo id.

    The Control section adds one ControlNet (SD 1.5 / SDXL / toy models): upload a control image (a photo, a
    drawing, a ready map, or OpenPose keypoints as .json), pick its kind, the ControlNet (catalogue id, folder or
    hub id; empty: the catalogue's for the kind and model) and the scale; Preview map shows the map the
    ControlNet will read, beside the upload.

    Controls: request, controller, plan, plan_view, model, prompt, negative_prompt, width, height,
    steps, guidance, seed, reroll, count, control_upload, control_kind, control_model, control_scale,
    control_preview, control_map, render, cancel, progress, status, images, run_id, terms, error, log;
    plus `worker` (its `wait()` returns when the running job is done).
    """
    import ipywidgets as widgets

    from labkit.plan import CONTROL_KINDS, MAX_SEED, Plan, check_int, check_number, check_size, check_text

    # The starting values are checked before any widget is built: a wrong type is named here, not
    # a TraitError from inside ipywidgets.
    check_text("request", request)
    check_text("prompt", prompt)
    check_text("model", model, optional=True, nonempty=True)
    check_text("controller", controller, nonempty=True)
    for name, value in (("steps", steps), ("seed", seed)):
        check_int(name, value, optional=True)
    check_int("count", count)
    check_number("guidance", guidance, optional=True)
    check_size("size", size)
    state: dict[str, Any] = {"planned": None, "result": None}
    layout = widgets.Layout(width="480px")
    c: dict[str, Any] = {
        "request": widgets.Textarea(value=request, placeholder="a small red circle on the left",
                                    layout=widgets.Layout(width="480px", height="56px")),
        "controller": widgets.Combobox(value=controller, options=CONTROLLERS, ensure_option=False,
                                       placeholder="rules | remote:URL#MODEL | local:MODEL"),
        "plan": widgets.Button(description="Plan", icon="list", tooltip="Ask the controller for a plan"),
        "plan_view": widgets.HTML(),
        "model": widgets.Dropdown(options=[], layout=layout),
        "prompt": widgets.Textarea(value=prompt, layout=widgets.Layout(width="480px", height="56px")),
        "negative_prompt": widgets.Text(layout=layout),
        "width": widgets.IntText(layout=widgets.Layout(width="90px")),
        "height": widgets.IntText(layout=widgets.Layout(width="90px")),
        "steps": widgets.IntText(layout=widgets.Layout(width="90px")),
        "guidance": widgets.FloatText(layout=widgets.Layout(width="90px")),
        "seed": widgets.IntText(layout=widgets.Layout(width="130px")),
        "reroll": widgets.Button(description="Re-roll", icon="random", tooltip="A new random seed",
                                 layout=widgets.Layout(width="90px")),
        "count": widgets.IntText(value=count, layout=widgets.Layout(width="90px")),
        "control_upload": widgets.FileUpload(accept="image/*,.json", multiple=False, description="Control image"),
        "control_kind": widgets.Dropdown(options=[("no control", ""), *((k, k) for k in CONTROL_KINDS)], value=""),
        "control_model": widgets.Text(placeholder="empty: the catalogue's for the kind; or a folder or hub id",
                                      layout=layout),
        "control_scale": widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="scale"),
        "control_preview": widgets.Button(description="Preview map", icon="eye"),
        "control_map": widgets.HBox([]),
        "render": widgets.Button(description="Render", button_style="primary", icon="play"),
        "cancel": widgets.Button(description="Cancel", icon="stop", disabled=True),
        "progress": widgets.IntProgress(value=0, min=0, max=1, description="steps"),
        "status": widgets.HTML(),
        "images": widgets.HBox([]),
        "run_id": widgets.Text(description="run id", disabled=True, layout=widgets.Layout(width="480px")),
        "terms": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    c["images"].add_class("labkit-images")
    c["run_id"].add_class("labkit-run-id")
    c["error"].add_class("labkit-error-box")
    worker = Worker([c["plan"], c["render"], c["reroll"], c["control_preview"]], c["error"], c["log"],
                    background=background,
                    cancel=c["cancel"], status=c["status"])
    c["worker"] = worker

    # The model menu, and the fields' starting values from the model's catalogue entry.
    start_model = model or lab.default_model("image")
    try:
        c["model"].options = model_options(lab.models("txt2img"), start_model)
    except LabkitError as e:  # a broken user catalogue: say so, keep the panel usable with the model given
        c["model"].options = [(start_model, start_model)]
        c["error"].value = error_html(e)
    c["model"].value = start_model
    try:
        filled = lab.complete(Plan(prompt=prompt, model=start_model), validate=False)
    except LabkitError as e:
        filled = Plan(prompt=prompt, model=start_model).resolve(None)
        c["error"].value = error_html(e)
    width, height = size if size else (filled.width, filled.height)
    _show_fields(c, filled.replace(width=width, height=height, steps=steps or filled.steps,
                                   guidance=filled.guidance if guidance is None else guidance,
                                   seed=filled.seed if seed is None else seed, count=count))

    def control() -> tuple:
        """The Control section as a plan's controls: () when no kind is chosen."""
        from labkit.errors import InvalidParameter
        from labkit.plan import ControlRef

        kind = c["control_kind"].value
        if not kind:
            return ()
        uploaded = c["control_upload"].value
        if not uploaded:
            raise InvalidParameter(f"The {kind} control has no image.", value=kind,
                                   fix="press 'Control image' and pick one (or choose 'no control').")
        item = uploaded[0] if isinstance(uploaded, (tuple, list)) else next(iter(uploaded.values()))
        path = lab.keep_input(bytes(item["content"]), item.get("name", "control.png"))
        return (ControlRef(kind, str(path), model=c["control_model"].value.strip() or None,
                           scale=float(c["control_scale"].value)),)

    def fields_plan() -> Plan:
        base = state["planned"] or Plan(prompt="")
        return base.replace(modality="image", frames=None, fps=None, prompt=c["prompt"].value,
                            negative_prompt=c["negative_prompt"].value, model=c["model"].value or None,
                            width=c["width"].value, height=c["height"].value, steps=c["steps"].value,
                            guidance=c["guidance"].value, seed=c["seed"].value, count=c["count"].value,
                            controls=control())

    def do_preview() -> None:
        from labkit.controls import control_map

        controls = control()
        if not controls:
            c["control_map"].children = ()
            return
        image, record = control_map(controls[0], c["width"].value, c["height"].value)
        source = controls[0].image
        shown = [image_widget(image, css_class="labkit-control-map")]
        if not source.endswith(".json"):
            shown.insert(0, image_widget(source))
        c["control_map"].children = tuple(shown)
        c["status"].value = f"{record['kind']} map {record['size'][0]}×{record['size'][1]}"

    def do_plan() -> None:
        request_text = c["request"].value.strip()
        if not request_text:
            from labkit.errors import InvalidParameter

            raise InvalidParameter("The request is empty.", value=request_text,
                                   fix="type what you want, e.g. 'a small red circle on the left'.")
        plan = lab.plan(request_text, controller=c["controller"].value.strip() or "rules")
        state["planned"] = plan
        c["plan_view"].value = _plan_html(plan)
        _show_fields(c, lab.complete(plan.replace(modality="image", frames=None, fps=None), validate=False))

    def do_render() -> None:
        if not c["prompt"].value.strip() and c["request"].value.strip() and state["planned"] is None:
            do_plan()  # Render straight from a request: plan it first, as `lab.ask` does
        plan = fields_plan()
        c["progress"].value = 0
        c["images"].children = ()
        c["run_id"].value = ""
        c["terms"].value = ""
        c["status"].value = "loading…"

        def progress(step: int, total: int) -> None:
            c["progress"].max = max(total, 1)
            c["progress"].value = min(step, total)
            c["status"].value = f"step {step} of {total}"

        result = lab.render(plan, progress=progress, cancel=worker.cancel_event)
        state["result"] = result
        c["images"].children = tuple(image_widget(im) for im in result.images)
        c["run_id"].value = result.run_id or ""
        c["terms"].value = _result_html(result)
        t = result.timings
        c["status"].value = (f"{result.status}: {len(result.images)} image(s) in {t.get('total_s', 0):.1f} s "
                             f"(load {t.get('load_s', 0):.1f} s) with {html.escape(result.model.get('id', ''))}")
        c["log"].append_stdout(f"run {result.run_id}: {result.plan.model} {result.plan.width}x{result.plan.height}, "
                               f"{result.plan.steps} steps, seed {result.plan.seed}, {result.status}\n")

    def on_model(change: dict[str, Any]) -> None:
        if change["new"] and state["planned"] is not None:
            state["planned"] = state["planned"].replace(model=change["new"])

    c["plan"].on_click(lambda _: worker.start(do_plan))
    c["render"].on_click(lambda _: worker.start(do_render))
    c["control_preview"].on_click(lambda _: worker.start(do_preview))
    c["cancel"].on_click(lambda _: worker.cancel_event.set())
    c["reroll"].on_click(lambda _: setattr(c["seed"], "value", random.SystemRandom().randint(0, MAX_SEED)))
    c["model"].observe(on_model, names="value")

    size_row = widgets.HBox([widgets.Label("size", layout=widgets.Layout(width="110px")), c["width"],
                             widgets.Label("×"), c["height"]])
    seed_row = widgets.HBox([widgets.Label("seed", layout=widgets.Layout(width="110px")), c["seed"], c["reroll"]])
    widget = widgets.VBox([
        widgets.HTML("<b>Generate</b> — type a request, press Plan, edit the plan, press Render."),
        labelled("request", c["request"]), labelled("controller", widgets.HBox([c["controller"], c["plan"]])),
        c["plan_view"], labelled("model", c["model"]), labelled("prompt", c["prompt"]),
        labelled("negative", c["negative_prompt"]), size_row, labelled("steps", c["steps"]),
        labelled("guidance", c["guidance"]), seed_row, labelled("count", c["count"]),
        widgets.HTML("<b>Control</b> — optional: a ControlNet steering composition (SD 1.5 / SDXL / toy)."),
        labelled("control", widgets.HBox([c["control_kind"], c["control_upload"], c["control_scale"]])),
        labelled("ControlNet", c["control_model"]), widgets.HBox([c["control_preview"], c["control_map"]]),
        widgets.HBox([c["render"], c["cancel"], c["progress"], c["status"]]), c["error"], c["images"],
        c["run_id"], c["terms"], c["log"],
    ])
    widget.add_class("labkit-generate")
    return Panel(widget, c)


def _show_fields(c: dict[str, Any], plan: Plan) -> None:
    """Put a (filled) plan's values into the editable fields."""
    ensure_option(c["model"], plan.model)
    c["prompt"].value = plan.prompt
    c["negative_prompt"].value = plan.negative_prompt
    for name in ("width", "height", "steps", "guidance", "seed", "count"):
        value = getattr(plan, name)
        if value is not None:
            c[name].value = value


def _plan_html(plan: Plan) -> str:
    ctrl = plan.controller
    who = html.escape(ctrl.name + (f" ({ctrl.model})" if ctrl.model else ""))
    lines = [f"<b>Plan</b> by {who}: {html.escape(plan.rationale or '')}"]
    if ctrl.fallback_reason:
        lines.append(f"<span style='color:#a06000'>fell back to rules: {html.escape(ctrl.fallback_reason)}</span>")
    if plan.modality == "video":
        lines.append("<span style='color:#a06000'>The controller planned a video: this panel renders its first "
                     "image; use the Video tab for the clip.</span>")
    return "<br>".join(lines)


def _result_html(result: Any) -> str:
    rec = result.record or {}
    parts = [f"<b>Terms</b>: {html.escape(rec.get('terms', ''))}"]
    compliance = (rec.get("provenance") or {}).get("compliance") or {}
    warned = [d for d in compliance.get("decisions", []) if d.get("action") == "warn"]
    for d in warned:
        parts.append(f"<span style='color:#a06000'>licence warning: {html.escape(d['asset']['id'])} "
                     f"({html.escape(str(d.get('licence')))}): {html.escape('; '.join(d.get('reasons', [])))}</span>")
    if result.fallback_reason:
        parts.append(f"<span style='color:#a06000'>ran {html.escape(result.model.get('id', ''))} instead: "
                     f"{html.escape(result.fallback_reason)}</span>")
    return "<br>".join(parts)
