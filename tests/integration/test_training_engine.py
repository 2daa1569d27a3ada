"""The training engine on a tiny model: exact resume after Ctrl-C, checkpoints, validation grids and
metrics in the MLflow run, the model card, and config errors raised before any work.

The tiny task has dropout (so the global RNG matters), random inputs drawn from the step's
generator, gradient accumulation and a cosine schedule with warm-up: everything a resume can get
wrong shows up as differing weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from labkit.errors import InvalidParameter  # noqa: E402
from labkit.training import TrainConfig, TrainTask, Validation, list_checkpoints, train  # noqa: E402


class TinyTask(TrainTask):
    """Regress a fixed random linear map through a small conv net with dropout."""

    name = "tiny"

    def __init__(self, seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Dropout(0.2),
                torch.nn.Conv2d(8, 3, 3, padding=1))
            self.target = torch.nn.Conv2d(3, 3, 3, padding=1).requires_grad_(False)

    def models(self):
        return {"net": self.net}

    def batches(self, batch_size, start):
        i = start
        while True:  # a pure function of the index: resume fast-forwards without replaying
            g = torch.Generator().manual_seed(10_000 + i)
            yield torch.rand(batch_size, 3, 8, 8, generator=g)
            i += 1

    def loss(self, batch, ctx):
        x = batch + 0.05 * torch.randn(batch.shape, generator=ctx.generator)
        return torch.nn.functional.mse_loss(self.net(x), self.target(x))

    def validate(self, prompts, seeds, step):
        from PIL import Image

        self.net.eval()
        images = []
        for _ in prompts:
            for s in seeds:
                x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(s))
                y = (self.net(x)[0].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
                images.append(Image.fromarray(y).resize((16, 16)))
        return Validation(images, [f"{p} / {s}" for p in prompts for s in seeds], {"mean": float(len(prompts))})

    def data_card(self):
        return {"description": "random 8x8 tensors", "licence": "CC0-1.0"}


def _config(out: Path, **kw) -> TrainConfig:
    base = dict(output_dir=out, steps=6, batch_size=4, gradient_accumulation_steps=2, learning_rate=1e-2,
                lr_schedule="cosine", warmup_steps=2, seed=3, checkpoint_every=2, keep_checkpoints=2,
                validate_every=3, validation_prompts=("p1", "p2"), validation_seeds=(0, 1), log_every=1,
                licence="CC0-1.0", cpu=True)
    base.update(kw)
    return TrainConfig(**base)


def _weights(task: TinyTask) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in task.net.state_dict().items()}


def _client(lab):
    return lab.tracker.client


def _artifacts(lab, run_id: str, path: str = "") -> list[str]:
    return [a.path for a in _client(lab).list_artifacts(run_id, path)]


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_interrupted_and_resumed_run_matches_uninterrupted(lab, tmp_path):
    full_task = TinyTask()
    full = train(full_task, _config(tmp_path / "full"), lab=lab, run_name="full")
    assert full.status == "finished" and full.step == 6

    def ctrl_c_at_3(state):
        if state.step == 3:
            raise KeyboardInterrupt

    task = TinyTask()
    stopped = train(task, _config(tmp_path / "split"), lab=lab, run_name="first-half", callbacks=[ctrl_c_at_3])
    assert stopped.status == "interrupted" and stopped.step == 3
    assert stopped.checkpoint is not None and stopped.checkpoint.name == "checkpoint-000003"
    # The interrupted run is KILLED and says where to resume from; the checkpoint went with it.
    info = _client(lab).get_run(stopped.run_id)
    assert info.info.status == "KILLED"
    assert info.data.tags["labkit.train_status"] == "interrupted"
    assert info.data.tags["labkit.checkpoint"] == str(stopped.checkpoint)
    assert "checkpoints/checkpoint-000003" in _artifacts(lab, stopped.run_id, "checkpoints")

    fresh = TinyTask()  # a new process would rebuild the task from scratch
    resumed = train(fresh, _config(tmp_path / "split", resume="latest"), lab=lab, run_name="second-half")
    assert resumed.status == "finished" and resumed.step == 6
    assert _client(lab).get_run(resumed.run_id).data.tags["labkit.resumed_at_step"] == "3"

    a, b = _weights(full_task), _weights(fresh)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    # ...and training did change the weights (a test that cannot fail is a defect)
    assert not torch.equal(a["0.weight"], _weights(TinyTask())["0.weight"])


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(lab, tmp_path):
    import os
    import signal

    def terminate_at_2(state):  # what `kill`, a scheduler or Kaggle's stop button sends
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    from labkit.training import TrainingStopped

    before = signal.getsignal(signal.SIGTERM)
    # raised on, not returned: a script that trains several jobs stops when a scheduler stops it
    with pytest.raises(TrainingStopped, match="stopped by SIGTERM at step 2") as e:
        train(TinyTask(), _config(tmp_path / "run"), lab=lab, callbacks=[terminate_at_2])
    stopped = e.value.result
    assert stopped.status == "interrupted" and stopped.checkpoint.name == "checkpoint-000002"
    run = _client(lab).get_run(stopped.run_id)
    assert run.info.status == "KILLED" and run.data.tags["labkit.error"] == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler lives only while training runs
    resumed = train(TinyTask(), _config(tmp_path / "run", resume="latest"), lab=lab)
    assert resumed.status == "finished" and resumed.step == 6


def test_ctrl_c_stops_a_loop_of_jobs_and_a_stop_from_code_returns(lab, tmp_path):
    """One Ctrl-C (a notebook's interrupt) stops the cell, not only the job it landed in; a callback that raises
    KeyboardInterrupt (the Train panel's Stop) gets the interrupted result back."""
    import os
    import signal

    from labkit.training import TrainingStopped

    def interrupt_at_2(state):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as in a script or kernel
    try:
        finished = []
        with pytest.raises(TrainingStopped, match="interrupted by the user") as e:
            for name in ("a", "b"):
                finished.append(train(TinyTask(), _config(tmp_path / name), lab=lab, callbacks=[interrupt_at_2]))
        assert finished == [] and not (tmp_path / "b").exists()  # the second job never started
        assert e.value.signal == "SIGINT" and e.value.result.checkpoint.name == "checkpoint-000002"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)

    def stop_at_2(state):
        if state.step == 2:
            raise KeyboardInterrupt

    assert train(TinyTask(), _config(tmp_path / "c"), lab=lab, callbacks=[stop_at_2]).status == "interrupted"


def test_run_records_metrics_checkpoints_validation_and_card(lab, tmp_path):
    out = tmp_path / "run"
    res = train(TinyTask(), _config(out, checkpoint_artifacts="all"), lab=lab, run_name="record")
    client = _client(lab)
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    # the whole config, once, as params
    assert run.data.params["learning_rate"] == "0.01" and run.data.params["steps"] == "6"
    assert run.data.params["task"] == "tiny" and run.data.params["data.licence"] == "CC0-1.0"
    # loss / lr / throughput at every step (log_every=1); lr warms up then decays
    loss = client.get_metric_history(res.run_id, "train/loss")
    lr = client.get_metric_history(res.run_id, "train/lr")
    assert [m.step for m in loss] == [1, 2, 3, 4, 5, 6]
    assert [m.value for m in lr][1] == pytest.approx(1e-2) and lr[-1].value < lr[1].value
    assert all(m.value > 0 for m in client.get_metric_history(res.run_id, "train/samples_per_s"))
    assert [m.step for m in client.get_metric_history(res.run_id, "val/mean")] == [3, 6]
    # validation grids (2 prompts × 2 seeds of 16 px, 2 px padding) at steps 3 and 6
    grids = _artifacts(lab, res.run_id, "validation")
    assert {"validation/step-000003.png", "validation/step-000006.png"} <= set(grids)
    from PIL import Image

    root = Path(run.info.artifact_uri.removeprefix("file://"))
    grid = Image.open(root / "validation" / "step-000006.png")
    assert grid.size == (2 * 18 + 2, 2 * 18 + 2)
    # the same grids as MLflow logged images (the UI's "validation" image card, a slider over steps 3 and 6)
    images = {p: int(p.split("+step+")[1].split("+")[0]) for p in _artifacts(lab, res.run_id, "images")}
    full = sorted((step, p) for p, step in images.items() if not p.endswith("+compressed.png"))
    assert [step for step, _ in full] == [3, 6] and len(images) == 4 and run.data.tags["mlflow.loggedImages"] == "True"
    assert (root / full[1][1]).read_bytes() == (root / "validation" / "step-000006.png").read_bytes()
    # the run's description: one line in the MLflow UI, not a note of the researcher's
    assert run.data.tags["mlflow.note.content"].startswith("train tiny · 6 steps · batch 4 · seed 3 · ")
    assert lab.notes(res.run_id) == ""
    # checkpoints: every 2 steps in the run; only the last 2 kept on disk
    assert {f"checkpoints/checkpoint-00000{i}" for i in (2, 4, 6)} <= set(_artifacts(lab, res.run_id, "checkpoints"))
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-000004", "checkpoint-000006"]
    # the export: safetensors weights and a model card that says how it was made
    assert (res.export_dir / "net.safetensors").is_file()
    card = (res.export_dir / "README.md").read_text()
    assert "CC0-1.0" in card and "6 optimizer steps" in card and "seed 3" in card and res.run_id in card
    assert "model/README.md" in _artifacts(lab, res.run_id, "model")


def test_a_fresh_rerun_into_the_same_folder_keeps_its_own_checkpoints_and_sets_the_earlier_aside(lab, tmp_path):
    out = tmp_path / "run"
    first = train(TinyTask(), _config(out, validate_every=6), lab=lab, run_name="first")
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-000004", "checkpoint-000006"]
    # a shorter fresh run into the same folder: its checkpoints are its own, the first run's are kept aside
    with pytest.warns(UserWarning, match="2 checkpoint.*of an earlier run: moved to"):
        second = train(TinyTask(seed=1), _config(out, steps=4, validate_every=0), lab=lab, run_name="second")
    assert second.status == "finished" and second.step == 4
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-000002", "checkpoint-000004"]
    assert second.checkpoint == out / "checkpoints" / "checkpoint-000004"
    from labkit.training.engine import read_state

    assert read_state(second.checkpoint)["run_id"] == second.run_id  # written by this run, not the first's
    assert _client(lab).get_run(second.run_id).data.tags["labkit.checkpoint"] == str(second.checkpoint)
    (aside,) = (out / "earlier").iterdir()
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == ["checkpoint-000004", "checkpoint-000006"]
    assert read_state(aside / "checkpoints" / "checkpoint-000006")["run_id"] == first.run_id
    # the earlier run's validation grid went with them: the folder holds no grid this run did not make
    assert (aside / "validation" / "step-000006.png").is_file() and not (out / "validation").exists()


def test_bad_config_fails_before_work(lab, tmp_path):
    with pytest.raises(InvalidParameter, match="lr_schedule"):
        train(TinyTask(), _config(tmp_path / "a", lr_schedule="linear"), lab=lab)
    with pytest.raises(InvalidParameter, match="not a labkit checkpoint"):
        train(TinyTask(), _config(tmp_path / "b", resume=tmp_path / "nowhere"), lab=lab)
    done = train(TinyTask(), _config(tmp_path / "c", steps=2, validate_every=0), lab=lab)
    with pytest.raises(InvalidParameter, match="batch_size"):
        train(TinyTask(), _config(tmp_path / "c", steps=2, validate_every=0, batch_size=8, resume=done.checkpoint),
              lab=lab)


def test_mixed_precision_choices(lab, tmp_path):
    with pytest.raises(InvalidParameter, match="fp16"):
        train(TinyTask(), _config(tmp_path / "fp16", mixed_precision="fp16"), lab=lab)
    task = TinyTask()
    res = train(task, _config(tmp_path / "bf16", steps=2, validate_every=0, mixed_precision="bf16"), lab=lab)
    assert res.status == "finished" and res.metrics["train/loss"] > 0
    assert all(p.dtype == torch.float32 for p in task.net.parameters())  # autocast: the weights stay fp32


class NonCommercialTask(TinyTask):
    def data_card(self):
        return {"description": "scraped shapes", "source": "shapes-nc", "licence": "CC-BY-NC-4.0"}


def test_training_checks_the_data_licence_before_any_step(project, tmp_path, search_runs):
    from labkit.errors import ComplianceViolation
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    opened = Lab(project, hardware=HardwareProfile.simulated(None), compliance_mode="open")
    with pytest.raises(ComplianceViolation, match="shapes-nc"):
        train(NonCommercialTask(), _config(tmp_path / "blocked"), lab=opened)
    assert search_runs(opened.config.tracking_uri) == [] and not (tmp_path / "blocked").exists()

    research = Lab(project, hardware=HardwareProfile.simulated(None))
    done = train(NonCommercialTask(), _config(tmp_path / "ok", steps=2, validate_every=0, checkpoint_every=0),
                 lab=research)
    tags = research.tracker.client.get_run(done.run_id).data.tags
    assert tags["labkit.compliance.mode"] == "research" and tags["labkit.terms.commercial"] == "false"


def test_the_engine_takes_a_tracker_and_a_hardware_profile_not_a_lab(project, tmp_path):
    from labkit.compliance import resolve_mode
    from labkit.config import LabConfig
    from labkit.hardware import HardwareProfile
    from labkit.tracking import Tracker
    from labkit.training import TrainEnv

    tracker = Tracker(LabConfig.resolve(project))
    env = TrainEnv(tracker=tracker, hardware=HardwareProfile.simulated(24), compliance=resolve_mode("research"),
                   tags={"labkit.compliance_mode": "research"})
    res = train(TinyTask(), _config(tmp_path / "env", steps=2, validate_every=0), env=env, run_name="no lab")
    run = tracker.client.get_run(res.run_id)
    assert res.status == "finished" and run.info.status == "FINISHED" and run.info.run_name == "no lab"
    assert run.data.tags["hardware.vram_total_gb"] == "24.0" and run.data.tags["labkit.compliance_mode"] == "research"
    assert run.data.tags["labkit.compliance.verdict"] == "allow" and run.data.metrics["train/loss"] > 0

    # An empty TrainEnv (what a unit of a recipe needs) trains and exports, and records nothing.
    quiet = train(TinyTask(), _config(tmp_path / "quiet", steps=2, validate_every=0), env=TrainEnv())
    assert quiet.run_id is None and (quiet.export_dir / "net.safetensors").is_file()
    assert [r.info.run_id for r in tracker.search_runs()] == [res.run_id]


class FrozenPartTask(TinyTask):
    """TinyTask whose fixed map is a frozen module the loss runs through, named by `frozen()`."""

    def __init__(self):
        super().__init__()
        self.placed: list[str] = []
        self.target.train()  # the engine, not the task, puts it in eval mode
        real_to = self.target.to

        def to(*args, **kwargs):
            self.placed.append(str(args[0] if args else kwargs.get("device")))
            return real_to(*args, **kwargs)

        self.target.to = to

    def frozen(self):
        return {"target": self.target}


def test_the_engine_puts_a_tasks_frozen_modules_on_the_training_device_in_eval_mode(lab, tmp_path):
    """On a GPU the frozen parts (a VAE, a text encoder) must sit where the inputs are; the engine moves what a task
    names in `frozen()` with its trained models (here the device is the CPU: the move is recorded)."""
    task = FrozenPartTask()
    res = train(task, _config(tmp_path / "frozen", steps=2, validate_every=0), lab=lab)
    assert res.status == "finished" and task.placed == ["cpu"] and not task.target.training
    assert not any(p.requires_grad for p in task.target.parameters())


def test_a_checkpoint_with_the_rng_of_eight_gpus_resumes_on_a_machine_with_one(tmp_path, monkeypatch):
    """Checkpoints once kept one CUDA RNG state per visible GPU, and resuming set them all: on a machine showing
    fewer GPUs that failed (torch indexes a generator per state). The process's own GPU's state is restored."""
    import random

    import numpy as np

    from labkit.training.engine import _load_rng

    per_gpu = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "cuda": per_gpu}
    torch.save(state, tmp_path / "rng.pt")
    restored = []

    def one_gpu_only(states):
        raise IndexError("list index out of range")  # what torch.cuda.set_rng_state_all does with 8 states, 1 GPU

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", one_gpu_only)
    _load_rng(tmp_path / "rng.pt")
    assert len(restored) == 1 and torch.equal(restored[0], per_gpu[0])
