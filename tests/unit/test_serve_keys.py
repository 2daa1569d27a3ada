"""The pieces of `labkit serve` that need no server: the key store, scopes, the gate's decisions, how a
LabkitError becomes a status code, and what a remote caller may not name."""

from __future__ import annotations

import json
import threading

import pytest

from labkit.errors import (
    ComplianceViolation,
    ConfigError,
    InvalidParameter,
    LabkitError,
    TrackingError,
    UnknownModel,
)
from labkit.serve.http import ApiError, Gate, from_labkit, is_loopback
from labkit.serve.keys import KeyStore


@pytest.fixture
def keys(tmp_path) -> KeyStore:
    return KeyStore(tmp_path / "mlruns" / "serve-keys.json")


def test_a_key_is_checked_by_its_hash_and_never_stored(keys):
    key, secret = keys.add("alice", "render")
    assert keys.check(secret) == key and key.scope == "render"
    assert keys.check(secret + "x") is None and keys.check("") is None
    text = keys.path.read_text()
    assert secret not in text and key.sha256 in text
    assert key.public()["key"].startswith(secret[:8]) and "sha256" not in key.public()


def test_scopes_nest(keys):
    read, _ = keys.add("r", "read")
    admin, _ = keys.add("a", "admin")
    assert read.allows("read") and not read.allows("render") and not read.allows("admin")
    assert admin.allows("read") and admin.allows("render") and admin.allows("admin")


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "x" * 65, "é"])
def test_a_key_name_must_be_plain(keys, name):
    with pytest.raises(InvalidParameter) as e:
        keys.add(name)
    assert repr(name) in e.value.message and e.value.fix
    assert keys.keys() == []


def test_unknown_scope_duplicate_and_revoke(keys):
    with pytest.raises(InvalidParameter, match="owner"):
        keys.add("x", "owner")
    _, secret = keys.add("x")
    with pytest.raises(InvalidParameter, match="exists already"):
        keys.add("x")
    assert keys.revoke("x").name == "x" and keys.check(secret) is None
    with pytest.raises(InvalidParameter, match="No API key named 'x'") as e:
        keys.revoke("x")
    assert "keys list" in e.value.fix


def test_a_broken_key_file_is_a_config_error_naming_it(keys):
    keys.path.parent.mkdir(parents=True)
    keys.path.write_text("{not json")
    with pytest.raises(ConfigError) as e:
        keys.keys()
    assert str(keys.path) in e.value.message and "keys add" in e.value.fix


def test_keys_added_at_once_from_many_threads_all_land(keys):
    threads = [threading.Thread(target=keys.add, args=(f"k{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k.name for k in KeyStore(keys.path).keys()) == sorted(f"k{i}" for i in range(12))
    assert len(json.loads(keys.path.read_text())["keys"]) == 12


def test_the_gate_without_keys_is_the_local_user_until_a_key_exists(keys):
    gate = Gate(keys, per_minute=100, jobs_in_flight=2)
    assert gate.open() and gate.caller(None, "admin").name == "local"
    _, secret = keys.add("bob", "read")
    with pytest.raises(ApiError) as e:
        gate.caller(None, "read")
    assert e.value.status == 401 and e.value.headers["WWW-Authenticate"] == "Bearer"
    assert gate.caller(secret, "read").name == "bob"
    with pytest.raises(ApiError) as e:
        gate.caller(secret, "render")
    assert e.value.status == 403 and "render" in e.value.message and "--scope render" in e.value.fix
    keys.revoke("bob")
    assert not gate.open()  # revoking every key does not open the server again


def test_the_gate_limits_each_caller_per_minute(keys):
    gate = Gate(keys, per_minute=3, jobs_in_flight=2)
    _, a = keys.add("a")
    _, b = keys.add("b")
    for _ in range(3):
        gate.caller(a, "read")
    with pytest.raises(ApiError) as e:
        gate.caller(a, "read")
    assert e.value.status == 429 and 1 <= int(e.value.headers["Retry-After"]) <= 60
    assert gate.caller(b, "read").name == "b"


@pytest.mark.parametrize("error, status", [
    (InvalidParameter("bad", value=1), 422), (UnknownModel("no", value="x"), 422),
    (ComplianceViolation("blocked"), 403), (TrackingError("down"), 503), (LabkitError("other"), 400),
])
def test_labkit_errors_become_statuses_with_their_message_and_fix(error, status):
    api = from_labkit(error)
    assert api.status == status and api.body()["error"]["type"] == type(error).__name__
    assert api.body()["error"]["message"] == error.message


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("10.0.0.5", False),
                                            ("example.org", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("model", ["/etc/passwd", "~/models/x", "./x", "../x", "C:\\models\\x", "a/b/c",
                                   "file:///x"])
def test_a_remote_caller_may_not_name_paths(model):
    from labkit.serve.app import _no_path

    with pytest.raises(InvalidParameter) as e:
        _no_path("model", model)
    assert repr(model) in e.value.message and "catalogue" in e.value.fix


@pytest.mark.parametrize("what", ["model", "adapter"])
def test_a_remote_caller_may_not_name_a_file_in_the_servers_working_folder(tmp_path, monkeypatch, what):
    """'weights/x.safetensors' reads like a hub id (owner/name), but a path that exists wins when labkit resolves
    it: a remote caller could have loaded any weights under the server's working folder."""
    from labkit.serve.app import _no_path

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "x.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for name in ("weights/x.safetensors", "weights"):
        with pytest.raises(InvalidParameter, match="names a file or folder in the server's working folder") as e:
            _no_path(what, name)
        assert repr(name) in e.value.message and "catalogue" in e.value.fix
    _no_path(what, "weights/y.safetensors")  # not there: a hub id as far as the server knows


@pytest.mark.parametrize("model", ["toyworld", "stabilityai/sd-turbo", "run:0123"])
def test_catalogue_and_hub_ids_pass(model):
    from labkit.serve.app import _no_path

    _no_path("model", model)


@pytest.mark.parametrize("limits", [{"queue": -1}, {"queue": 0}, {"queue": True}, {"queue": "5"},
                                    {"per_minute": 0}, {"jobs_in_flight": -3}])
def test_server_limits_under_one_are_refused_not_replaced(lab, keys, limits):
    from labkit.serve import create_app

    with pytest.raises(InvalidParameter) as e:
        create_app(lab, keys, **limits)
    ((name, value),) = limits.items()
    assert f"limit {name} " in e.value.message and f"got {value!r}" in e.value.message
    assert "at least 1" in e.value.message and "labkit.toml" in e.value.fix


def test_a_config_made_in_python_with_a_queue_under_one_is_refused(project, keys):
    import dataclasses

    from labkit.config import LabConfig
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.serve import create_app

    config = dataclasses.replace(LabConfig.resolve(project), serve_queue=-1)
    with pytest.raises(InvalidParameter) as e:
        create_app(Lab(config=config, hardware=HardwareProfile.simulated(None)), keys)
    assert "got -1" in e.value.message and "[serve] queue" in e.value.fix
    assert create_app(Lab(config=dataclasses.replace(config, serve_queue=3),  # and a good one still works
                          hardware=HardwareProfile.simulated(None)), keys).state.server.jobs.max_queue == 3
