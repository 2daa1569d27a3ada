"""A sweep's numbers: every point as a table, statistics over seeds, plots, an image grid, paired tests.

    rep = report(lab, parent_run_id)          # or `labkit compare sweep RUN_ID`
    rep.frame                                  # pandas: one row per child run (params, seed, metrics, status)
    rep.summary                                # per setting: n, mean, std, 95% CI of each metric over seeds
    rep.paired({"steps": 4}, {"steps": 8}, "adherence.all_correct")   # same seeds, effect size, p-value
    rep.figures()                              # metric vs each swept parameter, with 95% CI error bars
    rep.grid()                                 # the images across the swept axes, one column per seed
    rep.html()                                 # all of it as one self-contained page

`report(..., log=True)` writes the tables, figures, grid and HTML page into the parent run under
`summary/`. Matplotlib is used through its Agg canvas only (no pyplot, no global backend change).
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab

logger = logging.getLogger(__name__)

#: Metrics labkit logs on every render that are bookkeeping rather than results.
_BOOKKEEPING = ("attempts", "adherence.images")
#: Columns of a sweep's frame that are not metrics (besides the points' parameters).
_NOT_METRICS = ("run_id", "index", "status", "error", "image", "seed")


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """n, mean, sample standard deviation and the `level` confidence interval of the mean (Student's t).
    With one value the deviation and interval are NaN: one seed says nothing about spread."""
    from scipy import stats

    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = sum(vals) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


@dataclass(frozen=True)
class Paired:
    """Setting `b` against setting `a` on the same seeds (and the same values of every other parameter).

    diff = b − a per pair; effect size is Cohen's d_z (mean diff / sd of the diffs); p from the paired
    t-test (two-sided). When every pair differs by the same non-zero amount (a detector score that is 0 in
    one setting and 1 in the other, seed after seed) the t statistic is undefined: p then comes from the exact
    sign test (two-sided, `test` says which), 0.031 for 6 pairs that all agree. No difference at all (every pair
    equal), or a single pair: neither test is defined, p is None and `test` says why. `to_dict` is strict JSON:
    a value that is not a finite number (d_z of pairs that all differ by the same amount, a CI of one pair) is None.
    """

    metric: str
    a: Mapping[str, Any]
    b: Mapping[str, Any]
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    effect_size: float
    p_value: float | None
    pairs: tuple[Mapping[str, Any], ...] = ()
    test: str = "paired t-test"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "pairs"}
        d["a"], d["b"], d["pairs"] = dict(self.a), dict(self.b), [dict(p) for p in self.pairs]
        return _strict(d)

    def line(self) -> str:
        p = f"p {self.p_value:.3g}" if self.p_value is not None else f"p {self.test}"
        return (f"{self.metric}: {_fmt(self.b)} vs {_fmt(self.a)} on {self.n} pairs: "
                f"{self.mean_b:.4g} vs {self.mean_a:.4g}, diff {self.mean_diff:+.4g} "
                f"(95% CI {self.ci_low:+.4g} to {self.ci_high:+.4g}), d_z {self.effect_size:.3g}, {p}"
                + (f" ({self.test})" if self.test == "sign test" else ""))


def _strict(v: Any) -> Any:
    """`v` with every float that JSON cannot hold (NaN, ±inf) as None, numpy scalars as Python numbers."""
    if isinstance(v, Mapping):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (TypeError, ValueError):
            return v
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _fmt(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


@dataclass
class SweepReport:
    """What a sweep found. frame: one row per child run; summary: one row per setting (parameters
    without the seed) with `<metric>.n/.mean/.std/.ci_low/.ci_high`."""

    parent_run_id: str
    name: str
    axes: tuple[str, ...]
    metrics: tuple[str, ...]
    frame: Any
    summary: Any
    description: str = ""
    params: tuple[str, ...] = ()
    comparisons: list[Paired] = field(default_factory=list)
    #: What the report could not do as its spec asked (a metric no finished run recorded, a comparison that
    #: could not be made): shown in `lines()` and the HTML page, and logged.
    warnings: list[str] = field(default_factory=list)

    @property
    def finished(self):
        return self.frame[self.frame["status"] == "FINISHED"] if len(self.frame) else self.frame

    @property
    def recorded_metrics(self) -> list[str]:
        """The metrics at least one finished run recorded, sorted."""
        fin = self.finished
        return sorted(c for c in fin.columns if c not in (*_NOT_METRICS, *self.params)
                      and fin[c].notna().any())

    def no_metric(self, names: Sequence[str | None]) -> InvalidParameter:
        """The error for metrics (`names`) that no finished run recorded: it names them and the metrics that
        were recorded, the closest to the first name first."""
        known = self.recorded_metrics
        close = difflib.get_close_matches(str(names[0]), known, n=3, cutoff=0.6)
        choices = ", ".join([*close, *(k for k in known if k not in close)])
        hint = f"did you mean {close[0]!r}? " if close else ""
        return InvalidParameter(
            f"No finished run of the sweep {self.name!r} recorded the metric {' or '.join(map(repr, names))}.",
            value=names[0] if len(names) == 1 else list(names),
            fix=f"{hint}name a metric the runs recorded: {choices}." if known else
            "the finished runs recorded no metric: give the spec a `score:`, or record one from the notebook.")

    def paired(self, a: Mapping[str, Any], b: Mapping[str, Any], metric: str | None = None) -> Paired:
        """Compare setting `b` with setting `a` (each a mapping of some parameters) on `metric`, pairing
        runs that agree on every other parameter and the seed."""
        from scipy import stats

        metric = metric or (self.metrics[0] if self.metrics else None)
        if metric is None:
            raise InvalidParameter(f"The sweep {self.name!r} summarises no metric to compare on.", value=None,
                                   fix=f"name one the runs recorded: {', '.join(self.recorded_metrics) or 'none'}.")
        if metric not in self.recorded_metrics:
            raise self.no_metric([metric])
        fin = self.finished
        keys = set(a) | set(b)
        for k in keys:
            if k not in fin.columns:
                raise InvalidParameter(f"The sweep {self.name!r} has no parameter {k!r}.", value=k,
                                       fix=f"compare on its parameters: {list(self.axes)}.")
        rest = [c for c in self.param_columns if c not in keys]

        def rows(setting):
            mask = fin.index == fin.index
            for k, v in setting.items():
                mask &= fin[k].map(lambda x, v=v: _same(x, v))
            return {tuple(json.dumps(_plain(r[c]), default=str) for c in rest): r[metric]
                    for r in fin[mask].to_dict("records")}

        ra, rb = rows(a), rows(b)
        common = [k for k in sorted(set(ra) & set(rb)) if not (_missing(ra[k]) or _missing(rb[k]))]
        if not common:
            raise InvalidParameter(f"No runs of {_fmt(a)} and {_fmt(b)} that recorded {metric} share a seed and the "
                                   "other parameters.", value=(dict(a), dict(b)),
                                   fix="compare settings that ran on the same seeds.")
        xa = [float(ra[k]) for k in common]
        xb = [float(rb[k]) for k in common]
        diffs = [y - x for x, y in zip(xa, xb, strict=True)]
        ci = mean_ci(diffs)
        sd = ci["std"]
        spread = len(diffs) > 1 and bool(sd) and not math.isnan(sd)
        effect = ci["mean"] / sd if spread else (0.0 if ci["mean"] == 0 else math.copysign(
            math.inf, ci["mean"])) if len(diffs) > 1 else math.nan
        test = "paired t-test"
        p: float | None
        if spread:
            p = float(stats.ttest_rel(xb, xa).pvalue)
        elif len(diffs) > 1 and ci["mean"] != 0:
            p, test = float(stats.binomtest(sum(d > 0 for d in diffs), len(diffs)).pvalue), "sign test"
        else:  # no spread and no difference: the t statistic is 0/0, and the sign test has no untied pair
            p, test = None, "undefined (every pair is equal)" if len(diffs) > 1 else "undefined (one pair)"
        pairs = tuple({**dict(zip(rest, (json.loads(v) for v in k), strict=True)), "a": x, "b": y}
                      for k, x, y in zip(common, xa, xb, strict=True))
        return Paired(metric=metric, a=dict(a), b=dict(b), n=len(diffs), mean_a=sum(xa) / len(xa),
                      mean_b=sum(xb) / len(xb), mean_diff=ci["mean"], ci_low=ci["ci_low"], ci_high=ci["ci_high"],
                      effect_size=effect, p_value=p, pairs=pairs, test=test)

    @property
    def param_columns(self) -> list[str]:
        """The points' parameters (fixed and swept, without the seed) present in the frame, plus the seed."""
        return [c for c in (*self.params, "seed") if c in self.frame.columns]

    # -- figures ----------------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """`{"<metric>-vs-<axis>": Figure}`: each metric's mean with 95% CI error bars against each swept
        parameter, one line per value of the other swept parameters."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        out = {}
        axes = [a for a in self.axes if a in self.summary.columns] or []
        for metric in self.metrics[:6]:
            if f"{metric}.mean" not in self.summary.columns:
                continue
            for axis in axes:
                fig = Figure(figsize=(5.0, 3.4), dpi=100)
                FigureCanvasAgg(fig)
                ax = fig.add_subplot(1, 1, 1)
                others = [o for o in axes if o != axis]
                groups = self.summary.groupby(others, sort=False) if others else [((), self.summary)]
                xs_all = _ordered(self.summary[axis])
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs_all)
                for key, g in groups:
                    key = key if isinstance(key, tuple) else (key,)
                    g = g.set_index(g[axis].map(_hashable)).reindex([_hashable(v) for v in xs_all]).dropna(
                        subset=[f"{metric}.mean"])
                    xs = list(g.index) if numeric else [[_hashable(x) for x in xs_all].index(v) for v in g.index]
                    mean = g[f"{metric}.mean"].astype(float)
                    low = (mean - g[f"{metric}.ci_low"].astype(float)).fillna(0).clip(lower=0)
                    high = (g[f"{metric}.ci_high"].astype(float) - mean).fillna(0).clip(lower=0)
                    label = ", ".join(f"{o}={v}" for o, v in zip(others, key, strict=False)) or metric
                    ax.errorbar(xs, mean, yerr=[low, high], marker="o", capsize=4, label=label)
                if not numeric:
                    ax.set_xticks(range(len(xs_all)), [str(v) for v in xs_all])
                ax.set_xlabel(axis)
                ax.set_ylabel(f"{metric} (mean, 95% CI)")
                ax.set_title(f"{self.name}: {metric} vs {axis}", fontsize=9)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7)
                fig.tight_layout()
                out[f"{_slug(metric)}-vs-{_slug(axis)}"] = fig
        return out

    def grid(self, *, max_seeds: int = 4, tile: int = 64):
        """A PIL image: one block per setting (rows: the first swept parameter's values; columns: the
        others'), each block the first image of up to `max_seeds` seeds side by side. None without images."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image

        from labkit.grids import image_grid

        fin = self.finished
        if not len(fin) or not fin["image"].map(bool).any():
            return None
        axes = list(self.axes)
        row_axis = axes[0] if axes else None
        col_axes = axes[1:]
        row_vals = _ordered(fin[row_axis]) if row_axis else [None]
        col_keys = _ordered(fin.apply(lambda r: tuple(_hashable(r[c]) for c in col_axes), axis=1)) if col_axes \
            else [()]
        seeds = _ordered(fin["seed"]) if "seed" in fin.columns else [None]
        seeds = seeds[:max_seeds]
        with Image.open(next(f for f in fin["image"] if f)) as first:  # wide outputs (e.g. grids) keep their shape
            aspect = min(max(first.width / first.height, 0.25), 8.0)
        tile_w = round(tile * aspect)
        fig = Figure(figsize=(max(2.0, 0.9 * aspect * len(seeds)) * len(col_keys) + 1.0, 1.2 * len(row_vals) + 0.6),
                     dpi=100)
        FigureCanvasAgg(fig)
        for i, rv in enumerate(row_vals):
            for j, ck in enumerate(col_keys):
                ax = fig.add_subplot(len(row_vals), len(col_keys), i * len(col_keys) + j + 1)
                ax.set_xticks([])
                ax.set_yticks([])
                cells: list[Any] = [None] * len(seeds)
                for s_i, seed in enumerate(seeds):
                    m = fin
                    if row_axis:
                        m = m[m[row_axis].map(lambda x, rv=rv: _same(x, rv))]
                    for c, v in zip(col_axes, ck, strict=True):
                        m = m[m[c].map(lambda x, v=v: _same(_hashable(x), v))]
                    if seed is not None:
                        m = m[m["seed"] == seed]
                    if len(m) and m.iloc[0]["image"]:
                        with Image.open(m.iloc[0]["image"]) as img:
                            cells[s_i] = img.convert("RGB")
                ax.imshow(image_grid(cells, len(seeds), tile=(tile_w, tile)))
                if j == 0 and row_axis:
                    ax.set_ylabel(f"{row_axis}={rv}", fontsize=8)
                if i == 0:
                    ax.set_title(", ".join(f"{c}={v}" for c, v in zip(col_axes, ck, strict=True))
                                 or (f"seeds {', '.join(map(str, seeds))}" if seeds != [None] else ""), fontsize=8)
        fig.suptitle(f"{self.name}: seeds {', '.join(str(s) for s in seeds)} left to right", fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    # -- text ---------------------------------------------------------------------------------------

    def table(self):
        """The summary as a readable DataFrame: each metric as 'mean ± half-CI' plus n."""
        import pandas as pd

        rows = []
        for r in self.summary.to_dict("records"):  # not iterrows(): it turns whole numbers into floats
            row = {a: r[a] for a in self.axes if a in self.summary.columns}
            for m in self.metrics:
                if f"{m}.mean" in r:
                    row[f"{m} n"] = int(r[f"{m}.n"])
                    row[f"{m} mean"] = r[f"{m}.mean"]
                    row[f"{m} 95% CI"] = _ci_text(r[f"{m}.ci_low"], r[f"{m}.ci_high"])
            rows.append(row)
        return pd.DataFrame(rows)

    def lines(self) -> list[str]:
        out = [f"sweep {self.name!r} (run {self.parent_run_id}): {len(self.frame)} runs, "
               f"{len(self.finished)} finished; swept: {', '.join(self.axes) or 'nothing'}"]
        table = self.table()
        out += table.to_string(index=False).splitlines() if len(table) else ["no finished runs to summarise"]
        out += [p.line() for p in self.comparisons]
        out += [f"warning: {w}" for w in self.warnings]
        return out

    def html(self) -> str:
        """One self-contained HTML page: the summary, the paired comparisons, the figures, the grid, every run."""
        parts = [f"<h1>Sweep {html.escape(self.name)}</h1>",
                 f"<p>parent run <code>{self.parent_run_id}</code>; {len(self.frame)} runs, {len(self.finished)} "
                 f"finished; swept: {html.escape(', '.join(self.axes) or 'nothing')}</p>"]
        if self.description:
            parts.append(f"<p>{html.escape(self.description)}</p>")
        parts += [f"<p class='labkit-warning'><strong>Warning:</strong> {html.escape(w)}</p>" for w in self.warnings]
        parts += ["<h2>Per setting: mean and 95% confidence interval over seeds</h2>",
                  self.table().to_html(index=False, float_format=lambda v: f"{v:.4g}", classes="labkit-summary")]
        if self.comparisons:
            parts.append("<h2>Paired comparisons</h2><ul>")
            parts += [f"<li>{html.escape(p.line())}</li>" for p in self.comparisons]
            parts.append("</ul>")
        for name, fig in self.figures().items():
            parts.append(f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" src="{_data_uri(fig)}">')
        grid = self.grid()
        if grid is not None:
            buf = io.BytesIO()
            grid.save(buf, format="PNG")
            parts.append('<h2>Images</h2><img alt="grid" src="data:image/png;base64,'
                         f'{base64.b64encode(buf.getvalue()).decode()}">')
        shown = [c for c in self.frame.columns if c not in ("image",)]
        parts += ["<h2>Every run</h2>", self.frame[shown].to_html(index=False, float_format=lambda v: f"{v:.4g}")]
        return ("<!doctype html><html><head><meta charset='utf-8'><title>sweep "
                f"{html.escape(self.name)}</title></head><body>{''.join(parts)}</body></html>")

    def log(self, lab: Lab) -> None:
        """Write the tables, figures, grid, comparisons and HTML page into the parent run, under summary/."""
        import tempfile

        from labkit.tracking.store import Run

        client = lab.tracker.client
        info = client.get_run(self.parent_run_id).info
        run = Run(client, self.parent_run_id, info.experiment_id, info.artifact_uri)
        with tempfile.TemporaryDirectory(prefix="labkit-summary-") as tmp:
            folder = Path(tmp)
            self.frame.drop(columns=["image"]).to_csv(folder / "runs.csv", index=False)
            self.summary.to_csv(folder / "summary.csv", index=False)
            for name, fig in self.figures().items():
                fig.savefig(folder / f"{name}.png")
            grid = self.grid()
            if grid is not None:
                grid.save(folder / "grid.png")
            (folder / "paired.json").write_text(json.dumps([p.to_dict() for p in self.comparisons], indent=2,
                                                           default=str, allow_nan=False))
            (folder / "summary.html").write_text(self.html())
            (folder / "summary.txt").write_text("\n".join(self.lines()) + "\n")
            run.log_artifact(folder, "summary")
        best = {}
        for m in self.metrics:
            col = f"{m}.mean"
            if col in self.summary.columns and self.summary[col].notna().any():
                # the highest and the lowest setting's mean: which is best depends on the metric (seconds, loss)
                best[f"summary.max.{m}"] = float(self.summary[col].max())
                best[f"summary.min.{m}"] = float(self.summary[col].min())
        for p in self.comparisons:
            best[f"paired.{p.metric}.diff"] = p.mean_diff
            if p.p_value is not None:
                best[f"paired.{p.metric}.p"] = p.p_value
        run.log_metrics(best)


def _ci_text(low: float, high: float) -> str:
    if low is None or math.isnan(low):
        return "n/a (1 seed)"
    return f"{low:.4g} – {high:.4g}"


def _data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers; NaN (a parameter a point does not set) as None."""
    if _missing(v):
        return None
    return v.item() if hasattr(v, "item") else v


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _same(x: Any, v: Any) -> bool:
    if _missing(x) or _missing(v):  # a parameter a point does not set (NaN in the frame)
        return _missing(x) and _missing(v)
    if isinstance(x, (int, float)) and isinstance(v, (int, float)) and not isinstance(x, bool):
        return float(x) == float(v)
    return _hashable(x) == _hashable(v)


def _ordered(values) -> list[Any]:
    """Distinct values in first-seen order (numbers sorted)."""
    seen: list[Any] = []
    for v in values:
        h = _hashable(v)
        if h not in [_hashable(s) for s in seen]:
            seen.append(v)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return sorted(seen)
    return seen


def sweep_frame(lab: Lab, parent_run_id: str):
    """One row per point of a sweep: run_id, index, status, the point's parameters (typed, as in the
    spec), seed, every metric, and the first output image (path or None). When a point ran more than
    once (a failure, then --resume), its finished run wins, else its latest."""
    import pandas as pd

    from labkit.sweeps.runner import TAG_DONE, TAG_INDEX, TAG_KEY, TAG_PARAMS, children
    from labkit.tracking.compare import RunSummary

    runs = children(lab, parent_run_id)
    best: dict[str, Any] = {}
    for r in runs:  # oldest first: later runs replace earlier ones unless those finished
        key = r.data.tags[TAG_KEY]
        prev = best.get(key)
        if prev is None or not (prev.info.status == "FINISHED" and prev.data.tags.get(TAG_DONE) == "1"):
            best[key] = r
    rows, params = [], []
    for r in sorted(best.values(), key=lambda r: int(r.data.tags.get(TAG_INDEX, 0))):
        values = json.loads(r.data.tags.get(TAG_PARAMS, "{}"))
        params += [k for k in values if k not in params]
        summary = RunSummary.from_mlflow(r, lab.tracker)
        images = summary.images or _nested_images(lab, r)
        status = r.info.status if r.data.tags.get(TAG_DONE) == "1" or r.info.status != "FINISHED" else "INCOMPLETE"
        rows.append({"run_id": r.info.run_id, "index": int(r.data.tags.get(TAG_INDEX, 0)), "status": status,
                     **values, **{k: v for k, v in r.data.metrics.items() if not k.startswith("system/")},
                     "error": r.data.tags.get("labkit.error", ""), "image": str(images[0]) if images else None})
    frame = pd.DataFrame(rows)
    if not len(frame):
        frame = pd.DataFrame(columns=["run_id", "index", "status", "error", "image"])
    return frame, [p for p in params if p != "seed"]


def _nested_images(lab: Lab, run) -> list[Path]:
    from labkit.sweeps.runner import nested_images

    return [f for f, _ in nested_images(lab, run.info.run_id, run.info.experiment_id)]


def summarize(frame, metrics: Sequence[str], by: Sequence[str]):
    """Per setting (the values of `by`), each metric's n, mean, std and 95% CI over the finished runs."""
    import pandas as pd

    fin = frame[frame["status"] == "FINISHED"] if len(frame) else frame
    rows = []
    if not len(fin):
        return pd.DataFrame(columns=list(by))
    keys = _ordered(fin.apply(lambda r: tuple(_hashable(r[b]) for b in by), axis=1)) if by else [()]
    for key in keys:
        m = fin
        for b, v in zip(by, key, strict=True):
            m = m[m[b].map(lambda x, v=v: _same(_hashable(x), v))]
        row: dict[str, Any] = {b: m[b].iloc[0] for b in by}
        for metric in metrics:
            if metric in m.columns:
                s = mean_ci(m[metric].dropna().tolist())
                row.update({f"{metric}.{k}": v for k, v in s.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def report(lab: Lab, parent_run_id: str, *, metrics: Sequence[str] | None = None,
           compare: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], str | None]] | None = None,
           log: bool = False) -> SweepReport:
    """The `SweepReport` of the sweep whose parent run is `parent_run_id`.

    metrics: what to summarise, a list of names or one name (default: the spec's `metrics:`, else every metric but
    bookkeeping);
    compare: paired comparisons as (a, b, metric) (default: the spec's `compare:`); log: write it all
    into the parent run under `summary/`. A metric or comparison asked for here that no finished run can give
    raises `InvalidParameter`; one the spec asked for is left out with a line in `warnings` (the runs stay).
    """
    if isinstance(metrics, str):  # one metric, not its letters
        metrics = [metrics]
    if metrics is not None and (not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics)):
        raise InvalidParameter(f"metrics must be metric names, got {type(metrics).__name__} {metrics!r:.80}.",
                               value=metrics, fix='pass a name or a list of names, e.g. ["adherence.all_correct"].')
    client = lab.tracker.client
    try:
        parent = client.get_run(parent_run_id)
    except Exception as e:
        raise InvalidParameter(f"Run {parent_run_id!r} is not in the store {lab.config.tracking_uri}.",
                               value=parent_run_id, fix="pass the sweep's parent run id (printed by labkit sweep)."
                               ) from e
    if parent.data.tags.get("labkit.job") != "sweep":
        raise InvalidParameter(f"Run {parent_run_id!r} is not a sweep's parent run.", value=parent_run_id,
                               fix="pass the run id `labkit sweep` printed (its run is named 'sweep …').")
    spec = _spec_of(lab, parent)
    frame, params = sweep_frame(lab, parent_run_id)
    axes = tuple(json.loads(parent.data.tags.get("labkit.sweep.axes", "[]"))) or tuple(
        p for p in params if p in frame.columns and frame[p].map(_hashable).nunique() > 1)
    rep = SweepReport(parent_run_id=parent_run_id, name=parent.data.tags.get("labkit.sweep.name", ""), axes=axes,
                      metrics=(), frame=frame, summary=None, description=spec.get("description", ""),
                      params=tuple(params))
    known = rep.recorded_metrics
    asked = metrics is not None
    if metrics is None:
        metrics = spec.get("metrics") or [c for c in known if not c.startswith("system/") and c not in _BOOKKEEPING]
    unknown = [m for m in metrics if m not in known]
    if unknown and len(rep.finished):  # with no finished run the summary says so; a metric cannot be judged
        err = rep.no_metric(unknown)
        if asked:
            raise err
        rep.warnings.append(f"the spec's `metrics:` names {' and '.join(map(repr, unknown))}, which no finished "
                            f"run recorded, so the summary leaves {'it' if len(unknown) == 1 else 'them'} out. "
                            f"Fix: {err.fix}")
    rep.metrics = tuple(m for m in metrics if m in known)
    rep.summary = summarize(frame, rep.metrics, [a for a in axes if a in frame.columns])
    wanted = list(compare or [])
    if compare is None and spec.get("compare"):
        c = spec["compare"]
        wanted = [(c["a"], c["b"], c.get("metric"))]
    for a, b, metric in wanted:
        try:
            rep.comparisons.append(rep.paired(a, b, metric))
        except InvalidParameter as e:
            if compare is not None:  # asked for explicitly: say why it cannot be done
                raise
            if len(rep.finished):
                rep.warnings.append(f"the spec's `compare:` ({_fmt(b)} vs {_fmt(a)}) was not made: {e}")
    for w in rep.warnings:
        logger.warning("sweep %r (run %s): %s", rep.name, parent_run_id, w)
    if log:
        rep.log(lab)
    return rep


def _spec_of(lab: Lab, parent) -> dict[str, Any]:
    """The spec a sweep ran (its `sweep/spec.json` artifact), or {} when it cannot be read."""
    import tempfile

    from labkit.tracking.store import Run

    local = Run(lab.tracker.client, parent.info.run_id, parent.info.experiment_id, parent.info.artifact_uri)
    try:
        path = local.artifact_dir / "sweep" / "spec.json"
        if path.is_file():
            return json.loads(path.read_text())
        with tempfile.TemporaryDirectory() as tmp:  # a remote artifact store
            return json.loads(Path(lab.tracker.client.download_artifacts(parent.info.run_id, "sweep/spec.json",
                                                                          tmp)).read_text())
    except Exception:
        return {}


__all__ = ["Paired", "SweepReport", "mean_ci", "report", "summarize", "sweep_frame"]
