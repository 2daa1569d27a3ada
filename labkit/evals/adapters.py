"""`labkit compare adapters`: checkpoints × weights × seeds on fixed prompts, one grid and one table.

    out = compare_adapters(lab, ["out/hexagon"], prompts=["a small red hexagon on the left"],
                           seeds=[0, 1], weights=[0.0, 0.5, 1.0])
    out.grids[0]          # one PNG per prompt: rows = (checkpoint, weight), columns = seeds
    out.rows              # one dict per cell: checkpoint, weight, seed, prompt, and the toy world's scores

A training output folder or "run:RUN_ID" expands to its checkpoints (oldest first) and its final
adapter; a file or any other adapter id stands for itself. Everything renders on one loaded base
pipeline (adapters are switched, never the base), and the comparison is one MLflow run with the
grids, the table (CSV and JSON) and the mean score of each (checkpoint, weight) as metrics.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InvalidParameter


@dataclass
class AdapterComparison:
    """What `compare_adapters` produced: labels of the checkpoints, one grid per prompt, a row per cell."""

    checkpoints: list[str]
    weights: list[float]
    seeds: list[int]
    prompts: list[str]
    grids: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None

    def means(self) -> dict[tuple[str, float], float]:
        """Mean toy-world score (all attributes right) per (checkpoint, weight); empty without scores."""
        out: dict[tuple[str, float], list[float]] = {}
        for r in self.rows:
            if r.get("all_correct") is not None:
                out.setdefault((r["checkpoint"], r["weight"]), []).append(float(r["all_correct"]))
        return {k: sum(v) / len(v) for k, v in out.items()}


def expand(spec: str, tracker: Any = None) -> list[tuple[str, str]]:
    """(label, adapter id) pairs for one argument: a training folder or a run expands to its checkpoints
    and final adapter; anything else is one adapter."""
    from labkit.pipelines.lora import WEIGHT_NAME
    from labkit.training.engine import list_checkpoints

    path = Path(spec).expanduser()
    if path.is_dir() and (path / "checkpoints").is_dir():
        out = [(p.name, str(p)) for p in list_checkpoints(path) if (p / "adapter" / WEIGHT_NAME).is_file()]
        if (path / "model" / WEIGHT_NAME).is_file():
            out.append(("final", str(path / "model")))
        if out:
            return out
    if spec.startswith("run:") and tracker is not None:
        from labkit.tracking.mirror import local_artifacts

        try:
            run = tracker.client.get_run(spec.removeprefix("run:"))
        except Exception as e:  # MlflowException: no such run
            raise InvalidParameter(f"Adapter {spec!r}: no run {spec.removeprefix('run:')!r} in "
                                   f"{tracker.client.tracking_uri}.", value=spec,
                                   fix="give run:RUN_ID with the full id of a LoRA training run (`lab.runs()` or "
                                       "the MLflow UI lists them).") from e
        # a local store's own folder; a tracking server's downloaded into the project's mirror (once)
        folder = local_artifacts(tracker.client, run.info.run_id, "checkpoints", getattr(tracker, "mirror", None),
                                 artifact_uri=run.info.artifact_uri)
        found = folder.glob("checkpoint-*") if folder is not None else ()
        ckpts = sorted((p for p in found if (p / "adapter" / WEIGHT_NAME).is_file()), key=lambda p: p.name)
        return [(p.name, str(p)) for p in ckpts] + [("final", spec)]
    return [(Path(spec).stem if path.exists() else spec, spec)]


def _list_arg(name: str, value: Any, example: str) -> None:
    """Like `Lab`'s list arguments: a lone string (or any non-list) is refused, never iterated letter by letter."""
    from labkit.plan import describe

    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, range)):
        raise InvalidParameter(f"{name} must be a list, got {describe(value)}.", value=value,
                               fix=f"pass {name}=[{value!r:.80}] (a list)." if isinstance(value, str)
                               else f"pass {name} as a list, e.g. {name}={example}.")


def _check_args(adapters: Any, prompts: Any, seeds: Any, weights: Any) -> None:
    """Refuse what `compare_adapters` cannot render, before anything loads: the lists, and each seed and weight
    within the limits a render's `Plan` allows (seeds 0…MAX_SEED, adapter weights -4…4)."""
    import os

    from labkit.plan import MAX_PROMPT_CHARS, MAX_SEED, check_int, check_number, check_text, describe

    for name, value, example in (("adapters", adapters, '["out/hexagon"]'), ("prompts", prompts, '["a red circle"]'),
                                 ("seeds", seeds, "[0, 1]"), ("weights", weights, "[0.0, 0.5, 1.0]")):
        _list_arg(name, value, example)
    if not adapters:
        raise InvalidParameter("No adapters to compare.", value=list(adapters),
                               fix="pass adapter files, training output folders or run:RUN_ID.")
    if not prompts:
        raise InvalidParameter("No prompts to compare on.", value=list(prompts), fix="pass at least one prompt.")
    if not seeds or not weights:
        raise InvalidParameter("Seeds and weights must not be empty.", value={"seeds": list(seeds),
                               "weights": list(weights)}, fix="pass e.g. --seeds 0 1 --weights 0 0.5 1.")
    for i, a in enumerate(adapters):
        if not isinstance(a, (str, os.PathLike)) or not str(a).strip():
            raise InvalidParameter(f"adapters[{i}] must be a path or an adapter id, got {describe(a)}.", value=a,
                                   fix="pass adapter files, training output folders or run:RUN_ID as strings.")
    for i, p in enumerate(prompts):
        check_text(f"prompts[{i}]", p, max_chars=MAX_PROMPT_CHARS, nonempty=True)
    for i, s in enumerate(seeds):
        check_int(f"seeds[{i}]", s, lo=0, hi=MAX_SEED)
    for i, w in enumerate(weights):
        if not -4 <= check_number(f"weights[{i}]", w, example="1.0") <= 4:  # Plan.validate's adapter weight range
            raise InvalidParameter(f"weights[{i}] is {w!r}, outside -4–4.", value=w,
                                   fix="use a weight between -4 and 4 (1.0 is the trained strength).")
    for name, values in (("seeds", seeds), ("weights", weights)):
        twice = sorted({v for v in values if list(values).count(v) > 1})
        if twice:  # the same cell twice: its rows would merge into one mean, its grid show it twice
            raise InvalidParameter(f"{name} lists {twice} more than once.", value=list(values),
                                   fix=f"name each of the {name} once.")


def compare_adapters(lab: Any, adapters: Sequence[str], *, prompts: Sequence[str], seeds: Sequence[int] = (0, 1),
                     weights: Sequence[float] = (0.0, 1.0), model: str | None = None, steps: int | None = None,
                     guidance: float | None = None, run_name: str | None = None) -> AdapterComparison:
    """Render every (checkpoint, weight, seed, prompt) on one base pipeline and log the comparison.

    `adapters`, `prompts`, `seeds` and `weights` are lists (a lone string is refused, as `Lab`'s list arguments
    are); seeds are whole numbers 0…2**32-1 and weights numbers from -4 to 4, as a render's plan allows.

    Steps: 1. expand the arguments into checkpoints and resolve each one (family checked); 2. load the
    base model once; 3. for each checkpoint and weight, switch the adapter and render the prompts ×
    seeds, scoring each image with the toy world's detector when the prompt is a toy-world caption;
    4. tile one grid per prompt and log grids, table and mean scores as one MLflow run.
    """
    # 1. what to compare: the arguments checked before torch loads
    _check_args(adapters, prompts, seeds, weights)
    import torch

    from labkit.pipelines.lora import activate, resolve_plan_adapters
    from labkit.plan import AdapterRef, Plan
    from labkit.training.card import image_grid
    from labkit.training.lora import toy_scores

    cells = [c for spec in adapters for c in expand(str(spec), lab.tracker)]
    plan, ref = lab.prepare(Plan(prompt=prompts[0], model=model, steps=steps, guidance=guidance, seed=0))
    sources = [resolve_plan_adapters([AdapterRef(aid)], lab.catalog, tracker=lab.tracker, family=ref.family,
                                     hash_cache=lab.hash_cache)[0][0] for _, aid in cells]
    labels = [label for label, _ in cells]
    if len(set(labels)) != len(labels):
        labels = [f"{i}:{label}" for i, label in enumerate(labels)]
    # 2. one base pipeline
    pipe = lab.load_pipeline(ref).pipe
    out = AdapterComparison(labels, [float(w) for w in weights], [int(s) for s in seeds], list(prompts))
    images: dict[str, list[Any]] = {p: [] for p in prompts}
    # 3. render
    try:
        for label, src in zip(labels, sources, strict=True):
            for w in weights:
                activate(pipe, [(src, float(w))], family=ref.family)
                for p in prompts:
                    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
                    imgs = pipe([p] * len(seeds), num_inference_steps=plan.steps, guidance_scale=plan.guidance,
                                width=plan.width, height=plan.height, generator=gens).images
                    images[p] += imgs
                    scores = toy_scores(p, imgs) if ref.family == "toy" else []
                    for i, s in enumerate(seeds):
                        out.rows.append({"checkpoint": label, "adapter": src.id, "weight": float(w), "seed": int(s),
                                         "prompt": p, "all_correct": scores[i] if scores else None})
    finally:
        activate(pipe, [], family=ref.family)
    out.grids = [image_grid(images[p], cols=len(seeds)) for p in prompts]
    # 4. one run
    params = {"adapters": list(adapters), "checkpoints": labels, "weights": out.weights, "seeds": out.seeds,
              "prompts": out.prompts, "model": plan.model, "steps": plan.steps, "guidance": plan.guidance}
    with lab.run(run_name or "compare adapters", params=params,
                 tags={"labkit.job": "compare", "labkit.task": "compare-adapters"}) as run:
        with tempfile.TemporaryDirectory(prefix="labkit-compare-") as tmp:
            folder = Path(tmp)
            for i, g in enumerate(out.grids):
                g.save(folder / f"grid-{i:02d}.png")
            with open(folder / "table.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(out.rows[0]))
                writer.writeheader()
                writer.writerows(out.rows)
            (folder / "table.json").write_text(json.dumps({"rows": out.rows, "grid_rows": [
                f"{c} @ {w:g}" for c in labels for w in out.weights], "grid_columns": out.seeds,
                "prompts": out.prompts}, indent=2))
            run.log_artifact(folder, "compare")
        means = out.means()
        if means:
            run.log_metrics({f"all_correct/{c}/w{w:g}": v for (c, w), v in means.items()})
        out.run_id = run.run_id
    return out


__all__ = ["AdapterComparison", "compare_adapters", "expand"]
