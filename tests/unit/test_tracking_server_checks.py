"""What `labkit tracking serve` refuses before it starts a server (no server, no store is made here)."""

from __future__ import annotations

import socket

import pytest

from labkit.errors import ConfigError, InvalidParameter, LabkitError
from labkit.tracking.server import (
    artifacts_uri,
    check_backend,
    check_port,
    default_allowed_hosts,
    server_command,
    start_server,
)


def test_a_port_something_listens_on_is_refused_with_another_port_to_try():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InvalidParameter) as e:
            check_port("127.0.0.1", port)
    assert e.value.value == port and f"(e.g. {port + 1})" in e.value.fix and "already in use" in str(e.value)
    for bad in (0, 70000, "5000", True):
        with pytest.raises(InvalidParameter, match="not a TCP port"):
            check_port("127.0.0.1", bad)


@pytest.mark.parametrize(("uri", "said"), [
    ("file:///tmp/mlruns", "file store"),
    ("/tmp/mlruns", "file store"),
    ("nosuchdb://host/x", "does not know"),
    ("", "empty"),
])
def test_a_backend_uri_that_cannot_be_a_store_is_refused_by_name(uri, said):
    with pytest.raises(LabkitError, match=said) as e:
        check_backend(uri)
    assert e.value.fix


def test_a_database_whose_driver_is_missing_names_the_package_and_hides_the_password():
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg2  # noqa: F401
        pytest.skip("psycopg2 is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError) as e:
        check_backend("postgresql+psycopg2://me:hunter2@db.lab:5432/mlflow")
    assert "pip install psycopg2-binary" in e.value.fix and "hunter2" not in str(e.value)
    assert "db.lab:5432/mlflow" in str(e.value)


def test_the_command_proxies_artifacts_and_widens_the_host_check_only_beyond_loopback(tmp_path):
    dest = artifacts_uri(tmp_path / "art")
    assert dest == (tmp_path / "art").resolve().as_uri() and artifacts_uri("s3://b/p") == "s3://b/p"
    cmd = server_command("sqlite:////x/mlflow.db", dest, "127.0.0.1", 5001)
    assert cmd[cmd.index("--artifacts-destination") + 1] == dest and "--serve-artifacts" in cmd
    assert cmd[cmd.index("--port") + 1] == "5001" and "--allowed-hosts" not in cmd
    assert default_allowed_hosts("127.0.0.1", 5001) is None
    hosts = default_allowed_hosts("0.0.0.0", 5001).split(",")
    assert socket.gethostname() in hosts and f"{socket.gethostname()}:5001" in hosts and "192.168.*" in hosts


def test_a_worker_count_below_one_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InvalidParameter, match="workers"):
        start_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art", port=port, workers=0)
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was touched
