"""`labkit train toy-base | toy-motion | toy-controlnet | lora | dreambooth`: the training recipes. An option
left out keeps the recipe config's default; Ctrl-C or SIGTERM keeps a checkpoint and prints how to continue
(exit 130; 143 for SIGTERM).

Example: `labkit train lora data/shapes --steps 200 --output lora` writes the adapter to lora/.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli._common import _lab, _out_folder, _print_json
from labkit.errors import InvalidParameter, stop_reason, stop_signal


def _in_processes(func):
    """A recipe command that `--processes N` runs in N data-parallel processes (labkit.training.distributed):
    the command relaunches itself under torchrun and returns its exit status; in the launched processes only
    the main one prints."""

    def run(args: argparse.Namespace) -> int:
        import contextlib
        import os
        import subprocess

        from labkit.training.distributed import check_processes, is_main, launch_command, without_processes, world

        n = check_processes(args.processes) if args.processes is not None else 1
        if n > 1 and world()[1] == 1:
            command = launch_command(n, without_processes(args.argv))
            print(f"training in {n} processes: {' '.join(command[1:])}", file=sys.stderr)
            return subprocess.run(command).returncode
        if is_main():
            return func(args)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return func(args)

    return run


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, object]:
    """The options the user set; the rest keep the recipe config's defaults."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _train_recipe(args: argparse.Namespace, train, cfg, what: str) -> int:
    """Run a toy training recipe; on Ctrl-C or SIGTERM (the engine kept a checkpoint and marked the runs
    KILLED) say how to continue."""
    try:
        path = train(_lab(args), cfg)
    except KeyboardInterrupt as e:
        print(f"{_stopped(e)}; continue with: {_resume_command(args)}", file=sys.stderr)
        return _stop_status(e)
    print(f"{what} written to {path}")
    return 0


def cmd_train_toy_base(args: argparse.Namespace) -> int:
    from labkit.training.toy_base import ToyBaseConfig, train_toy_base

    cfg = ToyBaseConfig(output_dir=args.output, seed=args.seed, threads=args.threads,
                        resume="latest" if args.resume else None, eval_prompts=0 if args.no_eval else 60,
                        **_given(args, ("steps", "vae_steps", "text_steps", "batch_size", "data_mix")))
    return _train_recipe(args, train_toy_base, cfg, "toy model")


def cmd_train_toy_motion(args: argparse.Namespace) -> int:
    from labkit.training.toy_motion import ToyMotionConfig, train_toy_motion

    adapter_only = _given(args, ("first_frame_prob", "timestep_shift", "terminal_share", "spatial_lr_scale",
                                 "text_encoder_lr_scale", "shared_noise"))
    if args.arch == "warp":
        from labkit.training.toy_warp import ToyWarpConfig, train_toy_warp

        if adapter_only:
            flags = " ".join("--" + k.replace("_", "-") for k in adapter_only)
            raise InvalidParameter(f"{flags} set the AnimateDiff recipe; the default --arch warp has no such "
                                   "setting.", value=sorted(adapter_only),
                                   fix="add --arch animatediff to train the motion adapter, or drop the option.")
        given = _given(args, ("steps", "batch_size", "frames", "threads", "lr"))
        cfg = ToyWarpConfig(output_dir=args.output, base=args.base, seed=args.seed,
                            resume="latest" if args.resume else None, **given)
        return _train_recipe(args, train_toy_warp, cfg, "toy motion model")
    cfg = ToyMotionConfig(output_dir=args.output, base=args.base, seed=args.seed,
                          resume="latest" if args.resume else None,
                          **_given(args, ("steps", "batch_size", "frames", "threads", "lr", "first_frame_prob",
                                          "timestep_shift", "terminal_share", "spatial_lr_scale",
                                          "text_encoder_lr_scale", "shared_noise")))
    return _train_recipe(args, train_toy_motion, cfg, "toy motion model")


def cmd_train_toy_controlnet(args: argparse.Namespace) -> int:
    from labkit.training.toy_controlnet import ToyControlNetConfig, train_toy_controlnet

    given = _given(args, ("steps", "batch_size", "threads"))
    if args.lr is not None:
        given["learning_rate"] = args.lr
    cfg = ToyControlNetConfig(output_dir=args.output, base=args.base, seed=args.seed,
                              resume="latest" if args.resume else None, **given)
    return _train_recipe(args, train_toy_controlnet, cfg, "toy ControlNet")


def _lora_settings(args: argparse.Namespace) -> dict[str, object]:
    """The LoRA recipe's settings from the options (shared by `train lora` and `train dreambooth`)."""
    given = _given(args, ("rank", "alpha", "resolution", "steps", "batch_size", "learning_rate", "checkpoint_every",
                          "validate_every", "threads", "guidance_scale", "sampling_steps", "licence"))
    given.update(_given(args, tuple(k for k in ("eval_prompts", "concept") if hasattr(args, k))))
    if args.target_modules:
        given["target_modules"] = tuple(args.target_modules)
    if args.validation_prompt:
        given["validation_prompts"] = tuple(args.validation_prompt)
        given.setdefault("validate_every", max(1, (args.steps or 500) // 4))
    return dict(data=args.data, output_dir=args.output, base=args.base, seed=args.seed,
                train_text_encoder=args.train_text_encoder, kohya=args.kohya,
                gradient_accumulation_steps=args.accumulation, lr_schedule=args.lr_schedule,
                gradient_checkpointing=args.gradient_checkpointing, resume="latest" if args.resume else None, **given)


def _resume_command(args: argparse.Namespace) -> str:
    """The command as it was typed, with --resume: a resumed run must have the same settings (steps, batch…)."""
    import shlex

    argv = list(getattr(args, "argv", None) or [])
    return "labkit " + shlex.join(argv if "--resume" in argv else [*argv, "--resume"])


def _stopped(e: BaseException | None) -> str:
    """'stopped by SIGTERM', 'interrupted by the user (Ctrl-C)' (the words the run records), or 'stopped'."""
    return "stopped" if e is None else stop_reason(e)


def _stop_status(e: BaseException | None) -> int:
    """The exit status of a stopped job, as the CLI's error boundary gives: 143 (128 + 15) for SIGTERM, else 130."""
    return 143 if e is not None and stop_signal(e) == "SIGTERM" else 130


def _report_adapter(args: argparse.Namespace, result) -> int:
    """What the command prints for the result of a LoRA or DreamBooth job: a callable that trains and returns it
    (Ctrl-C or SIGTERM raise the engine's TrainingStopped, which carries it) or the result itself."""
    stop: BaseException | None = None
    if callable(result):
        try:
            result = result()
        except KeyboardInterrupt as e:  # stopped by a signal: the engine kept a checkpoint and marked the run
            if getattr(e, "result", None) is None:
                raise  # before the first step: nothing to continue from
            result, stop = e.result, e
    if result.status != "finished":
        print(f"{_stopped(stop)} at step {result.step}; continue with: {_resume_command(args)}", file=sys.stderr)
        return _stop_status(stop)
    if args.json:
        _print_json({"run_id": result.run_id, "adapter": str(result.export_dir), "steps": result.step,
                     "wall_s": result.wall_s, "metrics": result.metrics})
    else:
        what = "model (a whole pipeline)" if getattr(args, "full", False) else "adapter"
        print(f"{what} written to {result.export_dir} (run {result.run_id}, {result.wall_s / 60:.1f} min)")
        for k, v in sorted(result.metrics.items()):
            print(f"  {k}: {v:.4g}")
    return 0


def cmd_train_lora(args: argparse.Namespace) -> int:
    from labkit.training.lora import LoraTrainConfig, train_lora

    return _report_adapter(args, lambda: train_lora(_lab(args), LoraTrainConfig(**_lora_settings(args))))


def cmd_train_dreambooth(args: argparse.Namespace) -> int:
    from labkit.training.dreambooth import DreamBoothConfig, train_dreambooth

    class_prompts = list(args.class_prompt or []) + (_prompt_file(args.class_prompts) if args.class_prompts else [])
    cfg = DreamBoothConfig(**_lora_settings(args), token=args.token, prior_preservation=args.prior_preservation,
                           class_prompt=class_prompts or None, full=args.full,
                           **_given(args, ("instance_prompt", "num_class_images", "prior_loss_weight")))
    return _report_adapter(args, lambda: train_dreambooth(_lab(args), cfg))


def _prompt_file(path: str) -> list[str]:
    """The prompts of a text file, one per line (blank lines and `#` comments skipped)."""
    from pathlib import Path

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"Cannot read the prompt file {path!r}: {e}.", value=path,
                               fix="give a UTF-8 text file with one prompt per line.") from e
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise InvalidParameter(f"The prompt file {path!r} holds no prompt.", value=path,
                               fix="write one prompt per line.")
    return prompts


def _lora_arguments(t: argparse.ArgumentParser, recipe: str) -> None:
    t.add_argument("data", help="image folder with metadata.jsonl (file_name, text, licence per line)")
    t.add_argument("--output", default=recipe, type=_out_folder,
                   help="folder for checkpoints, validation grids and the adapter")
    t.add_argument("--base", default="toyworld", help="base model: catalogue id, repo id or folder (default toyworld)")
    t.add_argument("--rank", type=int)
    t.add_argument("--alpha", type=float)
    t.add_argument("--target-modules", nargs="+", help="UNet layers to adapt (default to_q to_k to_v to_out.0)")
    t.add_argument("--train-text-encoder", action="store_true", help="also train LoRA layers on the text encoder")
    t.add_argument("--resolution", type=int)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--accumulation", type=int, default=1, help="gradient accumulation steps")
    t.add_argument("--learning-rate", "--lr", type=float, dest="learning_rate")
    t.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--validation-prompt", action="append", help="a validation prompt (repeatable)")
    t.add_argument("--validate-every", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--guidance-scale", type=float, help="validation guidance (default: the base model's)")
    t.add_argument("--sampling-steps", type=int, help="validation steps (default: the base model's)")
    t.add_argument("--licence", help="the adapter's licence (default: the data's, when all items share one)")
    t.add_argument("--kohya", action="store_true", help="also write a kohya-format copy")
    if recipe == "lora":
        t.add_argument("--eval-prompts", type=int, help="toy world: held-out prompts scored at the end")
        t.add_argument("--concept", help="toy world: the new shape the adapter teaches (for --eval-prompts)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    t.add_argument("--json", action="store_true")


def _processes_option(t: argparse.ArgumentParser) -> None:
    t.add_argument("--processes", type=int, metavar="N",
                   help="train data-parallel in N processes on this machine (one per GPU; gloo on a CPU), each with "
                        "--batch-size samples per step; one MLflow run and one set of checkpoints (default 1)")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add train and its recipes."""
    p = sub.add_parser("train", help="training recipes (toy-base: the toy world's text-to-image model)")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="RECIPE")
    t = tsub.add_parser("toy-base", parents=[common], help="train the toy text-to-image model from scratch")
    t.add_argument("--output", default="toy-base", type=_out_folder,
                   help="folder for checkpoints, validation grids and the model")
    t.add_argument("--steps", type=int, help="diffusion steps (default: ToyBaseConfig's)")
    t.add_argument("--vae-steps", type=int, help="VAE steps")
    t.add_argument("--text-steps", type=int, help="text-encoder pre-training steps (0: skip)")
    t.add_argument("--batch-size", type=int, help="diffusion batch size")
    t.add_argument("--data-mix", help="scene kinds to train on, as weights: single, two, three (objects at named "
                   "positions), count ('three blue circles'), relation ('a red square left of a green circle'); "
                   "default: labkit.toyworld.geneval.DATA_MIX, printed in the model card; 'legacy': one or two "
                   "objects, what the model before issue 28 was trained on")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    t.add_argument("--no-eval", action="store_true", help="skip the final adherence check")
    _processes_option(t)
    t.set_defaults(func=_in_processes(cmd_train_toy_base))

    t = tsub.add_parser("toy-motion", parents=[common], help="train the toy motion model on the toy model: a "
                        "trajectory diffusion model with a warp renderer (default), or an AnimateDiff motion adapter")
    t.add_argument("--arch", choices=["warp", "animatediff"], default="warp",
                   help="warp: trajectory diffusion + warp renderer (labkit.toyworld.warp; what ships); animatediff: "
                   "a motion adapter (labkit.training.toy_motion)")
    t.add_argument("--output", default="toy-motion", type=_out_folder,
                   help="folder for checkpoints, validation strips and the model")
    t.add_argument("--base", default="toyworld", help="the toy text-to-image model to animate (default toyworld)")
    t.add_argument("--steps", type=int, help="training steps (default: the recipe's, ToyWarpConfig or ToyMotionConfig)")
    t.add_argument("--batch-size", type=int, help="clips per step")
    t.add_argument("--frames", type=int, help="frames per training clip (default 16)")
    t.add_argument("--lr", type=float, help="the learning rate (the adapter's, for --arch animatediff)")
    t.add_argument("--first-frame-prob", type=float, help="share of clips trained with their first frame given "
                   "(image-to-video)")
    t.add_argument("--timestep-shift", type=float, help="move training timesteps toward noise (1: uniform)")
    t.add_argument("--terminal-share", type=float, help="share of training steps at the last, zero-signal timestep")
    t.add_argument("--spatial-lr-scale", type=float, help="the base's 2D weights train at this fraction of --lr "
                   "(0: frozen)")
    t.add_argument("--text-encoder-lr-scale", type=float, help="the base's text encoder trains at this fraction of "
                   "--lr (0: frozen)")
    t.add_argument("--shared-noise", type=float, help="share of every frame's noise common to the clip")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    _processes_option(t)
    t.set_defaults(func=_in_processes(cmd_train_toy_motion))

    t = tsub.add_parser("toy-controlnet", parents=[common], help="train the toy layout ControlNet on the toy model: "
                        "the map (a box) decides where and how big, the prompt colour and shape")
    t.add_argument("--output", default="toy-controlnet", type=_out_folder,
                   help="folder for checkpoints, validation grids and the ControlNet")
    t.add_argument("--base", default="toyworld", help="the toy text-to-image model it steers (default toyworld)")
    t.add_argument("--steps", type=int, help="training steps (default: ToyControlNetConfig's)")
    t.add_argument("--batch-size", type=int, help="layouts per step")
    t.add_argument("--lr", type=float, help="the learning rate")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    _processes_option(t)
    t.set_defaults(func=_in_processes(cmd_train_toy_controlnet))

    t = tsub.add_parser("lora", parents=[common], help="train a LoRA adapter on an image folder with metadata.jsonl")
    _lora_arguments(t, "lora")
    _processes_option(t)
    t.set_defaults(func=_in_processes(cmd_train_lora))

    t = tsub.add_parser("dreambooth", parents=[common], help="teach the base one subject from a few images "
                        "(DreamBooth-LoRA, with prior preservation)")
    _lora_arguments(t, "dreambooth")
    t.add_argument("--token", default="sks", help="the identifier naming the subject in captions (default sks)")
    t.add_argument("--class-prompt", action="append", help="what class images are drawn from; repeat it for several, "
                   "taken in turn (default: each caption without the identifier)")
    t.add_argument("--class-prompts", metavar="FILE", help="more class prompts, one per line")
    t.add_argument("--instance-prompt", help="one caption for every subject image (default: the metadata texts)")
    t.add_argument("--prior-preservation", action=argparse.BooleanOptionalAction, default=True,
                   help="mix class images drawn by the base into training (default on)")
    t.add_argument("--num-class-images", type=int, help="class images to draw and cache (default 50)")
    t.add_argument("--prior-loss-weight", type=float, help="the class images' share of the loss (default 1.0)")
    t.add_argument("--full", action="store_true", help="fine-tune every UNet weight instead of LoRA layers, when "
                   "memory allows (the output is a whole pipeline folder; use a far lower --lr, e.g. 5e-6 for SD 1.5)")
    _processes_option(t)
    t.set_defaults(func=_in_processes(cmd_train_dreambooth))
