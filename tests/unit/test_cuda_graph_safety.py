"""What the speed-first rung does so that CUDA graphs neither fail a render nor hold memory after it: outputs copied
out of the graph's memory, no graph for a decoder the pipeline recasts every call, the decoder's graph recorded in
the warm-up, and torch.compile's code (which keeps the graphs' memory pools) dropped with the pipeline.

No CUDA here: the CUDA-only branches are reached by saying the device is CUDA (torch.compile builds nothing until
a module is called, and nothing is called on a GPU); tests/gpu runs them for real.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from labkit.hardware import HardwareProfile, choose  # noqa: E402


class _Graphed(torch.nn.Module):
    """Returns its one output buffer, overwritten by every call: what a CUDA graph's replay does."""

    def __init__(self, wrap=lambda t: t):
        super().__init__()
        self.out = torch.zeros(3)
        self.wrap = wrap
        self.calls = 0
        self._compiled_call_impl = self._replay

    def _replay(self, x):
        self.calls += 1
        self.out.copy_(x)
        return self.wrap(self.out)


def test_outputs_kept_across_calls_keep_their_values_once_copied_out():
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    from labkit.pipelines.memory import _clone_outputs

    raw = _Graphed()
    first = raw(torch.ones(3))
    raw(torch.full((3,), 2.0))
    assert first.tolist() == [2.0, 2.0, 2.0]  # what a scheduler keeping the first output would read, uncopied

    for wrap, take in ((lambda t: t, lambda o: o), (lambda t: (t,), lambda o: o[0]),
                       (lambda t: UNet2DConditionOutput(sample=t), lambda o: o.sample)):
        module = _Graphed(wrap)
        _clone_outputs(module)
        first = module(torch.ones(3))
        second = module(torch.full((3,), 2.0))
        assert take(first).tolist() == [1.0, 1.0, 1.0] and take(second).tolist() == [2.0, 2.0, 2.0]
        assert type(first) is type(wrap(torch.zeros(1))) and module.calls == 2


def _fast(family: str):
    s = choose(family, HardwareProfile.simulated(80, bf16=True), speed="max")
    assert s.compile and s.compile_vae and s.compile_mode == "reduce-overhead" and s.offload == "none", s
    return s


@pytest.fixture
def cuda_compiles(monkeypatch):
    """compile_modules as on a CUDA machine with triton (nothing is compiled until a module is called)."""
    from labkit.pipelines import memory

    monkeypatch.setattr(memory, "compile_reason", lambda device: None)


@pytest.mark.parametrize("family, dtype, decoder_graphed", [
    ("sdxl", "float16", False),   # the SDXL pipeline casts a float16 VAE to float32 and back around each decode
    ("sdxl", "bfloat16", True),   # in bf16 it does not
    ("sd15", "float16", True),    # SD 1.5's pipeline never recasts its VAE
])
def test_the_decoder_gets_no_cuda_graph_where_the_pipeline_recasts_it(tmp_path, cuda_compiles, family, dtype,
                                                                     decoder_graphed):
    from diffusers import DiffusionPipeline

    from labkit.pipelines.memory import compile_modules
    from labkit.testing import build_tiny

    pipe = DiffusionPipeline.from_pretrained(str(build_tiny(family, tmp_path / family)), dtype=getattr(torch, dtype))
    strategy = dataclasses.replace(_fast("sdxl" if family == "sdxl" else "sd15"), dtype=dtype)
    applied = compile_modules(pipe, strategy, "cuda")
    assert applied[0] == "compile=reduce-overhead"
    if decoder_graphed:
        assert applied[1:] == ["compile_vae=reduce-overhead"]
        assert pipe.vae.decoder._compiled_call_impl.__name__ == "call"  # its outputs are copied out too
    else:
        assert applied[1].startswith("compile_vae:skipped(StableDiffusionXLPipeline casts its float16 VAE")
        assert pipe.vae.decoder._compiled_call_impl is None
    assert pipe.unet._compiled_call_impl.__name__ == "call"


def test_without_cuda_graphs_outputs_are_not_copied(cuda_compiles):
    from labkit.pipelines.memory import compile_modules

    pipe = SimpleNamespace(unet=torch.nn.Linear(4, 4), vae=SimpleNamespace(decoder=torch.nn.Linear(4, 4)))
    strategy = dataclasses.replace(_fast("sd15"), compile_mode="max-autotune-no-cudagraphs")
    assert compile_modules(pipe, strategy, "cuda") == ["compile=max-autotune-no-cudagraphs",
                                                        "compile_vae=max-autotune-no-cudagraphs"]
    assert pipe.unet._compiled_call_impl.__name__ != "call"


@pytest.mark.parametrize("applied, calls", [
    (["compile=reduce-overhead", "compile_vae=reduce-overhead"], 2),  # the decoder's graph is recorded on call 2
    (["compile=reduce-overhead", "compile_vae:skipped(why)"], 1),
    (["compile=default", "compile_vae=default"], 1),
])
def test_the_warm_up_runs_until_every_cuda_graph_is_recorded(applied, calls):
    from labkit.pipelines.memory import warm_up
    from labkit.plan import Plan

    seen = []
    loaded = SimpleNamespace(applied=list(applied), warmed=set(), pipe=None)
    plan = Plan(prompt="a red circle", model="sd15", steps=25, seed=0, width=512, height=512, guidance=7.5)
    assert warm_up(loaded, plan, lambda p: seen.append(p.steps)) > 0
    assert seen == [2] * calls
    assert warm_up(loaded, plan, lambda p: seen.append(p.steps)) == 0.0 and len(seen) == calls  # warmed once


def test_dropping_a_compiled_gpu_pipeline_drops_torch_compiles_code_with_its_graph_pools(monkeypatch):
    from labkit.results import PipelineCache

    resets = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))

    def loaded(device, compile):
        return SimpleNamespace(strategy=SimpleNamespace(device=device, compile=compile), size_bytes=1)

    cache = PipelineCache(budget_bytes=10)
    cache.put(("eager",), loaded("gpu", False))
    cache.put(("cpu",), loaded("cpu", True))
    cache.evict(("eager",))
    cache.evict(("cpu",))
    cache.evict(("absent",))
    assert resets == []  # nothing compiled on the GPU went
    cache.put(("fast",), loaded("gpu", True))
    cache.make_room(1, on_gpu=True)  # another GPU pipeline is about to load
    assert resets == [1] and len(cache) == 0
    cache.put(("fast",), loaded("gpu", True))
    cache.clear()
    assert resets == [1, 1]


def test_compiling_raises_dynamos_recompile_limit_for_the_sizes_a_lab_renders(cuda_compiles):
    """The denoiser and the decoder share one Dynamo cache (both compile Module._call_impl): at torch's default of
    8 entries, four sizes would silently run eager."""
    import torch._dynamo

    from labkit.pipelines.memory import RECOMPILE_LIMIT, compile_modules, recompile_limit_name

    name = recompile_limit_name()
    pipe = SimpleNamespace(unet=torch.nn.Linear(4, 4), vae=SimpleNamespace(decoder=torch.nn.Linear(4, 4)))
    with torch._dynamo.config.patch(**{name: 8}):  # torch's default; restored afterwards (monkeypatch breaks it)
        compile_modules(pipe, _fast("sd15"), "cuda")
        assert getattr(torch._dynamo.config, name) == RECOMPILE_LIMIT >= 32
