"""`labkit serve` as a client meets it: a real server in a subprocess, real HTTP, the toy model rendering.

One server for the module (keys `reader`, `renderer`, `boss` with the three scopes, the `open` compliance
mode, limits high enough not to interfere); the rate limit, SIGTERM and restarts have their own servers in
test_serve_lifecycle.py.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.integration.serve_helpers import add_key, env, project, start

PROMPT = "a small red circle on the left"
TOML = """[lab]
compliance_mode = "open"

[serve]
requests_per_minute = 100000
jobs_in_flight = 50
queue = 200
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, _fresh_store_file):
    root = project(tmp_path_factory.mktemp("served") / "project", _fresh_store_file, TOML)
    keys = {name: add_key(root, name, scope) for name, scope in
            [("reader", "read"), ("renderer", "render"), ("boss", "admin")]}
    server = start(root, keys=keys)
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def finished(served):
    """One toy job, finished: (job, client)."""
    with served.client("renderer") as c:
        r = c.post("/jobs", json={"plan": {"prompt": PROMPT, "seed": 11, "steps": 4}})
        assert r.status_code == 202, r.text
        return served.wait_job(c, r.json()["id"])


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _runs(root: Path, filter_string: str = "") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("labkit")
    return client.search_runs([exp.experiment_id], filter_string=filter_string, max_results=1000)


def test_health_needs_no_key_and_says_what_runs(served):
    with served.client() as c:
        h = c.get("/health").json()
    assert h["status"] == "ok" and h["auth"] == "bearer"
    assert h["versions"]["labkit"] and h["versions"]["torch"] and "CPU" in h["hardware"]
    assert h["queue"]["max"] == 200


def test_a_job_gives_the_pixels_and_record_of_labkit_generate(served, finished):
    assert finished["state"] == "finished", finished
    assert finished["key"] == "renderer" and finished["total_steps"] == 4 and finished["step"] == 4
    (out,) = finished["outputs"]
    with served.client("reader") as c:
        r = c.get(out["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    api_pixels = _png(r.content)

    cli = subprocess.run([sys.executable, "-m", "labkit", "generate", PROMPT, "--seed", "11", "--steps", "4",
                          "--json", "--root", str(served.root)], capture_output=True, text=True, timeout=300,
                         env=env(served.root))
    assert cli.returncode == 0, cli.stderr
    made = json.loads(cli.stdout)
    png = next(Path(f) for f in made["files"] if f.endswith(".png"))
    assert np.array_equal(api_pixels, _png(png.read_bytes()))

    from labkit.outputs import read_png_record

    cli_record, api_record = read_png_record(png), finished["record"]
    for key in ("plan", "terms", "strategy"):
        assert api_record[key] == cli_record[key], key
    assert api_record["model"]["hash"] == cli_record["model"]["hash"]
    assert api_record["provenance"]["terms"] == cli_record["provenance"]["terms"]
    assert finished["terms"] == cli_record["terms"]
    # the job is an MLflow run like the CLI's, tagged with its job and key
    (run,) = _runs(served.root, f"tags.`labkit.serve.job` = '{finished['id']}'")
    assert run.info.status == "FINISHED" and run.info.run_id == finished["run_id"]
    assert run.data.tags["labkit.serve.key"] == "renderer" and run.data.tags["labkit.serve.state"] == "finished"


def test_progress_arrives_as_server_sent_events(served):
    with served.client("renderer") as c:
        # Events are the job's state when the stream wakes, so a stream that wakes late skips steps (and may
        # skip "running" for a job of a few steps): enough steps that it sees some, and the last one in "done".
        job = c.post("/jobs", json={"plan": {"prompt": "a large blue square at the top", "seed": 2, "steps": 40}})
        events, data = [], []
        with c.stream("GET", f"/jobs/{job.json()['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                elif line.startswith("data: "):
                    data.append(json.loads(line[6:]))
    assert events[-1] == "done" and data[-1]["state"] == "finished" and data[-1]["outputs"]
    assert data[-1]["step"] == data[-1]["total_steps"] == 40
    steps = [d["step"] for e, d in zip(events, data, strict=True) if e == "progress"]
    assert steps and steps == sorted(steps) and set(steps) <= set(range(41))
    assert all(d["total"] == 40 for e, d in zip(events, data, strict=True) if e == "progress")
    assert "running" in [d.get("state") for e, d in zip(events, data, strict=True) if e == "state"]


def test_a_request_in_words_is_planned_then_rendered(served):
    with served.client("renderer") as c:
        plan = c.post("/plans", json={"request": "a small green triangle at the bottom"})
        assert plan.status_code == 200 and plan.json()["model"] == "toyworld"
        job = c.post("/jobs", json={"request": "a small green triangle at the bottom"})
        assert job.status_code == 202 and job.headers["location"] == f"/jobs/{job.json()['id']}"
        done = served.wait_job(c, job.json()["id"])
    assert done["state"] == "finished" and done["plan"]["controller"]["name"] == "rules"


def test_a_plan_says_what_it_would_render_and_goes_back_as_a_job_as_it_is(served):
    """POST /plans left the model's defaults as nulls: a client could not see the size or steps a job would
    render with before submitting it. `resolved` is the plan as it renders; the plan's own fields are unchanged."""
    with served.client("renderer") as c:
        r = c.post("/plans", json={"request": "a small blue square at the bottom"})
        assert r.status_code == 200, r.text
        plan = r.json()
        resolved = plan.pop("resolved")
        assert plan["width"] is None and plan["height"] is None and plan["steps"] is None and plan["seed"] is None
        assert plan["model"] == "toyworld" and plan["controller"]["name"] == "rules"
        # toyworld's catalogue defaults, and what the controller chose kept as it chose it
        assert (resolved["width"], resolved["height"], resolved["steps"], resolved["guidance"]) == (64, 64, 20, 4.0)
        assert resolved["seed"] is None  # each render draws one: a seed shown here would not be the job's
        assert {k: v for k, v in resolved.items() if plan[k] is not None} == {k: v for k, v in plan.items()
                                                                              if v is not None}
        job = c.post("/jobs", json={"plan": r.json()})  # the answer sent back whole, `resolved` and all
        assert job.status_code == 202, job.text
        done = served.wait_job(c, job.json()["id"])
        spec = c.get("/openapi.json").json()
    assert done["state"] == "finished", done
    rendered = done["record"]["plan"]  # the plan as it rendered (the job's `plan` is the one submitted)
    for field in ("model", "prompt", "width", "height", "steps", "guidance", "count", "modality"):
        assert rendered[field] == resolved[field], field
    assert isinstance(rendered["seed"], int) and done["total_steps"] == 20
    assert "`resolved`" in spec["paths"]["/plans"]["post"]["description"]


def test_a_remote_controller_runs_only_when_the_server_allows_it(served, tmp_path, _fresh_store_file):
    """A caller naming `remote:URL#MODEL` made the server POST the request, with its LLM API key, to that URL: a
    remote controller now runs only when the server's operator allowed it (--controller, [serve] controllers).
    Resolving the plan it answers is where a model the server does not know shows, with the usual error body;
    one that names a path on the server is refused as POST /jobs refuses it, before anything looks there."""
    from tests.integration.test_controller_remote import GOOD, ChatServer

    llm = ChatServer([("answer", {**GOOD, "model": "no-such-model-anywhere"}),
                      ("answer", {**GOOD, "model": str(served.root / "mlruns")})])
    spec = f"remote:{llm.url}#scripted"
    try:
        with served.client("renderer") as c:  # the shared server allows no remote controller
            refused = [c.post("/plans", json={"request": "a red circle", "controller": spec}),
                       c.post("/jobs", json={"request": "a red circle", "controller": spec}),
                       c.post("/plans", json={"request": "a red circle", "controller": "local:/srv/models/llm"})]
        for r in refused:
            assert r.status_code == 403 and r.json()["error"]["type"] == "ControllerNotAllowed", r.text
            assert "it runs 'rules'" in r.json()["error"]["message"] and "--controller" in r.json()["error"]["fix"]
        assert llm.requests == []  # nothing was sent
        root = project(tmp_path / "allowing", _fresh_store_file, TOML)
        key = add_key(root, "renderer", "render")
        own = start(root, "--controller", spec, keys={"renderer": key})
        try:
            with own.client("renderer") as c:
                answers = [c.post("/plans", json={"request": f"a red circle, unknown model {i}", "controller": spec})
                           for i in range(2)]
        finally:
            assert own.stop() == 0, own.output()
    finally:
        llm.close()
    unknown, path = answers
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["type"] == "UnknownModel"
    assert "no-such-model-anywhere" in unknown.json()["error"]["message"] and unknown.json()["error"]["fix"]
    assert path.status_code == 422 and "looks like a path on the server" in path.json()["error"]["message"], path.text
    assert len(llm.requests) == 2  # the LLM's plans, not the rules controller's fallback


@pytest.mark.parametrize("body, status, named", [
    ({"plan": {"prompt": PROMPT, "steps": 9999}}, 422, "steps"),
    ({"plan": {"prompt": PROMPT, "colour": "red"}}, 422, "colour"),
    ({"plan": {"prompt": ""}}, 422, "prompt"),
    ({"plan": {"prompt": PROMPT, "model": "/etc/passwd"}}, 422, "/etc/passwd"),
    ({"plan": {"prompt": PROMPT, "model": "no-such-model-anywhere"}}, 422, "no-such-model-anywhere"),
    ({"plan": {"prompt": PROMPT, "image": "/etc/hostname"}}, 422, "data: URL"),
    ({"plan": {"prompt": PROMPT, "image": "data:image/png;base64,@@@"}}, 422, "base64"),
    ({"plan": {"prompt": "Mickey Mouse on the left"}}, 403, "Mickey Mouse"),
    ({"plan": {"prompt": PROMPT}, "request": "a red circle"}, 422, "either"),
    ({"plan": "a red circle"}, 422, "plan"),
    ({"plan": {"prompt": PROMPT}, "priority": 1}, 422, "priority"),
    ({"plan": {"prompt": PROMPT, "adapters": [5]}}, 422, "adapters[0] must be text or an object"),
    ({"plan": {"prompt": PROMPT, "adapters": ["/etc/lora.safetensors:0.5"]}}, 422, "'/etc/lora.safetensors'"),
    ({"plan": {"prompt": PROMPT, "adapters": ["no-such-adapter:0.5"]}}, 422, "'no-such-adapter'"),
    # a control's map and ControlNet are no paths on the server either
    ({"plan": {"prompt": PROMPT, "controls": [{"kind": "layout", "image": "/etc/hostname"}]}}, 422,
     "controls[0].image must be a data: URL"),
    ({"plan": {"prompt": PROMPT, "controls": [{"kind": "layout", "image": "data:image/png;base64,AAAA",
                                               "model": "/srv/controlnet"}]}}, 422, "'/srv/controlnet'"),
    ({"plan": {"prompt": PROMPT, "controls": [{"kind": "layout", "image": "data:application/json;base64,e30="}]}},
     422, "application/json"),
])
def test_bad_input_is_refused_with_the_field_and_the_fix(served, body, status, named):
    with served.client("renderer") as c:
        before = len(c.get("/jobs", params={"limit": 1000}).json())
        r = c.post("/jobs", json=body)
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert named in err["message"] and err["fix"] and err["type"]
        assert len(c.get("/jobs", params={"limit": 1000}).json()) == before  # nothing queued


def test_bodies_that_are_not_json_or_too_large(served):
    with served.client("renderer") as c:
        r = c.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
        err = r.json()["error"]
        assert r.status_code == 422 and err["message"].startswith("The request body is not JSON: ")
        assert "Content-Type: application/json" in err["fix"] and '{"plan": {"prompt": ' in err["fix"]
        for content, kind, said in [(b'{"plan": {"prompt": "x"}}', "text/plain", "sent as text/plain"),
                                    (b'{"plan": 1', "application/x-www-form-urlencoded", "sent as application/x-www"),
                                    (b"[1, 2]", "application/json", "must be a JSON object, got an array"),
                                    (b"", "application/json", "has no body")]:
            r = c.post("/jobs", content=content, headers={"content-type": kind})
            assert r.status_code == 422 and said in r.json()["error"]["message"], r.text
            assert "Content-Type: application/json" in r.json()["error"]["fix"]
        # a plan's fields sent bare: every one named at once, what the endpoint takes, and where they belong
        r = c.post("/jobs", json={"prompt": PROMPT, "model": "toyworld", "steps": 4})
        err = r.json()["error"]
        assert r.status_code == 422 and "unknown fields 'prompt', 'model', 'steps'" in err["message"], r.text
        assert "takes 'plan', 'request', 'controller'" in err["message"]
        assert 'under "plan", as in {"plan": {"prompt": …, "model": …, "steps": …}}' in err["fix"]
        r = c.post("/plans", json={"request": "", "controller": 5})  # every problem, not the first "and 1 more"
        err = r.json()["error"]
        assert "request: String should have at least 1 character" in err["message"], r.text
        assert "controller: Input should be a valid string" in err["message"] and '"request": ' in err["fix"]
        big = {"plan": {"prompt": PROMPT, "image": "data:image/png;base64," + "A" * (9 * 1024 * 1024)}}
        r = c.post("/jobs", json=big)
        assert r.status_code == 413 and "bytes" in r.json()["error"]["message"]
        assert c.get("/health").status_code == 200  # and the server is still there


def test_a_control_map_travels_inside_the_request_and_steers_the_render(served):
    """The toy layout ControlNet over HTTP: the map as a data: URL, kept in the project like an input image."""
    box = np.zeros((64, 64, 3), np.uint8)
    box[8:40, 24:56] = 255
    buf = io.BytesIO()
    Image.fromarray(box).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    with served.client("renderer") as c:
        r = c.post("/jobs", json={"plan": {"prompt": "a red circle", "model": "toyworld", "steps": 4, "seed": 1,
                                           "controls": [{"kind": "layout", "image": url}]}})
        assert r.status_code == 202, r.text
        done = served.wait_job(c, r.json()["id"])
    assert done["state"] == "finished", done
    (control,) = done["plan"]["controls"]
    kept = Path(control["image"])
    assert kept.parent == served.root / "mlruns" / "inputs" and kept.read_bytes() == buf.getvalue()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{served.root / 'mlruns' / 'mlflow.db'}")
    logged = [a.path for a in client.list_artifacts(done["run_id"], "controls")]
    assert any(p.startswith("controls/control-0-layout") for p in logged), logged  # the render used the map


@pytest.fixture(scope="module")
def lora_run(served, tmp_path_factory) -> str:
    """A toy LoRA trained for two steps into the served project's store: the run id `run:RUN_ID` names."""
    pytest.importorskip("peft")
    import torch

    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.data import write_dataset
    from labkit.training.lora import LoraTrainConfig, train_lora

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("lora")
    write_dataset(tmp / "data", 4, seed=0, split="train", n_objects=(1,), shapes=("hexagon",), licence="CC0-1.0")
    lab = Lab(served.root, experiment="lora", hardware=HardwareProfile.simulated(None))
    result = train_lora(lab, LoraTrainConfig(data=tmp / "data", output_dir=tmp / "out", steps=2, batch_size=2,
                                             rank=2, checkpoint_every=100))
    assert result.status == "finished"
    return result.run_id


def test_adapters_as_labkit_generate_writes_them_or_as_objects(served, lora_run):
    """README: adapters are catalogue ids, hub ids or run:RUN_ID, as `--adapter ID[:WEIGHT]` takes them."""
    ref = f"run:{lora_run}"
    with served.client("renderer") as c:
        jobs = [c.post("/jobs", json={"plan": {"prompt": PROMPT, "seed": 4, "steps": 3, "adapters": adapters}})
                for adapters in ([f"{ref}:0.5"], [{"id": ref, "weight": 0.5}], [ref])]
        assert [j.status_code for j in jobs] == [202] * 3, [j.text for j in jobs]
        done = [served.wait_job(c, j.json()["id"]) for j in jobs]
        pixels = [_png(c.get(d["outputs"][0]["url"]).content) for d in done]
    assert [d["state"] for d in done] == ["finished"] * 3, done
    assert [d["plan"]["adapters"] for d in done] == [[{"id": ref, "weight": 0.5}]] * 2 + [[{"id": ref, "weight": 1.0}]]
    hashes = {d["record"]["model"]["adapters"][0]["hash"] for d in done}  # the run's adapter file, loaded
    assert len(hashes) == 1 and None not in hashes
    assert np.array_equal(pixels[0], pixels[1])  # "ID:0.5" renders what {"id": ID, "weight": 0.5} renders


def test_an_image_inside_the_request_becomes_frame_zero(served):
    from labkit.toyworld.scenes import Obj, Scene, render_pil

    buf = io.BytesIO()
    render_pil(Scene((Obj("square", "blue", "small", "bottom"),))).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    with served.client("renderer") as c:
        job = c.post("/jobs", json={"plan": {"prompt": "a blue square moving up", "modality": "video",
                                             "image": url, "seed": 1}})
        assert job.status_code == 202, job.text
        done = served.wait_job(c, job.json()["id"])
    assert done["state"] == "finished", done
    assert done["plan"]["image"].startswith(str(served.root / "mlruns" / "inputs"))  # kept in the project
    assert {Path(o["name"]).suffix for o in done["outputs"]} >= {".mp4", ".gif"}
    with served.client("reader") as c:
        gif_url = next(o["url"] for o in done["outputs"] if o["name"].endswith(".gif"))
        gif = Image.open(io.BytesIO(c.get(gif_url).content))
        first = np.asarray(gif.convert("RGB"))
    sent = np.asarray(Image.open(buf).convert("RGB"))
    assert np.abs(first.astype(int) - sent.astype(int)).mean() < 8  # frame 0 is the picture sent (GIF palette)


def test_outputs_are_served_from_the_run_only(served, finished):
    run_id = finished["run_id"]
    (out,) = finished["outputs"]
    folder = served.root / "mlruns" / "artifacts"
    outputs = next(folder.rglob(f"{run_id}/artifacts/outputs"))
    (outputs / "link.png").symlink_to(served.root / "mlruns" / "mlflow.db")
    (outputs / "dir.png").mkdir()
    with served.client("reader") as c:
        assert c.get(out["url"]).status_code == 200
        for name in ["link.png", "dir.png", "..%2Fplan.json", "%2E%2E%2F%2E%2E%2F..%2Fmlflow.db", ".hidden",
                     "..", "plan.json", "no-such.png", "%2Fetc%2Fpasswd"]:
            r = c.get(f"/outputs/{run_id}/{name}")
            assert r.status_code == 404, (name, r.status_code)
            assert "mlflow" not in r.text.lower() or "no output" in r.text.lower()
        assert c.get(f"/outputs/{'0' * 32}/{out['name']}").status_code == 404     # another (no) run
        assert c.get(f"/outputs/..%2F{run_id}/{out['name']}").status_code == 404   # not a run id


def _ops(served) -> list[tuple[str, str]]:
    with served.client() as c:
        spec = c.get("/openapi.json").json()
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item]


SCOPE = {("POST", "/models/switch"): "admin"}


def _needs(method: str, path: str) -> str:
    return SCOPE.get((method, path), "read" if method == "GET" else "render")


def _call(c, method: str, path: str):
    path = path.replace("{job_id}", "0123456789abcdef").replace("{run_id}", "0" * 32).replace("{name}", "x.png")
    return c.request(method, path, json={} if method == "POST" else None)


def test_every_endpoint_but_health_needs_a_key_with_the_scope(served):
    ops = _ops(served)
    assert len(ops) >= 15
    rank = {"read": 0, "render": 1, "admin": 2}
    for method, path in ops:
        if path == "/health":
            continue
        for key, scope in [(None, None), ("lk_not-a-key", None), ("reader", "read"), ("renderer", "render"),
                           ("boss", "admin")]:
            with served.client(key) as c:
                r = _call(c, method, path)
            if scope is None:
                assert r.status_code == 401, (method, path, key, r.text)
                assert r.headers["www-authenticate"] == "Bearer" and r.json()["error"]["fix"]
            elif rank[scope] < rank[_needs(method, path)]:
                assert r.status_code == 403, (method, path, key, r.text)
                assert _needs(method, path) in r.json()["error"]["message"]
            else:
                assert r.status_code not in (401, 403), (method, path, key, r.text)


def test_eight_clients_five_jobs_each_all_recorded_once(served):
    ids: list[str] = []
    errors: list[str] = []

    def client(n: int) -> None:
        with served.client("renderer") as c:
            for i in range(5):
                r = c.post("/jobs", json={"plan": {"prompt": PROMPT, "seed": 100 * n + i, "steps": 2}})
                if r.status_code != 202:
                    errors.append(r.text)
                else:
                    ids.append(r.json()["id"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 40
    with served.client("reader") as c:
        states = [served.wait_job(c, i, timeout=600)["state"] for i in ids]
    assert states == ["finished"] * 40
    runs = [r for r in _runs(served.root, "tags.`labkit.serve.job` != ''") if r.data.tags["labkit.serve.job"] in ids]
    assert len(runs) == 40 and {r.data.tags["labkit.serve.job"] for r in runs} == set(ids)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.params["plan.seed"]) for r in runs) == sorted(100 * n + i for n in range(8)
                                                                          for i in range(5))


def test_cancel_a_running_job_keeps_its_run_killed(served):
    with served.client("renderer") as c:
        job = c.post("/jobs", json={"plan": {"prompt": PROMPT, "seed": 5, "steps": 400}}).json()
        for _ in range(600):
            now = c.get(f"/jobs/{job['id']}").json()
            if now["state"] == "running" and now["step"] >= 1:
                break
            threading.Event().wait(0.1)
        assert c.delete(f"/jobs/{job['id']}").status_code == 200
        done = served.wait_job(c, job["id"])
        assert c.delete("/jobs/ffffffffffffffff").status_code == 404
    assert done["state"] == "cancelled" and done["step"] < 400
    (run,) = _runs(served.root, f"tags.`labkit.serve.job` = '{job['id']}'")
    assert run.info.status == "KILLED"


def test_notes_saved_sets_and_replays(served, finished):
    run_id = finished["run_id"]
    with served.client("renderer") as c:
        note = c.post(f"/runs/{run_id}/note", json={"markdown": "Sharp at 4 steps."})
        assert note.status_code == 200 and "Sharp at 4 steps." in note.json()["note"]
        saved = c.post("/experiment/save", json={"name": "keepers", "run_ids": [run_id], "note": "the best one",
                                                 "tags": {"study": "steps"}})
        assert saved.status_code == 200, saved.text
        assert c.post("/experiment/save", json={"name": "x", "run_ids": ["f" * 32]}).status_code == 404
        listed = c.get("/experiment/list").json()
        (exp,) = [e for e in listed if e["name"] == "labkit"]
        assert exp["runs"] >= 1 and any(s["name"] == "keepers" and s["run_ids"] == [run_id] for s in exp["saved"])
        replay = c.post(f"/replay/{run_id}")
        assert replay.status_code == 202
        again = served.wait_job(c, replay.json()["id"])
        original = c.get(finished["outputs"][0]["url"]).content
        copy = c.get(again["outputs"][0]["url"]).content
    assert np.array_equal(_png(original), _png(copy))
    (run,) = _runs(served.root, f"attributes.run_id = '{run_id}'")
    assert run.data.tags["labkit.saved"] == "keepers" and run.data.tags["study"] == "steps"
    assert "the best one" in run.data.tags["mlflow.note.content"]


def test_models_their_status_and_a_switch(served):
    with served.client("boss") as c:
        models = c.get("/models").json()
        toy = next(m for m in models if m["id"] == "toyworld")
        assert toy["fit"] and toy["compliance"] == "allow" and toy["licence"]
        switched = c.post("/models/switch", json={"model": "toyworld"})
        assert switched.status_code == 200, switched.text
        status = c.get("/models/status").json()
        assert status["default"]["image"] == "toyworld"
        assert any(m["model"] == "toyworld" for m in status["loaded"])
        bad = c.post("/models/switch", json={"model": "no-such-model-anywhere"})
        assert bad.status_code == 422 and "no-such-model-anywhere" in bad.json()["error"]["message"]


def test_a_client_that_goes_away_loses_nothing_and_only_owners_cancel(served):
    other = add_key(served.root, "other", "render")
    served.keys["other"] = other
    with served.client("renderer") as c:
        job = c.post("/jobs", json={"plan": {"prompt": PROMPT, "seed": 21, "steps": 3}}).json()
        with c.stream("GET", f"/jobs/{job['id']}/events") as stream:
            next(stream.iter_lines())  # one line, then the client hangs up
    with served.client("other") as c:
        r = c.delete(f"/jobs/{job['id']}")
        assert r.status_code == 403 and "renderer" in r.json()["error"]["message"]
        assert served.wait_job(c, job["id"])["state"] == "finished"


def test_every_endpoint_is_described_and_every_body_has_an_example(served):
    with served.client() as c:
        spec = c.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert len(op.get("description", "")) > 30, (method, path)
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                assert spec["components"]["schemas"][ref].get("examples"), (method, path)
