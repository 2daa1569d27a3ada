"""A notebook made ready for the cloud: parameters injected by papermill (nothing executed), a set-up
cell first and an export cell last.

    params = parse_parameters(["steps=2000", "weights=[0.0, 1.0]"])
    path = resolve_notebook(root, "06_lora_training")          # a path, or a name in <root>/notebooks/
    prepare_notebook(path, out, params, job=CloudJob(...))     # writes `out` (valid nbformat)

The set-up cell installs labkit when the cloud machine lacks it (`install`: a pip requirement — by
default labkit's own GitHub repository at the checked-out commit) and calls
`labkit.cloud.runtime.start(job)`; outside Colab and Kaggle it installs nothing, so the same notebook
runs locally. The export cell calls the session's `export()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pprint
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit.cloud import BUNDLE_NAME, CloudError
from labkit.errors import InvalidParameter

SETUP_TAG = "labkit-cloud-setup"
EXPORT_TAG = "labkit-cloud-export"
#: Parameters the set-up cell decides in the cloud; a notebook must not be told otherwise.
RESERVED = ("root",)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class CloudJob:
    """What the set-up cell hands to `labkit.cloud.runtime.start` (plain data: it is written into the
    notebook as a Python literal)."""

    platform: str
    job: str
    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    install: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_value(text: str) -> Any:
    """A `-p name=value` value as papermill's `-p` reads it (None, True/False, int, float, else the
    string), plus JSON/YAML lists and mappings (`weights=[0.0, 1.0]`)."""
    low = text.strip()
    if low in ("None", "none", "null"):
        return None
    if low in ("True", "true"):
        return True
    if low in ("False", "false"):
        return False
    for cast in (int, float):
        try:
            return cast(low)
        except ValueError:
            pass
    if low and low[0] in "[{":
        import yaml

        try:
            return yaml.safe_load(low)
        except yaml.YAMLError as e:
            raise InvalidParameter(f"{text!r} looks like a list or mapping but does not parse: {e}.", value=text,
                                   fix="write it as JSON, e.g. weights=[0.0, 0.5, 1.0].") from e
    return text


def parse_parameters(items: Sequence[str] | None) -> dict[str, Any]:
    """['steps=4', 'concept=hexagon'] → {'steps': 4, 'concept': 'hexagon'}."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise InvalidParameter(f"{item!r} is not NAME=VALUE.", value=item,
                                   fix="pass each parameter as -p NAME=VALUE, e.g. -p steps=2000.")
        out[name] = parse_value(value)
    return out


def resolve_notebook(root: Path, notebook: str | Path) -> Path:
    """The notebook file: a path (absolute, or relative to the working directory or to `root`), or the
    name of one in `<root>/notebooks/` with or without `.ipynb`."""
    text = str(notebook)
    candidates = [Path(text).expanduser(), root / text]
    if not text.endswith(".ipynb"):
        candidates += [root / "notebooks" / f"{text}.ipynb", Path(f"{text}.ipynb")]
    else:
        candidates.append(root / "notebooks" / text)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    shipped = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))
    places = [str(p) for p in dict.fromkeys((Path.cwd().resolve(), root.resolve(), (root / "notebooks").resolve()))]
    named = f"one of {', '.join(shipped)} (in {root / 'notebooks'})" if shipped else \
        f"a notebook's path (there is none in {root / 'notebooks'})"
    raise InvalidParameter(f"There is no notebook {text!r} (looked in {', '.join(places[:-1])} and {places[-1]}).",
                           value=text, fix=f"name {named}.")


def declared_parameters(path: Path) -> list[str]:
    """The names the notebook's `parameters` cell assigns, in order. Read with `ast`, not papermill's
    inspection, which drops a parameter whose comment it cannot parse (`concept = "hexagon"  # … (with
    data=None)` in 06_lora_training)."""
    import ast

    names: list[str] = []
    for node in _parameters_cell(path).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign | ast.AugAssign) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and n.id not in names:
                    names.append(n.id)
    return names


def parameter_defaults(path: Path) -> dict[str, Any]:
    """The default of each parameter the notebook's `parameters` cell sets to a literal (`steps = 400`,
    `lr: float = 1e-4`), as its last assignment leaves it; a name set to anything else is left out."""
    import ast

    out: dict[str, Any] = {}
    for node in _parameters_cell(path).body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for n in [n for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)]:
                out.pop(n.id, None)
            literal = not isinstance(node, ast.AugAssign) and node.value is not None
            if literal and len(targets) == 1 and isinstance(targets[0], ast.Name):
                with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    out[targets[0].id] = ast.literal_eval(node.value)
    return out


def _parameters_cell(path: Path) -> Any:
    """The `parameters` cell of the notebook at `path`, parsed (`ast.Module`); `ConfigError` when there is none."""
    import ast

    import nbformat

    from labkit.errors import ConfigError

    try:
        book = nbformat.read(path, as_version=4)
    except Exception as e:
        raise ConfigError(f"{str(path)!r} is not a readable notebook: {e}", value=str(path),
                          fix="name an .ipynb file saved by Jupyter.") from e
    cell = next((c for c in book.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        raise ConfigError(f"The notebook {path.name!r} has no cell tagged `parameters`.", value=str(path),
                          fix="tag the cell holding its parameters `parameters` (papermill's convention).")
    try:
        return ast.parse(cell.source)
    except SyntaxError as e:
        raise ConfigError(f"The `parameters` cell of {path.name!r} is not valid Python: {e}.", value=str(path),
                          fix="fix that cell.") from e


def check_parameters(path: Path, parameters: Mapping[str, Any]) -> list[str]:
    """Check each of `parameters` is declared in the notebook's `parameters` cell (and is not one the
    set-up cell decides), and is not text where the cell's default is a number or True/False (an int where
    a float is expected, None, and any other type are left to the notebook); returns the declared names."""
    declared = declared_parameters(path)
    reserved = sorted(set(parameters) & set(RESERVED))
    if reserved:
        raise InvalidParameter(f"{', '.join(reserved)} cannot be set for a cloud run: the set-up cell puts the "
                               "project (and its MLflow store) in the session's working folder.", value=reserved,
                               fix="leave it out; the runs come back with `labkit cloud … pull`.")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise InvalidParameter(f"{path.name} has no parameter(s) {', '.join(unknown)}.", value=unknown,
                               fix=f"use the ones its `parameters` cell declares: {', '.join(declared)}.")
    defaults = parameter_defaults(path)
    for name, value in parameters.items():
        default = defaults.get(name)
        if isinstance(value, str) and isinstance(default, bool | int | float):
            kind = ("True or False" if isinstance(default, bool) else "a whole number" if isinstance(default, int)
                    else "a number")
            raise InvalidParameter(f"{path.name}'s parameter {name} takes {kind} (its default is {default!r}), got "
                                   f"the text {value!r:.80}.", value=value,
                                   fix=f"pass {name} as {kind}, e.g. {name}={default!r} (-p {name}={default!r}).")
    return declared


@contextlib.contextmanager
def _quiet_papermill():
    """papermill warns about every comment it cannot parse in a `parameters` cell; nothing to act on here."""
    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def setup_source(job: CloudJob, command: str) -> str:
    return f"""\
# labkit cloud set-up, written by `{command}`. On Colab and Kaggle it installs labkit when the
# machine lacks it; then the MLflow store and every output go to this session's working folder.
import importlib.util
import os
import subprocess
import sys

LABKIT_INSTALL = {job.install!r}
in_cloud = bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.environ.get("COLAB_RELEASE_TAG")
                or "google.colab" in sys.modules)
if in_cloud and importlib.util.find_spec("labkit") is None:
    print("installing labkit:", LABKIT_INSTALL)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", LABKIT_INSTALL], check=True)
    importlib.invalidate_caches()

from labkit.cloud.runtime import start

labkit_cloud = start({pprint.pformat(job.to_dict(), width=100, sort_dicts=False)})
"""


def export_source(platform: str, command: str) -> str:
    return f"""\
# labkit cloud export, written by `{command}`: this session's runs as one bundle
# ({BUNDLE_NAME} in the working folder), which `labkit cloud {platform} pull` imports.
labkit_cloud.export()
"""


def prepare_notebook(source: Path, dest: Path, parameters: Mapping[str, Any], job: CloudJob, *,
                     command: str, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `dest`: `source` with `parameters` injected by papermill (not executed), the set-up cell
    first and the export cell last, `metadata` merged into the notebook's metadata."""
    import nbformat
    import papermill

    from labkit.notebooks import kernel_and_language

    dest.parent.mkdir(parents=True, exist_ok=True)
    kernel, language = kernel_and_language(nbformat.read(source, as_version=4))
    with tempfile.TemporaryDirectory(prefix="labkit-cloud-") as tmp:
        out = Path(tmp) / source.name
        with _quiet_papermill():
            papermill.execute_notebook(str(source), str(out), parameters=dict(parameters), prepare_only=True,
                                       kernel_name=kernel, language=language, progress_bar=False, log_output=False)
        book = nbformat.read(out, as_version=4)
    setup = nbformat.v4.new_code_cell(setup_source(job, command), metadata={"tags": [SETUP_TAG]})
    export = nbformat.v4.new_code_cell(export_source(job.platform, command), metadata={"tags": [EXPORT_TAG]})
    book.cells = [setup, *book.cells, export]
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    pm = book.metadata.get("papermill", {})
    # papermill records absolute local paths; the cloud needs none of them
    pm.update(input_path=source.name, output_path=dest.name)
    if not book.metadata.get("kernelspec"):  # a notebook written by a script: say which kernel runs it
        book.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": language}
    book.metadata.update(dict(metadata or {}))
    nbformat.validate(book)
    nbformat.write(book, dest)
    return dest


# -- where the cloud installs labkit from ------------------------------------------------------


@dataclass(frozen=True)
class GitHub:
    """A checkout whose remote is on GitHub."""

    org: str
    repo: str
    branch: str | None
    commit: str | None
    toplevel: Path

    def colab_url(self, path: Path) -> str:
        rel = path.resolve().relative_to(self.toplevel).as_posix()
        ref = self.branch or self.commit
        return f"https://colab.research.google.com/github/{self.org}/{self.repo}/blob/{ref}/{rel}"


_GITHUB = re.compile(r"^(?:https?://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
                     r"([^/]+)/([^/]+?)(?:\.git)?/?$")


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def github(folder: Path) -> GitHub | None:
    """The GitHub repository `folder` is checked out from (its `origin`, else its first remote), or None."""
    if _git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    remotes = (_git(folder, "remote") or "").split()
    if not remotes:
        return None
    url = _git(folder, "remote", "get-url", "origin" if "origin" in remotes else remotes[0]) or ""
    m = _GITHUB.match(url)
    if not m:
        return None
    return GitHub(org=m.group(1), repo=m.group(2), branch=_git(folder, "symbolic-ref", "--short", "HEAD"),
                  commit=_git(folder, "rev-parse", "HEAD"),
                  toplevel=Path(_git(folder, "rev-parse", "--show-toplevel") or folder).resolve())


def default_install() -> str:
    """labkit's own GitHub repository at the checked-out commit, as a pip requirement."""
    import labkit

    project = Path(labkit.__file__).resolve().parent.parent
    gh = github(project) if (project / "pyproject.toml").is_file() else None
    if gh is None or gh.commit is None:
        raise CloudError("labkit does not know where the cloud machine should install it from: this labkit is "
                         "not a git checkout with a GitHub remote.", value=str(project),
                         fix="pass --install with a pip requirement the cloud can reach, e.g. "
                             "'git+https://github.com/ORG/REPO@COMMIT' (with --internet on Kaggle), or the path of "
                             "a wheel in an attached Kaggle dataset "
                             "('/kaggle/input/NAME/labkit-0.1.0-py3-none-any.whl').")
    sub = project.relative_to(gh.toplevel).as_posix()
    return f"git+https://github.com/{gh.org}/{gh.repo}@{gh.commit}" + (f"#subdirectory={sub}" if sub != "." else "")


# -- credentials never go into what is uploaded --------------------------------------------------


def known_secrets() -> list[str]:
    """The Kaggle credentials this machine holds, read from the client's usual places (no network)."""
    found = [os.environ.get("KAGGLE_KEY", "")]
    token = os.environ.get("KAGGLE_API_TOKEN", "")
    if token and Path(token).is_file():
        token = Path(token).read_text().strip()
    found.append(token)
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), Path.home() / ".kaggle",
            Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"]
    for d in filter(None, dirs):
        cfg = Path(d) / "kaggle.json"
        try:
            found.append(str(json.loads(cfg.read_text()).get("key", "")))
        except (OSError, ValueError, AttributeError):
            pass
        for name in ("access_token", "access_token.txt"):
            try:
                found.append((Path(d) / name).read_text().strip())
            except OSError:
                pass
    return sorted({s for s in found if len(s) >= 8})


def assert_no_secret(files: Iterable[Path], secrets: Sequence[str] | None = None) -> None:
    """Raise when any of `files` holds a credential (a parameter carrying a key, say)."""
    secrets = known_secrets() if secrets is None else [s for s in secrets if s]
    for path in files:
        text = path.read_bytes()
        for s in secrets:
            if s.encode() in text:
                raise CloudError(f"{path} contains a Kaggle credential; it would be uploaded with the notebook.",
                                 value=str(path), fix="pass credentials through KAGGLE_API_TOKEN or ~/.kaggle, "
                                     "never as a notebook parameter.")


__all__ = ["EXPORT_TAG", "SETUP_TAG", "CloudJob", "GitHub", "assert_no_secret", "check_parameters",
           "declared_parameters", "default_install", "github", "known_secrets", "parameter_defaults",
           "parse_parameters", "parse_value", "prepare_notebook", "resolve_notebook"]
