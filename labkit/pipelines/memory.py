"""Applying a `MemoryStrategy` to a loaded diffusers pipeline.

Each field of the strategy is one named step. A step a pipeline cannot take (no VAE to tile,
no UNet to chunk) is recorded as skipped rather than failing, so the run's record says exactly
what was applied.
"""

from __future__ import annotations

from typing import Any

from labkit.hardware import MemoryStrategy


def _denoiser(pipe: Any):
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def apply_strategy(pipe: Any, strategy: MemoryStrategy, device: str) -> list[str]:
    """Put `pipe` on `device` the way `strategy` says; return the steps applied, in order.

    The dtype was applied when loading. Order matters: offload hooks go on last, after the
    modules they wrap were changed (channels_last, compile).
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
    if strategy.channels_last and denoiser is not None and strategy.device == "gpu":
        # channels_last only helps convolution kernels on a GPU.
        denoiser.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if strategy.compile and denoiser is not None:
        name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        setattr(pipe, name, torch.compile(denoiser, mode="reduce-overhead", fullgraph=False))
        applied.append("compile")

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
        pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=device == "cuda")
        applied.append("offload=group")
    if strategy.decode_chunk_size:
        applied.append(f"decode_chunk_size={strategy.decode_chunk_size}")
    return applied


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
