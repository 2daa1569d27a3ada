"""The request and error bodies of the REST API (pydantic models: they make the OpenAPI schema), and the
documented error responses of each endpoint.

Example: `JobRequest(plan={"prompt": "a small red circle on the left"})`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from labkit.plan import MAX_PROMPT_CHARS

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
JOB_ID = re.compile(r"^[0-9a-f]{16}$")
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
PLAN_EXAMPLE = {"prompt": "a small red circle on the left", "model": "toyworld", "steps": 20, "seed": 7}


# -- bodies --------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    type: str
    message: str
    fix: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"request": "three small blue squares at the top", "controller": "rules"}]})
    request: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="what to render, in words")
    controller: str = Field("rules", max_length=2000, description="rules, or a local:MODEL or remote:URL#MODEL "
                            "the server allows (labkit serve --controller, [serve] controllers)")


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"plan": PLAN_EXAMPLE}, {"request": "a blue square moving up"}]})
    plan: dict[str, Any] | None = Field(None, description="a Plan's fields (as POST /plans returns them); "
                                        "`image` and each control's `image` as a data: URL; each of `adapters` "
                                        "as \"ID\", \"ID:WEIGHT\" or {\"id\": \"ID\", \"weight\": 1.0} "
                                        "(a catalogue id, hub id or run:RUN_ID)")
    request: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS,
                                description="words for the controller, instead of a plan")
    controller: str = Field("rules", max_length=2000, description="as in POST /plans: rules, or one the server "
                            "allows")


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model": "toyworld"}]})
    model: str = Field(min_length=1, max_length=4096, description="a catalogue id or hub id")


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"markdown": "Sharp at 20 steps."}]})
    markdown: str = Field(min_length=1, max_length=100_000)
    replace: bool = False


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "keepers", "run_ids": ["0123456789abcdef0123456789abcdef"], "note": "best seeds",
         "tags": {"study": "steps"}}]})
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    run_ids: list[str] = Field(min_length=1, max_length=1000)
    note: str = Field("", max_length=100_000)
    tags: dict[str, str] = Field(default_factory=dict, max_length=50)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody, "description": WHY[c]} for c in codes}


WHY = {401: "no key, or one this server does not know",
       403: "the key's scope does not allow it, the compliance mode blocks the plan, or the server does not run "
            "the controller named",
       404: "no such job, run or file", 409: "a conflict with a running job", 413: "the body is too large",
       422: "a bad value: the message names it and the fix",
       429: "too many requests, or too many jobs in flight, for this key", 503: "the queue is full"}
AUTH = (401, 403, 429)


