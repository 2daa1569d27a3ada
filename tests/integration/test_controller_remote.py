"""The remote controller against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from labkit.controller.plan import Plan, plan_schema
from labkit.controller.remote import RemoteController, llm_schema, parse_answer
from labkit.errors import ControllerFailed, InvalidParameter

GOOD = {"modality": "image", "prompt": "a red circle on the left, watercolor", "negative_prompt": "blurry",
        "model": "toyworld", "width": 64, "height": 64, "steps": 20, "guidance": None, "count": 2,
        "frames": None, "fps": None, "rationale": "one image model on CPU; added the watercolor style"}


class ChatServer:
    """A scripted OpenAI-compatible server: each request pops the next behaviour."""

    def __init__(self, script: list):
        self.script = list(script)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                kind, payload = server.script.pop(0) if server.script else ("answer", GOOD)
                if kind == "sleep":
                    time.sleep(payload)
                    kind, payload = "answer", GOOD
                if kind == "status":
                    self.send_response(payload)
                    self.end_headers()
                    self.wfile.write(b'{"error": "boom"}')
                    return
                content = payload if isinstance(payload, str) else json.dumps(payload)
                out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat():
    servers = []

    def make(*script):
        s = ChatServer(list(script))
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_good_answer_becomes_a_plan_with_the_controller_record(chat):
    server = chat(("answer", GOOD))
    ctrl = RemoteController(server.url, "qwen2.5:3b", api_key="sk-test")
    plan = ctrl.plan("two watercolor pictures of a red circle on the left")
    assert plan.prompt == GOOD["prompt"] and plan.count == 2 and plan.model == "toyworld"
    assert plan.controller.name == "remote" and plan.controller.model == "qwen2.5:3b"
    jsonschema.validate(plan.to_dict(), plan_schema())
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["temperature"] == 0 and req["body"]["response_format"]["type"] == "json_schema"
    assert req["body"]["messages"][-1]["content"] == "two watercolor pictures of a red circle on the left"


def test_server_without_json_schema_support_gets_json_object(chat):
    server = chat(("status", 400), ("answer", "```json\n" + json.dumps(GOOD) + "\n```"))
    plan = RemoteController(server.url, "m").plan("a red circle")
    assert plan.count == 2
    assert [r["body"].get("response_format", {}).get("type") for r in server.requests] == ["json_schema",
                                                                                           "json_object"]


def test_malformed_json_is_a_controller_failure(chat):
    server = chat(("answer", "Sure! Here is your plan: {modality: image"))
    with pytest.raises(ControllerFailed, match="no valid plan"):
        RemoteController(server.url, "m").plan("a red circle")


def test_out_of_bounds_answer_is_a_controller_failure(chat):
    server = chat(("answer", {**GOOD, "count": 10000}))
    with pytest.raises(ControllerFailed, match="count"):
        RemoteController(server.url, "m").plan("ten thousand circles")


def test_500_is_retried_then_succeeds(chat):
    server = chat(("status", 500), ("answer", GOOD))
    plan = RemoteController(server.url, "m", retries=2).plan("a red circle")
    assert plan.count == 2 and len(server.requests) == 2


def test_500_every_time_fails_after_bounded_retries(chat):
    server = chat(*[("status", 500)] * 10)
    with pytest.raises(ControllerFailed, match="No answer"):
        RemoteController(server.url, "m", retries=2).plan("a red circle")
    assert len(server.requests) == 3  # one try and two retries, no more


def test_timeout_fails_within_the_bound(chat):
    server = chat(("sleep", 3), ("sleep", 3), ("sleep", 3))
    with pytest.raises(ControllerFailed, match="timed out|TimeoutError"):
        RemoteController(server.url, "m", timeout=0.3, retries=1).plan("a red circle")


def test_unreachable_server_fails():
    with pytest.raises(ControllerFailed):
        RemoteController("http://127.0.0.1:9/v1", "m", timeout=1, retries=0).plan("a red circle")


def test_spec_parsing():
    c = RemoteController.from_spec("remote:http://127.0.0.1:11434/v1#qwen2.5:3b")
    assert c.base_url == "http://127.0.0.1:11434/v1" and c.model == "qwen2.5:3b"
    with pytest.raises(InvalidParameter, match="needs a URL and a model"):
        RemoteController.from_spec("remote:nowhere")


def test_schemas_agree_with_the_plan_dataclass():
    full = plan_schema()
    jsonschema.Draft202012Validator.check_schema(full)
    assert set(llm_schema()["properties"]) <= set(full["properties"])
    jsonschema.validate(Plan(prompt="x").to_dict(), full)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**Plan(prompt="x").to_dict(), "modality": "audio"}, full)
    assert parse_answer('noise {"prompt": "a"} noise') == {"prompt": "a"}


def test_a_bad_timeout_is_named_whether_passed_or_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABKIT_LLM_TIMEOUT", "thirty")
    with pytest.raises(InvalidParameter, match="LABKIT_LLM_TIMEOUT='thirty'"):
        RemoteController("http://127.0.0.1:9/v1", "m")
    assert RemoteController("http://127.0.0.1:9/v1", "m", timeout=5).timeout == 5.0  # an argument wins
    monkeypatch.setenv("LABKIT_LLM_TIMEOUT", "12.5")
    assert RemoteController("http://127.0.0.1:9/v1", "m").timeout == 12.5
    for bad in (0, -1, "soon", float("nan"), True):
        with pytest.raises(InvalidParameter, match="timeout="):
            RemoteController("http://127.0.0.1:9/v1", "m", timeout=bad)
