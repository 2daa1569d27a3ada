"""The training engine: an accelerate loop around a `TrainTask`, logged to one MLflow run.

    result = train(task, TrainConfig(output_dir="out", steps=1000, ...), env=TrainEnv(tracker=tracker))

Steps of a job (`Trainer.fit`): (1) validate the config and find the checkpoint to resume from;
(2) build the `Accelerator` (device, mixed precision, gradient accumulation), AdamW and the lr
schedule, and load the checkpoint; (3) loop: micro-batches → loss → backward → clip → step, logging
loss / lr / samples-per-second every `log_every` steps, checkpointing every `checkpoint_every` and
rendering validation grids every `validate_every`; (4) export the model with a model card.

Exact resume: every micro-batch and every random draw is a pure function of (seed, micro-batch
index), checkpoints hold model / optimizer / scheduler / RNG state plus the step, and validation
runs under a forked RNG, so on a CPU a run stopped and resumed gives bit-identical weights to one
that never stopped. Ctrl-C (KeyboardInterrupt) or SIGTERM saves a checkpoint at the last finished step and
records it on the run (KILLED). A stop asked for from code (a callback raising KeyboardInterrupt, the Train panel's
Stop) makes `train()` return a result with status "interrupted"; a signal (Ctrl-C or a notebook's interrupt in the
main thread, SIGTERM from `kill` or a scheduler) goes on as `TrainingStopped`, which carries that result, so that a
loop of jobs or a script stops too.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.errors import CTRL_C, InvalidParameter
from labkit.training.card import image_grid, model_card
from labkit.training.config import RESUME_IF_ANY, RESUME_LATEST, TRAJECTORY_FIELDS, TrainConfig
from labkit.training.distributed import average_gradients, is_main, processes_agree, shard, world
from labkit.training.task import StepContext, TrainTask

if TYPE_CHECKING:  # pragma: no cover
    from labkit.tracking import Run
    from labkit.training.env import TrainEnv

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
RNG_FILE = "rng_state.pt"


def _save_rng(path: Path) -> None:
    # accelerate's own random_states_0.pkl is written but silently NOT restored under torch >= 2.6
    # (its loader uses weights_only=True and swallows the error), so labkit keeps its own copy.
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's GPU: a resume may see fewer of them
    torch.save(state, path)


def _load_rng(path: Path) -> None:
    import random

    import numpy as np
    import torch

    # Our own file, written by _save_rng: it holds Python / numpy RNG tuples, hence weights_only=False.
    state = torch.load(path, weights_only=False)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):  # written before: one state per GPU the process could see
        cuda = cuda[torch.cuda.current_device()] if torch.cuda.is_available() and \
            torch.cuda.current_device() < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


@dataclass
class TrainState:
    """Where a job is; what callbacks receive after every optimizer step."""

    step: int
    steps: int
    loss: float | None = None
    lr: float | None = None
    checkpoint: Path | None = None
    trainer: Trainer | None = None


@dataclass
class TrainResult:
    """What a job produced. `status` is "finished" or "interrupted" (a checkpoint was kept)."""

    status: str
    step: int
    output_dir: Path
    export_dir: Path | None
    checkpoint: Path | None
    run_id: str | None
    wall_s: float
    metrics: dict[str, float] = field(default_factory=dict)


Callback = Callable[[TrainState], None]


def micro_seed(seed: int, micro: int, rank: int | None = None) -> int:
    """The seed of micro-batch `micro`'s generator: independent of how the run was split up. In a job of several
    processes each has its own (`rank`), so their slices of the batch draw independent noise."""
    import numpy as np

    key = [int(seed), int(micro)] + ([] if rank is None else [int(rank)])
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `output_dir/checkpoints`, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and p.name.removeprefix(CHECKPOINT_PREFIX).isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))


def set_aside_checkpoints(output_dir: str | Path) -> Path | None:
    """Move an earlier run's checkpoints and validation grids out of the way of a fresh start into the same
    `output_dir`, to `earlier/<time>/` in it (kept, with a warning naming it): otherwise the new run would prune its
    own checkpoints while keeping the earlier run's higher steps, resume="latest" would continue the wrong run, and
    the earlier run's grids would pass for this one's. The export (`model/`) is replaced by the new run's, as ever."""
    out = Path(output_dir)
    found = list_checkpoints(out)
    grids = out / "validation"
    if not found and not (grids.is_dir() and any(grids.iterdir())):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = out / "earlier" / stamp, 1
    while aside.exists():
        n += 1
        aside = out / "earlier" / f"{stamp}-{n}"
    (aside / "checkpoints").mkdir(parents=True)
    for path in found:
        os.replace(path, aside / "checkpoints" / path.name)
    if grids.is_dir():
        os.replace(grids, aside / "validation")
    what = f"{len(found)} checkpoint(s)" if found else "validation grids"
    warnings.warn(f"{str(out)!r} held {what} of an earlier run: moved to {str(aside)!r} so this fresh run starts "
                  "clean (to continue that run instead, move them back and pass resume='latest' / --resume; to keep "
                  "runs apart, give each its own output folder).", stacklevel=3)
    return aside


def read_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's `trainer_state.json`; InvalidParameter naming it when it is damaged."""
    from labkit.files import read_text

    path = Path(checkpoint) / STATE_FILE
    fix = "resume from another checkpoint (resume=<its folder>), or start fresh in another output_dir."
    text = read_text(path, what="checkpoint state", fix=fix, error=InvalidParameter)
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise InvalidParameter(f"Checkpoint {str(checkpoint)!r} is damaged: its {STATE_FILE} is not a labkit trainer "
                               "state.", value=str(path), fix=fix)
    return state


def check_trajectory(config: TrainConfig, state: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume `path` under settings that change the optimisation trajectory."""
    saved = state.get("config", {})
    if not isinstance(saved, Mapping):
        saved = {}
    now = config.to_dict()
    then_n, now_n = int(state.get("processes", 1) or 1), world()[1]
    several = then_n > 1 or now_n > 1
    if several and "batch_size" in saved and saved["batch_size"] * then_n != now["batch_size"] * now_n:
        # what a step sees is the global batch: a checkpoint of N processes resumes in M with the same one
        raise InvalidParameter(
            f"Checkpoint {str(path)!r} was made with a global batch of {saved['batch_size'] * then_n} "
            f"({then_n} process(es) × batch_size {saved['batch_size']}); this run's is {now['batch_size'] * now_n} "
            f"({now_n} × {now['batch_size']}).", value=now["batch_size"],
            fix=f"resume with batch_size × processes = {saved['batch_size'] * then_n} (e.g. --batch-size "
                f"{saved['batch_size'] * then_n} in one process), or start fresh in another output_dir.")
    for k in TRAJECTORY_FIELDS:
        if not (several and k == "batch_size") and k in saved and saved[k] != now[k]:
            raise InvalidParameter(
                f"Checkpoint {str(path)!r} was made with {k}={saved[k]!r}, this config has {now[k]!r}.",
                value=now[k],
                fix=f"resume with {k}={saved[k]!r}, the setting the run was started with (on the command line: the "
                    "same options as then), or start fresh (without --resume; resume=None) in another output folder.")


def resolve_resume(config: TrainConfig) -> Path | None:
    """The checkpoint `config.resume` names, checked (cheap: no model is needed): None for a fresh start;
    the newest under `output_dir/checkpoints` for "latest" (InvalidParameter naming the folder searched
    when there is none) or for "latest-if-any" (None when there is none); else a checkpoint folder. The
    checkpoint must have been made with the same trajectory settings (`TRAJECTORY_FIELDS`)."""
    resume = config.resume
    if resume is None or resume == "":
        return None
    if not isinstance(resume, (str, os.PathLike)):
        raise InvalidParameter(f"TrainConfig.resume={resume!r} is not valid.", value=resume,
                               fix=f"use None (fresh), {RESUME_LATEST!r}, {RESUME_IF_ANY!r} or a checkpoint folder.")
    if str(resume) in (RESUME_LATEST, RESUME_IF_ANY):
        found = list_checkpoints(config.output_dir)
        if not found:
            if str(resume) == RESUME_IF_ANY:
                return None
            root = Path(config.output_dir) / "checkpoints"
            raise InvalidParameter(
                f"Nothing to resume: there is no checkpoint in {str(root)!r} (resume={RESUME_LATEST!r}).",
                value=str(root), fix="pass the --output (output_dir) of the run to continue, or drop --resume "
                                     "(resume=None) to start fresh.")
        path = found[-1]
    else:
        path = Path(resume).expanduser()
        if not (path / STATE_FILE).is_file():
            raise InvalidParameter(
                f"Cannot resume from {str(path)!r}: it is not a labkit checkpoint (no {STATE_FILE}).",
                value=str(path), fix=f"pass resume={RESUME_LATEST!r} or a folder under <output_dir>/checkpoints.")
    check_trajectory(config, read_state(path), path)
    return path


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    warm, total, floor = config.warmup_steps, config.steps, config.min_lr_ratio

    def factor(s: int) -> float:
        if warm and s < warm:
            return (s + 1) / warm
        if config.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (s - warm) / max(1, total - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _reset_accelerate_state() -> None:
    # accelerate keeps process-wide singletons: a second Accelerator in the same kernel with another
    # mixed_precision / cpu / accumulation setting raises (or silently keeps the old accumulation).
    # A notebook trains a VAE, then a LoRA in bf16, in one process — so in a single-process job each
    # fit starts from a clean state. Under `accelerate launch` (several processes) it is left alone.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


class Trainer:
    """One training job: a task, a config, and the MLflow run it logs to (see the module docstring)."""

    def __init__(self, task: TrainTask, config: TrainConfig, run: Run | None = None,
                 callbacks: Iterable[Callback] = ()):
        self.task = task
        self.config = config
        self.run = run
        self.callbacks = list(callbacks)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.result: TrainResult | None = None
        self.breakdown = None  # the data folder's licence breakdown, read when the job starts

    # -- logging ------------------------------------------------------------------------------------

    def _log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log_metrics(metrics, step=step)

    def _set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.set_tags(tags)

    def _log_artifact(self, path: Path, artifact_path: str) -> None:
        if self.run is not None:
            self.run.log_artifact(path, artifact_path)

    def log_dataset(self, breakdown) -> None:
        """Record a dataset's licence breakdown with the run: `compliance/dataset-licences.json` (the
        table, missing and unrecognised items, implied terms), `compliance/dataset-licences.png` (the
        chart), `compliance/missing-licences.txt` (one file name a line), and `labkit.dataset.*` tags."""
        if self.run is None or breakdown is None:
            return
        import tempfile

        with tempfile.TemporaryDirectory(prefix="labkit-dataset-") as tmp:
            folder = Path(tmp)
            (folder / "dataset-licences.json").write_text(json.dumps(breakdown.to_dict(), indent=2, default=str))
            breakdown.chart(folder / "dataset-licences.png")
            (folder / "missing-licences.txt").write_text("".join(f"{name}\n" for name in breakdown.missing))
            self._log_artifact(folder, "compliance")
        self._set_tags({"labkit.dataset.name": breakdown.name, "labkit.dataset.folder": breakdown.folder,
                        "labkit.dataset.items": breakdown.total, "labkit.dataset.missing": len(breakdown.missing),
                        "labkit.dataset.licences": ", ".join(f"{k}: {v}" for k, v in breakdown.counts.items()),
                        **breakdown.terms.tags("labkit.dataset.terms")})

    # -- checkpoints --------------------------------------------------------------------------------

    def save_checkpoint(self, accelerator, reason: str = "scheduled") -> Path:
        """Save model / optimizer / scheduler / RNG state and the step as `checkpoint-NNNNNN`.

        In a job of several processes every process calls this: each writes its RNG state, the main process
        the rest, and the checkpoint appears (renamed into place) once all have written."""
        root = Path(self.config.output_dir) / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        rank, size = world()
        if self.last_checkpoint == final and (final / STATE_FILE).is_file():
            return final  # this run saved it at this step already (the final save after a scheduled one)
        tmp = root / f".tmp-{final.name}"
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        _save_rng(tmp / (RNG_FILE if rank == 0 else f"rng_state_{rank}.pt"))
        accelerator.wait_for_everyone()
        if rank != 0:
            accelerator.wait_for_everyone()  # until the main process has put the checkpoint in place
            self.last_checkpoint = final
            return final
        state = {"step": self.step, "micro": self.step * self.config.gradient_accumulation_steps,
                 "samples": self.step * self.config.gradient_accumulation_steps * self.config.batch_size * size,
                 "processes": size, "task": self.task.name, "reason": reason, "time": time.time(),
                 "run_id": getattr(self.run, "run_id", None), "config": self.config.to_dict()}
        self.task.on_checkpoint(tmp, self.step)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a checkpoint exists whole or not at all
        self.last_checkpoint = final
        for old in list_checkpoints(self.config.output_dir)[:-self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        self._set_tags({"labkit.checkpoint": str(final), "labkit.checkpoint_step": self.step})
        self._log_metrics({"train/checkpoint_step": self.step}, step=self.step)
        if self.config.checkpoint_artifacts == "all":
            self._log_artifact(final, f"checkpoints/{final.name}")
        if size > 1:
            accelerator.wait_for_everyone()
        return final

    def _check_compatible(self, state: Mapping[str, Any], path: Path) -> None:
        check_trajectory(self.config, state, path)
        if state.get("task") not in (None, self.task.name):
            raise InvalidParameter(
                f"Checkpoint {str(path)!r} belongs to task {state['task']!r}, not {self.task.name!r}.",
                value=str(path), fix="resume from a checkpoint of the same task.")

    # -- validation ---------------------------------------------------------------------------------

    def validate(self, models: Mapping[str, Any]) -> dict[str, float]:
        """Render the validation grid, save it, log it to the run; return the task's metrics."""
        import torch

        cfg = self.config
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # validation never moves training's RNG
            out = self.task.validate(cfg.validation_prompts, cfg.validation_seeds, self.step)
        for m in models.values():
            m.train()
        if out is None:
            return {}
        metrics = {f"val/{k}": float(v) for k, v in out.metrics.items()}
        if metrics:
            self._log_metrics(metrics, step=self.step)
        if not out.images:  # a task without images (a text encoder's pre-training) still reports metrics
            return metrics
        folder = Path(cfg.output_dir) / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        grid = image_grid(out.images, cols=len(cfg.validation_seeds) if len(out.images) > 1 else 1)
        path = folder / f"step-{self.step:06d}.png"
        grid.save(path)
        labels = folder / f"step-{self.step:06d}.json"
        labels.write_text(json.dumps({"step": self.step, "prompts": list(cfg.validation_prompts),
                                      "seeds": list(cfg.validation_seeds), "labels": out.labels,
                                      "metrics": out.metrics}, indent=2))
        self._log_artifact(path, "validation")
        self._log_artifact(labels, "validation")
        if self.run is not None:  # the MLflow UI's image card "validation", its slider over the steps
            from labkit.tracking.images import log_image

            log_image(self.run, "validation", path, step=self.step)
        return metrics

    # -- the loop -----------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Run the job to `config.steps` (see the module docstring); KeyboardInterrupt is re-raised
        after the checkpoint is saved, with `self.result` set."""
        import torch
        from accelerate import Accelerator

        # 1. validate before any heavy work
        cfg = self.config
        cfg.validate()
        resume_from = resolve_resume(cfg)
        resume_state = read_state(resume_from) if resume_from else None
        if resume_state:
            self._check_compatible(resume_state, resume_from)
        self.breakdown = self.task.dataset_breakdown()  # a malformed metadata.jsonl fails here
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        if resume_from is None and world()[0] == 0:
            set_aside_checkpoints(cfg.output_dir)
        t_start = time.time()

        # 2. accelerator, optimizer, schedule, state
        _reset_accelerate_state()
        rank, size = world()
        # several processes without CUDA: accelerate's multi-CPU mode (gloo) needs cpu=True
        accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                                  cpu=cfg.cpu or (size > 1 and not torch.cuda.is_available()),
                                  gradient_accumulation_steps=cfg.gradient_accumulation_steps)
        models = dict(self.task.models())
        if not models:
            raise InvalidParameter(f"Task {self.task.name!r} has no models to train.", value=self.task.name,
                                   fix="return the trainable modules from TrainTask.models().")
        for m in models.values():
            m.to(accelerator.device)
            m.train()
        for m in self.task.frozen().values():  # what the loss runs through besides the trained models
            m.to(accelerator.device)
            m.eval()
        groups = self.task.param_groups(cfg.learning_rate) or [
            {"params": [p for m in models.values() for p in m.parameters() if p.requires_grad]}]
        optimizer = self.task.optimizer(groups, cfg) or torch.optim.AdamW(
            groups, lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
        prepared = accelerator.prepare(*models.values(), optimizer, scheduler)
        optimizer, scheduler = prepared[-2], prepared[-1]
        if resume_from is not None:
            accelerator.load_state(str(resume_from))
            accelerator.step = 0  # checkpoints sit on optimizer-step boundaries
            own = resume_from / f"rng_state_{rank}.pt"  # this process's, from a job of as many processes
            _load_rng(own if rank and own.is_file() else resume_from / RNG_FILE)
            self.step = int(resume_state["step"])
            self.last_checkpoint = resume_from
        else:
            from accelerate.utils import set_seed

            set_seed(cfg.seed)  # dropout and any other global draw: the same seed, the same run
        params = {**cfg.to_dict(), "task": self.task.name, "processes": size,
                  "global_batch_size": cfg.batch_size * size,
                  **{f"data.{k}": v for k, v in self.task.data_card().items()}}
        if self.run is not None:
            self.run.log_params(params)
            self._set_tags({"labkit.job": "train", "labkit.task": self.task.name,
                            "labkit.device": str(accelerator.device), "labkit.processes": size,
                            **({"labkit.resumed_from": str(resume_from),
                                "labkit.resumed_from_run": resume_state.get("run_id") or "",
                                "labkit.resumed_at_step": self.step} if resume_from else {})})
            self.log_dataset(self.breakdown)

        # 3. the loop
        accum = cfg.gradient_accumulation_steps
        # several processes: each keeps its slice of the same global micro-batch (labkit.training.distributed)
        data = (shard(b, rank, size) for b in self.task.batches(cfg.batch_size * size, self.step * accum))
        clip_params = [p for g in optimizer.param_groups for p in g["params"]]
        window_loss, window_n, window_t, window_steps = 0.0, 0, time.time(), 0
        last_metrics: dict[str, float] = {}
        state = TrainState(step=self.step, steps=cfg.steps, trainer=self)
        autocast = accelerator.autocast if cfg.mixed_precision != "no" else nullcontext
        sigterm = _SignalsAsInterrupt()
        try:
            sigterm.install()
            while self.step < cfg.steps:
                step_loss = 0.0
                for k in range(accum):
                    micro = self.step * accum + k
                    batch = next(data)
                    gen = torch.Generator(device="cpu").manual_seed(
                        micro_seed(cfg.seed, micro, rank if size > 1 else None))
                    ctx = StepContext(step=self.step, micro=micro, generator=gen, device=accelerator.device)
                    with accelerator.accumulate(*models.values()):
                        with autocast():
                            loss = self.task.loss(batch, ctx)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
                        accelerator.backward(loss)
                        if size > 1 and accelerator.sync_gradients:
                            average_gradients(clip_params)
                        if accelerator.sync_gradients and cfg.max_grad_norm is not None:
                            accelerator.clip_grad_norm_(clip_params, cfg.max_grad_norm)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                    # the loss of the global batch: the mean of the processes' (a no-op in one process)
                    step_loss += float(accelerator.reduce(loss.detach(), "mean") if size > 1 else loss.detach()) / accum
                self.step += 1
                window_loss += step_loss
                window_n += 1
                window_steps += 1
                lr = scheduler.get_last_lr()[0]
                state.step, state.loss, state.lr = self.step, step_loss, lr
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    dt = max(time.time() - window_t, 1e-9)
                    global_batch = accum * cfg.batch_size * size  # the samples of one step, all processes
                    last_metrics = {"train/loss": window_loss / window_n, "train/lr": lr,
                                    "train/samples_per_s": window_steps * global_batch / dt,
                                    "train/samples_seen": self.step * global_batch}
                    self._log_metrics(last_metrics, step=self.step)
                    window_loss, window_n, window_t, window_steps = 0.0, 0, time.time(), 0
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    state.checkpoint = self.save_checkpoint(accelerator)
                if cfg.validate_every and (self.step % cfg.validate_every == 0 or self.step == cfg.steps):
                    if rank == 0:  # the main process draws the grid; the others wait for it
                        last_metrics.update(self.validate(models))
                    if size > 1:
                        accelerator.wait_for_everyone()
                    window_t = time.time()  # throughput measures training only
                for cb in self.callbacks:
                    cb(state)
        except KeyboardInterrupt:
            sigterm.release()  # a second SIGTERM during the save kills as usual
            ckpt = self.save_checkpoint(accelerator, reason="interrupted")
            if self.config.checkpoint_artifacts != "none":
                self._log_artifact(ckpt, f"checkpoints/{ckpt.name}")
            self._set_tags({"labkit.train_status": "interrupted", "labkit.interrupted_at_step": self.step,
                            "labkit.resume_with": f"resume={str(ckpt)!r} (or 'latest')"})
            self.result = TrainResult("interrupted", self.step, Path(cfg.output_dir), None, ckpt,
                                      getattr(self.run, "run_id", None), time.time() - t_start, last_metrics)
            raise

        sigterm.release()
        if size > 1:  # every process must hold the same weights: one checksum each, compared
            same = processes_agree(clip_params)
            self._set_tags({"labkit.processes_in_sync": str(same).lower()})
            if not same:
                raise RuntimeError(f"the {size} training processes ended with different weights: their gradients "
                                   "were not averaged (a task whose loss bypasses labkit's gradient averaging?)")

        # 4. final checkpoint, export, model card
        if cfg.checkpoint_every or cfg.checkpoint_artifacts != "none":
            self.save_checkpoint(accelerator, reason="final")
        if cfg.checkpoint_artifacts == "last" and self.last_checkpoint is not None:
            self._log_artifact(self.last_checkpoint, f"checkpoints/{self.last_checkpoint.name}")
        wall = time.time() - t_start
        export_dir = None
        if cfg.export:
            export_dir = Path(cfg.output_dir) / "model"
            if rank == 0:  # one export, by the main process
                from labkit.pipelines.loader import quiet_loading

                shutil.rmtree(export_dir, ignore_errors=True)
                with quiet_loading():  # no "Writing model shards" bars from the libraries
                    self.task.export(export_dir)
                self.write_card(export_dir, last_metrics, wall)
                self._log_artifact(export_dir, "model")
            if size > 1:
                accelerator.wait_for_everyone()
        self._log_metrics({"train/wall_s": wall}, step=self.step)
        if self.run is not None and rank == 0:
            try:
                self._describe(wall)
            except Exception:  # a description is a convenience: finished training never fails for it
                pass
        self.result = TrainResult("finished", self.step, Path(cfg.output_dir), export_dir, self.last_checkpoint,
                                  getattr(self.run, "run_id", None), wall, last_metrics)
        return self.result

    def _describe(self, wall_s: float) -> None:
        """The run's description in the MLflow UI: a one-line summary above any notes written meanwhile."""
        from labkit.tracking.notes import NOTE_TAG, SUMMARY_TAG, description, own_note

        tags = self.run.client.get_run(self.run.run_id).data.tags
        base = tags.get("labkit.base_model")
        summary = " · ".join([f"train {self.task.name}" + (f" on {base}" if base else ""), f"{self.step} steps",
                              f"batch {self.config.batch_size}", f"seed {self.config.seed}", f"{wall_s:.1f} s"])
        self._set_tags({NOTE_TAG: description(summary, own_note(tags)), SUMMARY_TAG: summary})

    def write_card(self, folder: Path, metrics: Mapping[str, float], wall_s: float | None) -> Path:
        """Write `README.md` (the model card) into `folder`, unless the task's export wrote one."""
        from labkit.tracking import versions

        path = folder / "README.md"
        if path.exists():
            return path
        path.write_text(model_card(
            title=f"{self.task.name} (labkit)", task=self.task.name, config=self.config.to_dict(),
            steps=self.step, data=self.task.data_card(), licence=self.task.output_licence(self.config.licence),
            run_id=getattr(self.run, "run_id", None), metrics=metrics, versions=versions(),
            notes=_join(self.task.card_notes(), _licence_notes(self.breakdown)), wall_s=wall_s), encoding="utf-8")
        return path


class TrainingStopped(KeyboardInterrupt):
    """Training stopped by a signal, after its clean stop: the last finished step checkpointed and the run marked
    KILLED. `train()` raises it on (a KeyboardInterrupt, so a cell running jobs in a loop, or a script a scheduler
    stops, stops too). `signal`: "SIGINT" (Ctrl-C, a notebook's interrupt) or "SIGTERM"; `result`: the
    interrupted `TrainResult` (`checkpoint`, `step`); `reason`: what the run records as its end."""

    def __init__(self, signal: str, result: TrainResult | None = None):
        self.signal, self.result = signal, result
        self.reason = CTRL_C if signal == "SIGINT" else f"stopped by {signal}"
        kept = (f" at step {result.step}: checkpoint {result.checkpoint} kept; continue with resume=\"latest\" "
                "and the same settings") if result is not None else ""
        super().__init__(f"training {self.reason}{kept}")


class _SignalsAsInterrupt:
    """While the loop runs, SIGTERM — how `kill`, a scheduler, Colab or Kaggle stop a job — and Ctrl-C raise
    `TrainingStopped`: checkpoint at the last finished step, mark the run KILLED, stop. SIGINT is taken only where
    Python's own handler has it (not where it is ignored). Only the main thread can own a signal handler;
    elsewhere this does nothing. Releasing twice is harmless."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum, frame):
            raise TrainingStopped(signal.Signals(signum).name)

        self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)

    def release(self) -> None:
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def _join(*parts: str) -> str:
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def _licence_notes(breakdown) -> str:
    """The model card's section on the training data's licences (empty without a breakdown)."""
    if breakdown is None:
        return ""
    lines = ["## Licences of the training data", "", "| licence | items | share |", "|---|---:|---:|"]
    lines += [f"| {r['licence']} | {r['count']} | {r['share']}% |" for r in breakdown.table()]
    if breakdown.missing:
        shown = ", ".join(breakdown.missing[:10]) + (" …" if len(breakdown.missing) > 10 else "")
        lines += ["", f"Items without a licence ({len(breakdown.missing)}): {shown}"]
    lines += ["", f"Terms that training on it implies: {breakdown.terms.text}"]
    return "\n".join(lines)


def train(task: TrainTask, config: TrainConfig, *, env: TrainEnv | Any = None, run: Run | None = None,
          callbacks: Sequence[Callback] = (), run_name: str | None = None,
          tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None, lab: Any = None) -> TrainResult:
    """Train `task` under `config`, logging to `run` (or to a new run of `env`); return the result.

    `env` is a `TrainEnv` (its tracker, hardware tags and licence policy) or a `Lab` (its `train_env()`);
    `lab=` is the older name of the same argument. A stop is clean: the last finished step is checkpointed and
    recorded on the run (marked KILLED). Asked for from code (a callback raising KeyboardInterrupt), the result has
    status "interrupted"; by Ctrl-C or SIGTERM, `TrainingStopped` is raised with that result as `.result`. Resume
    with `config.replace(resume="latest")`. With neither `env` nor `run`, nothing is logged to MLflow.
    """
    from labkit.training.env import as_train_env

    config.validate()  # a bad number, output folder or resume point opens no run
    env = as_train_env(env if env is not None else lab)
    trainer = Trainer(task, config, run=run, callbacks=callbacks)
    compliance_tags: dict[str, str] = {}
    if env.compliance is not None:
        # Before any step: training on data (or from a base) the mode forbids never starts.
        from labkit.compliance import derive_terms, enforce

        chain = task.licence_chain()
        compliance_tags = {**enforce(chain, env.compliance).tags(), **derive_terms(chain).tags()}
    try:
        if run is None and env.logs and is_main():  # in a job of several processes, one run: the main process's
            with env.run(run_name or f"train-{task.name}", tags={"labkit.job": "train", **compliance_tags,
                                                                  **(tags or {})},
                         parent_run_id=parent_run_id) as new_run:
                trainer.run = new_run
                return trainer.fit()
        if run is not None and compliance_tags:
            run.set_tags(compliance_tags)
        return trainer.fit()
    except KeyboardInterrupt as e:
        if trainer.result is None:  # interrupted before the loop began: nothing to keep
            raise
        if isinstance(e, TrainingStopped):  # a signal: the caller's loop or script stops too
            raise TrainingStopped(e.signal, trainer.result) from None
        return trainer.result
