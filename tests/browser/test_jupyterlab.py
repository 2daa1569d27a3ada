"""JupyterLab in headless Chromium: open the quickstart, run it, click Render in the Generate panel,
and see an image appear — what a user does on day one. A screenshot is kept as a test artifact.

Needs the Debian `chromium` package (`make test` installs it when it can) and the `playwright`
package (no browser download). Without them the test fails under CI (CI=true) and skips elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("LABKIT_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _missing(what: str, fix: str) -> None:
    message = f"{what} is not available, so JupyterLab cannot be driven in a browser. Fix: {fix}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser_bin() -> Path:
    if not CHROMIUM.is_file():
        _missing(f"Chromium ({CHROMIUM})", "`apt-get install chromium` (as `make setup` does on Debian/Ubuntu), "
                                           "or point LABKIT_CHROMIUM at a Chromium binary.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("The playwright package", "`pip install -e '.[dev]'` (it is a dev dependency).")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter(project: Path, migrated_store: Path, tmp_path: Path):
    """`jupyter lab` on 127.0.0.1 serving `project`, with a token and its own config/runtime dirs."""
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "jconfig"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jruntime"), "JUPYTER_DATA_DIR": str(tmp_path / "jdata"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "jsettings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "jworkspaces")}
    # No "would you like news?" toast over the notebook, and no "Select Kernel" dialog when the
    # kernel specs arrive after the notebook (a loaded machine): start the notebook's kernel.
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={project}"],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            # Where the server really listens: if another test worker took `port` meanwhile, Jupyter moved on
            # to the next free one (its port_retries) and wrote that one in its runtime file.
            for info in Path(env["JUPYTER_RUNTIME_DIR"]).glob("jpserver-*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    base = f"http://127.0.0.1:{int(json.loads(info.read_text())['port'])}"
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"jupyter lab did not start:\n{(tmp_path / 'jupyter.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        try:  # shuts its kernels down too
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST"),
                                   timeout=5)
            proc.wait(30)
        except Exception:
            stop(proc)
        log.close()


@contextmanager
def chromium_page(browser_bin: Path, failure: Path, height: int = 1800, timeout_s: float = 120):
    """A headless Chromium page 1400 px wide for one test, every wait `timeout_s` at most. JupyterLab's "Select
    Kernel" dialog (a loaded machine shows it when the kernel specs arrive after the notebook) is accepted whenever
    it appears. When the test fails a full-page screenshot goes to `failure` (an older one is removed first); the
    browser is closed either way."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    failure.unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(browser_bin), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.set_default_timeout(timeout_s * 1000)
        select_kernel = page.locator(".jp-Dialog", has_text="Select Kernel")
        page.add_locator_handler(select_kernel, lambda d: d.locator("button.jp-mod-accept").click())
        try:
            yield page
        except Exception:
            page.screenshot(path=str(failure), full_page=True)
            raise
        finally:
            browser.close()


def stop(proc: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, to the process group a server was started in (start_new_session)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for_kernel(base: str, token: str, notebook: str, timeout: float = 120) -> None:
    """Until the server has a session for `notebook` whose kernel is idle (it has started)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
            sessions = json.load(r)
        if any(s["path"].endswith(notebook) and s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        time.sleep(0.5)
    raise AssertionError(f"no idle kernel for {notebook} after {timeout:.0f} s")


def open_and_run_all(page, base: str, token: str, notebook: str) -> None:
    """Open `notebook` in JupyterLab, wait for its kernel, and Run All Cells (until a cell has started)."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    _wait_for_kernel(base, token, notebook)
    started = page.locator(".jp-CodeCell .jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    for _ in range(3):  # a Run All clicked while the page is still attaching the kernel is dropped
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            started.first.wait_for(timeout=20_000)
            return
        except Exception:
            continue


@pytest.mark.browser
def test_quickstart_in_jupyterlab_renders_from_the_generate_panel(browser_bin, jupyter, project, search_runs):
    import papermill

    from labkit.testing import build_tiny_sd15

    tiny = build_tiny_sd15(project.parent / "tiny-sd15")
    # The committed notebook with this test's parameters injected, as papermill would run it.
    papermill.execute_notebook(str(REPO / "notebooks" / "00_quickstart.ipynb"), str(project / "00_quickstart.ipynb"),
                               parameters={"model": str(tiny), "steps": 2, "size": [32, 32], "root": str(project)},
                               prepare_only=True, kernel_name="python3", progress_bar=False)
    base, token = jupyter
    shot = ARTIFACTS / "jupyterlab-quickstart.png"
    with chromium_page(browser_bin, ARTIFACTS / "jupyterlab-quickstart-failure.png") as page:
        open_and_run_all(page, base, token, "00_quickstart.ipynb")

        render = page.locator(".labkit-generate button", has_text="Render")
        render.wait_for(state="visible")                      # the last cell showed the panel
        page.locator(".jp-OutputArea-output img").first.wait_for()  # the quickstart's own image
        images = page.locator(".labkit-images img")
        assert images.count() == 0
        render.click()
        images.first.wait_for(state="visible", timeout=120_000)
        assert images.count() == 1
        run_id = page.locator(".labkit-generate .labkit-run-id input")
        page.wait_for_function("el => /^[0-9a-f]{32}$/.test(el.value)", arg=run_id.element_handle())
        shown = run_id.input_value()
        page.screenshot(path=str(shot), full_page=True)

    runs = search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    renders = [r for r in runs if r.data.tags.get("labkit.job") == "render"]
    assert len(renders) == 2                           # the notebook's render, then the panel's
    assert renders[0].info.run_id == shown             # the newest is the one the panel shows
    assert shot.stat().st_size > 10_000
