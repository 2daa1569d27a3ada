"""Training where the frozen base is loaded in half precision (CUDA with `--mixed-precision fp16/bf16`), checked on
the CPU with the toy model loaded in bfloat16: the trained weights are float32 (AdamW updates them there: fp16
gradients cannot be unscaled, and updates this small vanish in bf16), the frozen ones keep the load dtype, and
the task still draws (class images, validation) with its weights in two precisions. And what full fine-tuning
is estimated to need on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

TOY = Path(__file__).resolve().parents[2] / "labkit" / "toyworld" / "model"


def _pipe():
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(TOY), dtype=torch.bfloat16, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _kwargs():
    return dict(base_id="toyworld", base_family="toy", base_licence="MIT", resolution=64, sampling_steps=2,
                guidance_scale=5.0)


def test_lora_weights_train_in_float32_on_a_half_precision_base(tmp_path):
    from labkit.toyworld.data import write_dataset
    from labkit.training.lora import LoraTask, LoraTrainConfig

    data = tmp_path / "hexagons"
    write_dataset(data, 4, seed=0, split="train", n_objects=(1,), shapes=("hexagon",), licence="CC-BY-4.0")
    pipe = _pipe()
    task = LoraTask(pipe, LoraTrainConfig(data=data, output_dir=tmp_path / "out", train_text_encoder=True),
                    **_kwargs())
    trained = list(task.holder.parameters())
    assert trained and all(p.dtype == torch.float32 and p.requires_grad for p in trained)
    assert pipe.unet.conv_in.weight.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert task.latents.dtype == torch.float32 and torch.isfinite(task.latents).all()
    (image,) = task.render(["a large red hexagon in the centre"], [0])
    assert image.size == (64, 64)


def test_full_dreambooth_trains_a_float32_unet_and_draws_with_its_bf16_parts(tmp_path):
    import numpy as np

    from labkit.toyworld.subject import write_subject_dataset
    from labkit.training.dreambooth import DreamBoothConfig, DreamBoothFullTask

    data = tmp_path / "ring"
    write_subject_dataset(data)
    pipe = _pipe()
    config = DreamBoothConfig(data=data, output_dir=tmp_path / "out", token="sks", full=True,
                              prior_preservation=False)
    task = DreamBoothFullTask(pipe, config, **_kwargs())
    assert all(p.dtype == torch.float32 for p in task.holder["unet"].parameters())
    assert pipe.text_encoder.dtype == pipe.vae.dtype == torch.bfloat16
    (image,) = task.render(["a small yellow sks circle on the left"], [0])  # fp32 UNet, bf16 text encoder and VAE
    assert np.asarray(image).std() > 0


def test_the_engine_trains_a_lora_in_bf16_mixed_precision_over_a_bf16_base(tmp_path, lab):
    """One real step of the engine as on CUDA with mixed_precision="bf16" (accelerate's bf16 autocast runs on the CPU
    too): the loss is finite, every LoRA weight moved, and all stayed float32."""
    from labkit.toyworld.data import write_dataset
    from labkit.training.engine import train
    from labkit.training.lora import LoraTask, LoraTrainConfig

    data = tmp_path / "hexagons"
    write_dataset(data, 4, seed=0, split="train", n_objects=(1,), shapes=("hexagon",), licence="CC-BY-4.0")
    config = LoraTrainConfig(data=data, output_dir=tmp_path / "out", steps=2, batch_size=2, mixed_precision="bf16",
                             checkpoint_every=0, export=False, validate_every=0, learning_rate=1e-3)
    task = LoraTask(_pipe(), config, **_kwargs())
    before = {k: v.detach().clone() for k, v in task.holder.state_dict().items()}
    result = train(task, config.train_config(5.0, 2), lab=lab)
    after = task.holder.state_dict()
    assert result.status == "finished" and torch.isfinite(torch.tensor(result.metrics["train/loss"]))
    assert {v.dtype for v in after.values()} == {torch.float32}
    b = [k for k in after if ".B." in k]  # B starts at zero: after two steps every one has moved
    assert b and all(not torch.equal(before[k], after[k]) for k in b)


@pytest.fixture
def fake_bitsandbytes(monkeypatch):
    """bitsandbytes as it looks on a CUDA machine: installed and importable (`None`: installed but not loading)."""
    import importlib.util
    import sys
    import types

    real = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes"
                        else real(name, *a))

    def install(loads: bool = True) -> None:
        monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes") if loads else None)

    return install


def test_the_full_fine_tuning_estimate_counts_8bit_adamw_where_it_runs_and_the_copies_of_several_processes(
        monkeypatch, tmp_path, fake_bitsandbytes):
    """16 bytes per trained weight with AdamW; 10 with 8-bit AdamW, which is the default where CUDA is and
    bitsandbytes loads (it was counted only when asked for); 8 more when several processes train (DDP's buckets
    and the all-reduce); an installed bitsandbytes that does not load trains (and counts) AdamW, with a warning,
    and is refused where 8-bit AdamW was required."""
    import dataclasses

    from labkit.errors import InvalidParameter
    from labkit.training.dreambooth import DreamBoothConfig, full_memory_gb

    pipe = _pipe()
    config = DreamBoothConfig(data=tmp_path, token="sks", full=True)
    n = sum(p.numel() for p in pipe.unet.parameters())
    frozen = sum(p.numel() * p.element_size() for m in (pipe.vae, pipe.text_encoder) for p in m.parameters())

    def expected(per: int) -> float:
        return 1.25 * (n * per + frozen) / 2**30

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    fake_bitsandbytes(loads=True)
    assert full_memory_gb(config, pipe) == pytest.approx(expected(10))
    assert full_memory_gb(dataclasses.replace(config, use_8bit_adam=False), pipe) == pytest.approx(expected(16))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert full_memory_gb(config, pipe) == pytest.approx(expected(18))
    monkeypatch.delenv("WORLD_SIZE")
    fake_bitsandbytes(loads=False)
    with pytest.warns(UserWarning, match="bitsandbytes did not load"):
        assert full_memory_gb(config, pipe) == pytest.approx(expected(16))
    with pytest.raises(InvalidParameter, match="bitsandbytes did not load"):
        full_memory_gb(dataclasses.replace(config, use_8bit_adam=True), pipe)
