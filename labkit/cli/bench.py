"""`labkit bench WHICH`: a benchmark as a ratio to a baseline measured in the same run.

Example: `labkit bench generate --repeat 5 --json`.
"""

from __future__ import annotations

import argparse

from labkit.cli._common import _print_json, _size


def cmd_bench(args: argparse.Namespace) -> int:
    from labkit.bench import BENCHMARKS

    result = BENCHMARKS[args.which](repeats=args.repeat, model=args.model, steps=args.steps, size=args.size,
                                    root=args.root)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.line())
        for k, v in result.extra.items():
            print(f"  {k}: {v}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add bench (its choices are `labkit.bench.BENCHMARKS`)."""
    from labkit.bench import BENCHMARKS

    p = sub.add_parser("bench", help="benchmarks as ratios to a baseline measured in the same run")
    p.add_argument("which", choices=sorted(BENCHMARKS))
    p.add_argument("--repeat", type=int, default=10, help="measurements of each side (default 10)")
    p.add_argument("--root", help="project folder (default: found from the working directory)")
    p.add_argument("--model", help="generate: the model to measure (default: the lab's default image model); "
                   "toy-motion: default toyworld-motion")
    p.add_argument("--steps", type=int, help="denoising steps (default: generate 20, toy-motion the model's)")
    p.add_argument("--size", type=_size, help="generate: WIDTHxHEIGHT (default: the model's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
