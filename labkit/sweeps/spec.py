"""Sweep specs: one YAML file per study (`experiments/*.yaml`), read and checked before anything runs.

```yaml
name: toy-steps-guidance          # the study; its parent run is named after it
description: What the study asks.
plan:                             # what one point runs: a plan template rendered through the Lab API …
  prompt: "a small {colour} circle on the left"   # {axis} is filled from the point's parameters
  model: toyworld
  count: 4
# notebook: notebooks/00_quickstart.ipynb        # … or a notebook run by papermill (its `parameters` cell)
parameters: {size: [64, 64]}      # the same for every point
grid:                             # lists: every combination is a point
  steps: [4, 8]
  guidance: [2.0, 4.0]
points: []                        # and/or explicit points, each a mapping of parameters
seeds: 3                          # each point runs once per seed: a count (0, 1, 2) or a list
score: toyworld                   # scorer for each point's images (toyworld: prompt adherence)
metrics: [adherence.all_correct]  # what the summary reports (default: every metric)
compare: {a: {steps: 4}, b: {steps: 8}, metric: adherence.all_correct}   # a paired comparison
max_runs: 100                     # more runs than this need --yes
```
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import ConfigError, LabkitError

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.plan import Plan

KEYS = ("name", "description", "experiment", "notebook", "kernel", "timeout", "plan", "parameters", "grid",
        "points", "seeds", "score", "metrics", "compare", "max_runs")
#: More runs than this need `--yes` (or `max_runs:` in the spec).
DEFAULT_MAX_RUNS = 100
#: No sweep starts more runs than this, even with `--yes`: split such a study into several specs.
HARD_MAX_RUNS = 100_000
SCORERS = ("toyworld",)
#: The metric namespaces each scorer writes; a plan point's render writes none of them (`time.*`, `vram/*`, …).
SCORER_NAMESPACES = {"toyworld": ("adherence.", "geneval.")}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Point:
    """One point of a sweep run with one seed: its parameters (fixed ones included) and its seed
    (None when the spec has no seeds). `key` identifies it across runs of the sweep (for --resume)."""

    index: int
    params: Mapping[str, Any]
    seed: int | None

    @property
    def values(self) -> dict[str, Any]:
        """The parameters with the seed, as injected into a notebook or a plan."""
        return {**self.params, **({"seed": self.seed} if self.seed is not None else {})}

    @property
    def key(self) -> str:
        return _dumps(self.values)

    def label(self, axes: tuple[str, ...] = ()) -> str:
        shown = {k: v for k, v in self.params.items() if not axes or k in axes}
        parts = [f"{k}={_short(v)}" for k, v in shown.items()]
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return " ".join(parts) or f"point {self.index}"


def _dumps(value: Any) -> str:
    """Canonical JSON of a YAML value: keys sorted when they can be (YAML allows `{1: a, b: c}`, which
    cannot), anything JSON lacks (dates) as its str."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except TypeError:
        return json.dumps(value, default=str)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 30 else text[:27] + "…"


@dataclass(frozen=True)
class SweepSpec:
    """A study read from YAML (see the module docstring); `points()` expands it."""

    name: str
    path: Path | None = None
    description: str = ""
    experiment: str | None = None
    notebook: Path | None = None
    kernel: str = "python3"
    timeout: float | None = None
    plan: Mapping[str, Any] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, list[Any]] = field(default_factory=dict)
    explicit: tuple[Mapping[str, Any], ...] = ()
    seeds: tuple[int, ...] | None = None
    score: str | None = None
    metrics: tuple[str, ...] = ()
    compare: Mapping[str, Any] | None = None
    max_runs: int = DEFAULT_MAX_RUNS
    text: str = ""

    @property
    def kind(self) -> str:
        """"notebook" or "plan": what one point runs."""
        return "notebook" if self.notebook is not None else "plan"

    @property
    def sha(self) -> str:
        """A digest of the spec's text (recorded on the parent run)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @property
    def axes(self) -> tuple[str, ...]:
        """The parameters that vary between points (the seed is not an axis)."""
        names: list[str] = list(self.grid)
        for p in self.explicit:
            names += [k for k in p if k not in names]
        points = self.points()
        return tuple(n for n in names if len({_dumps(p.params.get(n))
                                              for p in points}) > 1)

    def settings(self) -> list[dict[str, Any]]:
        """Every setting (parameters without the seed): the grid's product, then the explicit points."""
        out = []
        if self.grid:
            names = list(self.grid)
            for combo in itertools.product(*(self.grid[n] for n in names)):
                out.append({**self.parameters, **dict(zip(names, combo, strict=True))})
        out += [{**self.parameters, **p} for p in self.explicit]
        return out

    def count(self) -> int:
        """How many runs `points()` gives, counted without listing them."""
        settings = math.prod(len(v) for v in self.grid.values()) if self.grid else 0
        return (settings + len(self.explicit)) * (len(self.seeds) if self.seeds is not None else 1)

    def points(self) -> list[Point]:
        """Every (setting, seed) pair in order: settings outer, seeds inner."""
        seeds: tuple[int | None, ...] = self.seeds if self.seeds is not None else (None,)
        return [Point(i, s, seed) for i, (s, seed) in enumerate(itertools.product(self.settings(), seeds))]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "notebook": str(self.notebook) if self.notebook else None,
                "plan": dict(self.plan) if self.plan else None, "parameters": dict(self.parameters),
                "grid": dict(self.grid), "points": [dict(p) for p in self.explicit],
                "seeds": list(self.seeds) if self.seeds is not None else None, "score": self.score,
                "metrics": list(self.metrics), "compare": dict(self.compare) if self.compare else None}

    # -- checking -------------------------------------------------------------------------------

    def check(self, lab: Lab | None = None, *, yes: bool = False) -> list[Point]:
        """Every point, after checking what can be checked without running anything: the grid is not
        empty; the run count is within `max_runs` (or `yes`); every parameter is in the notebook's
        `parameters` cell, or is a plan field or a `{placeholder}` of the template; a plan spec's metrics in a
        scorer's namespace (`adherence.*`) are ones its scorer writes; and, given a lab, each point's plan
        completes and validates. Raises `ConfigError` naming the problem."""
        runs = self.count()  # counted first: a grid of a billion points must not be listed to be refused
        if not runs:
            raise ConfigError(f"The sweep {self.name!r} has no points: its grid and points are empty.",
                              value=self.where, fix="give `grid:` at least one parameter with a list of values, "
                                                    "or list `points:`.")
        if runs > HARD_MAX_RUNS:
            raise ConfigError(f"The sweep {self.name!r} would start {runs} runs, more than labkit's limit of "
                              f"{HARD_MAX_RUNS}.", value=runs,
                              fix="make the grid smaller, or split the study into several specs.")
        if runs > self.max_runs and not yes:
            raise ConfigError(f"The sweep {self.name!r} would start {runs} runs, more than {self.max_runs}.",
                              value=runs, fix="pass --yes (yes=True) if you mean it, raise `max_runs:` in "
                                              "the spec, or make the grid smaller.")
        points = self.points()
        names = set(self.parameters) | set(self.grid) | {k for p in self.explicit for k in p}
        if self.kind == "notebook":
            self._check_notebook(names)
        else:
            self._check_plan(names, points, lab)
            self._check_metrics()
        if self.compare is not None:
            self._check_compare(points)
        return points

    @property
    def where(self) -> str:
        return str(self.path) if self.path else self.name

    def _check_notebook(self, names: set[str]) -> None:
        from labkit.notebooks import notebook_parameters

        declared = notebook_parameters(self.notebook)
        wanted = names | ({"seed"} if self.seeds is not None else set())
        unknown = sorted(wanted - set(declared))
        if unknown:
            raise ConfigError(
                f"The sweep {self.name!r} sets {', '.join(map(repr, unknown))}, which the notebook "
                f"{self.notebook.name!r} does not declare in its `parameters` cell.", value=unknown,
                fix=f"use only {sorted(declared)}, or add the parameter to the notebook's `parameters` cell.")

    def _check_plan(self, names: set[str], points: list[Point], lab: Lab | None) -> None:
        from labkit.plan import Plan

        fields = {f.name for f in dataclasses.fields(Plan)} | {"size"}
        template = dict(self.plan or {})
        bad = sorted(set(template) - fields)
        if bad:
            raise ConfigError(f"The sweep {self.name!r}'s plan has unknown field(s) {bad}.", value=bad,
                              fix=f"use plan fields only: {sorted(fields)}.")
        used = {m for v in template.values() if isinstance(v, str) for m in _PLACEHOLDER.findall(v)}
        unknown = sorted(n for n in names if n not in fields and n not in used)
        if unknown:
            raise ConfigError(
                f"The sweep {self.name!r} sets {', '.join(map(repr, unknown))}, which is neither a plan field nor "
                f"a {{placeholder}} in its plan template.", value=unknown,
                fix=f"use plan fields ({', '.join(sorted(fields))}) or write {{{unknown[0]}}} into the template, "
                    f"e.g. prompt: \"a {{{unknown[0]}}} circle\".")
        missing = sorted(used - names)
        if missing:
            raise ConfigError(f"The sweep {self.name!r}'s plan template uses {{{missing[0]}}}, which no parameter "
                              "sets.", value=missing, fix=f"add {missing[0]} to `parameters:` or `grid:`.")
        if lab is not None:
            seen: set[str] = set()
            for p in points:
                plan = self.plan_for(p)
                if plan.to_json() in seen:
                    continue
                seen.add(plan.to_json())
                try:
                    lab.complete(plan)
                except LabkitError as e:
                    raise ConfigError(f"Point {p.index} of the sweep {self.name!r} ({p.label()}) is not a valid "
                                      f"plan: {e.message}", value=e.value, fix=e.fix) from e

    def _check_metrics(self) -> None:
        """A plan point's metrics are its render's and its scorer's: a name in a scorer's namespace that the
        scorer never writes (`adherence.all_corect`) can be refused before anything runs. Other names are
        judged after the sweep, against what its runs recorded (`labkit.sweeps.stats.report`)."""
        wanted = [*self.metrics, *([self.compare["metric"]] if self.compare and self.compare.get("metric") else [])]
        for scorer, spaces in SCORER_NAMESPACES.items():
            known = sorted(scorer_metrics(scorer)) if self.score == scorer else []
            for m in wanted:
                if not m.startswith(spaces) or m in known:
                    continue
                where = "compare.metric" if m not in self.metrics else "`metrics:`"
                if not known:
                    raise ConfigError(f"The sweep {self.name!r} names the metric {m!r} ({where}), which only "
                                      f"`score: {scorer}` records, and the spec has no such score.", value=m,
                                      fix=f"add `score: {scorer}` to the spec, or remove {m!r}.")
                close = difflib.get_close_matches(m, known, n=3, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"The sweep {self.name!r} names the metric {m!r} ({where}), which `score: "
                                  f"{scorer}` never records.", value=m,
                                  fix=f"{hint}use one of {', '.join([*close, *(k for k in known if k not in close)])}.")

    def _check_compare(self, points: list[Point]) -> None:
        cmp = dict(self.compare or {})
        for side in ("a", "b"):
            setting = cmp.get(side)
            if not isinstance(setting, Mapping) or not setting:
                raise ConfigError(f"The sweep {self.name!r}'s `compare:` needs `{side}:`, a mapping of parameters.",
                                  value=setting, fix="write e.g. compare: {a: {steps: 4}, b: {steps: 8}}.")
            if not any(all(p.params.get(k) == v for k, v in setting.items()) for p in points):
                raise ConfigError(f"No point of the sweep {self.name!r} has {dict(setting)} (compare.{side}).",
                                  value=dict(setting), fix="name values that are in the grid or the points.")

    def plan_for(self, point: Point) -> Plan:
        """The plan a point renders: the template with the point's parameters and seed."""
        from labkit.plan import Plan

        values = dict(point.values)
        data: dict[str, Any] = {}
        for k, v in (self.plan or {}).items():
            data[k] = _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), v) if isinstance(v, str) \
                else v
        fields = {f.name for f in dataclasses.fields(Plan)}
        data.update({k: v for k, v in values.items() if k in fields or k == "size"})
        if "size" in data:
            size = data.pop("size")
            if not (isinstance(size, (list, tuple)) and len(size) == 2) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in size):
                raise ConfigError(f"size {_shown(size)} is not [width, height] in whole pixels.", value=_shown(size),
                                  fix="write size: [64, 64].")
            data["width"], data["height"] = size[0], size[1]
        if data.get("seed") is None:
            data["seed"] = 0  # a sweep is reproducible: no point draws a random seed
        try:
            return Plan.from_dict(data)
        except LabkitError as e:
            raise ConfigError(f"The sweep {self.name!r}'s point {point.index} ({point.label()}) is not a plan: "
                              f"{e.message}", value=e.value, fix=e.fix) from e
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"The sweep {self.name!r}'s plan template is not a plan: {e}.", value=_shown(data),
                              fix="give the plan fields as a mapping (prompt, model, steps, …).") from e


def scorer_metrics(scorer: str) -> frozenset[str]:
    """Every metric `scorer` can write on a point (`labkit.sweeps.runner.score_images`); which of them a point
    gets depends on its prompts."""
    if scorer != "toyworld":
        return frozenset()
    from labkit.toyworld.adherence import ATTRS
    from labkit.toyworld.geneval import CATEGORIES

    return frozenset({*(f"adherence.{a}" for a in ATTRS), "adherence.images",
                      *(f"geneval.{c}" for c in CATEGORIES), "geneval.overall", "geneval.skipped"})


def load_spec(path: str | Path, *, root: str | Path | None = None) -> SweepSpec:
    """Read a sweep spec from YAML and check its shape (not yet its notebook or plans: see `check`).

    A relative notebook path is looked up beside the spec, then in `root` (the project folder).
    Raises `ConfigError` naming the bad key or value (or the file and line that is not UTF-8 / YAML).
    """
    import yaml

    from labkit.files import read_text

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"There is no sweep spec at {str(path)!r}.", value=str(path),
                          fix="name a YAML file, e.g. experiments/toy-steps-guidance.yaml.")
    text = read_text(path, what="sweep spec", fix="name a YAML file, e.g. experiments/toy-steps-guidance.yaml.")
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {e.problem or e.context or e}.", value=str(path),
                          fix="fix the YAML syntax at the position shown.") from e
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        # PyYAML raises ValueError for a date such as 2024-13-45, RecursionError for absurd nesting.
        raise ConfigError(f"{path} is not valid YAML: {type(e).__name__}: {e}.", value=str(path),
                          fix="fix the YAML value it names (quote dates and odd values as strings).") from e
    return spec_from_dict(data, path=path, root=root, text=text)


def spec_from_dict(data: Any, *, path: Path | None = None, root: str | Path | None = None,
                   text: str | None = None) -> SweepSpec:
    """A `SweepSpec` from its mapping form (what the YAML holds); `ConfigError` naming the first bad key."""
    where = str(path) if path else "the sweep spec"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys (name, plan or notebook, grid, seeds…), not "
                          f"{_kind(data)}.", value=_shown(data), fix="start from one of the specs in experiments/.")
    unknown = sorted((k for k in data if k not in KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}.", value=unknown, fix=f"use only {list(KEYS)}.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where} has no `name:` (it is {_shown(name)}).", value=name,
                          fix="give the study a name, e.g. name: steps-x-cfg.")
    if ("notebook" in data) == ("plan" in data):
        raise ConfigError(f"The sweep {name!r} must have exactly one of `notebook:` and `plan:`.",
                          value=sorted(k for k in ("notebook", "plan") if k in data),
                          fix="name a notebook to run with papermill, or give a plan template to render.")
    description = _text(data, "description", name, "description: What the study asks", allow_number=True)
    experiment = _text(data, "experiment", name, 'experiment: "my-study" (an MLflow experiment name)')
    kernel = _text(data, "kernel", name, "kernel: python3 (a Jupyter kernel name)")
    notebook = None
    if "notebook" in data:
        nb = _text(data, "notebook", name, "notebook: notebooks/00_quickstart.ipynb")
        notebook = _find_notebook(nb or "", path, root, name)
    plan = data.get("plan")
    if plan is not None and not isinstance(plan, Mapping):
        raise ConfigError(f"The sweep {name!r}'s `plan:` must be a mapping of plan fields, not {_shown(plan)}.",
                          value=_shown(plan), fix="write e.g. plan: {prompt: 'a red circle', model: toyworld}.")
    if plan is not None:
        _names(plan, "plan", name)
    parameters = _mapping(data.get("parameters"), "parameters", name)
    grid = _mapping(data.get("grid"), "grid", name)
    for axis, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(f"The sweep {name!r}'s grid axis {axis!r} is {_shown(values)}, not a list.",
                              value=values, fix=f"write {axis}: [{_shown(values)}], or move it to `parameters:` "
                                                "if it does not vary.")
        if not values:
            raise ConfigError(f"The sweep {name!r}'s grid axis {axis!r} is empty.", value=axis,
                              fix=f"give {axis} at least one value, or remove it.")
    points = data.get("points") or []
    if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
        raise ConfigError(f"The sweep {name!r}'s `points:` must be a list of mappings, not {_shown(points)}.",
                          value=_shown(points), fix="write e.g. points: [{steps: 4}, {steps: 8, guidance: 2.0}].")
    for i, p in enumerate(points):
        _names(p, f"points[{i}]", name)
    seeds = _seeds(data.get("seeds"), name)
    score = data.get("score")
    if score is not None and (not isinstance(score, str) or score not in SCORERS):
        raise ConfigError(f"Unknown scorer {_shown(score)} in the sweep {name!r}.", value=_shown(score),
                          fix=f"use one of {SCORERS}, or remove `score:`.")
    metrics = data.get("metrics") or []
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m.strip() for m in metrics):
        raise ConfigError(f"The sweep {name!r}'s `metrics:` is {_shown(metrics)}, not a list of metric names.",
                          value=_shown(metrics), fix="write e.g. metrics: [adherence.all_correct].")
    compare = data.get("compare")
    if compare is not None and not isinstance(compare, Mapping):
        raise ConfigError(f"The sweep {name!r}'s `compare:` must be a mapping, not {_shown(compare)}.",
                          value=_shown(compare),
                          fix="write compare: {a: {steps: 4}, b: {steps: 8}, metric: adherence.all_correct}.")
    if compare is not None and "metric" in compare and not isinstance(compare["metric"], str):
        raise ConfigError(f"The sweep {name!r}'s compare.metric is {_shown(compare['metric'])}, not a metric name.",
                          value=_shown(compare["metric"]), fix="write e.g. metric: adherence.all_correct.")
    max_runs = data.get("max_runs", DEFAULT_MAX_RUNS)
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or not 1 <= max_runs <= HARD_MAX_RUNS:
        raise ConfigError(f"The sweep {name!r} has max_runs: {_shown(max_runs)}, not a whole number from 1 to "
                          f"{HARD_MAX_RUNS}.", value=_shown(max_runs), fix="write e.g. max_runs: 500.")
    timeout = data.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise ConfigError(f"The sweep {name!r} has timeout: {_shown(timeout)}, not a positive number of seconds.",
                          value=_shown(timeout), fix="write e.g. timeout: 600 (seconds per notebook), or remove "
                                                     "`timeout:` for no limit.")
    return SweepSpec(name=name.strip(), path=path, description=description or "",
                     experiment=experiment, notebook=notebook, kernel=kernel or "python3",
                     timeout=float(timeout) if timeout is not None else None,
                     plan=dict(plan) if plan is not None else None,
                     parameters=parameters, grid={k: list(v) for k, v in grid.items()},
                     explicit=tuple(dict(p) for p in points), seeds=seeds, score=score,
                     metrics=tuple(metrics), compare=dict(compare) if compare else None,
                     max_runs=max_runs, text=text if text is not None else _dumps(data))


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "empty"}.get(
        type(value), f"a {type(value).__name__}")


def _shown(value: Any) -> str:
    """A value as the message shows it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _text(data: Mapping[str, Any], key: str, name: str, example: str, *, allow_number: bool = False) -> str | None:
    """An optional text value: None when absent or empty; ConfigError when it is a list, a mapping, a bool…"""
    value = data.get(key)
    if value is None:
        return None
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"The sweep {name!r} has {key}: {_shown(value)}, not a text.", value=_shown(value),
                          fix=f"write e.g. {example}; quote it if it looks like a number.")
    return value


def _names(mapping: Mapping[Any, Any], key: str, name: str) -> None:
    bad = sorted((k for k in mapping if not isinstance(k, str) or not k), key=str)
    if bad:
        raise ConfigError(f"The sweep {name!r}'s `{key}:` has key(s) {bad} that are not names.", value=bad,
                          fix="use parameter names such as steps or guidance (quote them if they look like numbers).")


def _mapping(value: Any, key: str, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"The sweep {name!r}'s `{key}:` must be a mapping of parameter → value, not "
                          f"{_shown(value)}.", value=_shown(value),
                          fix=f"write e.g. {key}: {{steps: [4, 8]}}." if key == "grid" else f"write e.g. {key}: "
                                                                                            "{steps: 4}.")
    _names(value, key, name)
    return dict(value)


def _seeds(value: Any, name: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, list) and value and all(
            isinstance(s, int) and not isinstance(s, bool) for s in value))):
        raise ConfigError(f"The sweep {name!r} has seeds {_shown(value)}.", value=_shown(value),
                          fix="write a count (seeds: 3 means 0, 1, 2) or a list of whole numbers (seeds: [7, 8]).")
    if isinstance(value, int):
        if not 1 <= value <= HARD_MAX_RUNS:
            raise ConfigError(f"The sweep {name!r} has seeds: {value}.", value=value,
                              fix=f"use from 1 to {HARD_MAX_RUNS} seeds.")
        return tuple(range(value))
    bad = [s for s in value if not 0 <= s < 2**63]
    if bad:
        raise ConfigError(f"The sweep {name!r} has seed {bad[0]}, outside 0 … 2**63 - 1.", value=bad[0],
                          fix="use whole numbers from 0, e.g. seeds: [7, 8].")
    return tuple(value)


def _find_notebook(name: str, spec_path: Path | None, root: str | Path | None, sweep: str) -> Path:
    """The notebook `name` names: itself when absolute, else the first that exists of the spec's folder, the
    project and the working directory joined with it; `ConfigError` naming each place looked at once."""
    given = Path(name).expanduser()
    bases = [] if given.is_absolute() else [*([spec_path.parent] if spec_path else []), *([Path(root)] if root else []),
                                            Path.cwd()]
    candidates: list[Path] = []
    for c in [given] if given.is_absolute() else [base / given for base in bases]:
        c = Path(os.path.abspath(c))  # the spec's folder may be relative: say where, not where from
        if c not in candidates:  # the project is often the working directory: one place, named once
            candidates.append(c)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is not None:
        books = sorted(folder.glob("*.ipynb"))
        example = f", e.g. notebook: {(Path(name) / books[0].name).as_posix()}" if books else ""
        raise ConfigError(f"The sweep {sweep!r} names the notebook {name!r}, and {str(folder)!r} is a folder.",
                          value=name, fix=f"name the .ipynb file in it{example}.")
    where = "" if given.is_absolute() else " (looked for " + (
        ", ".join(map(str, candidates[:-1])) + " or " if len(candidates) > 1 else "") + f"{candidates[-1]})"
    spec = f" in {spec_path}" if spec_path else ""
    raise ConfigError(f"The sweep {sweep!r} names the notebook {name!r}, which does not exist{where}.",
                      value=name, fix=f"correct `notebook:`{spec} (a path relative to the spec's folder or the "
                                      "project, or an absolute one), or create the notebook there.")


__all__ = ["DEFAULT_MAX_RUNS", "Point", "SweepSpec", "load_spec", "scorer_metrics", "spec_from_dict"]
