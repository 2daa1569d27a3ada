"""Notebooks run headless with papermill: their parameters, one execution, and what they recorded.

    params = notebook_parameters("notebooks/00_quickstart.ipynb")   # the `parameters` cell: name → default
    out = execute("notebooks/00_quickstart.ipynb", "out.ipynb", {"steps": 4}, env={...})
    out.ok, out.error                          # NotebookError: the failing cell and the exception
    out.records                                # what the notebook passed to `record(...)`

Inside a notebook, `record(score=0.93, files=["grid.png"])` hands numbers and files to whoever ran it
(a sweep logs them on the point's run); run interactively, it only shows them. Three more helpers keep
notebooks thin:

    check_parameters(globals(), seeds="list of int >= 0", size="size or None")  # papermill's values, checked first
    data = cached_folder(root / "lora", "hexagon-data", write_dataset, 50, licence="CC0-1.0")  # one per arguments
    fresh = NewFiles(output / "validation", "step-*.png"); fresh()  # only what this run wrote
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
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


# -- inside a notebook: its parameters, checked before any work -------------------------------------------

#: What each kind of parameter takes, in words: (one, several).
_KINDS = {"int": ("a whole number", "whole numbers"), "number": ("a number", "numbers"),
          "bool": ("True or False", "True/False values"), "str": ("text", "strings"), "path": ("a path", "paths"),
          "size": ("[width, height] (two positive whole numbers)", "sizes")}
_SPEC = re.compile(r"(?P<many>list of (?:(?P<count>[1-9]\d*) )?)?(?P<kind>" + "|".join(_KINDS)
                   + r")(?: (?P<op>>=|>) (?P<bound>-?\d+(?:\.\d+)?))?")


@dataclass(frozen=True)
class _Kind:
    """One alternative of a parameter's spec: a kind (or None, or one of some words), maybe a list of them."""

    kind: str
    many: bool = False
    count: int | None = None
    bound: float | None = None
    strict: bool = False
    choices: tuple[str, ...] = ()

    def words(self) -> str:
        if self.kind == "none":
            return "None"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        one, several = _KINDS[self.kind]
        limit = "" if self.bound is None else f"{'greater than' if self.strict else 'at least'} {self.bound:g}"
        if not self.many:
            return f"{one} {'' if self.strict else 'of '}{limit}" if limit else one
        head = f"a list of {f'{self.count} ' if self.count else ''}{several}"
        return f"{head}, each {limit}" if limit else head

    def fits(self, value: Any) -> bool:
        if self.kind == "none":
            return value is None
        if self.many:
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
                return False
            one = _Kind(self.kind, bound=self.bound, strict=self.strict)
            return (self.count is None or len(value) == self.count) and all(one.fits(v) for v in value)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "path":
            return isinstance(value, os.PathLike) or (isinstance(value, str) and bool(value.strip()))
        if self.kind == "size":
            return (isinstance(value, (list, tuple)) and len(value) == 2
                    and all(_Kind("int", bound=1).fits(v) for v in value))
        whole = self.kind == "int"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            return False
        if not whole and not math.isfinite(value):
            return False
        return self.bound is None or (value > self.bound if self.strict else value >= self.bound)


def _parse_spec(name: str, spec: Any) -> list[_Kind]:
    """'list of int >= 0 or None' → its alternatives; ConfigError for a spec this grammar does not know."""
    fix = ('write what it takes as "int", "number", "bool", "str", "path" or "size", maybe "list of [N] …", '
           'a bound (">= 1", "> 0"), "one of a, b, c", joined by " or " (e.g. "int >= 1 or None").')
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"check_parameters: the spec of {name} must be text, got {spec!r}.", value=spec, fix=fix)
    out = []
    for part in (p.strip() for p in spec.split(" or ")):
        if part == "None":
            out.append(_Kind("none"))
        elif part.startswith("one of "):
            out.append(_Kind("choice", choices=tuple(c.strip() for c in part[7:].split(",") if c.strip())))
        elif m := _SPEC.fullmatch(part):
            out.append(_Kind(m["kind"], many=bool(m["many"]), count=int(m["count"]) if m["count"] else None,
                             bound=float(m["bound"]) if m["bound"] else None, strict=m["op"] == ">"))
        else:
            raise ConfigError(f"check_parameters: cannot read the spec {spec!r} of {name} (at {part!r}).",
                              value=spec, fix=fix)
    return out


def _parsed(text: str) -> Any:
    """What a text would have been had the command line passed it as YAML (papermill's -y): '[32, 32]' → a list."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _parameter_fix(name: str, value: Any, kinds: list[_Kind]) -> str:
    """How to pass `name` right: the same value in the form it takes when that is plain, else the form in words."""
    wanted = next(k for k in kinds if k.kind != "none")
    words = " or ".join(k.words() for k in kinds)
    if (wanted.many or wanted.kind == "size") and not isinstance(value, (list, tuple)):
        example, why = None, "papermill's -p passes one number or word, never a list"
        if isinstance(value, str):
            example = next((v for v in (_parsed(value), _parsed(f"[{value}]")) if wanted.fits(v)), None)
            why = f"papermill's -p passes {value!r} as text"
        elif _Kind(wanted.kind, bound=wanted.bound, strict=wanted.strict).fits(value) and wanted.count in (None, 1):
            example = [value]
        if example is None:
            return (f"in the parameters cell, set {name} to {words}; from the command line pass a list as YAML: "
                    f"papermill … -y '{name}: [...]' ({why}).")
        text = json.dumps(example)
        return (f"in the parameters cell, set {name} = {example!r}; from the command line, papermill … -y "
                f"'{name}: {text}' ({why}) or labkit cloud … -p {name}={text}.")
    cli = f"-y '{name}: [...]'" if wanted.many or wanted.kind == "size" else f"-p {name} VALUE"
    return f"in the parameters cell, set {name} to {words} (papermill … {cli})."


def check_parameters(values: Mapping[str, Any], /, **specs: str) -> None:
    """Check a notebook's parameters, as its `parameters` cell and papermill's injected values left them, before
    any work: `InvalidParameter` naming the first that does not fit, its value and how to pass it.

    Call it in the cell after the `parameters` cell with `globals()` and what each parameter takes:
    "int", "number", "bool", "str", "path" (text or a Path), "size" ([width, height]), "list of KIND"
    (a list, never empty; "list of 4 int" has exactly four), a bound ("int >= 1", "number > 0", for a list
    each item's), "one of a, b, c", and alternatives joined by " or " ("int >= 1 or None").

        check_parameters(globals(), seeds="list of int >= 0", size="size or None", n="int >= 1")

    Why: papermill's `-p seeds 3` passes a number and `-p size "[32, 32]"` a text, and a notebook that uses
    them unchecked fails minutes later inside a library call, or silently does something else.
    """
    from labkit.errors import InvalidParameter
    from labkit.plan import describe

    missing = [name for name in specs if name not in values]
    if missing:
        raise ConfigError(f"check_parameters: the notebook never sets {', '.join(missing)}.", value=missing,
                          fix="declare each checked parameter in the `parameters` cell, or drop it from the call.")
    for name, spec in specs.items():
        kinds = _parse_spec(name, spec)
        value = values[name]
        if not any(k.fits(value) for k in kinds):
            words = [k.words() for k in kinds]
            wanted = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
            raise InvalidParameter(f"Parameter {name} must be {wanted}, got {describe(value)}.", value=value,
                                   fix=_parameter_fix(name, value, kinds))


# -- inside a notebook: data made once per arguments, files this run wrote ---------------------------------

#: The file `cached_folder` leaves in each folder it makes: what wrote it, with which arguments.
MADE_BY = "made-by.json"


def cached_folder(parent: str | Path, stem: str, write: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Path:
    """The folder `write(folder, *args, **kwargs)` fills, made the first time these arguments are asked for and
    reused after: `parent/<stem>-<hash of write and its arguments>`. A rerun with other arguments (more
    examples, another licence, another identifier) gets its own folder, never the data made with the old ones.

    It is written under a temporary name and renamed whole, so a run stopped half-way, or two notebooks making
    the same data at once, never leave a folder that looks done; `made-by.json` inside says what made it.

        data = cached_folder(output.parent, "hexagon-data", write_dataset, 50, shapes=("hexagon",), licence="CC0-1.0")
    """
    import hashlib
    import shutil
    import uuid

    what = {"write": f"{getattr(write, '__module__', '')}.{getattr(write, '__qualname__', repr(write))}",
            "args": list(args), "kwargs": kwargs}
    text = json.dumps(what, sort_keys=True, default=repr, indent=1)
    name = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', stem).strip('.-') or 'data'}-" \
           f"{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    parent = Path(parent)
    final = parent / name
    if (final / MADE_BY).is_file():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp, *args, **kwargs)
        (tmp / MADE_BY).write_text(text + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MADE_BY).is_file():  # not another process that finished first: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class NewFiles:
    """The files matching `pattern` in `folder` that were written (new, or rewritten) since this object was
    made, each reported once: a run's output folder may hold an earlier run's files under the same names.

        fresh = NewFiles(output / "validation", "step-*.png")
        ...                                   # training writes grids
        for png in fresh(): display(Image(filename=png))
    """

    def __init__(self, folder: str | Path, pattern: str = "*"):
        self.folder, self.pattern = Path(folder), pattern
        self._before = self._stamps()
        self._reported: set[Path] = set()

    def _stamps(self) -> dict[Path, tuple[int, int]]:
        out = {}
        for path in sorted(self.folder.glob(self.pattern)):
            try:
                st = path.stat()
            except OSError:  # removed while we looked
                continue
            out[path] = (st.st_mtime_ns, st.st_size)
        return out

    def __call__(self) -> list[Path]:
        new = [p for p, stamp in self._stamps().items() if p not in self._reported and self._before.get(p) != stamp]
        self._reported.update(new)
        return new


__all__ = ["DEFAULT_KERNEL", "MADE_BY", "RECORD_MIME", "Execution", "NewFiles", "NotebookError", "cached_folder",
           "check_parameters", "execute", "kernel_and_language", "notebook_parameters", "read_records", "record"]
