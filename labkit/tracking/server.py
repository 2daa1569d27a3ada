"""A shared MLflow tracking server for one project: `mlflow server` with artifacts proxied.

    with start_server("sqlite:////proj/mlruns/mlflow.db", "file:///proj/mlruns/artifacts", port=5000) as server:
        server.url        # 'http://127.0.0.1:5000': put it in labkit.toml as [tracking] uri
    # stopped here (its whole process group)

Clients log everything through the server, artifacts included (`mlflow-artifacts:` URIs the server maps onto
`artifacts_destination`), so the machines of a group need no shared disk. Bad input — a port already taken,
a database URI that cannot be reached or whose driver is not installed — is a `LabkitError` raised before the
server starts, naming the value and the fix.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, InvalidParameter, TrackingError
from labkit.tracking.health import sqlite_busy_timeout, sqlite_path

#: Seconds `start_server` waits for /health before giving up (a cold start imports MLflow's server: seconds).
START_TIMEOUT_S = 90.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def server_url(host: str, port: int) -> str:
    """The URL clients use: a wildcard bind address is reached as this machine's name."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1-65535 or one that something on `host` already listens on."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidParameter(f"The port {port!r} is not a TCP port.", value=port,
                               fix="pass --port a whole number from 1 to 65535, e.g. 5000.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as the server binds: a port whose last connections linger in TIME_WAIT is free, a listening one is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise InvalidParameter(f"The port {port} on {host} is already in use.", value=port,
                                       fix=f"pass another --port (e.g. {port + 1}), or stop what listens on {port} "
                                           f"(`lsof -i :{port}`).") from e
            raise InvalidParameter(f"Cannot listen on {host}:{port}: {e.strerror or e}.", value=f"{host}:{port}",
                                   fix="pass --host an address of this machine (127.0.0.1 for this machine only, "
                                       "0.0.0.0 for every network) and a --port you may use (>= 1024).") from e


def check_backend(uri: str) -> None:
    """Refuse a backend store URI the server could not open, before starting it: a file store, a SQLAlchemy URI
    whose dialect or driver is not installed, a database that does not answer. A SQLite database is created
    (schema and WAL journal, under the store's lock) so the server's workers start on a ready store."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidParameter(f"The backend store URI {uri!r} is empty.", value=uri,
                               fix="pass --backend-store-uri, e.g. sqlite:////data/mlflow.db or "
                                   "postgresql://user@host/mlflow.")
    if uri.startswith("file:") or "://" not in uri:
        raise ConfigError(f"The backend store URI {uri!r} is a file store, which MLflow 3.13+ refuses.", value=uri,
                          fix="use a database: sqlite:////ABSOLUTE/PATH/mlflow.db, or a PostgreSQL/MySQL URI.")
    db = sqlite_path(uri)
    if db is not None:
        _prepare_sqlite(uri, db)
        return
    try:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        url = make_url(uri)
        url.get_dialect()
    except NoSuchModuleError as e:
        raise ConfigError(f"The backend store URI {uri!r} names a database SQLAlchemy does not know "
                          f"({uri.split(':', 1)[0]!r}).", value=uri,
                          fix="use sqlite, postgresql, mysql or mssql URIs (https://docs.sqlalchemy.org/en/20/core/"
                              "engines.html#database-urls).") from e
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"The backend store URI {uri!r} is not a database URI: {e}.", value=uri,
                          fix="write it as DIALECT[+DRIVER]://USER:PASSWORD@HOST:PORT/DATABASE, e.g. "
                              "postgresql://mlflow@db.lab:5432/mlflow.") from e
    try:
        engine = create_engine(uri)
    except ModuleNotFoundError as e:
        raise ConfigError(f"The database driver for {hide_password(uri)!r} is not installed ({e.name}).",
                          value=hide_password(uri),
                          fix=f"install it in this environment (`pip install {_driver_package(e.name)}`), "
                              "then run the command again.") from e
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrackingError(f"Cannot reach the database {hide_password(uri)!r}: {first}", value=hide_password(uri),
                            fix="check the host, port, user, password and database name, and that the database "
                                "server is up and lets this machine in.") from e
    finally:
        engine.dispose()


def hide_password(uri: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri


def _driver_package(module: str | None) -> str:
    return {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "pymysql": "pymysql",
            "MySQLdb": "mysqlclient", "pyodbc": "pyodbc", "pymssql": "pymssql"}.get(module or "", module or "DRIVER")


def _prepare_sqlite(uri: str, db: Path) -> None:
    from labkit.locks import file_lock
    from labkit.tracking.health import enable_wal, half_migrated

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"Cannot make the folder of the store {str(db)!r}: {e.strerror or e}.",
                          value=str(db.parent), fix="pass --backend-store-uri in a folder you can write to.") from e
    if db.is_dir():
        raise ConfigError(f"The backend store {uri!r} names a folder, not a database file.", value=uri,
                          fix=f"name a file in it, e.g. sqlite:///{db / 'mlflow.db'}.")
    sqlite_busy_timeout()
    with file_lock(db):  # the same lock labkit's own clients take to create or migrate a store
        leftovers = half_migrated(db)
        if leftovers:
            raise TrackingError(f"The store {str(db)!r} was left half-migrated (leftover tables: "
                                f"{', '.join(leftovers)}).", value=str(db),
                                fix="run `labkit doctor --repair-store` (it keeps a backup of the database).")
        try:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            # The default artifact root of a store served with proxied artifacts: a new store's "Default"
            # experiment then keeps its artifacts on the server too.
            SqlAlchemyStore(uri, "mlflow-artifacts:/")
        except Exception as e:
            raise TrackingError(f"Cannot open the store {uri!r}: {str(e).splitlines()[0] if str(e) else e}",
                                value=uri, fix="check the path, or run `labkit doctor --repair-store`.") from e
        enable_wal(db)


def local_artifact_experiments(uri: str) -> list[str]:
    """Experiments of the store whose artifacts live in a folder of this machine (made before the store was
    served): clients on other machines cannot write their runs' artifacts there."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(uri, "mlflow-artifacts:/")
        return [e.name for e in store.search_experiments(max_results=1000)
                if (e.artifact_location or "").startswith(("file:", "/"))]
    except Exception:
        return []


def server_command(backend_store_uri: str, artifacts_destination: str, host: str, port: int, *,
                   workers: int | None = None, allowed_hosts: str | None = None) -> list[str]:
    """The `mlflow server` command line (proxied artifacts; MLflow's host check widened by `allowed_hosts`)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
           "--serve-artifacts", "--artifacts-destination", artifacts_destination, "--host", host, "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    return cmd


def server_env() -> dict[str, str]:
    # No background job workers (MLflow would otherwise start a dozen processes for GenAI jobs).
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def default_allowed_hosts(host: str, port: int) -> str | None:
    """For a server bound beyond loopback: also accept requests addressed to this machine's name (MLflow's
    default admits only localhost and private IP addresses, and answers others 403)."""
    if host in _LOOPBACK:
        return None
    names = {"localhost", "127.0.0.1", "10.*", "192.168.*", "172.*", socket.gethostname()}
    try:
        names.add(socket.getfqdn())
    except OSError:
        pass
    if host not in ("0.0.0.0", "::", ""):
        names.add(host)
    return ",".join(sorted(n for n in names if n) + sorted(f"{n}:{port}" for n in names if n and "*" not in n))


def artifacts_uri(path_or_uri: str | Path) -> str:
    """A folder path as a file: URI; a URI (s3://, gs://, file://…) as it is."""
    text = str(path_or_uri)
    if "://" in text or text.startswith("file:"):
        return text
    return Path(text).expanduser().resolve().as_uri()


@dataclass
class ServerHandle:
    """A running `mlflow server`: its URL, and `stop()` (also on leaving a `with`)."""

    url: str
    process: subprocess.Popen
    backend_store_uri: str
    artifacts_destination: str
    log: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM the server's process group (uvicorn and its workers), then SIGKILL what is left."""
        if self._stopped:
            return
        self._stopped = True
        stop_group(self.process)

    def alive(self) -> bool:
        return self.process.poll() is None


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM a process group, then SIGKILL whatever is still there after a few seconds."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; give its children the same signal, then stop
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until `url`/health answers 200; TrackingError when the process ends or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TrackingError(f"The MLflow server for {url} exited with status {proc.returncode} while starting.",
                                value=url, fix="read its log (above, or the file named below) for the reason.")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError) as e:
            last = e
        time.sleep(0.2)
    raise TrackingError(f"The MLflow server for {url} did not answer /health within {timeout:.0f} s ({last}).",
                        value=url, fix="read its log for the reason; a slow machine may need a longer timeout.")


def start_server(backend_store_uri: str, artifacts_destination: str | Path, *, host: str = "127.0.0.1",
                 port: int = 5000, workers: int | None = None, allowed_hosts: str | None = None,
                 log: str | Path | None = None, timeout: float = START_TIMEOUT_S) -> ServerHandle:
    """Start `mlflow server` in the background and return once it answers /health.

    1. Check the port is free and the backend store can be opened (a SQLite store is created and migrated).
    2. Start the server in its own process group (so `stop()` ends its workers too), its output going to `log`
       (default: a temporary file, named in errors; "-": this process's own stdout and stderr).
    3. Wait for /health; a server that exits or does not answer in `timeout` seconds is stopped and reported.
    """
    check_port(host, port)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise InvalidParameter(f"The number of server workers {workers!r} is not a whole number of at least 1.",
                               value=workers, fix="pass --workers 1 or more, or leave it out (MLflow's default: 4).")
    check_backend(backend_store_uri)
    destination = artifacts_uri(artifacts_destination)
    if destination.startswith("file:"):
        from urllib.parse import unquote, urlparse

        Path(unquote(urlparse(destination).path)).mkdir(parents=True, exist_ok=True)
    if allowed_hosts is None:
        allowed_hosts = default_allowed_hosts(host, port)
    cmd = server_command(backend_store_uri, destination, host, port, workers=workers, allowed_hosts=allowed_hosts)
    if log == "-":  # the server writes to this process's own output (`labkit tracking serve`)
        log_path = None
        proc = subprocess.Popen(cmd, env=server_env(), stdin=subprocess.DEVNULL, start_new_session=True)
    else:
        log_path = Path(log) if log is not None else Path(tempfile.mkstemp(prefix="labkit-mlflow-server-",
                                                                             suffix=".log")[1])
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(cmd, env=server_env(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}"
    handle = ServerHandle(server_url(host, port), proc, backend_store_uri, destination, log_path)
    try:
        wait_healthy(url, proc, timeout)
    except BaseException as e:
        handle.stop()
        if isinstance(e, TrackingError) and log_path is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise TrackingError(f"{e.message} Last lines of {log_path}: " + " | ".join(tail), value=e.value,
                                fix=e.fix) from e
        raise
    return handle
