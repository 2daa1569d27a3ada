"""`labkit generate`, `video`, `plan`, `ask`, `replay`: render from options, plan a request in words (and
render it), re-render a recorded run.

Example: `labkit generate "a red circle" --steps 4 --seed 1` prints the output files and the run id.
"""

from __future__ import annotations

import argparse

from labkit.cli._common import _lab, _out_folder, _print_json, _size


def _print_result(result, as_json: bool) -> None:
    if as_json:
        _print_json(result.to_dict())
        return
    for f in result.files:
        print(f)
    note = f" (fell back: {result.fallback_reason})" if result.fallback_reason else ""
    print(f"run {result.run_id}: {result.model['id']} with strategy {result.strategy.name}, "
          f"{result.timings['total_s']:.2f} s{note}")


def _controls(args: argparse.Namespace) -> list:
    """--control KIND:IMAGE[:SCALE] (repeatable), each with the --control-model given after it (or the last one
    before it; one --control-model serves every control)."""
    from labkit.errors import InvalidParameter
    from labkit.plan import ControlRef

    specs, models = args.control or [], args.control_model or []
    if models and len(models) not in (1, len(specs)):
        raise InvalidParameter(f"{len(specs)} --control but {len(models)} --control-model.", value=len(models),
                               fix="give one --control-model for all controls, or one per --control, in order.")
    return [ControlRef.parse(spec, model=(models[i] if len(models) > 1 else (models[0] if models else None)))
            for i, spec in enumerate(specs)]


def cmd_generate(args: argparse.Namespace) -> int:
    result = _lab(args).generate(
        args.prompt, model=args.model, negative_prompt=args.negative, steps=args.steps, guidance=args.guidance,
        seed=args.seed, size=args.size, n=args.n, image=args.image, strength=args.strength, out=args.out,
        allow_pickle=args.allow_pickle, config=args.config, adapters=args.adapter or (),
        controls=_controls(args), speed="max" if args.fast else "default")
    _print_result(result, args.json)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    result = _lab(args).video(
        args.prompt, image=args.image, model=args.model, frames=args.frames, fps=args.fps, seed=args.seed,
        steps=args.steps, guidance=args.guidance, size=args.size, negative_prompt=args.negative, out=args.out,
        allow_pickle=args.allow_pickle, config=args.config, speed="max" if args.fast else "default")
    _print_result(result, args.json)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _lab(args).plan(args.request, controller=args.controller, use_cache=not args.no_cache)
    if args.json:
        print(plan.to_json())
    else:
        for key, value in plan.to_dict().items():
            if value not in (None, "", [], ()):
                print(f"{key:>16}: {value}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    result = _lab(args).ask(args.request, controller=args.controller, out=args.out)
    _print_result(result, args.json)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    result, check = _lab(args).replay(args.run_id, check=args.check)
    if args.json:
        _print_json({**result.to_dict(), "check": check.to_dict() if check else None})
    else:
        _print_result(result, False)
        if check:
            verdict = "identical" if check.identical else f"DIFFERENT (max pixel difference {check.max_diff})"
            print(f"check against {check.original_run}: {verdict} over {len(check.files)} file(s)")
    return 0 if check is None or check.identical else 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add generate, video, plan and ask (`labkit --help` lists replay later: see `register_replay`)."""
    render = argparse.ArgumentParser(add_help=False)
    render.add_argument("--model", help="catalogue id, diffusers repo id, local folder or .safetensors file")
    render.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    render.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    render.add_argument("--seed", type=int, help="seed of the first output (default: random, recorded)")
    render.add_argument("--size", type=_size, help="WIDTHxHEIGHT, multiples of 8 (default: the model's)")
    render.add_argument("--negative", default="", help="negative prompt")
    render.add_argument("--out", type=_out_folder, help="also copy the outputs into this folder")
    render.add_argument("--allow-pickle", action="store_true", help="allow pickle weights (they can run code)")
    render.add_argument("--config", help="for a .safetensors checkpoint: the diffusers folder/repo of its base model")
    render.add_argument("--mode", help="compliance mode: open, research (default), strict, or one of yours")
    render.add_argument("--json", action="store_true", help="print the result record as JSON")
    render.add_argument("--fast", action="store_true",
                        help="speed first (plan speed=max): the gpu-fast rung where the family has one (bf16, fused "
                             "QKV, torch.compile; the first render of a size compiles), recorded with the run")

    p = sub.add_parser("generate", parents=[common, render], help="text-to-image or image-to-image")
    p.add_argument("prompt")
    p.add_argument("--n", type=int, default=1, help="number of images")
    p.add_argument("--image", help="input image for image-to-image")
    p.add_argument("--strength", type=float, help="image-to-image strength 0–1 (default 0.6)")
    p.add_argument("--control", action="append", metavar="KIND:IMAGE[:SCALE]",
                   help="a ControlNet control (repeatable): canny, pose (an image or OpenPose keypoint JSON), depth, "
                        "scribble, layout or none (the image already is the map), with a scale (default 1.0)")
    p.add_argument("--control-model", action="append", metavar="PATH_OR_ID",
                   help="the ControlNet for --control (one for all, or one per --control in order)")
    p.add_argument("--adapter", action="append", metavar="PATH_OR_ID[:WEIGHT]",
                   help="a LoRA adapter (.safetensors file or folder, run:RUN_ID, catalogue id, hub repo) with an "
                        "optional weight; repeat to stack several")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("video", parents=[common, render], help="image-to-video or text-to-video")
    p.add_argument("prompt", nargs="?", default="")
    p.add_argument("--image", help="first image for image-to-video")
    p.add_argument("--frames", type=int, help="frames per clip (default: the model's)")
    p.add_argument("--fps", type=int, help="frames per second (default: the model's)")
    p.set_defaults(func=cmd_video)

    controller = argparse.ArgumentParser(add_help=False)
    controller.add_argument("--controller", default="rules",
                            help="rules (default), local:<model> or remote:<url>#<model>")
    controller.add_argument("--mode", help="compliance mode: open, research (default), strict, or one of yours")

    p = sub.add_parser("plan", parents=[common, controller], help="show the plan for a request, render nothing")
    p.add_argument("request")
    p.add_argument("--no-cache", action="store_true", help="ask the controller even if the plan is cached")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("ask", parents=[common, controller], help="plan a request, then render it")
    p.add_argument("request")
    p.add_argument("--out", type=_out_folder, help="also copy the outputs into this folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)


def register_replay(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add replay."""
    p = sub.add_parser("replay", parents=[common], help="re-render a run from its stored plan")
    p.add_argument("run_id")
    p.add_argument("--check", action="store_true", help="compare the pixels with the original (exit 1 if not equal)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)
