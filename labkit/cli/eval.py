"""`labkit eval toyworld | toymotion | toycontrol | dreambooth | controller`: the quality benchmarks.

Example: `labkit eval controller --json` prints the controller's accuracy on its suite.
"""

from __future__ import annotations

import argparse

from labkit.cli._common import _lab, _print_json, check_options
from labkit.errors import InvalidParameter


def _prompt_lines(path: str | None) -> list[str] | None:
    """toyworld --prompts: the file's non-empty lines, or None."""
    if path is None:
        return None
    from pathlib import Path

    from labkit.files import read_text

    p = Path(path)
    fix = "pass a text file with one prompt a line."
    if not p.exists():
        raise InvalidParameter(f"No prompt file {path!r}.", value=path, fix=fix)
    text = read_text(p, what="prompt file", fix=fix, error=InvalidParameter)
    return [line.strip() for line in text.splitlines() if line.strip()]


#: The options each benchmark reads: another benchmark's option is refused, not silently ignored.
_OPTIONS = {"toyworld": {"--model", "--n", "--categories", "--prompts", "--seed", "--steps"},
            "toymotion": {"--model", "--n", "--image-to-video", "--seed", "--steps"},
            "toycontrol": {"--model", "--n", "--controlnet", "--scale", "--seed", "--steps"},
            "dreambooth": {"--model", "--steps"}, "controller": {"--controller"}}


def cmd_eval(args: argparse.Namespace) -> int:
    check_options(args, _OPTIONS, "labkit eval")
    if args.which == "controller":
        from labkit.controller.base import get_controller
        from labkit.evals.controller import evaluate as evaluate_controller
        from labkit.evals.controller import log_report

        result = evaluate_controller(get_controller(args.controller))
        log_report(_lab(args), result)
        if args.json:
            _print_json(result)
        else:
            print(result.to_table())
        return 0
    if args.which == "dreambooth":
        from labkit.evals.dreambooth import evaluate_dreambooth

        if not args.adapters:
            raise InvalidParameter("labkit eval dreambooth needs the adapter(s) to score.", value=[],
                                   fix="pass a training folder, an adapter file or run:RUN_ID (several to compare).")
        reports = [evaluate_dreambooth(_lab(args), a, model=args.model, steps=args.steps) for a in args.adapters]
        if args.json:
            _print_json([r.to_dict() for r in reports])
        else:
            print("\n".join(line for r in reports for line in r.lines()))
        return 0
    if args.adapters:
        raise InvalidParameter(f"labkit eval {args.which} takes no adapters.", value=args.adapters,
                               fix="drop them (only `labkit eval dreambooth` scores adapters).")
    if args.which == "toycontrol":
        from labkit.evals.toycontrol import evaluate_control

        report = evaluate_control(_lab(args), model=args.model or "toyworld",
                                  controlnet=args.controlnet or "toyworld-controlnet",
                                  n=args.n if args.n is not None else 200, seed=args.seed, steps=args.steps,
                                  scale=args.scale)
    elif args.which == "toymotion":
        from labkit.evals.toymotion import evaluate_motion

        report = evaluate_motion(_lab(args), model=args.model or "toyworld-motion",
                                 n=args.n if args.n is not None else 60, seed=args.seed, steps=args.steps,
                                 image_to_video=args.image_to_video)
    else:
        from labkit.evals.toyworld import evaluate

        report = evaluate(_lab(args), model=args.model or "toyworld", n=args.n if args.n is not None else 200,
                          seed=args.seed, steps=args.steps if args.steps is not None else 20,
                          categories=args.categories, prompts=_prompt_lines(args.prompts))
    if args.json:
        _print_json(report.to_dict())
    else:
        print("\n".join(report.lines()))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add eval."""
    p = sub.add_parser("eval", parents=[common], help="quality benchmarks: toyworld adherence, controller accuracy")
    p.add_argument("which", choices=["toyworld", "toymotion", "toycontrol", "dreambooth", "controller"])
    p.add_argument("adapters", nargs="*", default=[],
                   help="dreambooth: training folders, adapters or run:RUN_ID to score")
    p.add_argument("--controller", default="rules", help="controller: the one to evaluate (default rules)")
    p.add_argument("--model", help="the model to evaluate (default: toyworld)")
    p.add_argument("--n", type=int, help="held-out prompts (of each category; default 200, toymotion 60), or layouts "
                   "(toycontrol; default 200)")
    p.add_argument("--categories", help="toyworld: a comma list of GenEval categories to score (default all: "
                   "single_object, two_objects, counting, colours, position, colour_attribution)")
    p.add_argument("--prompts", help="toyworld: a file of prompts (one a line) to score instead of the held-out "
                   "ones; each counts in its categories, unreadable ones are listed as skipped")
    p.add_argument("--controlnet", help="toycontrol: the layout ControlNet to evaluate (default toyworld-controlnet)")
    p.add_argument("--scale", type=float, default=1.0, help="toycontrol: the ControlNet's scale (0 to 2; default 1)")
    p.add_argument("--image-to-video", action="store_true", help="toymotion: start each clip from its first frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="sampling steps (default: toyworld 20, toymotion the model's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)
