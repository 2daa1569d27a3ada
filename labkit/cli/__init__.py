"""`labkit …`: one sub-command per job. Each parses its arguments, calls the `Lab` API, prints.

`main` is the one error boundary, and nothing it catches reaches the terminal as a traceback:

- a bad argument (argparse, text that is not UTF-8, an `--out` that is a file where a folder is
  expected, …) or a `LabkitError`: one line `labkit COMMAND: message Fix: …`, exit status 2;
- any other exception: one line naming it and the log file that holds the full traceback
  (`<project>/mlruns/logs/labkit-<UTC time>-<pid>.log`, else `<tmp>/labkit-logs/`), exit status 1;
  a run that was open has already ended FAILED with the traceback as its `error.txt`;
- Ctrl-C: "interrupted", exit 130. SIGTERM takes the same path (an open run ends KILLED, its `labkit.error`
  "stopped by SIGTERM"), exit 143. A command that stops cleanly says so itself (`labkit sweep`: what stopped,
  what is kept, how to resume) with the same exit status.

Layout: one module per command group, each holding its `cmd_*` functions and a `register(sub, common)` that
adds its parsers (`system`: doctor, demo, ui; `generate`: generate, video, plan, ask, replay; `compliance`;
`train`; `compare`; `runs`: sweep, export, import; `eval`; `cloud`; `bench`; `serve`: the REST API and its
keys; `tracking`: tracking serve). `_common` holds what the commands share (the `Lab` from the arguments,
JSON output, argument types), `_boundary` the error boundary.
A new command goes into its group's module and is registered in `build_parser`, which adds the groups in
the order `labkit --help` lists them.

Example: `labkit.cli.main(["plan", "a red circle", "--json"])` prints the plan and returns 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from labkit.cli import bench, cloud, compare, compliance, generate, runs, serve, system, tracking, train
from labkit.cli import eval as eval_cmd
from labkit.cli._boundary import (
    _check_text,
    _command_name,
    _LabkitWarnings,
    _option_names,
    _Parser,
    _say,
    _SigtermAsInterrupt,
    _silence_stdout,
    _unexpected,
)
from labkit.cli._common import _config, _lab, _print_json
from labkit.errors import LabkitError

__all__ = ["build_parser", "main", "_config", "_lab", "_print_json"]


#: The dest prefix of the project options given before the command (the command's own parser sets them after it).
TOP = "top_"


def build_parser() -> argparse.ArgumentParser:
    from labkit import __version__

    parser = _Parser(prog="labkit", description="A research lab for generative image and video "
                     "models: plan, render, record every run in MLflow.")
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    for p, prefix in ((common, ""), (parser, TOP)):  # also before the command: `labkit --root X generate …`
        p.add_argument("--root", dest=prefix + "root", default=argparse.SUPPRESS if prefix else None, metavar="ROOT",
                       help="project folder (default: found from the working directory)")
        p.add_argument("--tracking-uri", dest=prefix + "tracking_uri", default=argparse.SUPPRESS if prefix else None,
                       metavar="TRACKING_URI", help="MLflow store URI (default: sqlite:///<root>/mlruns/mlflow.db)")
        p.add_argument("--experiment", dest=prefix + "experiment", default=argparse.SUPPRESS if prefix else None,
                       metavar="EXPERIMENT", help="MLflow experiment name (default: labkit)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    system.register(sub, common)
    generate.register(sub, common)
    compliance.register(sub, common)
    train.register(sub, common)
    compare.register(sub, common)
    generate.register_replay(sub, common)
    runs.register(sub, common)
    eval_cmd.register(sub, common)
    cloud.register(sub, common)
    bench.register(sub, common)
    serve.register(sub, common)
    tracking.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `labkit` command; return its exit status (see the module docstring for the error boundary)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed as one line
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except Exception as e:  # a check while parsing that failed in a way nobody foresaw
        return _unexpected("", argparse.Namespace(), argv, e)
    for name in ("root", "tracking_uri", "experiment"):  # given before the command; after it, it wins
        top = vars(args).pop(TOP + name, None)
        if top is not None and getattr(args, name, None) is None:
            setattr(args, name, top)
    command = _command_name(args)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given, for a command that relaunches itself
    # MLflow draws a progress bar for every artifact it fetches (replay's plan.json, a sweep's spec): on a command
    # line that is noise around the one line a command prints; a user's own setting wins
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with _SigtermAsInterrupt() as sigterm, _LabkitWarnings(command):
        try:
            _check_text(args, _option_names(parser))
            return args.func(args)
        except LabkitError as e:
            _say(command, str(e))
            return 2
        except KeyboardInterrupt:
            if sigterm.received:
                _say(command, "stopped by SIGTERM (an open run ends KILLED).")
                return 143
            _say(command, "interrupted.")
            return 130
        except BrokenPipeError:  # `labkit … | head`: the reader left; say nothing more
            _silence_stdout()
            return 141
        except Exception as e:
            return _unexpected(command, args, argv, e)
