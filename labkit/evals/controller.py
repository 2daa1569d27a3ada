"""The controller benchmark: plan every request of a suite and score the fields a user would check.

    from labkit.evals.controller import evaluate
    from labkit.controller.rules import RulesController
    report = evaluate(RulesController())
    print(report.to_table())          # per-field accuracy, latency, the cases that missed
    report["overall"]                 # fraction of checked fields that were right

The suite (`labkit/controller/suite.toml`, or any TOML of the same shape) is data: each case is a
request, a simulated hardware tier and the expected fields (see the file's header). Each case is
planned on `context_factory(case)` — by default `PlanContext.simulated(case["tier"])` with the
case's licence allow-list — and checked independently of the controller's own reasoning: the
plan is resolved against its catalogue entry and validated, and "fits" is recomputed from the
memory-strategy table.
"""

from __future__ import annotations

import statistics
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from labkit.controller.base import Controller, PlanContext
from labkit.errors import ConfigError, InvalidParameter, LabkitError

#: Fields in the order tables print them.
FIELDS = ("valid", "modality", "count", "fits", "frames", "seconds", "aspect", "styles", "negative",
          "prompt_has", "prompt_lacks", "model", "rationale_has", "error")
#: Fraction of a GPU tier's memory a model's starting strategy may use (as strategies.toml keeps).
HEADROOM = 0.85


class ControllerReport(dict):
    """The result of `evaluate`: a plain dict (JSON-able) with a `to_table()` for printing."""

    def to_table(self, *, failures: int = 20) -> str:
        return to_table(self, failures=failures)


def load_suite(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The cases of a suite file (the shipped `suite.toml` when None), checked for required keys."""
    if path is None:
        text = resources.files("labkit.controller").joinpath("suite.toml").read_text(encoding="utf-8")
        source = "labkit/controller/suite.toml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"Cannot read controller suite {str(path)!r}: {e}.", value=str(path),
                              fix="pass the path of a TOML file with [[cases]] tables.") from e
        source = str(path)
    try:
        cases = tomllib.loads(text).get("cases", [])
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Controller suite {source} is not valid TOML: {e}.", value=source,
                          fix="fix the TOML syntax at the position shown.") from e
    seen: set[str] = set()
    for i, c in enumerate(cases):
        for key in ("id", "request", "tier"):
            if key not in c:
                raise ConfigError(f"{source}: case #{i + 1} has no {key!r}.", value=c,
                                  fix="give every [[cases]] an id, a request and a tier.")
        if "error" not in c and "modality" not in c:
            raise ConfigError(f"{source}: case {c['id']!r} expects neither a modality nor an error.", value=c["id"],
                              fix='add modality = "image" / "video", or error = "InvalidParameter".')
        if c["id"] in seen:
            raise ConfigError(f"{source}: case id {c['id']!r} is repeated.", value=c["id"], fix="make ids unique.")
        seen.add(c["id"])
    if not cases:
        raise ConfigError(f"{source} has no [[cases]].", value=source, fix="add at least one case.")
    return cases


def case_request(case: Mapping[str, Any]) -> str:
    """The request text of a case (`repeat_to` repeats it up to that many characters)."""
    text = case["request"]
    n = int(case.get("repeat_to", 0) or 0)
    if n and text:
        text = (text * (n // len(text) + 1))[:n]
    return text


def default_context_factory() -> Callable[[Mapping[str, Any]], PlanContext]:
    """A factory building `PlanContext.simulated(case tier)`, the catalogue read once."""
    from labkit.catalog import Catalog

    catalog = Catalog.load(use_env=False)
    cache: dict[tuple[str, tuple[str, ...] | None], PlanContext] = {}

    def factory(case: Mapping[str, Any]) -> PlanContext:
        allowed = case.get("allowed_licences")
        key = (str(case["tier"]), tuple(sorted(allowed)) if allowed is not None else None)
        if key not in cache:
            mode = "suite-allow-list" if allowed is not None else "research"
            cache[key] = PlanContext.simulated(case["tier"], catalog=catalog, allowed_licences=allowed,
                                               compliance_mode=mode)
        return cache[key]

    return factory


def fits_tier(entry: Any, profile: Any) -> bool:
    """Whether a model suits the machine: on a GPU, its family's starting strategy's estimated peak
    is at most 85 % of the tier's GB; on a CPU, it is the toy model or a turbo (<= 4 steps) model."""
    from labkit.hardware import choose

    if entry is None:
        return False
    if profile.tier == "cpu":
        return entry.family == "toy" or entry.default_steps <= 4
    strategy = choose(entry.family, profile)
    return strategy.device == "gpu" and float(strategy.est_peak_vram_gb or 0.0) <= HEADROOM * float(profile.tier)


def _aspect(w: int, h: int) -> str:
    r = w / h
    return "landscape" if r > 1.1 else "portrait" if r < 1 / 1.1 else "square"


def check_case(case: Mapping[str, Any], plan: Any, error: BaseException | None, context: PlanContext
               ) -> dict[str, tuple[bool, str]]:
    """field -> (right, what was seen) for one case."""
    out: dict[str, tuple[bool, str]] = {}
    if "error" in case:
        seen = type(error).__name__ if error is not None else "a plan"
        out["error"] = (error is not None and type(error).__name__ == case["error"]
                        and isinstance(error, LabkitError), seen)
        return out
    if error is not None or plan is None:
        seen = f"{type(error).__name__}: {error}" if error is not None else "no plan"
        for f in FIELDS:
            if f == "valid" or f in ("modality", "count", "fits") or f in case:
                out[f] = (False, seen[:160])
        return out

    entry = context.catalog.find(plan.model) if plan.model else None
    try:
        resolved = plan.resolve(entry)
        resolved.validate(entry)
        out["valid"] = (True, "valid")
    except LabkitError as e:
        resolved = plan
        out["valid"] = (False, str(e)[:160])
    out["modality"] = (plan.modality == case["modality"], plan.modality)
    want_count = int(case.get("count", 1))
    out["count"] = (plan.count == want_count, str(plan.count))
    fits = fits_tier(entry, context.hardware)
    out["fits"] = (fits == bool(case.get("fits", True)), f"{plan.model} fits={fits}")
    if "frames" in case:
        lo, hi = case["frames"]
        fr = resolved.frames
        out["frames"] = (fr is not None and lo <= fr <= hi, str(fr))
    if "seconds" in case:
        lo, hi = case["seconds"]
        fr, fps = resolved.frames, resolved.fps
        secs = fr / fps if fr and fps else None
        out["seconds"] = (secs is not None and lo <= secs <= hi, f"{fr} frames / {fps} fps")
    if "aspect" in case:
        w, h = resolved.width, resolved.height
        got = _aspect(w, h) if w and h else "unknown"
        out["aspect"] = (got == case["aspect"], f"{w}x{h} {got}")
    low_prompt = plan.prompt.lower()
    for f, text in (("styles", low_prompt), ("negative", plan.negative_prompt.lower()),
                    ("prompt_has", low_prompt), ("rationale_has", plan.rationale.lower())):
        if f in case:
            missing = [t for t in case[f] if t.lower() not in text]
            out[f] = (not missing, f"missing {missing}" if missing else "all present")
    if "prompt_lacks" in case:
        present = [t for t in case["prompt_lacks"] if t.lower() in low_prompt]
        out["prompt_lacks"] = (not present, f"present {present}" if present else "none present")
    if "model" in case:
        out["model"] = (plan.model in case["model"], str(plan.model))
    return out


def evaluate(controller: Controller, suite: str | Path | Sequence[Mapping[str, Any]] | None = None,
             context_factory: Callable[[Mapping[str, Any]], PlanContext] | None = None) -> ControllerReport:
    """Plan every case of `suite` with `controller` and score the fields.

    Args:
        controller: anything with `plan(request, context)` (the `Controller` protocol).
        suite: a suite file, a list of case dicts, or None for the shipped `suite.toml`.
        context_factory: case -> PlanContext; default `default_context_factory()`.

    Returns an `ControllerReport` (a dict): controller {name, model, revision}; cases (the number);
    fields {field: {checked, right, accuracy}}; overall (right / checked over all fields);
    cases_right (cases with every field right); latency_ms {median, p95, max}; verdicts (one per
    case: id, request (first 80 characters), ok, fields {field: {ok, seen}}, ms, model).
    """
    cases = load_suite(suite) if suite is None or isinstance(suite, (str, Path)) else list(suite)
    if not cases:
        raise InvalidParameter("The suite has no cases.", value=suite, fix="pass a suite with at least one case.")
    factory = context_factory or default_context_factory()
    verdicts: list[dict[str, Any]] = []
    totals: dict[str, list[int]] = {f: [0, 0] for f in FIELDS}
    times: list[float] = []
    for case in cases:
        ctx = factory(case)
        request = case_request(case)
        plan, error = None, None
        t0 = time.perf_counter()
        try:
            plan = controller.plan(request, ctx)
        except Exception as e:  # scored, not raised: a crash is a wrong answer
            error = e
        ms = (time.perf_counter() - t0) * 1000
        times.append(ms)
        checks = check_case(case, plan, error, ctx)
        for f, (ok, _) in checks.items():
            totals.setdefault(f, [0, 0])
            totals[f][0] += 1
            totals[f][1] += int(ok)
        verdicts.append({
            "id": case["id"], "request": request[:80], "tier": str(case["tier"]),
            "ok": all(ok for ok, _ in checks.values()),
            "fields": {f: {"ok": ok, "seen": seen} for f, (ok, seen) in checks.items()},
            "model": getattr(plan, "model", None), "ms": round(ms, 3),
        })
    checked = sum(c for c, _ in totals.values())
    right = sum(r for _, r in totals.values())
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, max(0, int(round(0.95 * len(ordered))) - 1))]
    return ControllerReport(
        controller={"name": getattr(controller, "name", type(controller).__name__),
                    "model": getattr(controller, "model", None), "revision": getattr(controller, "revision", None)},
        cases=len(cases),
        fields={f: {"checked": c, "right": r, "accuracy": r / c} for f, (c, r) in totals.items() if c},
        overall=right / checked if checked else 0.0,
        fields_checked=checked,
        fields_right=right,
        cases_right=sum(v["ok"] for v in verdicts),
        latency_ms={"median": round(statistics.median(times), 3), "p95": round(p95, 3), "max": round(max(times), 3)},
        verdicts=verdicts,
    )


def log_report(lab: Any, report: ControllerReport, suite: str = "labkit/controller/suite.toml") -> str:
    """Record `report` as one MLflow run of `lab` (experiment as configured): the controller as params, the
    overall and per-field accuracy, cases fully right and latency as metrics, the report with every verdict in
    `controller_eval.json`.
    Sets `report["run_id"]` and returns it."""
    c = report["controller"]
    params = {"job": "eval-controller", "controller": c["name"], "controller.model": c.get("model") or "",
              "controller.revision": c.get("revision") or "", "suite": suite, "cases": report["cases"]}
    metrics = {"controller.overall": report["overall"], "controller.cases_right": report["cases_right"],
               "controller.cases_right_rate": report["cases_right"] / max(1, report["cases"]),
               **{f"controller.{f}.accuracy": s["accuracy"] for f, s in report["fields"].items()},
               **{f"controller.latency_ms.{k}": v for k, v in report["latency_ms"].items()}}
    with lab.run("eval controller", params=params, tags={"labkit.job": "eval-controller"}) as run:
        run.log_metrics(metrics)
        run.log_dict(dict(report), "controller_eval.json")
        report["run_id"] = run.run_id
    return run.run_id


def to_table(report: Mapping[str, Any], *, failures: int = 20) -> str:
    """The report as text: one row per field, the overall figure, latency, and the missed cases."""
    c = report["controller"]
    who = c["name"] + (f":{c['model']}" if c.get("model") else "")
    who += f" ({c['revision']})" if c.get("revision") else ""
    lines = [f"controller {who}: {report['cases']} cases, {report['cases_right']} fully right",
             f"{'field':<14}{'checked':>8}{'right':>7}{'accuracy':>10}"]
    for f, s in report["fields"].items():
        lines.append(f"{f:<14}{s['checked']:>8}{s['right']:>7}{s['accuracy']:>9.1%}")
    lines.append(f"{'overall':<14}{report['fields_checked']:>8}{report['fields_right']:>7}{report['overall']:>9.1%}")
    lat = report["latency_ms"]
    lines.append(f"latency: median {lat['median']:.2f} ms, p95 {lat['p95']:.2f} ms, max {lat['max']:.2f} ms")
    missed = [v for v in report["verdicts"] if not v["ok"]]
    if missed:
        lines.append(f"missed ({len(missed)}):")
        for v in missed[:failures]:
            bad = "; ".join(f"{f}: {d['seen']}" for f, d in v["fields"].items() if not d["ok"])
            lines.append(f"  {v['id']} [{v['tier']}] {v['request'][:50]!r} -> {bad}")
        if len(missed) > failures:
            lines.append(f"  … and {len(missed) - failures} more")
    if report.get("run_id"):
        lines.append(f"MLflow run {report['run_id']}")
    return "\n".join(lines)


__all__ = ["FIELDS", "ControllerReport", "case_request", "check_case", "default_context_factory", "evaluate",
           "fits_tier", "load_suite", "log_report", "to_table"]
