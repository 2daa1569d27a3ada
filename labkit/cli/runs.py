"""`labkit sweep`, `export`, `import`: many runs at once (a study from a spec; runs to and from a portable
bundle).

Example: `labkit export labkit --out runs.zip`, then `labkit import runs.zip` in another project.

A sweep stopped by Ctrl-C (exit 130) or SIGTERM (exit 143) ends its running points and its run KILLED, with the
reason, keeps what they recorded, and says in one line what to run to finish it (`--resume`).
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli._common import _config, _lab, _out_file, _print_json
from labkit.errors import InvalidParameter


def cmd_sweep(args: argparse.Namespace) -> int:
    from labkit.sweeps import SweepStopped, load_spec, run_sweep

    if args.jobs < 1:
        raise InvalidParameter(f"--jobs {args.jobs} is not a number of kernels to run at once.", value=args.jobs,
                               fix="use --jobs 1 (the default) or more.")
    lab = _lab(args)
    spec = load_spec(args.file, root=lab.config.root)
    try:
        result = run_sweep(lab, spec, jobs=args.jobs, resume=args.resume, yes=args.yes, dry_run=args.dry_run,
                           progress=not args.no_progress, backend=args.backend, address=args.address)
    except SweepStopped as e:  # (an interrupt before the sweep's run opened goes on to the error boundary)
        # one line, as every stop of the CLI: what stopped, what is kept, how to go on; exit 143 for SIGTERM
        # (128 + 15, as the error boundary), 130 for Ctrl-C
        print(f"labkit sweep: {e.line(_resume_command(args))}", file=sys.stderr, flush=True)
        return 143 if e.signal == "SIGTERM" else 130
    if args.json:
        _print_json({"parent_run_id": result.parent_run_id, "dry_run": result.dry_run, "runs": len(result.points),
                     "skipped": [p.index for p in result.skipped],
                     "outcomes": [{"index": o.point.index, "run_id": o.run_id, "status": o.status, "error": o.error,
                                   "values": o.point.values} for o in result.outcomes],
                     "warnings": result.report.warnings if result.report is not None else []})
    else:
        print("\n".join(result.lines()))
        if result.report is not None:
            print("\n".join(result.report.lines()[1:]))
            print(f"summary, figures and grid: artifacts summary/ of run {result.parent_run_id} "
                  f"(labkit compare sweep {result.parent_run_id})")
    return 1 if result.failed else 0


def _resume_command(args: argparse.Namespace) -> str:
    """The command as it was typed (its --jobs, --root, --backend…), with --resume."""
    import shlex

    argv = list(getattr(args, "argv", None) or ["sweep", args.file])
    return "labkit " + shlex.join(argv if "--resume" in argv else [*argv, "--resume"])


def cmd_export(args: argparse.Namespace) -> int:
    from labkit.tracking.bundle import export_bundle
    from labkit.tracking.store import Tracker

    summary = export_bundle(Tracker(_config(args)), args.what, args.out)
    print(summary.line("export"))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from labkit.tracking.bundle import DEFAULT_MAX_BYTES, import_bundle
    from labkit.tracking.store import Tracker

    limit = DEFAULT_MAX_BYTES if args.max_bytes is None else args.max_bytes
    summary = import_bundle(Tracker(_config(args)), args.file, experiment=args.into, max_bytes=limit)
    if args.json:
        _print_json({"imported": summary.imported, "skipped": summary.skipped, "id_map": summary.id_map})
    else:
        print(summary.line("import"))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add sweep, export and import."""
    p = sub.add_parser("sweep", parents=[common], help="run a study from a sweep spec (experiments/*.yaml): "
                                                       "one parent run, one child run per point and seed")
    p.add_argument("file", help="the sweep spec (YAML)")
    p.add_argument("--dry-run", action="store_true", help="check the spec and list the points; run nothing")
    p.add_argument("--jobs", type=int, default=1, help="notebook points run on up to N kernels at once (bounded "
                                                       "by cores and RAM; default 1; on Ray the cluster's "
                                                       "resources decide)")
    p.add_argument("--resume", action="store_true", help="continue the latest sweep of this name: run only the "
                                                         "points without a finished run")
    p.add_argument("--backend", choices=("local", "ray"), help="where the points run: this process (local), or one "
                                                              "Ray task each on a cluster (ray; needs "
                                                              "pip install \"labkit[ray]\"); default: [sweep] backend "
                                                              "in labkit.toml, else local")
    p.add_argument("--address", help="the Ray cluster: local (start one here), auto (the one running here), "
                                     "ray://HOST:10001 or HOST:6379; default: [sweep] address, else start or join one "
                                     "(a cluster of other machines needs a tracking server: labkit tracking serve)")
    p.add_argument("--yes", action="store_true", help="start it even when it has more runs than the spec's max_runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("export", parents=[common], help="write runs to a portable bundle (zip: JSON manifest + "
                                                        "artifact files)")
    p.add_argument("what", nargs="+", metavar="EXPERIMENT|RUN_ID", help="an experiment name, or run ids (each "
                                                                         "with the runs nested under it)")
    p.add_argument("--out", required=True, type=_out_file, help="the bundle to write (FILE.zip)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", parents=[common], help="add the runs of a bundle to this store (again: no-op)")
    p.add_argument("file", help="a bundle written by labkit export")
    p.add_argument("--into", help="put every run into this experiment (default: each run's own, by name)")
    p.add_argument("--max-bytes", type=int, help="refuse a bundle whose artifacts add up to more (default 20 GiB)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)
