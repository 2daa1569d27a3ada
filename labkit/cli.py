"""`labkit …`: one sub-command per job. Each parses its arguments, calls the `Lab` API, prints.

A `LabkitError` ends the command with its message (value and fix) on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from labkit.errors import LabkitError


def _lab(args: argparse.Namespace):
    from labkit.lab import Lab

    return Lab(args.root, tracking_uri=args.tracking_uri, experiment=args.experiment)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_doctor(args: argparse.Namespace) -> int:
    from labkit.lab import hardware_report

    report = _lab(args).doctor()
    if args.json:
        _print_json(report)
    else:
        print(hardware_report(report), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from labkit.lab import hardware_report

    lab = _lab(args)
    print(f"labkit demo on {lab.hardware.summary()}\n")
    out = lab.demo()
    print(hardware_report(out["report"]))
    print(f"Logged run {out['run_id']} to experiment {out['experiment']!r}")
    print(f"  store:     {out['tracking_uri']}")
    print(f"  artifacts: {out['artifact_dir']}")
    print("Open the MLflow UI with `make ui` (or `labkit ui`) and look for the run named 'demo'.")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    lab = _lab(args)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", lab.config.tracking_uri,
           "--default-artifact-root", lab.config.artifact_root.as_uri(), "--host", args.host, "--port",
           str(args.port)]
    print(f"MLflow UI on http://{args.host}:{args.port} for {lab.config.tracking_uri} (Ctrl-C stops it)",
          flush=True)
    lab.config.artifact_root.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.call(cmd, cwd=lab.config.root)
    except KeyboardInterrupt:
        return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from labkit.bench import BENCHMARKS

    result = BENCHMARKS[args.which](repeats=args.repeat)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.line())
        for k, v in result.extra.items():
            print(f"  {k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from labkit import __version__

    parser = argparse.ArgumentParser(prog="labkit", description="A research lab for generative image and video "
                                     "models: plan, render, record every run in MLflow.")
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="project folder (default: found from the working directory)")
    common.add_argument("--tracking-uri", help="MLflow store URI (default: sqlite:///<root>/mlruns/mlflow.db)")
    common.add_argument("--experiment", help="MLflow experiment name (default: labkit)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", parents=[common], help="hardware, memory strategies, tracking store, versions")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", parents=[common], help="run the lab's main job on the embedded default")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", parents=[common], help="open the MLflow UI on the local store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("LABKIT_UI_PORT", "5000")))
    p.set_defaults(func=cmd_ui)

    from labkit.bench import BENCHMARKS

    p = sub.add_parser("bench", help="benchmarks as ratios to a baseline measured in the same run")
    p.add_argument("which", choices=sorted(BENCHMARKS))
    p.add_argument("--repeat", type=int, default=10, help="measurements of each side (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LabkitError as e:
        print(f"labkit {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
