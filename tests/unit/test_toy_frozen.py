"""Every module a toy recipe's loss runs through is one the engine puts on the training device: trained
(`TrainTask.models()`) or frozen (`TrainTask.frozen()`), never both, and the frozen ones hold no trainable weight
and compute the same in eval mode as in train mode (the engine calls `.eval()` on them; on the CPU nothing changes).

A module left out would stay on the CPU while the batch goes to CUDA (device mismatch on a GPU). Each task is
built on the shipped toy model's components and one loss is run on a one-item batch, recording which modules
were called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import labkit

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

SHIPPED = Path(labkit.__file__).parent / "toyworld" / "model"
pytestmark = pytest.mark.usefixtures("one_thread")


def _components() -> dict[str, Any]:
    """Fresh components of the shipped toy model, frozen as `load_base_components` leaves them."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    comps = {"tokenizer": CLIPTokenizer.from_pretrained(str(SHIPPED / "tokenizer")),
             "text_encoder": CLIPTextModel.from_pretrained(str(SHIPPED / "text_encoder")),
             "vae": AutoencoderKL.from_pretrained(str(SHIPPED / "vae")),
             "unet": UNet2DConditionModel.from_pretrained(str(SHIPPED / "unet")),
             "scheduler": DDIMScheduler.from_pretrained(str(SHIPPED / "scheduler"))}
    for k in ("vae", "text_encoder", "unet"):
        comps[k].requires_grad_(False).eval()
    return comps


def _vae(comps):
    from labkit.training.toy_base import ToyVAETask

    return ToyVAETask(comps["vae"])


def _text(comps):
    from labkit.training.toy_text import ToyTextTask

    return ToyTextTask(comps["text_encoder"], comps["tokenizer"])


def _diffusion(train_text_encoder: bool):
    def make(comps):
        from labkit.training.toy_base import ToyDiffusionTask

        return ToyDiffusionTask(comps, train_text_encoder=train_text_encoder, object_weight=4.0)
    return make


def _controlnet(comps):
    from labkit.training.toy_controlnet import ToyControlNetConfig, ToyControlNetTask

    return ToyControlNetTask(comps, ToyControlNetConfig())


def _warp(comps):
    from labkit.training.toy_warp import ToyWarpConfig, ToyWarpTask

    return ToyWarpTask(comps, ToyWarpConfig(frames=4, width=32, depth=1))


def _motion(**scales: float):
    def make(comps):
        from labkit.training.toy_motion import ToyMotionConfig, ToyMotionTask

        return ToyMotionTask(comps, ToyMotionConfig(frames=4, **scales))
    return make


TASKS = {
    "vae": _vae,
    "text": _text,
    "diffusion": _diffusion(train_text_encoder=False),
    "diffusion-text-trained": _diffusion(train_text_encoder=True),
    "controlnet": _controlnet,
    "warp": _warp,
    "motion": _motion(),  # the recipe's defaults: 2D weights at 0.2 × lr, the text encoder frozen
    "motion-2d-frozen": _motion(spatial_lr_scale=0.0),
    "motion-text-trained": _motion(spatial_lr_scale=0.0, text_encoder_lr_scale=0.5),
}


def _reachable(task) -> dict[str, torch.nn.Module]:
    """The modules among the task's attributes (and in its components dict), and its pipeline's components."""
    found: dict[str, torch.nn.Module] = {}
    for name, value in vars(task).items():
        if isinstance(value, torch.nn.Module):
            found[name] = value
        elif isinstance(value, dict):
            found.update({f"{name}[{k!r}]": v for k, v in value.items() if isinstance(v, torch.nn.Module)})
    if callable(getattr(task, "pipeline", None)):
        found.update({f"pipeline.{k}": v for k, v in task.pipeline().components.items()
                      if isinstance(v, torch.nn.Module)})
    return found


def _tensors(modules) -> dict[int, torch.Tensor]:
    return {id(t): t for m in modules for t in (*m.parameters(), *m.buffers())}


def _loss(task) -> tuple[torch.Tensor, set[int]]:
    """One loss on a one-item batch, and the ids of the tensors held by the modules it called."""
    from labkit.training.task import StepContext

    batch = next(task.batches(1, 0))
    called: list[torch.nn.Module] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, args: called.append(m))
    try:
        ctx = StepContext(step=0, micro=0, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
        loss = task.loss(batch, ctx)
    finally:
        hook.remove()
    return loss.detach(), {id(t) for m in called for t in (*m.parameters(False), *m.buffers(False))}


@pytest.mark.parametrize("case", list(TASKS))
def test_the_loss_runs_only_through_trained_or_frozen_modules_never_both(case):
    task = TASKS[case](_components())
    trained, frozen = dict(task.models()), dict(task.frozen())
    trained_t, frozen_t = _tensors(trained.values()), _tensors(frozen.values())
    assert not trained_t.keys() & frozen_t.keys(), f"{case}: a tensor is both trained and frozen"
    assert not any(p.requires_grad for m in frozen.values() for p in m.parameters()), f"{case}: a frozen weight trains"
    reachable = _reachable(task)
    # as the engine leaves them: trained in train mode, frozen (on the device) in eval mode; a frozen module a
    # recipe left in train mode (the toy base's text encoder after its pre-training) gives the same loss
    for m in trained.values():
        m.train()
    for m in frozen.values():
        m.train()
    before, used = _loss(task)
    for m in frozen.values():
        m.to("cpu").eval()
    after, _ = _loss(task)
    assert torch.equal(before, after), f"{case}: eval mode changed a frozen module's output"
    names: dict[int, str] = {}  # tensor id: its name, by the first attribute that reaches it
    for name, m in reachable.items():
        for n, t in (*m.named_parameters(), *m.named_buffers()):
            names.setdefault(id(t), f"{name}.{n}")
    left_out = sorted(names[i] for i in used & names.keys() if i not in trained_t and i not in frozen_t)
    assert not left_out, f"{case}: the loss uses tensors neither trained nor frozen: {left_out[:5]}"
    assert used & names.keys(), case  # the hook saw the task's modules


def test_frozen_modules_have_no_train_only_layers():
    """The engine's `.eval()` changes nothing: no dropout with p > 0, no batch norm in what the recipes freeze."""
    comps = _components()
    for name in ("vae", "text_encoder", "unet"):
        for sub in comps[name].modules():
            assert not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm), name
            if isinstance(sub, torch.nn.modules.dropout._DropoutNd):
                assert sub.p == 0, name
            if isinstance(vars(sub).get("dropout"), float):  # an attention's own rate (CLIP's)
                assert sub.dropout == 0, name
