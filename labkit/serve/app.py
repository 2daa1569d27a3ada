"""The REST API of `labkit serve`: the `Lab` API over HTTP (a view, like the panels), as a FastAPI app.

    app = create_app(Lab(), keys=KeyStore.for_project(root))     # what `labkit serve` runs on uvicorn
    # curl -H "Authorization: Bearer $KEY" -d '{"plan": {"prompt": "a small red circle on the left"}}' \
    #      http://127.0.0.1:8765/jobs        -> 202 {"id": "…", "state": "queued"}, Location: /jobs/…

Endpoints (OpenAPI at /openapi.json, docs at /docs): GET /health; GET /models, GET /models/status,
POST /models/switch; POST /plans; POST /jobs, GET /jobs, GET /jobs/{id}, DELETE /jobs/{id},
GET /jobs/{id}/events (server-sent events); GET /outputs/{run_id}/{name}; POST /runs/{run_id}/note;
POST /replay/{run_id}; POST /experiment/save, GET /experiment/list. Errors and status codes:
`labkit.serve.http`. Renders go through one `JobQueue` (one at a time, first in first out).

What a remote caller may not do that a local one may: name files on the server. An input image, and a
control's image, comes inside the request as a `data:` URL (kept in the project like an upload), models,
adapters and ControlNets are catalogue ids, hub ids or `run:RUN_ID`, never paths; outputs are served from the
run's own `outputs/` folder only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from labkit.errors import InvalidParameter, LabkitError
from labkit.plan import Plan
from labkit.serve.http import MAX_BODY, ApiError, BodyLimit, Caller, Gate, check_limit, from_labkit
from labkit.serve.jobs import DONE, TAG_KEY, TAG_STATE, JobQueue, QueueFull, find_run

if TYPE_CHECKING:  # pragma: no cover
    from labkit.lab import Lab
    from labkit.serve.keys import KeyStore

# -- the app -------------------------------------------------------------------------------------

class Server:
    """What the endpoints share: the lab, its job queue, the gate, the default models set by /models/switch."""

    def __init__(self, lab: Lab, keys: KeyStore, *, queue: int | None = None, per_minute: int | None = None,
                 jobs_in_flight: int | None = None, controllers: Sequence[str] = ()):
        cfg = lab.config
        self.lab = lab
        # None takes the lab's [serve] setting; any other value, 0 included, is checked, never replaced
        queue = check_limit("queue", cfg.serve_queue if queue is None else queue)
        per_minute = check_limit("per_minute", cfg.serve_requests_per_minute if per_minute is None else per_minute)
        jobs_in_flight = check_limit("jobs_in_flight",
                                     cfg.serve_jobs_in_flight if jobs_in_flight is None else jobs_in_flight)
        self.jobs = JobQueue(lab, max_queue=queue)
        self.gate = Gate(keys, per_minute=per_minute, jobs_in_flight=jobs_in_flight)
        self.defaults = {"image": cfg.default_image_model, "video": cfg.default_video_model}
        self.controllers = allowed_controllers([*cfg.serve_controllers, *controllers])

    def controller(self, spec: str) -> str:
        """`spec` when a request may name it: "rules", or one the operator allowed (`[serve] controllers`,
        `labkit serve --controller`). Anything else is refused (403) before it runs: a remote controller makes the
        server POST the request, with its LLM API key, to the URL the caller wrote; a local one loads a model."""
        if spec.strip() not in self.controllers:
            raise ApiError(403, "ControllerNotAllowed", f"This server does not run the controller {spec[:200]!r}; "
                           f"it runs {', '.join(map(repr, self.controllers))}.",
                           "name one of those; the server's operator can allow another with "
                           "`labkit serve --controller SPEC` or [serve] controllers in labkit.toml.")
        return spec.strip()

    def plan(self, data: dict[str, Any]) -> Plan:
        """A plan from a request body, checked as `labkit generate` checks it, plus what only a remote
        caller gets: no paths on this machine, the image inside the request."""
        if "controller" in data or "rationale" in data:
            data = {k: v for k, v in data.items() if k not in ("controller", "rationale")}
        image = data.get("image")
        data = {**data, "image": None} if image is not None else data
        if isinstance(data.get("adapters"), list):
            data = {**data, "adapters": [_adapter(a, i) for i, a in enumerate(data["adapters"])]}
        # a control's image comes inside the request too: checked as a data: URL once the plan is (below)
        controls = data.get("controls") if isinstance(data.get("controls"), list) else []
        maps = [c.get("image") if isinstance(c, dict) else None for c in controls]
        if controls:
            data = {**data, "controls": [{**c, "image": "(in the request)"} if isinstance(c, dict) and "image" in c
                                         else c for c in controls]}
        plan = Plan.from_dict(data)
        for what, ref in [("model", plan.model), *(("adapter", a.id) for a in plan.adapters),
                          *(("controlnet", c.model) for c in plan.controls)]:
            _no_path(what, ref)
        if plan.model is None:
            plan = dataclasses.replace(plan, model=self.defaults[plan.modality])
        if image is not None:
            plan = dataclasses.replace(plan, image=str(self._keep(image, "The plan's image")))
        if plan.controls:
            plan = dataclasses.replace(plan, controls=tuple(dataclasses.replace(
                c, image=str(self._keep(maps[i], f"controls[{i}].image", keypoints=c.kind == "pose")))
                for i, c in enumerate(plan.controls)))
        return plan

    def _keep(self, value: Any, what: str, *, keypoints: bool = False) -> Path:
        """An image (or, with `keypoints`, an OpenPose keypoint JSON) sent inside the request as a data: URL,
        kept in the project; InvalidParameter for anything else, a path above all."""
        types = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp",
                 "image/gif": ".gif", **({"application/json": ".json"} if keypoints else {})}
        fix = "send it inside the request as a data URL: data:image/png;base64,…" + (
            " (pose keypoints: data:application/json;base64,…)" if keypoints else "")
        if not isinstance(value, str) or not value.startswith("data:") or ";base64," not in value:
            raise InvalidParameter(f"{what} must be a data: URL (a path names a file on the server, which a remote "
                                   "caller may not read).", value=str(value)[:100], fix=fix)
        head, _, payload = value.partition(";base64,")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidParameter(f"{what} is not valid base64.", value=head, fix=fix) from e
        suffix = types.get(head.removeprefix("data:").lower())
        if suffix is None:
            raise InvalidParameter(f"The type {head[5:]!r} of {what} is not one labkit reads.", value=head[5:],
                                   fix="send a PNG, JPEG, WebP or GIF" + (" or keypoint JSON." if keypoints else "."))
        return self.lab.keep_input(data, "input" + suffix)

    def check(self, plan: Plan) -> Plan:
        """The plan validated and allowed by the compliance mode (403 when blocked); nothing renders."""
        from labkit.render import check_compliance

        done, ref = self.lab.prepare(plan)
        check_compliance(self.lab, done, ref)
        return done

    def submit(self, plan: Plan, caller: Caller, tags: dict[str, str] | None = None) -> JSONResponse:
        if self.jobs.in_flight(caller.name) >= self.gate.jobs_in_flight:
            raise ApiError(429, "TooManyJobs", f"{caller.name!r} has {self.gate.jobs_in_flight} jobs queued or "
                           "running.", "wait for one to finish, or raise [serve] jobs_in_flight in labkit.toml.",
                           {"Retry-After": "5"})
        try:
            job = self.jobs.submit(plan, caller.name, tags=tags)
        except QueueFull:
            raise ApiError(503, "QueueFull", f"The job queue is full ({self.jobs.max_queue} waiting).",
                           "try again in a little while.", {"Retry-After": "10"}) from None
        url = f"/jobs/{job.id}"
        return JSONResponse({"id": job.id, "state": job.state, "url": url}, status_code=202, headers={"Location": url})


def _adapter(item: Any, i: int) -> Any:
    """A plan's adapter: an object for `Plan.from_dict` to check, or text as `labkit generate --adapter` and
    `Lab.generate(adapters=…)` take it, "ID[:WEIGHT]" (e.g. "run:RUN_ID", "owner/repo:0.8"), as an AdapterRef."""
    from labkit.pipelines.lora import parse_adapter
    from labkit.plan import MAX_PATH_CHARS, check_text, describe

    if isinstance(item, Mapping):
        return item
    if not isinstance(item, str):
        raise InvalidParameter(f"adapters[{i}] must be text or an object, got {describe(item)}.", value=item,
                               fix='write each adapter as "ID", "ID:WEIGHT" or {"id": "ID", "weight": 1.0} (ID: a '
                                   'catalogue id, hub id or run:RUN_ID).')
    check_text(f"adapters[{i}]", item, max_chars=MAX_PATH_CHARS, nonempty=True)
    return parse_adapter(item)


def _no_path(what: str, value: str | None) -> None:
    if value is None or value.startswith("run:"):
        return
    if value.startswith(("/", "~", ".", "\\")) or "\\" in value or ":" in value or value.count("/") > 1:
        raise InvalidParameter(f"The {what} {value!r} looks like a path on the server, which a remote caller "
                               "may not name.", value=value,
                               fix=f"name the {what} by its catalogue id or hub id (add a local folder to the "
                                   f"catalogue as [{what}s.ID] path = … on the server).")
    if Path(value).exists():  # "notebooks/x.safetensors" reads like owner/name, and a path wins when resolving
        raise InvalidParameter(f"The {what} {value!r} names a file or folder in the server's working folder, "
                               "which a remote caller may not name.", value=value,
                               fix=f"name the {what} by a catalogue id or hub id that is not also a path there (the "
                                   f"server's admin can add it to the catalogue as [{what}s.ID] path = …).")


def create_app(lab: Lab, keys: KeyStore, *, queue: int | None = None, per_minute: int | None = None,
               jobs_in_flight: int | None = None, controllers: Sequence[str] = ()) -> FastAPI:
    """The FastAPI app serving `lab` (see the module docstring); its job worker starts with the app. The
    limits default to the lab's `[serve]` settings; `controllers` adds to the ones requests may name ("rules" and
    `[serve] controllers`)."""
    server = Server(lab, keys, queue=queue, per_minute=per_minute, jobs_in_flight=jobs_in_flight,
                    controllers=controllers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.jobs.start()
        try:
            yield
        finally:
            await asyncio.to_thread(server.jobs.shutdown)

    app = FastAPI(title="labkit", version=_version(), lifespan=lifespan,
                  description="The labkit lab over HTTP: plans, render jobs, outputs with their provenance, "
                              "runs in MLflow. Send `Authorization: Bearer KEY` (`labkit serve keys add NAME`).")
    app.state.server = server
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    bearer = Depends(HTTPBearer(auto_error=False, description="an API key from `labkit serve keys add NAME`"))

    def need(scope: str):
        def check(credentials: HTTPAuthorizationCredentials | None = bearer) -> Caller:
            return server.gate.caller(credentials.credentials if credentials else None, scope)
        return check

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(LabkitError)
    async def labkit_error(request: Request, e: LabkitError) -> JSONResponse:
        return await api_error(request, from_labkit(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        not_json = _not_a_json_object(first, request)
        if not_json:
            return await api_error(request, ApiError(
                422, "InvalidParameter", not_json, "send a JSON object with the header Content-Type: application/json "
                f"(curl: -H \"Content-Type: application/json\"), e.g. {_example(request)}; /docs has this "
                "endpoint's fields."))
        return await api_error(request, ApiError(422, "InvalidParameter", *_field_errors(e.errors(), request)))

    from labkit.serve.routes import add_routes

    add_routes(app, server, need)
    return app


def _not_a_json_object(error: dict[str, Any], request: Request) -> str | None:
    """What is wrong with a request body that is not a JSON object at all, from FastAPI's first validation
    error (None: the body is an object and the error is about a field in it)."""
    loc, kind = tuple(error.get("loc", ())), error.get("type")
    if kind == "json_invalid":
        why = (error.get("ctx") or {}).get("error", "it does not decode")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"The request body is not JSON: {why}{at}."
    if loc != ("body",):
        return None
    if kind == "missing":
        return "The request has no body."
    given = error.get("input")
    if isinstance(given, (bytes, bytearray)):
        sent = request.headers.get("content-type") or "no Content-Type"
        return f"The request body was sent as {sent}, which this server does not read as JSON."
    kinds = {list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number",
             type(None): "null"}
    return f"The request body must be a JSON object, got {kinds.get(type(given), type(given).__name__)}."


def allowed_controllers(specs: Sequence[str]) -> tuple[str, ...]:
    """"rules" and each spec in `specs`, checked as the lab would read them (a malformed one is refused when the
    server starts, not when a request names it), without repeats."""
    for spec in specs:
        kind = spec.split(":", 1)[0].strip().lower() if isinstance(spec, str) else ""
        if kind not in ("rules", "local", "remote") or (kind != "rules" and not spec.split(":", 1)[1].strip()):
            raise InvalidParameter(f"The controller {spec!r} the server should allow is not one labkit knows.",
                                   value=spec, fix="allow 'local:<model>' or 'remote:<url>#<model>' (--controller, "
                                                   "[serve] controllers).")
        if kind == "remote":
            from labkit.controller import get_controller

            get_controller(spec)  # its URL and model, checked now (nothing is sent)
    return tuple(dict.fromkeys(["rules", *(s.strip() for s in specs)]))


def _field_errors(errors: Sequence[dict[str, Any]], request: Request) -> tuple[str, str]:
    """(message, fix) for a JSON object with wrong fields: every unknown field named at once with the fields the
    endpoint takes (a Plan's fields sent bare belong under "plan"), then the other problems, three at most."""
    def where(err: dict[str, Any]) -> str:
        return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"

    unknown = [where(err) for err in errors if err.get("type") == "extra_forbidden"]
    others = [f"{where(err)}: {err.get('msg', 'invalid')}" for err in errors if err.get("type") != "extra_forbidden"]
    parts = []
    takes = _takes(request)
    if unknown:
        parts.append(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                     + (f" (this endpoint takes {', '.join(map(repr, takes))})" if takes else ""))
    parts += others[:3] + ([f"and {len(others) - 3} more"] if len(others) > 3 else [])
    fix = f"send a body like {_example(request)}; /docs has this endpoint's fields."
    plan_fields = {f.name for f in dataclasses.fields(Plan)}
    if "plan" in takes and unknown and set(unknown) <= plan_fields:
        wrapped = ", ".join(f"{json.dumps(k)}: …" for k in unknown)
        fix = f'put a plan\'s fields under "plan", as in {{"plan": {{{wrapped}}}}}; e.g. {_example(request)}.'
    return "The request body has " + "; ".join(parts) + ".", fix


def _takes(request: Request) -> list[str]:
    """The top-level fields of the endpoint's body model ([] when it has none)."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    return list(getattr(model, "model_fields", {}))


def _example(request: Request) -> str:
    """The example body of the endpoint asked (the first example of its body's model), as JSON text."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    extra = (getattr(model, "model_config", None) or {}).get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return json.dumps(examples[0]) if examples else "{}"


def _version() -> str:
    from labkit import __version__

    return __version__


# -- what GET /jobs/{id} reads after a restart -----------------------------------------------------

def job_from_run(lab: Lab, job_id: str) -> dict[str, Any] | None:
    """A job this server no longer holds in memory, as its MLflow run recorded it."""
    run_id = find_run(lab, job_id)
    if run_id is None:
        return None
    run = lab.tracker.client.get_run(run_id)
    tags = run.data.tags
    state = tags.get(TAG_STATE) or {"FINISHED": "finished", "FAILED": "failed", "KILLED": "cancelled"}.get(
        run.info.status, "running")
    if state == "running" and run.info.status != "RUNNING":  # the server stopped before it could say
        state = {"FINISHED": "finished", "FAILED": "failed"}.get(run.info.status, "cancelled")
    body: dict[str, Any] = {"id": job_id, "key": tags.get(TAG_KEY), "state": state, "run_id": run_id,
                            "step": None, "total_steps": None,
                            "error": ({"type": tags.get("labkit.error_type", ""), "message": tags["labkit.error"],
                                       "fix": ""} if "labkit.error" in tags else None)}
    if state in DONE:
        names = [Path(f.path).name for f in lab.tracker.client.list_artifacts(run_id, "outputs")]
        body["outputs"] = [{"name": n, "url": f"/outputs/{run_id}/{n}"} for n in names
                           if not n.endswith(".json")]
        body["terms"] = tags.get("labkit.terms.text")
    return body


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


