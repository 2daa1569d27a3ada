"""The toy world's prompt-adherence benchmark: GenEval's six categories, offline.

Held-out prompts of each category (attribute combinations and layouts the model never saw in training; see
`labkit.toyworld.geneval`) are rendered, the classical detector reads each image, and every category gets its
score with a 95% Wilson interval and its count; the overall score is GenEval's, the mean of the category scores.
The single-object attributes and the two-object figures of the earlier benchmark are still reported (the same
prompts and seeds), under their old keys. One MLflow run holds the figures, a table of every prompt and
verdict, a grid of the failures per category, and the prompts it skipped with the reason. The lab is passed in
and used through its methods (`prepare`, `load_pipeline`, `run`): this floor does not import the façade.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import InvalidParameter
from labkit.outputs import captioned_grid
from labkit.toyworld.adherence import ATTRS


class ReportRows:
    """What every benchmark report shares: `to_dict`, with its per-prompt `rows` only when asked."""

    rows: list[dict[str, Any]]

    def to_dict(self, rows: bool = False) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "rows"}
        if rows:
            d["rows"] = self.rows
        return d


@dataclass
class ToyEvalReport(ReportRows):
    """Each category's score, count and 95% interval (`categories`), the overall score, the prompts skipped, and
    the earlier benchmark's keys: accuracy per attribute for single-object prompts and the two-object scores."""

    model: str
    n: int
    seed: int
    steps: int
    single: dict[str, float]
    two_objects_colours: float | None  # None: no two-object prompt was scored
    two_objects_all_correct: float | None
    seconds_per_image: float
    run_id: str | None = None
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    overall: float | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    given: bool = False  # the prompts were the user's (`prompts=`), not the held-out ones

    def lines(self) -> list[str]:
        which = f"{len(self.rows)} scored of the given prompts" if self.given else \
            f"held-out prompts, up to {self.n} per category"
        out = [f"toyworld adherence of {self.model} ({which}, seed {self.seed}, {self.steps} steps)",
               f"{'category':<20}{'score':>7}  {'95% CI':<16}{'n':>5}"]
        for cat, v in self.categories.items():
            lo, hi = v["ci"]
            out.append(f"{cat:<20}{v['score']:>7.1%}  [{lo:.1%}, {hi:.1%}]".ljust(45) + f"{v['n']:>5}")
        if self.overall is not None:
            out.append(f"{'overall (mean)':<20}{self.overall:>7.1%}")
        if self.single:
            s = self.single
            out.append("single object, per attribute: " + ", ".join(f"{a} {s[a]:.1%}" for a in ATTRS if a in s))
        if self.two_objects_colours is not None:
            out.append(f"two objects: both present with the right colours {self.two_objects_colours:.1%}, "
                       f"all correct {self.two_objects_all_correct:.1%}")
        for sk in self.skipped:
            out.append(f"skipped {sk['prompt']!r}: {sk['reason']}")
        out.append(f"{self.seconds_per_image * 1000:.0f} ms per image; MLflow run {self.run_id}")
        return out


def benchmark_cases(categories: Sequence[str] | str | None = None, n: int = 200, seed: int = 0,
                    prompts: Sequence[str] | None = None) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """(category, prompt) for every image the benchmark renders, and the prompts it skips with the reason.

    Without `prompts`: `n` held-out prompts of each chosen category (`geneval.category_prompts`). With them:
    each prompt in every chosen category it belongs to; one it cannot read, or in none of the chosen categories,
    is skipped (never scored)."""
    from labkit.errors import LabkitError
    from labkit.toyworld.geneval import category_prompts, check_categories, read

    cats = check_categories(categories)
    if prompts is None:
        return [(c, t) for c in cats for t, _ in category_prompts(c, n, seed)], []
    cases, skipped = [], []
    for p in prompts:
        try:
            req = read(p)
        except LabkitError as e:
            skipped.append({"prompt": p, "reason": str(e).splitlines()[0]})
            continue
        mine = [c for c in req.categories if c in cats]
        if not mine:
            where = ", ".join(req.categories) or "none"
            skipped.append({"prompt": p, "reason": f"in no chosen category (its categories: {where})"})
        cases += [(c, p) for c in mine]
    return cases, skipped


def _log_grids(run: Any, rows: list[dict[str, Any]], images: list[Any], cats: Sequence[str]) -> None:
    """failures.png (every category) and failures_<category>.png: the first 64 failures, captioned."""
    import tempfile
    from pathlib import Path

    failed = [(img, r) for img, r in zip(images, rows, strict=True) if not r["correct"]]
    with tempfile.TemporaryDirectory() as tmp:
        for name, group in [("failures", failed)] + [(f"failures_{c}", [f for f in failed if f[1]["category"] == c])
                                                     for c in cats]:
            if group:
                path = Path(tmp) / f"{name}.png"
                captioned_grid([g[0] for g in group[:64]], [g[1]["prompt"] for g in group[:64]]).save(path)
                run.log_artifact(path)


def evaluate(lab: Any, *, model: str = "toyworld", n: int = 200, seed: int = 0, steps: int = 20,
             config: str | None = None, categories: Sequence[str] | str | None = None,
             prompts: Sequence[str] | None = None) -> ToyEvalReport:
    """Render `n` held-out prompts of each of `categories` (default: all six) with `model` and score them.

    `prompts`: score these instead (each in the chosen categories it belongs to; unreadable ones are listed in
    `skipped`). Held-out prompt j of the c-th category (in `CATEGORIES` order) renders with seed `seed + c·n + j`
    and given prompt i with `seed + i`, so a report is reproducible on one machine and a category scores the
    same alone or with others; the single- and two-object images are the earlier benchmark's.
    """
    from labkit.pipelines.calls import run_image
    from labkit.plan import MAX_SEED, Plan, check_int
    from labkit.toyworld.adherence import both_colours, rates
    from labkit.toyworld.detect import detect, verdict
    from labkit.toyworld.geneval import CATEGORIES, check, check_categories, read, summarise

    # 1. validate, the prompts (before the model loads)
    cats = check_categories(categories)
    if prompts is None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InvalidParameter(f"n={n!r}: the benchmark needs at least one prompt of each category.", value=n,
                               fix="pass n >= 1 (--n).")
    renders = len(cats) * n if prompts is None else len(prompts) if hasattr(prompts, "__len__") else 1
    check_int("seed", seed, lo=0, hi=MAX_SEED - max(renders - 1, 0))  # it renders seed … seed + renders - 1
    cases, skipped = benchmark_cases(cats, n, seed, prompts)
    if not cases:
        why = "; ".join(f"{s['prompt']!r}: {s['reason']}" for s in skipped[:3]) or "the list is empty"
        raise InvalidParameter(f"None of the {len(prompts or [])} given prompt(s) can be scored in "
                               f"{', '.join(cats)} ({why}).", value=len(prompts or []),
                               fix="give toy-world prompts of the chosen categories, e.g. 'three blue circles' "
                                   "(counting); or choose other --categories.")
    # The toy world is 64x64: the detector's anchors and sizes are defined at that size.
    plan, ref = lab.prepare(Plan(prompt="a red circle", model=model, steps=steps, seed=seed, width=64, height=64),
                            config)
    params = {"job": "eval-toyworld", "model": plan.model, "n": n, "seed": seed, "steps": steps,
              "guidance": plan.guidance, "size": f"{plan.width}x{plan.height}", "categories": ",".join(cats),
              "prompts": "given" if prompts is not None else "held-out"}
    with lab.run("eval toyworld", params=params, tags={"labkit.job": "eval-toyworld"}) as run:
        # 2. render and judge every case
        loaded = lab.load_pipeline(ref)
        rows, images = [], []
        start = time.perf_counter()
        for i, (cat, prompt) in enumerate(cases):
            # Held-out prompt j of category c renders with seed + c·n + j, whichever categories run with it.
            if prompts is None:
                i = CATEGORIES.index(cat) * n + sum(c == cat for c, _ in cases[:i])
            (img,) = run_image(loaded.pipe, prompt=prompt, negative_prompt="", steps=steps, guidance=plan.guidance,
                               width=plan.width, height=plan.height, seed=seed + i, count=1,
                               on_step=lambda _: False)
            req = read(prompt)
            found = detect(img)
            ok, why = check(req, cat, found)
            row = {"category": cat, "prompt": prompt, "seed": seed + i, "correct": ok, "why": why,
                   "objects": len(req.scene.objects) if req.scene is not None else req.count or 2}
            if req.scene is not None:  # the earlier benchmark's per-attribute verdict
                v = verdict(req.scene, found)
                row.update({a: bool(v[a]) for a in ATTRS}, both_colours=both_colours(v))
            row["detected"] = "; ".join(f"{d.size} {d.colour} {d.shape} {d.position}" for d in found)
            rows.append(row)
            images.append(img)
        spent = time.perf_counter() - start
        # 3. figures: the categories, and the earlier keys
        summary = summarise({c: [r["correct"] for r in rows if r["category"] == c] for c in cats})
        single = [r for r in rows if r["category"] == "single_object"]
        two = [r for r in rows if r["category"] == "two_objects"]
        report = ToyEvalReport(
            model=plan.model, n=n, seed=seed, steps=steps, single=rates(single) if single else {},
            two_objects_colours=sum(r["both_colours"] for r in two) / len(two) if two else None,
            two_objects_all_correct=rates(two, ("all_correct",))["all_correct"] if two else None,
            seconds_per_image=spent / max(1, len(rows)), run_id=run.run_id,
            categories={c: v for c, v in summary.items() if c != "overall"}, overall=summary["overall"],
            skipped=skipped, rows=rows, given=prompts is not None,
        )
        metrics = {f"single.{a}": v for a, v in report.single.items()}
        if two:
            metrics.update({"two.colours": report.two_objects_colours,
                            "two.all_correct": report.two_objects_all_correct})
        for c, v in report.categories.items():
            metrics.update({f"geneval.{c}": v["score"], f"geneval.{c}.ci_low": v["ci"][0],
                            f"geneval.{c}.ci_high": v["ci"][1], f"geneval.{c}.n": float(v["n"])})
        if report.overall is not None:
            metrics["geneval.overall"] = report.overall
        run.log_metrics({**metrics, "skipped": float(len(skipped)), "seconds_per_image": report.seconds_per_image})
        # 4. artifacts: MLflow's table layout (columns + data), so the UI's artifact viewer shows it as a table
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            run.log_dict({"columns": columns, "data": [[r.get(k) for k in columns] for r in rows]}, "verdicts.json")
        if skipped:
            run.log_dict({"columns": ["prompt", "reason"], "data": [[s["prompt"], s["reason"]] for s in skipped]},
                         "skipped.json")
        _log_grids(run, rows, images, cats)
        run.log_text("\n".join(report.lines()) + "\n", "summary.txt")
    return report


__all__ = ["ATTRS", "ToyEvalReport", "ReportRows", "benchmark_cases", "captioned_grid", "evaluate"]
