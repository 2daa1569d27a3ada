"""Hostile bundles: `import_bundle` refuses each with a LabkitError naming the bad value and a fix, writes
nothing outside its store (nor anything at all into it), leaves no RUNNING run and no new experiment, and
the store still takes a good bundle afterwards.

Every hostile zip is built by hand from a real exported bundle (two runs, nested artifacts), so each case
differs from a good bundle in exactly the way it names.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.errors import ConfigError, InvalidParameter, LabkitError

#: The store's own files (the database, its journals, the lock that serialises opening it and the one that
#: serialises imports).
DB_FILES = ("mlflow.db", "mlflow.db-journal", "mlflow.db-wal", "mlflow.db-shm", "mlflow.db.lock",
            "mlflow.db.import.lock")


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory, _fresh_store_file) -> Path:
    """A real bundle: a parent run with a note and an artifact, and a child with nested artifacts."""
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.tracking.bundle import export_bundle

    root = tmp_path_factory.mktemp("source")
    (root / "mlruns").mkdir()
    shutil.copy(_fresh_store_file, root / "mlruns" / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT", "LABKIT_EXPERIMENT", "LABKIT_COMPLIANCE_MODE"):
            mp.delenv(var, raising=False)
        lab = Lab(root, hardware=HardwareProfile.simulated(None))
        with lab.run("study", params={"lr": 0.001}) as parent:
            parent.log_series("loss", [1.0, 0.5, float("nan")])
            parent.log_text("# study\n", "notes/summary.md")
            with lab.run("child", params={"seed": 0}, parent_run_id=parent.run_id) as child:
                child.log_dict({"seed": 0}, "outputs/record.json")
                child.log_text("binary-ish \x00\x01" * 50, "outputs/deep/blob.bin")
        return export_bundle(lab.tracker, ["labkit"], root / "good.zip").path


@pytest.fixture
def target(tmp_path, _fresh_store_file, monkeypatch):
    """An empty store to import into, with the temporary folder moved under tmp_path so that what import
    stages there is seen by the checks below."""
    from labkit.config import LabConfig
    from labkit.tracking.store import Tracker

    for var in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT", "LABKIT_EXPERIMENT", "LABKIT_COMPLIANCE_MODE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    dest = tmp_path / "dest"
    (dest / "mlruns").mkdir(parents=True)
    shutil.copy(_fresh_store_file, dest / "mlruns" / "mlflow.db")
    return Tracker(LabConfig.resolve(dest))


def _manifest(bundle: Path) -> dict:
    with zipfile.ZipFile(bundle) as zf:
        return json.loads(zf.read("manifest.json"))


def _member(run_id: str, path: str) -> str:
    return f"runs/{run_id}/{path}"


def _rewrite(good: Path, out: Path, edit: Callable[[dict], None] | None = None, *, add: dict | None = None,
             drop: tuple[str, ...] = (), manifest_bytes: bytes | None = None) -> Path:
    """A copy of `good` with its manifest edited, members added (name → bytes or a (ZipInfo, bytes) pair)
    and members dropped."""
    manifest = copy.deepcopy(_manifest(good))
    if edit is not None:
        edit(manifest)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "manifest.json" and info.filename not in drop and info.filename not in (add or {}):
                dst.writestr(info, src.read(info))
        for name, blob in (add or {}).items():
            if isinstance(blob, tuple):
                dst.writestr(*blob)
            else:
                dst.writestr(name, blob)
        dst.writestr("manifest.json", manifest_bytes if manifest_bytes is not None else json.dumps(manifest))
    return out


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and p.name not in DB_FILES}


def _store_state(tracker) -> tuple[list[str], list[tuple[str, str]]]:
    """Every experiment (deleted ones too) and every run (status, lifecycle) in the store."""
    from mlflow.entities import ViewType

    client = tracker.client
    exps = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL) if exps else []
    return sorted(e.name for e in exps), sorted((r.info.status, r.info.lifecycle_stage) for r in runs)


def _assert_refused(target, good: Path, bundle: Path, tmp_path: Path, named: str,
                    kind: type[LabkitError] = ConfigError, **kwargs) -> LabkitError:
    """Import `bundle` and check everything a user would: the error, nothing written, the store untouched
    and still usable. Returns the error."""
    from labkit.tracking.bundle import import_bundle

    files, store = _tree(tmp_path), _store_state(target)
    with pytest.raises(LabkitError) as caught:
        import_bundle(target, bundle, **kwargs)
    err = caught.value
    assert isinstance(err, kind), err
    assert named in str(err), (named, str(err))
    assert err.fix
    assert str(bundle) in str(err)
    assert _tree(tmp_path) == files  # nothing written: not beside the store, not in the staging folder
    assert _store_state(target) == store  # no run (RUNNING or other), no experiment
    again = import_bundle(target, good)  # the store still takes a good bundle
    assert len(again.imported) == 2
    statuses = {target.client.get_run(r).info.status for r in again.imported}
    assert statuses == {"FINISHED"}
    return err


def _first_artifact(m: dict) -> tuple[dict, dict]:
    run = next(r for r in m["runs"] if r["artifacts"])
    return run, run["artifacts"][0]


# -- paths that leave the run's folder ------------------------------------------------------------------

TAG = uuid.uuid4().hex[:10]
EVIL = f"evil-{TAG}.txt"


@pytest.mark.parametrize("bad", [
    f"../../../{EVIL}",
    f"outputs/../../../../{EVIL}",
    f"../{'../' * 12}{EVIL}",
    f"/tmp/{EVIL}",
    f"C:/{EVIL}",
    f"C:{EVIL}",
    f"outputs\\..\\..\\{EVIL}",
    f"outputs/{EVIL}\x00.png",
    f"./{EVIL}",
    f"outputs//{EVIL}",
    f"outputs/{EVIL}/",
], ids=["dotdot", "inner-dotdot", "deep-dotdot", "absolute", "drive", "drive-relative", "backslash", "nul",
        "dot", "empty-part", "trailing-slash"])
def test_an_artifact_path_leaving_its_folder_is_refused_and_nothing_is_written(target, good_bundle, tmp_path, bad):
    payload = b"written by a hostile bundle\n"

    def edit(m):
        run, art = _first_artifact(m)
        art.update(path=bad, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        edit.run_id = run["run_id"]

    _manifest_probe = copy.deepcopy(_manifest(good_bundle))
    edit(_manifest_probe)
    # The member is there too, so only the path check stands between the bundle and the disk.
    bundle = _rewrite(good_bundle, tmp_path / "hostile.zip", edit, add={_member(edit.run_id, bad): payload})
    _assert_refused(target, good_bundle, bundle, tmp_path, repr(bad))
    assert not _written(tmp_path)


def _written(tmp_path: Path) -> list[str]:
    """Where the hostile file landed: anywhere under this test session's temporary folders (where the
    store and its staging live), or directly in a folder above them, /tmp or the root, where a path of
    `..`s or an absolute one would put it. Other workers' folders are not walked: they come and go
    meanwhile (Path.glob over /tmp raised FileNotFoundError), and /tmp can hold whole checkouts."""
    found = [os.path.join(folder, name) for folder, dirs, files in os.walk(tmp_path.parent)
             for name in files + dirs if name.startswith(f"evil-{TAG}")]
    above = {*tmp_path.parents, Path(tempfile.gettempdir()), Path("/tmp")}
    return found + [str(p / EVIL) for p in above if (p / EVIL).exists()]


def test_a_symbolic_link_member_is_refused(target, good_bundle, tmp_path):
    link_target = b"/etc/passwd"

    def edit(m):
        run, art = _first_artifact(m)
        art.update(path="outputs/link", size=len(link_target), sha256=hashlib.sha256(link_target).hexdigest())
        edit.name = _member(run["run_id"], "outputs/link")

    probe = copy.deepcopy(_manifest(good_bundle))
    edit(probe)
    info = zipfile.ZipInfo(edit.name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    bundle = _rewrite(good_bundle, tmp_path / "link.zip", edit, add={edit.name: (info, link_target)})
    _assert_refused(target, good_bundle, bundle, tmp_path, f"{edit.name!r} is a symbolic link")


def test_a_symbolic_link_member_not_in_the_manifest_is_refused_too(target, good_bundle, tmp_path):
    info = zipfile.ZipInfo("runs/elsewhere/escape")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    bundle = _rewrite(good_bundle, tmp_path / "link.zip", add={info.filename: (info, b"../../..")})
    _assert_refused(target, good_bundle, bundle, tmp_path, "'runs/elsewhere/escape' is a symbolic link")


# -- sizes and checksums --------------------------------------------------------------------------------


def test_an_artifact_larger_than_declared_is_refused(target, good_bundle, tmp_path):
    def edit(m):
        _, art = _first_artifact(m)
        art["size"] -= 1
        edit.path = art["path"]

    bundle = _rewrite(good_bundle, tmp_path / "big.zip", edit)
    err = _assert_refused(target, good_bundle, bundle, tmp_path, "declares")
    assert repr(edit.path) in str(err)


def test_an_artifact_whose_bytes_do_not_match_its_checksum_is_refused(target, good_bundle, tmp_path):
    m = _manifest(good_bundle)
    run, art = _first_artifact(m)
    name = _member(run["run_id"], art["path"])
    with zipfile.ZipFile(good_bundle) as zf:
        blob = zf.read(name)
    damaged = bytes([blob[0] ^ 1]) + blob[1:]  # same size, one bit off
    bundle = _rewrite(good_bundle, tmp_path / "damaged.zip", add={name: damaged})
    err = _assert_refused(target, good_bundle, bundle, tmp_path, "does not match its checksum")
    assert repr(art["path"]) in str(err)


def test_a_declared_artifact_missing_from_the_zip_is_refused(target, good_bundle, tmp_path):
    m = _manifest(good_bundle)
    run, art = _first_artifact(m)
    name = _member(run["run_id"], art["path"])
    bundle = _rewrite(good_bundle, tmp_path / "missing.zip", drop=(name,))
    _assert_refused(target, good_bundle, bundle, tmp_path, f"no member {name!r}")


def _zeros_zip(tmp_path: Path, good: Path, declared: int, n: int = 50 * 1024**2) -> tuple[Path, str]:
    """`good` plus a member of `n` zero bytes (deflated to about n/1000) declared as `declared` bytes."""
    name_holder = {}

    def edit(m):
        run = m["runs"][0]
        run["artifacts"].append({"path": "outputs/zeros.bin", "size": declared, "sha256": "0" * 64})
        name_holder["name"] = _member(run["run_id"], "outputs/zeros.bin")

    probe = copy.deepcopy(_manifest(good))
    edit(probe)
    out = tmp_path / "bomb.zip"
    _rewrite(good, out, edit)
    info = zipfile.ZipInfo(name_holder["name"])
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out, "a") as zf, zf.open(info, "w", force_zip64=True) as f:
        block = b"\0" * 1024**2
        for _ in range(n // len(block)):
            f.write(block)
    return out, name_holder["name"]


def test_a_zip_bomb_is_refused_through_the_cli_without_writing_it(good_bundle, tmp_path, _fresh_store_file):
    """50 MB of zeros in a 50 KB member declared as 10 bytes. The command runs with a 4 MiB limit on the
    size of any file it writes (the kernel stops it otherwise), and ends with a one-line error."""
    bomb, name = _zeros_zip(tmp_path, good_bundle, declared=10)
    assert bomb.stat().st_size < 1024**2
    dest = tmp_path / "dest"
    (dest / "mlruns").mkdir(parents=True)
    shutil.copy(_fresh_store_file, dest / "mlruns" / "mlflow.db")
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "LABKIT_ROOT": str(dest), "TMPDIR": str(tmp_path / "tmp"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("MLFLOW_TRACKING_URI", None)
    before = _tree(tmp_path)
    limit = max(4 * 1024**2, (dest / "mlruns" / "mlflow.db").stat().st_size + 1024**2)

    def cap_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "labkit", "import", str(bomb)], env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=cap_file_size)
    assert done.returncode == 2, (done.returncode, done.stderr)  # a LabkitError, not SIGXFSZ (-25)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "outputs/zeros.bin" in done.stderr and "declares 10 bytes" in done.stderr and "Fix:" in done.stderr
    assert sum(_tree(tmp_path).values()) - sum(before.values()) < 1024**2
    from mlflow import MlflowClient

    assert MlflowClient(f"sqlite:///{dest}/mlruns/mlflow.db").search_experiments()[0].name == "Default"
    assert [e.name for e in MlflowClient(f"sqlite:///{dest}/mlruns/mlflow.db").search_experiments()] == ["Default"]


def test_artifacts_over_max_bytes_are_refused_before_any_is_staged(target, good_bundle, tmp_path):
    from labkit.tracking.bundle import import_bundle

    bomb, _ = _zeros_zip(tmp_path, good_bundle, declared=8 * 1024**2, n=8 * 1024**2)
    _assert_refused(target, good_bundle, bomb, tmp_path, "over max_bytes=1,048,576", max_bytes=1024**2)
    with pytest.raises(InvalidParameter, match="max_bytes=-1"):
        import_bundle(target, bomb, max_bytes=-1)


# -- manifests that are not what they say ---------------------------------------------------------------


def _set(path: list, value):
    def edit(m):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        if value is KeyError:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return edit


def _cycle(m):
    a, b = m["runs"][0], m["runs"][1]
    a["parent_run_id"], b["parent_run_id"] = b["run_id"], a["run_id"]


def _duplicate_artifact(m):
    run, art = _first_artifact(m)
    run["artifacts"].append(dict(art))


def _file_and_folder(m):
    run, art = _first_artifact(m)
    run["artifacts"].append({**art, "path": art["path"] + "/inside"})


@pytest.mark.parametrize(("edit", "named"), [
    (_set(["runs"], KeyError), "lacks the key 'runs'"),
    (_set(["runs", 0, "run_id"], KeyError), "manifest.runs[0] lacks the key 'run_id'"),
    (_set(["runs", 0, "artifacts"], KeyError), "lacks the key 'artifacts'"),
    (_set(["runs", 1, "artifacts", 0, "sha256"], KeyError), "lacks the key 'sha256'"),
    (_set(["experiments", 0, "name"], KeyError), "manifest.experiments[0] lacks the key 'name'"),
    (_set(["runs"], {}), "manifest.runs is {}"),
    (_set(["runs", 1, "artifacts", 0, "size"], "10"), "manifest.runs[1].artifacts[0].size is '10'"),
    (_set(["runs", 1, "artifacts", 0, "size"], -1), "manifest.runs[1].artifacts[0].size is -1"),
    (_set(["runs", 1, "artifacts", 0, "size"], True), "size is True"),
    (_set(["runs", 1, "artifacts", 0, "sha256"], "xyz"), "sha256 is 'xyz'"),
    (_set(["runs", 1, "artifacts", 0, "sha256"], "A" * 64), f"sha256 is {'A' * 64!r}"),
    (_set(["runs", 1, "artifacts", 0, "path"], 7), "path is 7"),
    (_set(["runs", 0, "run_id"], "../../x"), "run_id is '../../x'"),
    (_set(["runs", 0, "run_id"], "ab\n"), "run_id is 'ab\\n'"),
    (_set(["runs", 0, "experiment_id"], "999"), "experiment_id is '999'"),
    (_set(["runs", 0, "status"], "DONE"), "status is 'DONE'"),
    (_set(["runs", 0, "start_time"], "yesterday"), "start_time is 'yesterday'"),
    (_set(["runs", 0, "params"], {"lr": 0.001}), "params.lr is 0.001"),
    (_set(["runs", 0, "metrics"], {"loss": [[0, "noon", 1.0]]}), "'noon'"),
    (_set(["runs", 0, "metrics"], {"loss": [[0, 1]]}), "manifest.runs[0].metrics.loss[0] is [0, 1]"),
    (_set(["experiments", 0, "name"], 5), "manifest.experiments[0].name is 5"),
    (_set(["experiments", 0, "tags"], ["a"]), "tags is ['a']"),
    (_set(["format_version"], "1"), "format_version is '1'"),
    (_set(["format_version"], 99), "format version 99"),
    (_set(["format"], "zip"), "a 'zip' file"),
    (_set(["format"], KeyError), "manifest lacks the key 'format'"),
    (_cycle, "parent links loop"),
    (_duplicate_artifact, "repeats"),
    (_file_and_folder, "both as a file and as a folder"),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", "edit"))
def test_a_manifest_with_a_missing_key_or_a_wrong_type_is_refused(target, good_bundle, tmp_path, edit, named):
    bundle = _rewrite(good_bundle, tmp_path / "bad-manifest.zip", edit)
    _assert_refused(target, good_bundle, bundle, tmp_path, named)


@pytest.mark.parametrize(("content", "named"), [
    (b"not a zip at all", "not a labkit bundle"),
    (None, "no manifest.json"),
    (b"{not json", "manifest.json is not JSON"),
    (b"\xff\xfe\x00garbage", "manifest.json is not JSON"),
    (b"[" * 100_000, "manifest.json is not JSON"),
    (b"[1, 2]", "manifest.json holds a list"),
], ids=["not-a-zip", "no-manifest", "broken-json", "not-utf8", "deep-nesting", "a-list"])
def test_a_file_that_is_not_a_bundle_is_refused(target, good_bundle, tmp_path, content, named):
    bundle = tmp_path / "not-a-bundle.zip"
    if named == "not a labkit bundle":
        bundle.write_bytes(content)
    elif content is None:
        with zipfile.ZipFile(bundle, "w") as zf:
            zf.writestr("hello.txt", "hi")
    else:
        _rewrite(good_bundle, bundle, manifest_bytes=content)
    _assert_refused(target, good_bundle, bundle, tmp_path, named)


def test_a_bad_argument_is_an_invalid_parameter(target, good_bundle, tmp_path):
    from labkit.tracking.bundle import import_bundle

    for kwargs, named in (({"path": tmp_path / "absent.zip"}, "absent.zip"), ({"path": tmp_path}, str(tmp_path)),
                          ({"path": 42}, "42"), ({"path": good_bundle, "experiment": ["a"]}, "['a']")):
        with pytest.raises(InvalidParameter) as caught:
            import_bundle(target, **kwargs)
        assert named in str(caught.value) and caught.value.fix


# -- a failure while writing undoes the import ----------------------------------------------------------


def test_a_run_mlflow_refuses_midway_undoes_the_runs_already_imported(target, good_bundle, tmp_path):
    """The parent imports, then MLflow refuses the child's param name `bad*name`: both runs are ended
    FAILED and deleted, the experiment this import made is set aside, and a good import works after."""
    from mlflow.entities import ViewType

    from labkit.tracking.bundle import import_bundle

    def edit(m):
        child = next(r for r in m["runs"] if r["parent_run_id"])
        child["params"]["bad*name"] = "1"

    bundle = _rewrite(good_bundle, tmp_path / "refused.zip", edit)
    with pytest.raises(ConfigError) as caught:
        import_bundle(target, bundle)
    assert "MLflow refuses" in str(caught.value) and "bad*name" in str(caught.value) and caught.value.fix
    client = target.client
    assert [e.name for e in client.search_experiments()] == ["Default"]
    every = client.search_runs([e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)],
                               run_view_type=ViewType.ALL)
    # Both were created (MLflow refuses the child's param after its run exists); both are undone.
    assert sorted((r.info.run_name, r.info.status, r.info.lifecycle_stage) for r in every) == \
        [("child", "FAILED", "deleted"), ("study", "FAILED", "deleted")]
    artifacts = target.config.artifact_root
    assert not [p for p in artifacts.rglob("*") if p.is_file()]  # the parent's copied note went with it
    assert not list((tmp_path / "tmp").iterdir())  # the staging folder too

    good = import_bundle(target, good_bundle)
    assert len(good.imported) == 2
    # Into an experiment that was already there: the failure leaves it and its runs alone.
    def other_origin(m):
        edit(m)
        for r in m["runs"]:
            r["tags"]["labkit.origin.run_id"] = "f" * 31 + r["run_id"][-1]
    with pytest.raises(ConfigError):
        import_bundle(target, _rewrite(good_bundle, tmp_path / "refused2.zip", other_origin))
    active = client.search_runs([client.get_experiment_by_name("labkit").experiment_id])
    assert sorted(r.info.run_id for r in active) == sorted(good.imported)
    assert {r.info.status for r in active} == {"FINISHED"}


def test_a_deleted_experiment_of_the_same_name_is_named_with_the_fix(target, good_bundle, tmp_path):
    from labkit.tracking.bundle import import_bundle

    exp_id = target.client.create_experiment("labkit")
    target.client.delete_experiment(exp_id)
    with pytest.raises(InvalidParameter) as caught:
        import_bundle(target, good_bundle)
    assert "'labkit'" in str(caught.value) and "restore" in caught.value.fix
    assert len(import_bundle(target, good_bundle, experiment="elsewhere").imported) == 2
