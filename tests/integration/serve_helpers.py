"""A real `labkit serve` in a subprocess on a free loopback port, and an HTTP client for it (tests only)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_key(root: Path, name: str, scope: str, *, cli: bool = False) -> str:
    """A new API key in the project's key store (with `cli`, made the way a user makes one, by
    `labkit serve keys add` in a subprocess); the secret."""
    if not cli:
        from labkit.serve.keys import KeyStore

        return KeyStore.for_project(root).add(name, scope)[1]
    out = subprocess.run([sys.executable, "-m", "labkit", "serve", "keys", "add", name, "--scope", scope,
                          "--root", str(root)], capture_output=True, text=True, timeout=120, env=env(root))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def env(root: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LABKIT_ROOT",
                                                          "LABKIT_COMPLIANCE_MODE", "LABKIT_EXPERIMENT")}
    e.update(LABKIT_ROOT=str(root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return e


def project(root: Path, store: Path | None = None, toml: str = "") -> Path:
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    if store is not None:
        shutil.copy(store, root / "mlruns" / "mlflow.db")
    if toml:
        (root / "labkit.toml").write_text(toml)
    return root


@dataclass
class Served:
    root: Path
    proc: subprocess.Popen
    url: str
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_job(self, client: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"/jobs/{job_id}").json()
            if job["state"] in ("finished", "failed", "cancelled"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s:\n{self.output()[-3000:]}")


def start(root: Path, *args: str, keys: dict[str, str] | None = None, timeout: float = 120,
          tries: int = 3) -> Served:
    """A server on a free port. The port is free when picked, but another test worker may take it before the
    server binds it: then the server says so and exits, and another port is tried (`tries` in all)."""
    port = free_port()
    log = root / f"serve-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--root", str(root), "--port", str(port), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env(root))
    served = Served(root, proc, f"http://127.0.0.1:{port}", log, dict(keys or {}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if tries > 1 and f"port {port} on 127.0.0.1 is already in use" in served.output():
                return start(root, *args, keys=keys, timeout=timeout, tries=tries - 1)
            raise AssertionError(f"labkit serve exited {proc.returncode}:\n{served.output()}")
        try:
            if httpx.get(served.url + "/health", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"labkit serve did not answer in {timeout} s:\n{served.output()}")
