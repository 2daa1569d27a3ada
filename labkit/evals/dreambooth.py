"""The toy DreamBooth benchmark: subject fidelity in new contexts, and language drift of the class word.

    report = evaluate_dreambooth(lab, "db/")          # a training folder, an adapter or run:RUN_ID
    report.subject_fidelity   # share of held-out subject prompts drawn right: the ring, yellow, as big and where asked
    report.drift_points       # the base's all-correct rate on class prompts minus the adapted model's, in points

Subject prompts name the subject by its identifier in contexts its training images never showed
(`labkit.toyworld.subject.HELDOUT_CONTEXTS`); a picture is right when the detector finds the subject (shape and
colour) at the asked size and position and nothing else. Class prompts are plain circles of every colour, size
and place; both the base (adapter off) and the adapted model draw each on the same seed, and the detector judges
both. One MLflow run per adapter: the figures, a table of every picture and a grid of each kind.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter
from labkit.evals.toyworld import ReportRows


@dataclass
class DreamBoothReport(ReportRows):
    """Subject fidelity on held-out contexts and language drift on class prompts, for one adapter."""

    adapter: str
    model: str
    token: str
    seeds: list[int]
    subject_fidelity: float
    class_base: float
    class_adapted: float
    drift_points: float
    run_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"dreambooth: {self.adapter} on {self.model} (identifier {self.token!r}, seeds {self.seeds})",
                f"subject fidelity {self.subject_fidelity:.1%} on held-out contexts; class prompts all correct: base "
                f"{self.class_base:.1%}, adapted {self.class_adapted:.1%} (drift {self.drift_points:+.1f} points); "
                f"MLflow run {self.run_id}"]


def evaluate_dreambooth(lab: Any, adapter: str, *, model: str | None = None, token: str | None = None,
                        seeds: Sequence[int] = (0, 1, 2, 3), class_every: int = 1, steps: int | None = None
                        ) -> DreamBoothReport:
    """Render the subject's held-out prompts with `adapter` and the class prompts with and without it; score,
    log and return the figures. `class_every`: take every n-th of the 35 scored class prompts
    (`class_prompts("eval")`; the toy recipe draws class images from the other 35)."""
    import torch

    from labkit.grids import captioned_grid
    from labkit.pipelines.lora import activate, resolve_plan_adapters
    from labkit.plan import AdapterRef, Plan
    from labkit.toyworld.adherence import judge
    from labkit.toyworld.scenes import Scene
    from labkit.toyworld.subject import TOKEN, class_prompts, subject_prompts

    if not seeds or not isinstance(class_every, int) or class_every < 1:
        raise InvalidParameter("The benchmark needs at least one seed and class_every >= 1.",
                               value={"seeds": list(seeds), "class_every": class_every},
                               fix="pass e.g. seeds=(0, 1, 2, 3), class_every=1.")
    token = token or TOKEN
    plan, ref = lab.prepare(Plan(prompt=f"a small {token} circle on the left", model=model or "toyworld",
                                 steps=steps, seed=0, width=64, height=64))
    if ref.family != "toy":
        raise InvalidParameter(f"The DreamBooth benchmark scores the toy world; {plan.model!r} is {ref.family}.",
                               value=plan.model, fix="evaluate an adapter trained on toyworld (--model toyworld).")
    (src, _), = resolve_plan_adapters([AdapterRef(adapter)], lab.catalog, tracker=lab.tracker, family=ref.family,
                                      hash_cache=lab.hash_cache)
    pipe = lab.load_pipeline(ref).pipe

    def draw(prompts: list[str], seed_list: list[int]) -> list[Any]:
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seed_list]
        return pipe(prompts, num_inference_steps=plan.steps, guidance_scale=plan.guidance, width=64, height=64,
                    generator=gens).images

    subjects = [(p, obj, s) for p, obj in subject_prompts("heldout", token) for s in seeds]
    classes = class_prompts("eval")[::class_every]
    rows: list[dict[str, Any]] = []
    grids: dict[str, tuple[list[Any], list[str]]] = {"subject": ([], []), "class-base": ([], []),
                                                      "class-adapted": ([], [])}
    try:
        activate(pipe, [(src, 1.0)], family=ref.family)
        images = draw([p for p, _, _ in subjects], [s for _, _, s in subjects])
        verdicts = judge(images, [Scene((obj,)) for _, obj, _ in subjects])
        for (p, _, s), im, v in zip(subjects, images, verdicts, strict=True):
            rows.append({"kind": "subject", "prompt": p, "seed": s, "model": "adapted",
                         "all_correct": v["all_correct"]})
            grids["subject"][0].append(im)
            grids["subject"][1].append(p)
        for which, weight in (("adapted", 1.0), ("base", 0.0)):
            activate(pipe, [(src, weight)] if weight else [], family=ref.family)
            class_seeds = [seeds[0] * 1000 + i for i in range(len(classes))]
            images = draw([p for p, _ in classes], class_seeds)
            for (p, _), s, im, v in zip(classes, class_seeds, images, judge(images, [p for p, _ in classes]),
                                        strict=True):
                rows.append({"kind": "class", "prompt": p, "seed": s, "model": which,
                             "all_correct": v["all_correct"]})
                grids[f"class-{which}"][0].append(im)
                grids[f"class-{which}"][1].append(p)
    finally:
        activate(pipe, [], family=ref.family)

    def rate(kind: str, which: str) -> float:
        return statistics.fmean(float(r["all_correct"]) for r in rows if r["kind"] == kind and r["model"] == which)

    base, adapted = rate("class", "base"), rate("class", "adapted")
    params = {"job": "eval-dreambooth", "adapter": adapter, "model": plan.model, "token": token, "seeds": list(seeds),
              "subject_prompts": len(subjects), "class_prompts": len(classes), "steps": plan.steps}
    with lab.run("eval dreambooth", params=params, tags={"labkit.job": "eval-dreambooth"}) as run:
        report = DreamBoothReport(adapter=adapter, model=plan.model, token=token, seeds=[int(s) for s in seeds],
                                  subject_fidelity=rate("subject", "adapted"), class_base=base, class_adapted=adapted,
                                  drift_points=round(100 * (base - adapted), 2), run_id=run.run_id, rows=rows)
        run.log_metrics({"subject_fidelity": report.subject_fidelity, "class.base_all_correct": base,
                         "class.adapted_all_correct": adapted, "language_drift_points": report.drift_points})
        run.log_dict({"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}, "verdicts.json")
        with tempfile.TemporaryDirectory(prefix="labkit-dreambooth-") as tmp:
            for name, (ims, caps) in grids.items():
                captioned_grid(ims, caps).save(Path(tmp) / f"{name}.png")
            run.log_artifact(tmp, "grids")
        run.log_text("\n".join(report.lines()) + "\n", "summary.txt")
    return report


__all__ = ["DreamBoothReport", "evaluate_dreambooth"]
