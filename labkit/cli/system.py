"""`labkit doctor`, `labkit demo`, `labkit ui`: the lab itself (hardware and store report, the first-run demo,
the MLflow UI on the local store).

Example: `labkit doctor --json` prints the hardware report as JSON; `labkit doctor --run RUN_ID` explains a run
(for a failed render: what failed, at which rung and stage, and what to change).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from labkit.cli._common import _lab, _out_folder, _print_json
from labkit.errors import InvalidParameter


def cmd_doctor(args: argparse.Namespace) -> int:
    from labkit.lab import hardware_report

    lab = _lab(args)
    if args.run is not None:
        from labkit.diagnose import explain_run, explanation_text

        explained = explain_run(lab, args.run)
        if args.json:
            _print_json(explained)
        else:
            print(explanation_text(explained), end="")
        return 0
    if args.repair_store:
        from labkit.tracking.health import repair_store

        done = repair_store(lab.config.tracking_uri)
        print(f"repaired {done['store']}: dropped {', '.join(done['dropped_tables']) or 'no leftover tables'}, "
              f"migrations finished; the database before the repair is kept as {done['backup']}", file=sys.stderr)
    report = lab.doctor()
    if args.json:
        _print_json(report)
    else:
        print(hardware_report(report), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from labkit.lab import hardware_report

    lab = _lab(args)
    print(f"labkit demo on {lab.hardware.summary()}\n")
    out = lab.demo(out=args.out)
    print(hardware_report(out["report"]))
    if out["renders"]:
        print(f"Rendered with {out['model']}:")
        for r in out["renders"]:
            print(f"  {r.plan.prompt!r}: {r.files[0]} ({r.timings['total_s']:.2f} s, run {r.run_id})")
    else:
        print(f"The default model {out['model']!r} is not installed here, so nothing was rendered "
              "(train it with `labkit train toy-base`).")
    print(f"Logged run {out['run_id']} to experiment {out['experiment']!r}")
    print(f"  store:     {out['tracking_uri']}")
    print(f"  artifacts: {out['artifact_dir']}")
    print("Open the MLflow UI with `make ui` (or `labkit ui`) and look for the run named 'demo'.")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import signal

    from labkit.tracking.links import compare_url, resolve_runs, runs_url

    if args.port is None:  # the environment's default, read only when the UI is asked for
        raw = os.environ.get("LABKIT_UI_PORT", "5000")
        try:
            args.port = int(raw)
            if not 0 < args.port < 65536:
                raise ValueError(raw)
        except ValueError:
            raise InvalidParameter(f"LABKIT_UI_PORT={raw!r} is not a port number.", value=raw,
                                   fix="set LABKIT_UI_PORT to a whole number from 1 to 65535 (or unset it for "
                                       "5000), or pass --port.") from None
    lab = _lab(args)
    served = lab.config.tracking_uri.startswith(("http://", "https://"))
    base = lab.config.tracking_uri if served else f"http://{args.host}:{args.port}"
    links = f"Runs of experiment {lab.config.experiment!r}: {runs_url(base, lab.tracker.experiment_id())}"
    if args.compare:  # checked before the server starts: a wrong id fails at once
        runs = resolve_runs(lab.tracker, args.compare)
        url = compare_url(base, [r.info.run_id for r in runs], sorted({r.info.experiment_id for r in runs}))
        links += f"\nCompare {len(runs)} runs: {url}"
    if served:  # a tracking server is its own UI
        print(f"The store is the tracking server {lab.config.tracking_uri}: open that address in a browser "
              f"(its UI is already there).\n{links}", flush=True)
        return 0
    from labkit.tracking.server import check_port

    check_port(args.host, args.port)  # in use or out of range: refused before the banner (the UI died after it)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", lab.config.tracking_uri,
           "--default-artifact-root", lab.config.artifact_root.as_uri(), "--host", args.host, "--port",
           str(args.port)]
    # The UI needs no background job workers, which MLflow would otherwise start as a dozen processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI on {base} for {lab.config.tracking_uri} (Ctrl-C stops it)\n{links}", flush=True)
    lab.config.artifact_root.mkdir(parents=True, exist_ok=True)
    # The server runs in its own process group, so stopping labkit (Ctrl-C or SIGTERM) stops all of it.
    server = subprocess.Popen(cmd, cwd=lab.config.root, env=env, start_new_session=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        from labkit.tracking.server import stop_group

        stop_group(server)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add doctor, demo and ui; `common` is the parent parser of --root, --tracking-uri and --experiment."""
    p = sub.add_parser("doctor", parents=[common], help="hardware, memory strategies, tracking store, versions")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--repair-store", action="store_true",
                   help="first repair a SQLite store an interrupted migration left half-done (keeps a backup)")
    p.add_argument("--run", metavar="RUN_ID",
                   help="explain one run instead: for a failed render what failed, where (rung, stage) and what to "
                        "change")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", parents=[common], help="run the lab's main job on the embedded default")
    p.add_argument("--out", type=_out_folder, help="also copy the rendered images into this folder")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", parents=[common], help="open the MLflow UI on the local store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: $LABKIT_UI_PORT, else 5000)")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="print the address of the page comparing these runs (ids, or their first characters)")
    p.set_defaults(func=cmd_ui)
