"""`labkit compare adapters | sweep`: side-by-side comparisons, each logged as a run.

Example: `labkit compare sweep RUN_ID --a steps=4 --b steps=12` adds a paired comparison to a sweep's summary.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from labkit.cli._common import _lab, _print_json
from labkit.errors import InvalidParameter


def cmd_compare_adapters(args: argparse.Namespace) -> int:
    from labkit.evals.adapters import compare_adapters

    out = compare_adapters(_lab(args), args.adapters, prompts=args.prompts, seeds=args.seeds, weights=args.weights,
                           model=args.model, steps=args.steps)
    if args.json:
        _print_json({"run_id": out.run_id, "rows": out.rows,
                     "means": [{"checkpoint": c, "weight": w, "all_correct": v} for (c, w), v in out.means().items()]})
    else:
        print(f"run {out.run_id}: {len(out.checkpoints)} checkpoint(s) × {len(out.weights)} weight(s) × "
              f"{len(out.seeds)} seed(s) × {len(out.prompts)} prompt(s)")
        for (c, w), v in out.means().items():
            print(f"  {c} @ {w:g}: all correct {v:.0%}")
    return 0


def _setting(text: str) -> dict[str, Any]:
    """'steps=4,guidance=2.0' → {'steps': 4, 'guidance': 2.0} (values read as YAML)."""
    import yaml

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"{part!r} is not NAME=VALUE (e.g. steps=4)")
        k, v = part.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def cmd_compare_sweep(args: argparse.Namespace) -> int:
    from labkit.sweeps import report

    lab = _lab(args)
    compare = [(args.a, args.b, args.metric)] if args.a and args.b else None
    if bool(args.a) != bool(args.b):
        raise InvalidParameter("--a and --b go together.", value=args.a or args.b,
                               fix="pass both settings, e.g. --a steps=4 --b steps=12.")
    rep = report(lab, args.run_id, metrics=args.metrics or None, compare=compare, log=not args.no_log)
    if args.json:
        _print_json({"parent_run_id": rep.parent_run_id, "axes": list(rep.axes), "metrics": list(rep.metrics),
                     "summary": json.loads(rep.summary.to_json(orient="records")),
                     "paired": [p.to_dict() for p in rep.comparisons], "warnings": rep.warnings})
    else:
        print("\n".join(rep.lines()))
        if not args.no_log:
            print(f"written to the artifacts summary/ of run {rep.parent_run_id} (summary.html, grid.png, plots)")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add compare and its sub-commands."""
    p = sub.add_parser("compare", help="side-by-side comparisons: adapters (checkpoint × weight × seed), "
                                                 "sweeps")
    csub = p.add_subparsers(dest="compare_command", required=True, metavar="WHAT")
    c = csub.add_parser("adapters", parents=[common], help="an XYZ grid of checkpoints × weights × seeds, "
                                                           "scored where a metric exists, logged as one run")
    c.add_argument("adapters", nargs="+", metavar="RUN_OR_FILE",
                   help="adapter files, training output folders (every checkpoint) or run:RUN_ID")
    c.add_argument("--prompts", nargs="+", required=True)
    c.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    c.add_argument("--weights", nargs="+", type=float, default=[0.0, 1.0])
    c.add_argument("--model", help="the base model (default: the lab's default image model)")
    c.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare_adapters)
    c = csub.add_parser("sweep", parents=[common], help="a sweep's table, mean and 95%% CI over seeds, plots, "
                                                        "image grid, paired comparison; logged into its parent run")
    c.add_argument("run_id", help="the sweep's parent run id")
    c.add_argument("--metric", dest="metrics", action="append", help="a metric to summarise (repeatable; default: "
                                                                     "the spec's metrics)")
    c.add_argument("--a", type=_setting, help="paired comparison: the baseline setting, e.g. steps=4")
    c.add_argument("--b", type=_setting, help="paired comparison: the other setting, e.g. steps=12")
    c.add_argument("--paired-metric", dest="metric", help="the metric of the paired comparison (default: the first)")
    c.add_argument("--no-log", action="store_true", help="print only; write nothing into the parent run")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare_sweep)
