"""`labkit serve`: the REST API on uvicorn, and `labkit serve keys add / list / revoke` for its API keys.

Example: `labkit serve --port 8765` serves the project's lab on http://127.0.0.1:8765 (docs at /docs);
SIGTERM or Ctrl-C stops it: the running job's run ends KILLED, queued jobs are recorded cancelled, exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from labkit.cli._common import _config, _lab, _print_json
from labkit.errors import InvalidParameter


def cmd_serve(args: argparse.Namespace) -> int:
    if args.serve_command == "keys":
        return args.keys_func(args)
    import uvicorn

    from labkit.serve import create_app
    from labkit.serve.http import check_limit, is_loopback
    from labkit.serve.keys import KeyStore
    from labkit.tracking.server import check_port

    # before the banner (and before the lab opens): a port in use or out of range, a queue < 1
    check_port(args.host, args.port)
    if args.queue is not None:
        check_limit("queue", args.queue)
    lab = _lab(args)
    keys = KeyStore.for_project(lab.config.root)
    if not is_loopback(args.host) and not keys.keys():
        raise InvalidParameter(f"--host {args.host} would open the lab to the network without any API key.",
                               value=args.host, fix="add a key first (`labkit serve keys add NAME`), or serve on "
                                                    "127.0.0.1.")
    app = create_app(lab, keys, queue=args.queue, controllers=args.controller or ())
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=3, access_log=args.log_level == "debug")
    server = _Server(config)
    mode = "API keys required" if keys.keys() else "no API keys yet: open to this machine only"
    print(f"labkit serve: http://{args.host}:{args.port} (docs at /docs; {mode}); Ctrl-C stops it", flush=True)
    server.run()
    return 0


class _Server:
    """uvicorn's server, stopping on SIGTERM and SIGINT without re-raising the signal afterwards (uvicorn
    re-raises it so the process dies by it; `labkit serve` exits 0 after a clean shutdown instead)."""

    def __new__(cls, config):
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):
                previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for s, handler in previous.items():
                        signal.signal(s, handler)

        return Server(config)


def cmd_keys_add(args: argparse.Namespace) -> int:
    from labkit.serve.keys import KeyStore

    key, secret = KeyStore.for_project(_config(args).root).add(args.name, args.scope)
    if args.json:
        _print_json({**key.public(), "key": secret})
    else:
        print(secret)
        print(f"API key {key.name!r} ({key.scope}): shown once, only its hash is kept.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from labkit.serve.keys import KeyStore

    keys = [k.public() for k in KeyStore.for_project(_config(args).root).keys()]
    if args.json:
        _print_json(keys)
    elif not keys:
        print("no API keys (`labkit serve keys add NAME` makes one)")
    for k in [] if args.json else keys:
        print(f"{k['name']:<20} {k['scope']:<7} {k['key']:<12} {k['created']}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from labkit.serve.keys import KeyStore

    key = KeyStore.for_project(_config(args).root).revoke(args.name)
    print(f"revoked {key.name!r}: a running server refuses it from its next request")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `serve` (and `serve keys …`); `common` is the parent parser of --root, --tracking-uri, --experiment."""
    from labkit.serve.keys import SCOPES

    p = sub.add_parser("serve", parents=[common], help="the lab over HTTP: a REST API with jobs, keys and limits")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; another one "
                   "needs an API key to exist)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    p.add_argument("--queue", type=int, default=None, help="jobs that may wait (default: [serve] queue, 32)")
    p.add_argument("--controller", action="append", metavar="SPEC",
                   help="a controller requests may name besides rules, e.g. "
                        "remote:http://127.0.0.1:11434/v1#qwen2.5:3b (repeat; also [serve] controllers in "
                        "labkit.toml): a remote one gets the request and the LLM API key")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve, serve_command=None)
    keys = p.add_subparsers(dest="serve_command", metavar="keys")
    k = keys.add_parser("keys", help="API keys: add, list, revoke")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    a = ks.add_parser("add", parents=[common], help="make a key; it is printed once, only its hash is kept")
    a.add_argument("name", help="who the key is for (letters, digits, . _ -)")
    a.add_argument("--scope", choices=SCOPES, default="render",
                   help="read: GET only; render: plans, jobs, notes (default); admin: also switch models")
    a.add_argument("--json", action="store_true")
    a.set_defaults(keys_func=cmd_keys_add)
    ls = ks.add_parser("list", parents=[common], help="the keys: name, scope, first characters, created")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(keys_func=cmd_keys_list)
    r = ks.add_parser("revoke", parents=[common], help="remove a key")
    r.add_argument("name")
    r.set_defaults(keys_func=cmd_keys_revoke)
