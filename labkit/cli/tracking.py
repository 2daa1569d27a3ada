"""`labkit tracking serve`: the project's MLflow tracking server, shared by every machine of a group.

Example: `labkit tracking serve --host 0.0.0.0 --port 5000` serves the project's SQLite store and artifact folder
(artifacts proxied: clients need no shared disk) and prints the line to put in each client's labkit.toml,
`[tracking] uri = "http://HOST:5000"`. Ctrl-C or SIGTERM stops it (its workers too), exit 0.
"""

from __future__ import annotations

import argparse
import signal
import sys

from labkit.cli._common import _config


def cmd_tracking_serve(args: argparse.Namespace) -> int:
    from labkit.tracking.health import sqlite_path
    from labkit.tracking.server import (
        artifacts_uri,
        hide_password,
        local_artifact_experiments,
        server_url,
        start_server,
    )

    config = _config(args)
    # The project's own SQLite store, also when labkit.toml already points this project at a server.
    own = config.tracking_uri if not config.tracking_uri.startswith(("http://", "https://")) \
        else f"sqlite:///{config.root / 'mlruns' / 'mlflow.db'}"
    backend = args.backend_store_uri or own
    destination = artifacts_uri(args.artifacts_destination or config.artifact_root)
    url = server_url(args.host, args.port)
    print(f"MLflow tracking server for {hide_password(backend)} (artifacts in {destination}), starting on {url} ...",
          file=sys.stderr, flush=True)
    server = start_server(backend, destination, host=args.host, port=args.port, workers=args.workers,
                          allowed_hosts=args.allowed_hosts, log="-")
    if sqlite_path(backend) is not None and args.host not in ("127.0.0.1", "localhost", "::1"):
        old = local_artifact_experiments(backend)
        if old:
            print(f"note: experiments made before this store was served ({', '.join(old[:5])}"
                  f"{', …' if len(old) > 5 else ''}) keep their artifacts in a folder of this machine: runs "
                  "logged to them from other machines cannot store their files. Use a new experiment name there "
                  "(--experiment or [tracking] experiment).", file=sys.stderr, flush=True)
    print(f"Tracking server up at {server.url} (Ctrl-C stops it). Point a project at it with this in its "
          f"labkit.toml:\n\n[tracking]\nuri = \"{server.url}\"\n\n(or MLFLOW_TRACKING_URI={server.url})", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `tracking serve`; `common` is the parent parser of --root, --tracking-uri and --experiment."""
    p = sub.add_parser("tracking", help="the project's MLflow tracking server (shared by many machines)")
    tsub = p.add_subparsers(dest="tracking_command", required=True, metavar="SUBCOMMAND")
    s = tsub.add_parser("serve", parents=[common], help="run `mlflow server` for this project, artifacts proxied",
                        description="Serve the project's MLflow store to other machines: runs, metrics and "
                                    "artifacts all go through http://HOST:PORT.")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on: 127.0.0.1 (this machine only, default) or 0.0.0.0 (every network)")
    s.add_argument("--port", type=int, default=5000, help="TCP port (default 5000)")
    s.add_argument("--backend-store-uri", metavar="URI",
                   help="where runs are stored: a SQLAlchemy URI (default: the project's SQLite store, "
                        "sqlite:///<root>/mlruns/mlflow.db; e.g. postgresql://user@db/mlflow)")
    s.add_argument("--artifacts-destination", metavar="URI",
                   help="where the server keeps artifacts: a folder or URI (default: the project's artifact root, "
                        "<root>/mlruns/artifacts; e.g. s3://bucket/mlflow)")
    s.add_argument("--workers", type=int, default=None, help="server worker processes (MLflow's default: 4)")
    s.add_argument("--allowed-hosts", metavar="HOSTS",
                   help="Host headers the server accepts, comma-separated (MLflow's check against DNS rebinding; "
                        "default for a non-loopback --host: this machine's names and private addresses)")
    s.set_defaults(func=cmd_tracking_serve)
