"""`labkit cloud kaggle push / status / pull` through the real Kaggle client (kaggle 2.x, kagglesdk),
unmodified, in a `labkit` subprocess, against a server on 127.0.0.1 that answers like the Kaggle API.

The seam: `KaggleApi` builds its client for production (https://api.kaggle.com) unless
`KAGGLE_API_ENVIRONMENT=LOCALHOST`, which makes it call `http://localhost/api/v1/<service>/<method>`
(port 80). (`KAGGLE_API_ENVIRONMENT=TEST` → localhost:7777 only applies to a bare `kagglesdk.KaggleClient`;
`KaggleApi` passes its environment explicitly and ignores it.) The client sends every request with
`requests`, which honours `http_proxy`: pointing that at the test server makes it receive each request
in proxy form (`POST http://localhost/api/v1/…`) on a free port, with no code of the client replaced.
The output files it lists are fetched the same way.

The big test is the acceptance run: push 06_lora_training, run what was pushed (papermill, a folder
laid out like /kaggle/working, KAGGLE_KERNEL_RUN_TYPE set), report it complete, pull it, and find the
runs in the local store tagged with the kernel and version they came from."""

from __future__ import annotations

import base64
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from tests.integration.test_cli import labkit
from tests.integration.test_cloud import INSTALL, run_prepared

REPO = Path(__file__).resolve().parents[2]
LORA = REPO / "notebooks" / "06_lora_training.ipynb"
DREAMBOOTH = REPO / "notebooks" / "09_dreambooth.ipynb"
USER, KEY, TOKEN = "alice", "s3cr3t-kaggle-key-0123456789abcdef", "KGAT_0123456789abcdef0123456789abcdef"
KERNELS = "/api/v1/kernels.KernelsApiService/"


class FakeKaggle:
    """The Kaggle API calls labkit makes, answered the way api.kaggle.com answers them (JSON bodies with
    camelCase fields, errors as {"code", "message"}), with every request recorded."""

    def __init__(self):
        self.requests: list[dict] = []  # {"method", "url", "auth", "body"}
        self.saved: list[dict] = []     # SaveKernel bodies, in order (version = index + 1)
        self.status = "COMPLETE"
        self.failure = ""
        self.outputs: Path | None = None  # the folder whose files are the kernel's output
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, data: dict) -> None:
                self._send(code, json.dumps(data).encode())

            def _record(self, body):
                fake.requests.append({"method": self.command, "url": self.path,
                                      "auth": self.headers.get("Authorization"), "body": body})

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization") or ""
                basic = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
                return auth in (basic, f"Bearer {TOKEN}")

            def do_GET(self):  # noqa: N802 - the output files (Kaggle serves them from signed URLs)
                self._record(None)
                path = urlsplit(self.path).path
                if path.startswith("/outputs/") and fake.outputs is not None:
                    f = fake.outputs / unquote(path.removeprefix("/outputs/"))
                    if f.is_file():
                        return self._send(200, f.read_bytes(), "application/octet-stream")
                self._json(404, {"code": 404, "message": "Not found"})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                self._record(body)
                path = urlsplit(self.path).path
                if path == "/api/v1/security.OAuthService/IntrospectToken":
                    ok = body.get("token") == TOKEN
                    return self._json(200, {"active": ok, "username": USER if ok else ""})
                if not self._authorised():
                    return self._json(401, {"code": 401, "message": "Unauthenticated"})
                if path == KERNELS + "SaveKernel":
                    fake.saved.append(body)
                    slug = body["slug"]
                    return self._json(200, {"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}",
                                            "versionNumber": len(fake.saved), "invalidDatasetSources": []})
                kernel = f"{body.get('userName')}/{body.get('kernelSlug')}"
                if not fake.saved or kernel != fake.saved[-1]["slug"]:
                    return self._json(404, {"code": 404, "message": f"Kernel {kernel} not found"})
                if path == KERNELS + "GetKernelSessionStatus":
                    return self._json(200, {"status": fake.status, "failureMessage": fake.failure})
                if path == KERNELS + "ListKernelSessionOutput":
                    files = sorted(p for p in fake.outputs.rglob("*") if p.is_file()) if fake.outputs else []
                    rel = [p.relative_to(fake.outputs).as_posix() for p in files]
                    return self._json(200, {"files": [{"url": f"http://localhost/outputs/{r}", "fileName": r}
                                                      for r in rel], "log": "[kernel log]"})
                self._json(404, {"code": 404, "message": f"no method {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def calls(self, method: str) -> list[dict]:
        return [r for r in self.requests if urlsplit(r["url"]).path.endswith("/" + method)]


@pytest.fixture
def kaggle_server():
    fake = FakeKaggle()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def env(cli_env, kaggle_server, tmp_path):
    """The `labkit` subprocess's environment: the client aimed at the fake server, no credentials yet,
    nothing from this machine's ~/.kaggle."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    e = {k: v for k, v in cli_env.items() if not k.startswith(("KAGGLE_", "COLAB_")) and k.lower() not in
         ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    e.update({"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle"), "XDG_CONFIG_HOME": str(home / ".config"),
              "KAGGLE_API_ENVIRONMENT": "LOCALHOST", "http_proxy": kaggle_server.url,
              "HTTP_PROXY": kaggle_server.url, "no_proxy": "", "NO_PROXY": ""})
    return e


@pytest.mark.notebook
def test_push_run_status_pull_the_lora_notebook_through_the_kaggle_client(env, kaggle_server, project, migrated_store,
                                                                          tmp_path, search_runs):
    from labkit.cloud import JOB_TAG, KERNEL_TAG, KERNEL_VERSION_TAG, PLATFORM_TAG

    env = {**env, "KAGGLE_API_TOKEN": TOKEN}
    params = ["-p", "n_examples=8", "-p", "steps=4", "-p", "batch_size=4", "-p", "validate_every=2",
              "-p", "checkpoint_every=2", "-p", "sampling_steps=2", "-p", "weights=[0.0, 1.0]", "-p", "seeds=[0]",
              "-p", "licence=CC-BY-NC-4.0", "-p", "threads=1"]
    # 1. push: the kernel folder is built and sent by KaggleApi.kernels_push
    out = labkit("cloud", "kaggle", "push", str(LORA), *params, "--internet", "--dataset", "alice/toy-data",
                 "--install", INSTALL, "--json", env=env)
    pushed = json.loads(out.stdout)
    assert pushed["ref"] == "alice/labkit-06-lora-training" and pushed["version"] == 1
    assert pushed["url"] == "https://www.kaggle.com/code/alice/labkit-06-lora-training"
    assert kaggle_server.calls("IntrospectToken")[0]["body"] == {"token": TOKEN}  # the client signed in with it
    (save,) = kaggle_server.calls("SaveKernel")
    assert urlsplit(save["url"]).netloc == "localhost" and save["auth"] == f"Bearer {TOKEN}"
    body = save["body"]
    assert body["slug"] == "alice/labkit-06-lora-training" and body["newTitle"] == "labkit 06 lora training"
    assert (body["language"], body["kernelType"], body["isPrivate"]) == ("python", "notebook", True)
    assert body["enableInternet"] is True and body["enableGpu"] is False
    assert body["datasetDataSources"] == ["alice/toy-data"]
    pushed_book = nbformat.reads(body["text"], as_version=4)  # what Kaggle would run
    nbformat.validate(pushed_book)
    assert "labkit-cloud-setup" in pushed_book.cells[0].metadata["tags"]
    assert "labkit-cloud-export" in pushed_book.cells[-1].metadata["tags"]

    # 2. Kaggle runs it: the pushed notebook, top to bottom, in a folder laid out like /kaggle/working
    source = tmp_path / "kaggle" / "src" / "labkit-06-lora-training.ipynb"
    source.parent.mkdir(parents=True)
    nbformat.write(pushed_book, source)
    working = tmp_path / "kaggle" / "working"
    run, text = run_prepared(source, working, kaggle=True)
    assert run.ok, run.error and run.error.summary()
    assert "on kaggle" in text and "adapter written to" in text
    assert (working / "labkit-runs.zip").is_file() and (working / "mlruns" / "mlflow.db").is_file()

    # 3. status, as Kaggle reports it
    kaggle_server.status = "RUNNING"
    assert labkit("cloud", "kaggle", "status", "alice/labkit-06-lora-training", env=env).stdout.strip() == \
        "alice/labkit-06-lora-training: running"
    kaggle_server.status, kaggle_server.outputs = "COMPLETE", working
    st = json.loads(labkit("cloud", "kaggle", "status", "alice/labkit-06-lora-training", "--json", env=env).stdout)
    assert st == {"ref": "alice/labkit-06-lora-training", "state": "complete", "message": None}

    # 4. pull: KaggleApi.kernels_output lists the output; only labkit's bundle and session file come down
    out = labkit("cloud", "kaggle", "pull", "alice/labkit-06-lora-training", "--json", env=env)
    report = json.loads(out.stdout)
    (listing,) = kaggle_server.calls("ListKernelSessionOutput")
    assert (listing["body"]["userName"], listing["body"]["kernelSlug"]) == ("alice", "labkit-06-lora-training")
    fetched = sorted(urlsplit(r["url"]).path for r in kaggle_server.requests if r["method"] == "GET")
    assert fetched == ["/outputs/labkit-cloud.json", "/outputs/labkit-runs.zip"]
    assert len(report["imported"]) == 3 and report["job"]["state"] == "pulled" and report["job"]["version"] == 1

    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    assert sorted(r.data.tags.get("labkit.job") for r in runs) == ["compare", "render", "train"]
    for r in runs:
        assert r.data.tags[KERNEL_TAG] == "alice/labkit-06-lora-training"
        assert r.data.tags[KERNEL_VERSION_TAG] == "1"
        assert r.data.tags[PLATFORM_TAG] == "kaggle" and r.data.tags["hardware.platform"] == "kaggle"
        assert r.data.tags[JOB_TAG] == pushed["job"]["id"]
    train = next(r for r in runs if r.data.tags.get("labkit.job") == "train")
    assert train.data.params["steps"] == "4"

    jobs = json.loads(labkit("cloud", "jobs", "--json", env=env).stdout)
    assert len(jobs) == 1
    job = jobs[0]
    assert (job["platform"], job["target"], job["state"], job["version"]) == \
        ("kaggle", "alice/labkit-06-lora-training", "pulled", 1)
    assert job["parameters"]["steps"] == 4 and job["parameters"]["weights"] == [0.0, 1.0]
    assert sorted(job["runs"]) == sorted(r.info.run_id for r in runs)

    # pulling again adds nothing
    again = json.loads(labkit("cloud", "kaggle", "pull", "alice/labkit-06-lora-training", "--json", env=env).stdout)
    assert again["imported"] == [] and len(again["skipped"]) == 3

    # no credential went anywhere it should not
    shipped = [*(project / "kaggle").rglob("*"), project / "mlruns" / "cloud-jobs.json", working / "labkit-runs.zip"]
    for path in shipped:
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and KEY.encode() not in data, path
    with zipfile.ZipFile(working / "labkit-runs.zip") as zf:
        for name in zf.namelist():
            assert TOKEN.encode() not in zf.read(name), name
    assert TOKEN not in body["text"]


def test_legacy_key_push_and_a_failed_run_status(env, kaggle_server, project, tmp_path):
    """KAGGLE_USERNAME + KAGGLE_KEY (HTTP basic auth); an ERROR status comes back with its message."""
    from tests.integration.test_cloud import tiny_notebook

    env = {**env, "KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    nb = tiny_notebook(tmp_path / "tiny.ipynb")
    out = labkit("cloud", "kaggle", "push", str(nb), "--gpu", "--internet", "--install", INSTALL, env=env)
    assert "pushed alice/labkit-tiny version 1: https://www.kaggle.com/code/alice/labkit-tiny" in out.stdout
    (save,) = kaggle_server.calls("SaveKernel")
    assert save["auth"] == "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    assert save["body"]["enableGpu"] is True
    assert kaggle_server.calls("IntrospectToken") == []

    kaggle_server.status, kaggle_server.failure = "ERROR", "CUDA out of memory"
    st = labkit("cloud", "kaggle", "status", "labkit-tiny", env=env, check=False)  # a bare slug is the user's
    assert st.returncode == 1 and st.stdout.strip() == "alice/labkit-tiny: error (CUDA out of memory)"
    listing = labkit("cloud", "jobs", env=env).stdout
    assert "kaggle" in listing and " error " in listing and "alice/labkit-tiny v1" in listing


def test_missing_or_refused_credentials_are_clear_errors_not_exits(env, kaggle_server, project, tmp_path):
    from tests.integration.test_cloud import tiny_notebook

    nb = str(tiny_notebook(tmp_path / "tiny.ipynb"))
    none = labkit("cloud", "kaggle", "push", nb, "--internet", "--install", INSTALL, env=env, check=False)
    assert none.returncode == 2 and "Traceback" not in none.stderr
    assert "No usable Kaggle credentials" in none.stderr and "KAGGLE_API_TOKEN" in none.stderr
    assert not (project / "kaggle" / "labkit-tiny").exists()  # nothing built for a push that cannot happen

    refused_token = labkit("cloud", "kaggle", "status", "alice/labkit-tiny",
                           env={**env, "KAGGLE_API_TOKEN": "KGAT_nope"}, check=False)
    assert refused_token.returncode == 2 and "No usable Kaggle credentials" in refused_token.stderr
    assert kaggle_server.calls("IntrospectToken")[-1]["body"] == {"token": "KGAT_nope"}

    wrong_key = labkit("cloud", "kaggle", "push", nb, "--internet", "--install", INSTALL,
                       env={**env, "KAGGLE_USERNAME": USER, "KAGGLE_KEY": "wrong-key-000"}, check=False)
    assert wrong_key.returncode == 2 and "Kaggle refused the push of alice/labkit-tiny: HTTP 401" in wrong_key.stderr
    assert "Traceback" not in wrong_key.stderr
    jobs = json.loads(labkit("cloud", "jobs", "--json", env=env).stdout)
    assert [j["state"] for j in jobs] == ["push failed"]

    unknown = labkit("cloud", "kaggle", "pull", "alice/someone-elses", env={**env, "KAGGLE_USERNAME": USER,
                                                                            "KAGGLE_KEY": KEY}, check=False)
    assert unknown.returncode == 2 and "HTTP 404" in unknown.stderr and "check the kernel ref" in unknown.stderr


@pytest.mark.notebook
def test_the_dreambooth_notebook_pushes_runs_on_kaggle_and_its_runs_come_back(env, kaggle_server, project,
                                                                              migrated_store, tmp_path, search_runs):
    """09_dreambooth as `labkit cloud kaggle push` sends it: the kernel, its parameters, then what was pushed run
    top to bottom in a folder laid out like /kaggle/working (root found from the session, not a parameter), and
    its training and benchmark runs pulled back tagged with the kernel."""
    from labkit.cloud import KERNEL_TAG, PLATFORM_TAG

    env = {**env, "KAGGLE_API_TOKEN": TOKEN}
    tiny = ["steps=4", "batch_size=2", "rank=4", "num_class_images=4", "validate_every=2", "checkpoint_every=2",
            "sampling_steps=2", "eval_seeds=[0]", "class_every=10", "threads=1", "compare_without_prior=False"]
    out = labkit("cloud", "kaggle", "push", str(DREAMBOOTH), *[a for p in tiny for a in ("-p", p)], "--internet",
                 "--install", INSTALL, "--json", env=env)
    pushed = json.loads(out.stdout)
    assert pushed["ref"] == "alice/labkit-09-dreambooth" and pushed["version"] == 1
    (save,) = kaggle_server.calls("SaveKernel")
    body = save["body"]
    assert body["slug"] == "alice/labkit-09-dreambooth" and body["newTitle"] == "labkit 09 dreambooth"
    assert (body["language"], body["kernelType"], body["enableInternet"]) == ("python", "notebook", True)
    pushed_book = nbformat.reads(body["text"], as_version=4)
    nbformat.validate(pushed_book)
    assert "labkit-cloud-setup" in pushed_book.cells[0].metadata["tags"]
    assert "labkit-cloud-export" in pushed_book.cells[-1].metadata["tags"]
    (injected,) = [c for c in pushed_book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    ns: dict = {}
    exec(injected.source, ns)
    assert (ns["steps"], ns["eval_seeds"], ns["compare_without_prior"]) == (4, [0], False)
    assert "root" not in ns  # on Kaggle the session says where the project is

    source = tmp_path / "kaggle" / "src" / "labkit-09-dreambooth.ipynb"
    source.parent.mkdir(parents=True)
    nbformat.write(pushed_book, source)
    working = tmp_path / "kaggle" / "working"
    run, text = run_prepared(source, working, kaggle=True)
    assert run.ok, run.error and run.error.summary()
    assert "on kaggle" in text and f"adapter written to {working.resolve() / 'dreambooth' / 'sks' / 'model'}" in text
    assert "subject fidelity" in text and "drift" in text
    assert (working / "labkit-runs.zip").is_file()

    kaggle_server.status, kaggle_server.outputs = "COMPLETE", working
    report = json.loads(labkit("cloud", "kaggle", "pull", "alice/labkit-09-dreambooth", "--json", env=env).stdout)
    assert report["job"]["state"] == "pulled"
    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    assert sorted(r.data.tags.get("labkit.job") for r in runs) == ["eval-dreambooth", "render", "render", "train"]
    assert all(r.data.tags[KERNEL_TAG] == "alice/labkit-09-dreambooth" and r.data.tags[PLATFORM_TAG] == "kaggle"
               for r in runs)
    (train,) = [r for r in runs if r.data.tags.get("labkit.job") == "train"]
    assert train.data.params["extra.dreambooth.prior_preservation"] == "True" and train.data.params["steps"] == "4"
