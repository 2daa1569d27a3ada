"""The Video panel: a clip from a request, from the last rendered image, or from an uploaded image."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter, LabkitError
from labkit.panels.common import (
    Panel,
    Worker,
    downloaded,
    ensure_option,
    error_html,
    labelled,
    model_options,
    render_or_cancelled,
    shown_scale,
    start_error,
    style_widget,
)

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab

SOURCES = ("request", "last image", "upload")


def video_panel(lab: Lab, *, source: str = "request", request: str = "", model: str | None = None,
                frames: int | None = None, fps: int | None = None, steps: int | None = None,
                size: tuple[int, int] | None = None, seed: int | None = None, background: bool = True) -> Panel:
    """The Video panel for `lab`.

    Choose where the clip starts — a request (text-to-video, or the lab's image model draws the
    first frame for an image-to-video model), the last image this lab rendered (e.g. in the
    Generate panel), or an uploaded image (kept under `mlruns/inputs/` so the run can be replayed)
    — set frames and fps, and press Render. The clip plays in the panel, with its GIF beside it as
    a fallback, both pixel-true (whole-number nearest-neighbour upscaling; the player at least 320 px
    wide so its play/pause and seek controls show). A cancelled clip is marked as such, with no output
    terms. The keyword arguments set the starting values; open ones come from the model's
    catalogue entry. A starting value Render would refuse (frames=0, fps=0, steps=0) is kept in its
    field and the error box says why at once, as Render would.

    Controls: source, request, upload, model, frames, fps, steps, width, height, seed, render,
    cancel, progress, status, video, gif, run_id, terms, error, log, worker.
    """
    import ipywidgets as widgets

    from labkit.plan import Plan, check_int, check_size, check_text

    check_text("request", request)
    check_text("model", model, optional=True, nonempty=True)
    for name, value in (("frames", frames), ("fps", fps), ("steps", steps), ("seed", seed)):
        check_int(name, value, optional=True)
    width, height = check_size("size", size)
    if source not in SOURCES:
        raise InvalidParameter(f"Unknown video source {source!r}.", value=source, fix=f"use one of {SOURCES}.")
    small = widgets.Layout(width="90px")
    c: dict[str, Any] = {
        "source": widgets.ToggleButtons(options=list(SOURCES), value=source),
        "request": widgets.Textarea(value=request, placeholder="a red circle moving to the right",
                                    layout=widgets.Layout(width="480px", height="56px")),
        "upload": widgets.FileUpload(accept="image/*", multiple=False, description="Upload image"),
        "model": widgets.Dropdown(options=[], layout=widgets.Layout(width="480px")),
        "frames": widgets.IntText(layout=small),
        "fps": widgets.IntText(layout=small),
        "steps": widgets.IntText(layout=small),
        "width": widgets.IntText(layout=small),
        "height": widgets.IntText(layout=small),
        "seed": widgets.IntText(layout=widgets.Layout(width="130px")),
        "render": widgets.Button(description="Render", button_style="primary", icon="play"),
        "cancel": widgets.Button(description="Cancel", icon="stop", disabled=True),
        "progress": widgets.IntProgress(value=0, min=0, max=1, description="steps"),
        "status": widgets.HTML(),
        "video": widgets.Video(value=b"", format="mp4", autoplay=True, loop=True, controls=True,
                               layout=widgets.Layout(display="none")),
        "gif": widgets.Image(value=b"", format="gif", layout=widgets.Layout(display="none")),
        "run_id": widgets.Text(description="run id", disabled=True, layout=widgets.Layout(width="480px")),
        "terms": widgets.HTML(),
        "error": widgets.HTML(),
        "log": widgets.Output(),
    }
    c["video"].add_class("labkit-video")
    c["video"].add_class("labkit-pixelated")
    c["gif"].add_class("labkit-pixelated")
    c["status"].add_class("labkit-status")
    worker = Worker([c["render"]], c["error"], c["log"], background=background, cancel=c["cancel"],
                    status=c["status"])
    c["worker"] = worker

    from labkit.deps import offline

    start_model = model or lab.default_model("video")
    try:
        statuses = lab.models("txt2vid")
        c["model"].options = model_options(statuses, start_model, here={s.id: downloaded(lab, s.id) for s in statuses},
                                           offline=offline())
    except LabkitError as e:
        c["model"].options = [(start_model, start_model)]
        c["error"].value = error_html(e)
    ensure_option(c["model"], start_model)
    # As in the Generate panel: the values given stay as given, one Render would refuse is said at once.
    start = Plan(prompt=request, modality="video", model=start_model, frames=frames, fps=fps, steps=steps,
                 width=width, height=height, seed=seed)
    try:
        filled = lab.complete(start, validate=False)
    except LabkitError as e:
        filled = start.resolve(None)
        c["error"].value = error_html(e)
    for name in ("frames", "fps", "steps", "width", "height", "seed"):
        c[name].value = getattr(filled, name)
    c["error"].value = c["error"].value or start_error(lab, filled)

    def input_image() -> str | None:
        which = c["source"].value
        if which == "request":
            return None
        if which == "last image":
            last = lab.last_result
            images = [f for f in (last.files if last else []) if f.suffix.lower() == ".png"]
            if not images:
                raise InvalidParameter("This lab has rendered no image yet.", value=None,
                                       fix="render one (Generate tab, or lab.generate), or choose 'upload'.")
            return str(images[0])
        uploaded = c["upload"].value
        if not uploaded:
            raise InvalidParameter("No image uploaded.", value=None, fix="press 'Upload image' and pick a PNG or JPEG.")
        item = uploaded[0] if isinstance(uploaded, (tuple, list)) else next(iter(uploaded.values()))
        return str(lab.keep_input(bytes(item["content"]), item.get("name", "upload.png")))

    def do_render() -> None:
        c["progress"].value = 0
        c["run_id"].value = ""
        c["terms"].value = ""
        c["status"].value = ""
        for name in ("video", "gif"):
            c[name].layout.display = "none"
        image = input_image()
        prompt = c["request"].value.strip()
        if image is None and not prompt:
            raise InvalidParameter("The request is empty.", value=prompt,
                                   fix="describe the clip, or start from the last image or an upload.")
        plan = Plan(prompt=prompt, modality="video", model=c["model"].value or None, image=image,
                    frames=c["frames"].value, fps=c["fps"].value, steps=c["steps"].value, width=c["width"].value,
                    height=c["height"].value, seed=c["seed"].value)
        c["status"].value = "loading…"

        def progress(step: int, total: int) -> None:
            c["progress"].max = max(total, 1)
            c["progress"].value = min(step, total)
            c["status"].value = f"step {step} of {total}"

        result = render_or_cancelled(lab, plan, c["status"], progress, worker.cancel_event)
        if result is None:
            return
        mp4 = [f for f in result.files if f.suffix == ".mp4"]
        gif = [f for f in result.files if f.suffix == ".gif"]
        w, h = result.frames[0].size if result.frames else (result.plan.width, result.plan.height)
        if mp4:  # wide enough for the player's controls (at 64 px they collapse into one "⋮" menu)
            k = shown_scale(w, 320)
            c["video"].value = mp4[0].read_bytes()
            c["video"].layout.width, c["video"].layout.height = f"{w * k}px", f"{h * k}px"
            c["video"].layout.display = None
        if gif:
            k = shown_scale(w)
            c["gif"].value = gif[0].read_bytes()
            c["gif"].layout.width, c["gif"].layout.height = f"{w * k}px", f"{h * k}px"
            c["gif"].layout.display = None
        c["run_id"].value = result.run_id or ""
        if result.status == "cancelled":
            c["status"].value = (f"cancelled: the {len(result.frames)} frame(s) shown are unfinished, kept in the run, "
                                 "not outputs — no output terms")
        else:
            c["terms"].value = f"<b>Terms</b>: {html.escape((result.record or {}).get('terms', ''))}"
            c["status"].value = (f"{result.status}: {len(result.frames)} frames at {result.plan.fps} fps in "
                                 f"{result.timings.get('total_s', 0):.1f} s with "
                                 f"{html.escape(result.model.get('id', ''))}")
        c["log"].append_stdout(f"run {result.run_id}: {result.plan.task} {result.plan.model}, "
                               f"{result.plan.frames} frames, seed {result.plan.seed}\n")

    c["render"].on_click(lambda _: worker.start(do_render))
    c["cancel"].on_click(lambda _: worker.cancel_event.set())

    size_row = widgets.HBox([widgets.Label("size", layout=widgets.Layout(width="110px")), c["width"],
                             widgets.Label("×"), c["height"]])
    widget = widgets.VBox([
        style_widget(), widgets.HTML("<b>Video</b> — start from a request, the last image, or an upload."),
        labelled("start from", c["source"]), labelled("request", c["request"]), labelled("image", c["upload"]),
        labelled("model", c["model"]), labelled("frames", c["frames"]), labelled("fps", c["fps"]),
        labelled("steps", c["steps"]), size_row, labelled("seed", c["seed"]),
        widgets.HBox([c["render"], c["cancel"], c["progress"], c["status"]]), c["error"],
        widgets.HBox([c["video"], c["gif"]]), c["run_id"], c["terms"], c["log"],
    ])
    widget.add_class("labkit-video-panel")
    return Panel(widget, c)


__all__ = ["SOURCES", "video_panel"]
