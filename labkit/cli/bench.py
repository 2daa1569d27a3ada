"""`labkit bench WHICH`: a benchmark as a ratio to a baseline measured in the same run.

Example: `labkit bench generate --repeat 5 --json`; `labkit bench gpu --families sd15,sdxl --out results`
(every GPU rung against plain diffusers eager, a table and an MLflow run; `--tiny` on a CPU);
`labkit bench gpu --suggest-table results/bench_gpu.csv` (the measured `est_peak_vram_gb` lines).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from labkit.cli._common import _out_folder, _print_json, _size, check_options

_RENDERS = {"--repeat", "--model", "--steps", "--size"}
#: The options each benchmark reads: another benchmark's option is refused, not silently ignored.
_OPTIONS = {"import": {"--repeat"}, "generate": _RENDERS, "toy-motion": _RENDERS, "serve": _RENDERS,
            "gpu": {"--steps", "--families", "--out", "--tiny", "--no-warmup", "--suggest-table", "--time-limit"}}


def cmd_bench(args: argparse.Namespace) -> int:
    from labkit.bench import BENCHMARKS

    check_options(args, _OPTIONS, "labkit bench")
    if args.which == "gpu":
        return cmd_bench_gpu(args)
    result = BENCHMARKS[args.which](repeats=args.repeat, model=args.model, steps=args.steps, size=args.size,
                                    root=args.root)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.line())
        for k, v in result.extra.items():
            print(f"  {k}: {v}")
    return 0


def cmd_bench_gpu(args: argparse.Namespace) -> int:
    """`labkit bench gpu`: the table, or with --suggest-table the strategies.toml lines from a GPU run's CSV.
    Exit status 1 when a row failed for another reason than out of memory (the table is written all the same)."""
    from labkit.bench_gpu import GpuBenchConfig, markdown, run_gpu_bench, suggest_table

    if args.suggest_table:
        print(suggest_table(args.suggest_table), end="")
        return 0
    config = GpuBenchConfig(families=tuple(f.strip() for f in args.families.split(",") if f.strip()),
                            out=args.out, tiny=args.tiny, steps=args.steps, warmup=not args.no_warmup,
                            time_limit_s=args.time_limit)
    command = "labkit bench gpu " + " ".join(shlex.quote(a) for a in (
        ["--families", ",".join(config.families)] + (["--tiny"] if config.tiny else [])
        + (["--steps", str(config.steps)] if config.steps else []) + (["--no-warmup"] if not config.warmup else [])
        + (["--time-limit", f"{config.time_limit_s:g}"] if config.time_limit_s else [])))
    report = run_gpu_bench(config, root=args.root, command=command,
                           echo=None if args.json else lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        _print_json({"rows": report.rows, "csv": str(report.csv_path), "markdown": str(report.markdown_path),
                     "run_id": report.run_id, "device": report.device, **report.extra})
    else:
        print(markdown(report.rows))
        print(f"\ntable: {report.csv_path} and {report.markdown_path}; MLflow run {report.run_id}")
    if report.not_run:
        print(f"{len(report.not_run)} row(s) not run: the time limit ({config.time_limit_s:g} s) was reached",
              file=sys.stderr)
    if report.failed:
        print(f"{len(report.failed)} row(s) failed: see their note column", file=sys.stderr)
        return 1
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
    p.add_argument("--steps", type=int, help="denoising steps (default: generate 20, toy-motion and gpu the model's)")
    p.add_argument("--size", type=_size, help="generate: WIDTHxHEIGHT (default: the model's)")
    p.add_argument("--families", default="sd15,sdxl,svd,t2v",
                   help="gpu: comma-separated families (default sd15,sdxl,svd,t2v)")
    p.add_argument("--out", type=_out_folder, help="gpu: folder for bench_gpu.csv and bench_gpu.md "
                   "(default: outputs/bench-gpu/<time> in the project)")
    p.add_argument("--tiny", action="store_true", help="gpu: the tiny models (on a CPU: the CI path)")
    p.add_argument("--no-warmup", action="store_true", help="gpu: time the first call too")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="gpu: start no row after this many seconds (the rest are listed as not run)")
    p.add_argument("--suggest-table", metavar="CSV",
                   help="gpu: print the est_peak_vram_gb lines for strategies.toml from a GPU run's bench_gpu.csv")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
