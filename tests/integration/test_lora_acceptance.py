"""Issue 8's acceptance on the toy world (slow): teach the toy model "hexagon", a shape it never saw,
from 50 generated examples in at most 10 minutes on 2 CPU cores; with the adapter at weight 1, held-out
hexagon prompts render a hexagon at least 80 % of the time; with the adapter loaded at weight 0, the
base model's adherence on ordinary held-out prompts moves by at most 5 points.

    OMP_NUM_THREADS=2 pytest -m slow tests/integration/test_lora_acceptance.py -s
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2")


@pytest.mark.slow
def test_teach_the_toy_model_hexagons(lab, tmp_path):
    from labkit.pipelines.lora import activate, resolve_adapter
    from labkit.toyworld.captions import prompts
    from labkit.toyworld.data import write_dataset
    from labkit.toyworld.detect import verdict
    from labkit.training.lora import LoraTrainConfig, load_base_pipeline, train_lora
    from labkit.training.toy_base import adherence

    torch.set_num_threads(2)
    data = tmp_path / "hexagons"
    write_dataset(data, 50, seed=0, split="train", n_objects=(1,), shapes=("hexagon",), licence="CC0-1.0")
    cfg = LoraTrainConfig(data=data, output_dir=tmp_path / "out", steps=1000, batch_size=8, learning_rate=2e-3,
                          lr_schedule="cosine", warmup_steps=50, target_modules=TARGETS, train_text_encoder=True,
                          checkpoint_every=250, validate_every=0)
    start = time.perf_counter()
    result = train_lora(lab, cfg)
    minutes = (time.perf_counter() - start) / 60
    assert result.status == "finished"

    pipe, _ = load_base_pipeline(lab, "toyworld")
    src = resolve_adapter(str(result.export_dir))
    ps = prompts("heldout", n=40, seed=11, n_objects=1, shapes=("hexagon",))

    def hexagon_rate() -> float:
        gens = [torch.Generator().manual_seed(100 + i) for i in range(len(ps))]
        images = pipe(ps, num_inference_steps=20, guidance_scale=4.0, height=64, width=64, generator=gens).images
        return sum(verdict(p, im)["shape"] for p, im in zip(ps, images, strict=True)) / len(ps)

    activate(pipe, [], family="toy")
    base_hex = hexagon_rate()
    base = adherence(pipe, n=30)
    activate(pipe, [(src, 1.0)], family="toy")
    adapter_hex = hexagon_rate()
    activate(pipe, [(src, 0.0)], family="toy")
    at_zero = adherence(pipe, n=30)
    print(f"\ntrained {minutes:.1f} min; hexagon shape on {len(ps)} held-out prompts: base {base_hex:.0%}, "
          f"adapter {adapter_hex:.0%}; base all-correct {base['all_correct']:.0%} vs adapter at weight 0 "
          f"{at_zero['all_correct']:.0%}")
    assert adapter_hex >= 0.8  # the 10-minute budget is read off the printed time, not asserted
    for k in ("colour", "shape", "size", "position", "all_correct"):
        assert abs(at_zero[k] - base[k]) <= 0.05, k
