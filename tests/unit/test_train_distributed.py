"""Data-parallel training's pieces that need no processes: who is main, how a global batch is split, the
relaunch command (`labkit train … --processes N`)."""

from __future__ import annotations

import sys

import pytest

from labkit.errors import InvalidParameter
from labkit.training.distributed import (
    check_processes,
    is_main,
    launch_command,
    shard,
    without_processes,
    world,
)


def test_a_process_alone_is_the_main_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert world() == (0, 1) and is_main()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert world() == (2, 4) and not is_main()
    monkeypatch.setenv("RANK", "0")
    assert is_main()


def test_every_process_keeps_its_own_rows_of_the_global_batch():
    torch = pytest.importorskip("torch")
    batch = list(range(8))
    assert shard(batch, 0, 2) + shard(batch, 1, 2) == batch
    assert shard(batch, 1, 4) == [2, 3]
    t = torch.arange(12).reshape(6, 2)
    assert torch.equal(torch.cat([shard(t, r, 3) for r in range(3)]), t)
    d = {"latents": torch.zeros(4, 3), "ids": [10, 11, 12, 13]}
    part = shard(d, 1, 2)
    assert part["ids"] == [12, 13] and part["latents"].shape == (2, 3)
    pair = (torch.ones(4, 1), [1, 2, 3, 4])
    assert shard(pair, 0, 2)[1] == [1, 2]
    ids, targets = shard((torch.arange(4), {"colour": torch.arange(8).reshape(4, 2)}), 1, 2)  # toy-base's text batch
    assert ids.tolist() == [2, 3] and targets["colour"].tolist() == [[4, 5], [6, 7]]
    assert shard(batch, 0, 1) is batch  # one process: the batch untouched


def test_a_batch_that_cannot_be_split_is_refused_with_the_fix():
    with pytest.raises(InvalidParameter, match="5 cannot be split evenly between 2") as err:
        shard(list(range(5)), 0, 2)
    assert "batch size per process" in err.value.fix
    with pytest.raises(InvalidParameter, match="object cannot be split") as err:
        shard(object(), 0, 2)
    assert "--processes" in err.value.fix


@pytest.mark.parametrize("bad", [0, -1, 65, 1.5, "2", True])
def test_processes_must_be_a_sensible_whole_number(bad):
    with pytest.raises(InvalidParameter, match="--processes") as err:
        check_processes(bad)
    assert err.value.fix


def test_processes_on_a_gpu_machine_are_at_most_one_per_gpu(monkeypatch):
    """Two processes on one card fail at NCCL's first all-reduce ("Duplicate GPU detected"), after the model has
    loaded twice: refused before anything starts. Without CUDA (gloo on the CPU) any count up to 64 runs."""
    import torch

    assert check_processes(4) == 4  # no CUDA here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_processes(1) == 1
    with pytest.raises(InvalidParameter, match="--processes 2 is more than the 1 GPU") as err:
        check_processes(2)
    assert "--processes 1" in err.value.fix
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert check_processes(4) == 4
    with pytest.raises(InvalidParameter, match="the 4 GPU"):
        check_processes(8)


def test_the_relaunch_runs_the_same_command_without_processes_under_torchrun():
    argv = ["train", "lora", "data", "--processes", "2", "--steps", "10", "--processes=3"]
    assert without_processes(argv) == ["train", "lora", "data", "--steps", "10"]
    cmd = launch_command(2, without_processes(argv))
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in cmd and "--standalone" in cmd
    assert cmd[cmd.index("-m", 3):] == ["-m", "labkit", "train", "lora", "data", "--steps", "10"]
