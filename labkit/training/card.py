"""Model cards and image grids for training runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


def image_grid(images: Sequence[Image.Image], cols: int | None = None, pad: int = 2) -> Image.Image:
    """Tile `images` (all the same size) row-major into one image, `cols` per row, `pad` grey pixels
    around each (`labkit.grids.image_grid`); `InvalidParameter` (a ValueError) when there are none."""
    from labkit.grids import image_grid as grid

    return grid(images, cols, pad=pad, background=(128, 128, 128))


def model_card(*, title: str, task: str, config: Mapping[str, Any], steps: int, data: Mapping[str, Any],
               licence: str | None, run_id: str | None, metrics: Mapping[str, float] | None = None,
               versions: Mapping[str, str] | None = None, notes: str = "", wall_s: float | None = None) -> str:
    """A Markdown model card: what the model is, how it was made (config, steps, data, seed), its licence."""
    lic = licence or "unspecified: the training data carries several licences or none (--licence / TrainConfig.licence)"
    lines = [
        "---", f"license: {lic.lower() if licence else 'other'}", "library_name: diffusers", "tags:", "- labkit",
        f"- {task}", "---", "", f"# {title}", "",
        f"Trained by labkit's training engine (task `{task}`) for {steps} optimizer steps"
        + (f" in {wall_s / 60:.1f} minutes" if wall_s else "") + f", seed {config.get('seed')}.", "",
        "## Licence", "", f"{lic}.", "",
        "## Data", "",
    ]
    lines += [f"- {k}: {v}" for k, v in data.items()] or ["- (not described by the task)"]
    lines += ["", "## How it was made", "",
              f"- steps: {steps} × batch {config.get('batch_size')} × accumulation "
              f"{config.get('gradient_accumulation_steps')}",
              f"- optimizer: AdamW lr {config.get('learning_rate')} ({config.get('lr_schedule')}, "
              f"warm-up {config.get('warmup_steps')}), weight decay {config.get('weight_decay')}",
              f"- mixed precision: {config.get('mixed_precision')}; seed: {config.get('seed')}"]
    if run_id:
        lines.append(f"- MLflow run: `{run_id}`")
    if metrics:
        lines += ["", "## Final metrics", "", *(f"- {k}: {v:.4g}" for k, v in metrics.items())]
    if notes:
        lines += ["", notes.strip()]
    lines += ["", "## Full training config", "", "```json", json.dumps(dict(config), indent=2, default=str), "```"]
    if versions:
        lines += ["", "## Software", "", *(f"- {k} {v}" for k, v in versions.items())]
    return "\n".join(lines) + "\n"
