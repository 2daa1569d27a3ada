"""Notebooks run headless with papermill: their parameters, one execution, and what they recorded.

    params = notebook_parameters("notebooks/00_quickstart.ipynb")   # the `parameters` cell: name → default
    out = execute("notebooks/00_quickstart.ipynb", "out.ipynb", {"steps": 4}, env={...})
    out.ok, out.error                          # NotebookError: the failing cell and the exception
    out.records                                # what the notebook passed to `record(...)`

Inside a notebook, `record(score=0.93, files=["grid.png"])` hands numbers and files to whoever ran it
(a sweep logs them on the point's run); run interactively, it only shows them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError

#: The MIME type of a `record()` output: a JSON object {"metrics": {...}, "files": [...]}.
RECORD_MIME = "application/vnd.labkit.record+json"
#: The kernel sweeps run notebooks on unless a spec names another (`jupyter kernelspec list`).
DEFAULT_KERNEL = "python3"


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its cell tagged `parameters`: name → default (as written).

    Raises `ConfigError` when the file is missing or is not a notebook, or when no cell is tagged
    `parameters`.
    """
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"There is no notebook at {str(path)!r}.", value=str(path),
                          fix="name a notebook that exists (paths are relative to the spec's folder or the project).")
    try:
        book = nbformat.read(path, as_version=4)
    except Exception as e:
        raise ConfigError(f"{str(path)!r} is not a readable notebook: {e}", value=str(path),
                          fix="name an .ipynb file saved by Jupyter.") from e
    if not any("parameters" in c.metadata.get("tags", []) for c in book.cells):
        raise ConfigError(f"The notebook {path.name!r} has no cell tagged `parameters`.", value=str(path),
                          fix="tag the notebook's first cell `parameters` (View → Cell Toolbar → Tags in Jupyter).")
    from papermill.translators import papermill_translators

    translator = papermill_translators.find_translator(*kernel_and_language(book))
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    return {p.name: p.default for p in translator.inspect(cell)}


def kernel_and_language(book: Any, kernel: str | None = None) -> tuple[str, str]:
    """The kernel a notebook runs on (`kernel`, else its kernelspec's, else `DEFAULT_KERNEL`) and its language.
    papermill refuses a notebook without that metadata (one written by a script or by jupytext) unless told."""
    kernel = kernel or (book.metadata.get("kernelspec") or {}).get("name") or DEFAULT_KERNEL
    return kernel, _language(book, kernel)


def _language(book: Any, kernel: str) -> str:
    """The notebook's language: its metadata's, else the kernel's (`jupyter kernelspec list`), else Python."""
    language = book.metadata.get("language_info", {}).get("name") or \
        (book.metadata.get("kernelspec") or {}).get("language")
    if language:
        return str(language)
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return KernelSpecManager().get_kernel_spec(kernel).language or "python"
    except Exception:  # NoSuchKernel: papermill names it when the run starts
        return "python"


@dataclass(frozen=True)
class NotebookError:
    """Where an executed notebook raised: the cell (index in the notebook and execution count), its
    source, and the exception's type and message."""

    cell_index: int
    exec_count: int | None
    source: str
    ename: str
    evalue: str
    traceback: str = ""

    def summary(self) -> str:
        return f"cell {self.cell_index} (In [{self.exec_count}]) raised {self.ename}: {self.evalue}"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Execution:
    """One papermill execution: the output notebook, what it recorded, and its error if it raised."""

    output: Path
    seconds: float
    error: NotebookError | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(notebook: str | Path, output: str | Path, parameters: Mapping[str, Any], *,
            kernel: str = DEFAULT_KERNEL, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Execution:
    """Run `notebook` top to bottom with `parameters` injected after its `parameters` cell, writing the
    executed copy to `output`. A cell that raises ends the run; the error comes back in the
    `Execution` (never raised), and `output` holds every output up to and including the traceback.

    `env` is added to this process's environment for the kernel only (so parallel executions can
    each have their own); `timeout` bounds one cell in seconds.
    """
    import time

    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    start = time.perf_counter()
    output = Path(output)
    error = None
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters), kernel_name=kernel,
                                   language=kernel_and_language(nbformat.read(notebook, as_version=4), kernel)[1],
                                   cwd=str(cwd) if cwd else None, progress_bar=False, log_output=False,
                                   execution_timeout=timeout, kernel_manager_class=_kernel_manager(env or {}))
    except PapermillExecutionError as e:
        error = NotebookError(cell_index=e.cell_index, exec_count=e.exec_count, source=e.source, ename=e.ename,
                              evalue=e.evalue, traceback=_strip_ansi("\n".join(e.traceback)))
    metrics, files = read_records(output) if output.is_file() else ({}, [])
    base = Path(cwd) if cwd else Path.cwd()
    return Execution(output=output, seconds=time.perf_counter() - start, error=error, metrics=metrics,
                     files=[f if f.is_absolute() else base / f for f in files])


def _kernel_manager(env: Mapping[str, str]):
    """A kernel manager class whose kernels get `env` on top of this process's environment."""
    from jupyter_client.manager import AsyncKernelManager

    extra = dict(env)

    class _EnvKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **kw.get("env", {}), **extra}
            await AsyncKernelManager.start_kernel(self, **kw)

    return _EnvKernelManager


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def read_records(path: str | Path) -> tuple[dict[str, float], list[Path]]:
    """The metrics and files an executed notebook passed to `record()`, later calls winning."""
    import nbformat

    book = nbformat.read(Path(path), as_version=4)
    metrics: dict[str, float] = {}
    files: list[Path] = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {}).get(RECORD_MIME)
            if data is None:
                continue
            if isinstance(data, str):
                data = json.loads(data)
            metrics.update({k: float(v) for k, v in data.get("metrics", {}).items()})
            files += [Path(f) for f in data.get("files", [])]
    return metrics, files


def record(files: list[str | Path] | None = None, **metrics: float) -> dict[str, Any]:
    """Hand numbers (and output files) from a notebook to whoever runs it.

    Run by `labkit sweep`, the metrics land on the point's MLflow run and the files among its
    outputs; run by hand, the call just shows what it recorded. Returns what was recorded.
    """
    from labkit.errors import InvalidParameter

    bad = {k: v for k, v in metrics.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    if bad:
        raise InvalidParameter(f"record() takes numbers as metrics; got {bad!r}.", value=bad,
                               fix="pass numbers (e.g. record(score=0.9)); pass paths as files=[...].")
    data = {"metrics": {k: float(v) for k, v in metrics.items()},
            "files": [str(Path(f).resolve()) for f in files or []]}
    try:
        from IPython.display import display

        text = ", ".join(f"{k}={v:.4g}" for k, v in data["metrics"].items())
        if data["files"]:
            text += (", " if text else "") + f"{len(data['files'])} file(s)"
        display({RECORD_MIME: data, "text/plain": f"recorded: {text or 'nothing'}"}, raw=True)
    except ImportError:  # outside IPython there is nobody to hand the record to
        pass
    return data


__all__ = ["DEFAULT_KERNEL", "RECORD_MIME", "Execution", "NotebookError", "execute", "kernel_and_language",
           "notebook_parameters", "read_records", "record"]
