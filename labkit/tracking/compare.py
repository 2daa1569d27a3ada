"""Runs side by side: what each run was, which of their parameters differ, tables and plots.

    runs = lab.runs(10)                       # RunSummary, newest first
    frame = to_frame(runs)                    # one row per run: plan params, metrics, terms, note
    cmp = lab.compare([r.run_id for r in runs[:3]])
    cmp.differing                             # ["plan.seed", "plan.steps"]: what changed between them
    cmp.figure()                              # matplotlib Figure: images captioned with what differs, timings

A render run's params are its plan (`plan.*`), its tags the model, strategy, licences and terms,
its metrics the timings; the images are its `outputs/` artifacts (a tracking server's: local copies).
Matplotlib is used through its Agg canvas only: no pyplot, no change to the global backend.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.tracking.notes import own_note

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CLIP_SUFFIXES = (".mp4", ".gif")
#: Params that name a run rather than describe it: never reported as "differing".
_IDENTITY = ("plan.controller.fallback_reason",)


@dataclass(frozen=True)
class RunSummary:
    """One MLflow run as a researcher reads it.

    params: the run's params (a render's plan as `plan.*`); metrics: latest value of each metric;
    tags: the run's tags; note: its Markdown note; files: the output files in its artifacts.
    """

    run_id: str
    name: str
    status: str
    start: datetime | None
    duration_s: float | None
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    note: str = ""
    artifact_dir: Path | None = None
    files: tuple[Path, ...] = ()

    @classmethod
    def from_mlflow(cls, run: Any, tracker: Any = None) -> RunSummary:
        """A summary of an MLflow `Run` (from `MlflowClient.get_run` or `search_runs`).

        For a run kept on a tracking server, `files` are the local copies of its outputs (`artifact_dir` the
        run's mirror folder): downloaded through `tracker` when given (once), else those this process has.
        """
        from labkit.tracking.mirror import known_copy, local_folder

        info, data = run.info, run.data
        folder = local_folder(info.artifact_uri)
        outputs = folder / "outputs" if folder is not None else None
        if folder is None and info.artifact_uri:  # a tracking server's run
            outputs = (tracker.local_artifacts(info.run_id, "outputs") if tracker is not None
                       else known_copy(info.run_id, "outputs"))
            folder = outputs.parent if outputs is not None else None
        files: tuple[Path, ...] = ()
        if outputs is not None and outputs.is_dir():
            files = tuple(sorted(p for p in outputs.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + CLIP_SUFFIXES))
        start = datetime.fromtimestamp(info.start_time / 1000, tz=UTC) if info.start_time else None
        duration = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
        return cls(run_id=info.run_id, name=info.run_name or "", status=info.status, start=start,
                   duration_s=duration, params=dict(data.params), metrics=dict(data.metrics),
                   tags=dict(data.tags), note=own_note(data.tags), artifact_dir=folder, files=files)

    @property
    def job(self) -> str:
        return self.tags.get("labkit.job", "")

    @property
    def prompt(self) -> str:
        return self.params.get("plan.prompt", "")

    @property
    def model(self) -> str:
        """The model that ran (a render's `model.id` tag), else the one the plan asked for."""
        return self.tags.get("model.id") or self.params.get("plan.model", "")

    @property
    def images(self) -> list[Path]:
        return [f for f in self.files if f.suffix.lower() in IMAGE_SUFFIXES]

    @property
    def clips(self) -> list[Path]:
        return [f for f in self.files if f.suffix.lower() in CLIP_SUFFIXES]

    @property
    def terms(self) -> str:
        """The output terms the run's licence chain implies (empty for runs that made no output)."""
        return self.tags.get("labkit.terms.text", "")

    def row(self) -> dict[str, Any]:
        """The run as one flat row: identity, plan params, metrics, model, licence, terms, note."""
        row: dict[str, Any] = {
            "run_id": self.run_id, "name": self.name, "status": self.status, "start": self.start,
            "job": self.job, "model": self.model, "licence": self.tags.get("model.licence", ""),
            "compliance": self.tags.get("labkit.compliance.verdict", ""), "terms": self.terms,
            "commercial": self.tags.get("labkit.terms.commercial", ""), "note": self.note,
        }
        row.update({k: _number(v) for k, v in self.params.items()})
        row.update({f"metric.{k}": v for k, v in self.metrics.items()})
        return row


def _number(value: str) -> Any:
    """Param values come back from MLflow as text; numbers are numbers again for tables and plots."""
    for cast in (int, float):
        try:
            return cast(value)
        except (TypeError, ValueError):
            continue
    return value


def differing(runs: Sequence[RunSummary], prefix: str = "plan.") -> list[str]:
    """Param keys starting with `prefix` whose values are not the same in every run (sorted)."""
    keys = sorted({k for r in runs for k in r.params if k.startswith(prefix) and k not in _IDENTITY})
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def to_frame(runs: Iterable[RunSummary]):
    """A pandas DataFrame with one row per run (see `RunSummary.row`), indexed by run id."""
    import pandas as pd

    rows = [r.row() for r in runs]
    frame = pd.DataFrame(rows)
    return frame.set_index("run_id") if rows else frame


@dataclass(frozen=True)
class Comparison:
    """Several runs side by side.

    differing: the plan params whose values differ; same: the plan params every run shares;
    histories: metric name → run id → the metric's values by step (e.g. `time.step_s`).
    """

    runs: tuple[RunSummary, ...]
    differing: tuple[str, ...]
    same: Mapping[str, str]
    histories: Mapping[str, Mapping[str, list[float]]] = field(default_factory=dict)

    def caption(self, run: RunSummary) -> str:
        """What sets `run` apart: its values of the differing params (or its name when none differ)."""
        return ", ".join(self._caption_parts(run))

    def _caption_parts(self, run: RunSummary) -> list[str]:
        parts = [f"{k.removeprefix('plan.')}={run.params.get(k, '')}" for k in self.differing]
        return parts or [run.name or run.run_id[:8]]

    def _fitted_caption(self, run: RunSummary, width_px: float, font: Any) -> str:
        """The caption in `CAPTION_LINES` lines of `width_px`; when it does not fit whole, each differing param
        on a line of its own, cut short, so a long prompt does not push the seed out of sight."""
        parts = self._caption_parts(run)
        text = fit_caption(", ".join(parts), width_px, font)
        if not text.endswith("…") or len(parts) == 1:
            return text
        shown = parts if len(parts) <= CAPTION_LINES else [*parts[:CAPTION_LINES - 1],
                                                             f"+{len(parts) - CAPTION_LINES + 1} more"]
        longest = max(range(len(shown)), key=lambda i: len(shown[i]))  # gets the lines the others leave
        spare = CAPTION_LINES - len(shown)
        return "\n".join(fit_caption(p, width_px, font, max_lines=1 + (spare if i == longest else 0))
                         for i, p in enumerate(shown))

    def table(self) -> list[dict[str, Any]]:
        """Rows of param → one value per run (run ids as keys), the differing params first."""
        keys = [*self.differing, *sorted(self.same)]
        return [{"param": k, "differs": k in self.differing, **{r.run_id: r.params.get(k, "") for r in self.runs}}
                for k in keys]

    def html(self) -> str:
        """The param table as HTML, differing rows highlighted (for notebooks and panels)."""
        head = "".join(f"<th>{html.escape(r.name or r.run_id[:8])}<br><code>{r.run_id[:8]}</code></th>"
                       for r in self.runs)
        rows = []
        for row in self.table():
            style = ' style="background:#fff3b0;font-weight:bold"' if row["differs"] else ""
            cells = "".join(f"<td>{html.escape(str(row[r.run_id]))[:120]}</td>" for r in self.runs)
            rows.append(f'<tr class="{"labkit-differs" if row["differs"] else ""}"{style}>'
                        f"<td>{html.escape(row['param'])}</td>{cells}</tr>")
        return (f'<table class="labkit-compare"><thead><tr><th>param</th>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>")

    def figure(self, metric: str | None = None):
        """A matplotlib Figure: each run's first image captioned with what differs, then `metric` per run
        and the per-step times when recorded (a run without `metric` shows no bar; a metric no run has is refused,
        with the ones they have). Default: "time.total_s", a render's; for runs without it, the first they have."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image

        from labkit.errors import InvalidParameter

        have = sorted({k for r in self.runs for k in r.metrics})
        if metric is None:  # a render's total time; runs of other jobs (training) show what they recorded
            metric = "time.total_s" if "time.total_s" in have or not have else have[0]
        elif self.runs and metric not in have:
            raise InvalidParameter(f"None of the {len(self.runs)} runs has the metric {metric!r}: the bars would all "
                                   "be 0.", value=metric, fix=f"pass one they have: {', '.join(have) or '(none)'}.")
        n = max(len(self.runs), 1)
        steps = self.histories.get("time.step_s", {})
        fig = Figure(figsize=(max(2.2 * n, 6.0), 5.2), dpi=100)
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(2, n, height_ratios=[1.2, 1.0])
        tops = []
        for i, run in enumerate(self.runs):
            ax = fig.add_subplot(grid[0, i])
            ax.set_axis_off()
            if run.images:
                with Image.open(run.images[0]) as img:
                    ax.imshow(img.convert("RGB"))
            else:
                ax.text(0.5, 0.5, "no image", ha="center", va="center")
            tops.append(ax)
        labels = [r.run_id[:8] for r in self.runs]
        ax_bar = fig.add_subplot(grid[1, : max(n // 2, 1)] if n > 1 else grid[1, 0])
        ax_bar.bar(labels, [r.metrics.get(metric, float("nan")) for r in self.runs], color="#4c72b0")
        ax_bar.set_ylabel(metric, fontsize=8)
        ax_bar.tick_params(labelsize=7)
        if n > 1:
            ax_steps = fig.add_subplot(grid[1, n // 2:])
            for run in self.runs:
                values = steps.get(run.run_id) or []
                if values:
                    ax_steps.plot(range(1, len(values) + 1), values, marker="o", label=run.run_id[:8])
            ax_steps.set_xlabel("step", fontsize=8)
            ax_steps.set_ylabel("seconds per step", fontsize=8)
            ax_steps.tick_params(labelsize=7)
            if any(steps.get(r.run_id) for r in self.runs):
                ax_steps.legend(fontsize=7)
        # Captions are fitted to their own column once the layout has set the columns' widths, so a long one wraps
        # (and past CAPTION_LINES ends in "…") instead of running over its neighbours' captions.
        fig.tight_layout()
        font = caption_font(CAPTION_PT * fig.dpi / 72)
        for i, (ax, run) in enumerate(zip(tops, self.runs, strict=True)):
            cell = grid[0, i].get_position(fig).width * fig.get_figwidth() * fig.dpi
            ax.set_title(self._fitted_caption(run, 0.95 * cell, font), fontsize=CAPTION_PT, parse_math=False)
        fig.tight_layout()
        return fig

    def png(self, metric: str | None = None) -> bytes:
        """`figure()` as PNG bytes."""
        import io

        buf = io.BytesIO()
        self.figure(metric).savefig(buf, format="png")
        return buf.getvalue()


#: The caption of each image in `Comparison.figure`: its size in points, and the most lines it may take.
CAPTION_PT = 8
CAPTION_LINES = 3


def caption_font(px: float):
    """The font matplotlib draws captions in (its default family), as a PIL font `px` pixels high: what
    `fit_caption` measures with."""
    from matplotlib import font_manager
    from PIL import ImageFont

    try:
        return ImageFont.truetype(font_manager.findfont(font_manager.FontProperties()), size=px)
    except OSError:  # no TrueType font or no FreeType: PIL's own, which is about as wide
        return ImageFont.load_default(size=px)


def fit_caption(text: str, width_px: float, font: Any, max_lines: int = CAPTION_LINES) -> str:
    """`text` as lines at most `width_px` wide as `font` (a PIL font) measures them: wrapped at spaces, a word
    longer than a line broken where it must be; past `max_lines` the last line ends in "…"."""
    width_px = max(float(width_px), 1.0)

    def fits(s: str) -> bool:
        return font.getlength(s) <= width_px

    lines: list[str] = []
    line = ""
    for word in text.split():
        if fits(f"{line} {word}" if line else word):
            line = f"{line} {word}" if line else word
            continue
        if line:
            lines.append(line)
        while not fits(word):
            cut = 1
            while cut < len(word) and fits(word[:cut + 1]):
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and not fits(last + "…"):
            last = last[:-1]
        lines = [*lines[:max_lines - 1], last.rstrip() + "…"]
    return "\n".join(lines)


def compare(runs: Sequence[RunSummary], histories: Mapping[str, Mapping[str, list[float]]] | None = None
            ) -> Comparison:
    """The `Comparison` of `runs` (in the order given)."""
    diff = differing(runs)
    keys = {k for r in runs for k in r.params if k.startswith("plan.") and k not in diff}
    same = {k: runs[0].params.get(k, "") for k in sorted(keys)} if runs else {}
    return Comparison(runs=tuple(runs), differing=tuple(diff), same=same, histories=dict(histories or {}))


__all__ = ["CAPTION_LINES", "CAPTION_PT", "CLIP_SUFFIXES", "IMAGE_SUFFIXES", "Comparison", "RunSummary", "caption_font",
           "compare", "differing", "fit_caption", "to_frame"]
