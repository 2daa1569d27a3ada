"""The endpoints of `labkit serve` (see `labkit.serve.app` for the list and `labkit.serve.http` for errors).

Each endpoint is a thin call into the `Lab` API or the job queue; its docstring is its description in the
OpenAPI docs. Example: `add_routes(app, server, need)` where `need("render")` is the dependency that checks
the caller's key for that scope.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from labkit.errors import InvalidParameter
from labkit.serve.bodies import (
    AUTH,
    JOB_ID,
    OUTPUT_NAME,
    RUN_ID,
    JobRequest,
    NoteRequest,
    PlanRequest,
    SaveRequest,
    SwitchRequest,
    responses,
)
from labkit.serve.http import ApiError, Caller
from labkit.serve.jobs import DONE, TAG_JOB, TAG_KEY, TAG_STATE

if TYPE_CHECKING:  # pragma: no cover
    from labkit.serve.app import Server

JSON = dict[str, Any]


def _not_found(what: str, value: str, fix: str) -> ApiError:
    return ApiError(404, "NotFound", f"No {what} {value!r}.", fix)


def _run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise _not_found("run", run_id, "a run id is 32 hex digits, as GET /jobs/{id} reports it.")
    return run_id


def add_routes(app: FastAPI, server: Server, need: Callable[[str], Callable[..., Caller]]) -> None:
    lab, jobs = server.lab, server.jobs
    read, render, admin = Depends(need("read")), Depends(need("render")), Depends(need("admin"))

    # -- the machine and its models --------------------------------------------------------------

    @app.get("/health", tags=["server"])
    def health() -> JSON:
        """Whether the server is up: versions, this machine's hardware, the queue. Needs no key."""
        from labkit.tracking import versions

        hw = lab.hardware
        return {"status": "ok", "versions": versions(), "hardware": hw.summary(),
                "queue": {"waiting": jobs.depth(), "running": jobs.running.id if jobs.running else None,
                          "max": jobs.max_queue},
                "auth": "none (loopback, no keys yet)" if server.gate.open() else "bearer"}

    @app.get("/models", tags=["models"], responses=responses(*AUTH))
    def models(caller: Caller = read) -> list[JSON]:
        """The catalogue, each model marked for this machine (its memory strategy; fits, needs offload or too
        large) and for the compliance mode (allow, warn, block, with the reasons)."""
        return [{**dataclasses.asdict(m), "label": m.label} for m in lab.models()]

    @app.get("/models/status", tags=["models"], responses=responses(*AUTH))
    def models_status(caller: Caller = read) -> JSON:
        """What is loaded now (model, strategy, the memory it holds) and the default model of each modality."""
        loaded = []
        for key in lab.pipelines.keys():
            item = lab.pipelines.get(key)
            if item is not None:
                loaded.append({"model": item.ref.id, "family": item.ref.family, "device": item.strategy.device,
                               "strategy": ", ".join(item.strategy.steps()), "gb": round(item.size_bytes / 1e9, 3)})
        return {"loaded": loaded, "default": server.defaults,
                "budget_gb": round(lab.pipelines.budget_bytes / 1e9, 3)}

    @app.post("/models/switch", tags=["models"], responses=responses(*AUTH, 409, 422))
    def switch(body: SwitchRequest, caller: Caller = admin) -> JSON:
        """Load a model and make it the default for its modality; the lab's cache frees others as memory
        requires. 409 while a job is running. Needs the admin scope. Example: {"model": "toyworld"}."""
        entry = lab.catalog.get(body.model) if body.model in lab.catalog else None
        modality = "video" if entry is not None and not set(entry.tasks) & {"txt2img", "img2img"} else "image"
        plan = server.plan({"prompt": "switch", "model": body.model, "modality": modality})
        done, ref = lab.prepare(plan)
        if not jobs.device.acquire(blocking=False):
            running = jobs.running.id if jobs.running else "a job"
            raise ApiError(409, "Conflict", f"Job {running} is running on the loaded model.",
                           "wait until GET /health shows no running job, then switch.")
        try:
            loaded = lab.load_pipeline(ref)
        finally:
            jobs.device.release()
        server.defaults[modality] = body.model
        return {"model": ref.id, "modality": modality, "strategy": ", ".join(loaded.strategy.steps()),
                "default": server.defaults}

    # -- plans and jobs ---------------------------------------------------------------------------

    @app.post("/plans", tags=["plans"], responses=responses(*AUTH, 422))
    def plans(body: PlanRequest, caller: Caller = render) -> JSON:
        """A request in words → a Plan, by the controller asked for (default `rules`; another only when the server
        allows it: 403 otherwise). Nothing renders and nothing loads. Example: {"request": "three small blue
        squares at the top"}.

        The answer is the plan's fields as the controller wrote them: what it leaves to the model is null. Its
        field `resolved` is the same plan as a job would render it, the model's defaults filled in (width,
        height, steps, guidance; frames and fps for a clip): `resolved.seed` stays null when the plan leaves it
        open, since each render draws its own (GET /jobs/{id} shows it). `resolved` is not checked against the
        model's limits or the compliance mode; POST /jobs does that. The answer can be sent back as it is, as
        POST /jobs' `plan` (`resolved` is then ignored). 422 for a model the server does not know."""
        plan = lab.plan(body.request, controller=server.controller(body.controller))
        return {**plan.to_dict(), RESOLVED: _resolved(server, plan).to_dict()}

    @app.post("/jobs", tags=["jobs"], status_code=202, responses=responses(*AUTH, 403, 422, 503))
    def submit(body: JobRequest, caller: Caller = render) -> JSONResponse:
        """Queue a render of a plan (or of a request, planned by the controller first): 202 with the job's
        id and its URL in `Location`. The plan is checked now (422 naming the field, 403 when the compliance
        mode blocks it). Example: {"plan": {"prompt": "a small red circle on the left", "seed": 7}}; the answer
        of POST /plans goes as `plan` as it is (its `resolved` is worked out again, not read)."""
        if (body.plan is None) == (body.request is None):
            raise ApiError(422, "InvalidParameter", "Send either `plan` or `request`, not both and not neither.",
                           'e.g. {"plan": {"prompt": "a small red circle on the left"}}.')
        data = {k: v for k, v in body.plan.items() if k != RESOLVED} if body.plan is not None else None
        plan = (server.plan(data) if data is not None
                else lab.plan(body.request, controller=server.controller(body.controller)))
        server.check(plan)
        return server.submit(plan, caller)

    @app.get("/jobs", tags=["jobs"], responses=responses(*AUTH, 422))
    def list_jobs(limit: int = Query(50, ge=1, le=1000), caller: Caller = read) -> list[JSON]:
        """Jobs, newest first: this server's (queued, running, recent) and, from MLflow, earlier ones
        (after a restart)."""
        out = [_brief(j.to_dict()) for j in jobs.jobs()[:limit]]
        seen = {j["id"] for j in out}
        for run in lab.tracker.search_runs(filter_string=f"tags.`{TAG_JOB}` != ''", max_results=limit):
            job_id = run.data.tags.get(TAG_JOB)
            if job_id and job_id not in seen and len(out) < limit:
                seen.add(job_id)
                out.append({"id": job_id, "key": run.data.tags.get(TAG_KEY), "run_id": run.info.run_id,
                            "state": run.data.tags.get(TAG_STATE) or run.info.status.lower()})
        return out

    @app.get("/jobs/{job_id}", tags=["jobs"], responses=responses(*AUTH, 404))
    def get_job(job_id: str, caller: Caller = read) -> JSON:
        """A job's state (queued, running, finished, failed, cancelled), its step and total steps, and when
        done its run id, output URLs, output terms and full record."""
        job = jobs.get(job_id)
        if job is not None:
            return job.to_dict()
        from labkit.serve.app import job_from_run

        found = job_from_run(lab, job_id) if JOB_ID.match(job_id) else None
        if found is None:
            raise _not_found("job", job_id, "GET /jobs lists the jobs.")
        return found

    @app.delete("/jobs/{job_id}", tags=["jobs"], responses=responses(*AUTH, 404))
    def cancel_job(job_id: str, caller: Caller = render) -> JSON:
        """Cancel a job: a queued one never runs, a running one stops after its current step and its MLflow
        run ends KILLED (the partial output kept). A finished job is left as it was. A key cancels its own
        jobs; an admin key anyone's."""
        job = jobs.get(job_id)
        if job is None:
            raise _not_found("job", job_id, "only jobs of this server's session can be cancelled (GET /jobs).")
        if job.key != caller.name and not caller.allows("admin"):
            raise ApiError(403, "Forbidden", f"Job {job_id} belongs to {job.key!r}, not {caller.name!r}.",
                           "cancel your own jobs, or use a key with the admin scope.")
        jobs.cancel(job_id)
        return _brief(job.to_dict())

    @app.get("/jobs/{job_id}/events", tags=["jobs"], responses=responses(*AUTH, 404),
             response_class=StreamingResponse)
    async def job_events(job_id: str, caller: Caller = read) -> StreamingResponse:
        """The job's progress as server-sent events: `state` when it changes, `progress` {step, total} after
        each step, and a last `done` event with the whole job. Ends when the job does."""
        from labkit.serve.app import sse

        if jobs.get(job_id) is None:
            raise _not_found("job", job_id, "GET /jobs lists the jobs.")

        async def stream():
            version, state = -1, None
            while True:
                job = await asyncio.to_thread(jobs.wait, job_id, version, 15.0)
                if job is None:
                    return
                if job.version == version:
                    yield ": still here\n\n"  # keeps proxies from closing an idle stream
                    continue
                version = job.version
                if job.state != state:
                    state = job.state
                    yield sse("state", {"id": job.id, "state": job.state})
                if job.state == "running" and job.total:
                    yield sse("progress", {"step": job.step, "total": job.total})
                if job.state in DONE:
                    yield sse("done", job.to_dict())
                    return

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- outputs and runs --------------------------------------------------------------------------

    @app.get("/outputs/{run_id}/{name}", tags=["runs"], responses=responses(*AUTH, 404),
             response_class=FileResponse)
    def output(run_id: str, name: str, caller: Caller = read) -> FileResponse:
        """An output file of a run (an image, a clip), served only from that run's `outputs/` artifacts."""
        path = _output_path(lab, _run_id(run_id), name)
        return FileResponse(path)

    @app.post("/runs/{run_id}/note", tags=["runs"], responses=responses(*AUTH, 404, 422))
    def note(run_id: str, body: NoteRequest, caller: Caller = render) -> JSON:
        """Add a Markdown note to a run (the MLflow UI shows it). Example: {"markdown": "Sharp at 20 steps."}."""
        _existing_run(lab, _run_id(run_id))
        return lab.note(body.markdown, run_id, replace=body.replace)

    @app.post("/replay/{run_id}", tags=["runs"], status_code=202, responses=responses(*AUTH, 403, 404, 422, 503))
    def replay(run_id: str, caller: Caller = render) -> JSONResponse:
        """Queue a render of a recorded run's plan again (the new run is tagged `labkit.replay_of`); the job
        reports like any other (GET /jobs/{id})."""
        from labkit.replay import stored_plan

        _existing_run(lab, _run_id(run_id))
        plan = stored_plan(lab, run_id)
        server.check(plan)
        return server.submit(plan, caller, tags={"labkit.replay_of": run_id})

    @app.post("/experiment/save", tags=["runs"], responses=responses(*AUTH, 404, 422))
    def save(body: SaveRequest, caller: Caller = render) -> JSON:
        """Keep a run or a set of runs under a name, with a note and tags: each run gets the tags, the tag
        `labkit.saved` (the name) and the note; the experiment lists the entry (GET /experiment/list)."""
        import json

        for run_id in body.run_ids:
            _existing_run(lab, _run_id(run_id))
        client = lab.tracker.client
        for run_id in body.run_ids:
            for k, v in {**body.tags, "labkit.saved": body.name}.items():
                client.set_tag(run_id, k, v)
            if body.note.strip():
                lab.note(body.note, run_id)
        entry = {"name": body.name, "run_ids": body.run_ids, "note": body.note, "tags": body.tags,
                 "by": caller.name, "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        client.set_experiment_tag(lab.tracker.experiment_id(), f"labkit.saved.{body.name}", json.dumps(entry))
        return entry

    @app.get("/experiment/list", tags=["runs"], responses=responses(*AUTH, 422))
    def experiments(latest: int = Query(5, ge=0, le=100), caller: Caller = read) -> list[JSON]:
        """The store's experiments: run counts, the latest runs, and the entries saved with
        POST /experiment/save."""
        import json

        client = lab.tracker.client
        out = []
        for exp in client.search_experiments():
            runs = client.search_runs([exp.experiment_id], max_results=1000, order_by=["attributes.start_time DESC"])
            saved = []
            for k, v in exp.tags.items():
                if k.startswith("labkit.saved."):
                    try:
                        saved.append(json.loads(v))
                    except ValueError:
                        continue
            out.append({"name": exp.name, "id": exp.experiment_id, "runs": len(runs),
                        "latest": [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status}
                                   for r in runs[:latest]], "saved": saved})
        return out


#: The field of POST /plans' answer that holds the plan as it would render.
RESOLVED = "resolved"


def _resolved(server: Server, plan: Any) -> Any:
    """`plan` as a job would render it: the server's default model for an open one (as `Server.plan` fills it),
    the model's defaults in every open field (`Lab.complete`, which loads nothing), the seed left open. A model
    that names a path on the server is refused first, as POST /jobs refuses it: the caller picks the controller,
    and what a path resolves to must not tell them what is on this machine."""
    from labkit.serve.app import _no_path

    _no_path("model", plan.model)
    if plan.model is None:
        plan = plan.replace(model=server.defaults[plan.modality])
    done = server.lab.complete(plan, validate=False)
    return done if plan.seed is not None else done.replace(seed=None)


def _brief(job: JSON) -> JSON:
    return {k: v for k, v in job.items() if k != "record"}


def _existing_run(lab: Any, run_id: str) -> Any:
    try:
        return lab.tracker.client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own errors for an unknown id
        raise _not_found("run", run_id, "copy the run id from GET /jobs/{id} or the MLflow UI.") from None


def _output_path(lab: Any, run_id: str, name: str) -> Path:
    """The file `name` in the run's `outputs/` artifacts, or 404: no other folder, no link, nothing above it."""
    fix = "GET /jobs/{id} lists a job's output URLs."
    if not OUTPUT_NAME.match(name):
        raise _not_found("output", name, fix)
    run = _existing_run(lab, run_id)
    from urllib.parse import unquote, urlparse

    parsed = urlparse(run.info.artifact_uri or "")
    if parsed.scheme not in ("file", ""):
        return _download(lab, run_id, name)
    folder = Path(unquote(parsed.path)) / "outputs"
    path = folder / name
    try:
        real_folder = folder.resolve(strict=True)
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _not_found("output", name, fix) from None
    if path.is_symlink() or real.parent != real_folder or not real.is_file():
        raise _not_found("output", name, fix)
    return real


def _download(lab: Any, run_id: str, name: str) -> Path:
    """An output of a run whose artifacts live on a tracking server: the project's local copy (the server's own
    renders put it there; others are downloaded once)."""
    try:
        path = lab.tracker.local_artifacts(run_id, f"outputs/{name}")
        if path is None or not path.is_file():
            raise InvalidParameter(f"No output {name!r}.", value=name)
        return path
    except Exception:  # noqa: BLE001
        raise _not_found("output", name, "GET /jobs/{id} lists a job's output URLs.") from None
