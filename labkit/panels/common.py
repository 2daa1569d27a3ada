"""What every panel shares: the (widget, controls) pair, the worker that runs a job with the
buttons disabled and errors shown in place, and small HTML and image helpers."""

from __future__ import annotations

import html
import io
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from labkit.errors import LabkitError


class Panel(NamedTuple):
    """A panel: the widget to show and its named controls. Unpacks as `widget, controls = panel`;
    shows the widget when it is the last expression of a notebook cell."""

    widget: Any
    controls: dict[str, Any]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class Worker:
    """Runs a panel's jobs one at a time.

    While a job runs its panel's `buttons` are disabled (and `cancel`, when given, enabled); a
    `LabkitError` it raises is shown in the `error` widget with its fix, any other exception with
    its traceback appended to `log` — the kernel never sees either; `status`, when given, then says
    the job failed rather than keeping the "loading…" it last showed. With `background` the job runs
    on its own thread, so the callback returns at once and a Cancel click is heard meanwhile.
    Widgets are only written through trait assignment and `Output.append_stdout`, which are safe
    from any thread (the `with output:` capture is not).
    """

    def __init__(self, buttons: Sequence[Any], error: Any, log: Any, *, background: bool = True,
                 cancel: Any = None, status: Any = None):
        self.buttons = list(buttons)
        self.status = status
        self.error = error
        self.log = log
        self.background = background
        self.cancel_button = cancel
        self.cancel_event = threading.Event()
        self._lock = threading.RLock()  # re-entrant: an observer of a button may start a job
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def start(self, job: Callable[[], Any]) -> bool:
        """Run `job` unless one is running already (then return False)."""
        with self._lock:
            if self.running:
                return False
            self._done.clear()
            self.cancel_event.clear()
            for b in self.buttons:
                b.disabled = True
            if self.cancel_button is not None:
                self.cancel_button.disabled = False
        self.error.value = ""
        if self.background:
            self._thread = threading.Thread(target=self._run, args=(job,), daemon=True, name="labkit-panel")
            self._thread.start()
        else:
            self._run(job)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the running job (if any) is done; False when `timeout` passed first."""
        return self._done.wait(timeout)

    def _run(self, job: Callable[[], Any]) -> None:
        try:
            job()
        except LabkitError as e:
            self.error.value = error_html(e)
            self._failed()
        except Exception as e:  # a bug, not a user error: say so, keep the traceback, keep the kernel
            self.error.value = error_html(e)
            self._failed()
            self.log.append_stdout(_safe("".join(traceback.format_exception(e))))
        finally:
            # Under the lock: a click that comes as soon as the buttons show enabled waits here for the
            # job to count as done, and is not dropped as "one is running already".
            with self._lock:
                for b in self.buttons:
                    b.disabled = False
                if self.cancel_button is not None:
                    self.cancel_button.disabled = True
                self._done.set()


    def _failed(self) -> None:
        if self.status is not None:
            self.status.value = "<span style='color:#a00000'>failed: see the error below</span>"


def _safe(text: str) -> str:
    """`text` that the widget protocol (JSON over the kernel's comm) can send: lone surrogates escaped."""
    from labkit.config import printable

    return printable(text)


def error_html(e: BaseException) -> str:
    """An error as the panel shows it: the message, then the fix on its own line."""
    if isinstance(e, LabkitError):
        body = f"<b>{html.escape(_safe(str(e.message)))}</b>"
        if e.fix:
            body += f"<br>Fix: {html.escape(_safe(str(e.fix)))}"
    else:
        body = f"<b>Unexpected error: {html.escape(type(e).__name__)}: {html.escape(_safe(str(e)))}</b>" \
               "<br>The traceback is in the log below; please report it."
    return (f'<div class="labkit-error" style="color:#a00000;border-left:4px solid #a00000;'
            f'padding:4px 8px;background:#fff0f0">{body}</div>')


def table_html(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
               css_class: str = "labkit-table", cell_style: Callable[[str, Any], str] | None = None) -> str:
    """Rows of dicts as an HTML table (values escaped; `cell_style(column, value)` gives inline CSS)."""
    rows = list(rows)
    cols = list(columns or (rows[0].keys() if rows else []))
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            style = "padding:2px 8px;" + (cell_style(c, row.get(c)) if cell_style else "")
            cells.append(f"<td style='{style}'>{html.escape(cell_text(row.get(c)))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def cell_text(value: Any) -> str:
    """A table cell's text: '' for None, floats to 3 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


ACTION_COLOURS = {"allow": "#e6f4ea", "warn": "#fff3b0", "block": "#fbd5d5"}


def action_style(column: str, value: Any) -> str:
    """Cell style colouring compliance actions (allow / warn / block)."""
    return f"background:{ACTION_COLOURS[value]};" if column == "action" and value in ACTION_COLOURS else ""


def compact_style(column: str, value: Any) -> str:
    """Cell style for the compact compliance tables: actions coloured, and every cell but the reasons kept on
    one line, so a licence id (`sai-nc-community`, `openrail++`) never breaks at a hyphen."""
    return action_style(column, value) + ("" if column == "why" else "white-space:nowrap;")


def png_bytes(image: Any) -> bytes:
    """A PIL image as PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


#: CSS every panel carries (in a `style_widget`): pixel-true images — nearest-neighbour upscaling, so a 64 px
#: toy image shown at 256 px keeps its hard edges instead of the browser's smooth (blurry) scaling.
PANEL_CSS = """<style>
.labkit-pixelated, .labkit-pixelated img, .labkit-pixelated video { image-rendering: pixelated; }
.labkit-cancelled-output img { opacity: 0.55; outline: 2px dashed #a06000; }
.labkit-compact { border-collapse: collapse; font-size: 12px; line-height: 1.3; }
.labkit-compact td, .labkit-compact th { padding: 1px 6px !important; vertical-align: top; }
</style>"""

#: Toy-world outputs are 64 px: shown at least this wide, at a whole multiple of their size.
MIN_SHOWN_PX = 256


def style_widget():
    """An (invisible) HTML widget holding `PANEL_CSS`; each panel puts one among its children."""
    import ipywidgets as widgets

    w = widgets.HTML(PANEL_CSS, layout=widgets.Layout(height="0px", margin="0px"))
    w.add_class("labkit-style")
    return w


def shown_scale(width: int, min_width: int = MIN_SHOWN_PX) -> int:
    """The whole-number factor an image `width` pixels wide is shown at: the smallest that reaches
    `min_width` (1 for images already that wide). Whole factors keep every source pixel the same size."""
    return max(1, -(-min_width // max(int(width), 1)))


def image_widget(image: Any, *, min_width: int = MIN_SHOWN_PX, css_class: str = "labkit-image"):
    """An `ipywidgets.Image` of a PIL image or an image file (PNG, JPEG, GIF), shown pixel-true: scaled by
    a whole factor to at least `min_width` pixels wide, with nearest-neighbour upscaling (toy-world images
    are 64 pixels and would otherwise be smoothed into a blur)."""
    import ipywidgets as widgets

    if isinstance(image, (str, Path)):
        path = Path(image)
        fmt = "gif" if path.suffix.lower() == ".gif" else "png" if path.suffix.lower() == ".png" else "jpeg"
        data = path.read_bytes()
        from PIL import Image

        with Image.open(path) as im:
            width, height = im.size
    else:
        fmt, data, (width, height) = "png", png_bytes(image), image.size
    k = shown_scale(width, min_width)
    w = widgets.Image(value=data, format=fmt, layout=widgets.Layout(width=f"{width * k}px", height=f"{height * k}px",
                                                                    min_width=f"{width * k}px"))
    w.add_class(css_class)
    w.add_class("labkit-pixelated")
    return w


def image_grid(images: Sequence[Any], *, min_width: int = MIN_SHOWN_PX, css_class: str = "labkit-image"):
    """Several images (a count-4 render) as a square-ish grid, together at least `min_width` wide; one image
    is just its `image_widget`."""
    import math

    import ipywidgets as widgets

    if len(images) == 1:
        return image_widget(images[0], min_width=min_width, css_class=css_class)
    cols = math.ceil(math.sqrt(len(images)))
    tiles = [image_widget(im, min_width=max(min_width // cols, 1), css_class=css_class) for im in images]
    grid = widgets.GridBox(tiles, layout=widgets.Layout(grid_template_columns=f"repeat({cols}, max-content)",
                                                        grid_gap="2px", width="max-content"))
    grid.add_class("labkit-image-grid")
    return grid


def thumbnail_png(path: Path, size: int = 64) -> bytes:
    """The first frame of an image or GIF as a PNG at most `size` pixels on a side (small images unchanged)."""
    from PIL import Image

    with Image.open(path) as im:
        im.seek(0)
        frame = im.convert("RGB")
    if max(frame.size) > size:
        frame.thumbnail((size, size))
    return png_bytes(frame)


def native_size_layout(widget: Any, png: bytes) -> None:
    """Show a plot (PNG bytes) at its own pixel size: an Image widget in a VBox is otherwise stretched to the
    panel's width (a 600 px figure drawn 1,113 px wide)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        width, height = im.size
    widget.layout.width, widget.layout.height = f"{width}px", f"{height}px"
    widget.layout.align_self = "flex-start"
    widget.layout.object_fit = "contain"


_COMPLIANCE_WORDS = {"allow": "allowed", "warn": "licence warns", "block": "blocked"}


def downloaded(lab: Any, model: str) -> bool | None:
    """Whether `model`'s weights are on this machine now: a local or packaged model's folder, a hub model's
    files in the Hugging Face cache (online too: a hub model that is not cached is downloaded by the first
    render). None when the model cannot be resolved (the render names that error)."""
    from labkit.pipelines.loader import is_available, resolve_model

    try:
        ref = resolve_model(model, lab.catalog)
    except Exception:  # an unknown id: Render reports it with its fix
        return None
    if ref.kind != "hub":
        return is_available(ref)
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(ref.location, "model_index.json", revision=ref.revision), str)


def download_command(lab: Any, model: str) -> str:
    """The command that puts `model`'s weights in the cache (`hf download REPO`)."""
    from labkit.pipelines.loader import resolve_model

    try:
        return resolve_model(model, lab.catalog).download_command()
    except Exception:
        return f"hf download {model}"


def download_note(model: str, offline: bool, command: str = "") -> str:
    """What the panel says about a model whose weights are not here."""
    if offline:
        return (f"{model} is not downloaded and this machine is offline (HF_HUB_OFFLINE is set): it cannot render "
                f"here. Download it once on a machine with internet (`{command or 'hf download REPO'}`), "
                "or choose a downloaded model.")
    return (f"{model} is not downloaded: Render downloads it first (it may take minutes); "
            "press Render again to go ahead.")


def model_options(statuses: Sequence[Any], current: str | None, *, here: Mapping[str, bool | None] | None = None,
                  offline: bool = False) -> list[tuple[str, str]]:
    """Dropdown options (label, model id) for the model menu, with `current` added when it is not a
    catalogue model (a local folder or a hub repo id). `here` (model id → `downloaded`) marks the models
    whose weights are not on this machine: "not downloaded (offline)" or "not downloaded"."""
    options = []
    for s in statuses:
        label = f"{s.id} — {s.fit}, {_COMPLIANCE_WORDS.get(s.compliance, s.compliance)}"
        is_here = here.get(s.id) if here is not None else s.available
        if is_here is False:
            label += ", not downloaded (offline)" if offline else ", not downloaded"
        options.append((label, s.id))
    if current and current not in {v for _, v in options}:
        options.append((current, current))
    return options


def ensure_option(dropdown: Any, value: str | None) -> None:
    """Select `value` in `dropdown`, adding it as its own label when it is not an option yet."""
    if not value:
        return
    values = [o[1] if isinstance(o, tuple) else o for o in dropdown.options]
    if value not in values:
        dropdown.options = [*dropdown.options, (value, value)]
    dropdown.value = value


def labelled(label: str, widget: Any, width: str = "110px"):
    """`widget` with a fixed-width label in front of it."""
    import ipywidgets as widgets

    return widgets.HBox([widgets.Label(label, layout=widgets.Layout(width=width)), widget])


def start_error(lab: Any, plan: Any) -> str:
    """A panel's starting values checked as Render will check them: '' when they are fine, else the error as the
    panel shows it (`error_html`). The prompt is not judged here: nobody has typed one yet."""
    try:
        lab.complete(plan.replace(prompt=plan.prompt if plan.prompt.strip() else "-"), validate=True)
    except LabkitError as e:
        return error_html(e)
    return ""


def render_or_cancelled(lab: Any, plan: Any, status: Any, progress: Any, cancel: Any) -> Any:
    """`lab.render(plan)` with `progress` and `cancel`; None (the `status` widget saying so) when the pipeline
    cannot stop part-way and keep what it made (it raises Cancelled): nothing to show."""
    from labkit.errors import Cancelled

    try:
        return lab.render(plan, progress=progress, cancel=cancel)
    except Cancelled as e:
        status.value = (f"cancelled at step {e.value} of {plan.steps}: this pipeline keeps no partial "
                        "output, so nothing is shown (the run is in MLflow)")
        return None
