"""The toy world's prompt-adherence benchmark, in the spirit of GenEval.

Held-out prompts (attribute combinations the model never saw in training) are rendered, the
classical detector reads each image, and every attribute is scored: colour, shape, size,
position and count for single-object prompts; for two-object prompts, whether both objects
are there with the right colours. One MLflow run holds the figures, a table of every prompt
and verdict, and a grid of the failures. The lab is passed in and used through its methods
(`prepare`, `load_pipeline`, `run`): this floor does not import the façade.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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
    """Accuracy per attribute for single-object prompts, and the two-object score."""

    model: str
    n: int
    seed: int
    steps: int
    single: dict[str, float]
    two_objects_colours: float
    two_objects_all_correct: float
    seconds_per_image: float
    run_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


    def lines(self) -> list[str]:
        s = self.single
        return [
            f"toyworld adherence of {self.model} ({self.n} held-out prompts of each kind, seed {self.seed}, "
            f"{self.steps} steps)",
            "single object: " + ", ".join(f"{a} {s[a]:.1%}" for a in ATTRS),
            f"two objects: both present with the right colours {self.two_objects_colours:.1%}, "
            f"all correct {self.two_objects_all_correct:.1%}",
            f"{self.seconds_per_image * 1000:.0f} ms per image; MLflow run {self.run_id}",
        ]


def evaluate(lab: Any, *, model: str = "toyworld", n: int = 200, seed: int = 0, steps: int = 20,
             config: str | None = None) -> ToyEvalReport:
    """Render `n` held-out single-object and `n` two-object prompts with `model` and score them.

    Prompt i renders with seed `seed + i`, so a report is reproducible on one machine.
    """
    from labkit.pipelines.calls import run_image
    from labkit.plan import Plan
    from labkit.toyworld.adherence import judge, rates
    from labkit.toyworld.captions import prompts

    # The toy world is 64x64: the detector's anchors and sizes are defined at that size.
    plan, ref = lab.prepare(Plan(prompt="a red circle", model=model, steps=steps, seed=seed, width=64, height=64),
                        config)
    cases = [(p, 1) for p in prompts("heldout", n=n, seed=seed, n_objects=1)]
    cases += [(p, 2) for p in prompts("heldout", n=n, seed=seed + 1, n_objects=2)]
    params = {"job": "eval-toyworld", "model": plan.model, "n": n, "seed": seed, "steps": steps,
              "guidance": plan.guidance, "size": f"{plan.width}x{plan.height}"}
    with lab.run("eval toyworld", params=params, tags={"labkit.job": "eval-toyworld"}) as run:
        loaded = lab.load_pipeline(ref)
        rows, images = [], []
        start = time.perf_counter()
        for i, (prompt, k) in enumerate(cases):
            (img,) = run_image(loaded.pipe, prompt=prompt, negative_prompt="", steps=steps, guidance=plan.guidance,
                               width=plan.width, height=plan.height, seed=seed + i, count=1,
                               on_step=lambda _: False)
            (v,) = judge([img], prompt)
            rows.append({"prompt": prompt, "objects": k, "seed": seed + i, **{a: bool(v[a]) for a in ATTRS},
                         "detected": "; ".join(f"{d['size']} {d['colour']} {d['shape']} {d['position']}"
                                               for d in v["detected"])})
            images.append(img)
        spent = time.perf_counter() - start
        two = rates([r for r in rows if r["objects"] == 2], ("colour", "all_correct"))
        report = ToyEvalReport(
            model=plan.model, n=n, seed=seed, steps=steps, single=rates(r for r in rows if r["objects"] == 1),
            two_objects_colours=two["colour"], two_objects_all_correct=two["all_correct"],
            seconds_per_image=spent / max(1, len(rows)), run_id=run.run_id, rows=rows,
        )
        run.log_metrics({**{f"single.{a}": v for a, v in report.single.items()},
                         "two.colours": report.two_objects_colours, "two.all_correct": report.two_objects_all_correct,
                         "seconds_per_image": report.seconds_per_image})
        # MLflow's table layout (columns + data), so the UI's artifact viewer shows it as a table.
        run.log_dict({"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}, "verdicts.json")
        failures = [(img, r["prompt"]) for img, r in zip(images, rows, strict=True) if not r["all_correct"]][:64]
        if failures:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "failures.png"
                captioned_grid([f[0] for f in failures], [f[1] for f in failures]).save(path)
                run.log_artifact(path)
        run.log_text("\n".join(report.lines()) + "\n", "summary.txt")
    return report


__all__ = ["ATTRS", "ToyEvalReport", "ReportRows", "captioned_grid", "evaluate"]
