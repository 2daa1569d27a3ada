"""Data-parallel training across processes: `labkit train … --processes N`, `torchrun` or `accelerate launch`.

Each process runs the same recipe; `accelerate` wraps the trained modules in DistributedDataParallel, which
averages their gradients, so N processes with a per-process batch b take the steps one process takes with a
batch N·b. The engine (`labkit.training.engine`) uses this module to decide who does what:

- every process draws the same global micro-batch (`task.batches(b · N, …)`) and keeps its own slice of it
  (`shard`), with its own noise seed per micro-batch (`micro_seed(seed, micro · N + rank)`), so a run is a pure
  function of (seed, N) and resumes exactly;
- only the main process (rank 0) opens the MLflow run, logs, renders validation grids, finishes checkpoints
  (every process writes its own RNG state into them) and exports; the others wait for it at those points;
- a checkpoint written by N processes resumes in any number of them, one included.

`--processes N` relaunches the same command under `torch.distributed.run` (torchrun), whose processes find
each other on loopback; on a CPU they talk through gloo. `accelerate launch -m labkit train …` works too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from labkit.errors import InvalidParameter

#: The environment variable torchrun and accelerate set in each process, and that --processes checks.
WORLD_SIZE = "WORLD_SIZE"


def world() -> tuple[int, int]:
    """(rank, size) of this process in a data-parallel job; (0, 1) when it runs alone."""
    size = int(os.environ.get(WORLD_SIZE, "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    return (rank, size) if size > 1 else (0, 1)


def is_main() -> bool:
    """Whether this process logs, checkpoints and exports (rank 0, or a job of one process)."""
    return world()[0] == 0


def shard(batch: Any, rank: int, size: int) -> Any:
    """This process's slice of a global micro-batch: rows `rank·b … (rank+1)·b` of every tensor, array or list
    in it (dicts, and tuples of batch parts, are split part by part; a list is a list of samples)."""
    if size == 1:
        return batch
    if isinstance(batch, Mapping):
        return {k: shard(v, rank, size) for k, v in batch.items()}
    if isinstance(batch, tuple) and batch and all(isinstance(x, Mapping) or _rows(x) is not None for x in batch):
        return tuple(shard(x, rank, size) for x in batch)  # (images, captions, …): each part split alike
    n = _rows(batch)
    if n is None:
        raise InvalidParameter(f"A training batch of type {type(batch).__name__} cannot be split between "
                               f"{size} processes.", value=type(batch).__name__,
                               fix="train this recipe in one process (drop --processes), or return batches as "
                                   "lists, tensors or dicts of them from TrainTask.batches.")
    if n % size:
        raise InvalidParameter(f"A global batch of {n} cannot be split evenly between {size} processes.", value=n,
                               fix="use a batch size per process (the global batch is batch size × processes).")
    b = n // size
    return batch[rank * b:(rank + 1) * b]


def _rows(x: Any) -> int | None:
    if isinstance(x, (list, tuple)):
        return len(x)
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return None


def average_gradients(params: Sequence[Any]) -> None:
    """Average the gradients of `params` over the job's processes (one all-reduce of a flat buffer).

    Not left to DistributedDataParallel: a task's loss calls its own modules (e.g. the pipeline's UNet, which
    holds the trained LoRA layers), not the wrapper `accelerate.prepare` returns, and DDP only reduces
    gradients for a forward made through the wrapper."""
    import torch
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def processes_agree(params: Sequence[Any]) -> bool:
    """Whether every process of the job holds the same values of `params` (a float64 checksum each, gathered)."""
    import torch
    import torch.distributed as dist

    device = params[0].device if params else "cpu"  # NCCL gathers CUDA tensors, gloo CPU ones
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for p in params:
        v = p.detach().double()
        total += torch.stack([v.sum(), v.abs().sum()])
    sums = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(sums, total)
    return all(torch.allclose(s, sums[0], rtol=1e-9, atol=0.0) for s in sums)


def check_processes(n: Any) -> int:
    """`--processes N`: a whole number from 1 to 64; on a machine with CUDA, at most one per GPU (each process
    trains on its own GPU: two on one card fail at NCCL's first all-reduce, "Duplicate GPU detected")."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise InvalidParameter(f"--processes must be a whole number from 1 to 64, got {n!r}.", value=n,
                               fix="use the number of GPUs (or CPU processes) to train on, e.g. --processes 2.")
    if n > 1:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if 0 < gpus < n:
            raise InvalidParameter(f"--processes {n} is more than the {gpus} GPU(s) this machine shows: each process "
                                   "trains on a GPU of its own.", value=n,
                                   fix=f"use --processes {gpus}" + (" (or leave it out)" if gpus == 1 else "") + ".")
    return n


def launch_command(n: int, argv: Sequence[str]) -> list[str]:
    """The command that runs `labkit ARGV` in `n` data-parallel processes on this machine (torchrun, standalone:
    a free rendezvous port on loopback)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "labkit", *argv]


def without_processes(argv: Sequence[str]) -> list[str]:
    """`argv` without its `--processes N` (or `--processes=N`), as each launched process receives it."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--processes":
            skip = True
            continue
        if a.startswith("--processes="):
            continue
        out.append(a)
    return out
