"""The HTTP plumbing of `labkit serve`: errors as JSON, API keys, rate limits, the body-size cap.

Every error the API returns has one shape, built from the `LabkitError` that caused it:

    {"error": {"type": "InvalidParameter", "message": "The size 12x12 is …", "fix": "use a size …"}}

Status codes: 401 no or unknown key, 403 a scope the key lacks or a plan the compliance mode blocks, 404 an
unknown job, run or file, 409 a conflict (a model switch while a job runs), 413 a body over `MAX_BODY`, 422 a
bad value (the same checks as `Plan`), 429 a key over its rate or its jobs in flight (with Retry-After), 503
a full queue (with Retry-After) or a store that does not answer.

Example: `raise ApiError(404, "NotFound", "No job 'abc'.", "list jobs with GET /jobs.")`.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from labkit import errors as E
from labkit.serve.keys import SCOPES, ApiKey, KeyStore

#: The largest request body accepted (an input image travels inside it as a data: URL).
MAX_BODY = 8 * 1024 * 1024

#: LabkitError class -> HTTP status (the first match along the class's MRO wins; 400 otherwise).
STATUS_OF: dict[type[E.LabkitError], int] = {
    E.InvalidParameter: 422, E.ConfigError: 422, E.UnknownModel: 422, E.UnknownFamily: 422,
    E.IncompatibleAdapter: 422, E.UnsafeWeights: 422, E.ControllerFailed: 422,
    E.ComplianceViolation: 403, E.ModelNotCached: 409, E.Cancelled: 409, E.CredentialsError: 409,
    E.TrackingError: 503, E.OutOfMemory: 507, E.MissingDependency: 501,
}


class ApiError(Exception):
    """An error response: status, type, message, fix, extra headers."""

    def __init__(self, status: int, type_: str, message: str, fix: str = "",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.fix = status, type_, message, fix
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message, "fix": self.fix}}


#: A server's limits: create_app's keyword -> (what it counts, its [serve] key in labkit.toml, `labkit serve` option).
LIMITS = {"queue": ("jobs that may wait", "queue", "--queue"),
          "per_minute": ("requests a key may make in a minute", "requests_per_minute", None),
          "jobs_in_flight": ("jobs a key may have queued or running", "jobs_in_flight", None)}


def check_limit(name: str, value: Any) -> int:
    """`value` when it is a whole number of at least 1 for the limit `name` (a key of `LIMITS`); else
    `InvalidParameter` naming where the limit is set. Example: `check_limit("queue", 32)`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    what, key, option = LIMITS[name]
    where = f"`labkit serve {option} N`, " if option else ""
    raise E.InvalidParameter(f"The server limit {name} ({what}) must be a whole number of at least 1, got "
                             f"{value!r}.", value=value,
                             fix=f"use 1 or more: {where}create_app(..., {name}=N) or [serve] {key} in labkit.toml.")


def from_labkit(e: E.LabkitError) -> ApiError:
    status = next((STATUS_OF[c] for c in type(e).__mro__ if c in STATUS_OF), 400)
    return ApiError(status, type(e).__name__, e.message, e.fix or "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    """Who is asking: the API key's name and scope (or the local user when the project has no keys)."""

    name: str
    scope: str
    key: ApiKey | None = None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


class Gate:
    """Authentication and rate limits.

    With no key in the project (a server on loopback only: `labkit serve` refuses another host then), every
    request is the local user with the admin scope. Once a key exists, every endpoint but /health and the
    docs needs `Authorization: Bearer KEY`, for as long as the server runs (revoking every key closes it).
    Each caller may make `per_minute` requests a minute (a moving window, the `limits` library) and have
    `jobs_in_flight` jobs queued or running.
    """

    def __init__(self, keys: KeyStore, *, per_minute: int, jobs_in_flight: int):
        from limits import RateLimitItemPerMinute, storage, strategies

        self.keys = keys
        self.per_minute, self.jobs_in_flight = per_minute, jobs_in_flight
        self._rate = RateLimitItemPerMinute(per_minute)
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> bool:
        """Whether the server runs without keys (loopback, local user): only until the project has a key.
        Once one exists the server needs keys for good, even if every key is revoked later."""
        if not self._closed and self.keys.keys():
            self._closed = True
        return not self._closed

    def caller(self, token: str | None, scope: str) -> Caller:
        """The caller for a bearer token, checked for `scope` and the rate limit; ApiError 401/403/429."""
        if self.open():
            caller = Caller("local", "admin")
        elif not token:
            raise ApiError(401, "Unauthorized", "This server needs an API key.",
                           "send `Authorization: Bearer KEY`; `labkit serve keys add NAME` makes one.",
                           {"WWW-Authenticate": "Bearer"})
        else:
            key = self.keys.check(token)
            if key is None:
                raise ApiError(401, "Unauthorized", "The API key is not one this server knows (or it was revoked).",
                               "check the key, or ask for a new one (`labkit serve keys add NAME`).",
                               {"WWW-Authenticate": "Bearer"})
            caller = Caller(key.name, key.scope, key)
        if not caller.allows(scope):
            raise ApiError(403, "Forbidden", f"The key {caller.name!r} has the scope {caller.scope!r}; this needs "
                           f"{scope!r}.", f"use a key with the {scope!r} scope "
                           f"(`labkit serve keys add NAME --scope {scope}`).")
        self.hit(caller.name)
        return caller

    def hit(self, name: str) -> None:
        with self._lock:
            if self._limiter.hit(self._rate, name):
                return
            reset, _ = self._limiter.get_window_stats(self._rate, name)
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(429, "TooManyRequests", f"{name!r} made more than {self.per_minute} requests in a minute.",
                       f"wait {wait} s, or raise [serve] requests_per_minute in labkit.toml.",
                       {"Retry-After": str(wait)})


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before the endpoint reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Callable[[dict], Awaitable[None]]) -> None:
        import json

        body = json.dumps(ApiError(413, "PayloadTooLarge", f"The request body is over {self.limit} bytes.",
                                   "send a smaller image (or none): plans are small.").body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
