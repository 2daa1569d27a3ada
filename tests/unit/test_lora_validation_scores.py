"""A toy LoRA's validation scores only the prompts the toy judge can read (a hexagon is not a toy-world shape)."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image

from labkit.training.lora import LoraTask


def test_a_validation_prompt_the_toy_judge_cannot_read_gives_no_score_and_no_error():
    blank = Image.new("RGB", (64, 64), (128, 128, 128))
    task = SimpleNamespace(pipe=SimpleNamespace(unet=SimpleNamespace(eval=lambda: None)), base_family="toy",
                           validation_rows=lambda p, seeds: [("with", [blank] * len(seeds)),
                                                             ("without", [blank] * len(seeds))])
    v = LoraTask.validate(task, ["a red hexagon"], [0, 1], step=4)
    assert len(v.images) == 4 and v.labels[0] == "with: a red hexagon (seed 0)"
    assert v.metrics == {}  # nothing to score: no all_correct figure, rather than a division by zero
    v = LoraTask.validate(task, ["a red hexagon", "a big red circle on the left"], [0], step=4)
    assert v.metrics == {"with_all_correct": 0.0, "without_all_correct": 0.0}  # a grey canvas has no red circle
