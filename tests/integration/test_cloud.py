"""Colab and Kaggle without the network: the kernel folder and the Colab notebook labkit builds, the
session set-up inside them, and a cloud run simulated locally (papermill in a folder laid out like
/kaggle/working, or a Drive folder) whose bundle `pull` brings into the local store, tagged.

The Kaggle client against a server that answers like the Kaggle API is in test_cloud_kaggle.py."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import nbformat
import pytest

from labkit.errors import LabkitError
from tests.integration.test_cli import labkit

REPO = Path(__file__).resolve().parents[2]
LORA = REPO / "notebooks" / "06_lora_training.ipynb"
DREAMBOOTH = REPO / "notebooks" / "09_dreambooth.ipynb"
INSTALL = "git+https://github.com/example/labkit@0123456789abcdef"
SECRET_KEY = "s3cr3t-kaggle-key-0123456789abcdef"
SECRET_TOKEN = "KGAT_0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def kaggle_sandbox(tmp_path, monkeypatch):
    """No real Kaggle credentials or config, and the client (when imported here) aimed at localhost."""
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE",
                "COLAB_RELEASE_TAG", "COLAB_GPU", "LABKIT_CLOUD_WORKDIR"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "kaggle-config"
    cfg.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("LABKIT_ROOT", "")  # restored after tests that call runtime.start(), which sets it
    monkeypatch.delenv("LABKIT_ROOT")
    return cfg


def tiny_notebook(path: Path, *, kernelspec: bool = True) -> Path:
    """A notebook that makes one MLflow run through the Lab (params, a metric, an artifact), then raises
    when told to; without `kernelspec` metadata, as a script or jupytext writes one."""
    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1\nfail = False\nroot = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import labkit\n\nlab = labkit.Lab(root)\n"
            "with lab.run('tiny', params={'x': x}, tags={'labkit.job': 'tiny'}) as run:\n"
            "    run.log_metrics({'value': 10 * x})\n    run.log_text('hello', 'notes/hello.txt')\n"
            "print('store:', lab.config.tracking_uri)"),
        nbformat.v4.new_code_cell("if fail:\n    raise ValueError('told to fail')"),
    ]
    nbformat.write(nb, path)
    return path


def cells(path: Path, tag: str) -> list:
    book = nbformat.read(path, as_version=4)
    return [c for c in book.cells if tag in c.metadata.get("tags", [])]


def run_prepared(notebook: Path, workdir: Path, *, kaggle: bool, extra_env: dict | None = None):
    """Execute a prepared notebook the way the cloud would: top to bottom, in its working folder."""
    from labkit.notebooks import execute

    workdir.mkdir(parents=True, exist_ok=True)
    env = {"LABKIT_CLOUD_WORKDIR": str(workdir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    if kaggle:
        env["KAGGLE_KERNEL_RUN_TYPE"] = "Batch"  # what Kaggle sets in a kernel run
    out = execute(notebook, workdir.parent / f"{notebook.stem}.out.ipynb", {}, cwd=workdir, env=env, timeout=600)
    book = nbformat.read(out.output, as_version=4)
    text = "\n".join(o.get("text", "") for c in book.cells for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")
    return out, text


# -- the Kaggle kernel folder -------------------------------------------------------------------


def test_kaggle_folder_for_the_lora_notebook_has_metadata_parameters_cells_and_no_secret(project, monkeypatch,
                                                                                         offline):
    from labkit.cloud.jobs import JobList
    from labkit.cloud.kaggle import push
    from labkit.cloud.prepare import EXPORT_TAG, SETUP_TAG

    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET_TOKEN)
    params = {"steps": 2000, "concept": "hexagon", "weights": [0.0, 1.0], "sampling_steps": None}
    pushed = push(project, str(LORA), params, dry_run=True, gpu=True, internet=True, datasets=["alice/toy-data"],
                  install=INSTALL)
    kernel = pushed.kernel
    assert pushed.version is None  # a dry run pushes nothing
    assert kernel.folder == project / "kaggle" / "labkit-06-lora-training"
    assert sorted(p.name for p in kernel.folder.iterdir()) == ["kernel-metadata.json", "labkit-06-lora-training.ipynb"]
    meta = json.loads(kernel.metadata_file.read_text())
    assert meta["id"] == "alice/labkit-06-lora-training" and meta["title"] == "labkit 06 lora training"
    assert (kernel.folder / meta["code_file"]).is_file()
    assert (meta["language"], meta["kernel_type"]) == ("python", "notebook")
    assert meta["enable_gpu"] is True and meta["enable_internet"] is True and meta["is_private"] is True
    assert meta["dataset_sources"] == ["alice/toy-data"]

    book = nbformat.read(kernel.notebook, as_version=4)
    nbformat.validate(book)
    assert all(c.outputs == [] and c.execution_count is None for c in book.cells if c.cell_type == "code")
    assert SETUP_TAG in book.cells[0].metadata["tags"] and EXPORT_TAG in book.cells[-1].metadata["tags"]
    setup = book.cells[0].source
    assert f"LABKIT_INSTALL = {INSTALL!r}" in setup and "pip" in setup and "start(" in setup
    assert "KAGGLE_KERNEL_RUN_TYPE" in setup  # installs only in the cloud
    assert book.cells[-1].source.strip().endswith("labkit_cloud.export()")
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    ns: dict = {}
    exec(injected[0].source, ns)  # the injected cell sets exactly the parameters given
    assert {k: ns[k] for k in params} == params
    assert str(project) not in json.dumps(book.metadata)  # no local paths travel

    uploaded = [*kernel.folder.rglob("*")]
    for path in [*uploaded, JobList.for_root(project).path]:
        if path.is_file():
            data = path.read_bytes()
            assert SECRET_KEY.encode() not in data and SECRET_TOKEN.encode() not in data, path

    job = JobList.for_root(project).find(kernel.job.id)
    assert (job.state, job.target, job.parameters, job.gpu) == ("built", "alice/labkit-06-lora-training", params, True)


def test_kaggle_folder_for_the_dreambooth_notebook_on_a_gpu_with_the_users_subject(project, monkeypatch, offline):
    """09_dreambooth as a researcher sends it to a Kaggle GPU: a real base, their subject's folder as an attached
    dataset, their identifier and class prompts."""
    from labkit.cloud.kaggle import push
    from labkit.cloud.prepare import EXPORT_TAG, SETUP_TAG

    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    params = {"base": "sd15", "data": "/kaggle/input/my-dog", "instance_prompt": "a photo of sks dog",
              "class_prompt": "a photo of a dog", "num_class_images": 200, "steps": 800}
    kernel = push(project, str(DREAMBOOTH), params, dry_run=True, gpu=True, internet=True,
                  datasets=["alice/my-dog"], install=INSTALL).kernel
    meta = json.loads(kernel.metadata_file.read_text())
    assert meta["id"] == "alice/labkit-09-dreambooth" and meta["enable_gpu"] is True
    assert meta["dataset_sources"] == ["alice/my-dog"] and (kernel.folder / meta["code_file"]).is_file()
    book = nbformat.read(kernel.notebook, as_version=4)
    nbformat.validate(book)
    assert SETUP_TAG in book.cells[0].metadata["tags"] and EXPORT_TAG in book.cells[-1].metadata["tags"]
    assert all(c.outputs == [] and c.execution_count is None for c in book.cells if c.cell_type == "code")
    (injected,) = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    ns: dict = {}
    exec(injected.source, ns)
    assert {k: ns[k] for k in params} == params
    assert SECRET_KEY.encode() not in kernel.notebook.read_bytes()


def test_a_parameter_carrying_a_credential_is_refused_and_nothing_is_left(project, monkeypatch):
    from labkit.cloud import CloudError
    from labkit.cloud.kaggle import push

    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    with pytest.raises(CloudError, match="contains a Kaggle credential"):
        push(project, str(LORA), {"concept": SECRET_KEY}, dry_run=True, internet=True, install=INSTALL)
    assert not (project / "kaggle" / "labkit-06-lora-training").exists()


@pytest.mark.parametrize(("params", "build", "match"), [
    ({"stepz": 3}, {}, r"has no parameter\(s\) stepz.*steps"),
    ({"root": "/tmp"}, {}, "root cannot be set for a cloud run"),
    ({}, {"slug": "Bad_Slug"}, "'Bad_Slug' is not a usable Kaggle kernel slug"),
    ({}, {"slug": "labkit-lora", "title": "Something else"}, "does not resolve to the slug"),
    ({}, {"internet": False}, "needs the internet"),
    ({}, {"datasets": ["no-owner"]}, "'no-owner' is not a Kaggle dataset reference"),
    ({}, {"owner": "a/b"}, "'a/b' is not a Kaggle username"),
])
def test_bad_kaggle_builds_name_the_value_and_the_fix(project, params, build, match):
    from labkit.cloud.kaggle import build_kernel

    kw = {"owner": "alice", "internet": True, "install": INSTALL, **build}
    with pytest.raises(LabkitError, match=match) as err:
        build_kernel(project, str(LORA), params, **kw)
    assert err.value.fix
    assert not (project / "kaggle").exists()


def test_cli_arguments_are_checked_before_any_work(cli_env, project):
    bad = labkit("cloud", "kaggle", "push", str(LORA), "-p", "steps", "--dry-run", "--owner", "alice",
                 env=cli_env, check=False)
    assert bad.returncode == 2 and "'steps' is not NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr
    missing = labkit("cloud", "colab", "build", "no_such_notebook", "--install", INSTALL, env=cli_env, check=False)
    assert missing.returncode == 2 and "There is no notebook 'no_such_notebook'" in missing.stderr
    assert "there is none in" in missing.stderr  # the project has no notebooks/ to suggest from
    # a dry run without any Kaggle username to build for
    anon = labkit("cloud", "kaggle", "push", str(LORA), "--dry-run", "--internet", "--install", INSTALL,
                  env={**cli_env, "KAGGLE_CONFIG_DIR": str(project / "no-kaggle")}, check=False)
    assert anon.returncode == 2 and "pass --owner USERNAME" in anon.stderr


def test_parameters_read_like_papermill_plus_lists():
    from labkit.cloud.prepare import parse_parameters

    got = parse_parameters(["steps=4", "lr=2e-3", "gpu=True", "data=None", "concept=hexagon", "weights=[0.0, 1.0]",
                            "name=a=b", "mode={a: 1}"])
    assert got == {"steps": 4, "lr": 0.002, "gpu": True, "data": None, "concept": "hexagon", "weights": [0.0, 1.0],
                   "name": "a=b", "mode": {"a": 1}}
    with pytest.raises(LabkitError, match="does not parse"):
        parse_parameters(["weights=[0.0, 1.0"])


def test_a_notebook_without_kernel_metadata_builds_for_kaggle_with_its_parameters(project, tmp_path):
    """papermill refuses to parameterise a notebook with no kernelspec unless told the kernel; the pushed copy
    names the kernel it runs on."""
    from labkit.cloud.kaggle import build_kernel

    source = tiny_notebook(tmp_path / "bare.ipynb", kernelspec=False)
    kernel = build_kernel(project, str(source), {"x": 3}, owner="alice", internet=True, install=INSTALL)
    book = nbformat.read(kernel.notebook, as_version=4)
    assert book.metadata["kernelspec"]["name"] == "python3"
    assert any("x = 3" in c.source for c in book.cells if "injected-parameters" in c.metadata.get("tags", []))


def test_default_install_is_labkits_github_repository_at_its_commit(tmp_path, monkeypatch):
    import labkit
    from labkit.cloud import CloudError
    from labkit.cloud.prepare import default_install

    plain = tmp_path / "plain"
    (plain / "labkit").mkdir(parents=True)
    (plain / "pyproject.toml").write_text("")
    monkeypatch.setattr(labkit, "__file__", str(plain / "labkit" / "__init__.py"))
    with pytest.raises(CloudError, match="not a git checkout with a GitHub remote") as err:
        default_install()
    assert "--install" in err.value.fix

    repo = tmp_path / "repo"
    (repo / "py" / "labkit").mkdir(parents=True)
    (repo / "py" / "pyproject.toml").write_text("")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "remote", "add", "origin", "https://github.com/acme/labkit.git")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "x")
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(labkit, "__file__", str(repo / "py" / "labkit" / "__init__.py"))
    assert default_install() == f"git+https://github.com/acme/labkit@{sha}#subdirectory=py"


# -- a Kaggle run simulated locally -------------------------------------------------------------


@pytest.mark.notebook
def test_simulated_kaggle_run_then_pull_from_its_output_tags_the_runs(project, migrated_store, tmp_path,
                                                                      search_runs):
    from labkit.cloud import BUNDLE_NAME, JOB_TAG, KERNEL_TAG, KERNEL_VERSION_TAG, PLATFORM_TAG, SESSION_FILE
    from labkit.cloud.jobs import JobList
    from labkit.cloud.kaggle import build_kernel, pull

    source = tiny_notebook(tmp_path / "tiny.ipynb")
    kernel = build_kernel(project, str(source), {"x": 3}, owner="alice", internet=True, install=INSTALL)
    working = tmp_path / "kaggle" / "working"
    out, text = run_prepared(kernel.notebook, working, kaggle=True)
    assert out.ok, out.error and out.error.summary()
    assert "installing labkit" not in text  # labkit is importable here, so the install cell does nothing
    assert f"labkit cloud: job {kernel.job.id} (tiny) on kaggle" in text
    assert f"store: sqlite:///{working.resolve()}/mlruns/mlflow.db" in text  # the store moved to the working folder
    assert (working / BUNDLE_NAME).is_file() and (working / SESSION_FILE).is_file()
    session = json.loads((working / SESSION_FILE).read_text())
    assert session["state"] == "finished" and session["runs"] == 1 and session["platform"] == "kaggle"
    assert not list((project / "mlruns").glob("artifacts/*"))  # nothing went to the local store

    result = pull(project, "alice/labkit-tiny", source=working)
    assert len(result.summary.imported) == 1
    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["x"] == "3" and run.data.metrics["value"] == 30.0
    assert run.data.tags[PLATFORM_TAG] == "kaggle" and run.data.tags["hardware.platform"] == "kaggle"
    assert run.data.tags[KERNEL_TAG] == "alice/labkit-tiny" and run.data.tags[KERNEL_VERSION_TAG] == "latest"
    assert run.data.tags[JOB_TAG] == kernel.job.id
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "notes" / "hello.txt").read_text() == "hello"
    job = JobList.for_root(project).find(kernel.job.id)
    assert job.state == "pulled" and job.runs == [run.info.run_id]

    assert any(line.startswith("1 run(s) tagged labkit.cloud.") for line in result.lines())
    again = pull(project, "alice/labkit-tiny", source=working / BUNDLE_NAME)
    assert again.summary.imported == [] and len(again.summary.skipped) == 1
    assert not any("tagged" in line for line in again.lines())  # nothing new: nothing was tagged


@pytest.mark.notebook
def test_a_failed_cloud_run_still_exports_its_runs(project, migrated_store, tmp_path, search_runs):
    from labkit.cloud.kaggle import build_kernel, pull

    source = tiny_notebook(tmp_path / "tiny.ipynb")
    kernel = build_kernel(project, str(source), {"fail": True}, owner="alice", internet=True, install=INSTALL)
    working = tmp_path / "kaggle" / "working"
    out, text = run_prepared(kernel.notebook, working, kaggle=True)
    assert out.error is not None and out.error.evalue == "told to fail"
    assert "(failed)" in text
    result = pull(project, "alice/labkit-tiny", source=working)
    assert len(result.summary.imported) == 1 and result.session["state"] == "failed"
    assert any("stopped at an error" in line for line in result.lines())
    assert result.job.state == "failed (pulled)"
    assert search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")[0].data.metrics["value"] == 10.0


# -- Colab --------------------------------------------------------------------------------------


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.mark.notebook
def test_colab_notebook_opens_mounts_drive_only_in_colab_and_its_bundle_pulls(project, migrated_store, tmp_path,
                                                                              cli_env, search_runs):
    from labkit.cloud import JOB_TAG, PLATFORM_TAG, SOURCE_TAG
    from labkit.cloud.colab import build_colab
    from labkit.cloud.jobs import JobList

    _git(project, "init", "-q", "-b", "main")
    _git(project, "remote", "add", "origin", "git@github.com:acme/lab-notes.git")
    source = tiny_notebook(tmp_path / "tiny.ipynb")
    built = build_colab(project, str(source), {"x": 3}, gpu=True, install=INSTALL)
    assert built.path == project / "colab" / "tiny.ipynb"
    assert built.link == "https://colab.research.google.com/github/acme/lab-notes/blob/main/colab/tiny.ipynb"
    assert any(line.startswith("Open in Colab: https://colab.research.google.com/github/") for line in built.lines())
    book = nbformat.read(built.path, as_version=4)
    nbformat.validate(book)
    assert book.metadata["accelerator"] == "GPU" and book.metadata["colab"]["name"] == "tiny.ipynb"
    assert "'platform': 'colab'" in book.cells[0].source

    drive_like = tmp_path / "MyDrive" / "labkit" / built.job.id
    out, text = run_prepared(built.path, drive_like, kaggle=False)
    assert out.ok, out.error and out.error.summary()
    assert "on local" in text and "Google Drive" not in text  # not on Colab: no Drive mount attempted
    bundle = drive_like / "labkit-runs.zip"
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert [r["tags"][JOB_TAG] for r in manifest["runs"]] == [built.job.id]

    pulled = labkit("cloud", "colab", "pull", str(bundle), "--json", env=cli_env)
    report = json.loads(pulled.stdout)
    assert len(report["imported"]) == 1 and report["job"]["state"] == "pulled"
    run = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")[0]
    assert run.data.metrics["value"] == 30.0 and run.data.tags[PLATFORM_TAG] == "local"
    assert run.data.tags[SOURCE_TAG] == f"colab:{bundle.resolve()}"
    jobs = json.loads(labkit("cloud", "jobs", "--json", env=cli_env).stdout)
    assert [(j["platform"], j["state"], j["parameters"]) for j in jobs] == [("colab", "pulled", {"x": 3})]
    assert JobList.for_root(project).find(built.job.id).runs == [run.info.run_id]
    listing = labkit("cloud", "jobs", env=cli_env).stdout
    assert "colab" in listing and "pulled" in listing and "x=3" in listing


def test_colab_build_without_github_says_how_to_open_the_file(project, tmp_path):
    from labkit.cloud.colab import build_colab

    built = build_colab(project, str(tiny_notebook(tmp_path / "tiny.ipynb")), name="my-run", install=INSTALL)
    assert built.path == project / "colab" / "my-run.ipynb" and built.link is None
    assert "accelerator" not in nbformat.read(built.path, as_version=4).metadata
    assert any("File → Upload notebook" in line for line in built.lines())


# -- inside the notebook ------------------------------------------------------------------------


@pytest.fixture
def fake_colab(monkeypatch):
    """`google.colab.drive` as Colab has it, recording where Drive was mounted."""
    mounts: list[str] = []

    def mount(path: str) -> None:
        mounts.append(path)
        (Path(path) / "MyDrive").mkdir(parents=True, exist_ok=True)

    google, colab, drive = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.drive"))
    drive.mount = mount
    colab.drive = drive
    google.colab = colab
    for name, mod in (("google", google), ("google.colab", colab), ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, mod)
    return mounts


def test_start_on_colab_mounts_drive_and_keeps_the_store_there(tmp_path, fake_colab, monkeypatch):
    import os

    from labkit.cloud.runtime import start
    from labkit.hardware import HardwareProfile

    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-20260101")
    t4 = HardwareProfile.simulated(15, gpu_name="Tesla T4", bf16=False, platform="colab")
    session = start({"platform": "colab", "job": "lora-1", "notebook": "06_lora_training", "gpu": True},
                    drive_mount=tmp_path / "drive", hardware=t4)
    assert fake_colab == [str(tmp_path / "drive")]
    assert session.platform == "colab" and session.drive == tmp_path / "drive" / "MyDrive"
    assert session.workdir == (tmp_path / "drive" / "MyDrive" / "labkit" / "lora-1").resolve()
    assert os.environ["LABKIT_ROOT"] == str(session.workdir) and (session.workdir / "mlruns").is_dir()
    assert session.mixed_precision == "fp16"  # a T4 has no bf16
    assert any("GPU strategy" in line and "'fp16'" in line for line in session.lines())
    assert json.loads((session.workdir / "labkit-cloud.json").read_text())["state"] == "running"


def test_start_elsewhere_mounts_nothing_and_a_missing_gpu_stops_a_gpu_job(tmp_path, monkeypatch):
    from labkit.cloud import CloudError, runtime
    from labkit.cloud.runtime import start
    from labkit.hardware import HardwareProfile

    mounts = []
    monkeypatch.setattr(runtime, "_mount_drive", lambda path: mounts.append(path))
    monkeypatch.chdir(tmp_path)
    cpu = HardwareProfile.simulated(None)
    session = start({"platform": "colab", "job": "j2", "notebook": "tiny"}, hardware=cpu)
    assert mounts == [] and session.platform == "local" and session.drive is None
    assert session.workdir == (tmp_path / "labkit-cloud" / "j2").resolve() and session.mixed_precision == "no"

    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("LABKIT_CLOUD_WORKDIR", str(tmp_path / "working"))
    with pytest.raises(CloudError, match="built with --gpu but the session has no GPU") as err:
        start({"platform": "kaggle", "job": "j3", "notebook": "tiny", "gpu": True}, hardware=cpu)
    assert "Accelerator" in err.value.fix
    assert json.loads((tmp_path / "working" / "labkit-cloud.json").read_text())["state"] == "failed"


def test_a_missing_notebook_names_each_place_looked_once_and_what_there_is(tmp_path, monkeypatch):
    from labkit.cloud.prepare import resolve_notebook

    monkeypatch.chdir(tmp_path)  # the working directory is the project: named once, not twice
    with pytest.raises(LabkitError) as e:
        resolve_notebook(tmp_path, "nothere")
    assert str(e.value).count(str(tmp_path)) == 3  # the project, its notebooks/ in the message and in the fix
    assert "none in" in str(e.value)
    nb = tmp_path / "notebooks"
    nb.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), nb / "train_me.ipynb")
    with pytest.raises(LabkitError, match=r"name one of train_me \(in "):
        resolve_notebook(tmp_path, "train")
    assert resolve_notebook(tmp_path, "train_me") == (nb / "train_me.ipynb").resolve()
