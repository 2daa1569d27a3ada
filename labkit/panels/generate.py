"""The Generate panel: a request → the plan as editable fields → a render with its full record."""

from __future__ import annotations

import html
import random
from typing import TYPE_CHECKING, Any

from labkit.errors import LabkitError
from labkit.panels.common import (
    Panel,
    Worker,
    download_command,
    download_note,
    downloaded,
    ensure_option,
    error_html,
    image_widget,
    labelled,
    model_options,
    render_or_cancelled,
    start_error,
    style_widget,
)

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
    say, with a progress bar per denoising step, then shows the images (pixel-true: whole-number
    nearest-neighbour upscaling, at least 256 px wide), the run id and the output terms. A cancelled
    render's images are marked as cancelled and carry no output terms; after an error or a cancel the
    status says so. The model menu marks each catalogue model against this machine (fits / needs
    offload / too large), the compliance mode (allowed / licence warns / blocked) and whether its
    weights are downloaded; Render warns before it would download a model (press again to go ahead)
    and refuses, with the fix, one that cannot be downloaded offline.

    Choosing another model resets size, steps and guidance to that model's defaults, and the plan
    banner follows the fields; the seed changes only when Re-roll is pressed (Plan keeps it unless
    the request names one).

    The keyword arguments set the fields' starting values (open ones come from the model's
    catalogue entry); `model` may also be a local diffusers folder or a hub repo id. A starting value
    Render would refuse (steps=0, count=0, a size off the model's grid) is kept in its field and the
    error box says why at once, as Render would.

    The Control section adds one ControlNet (SD 1.5 / SDXL / toy models): upload a control image (a photo, a
    drawing, a ready map, or OpenPose keypoints as .json), pick its kind, the ControlNet (catalogue id, folder or
    hub id; empty: the catalogue's for the kind and model) and the scale; Preview map shows the map the
    ControlNet will read, beside the upload.

    Controls: request, controller, plan, plan_view, model, model_note, prompt, negative_prompt, width, height,
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
    width, height = check_size("size", size)
    state: dict[str, Any] = {"planned": None, "result": None, "filling": False, "confirmed": None, "step": (0, 0),
                          "chosen": None}
    layout = widgets.Layout(width="480px")
    c: dict[str, Any] = {
        "request": widgets.Textarea(value=request, placeholder="a small red circle on the left",
                                    layout=widgets.Layout(width="480px", height="56px")),
        "controller": widgets.Combobox(value=controller, options=CONTROLLERS, ensure_option=False,
                                       placeholder="rules | remote:URL#MODEL | local:MODEL"),
        "plan": widgets.Button(description="Plan", icon="list", tooltip="Ask the controller for a plan"),
        "plan_view": widgets.HTML(),
        "model": widgets.Dropdown(options=[], layout=layout),
        "model_note": widgets.HTML(),
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
        "images": widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap", grid_gap="4px")),
        "run_id": widgets.Text(description="run id", disabled=True, layout=widgets.Layout(width="480px")),
        "terms": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    c["images"].add_class("labkit-images")
    c["plan_view"].add_class("labkit-plan-banner")
    c["status"].add_class("labkit-status")
    c["terms"].add_class("labkit-terms")
    c["model_note"].add_class("labkit-model-note")
    for name in ("model", "width", "height", "steps", "guidance", "seed"):
        c[name].add_class(f"labkit-field-{name}")
    c["run_id"].add_class("labkit-run-id")
    c["error"].add_class("labkit-error-box")
    worker = Worker([c["plan"], c["render"], c["reroll"], c["control_preview"]], c["error"], c["log"],
                    background=background,
                    cancel=c["cancel"], status=c["status"])
    c["worker"] = worker

    # The model menu, and the fields' starting values from the model's catalogue entry.
    from labkit.deps import offline

    start_model = model or lab.default_model("image")
    try:
        statuses = lab.models("txt2img")
        c["model"].options = model_options(statuses, start_model, here={s.id: downloaded(lab, s.id) for s in statuses},
                                           offline=offline())
    except LabkitError as e:  # a broken user catalogue: say so, keep the panel usable with the model given
        c["model"].options = [(start_model, start_model)]
        c["error"].value = error_html(e)
    state["filling"] = True
    c["model"].value = start_model
    state["filling"] = False
    # The values given stay as given (steps=0 shows 0, never the model's 20): one Render would refuse is said in
    # the error box at once, with the message and fix Render gives; the open ones come from the model's entry.
    start = Plan(prompt=prompt, model=start_model, width=width, height=height, steps=steps, guidance=guidance,
                 seed=seed, count=count)
    try:
        filled = lab.complete(start, validate=False)
    except LabkitError as e:
        filled = start.resolve(None)
        c["error"].value = error_html(e)
    _show_fields(c, filled)
    c["error"].value = c["error"].value or start_error(lab, filled)

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
        filled = lab.complete(plan.replace(modality="image", frames=None, fps=None), validate=False)
        if plan.seed is None:  # the seed is the user's until they re-roll it (or the request names one)
            filled = filled.replace(seed=c["seed"].value)
        state["chosen"] = filled.model
        fill(filled)

    def fill(plan: Plan) -> None:
        state["filling"] = True  # the model change this makes is the plan's, not the user's: keep its values
        try:
            _show_fields(c, plan)
        finally:
            state["filling"] = False
        show_model_note()
        show_banner()

    def show_banner(_: Any = None) -> None:
        c["plan_view"].value = _banner_html(state["planned"], state["chosen"], c)

    def show_model_note() -> None:
        model_id = c["model"].value
        if model_id and downloaded(lab, model_id) is False:
            note = download_note(model_id, offline(), download_command(lab, model_id))
            c["model_note"].value = f"<span style='color:#a06000'>⚠ {html.escape(note)}</span>"
        else:
            c["model_note"].value = ""

    def check_downloaded(model_id: str | None) -> bool:
        """False (with the warning in the status) when Render should not start yet."""
        from labkit.errors import ModelNotCached

        if not model_id or downloaded(lab, model_id) is not False:
            return True
        if offline():
            raise ModelNotCached(f"{model_id} is not downloaded and this machine is offline (HF_HUB_OFFLINE is set).",
                                 value=model_id, fix=f"download it once on a machine with internet "
                                 f"(`{download_command(lab, model_id)}`), or choose a downloaded model.")
        if state["confirmed"] == model_id:
            return True
        state["confirmed"] = model_id
        c["status"].value = ("<span style='color:#a06000'>⚠ "
                             f"{html.escape(download_note(model_id, False))}</span>")
        return False

    def do_render() -> None:
        # The last render's outputs go first: whatever happens next (an error, a cancel), nothing
        # shown belongs to another run.
        c["progress"].value = 0
        c["images"].children = ()
        c["images"].remove_class("labkit-cancelled-output")
        c["run_id"].value = ""
        c["terms"].value = ""
        c["status"].value = ""
        if not c["prompt"].value.strip() and c["request"].value.strip() and state["planned"] is None:
            do_plan()  # Render straight from a request: plan it first, as `lab.ask` does
        plan = fields_plan()
        if not check_downloaded(plan.model):
            return
        c["status"].value = "loading…"
        state["step"] = (0, plan.steps or 0)

        def progress(step: int, total: int) -> None:
            state["step"] = (step, total)
            c["progress"].max = max(total, 1)
            c["progress"].value = min(step, total)
            c["status"].value = f"step {step} of {total}"

        result = render_or_cancelled(lab, plan, c["status"], progress, worker.cancel_event)
        if result is None:
            return
        state["result"] = result
        c["run_id"].value = result.run_id or ""
        t = result.timings
        if result.status == "cancelled":  # half-denoised: marked, and no output terms for what is not an output
            c["images"].add_class("labkit-cancelled-output")
            c["images"].children = tuple(image_widget(im, css_class="labkit-cancelled-image") for im in result.images)
            step, total = state["step"]
            c["status"].value = (f"cancelled at step {step} of {total}: the {len(result.images)} image(s) below are "
                                 "unfinished (half-denoised), kept in the run, not outputs — no output terms")
        else:
            c["images"].children = tuple(image_widget(im) for im in result.images)
            c["terms"].value = _result_html(result)
            c["status"].value = (f"{result.status}: {len(result.images)} image(s) in {t.get('total_s', 0):.1f} s "
                                 f"(load {t.get('load_s', 0):.1f} s) with {html.escape(result.model.get('id', ''))}")
        c["log"].append_stdout(f"run {result.run_id}: {result.plan.model} {result.plan.width}x{result.plan.height}, "
                               f"{result.plan.steps} steps, seed {result.plan.seed}, {result.status}\n")

    def on_model(change: dict[str, Any]) -> None:
        if not change["new"]:
            return
        if state["planned"] is not None:
            state["planned"] = state["planned"].replace(model=change["new"])
        if state["filling"]:
            return
        # The user chose another model: its own size, steps and guidance (a 64 px toy size fails
        # sd-turbo's validation); the prompt, seed and count stay.
        try:
            defaults = lab.complete(Plan(prompt=c["prompt"].value, model=change["new"]), validate=False)
        except LabkitError as e:
            c["error"].value = error_html(e)
        else:
            c["error"].value = ""
            fill(defaults.replace(prompt=c["prompt"].value, negative_prompt=c["negative_prompt"].value,
                                  seed=c["seed"].value, count=c["count"].value))
            return
        show_model_note()
        show_banner()

    c["plan"].on_click(lambda _: worker.start(do_plan))
    c["render"].on_click(lambda _: worker.start(do_render))
    c["control_preview"].on_click(lambda _: worker.start(do_preview))
    c["cancel"].on_click(lambda _: worker.cancel_event.set())
    c["reroll"].on_click(lambda _: setattr(c["seed"], "value", random.SystemRandom().randint(0, MAX_SEED)))
    c["model"].observe(on_model, names="value")
    for name in ("width", "height", "steps", "guidance", "seed", "count"):
        c[name].observe(show_banner, names="value")
    show_model_note()
    show_banner()

    size_row = widgets.HBox([widgets.Label("size", layout=widgets.Layout(width="110px")), c["width"],
                             widgets.Label("×"), c["height"]])
    seed_row = widgets.HBox([widgets.Label("seed", layout=widgets.Layout(width="110px")), c["seed"], c["reroll"]])
    widget = widgets.VBox([
        style_widget(), widgets.HTML("<b>Generate</b> — type a request, press Plan, edit the plan, press Render."),
        labelled("request", c["request"]), labelled("controller", widgets.HBox([c["controller"], c["plan"]])),
        c["plan_view"], labelled("model", c["model"]), c["model_note"], labelled("prompt", c["prompt"]),
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


def _banner_html(planned: Plan | None, chosen: str | None, c: dict[str, Any]) -> str:
    """The plan banner: what Render will do (read from the fields, so it follows every edit), then who
    planned it and why — saying so when the model is no longer the one the controller chose."""
    model = c["model"].value or ""
    steps = c["steps"].value
    lines = [f"<b>Render</b>: model <b>{html.escape(model)}</b>, {c['width'].value}×{c['height'].value}, "
             f"{steps} step{'s' if steps != 1 else ''}, guidance {c['guidance'].value:g}, seed {c['seed'].value}, "
             f"{c['count'].value} image(s)"]
    if planned is not None:
        lines += _plan_lines(planned, chosen, model)
    return "<br>".join(lines)


def _plan_lines(plan: Plan, chosen: str | None, model: str) -> list[str]:
    ctrl = plan.controller
    who = html.escape(ctrl.name + (f" ({ctrl.model})" if ctrl.model else ""))
    if chosen and chosen != model:
        lines = [f"<b>Plan</b> by {who}, edited: you chose {html.escape(model)} (with its size, steps and guidance) "
                 f"instead of {html.escape(chosen)}. <span style='color:#666'>The plan's reasoning was: "
                 f"{html.escape(plan.rationale or '')}</span>"]
    else:
        lines = [f"<b>Plan</b> by {who}: {html.escape(plan.rationale or '')}"]
    if ctrl.fallback_reason:
        lines.append(f"<span style='color:#a06000'>fell back to rules: {html.escape(ctrl.fallback_reason)}</span>")
    if plan.modality == "video":
        lines.append("<span style='color:#a06000'>The controller planned a video: this panel renders its first "
                     "image; use the Video tab for the clip.</span>")
    return lines


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
