"""Applying a `MemoryStrategy` to a loaded diffusers pipeline.

Each field of the strategy is one named step. A step a pipeline cannot take (no VAE to tile,
no UNet to chunk) is recorded as skipped rather than failing, so the run's record says exactly
what was applied.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.errors import is_out_of_memory
from labkit.hardware import HardwareProfile, MemoryStrategy


def _denoiser(pipe: Any):
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def apply_strategy(pipe: Any, strategy: MemoryStrategy, device: str, *, compile_cache: str | Path | None = None
                   ) -> list[str]:
    """Put `pipe` on `device` the way `strategy` says; return the steps applied, in order.

    The dtype was applied when loading. Order matters: offload hooks go on last, after the
    modules they wrap were changed (fused QKV, channels_last, compile). `compile_cache`: the folder inductor
    keeps its compiled graphs in (the project's, so a second process does not recompile).
    """
    import torch

    applied = [f"dtype={strategy.dtype}"]
    denoiser = _denoiser(pipe)
    vae = getattr(pipe, "vae", None)

    def step(flag: bool, name: str, target: Any, method: str, *args: Any) -> None:
        if not flag:
            return
        fn = getattr(target, method, None) if target is not None else None
        if fn is None:
            applied.append(f"{name}:skipped(not supported by {type(pipe).__name__})")
            return
        try:
            fn(*args)
            applied.append(name)
        except (NotImplementedError, ValueError) as e:
            applied.append(f"{name}:skipped({type(e).__name__})")

    step(strategy.vae_tiling, "vae_tiling", vae, "enable_tiling")
    step(strategy.vae_slicing, "vae_slicing", vae, "enable_slicing")
    step(strategy.attention_slicing, "attention_slicing", pipe, "enable_attention_slicing")
    step(strategy.forward_chunking, "forward_chunking", denoiser, "enable_forward_chunking")
    if strategy.fuse_qkv:
        applied.append(fuse_qkv(pipe, denoiser))
    if strategy.channels_last and denoiser is not None and strategy.device == "gpu":
        # channels_last only helps convolution kernels on a GPU.
        denoiser.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if strategy.compile or strategy.compile_vae:
        applied += compile_modules(pipe, strategy, device, compile_cache)

    if strategy.device == "cpu" or device == "cpu":
        pipe.to("cpu")
        applied.append("device=cpu")
    elif strategy.offload == "none":
        pipe.to(device)
        applied.append(f"device={device}")
    elif strategy.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
        applied.append("offload=model")
    elif strategy.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
        applied.append("offload=sequential")
    elif strategy.offload == "group":
        applied += group_offload(pipe, torch.device(device))
    if strategy.decode_chunk_size:
        applied.append(f"decode_chunk_size={strategy.decode_chunk_size}")
    return applied


def group_offload(pipe: Any, device: Any) -> list[str]:
    """diffusers' leaf-level group offload: each layer's weights come to `device` just before it runs and go back
    to the CPU after. On CUDA the copies overlap the compute on a side stream; that path keeps a pinned CPU copy of
    every weight in the dtype it had when offload began, and onloads from it. A VAE the pipeline casts to float32
    for decoding (SDXL and SVD in float16, `force_upcast`) would then get its float16 weights back under float32
    latents, and fail; so the VAE is offloaded without the stream (it runs once per image: little to overlap)."""
    import torch

    stream = device.type == "cuda"
    vae = getattr(pipe, "vae", None) if stream else None
    vae = vae if isinstance(vae, torch.nn.Module) and hasattr(vae, "enable_group_offload") else None
    cpu = torch.device("cpu")
    pipe.enable_group_offload(onload_device=device, offload_device=cpu, offload_type="leaf_level", use_stream=stream,
                              exclude_modules=["vae"] if vae is not None else None)
    if vae is None:
        return ["offload=group"]
    vae.enable_group_offload(onload_device=device, offload_device=cpu, offload_type="leaf_level", use_stream=False)
    return ["offload=group", "vae:offload=group(no stream)"]


def fuse_qkv(pipe: Any, denoiser: Any) -> str:
    """Fuse the attention q/k/v projections into one matrix multiply: the pipeline's own `fuse_qkv_projections`
    (Stable Diffusion pipelines: the UNet, and the VAE when it is an `AutoencoderKL`), else the denoiser's. The
    step as recorded: "fuse_qkv", or "fuse_qkv:skipped(why)"."""
    try:
        if hasattr(pipe, "fuse_qkv_projections") and getattr(pipe, "unet", None) is not None:
            from diffusers import AutoencoderKL

            vae = isinstance(getattr(pipe, "vae", None), AutoencoderKL)
            pipe.fuse_qkv_projections(unet=True, vae=vae)
            return "fuse_qkv" if vae else "fuse_qkv(unet only)"
        if denoiser is not None and hasattr(denoiser, "fuse_qkv_projections"):
            denoiser.fuse_qkv_projections()
            # diffusers fuses only the attention classes whose processors read the fused weights (e.g. Wan's);
            # older ones (SVD's UNet) are left as they are, silently
            if any(getattr(m, "fused_projections", False) for m in denoiser.modules()):
                return "fuse_qkv"
            return f"fuse_qkv:skipped(no attention module of {type(denoiser).__name__} supports fusion)"
    except (ValueError, NotImplementedError, AttributeError) as e:  # e.g. added KV projections (diffusers refuses)
        return f"fuse_qkv:skipped({type(e).__name__}: {str(e)[:120]})"
    return f"fuse_qkv:skipped(not supported by {type(pipe).__name__})"


def compile_reason(device: str) -> str | None:
    """Why torch.compile (inductor) cannot build for `device` here, or None when it can."""
    import torch
    import torch._dynamo

    if os.environ.get("TORCHDYNAMO_DISABLE", "") not in ("", "0") or torch._dynamo.config.disable:
        return "TorchDynamo is disabled (TORCHDYNAMO_DISABLE)"
    if device == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "triton is not installed (inductor needs it for CUDA kernels)"
    if device == "mps":
        return "inductor does not build for MPS reliably; labkit compiles on CUDA and CPU only"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # no C++ compiler: inductor cannot build CPU kernels
        return f"no C++ compiler for inductor ({type(e).__name__})"
    return None


def compile_modules(pipe: Any, strategy: MemoryStrategy, device: str, cache: str | Path | None = None
                    ) -> list[str]:
    """torch.compile the denoiser (`strategy.compile`) and the VAE decoder (`strategy.compile_vae`) in place
    (`nn.Module.compile`: weights, LoRA and offload hooks keep their names), with `strategy.compile_mode`. CUDA
    graphs ("reduce-overhead", "max-autotune") need CUDA and resident weights: under offload or elsewhere the mode
    drops them, and the record says so. Compilation itself happens on the first call (the render's warm-up).
    Inductor's FX-graph cache goes to `cache` so a second process reuses the compiled kernels."""
    device_type = "cpu" if strategy.device == "cpu" or device == "cpu" else device
    names = (["compile"] if strategy.compile else []) + (["compile_vae"] if strategy.compile_vae else [])
    reason = compile_reason(device_type)
    if reason:
        return [f"{n}:skipped({reason})" for n in names]
    mode = strategy.compile_mode or "default"
    out = []
    if mode in CUDA_GRAPH_MODES and (device_type != "cuda" or strategy.offload != "none"):
        static = "max-autotune-no-cudagraphs" if mode == "max-autotune" else "default"
        out.append(f"compile_mode:{mode}->{static}(CUDA graphs need CUDA and weights resident on it)")
        mode = static
    if cache is not None:
        import torch._inductor.config as inductor_config

        Path(cache).mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)  # read by inductor whenever it opens its cache
        inductor_config.fx_graph_cache = True
    vae = getattr(pipe, "vae", None)
    targets = {"compile": _denoiser(pipe), "compile_vae": getattr(vae, "decoder", None)}
    graphs = mode in CUDA_GRAPH_MODES
    _allow_recompiles()
    for n in names:
        module = targets[n]
        if module is None or not hasattr(module, "compile"):
            out.append(f"{n}:skipped(not supported by {type(pipe).__name__})")
            continue
        if n == "compile_vae" and graphs and _recasts_vae(pipe):
            out.append(f"{n}:skipped({type(pipe).__name__} casts its float16 VAE to float32 and back around each "
                       "decode: the decoder's CUDA graph would be recorded again every call)")
            continue
        # dynamic=False: one graph per shape, as CUDA graphs want; a new size compiles once more
        module.compile(mode=mode, fullgraph=False, dynamic=False)
        if graphs:
            _clone_outputs(module)
        out.append(f"{n}={mode}")
    return out


#: The compile modes that capture CUDA graphs.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
#: Graphs Dynamo keeps for the compiled modules before it silently runs them eager (torch's default: 8).
RECOMPILE_LIMIT = 64


def _allow_recompiles() -> None:
    """Raise Dynamo's recompile limit to `RECOMPILE_LIMIT`. Every `nn.Module.compile()` compiles the same code
    (`Module._call_impl`), so the denoiser and the decoder share one cache: each size, batch or dtype a lab renders
    adds an entry per module (dynamic=False), and at torch's 8 a notebook trying four sizes would go on eager
    while its record still said compiled."""
    import torch._dynamo

    cfg = torch._dynamo.config
    name = recompile_limit_name()
    setattr(cfg, name, max(getattr(cfg, name), RECOMPILE_LIMIT))


def recompile_limit_name() -> str:
    """The name of Dynamo's recompile limit in this torch ("cache_size_limit" before it was renamed; the old
    name lives on as an alias that does not survive being set and restored)."""
    import torch._dynamo

    return "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


def _recasts_vae(pipe: Any) -> bool:
    """Whether `pipe` moves its VAE to float32 and back on each call: diffusers' SDXL and SVD pipelines do when
    the VAE is float16 and its config says `force_upcast` (SD 1.5's pipeline ignores the flag)."""
    import inspect

    import torch

    vae = getattr(pipe, "vae", None)
    if vae is None or getattr(vae, "dtype", None) != torch.float16 or not getattr(vae.config, "force_upcast", False):
        return False
    try:
        return "force_upcast" in inspect.getsource(type(pipe).__call__)
    except (OSError, TypeError):
        return True  # cannot tell: the safe answer (the decoder stays eager)


def _clone_outputs(module: Any) -> None:
    """Copy what a CUDA-graphed module returns. Its outputs live in the graph's memory, which the next replay
    overwrites, and torch refuses to read them after that: a pipeline that keeps one across calls (a scheduler's
    history, such as PNDM's, when classifier-free guidance is off; a video decoded in chunks) would fail. The
    copy is one latent or one decoded chunk per call."""
    compiled_call = module._compiled_call_impl

    def call(*args: Any, **kwargs: Any) -> Any:
        return _cloned(compiled_call(*args, **kwargs))

    module._compiled_call_impl = call


def _cloned(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return tuple(_cloned(o) for o in out)
    if isinstance(out, dict):  # diffusers' BaseOutput is an OrderedDict with dataclass fields
        return type(out)(**{k: _cloned(v) for k, v in out.items()})
    return out


def compiled(applied: list[str]) -> bool:
    """Whether the steps applied compiled a module (so the first call at a shape pays compilation)."""
    return any(s.startswith(("compile=", "compile_vae=")) for s in applied)


def warm_up(loaded: Any, plan: Any, call: Callable[[Any], Any]) -> float:
    """Seconds a compiled pipeline (`Loaded`) took to compile for `plan`'s shape, reported apart from the render:
    its first call at a shape compiles, so that call is a short warm-up, `call(plan with 2 steps)` (img2img keeps
    its steps: fewer could leave it none to run), twice where the VAE decoder is CUDA-graphed (its graph is
    recorded on its second call); 0.0 when nothing compiled or the shape ran before. When inductor
    fails to build, the modules go back to eager and the steps applied say `compile:failed(why)`; when it failed
    for want of GPU memory, the error goes on to the caller (whose ladder moves to a cheaper rung)."""
    import torch._dynamo

    shape = (plan.task, plan.width, plan.height, plan.count, plan.frames, plan.guidance > 1, len(plan.controls))
    if not compiled(loaded.applied) or shape in loaded.warmed:
        return 0.0
    start = time.perf_counter()
    try:
        short = plan.replace(steps=plan.steps if plan.task == "img2img" else min(plan.steps, 2))
        call(short)
        if any(s.endswith(CUDA_GRAPH_MODES) for s in loaded.applied if s.startswith("compile_vae=")):
            call(short)  # CUDA graph trees record on a module's second call; the decoder runs once a call
    except torch._dynamo.exc.BackendCompilerFailed as e:  # inductor could not build: run eager, and say so
        if is_out_of_memory(e):
            raise
        vae = getattr(loaded.pipe, "vae", None)
        for module in (_denoiser(loaded.pipe), getattr(vae, "decoder", None)):
            if module is not None:
                module._compiled_call_impl = None
        inner = getattr(e, "inner_exception", None) or e  # what the backend raised, not dynamo's wrapper
        why = f"{type(inner).__name__}: {(str(inner).strip().splitlines() or [''])[0][:160]}"
        loaded.applied[:] = [f"{s.split('=')[0]}:failed({why})" if s.startswith(("compile=", "compile_vae="))
                             else s for s in loaded.applied]
    loaded.warmed.add(shape)
    return time.perf_counter() - start


def profile_now(profile: HardwareProfile, pipelines: Any, model_key: tuple) -> HardwareProfile:
    """`profile` with the VRAM free at this moment, to choose a rung at load time (other processes count).

    CUDA only: a simulated or non-CUDA profile comes back as it is. labkit keeps at most one pipeline on the GPU
    and loading another model evicts it (`PipelineCache.make_room`), so a cached GPU pipeline of another model is
    evicted first and the figure is taken after; what this process's allocator holds (this model's cached
    pipeline, reused or replaced) counts as free. `model_key`: the first three fields of the render's cache key.
    """
    if profile.device != "cuda" or profile.is_simulated:
        return profile
    for key in pipelines.keys():
        cached = pipelines.get(key)
        if cached is not None and cached.strategy.device == "gpu" and tuple(key[:3]) != tuple(model_key[:3]):
            pipelines.evict(key)
    from labkit.probes import gpu_now

    now = gpu_now()
    if not now.get("available"):
        return profile
    import torch

    own = torch.cuda.memory_reserved(0) / 2**30 if torch.cuda.is_available() else 0.0
    return profile.with_free_vram(now["free_gb"] + own)


def place_controlnet(net: Any, strategy: MemoryStrategy, device: str) -> tuple[list[str], Any]:
    """Put a ControlNet (or a `MultiControlNetModel`) joined to a pipeline loaded with `strategy` where the
    strategy keeps the denoiser: on the GPU beside it (in channels_last when the strategy uses it), or offloaded
    with it — streamed per submodule under sequential offload, onloaded whole for the denoising loop under model
    or group offload (whose memory `hardware.choose` counted). The base pipeline's own offload hooks are left as
    they are (it is cached and shared).

    Returns the steps applied (for the record, prefixed "controlnet:") and a function to call after the
    render, which puts the ControlNet back on the CPU and removes the hooks this added.
    """
    import torch

    if strategy.device != "gpu" or device == "cpu":
        net.to("cpu")
        return [], lambda: None
    applied: list[str] = []
    if strategy.channels_last:
        net.to(memory_format=torch.channels_last)
        applied.append("controlnet:channels_last")
    if strategy.offload == "none":
        net.to(device)
        applied.append(f"controlnet:device={device}")
        return applied, lambda: net.to("cpu")
    from accelerate.hooks import remove_hook_from_module

    if strategy.offload in ("model", "group"):
        # onloaded whole for the denoising loop beside the (offloaded) denoiser: `choose` counted its memory
        from accelerate import cpu_offload_with_hook

        _, hook = cpu_offload_with_hook(net, device)

        def undo() -> None:
            hook.offload()
            remove_hook_from_module(net, recurse=True)
    else:  # sequential: streamed per submodule, as the denoiser is
        from accelerate import cpu_offload

        cpu_offload(net, execution_device=torch.device(device))

        def undo() -> None:
            remove_hook_from_module(net, recurse=True)
    applied.append(f"controlnet:offload={strategy.offload}")
    return applied, undo
