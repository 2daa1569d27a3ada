"""`labkit serve`: the lab over HTTP for a group sharing one GPU box — a REST API with render jobs, API keys
and rate limits (a view over the `Lab` API, like the panels; nothing new underneath).

    labkit serve keys add alice --scope render        # prints the key once
    labkit serve --port 8765                          # loopback; --host 0.0.0.0 needs a key to exist
    curl -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
         -d '{"plan": {"prompt": "a small red circle on the left"}}' http://127.0.0.1:8765/jobs

Modules: `app` (the FastAPI app and what a remote caller may send), `routes` (the endpoints), `bodies`
(request and error schemas), `http` (errors, keys at the door, rate limits, body cap), `jobs` (the render
queue), `keys` (the key store). FastAPI, uvicorn and `limits` are imported only when a server is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.serve.keys import KeyStore


def create_app(lab: Lab, keys: KeyStore | None = None, **limits: int | None) -> Any:
    """The FastAPI app for `lab` (keys: the project's key store by default; `limits`: queue, per_minute,
    jobs_in_flight, overriding the lab's `[serve]` settings)."""
    from labkit.serve.app import create_app as make
    from labkit.serve.keys import KeyStore

    return make(lab, keys or KeyStore.for_project(lab.config.root), **limits)
