"""The toy ControlNet's benchmark: held-out layouts rendered under control, the detected box against the map's.

`evaluate_control` renders `n` held-out layouts (`labkit.toyworld.layout`: centre cells and radius bands the
ControlNet never trained on; every colour × shape pair in turn) with the toy model and a layout ControlNet,
judges each picture with `labkit.toyworld.layout_score` (IoU of the largest detected object's box with the map's
box; its colour and shape against the prompt) and logs one MLflow run: the rates, a table of every picture, and
a failure grid of map | picture pairs. The lab is passed in and used through its methods (`prepare`,
`load_pipeline`, `run`, `catalog`): this floor does not import the façade.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter
from labkit.evals.toyworld import ReportRows
from labkit.toyworld.layout_score import RATES, score_layouts


@dataclass
class ControlEvalReport(ReportRows):
    """Rates over held-out layouts (mean IoU, share with IoU >= 0.5, colour, shape, all correct), every row."""

    model: str
    controlnet: str
    n: int
    seed: int
    steps: int
    guidance: float
    scale: float
    rates: dict[str, float]
    seconds_per_image: float
    run_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        r = self.rates
        return [
            f"toycontrol: {self.model} + {self.controlnet} on {self.n} held-out layouts (seed {self.seed}, "
            f"{self.steps} steps, guidance {self.guidance}, scale {self.scale})",
            f"mean IoU {r['mean_iou']:.3f}, IoU >= 0.5 {r['iou_at_0.5']:.1%}, colour {r['colour']:.1%}, "
            f"shape {r['shape']:.1%}, all correct {r['all_correct']:.1%}",
            f"{self.seconds_per_image * 1000:.0f} ms per image; MLflow run {self.run_id}",
        ]


def pair_sheet(maps: list[Any], images: list[Any], captions: list[str]) -> Any:
    """Map | picture side by side, one pair per cell, its caption above."""
    from PIL import Image

    from labkit.evals.toyworld import captioned_grid

    pairs = []
    for m, im in zip(maps, images, strict=True):
        w, h = im.size
        pair = Image.new("RGB", (2 * w + 2, h), (90, 90, 90))
        pair.paste(m.convert("RGB").resize((w, h)), (0, 0))
        pair.paste(im.convert("RGB"), (w + 2, 0))
        pairs.append(pair)
    return captioned_grid(pairs, captions)


def evaluate_control(lab: Any, *, model: str = "toyworld", controlnet: str = "toyworld-controlnet", n: int = 200,
                     seed: int = 0, steps: int | None = None, guidance: float | None = None, scale: float = 1.0,
                     config: str | None = None, batch: int = 25) -> ControlEvalReport:
    """Render `n` held-out layouts with `model` steered by `controlnet` and score them; one MLflow run.

    The plan is checked as any controlled render's is (the ControlNet found and made for the model's family,
    the scale in range) before the run opens. Layout i renders with seed `seed * 100000 + i`.
    """
    from labkit.pipelines.controlnet import load_controlnet, render_controlled, with_controlnets
    from labkit.plan import MAX_SEED, ControlRef, Plan, check_int
    from labkit.toyworld.layout import layout_map
    from labkit.toyworld.layout_score import heldout_layouts

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameter(f"n={n!r}: the benchmark needs at least one layout.", value=n, fix="pass n >= 1.")
    check_int("seed", seed, lo=0, hi=MAX_SEED)
    with tempfile.TemporaryDirectory(prefix="labkit-toycontrol-") as tmp:
        first = heldout_layouts(1, seed)[0]
        probe = Path(tmp) / "layout.png"
        layout_map([first.box], first.size).save(probe)
        plan, ref = lab.prepare(Plan(prompt=first.caption, model=model, steps=steps, guidance=guidance, seed=seed,
                                     width=first.size, height=first.size,
                                     controls=(ControlRef("layout", str(probe), model=controlnet, scale=scale),)),
                                config)
    params = {"job": "eval-toycontrol", "model": plan.model, "controlnet": controlnet, "n": n, "seed": seed,
              "steps": plan.steps, "guidance": plan.guidance, "scale": scale, "size": f"{plan.width}x{plan.height}"}
    with lab.run("eval toycontrol", params=params, tags={"labkit.job": "eval-toycontrol"}) as run:
        loaded = lab.load_pipeline(ref)
        unet = loaded.pipe.unet
        net = load_controlnet(controlnet, family=ref.family, dtype=unet.dtype, device=str(unet.device),
                              base_id=repr(ref.id), catalog=lab.catalog)
        pipe = with_controlnets(loaded.pipe, [net], family=ref.family, task="txt2img")
        start = time.perf_counter()

        def draw(prompts, maps, seeds):
            return render_controlled(pipe, prompts, maps, seeds, plan.guidance, plan.steps, scale=scale)

        score = score_layouts(draw, n=n, seed=seed, batch=batch)
        spent = time.perf_counter() - start
        rows = [dict(item) for item in score.items]
        report = ControlEvalReport(model=plan.model, controlnet=controlnet, n=n, seed=seed, steps=plan.steps,
                                   guidance=plan.guidance, scale=scale, rates=score.rates,
                                   seconds_per_image=spent / n, run_id=run.run_id, rows=rows)
        run.log_metrics({**{f"control.{k}": v for k, v in report.rates.items()},
                         "control.median_iou": statistics.median(r["iou"] for r in rows),
                         "seconds_per_image": report.seconds_per_image})
        table = [{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
        run.log_dict({"columns": list(table[0]), "data": [list(r.values()) for r in table]}, "verdicts.json")
        failing = score.failures()[:48]
        if failing:
            with tempfile.TemporaryDirectory() as tmp:
                sheet = Path(tmp) / "failures.png"
                pair_sheet([score.maps[i] for i in failing], [score.images[i] for i in failing],
                           [f"{rows[i]['prompt']} iou {rows[i]['iou']:.2f}" for i in failing]).save(sheet)
                run.log_artifact(sheet)
        run.log_text("\n".join(report.lines()) + "\n", "summary.txt")
    return report


__all__ = ["RATES", "ControlEvalReport", "evaluate_control", "pair_sheet"]
