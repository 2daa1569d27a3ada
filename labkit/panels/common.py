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
        self._lock = threading.Lock()
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
            cells.append(f"<td style='{style}'>{html.escape(_text(row.get(c)))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


ACTION_COLOURS = {"allow": "#e6f4ea", "warn": "#fff3b0", "block": "#fbd5d5"}


def action_style(column: str, value: Any) -> str:
    """Cell style colouring compliance actions (allow / warn / block)."""
    return f"background:{ACTION_COLOURS[value]};" if column == "action" and value in ACTION_COLOURS else ""


def png_bytes(image: Any) -> bytes:
    """A PIL image as PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_widget(image: Any, *, min_width: int = 128, css_class: str = "labkit-image"):
    """An `ipywidgets.Image` of a PIL image or an image file, shown at least `min_width` pixels wide
    (toy-world images are 64 pixels)."""
    import ipywidgets as widgets

    if isinstance(image, (str, Path)):
        path = Path(image)
        fmt = "gif" if path.suffix.lower() == ".gif" else "png" if path.suffix.lower() == ".png" else "jpeg"
        data = path.read_bytes()
        from PIL import Image

        with Image.open(path) as im:
            width = im.width
    else:
        fmt, data, width = "png", png_bytes(image), image.width
    w = widgets.Image(value=data, format=fmt, layout=widgets.Layout(width=f"{max(width, min_width)}px"))
    w.add_class(css_class)
    return w


def model_options(statuses: Sequence[Any], current: str | None) -> list[tuple[str, str]]:
    """Dropdown options (label, model id) for the model menu, with `current` added when it is not a
    catalogue model (a local folder or a hub repo id)."""
    options = [(s.label, s.id) for s in statuses]
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
