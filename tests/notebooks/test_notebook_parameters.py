"""Notebook parameters are checked before any work (`labkit.notebooks.check_parameters` in the cell after the
`parameters` cell): papermill's `-p seeds 3` passes a number and `-p size "[32, 32]"` a text, and a notebook that
used them unchecked failed minutes later inside a library call, or quietly did something else. Also the two other
notebook helpers: data made once per arguments (`cached_folder`) and the files this run wrote (`NewFiles`)."""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labkit.errors import ConfigError, InvalidParameter
from labkit.notebooks import MADE_BY, NewFiles, cached_folder, check_parameters, notebook_parameters

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHECKED = ["00_quickstart", "01_image_lab", "02_video_lab", "03_controller", "04_compare_runs",
           "05_compliance_report", "06_lora_training", "07_controlnet", "08_rest_api", "09_dreambooth",
           "10_lab_panels"]


# -- check_parameters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "spec", "message", "fix"), [
    ("seeds", 3, "list of int >= 0", "Parameter seeds must be a list of whole numbers, each at least 0, got int 3.",
     "seeds = [3]; from the command line, papermill … -y 'seeds: [3]'"),
    ("size", "[32, 32]", "size or None", "Parameter size must be [width, height] (two positive whole numbers) or "
     "None, got str '[32, 32]'.", "size = [32, 32]; from the command line, papermill … -y 'size: [32, 32]' "
     "(papermill's -p passes '[32, 32]' as text)"),
    ("controllers", "rules", "list of str", "Parameter controllers must be a list of strings, got str 'rules'.",
     """controllers = ['rules']; from the command line, papermill … -y 'controllers: ["rules"]'"""),
    ("n", -1, "int >= 1", "Parameter n must be a whole number of at least 1, got int -1.",
     "set n to a whole number of at least 1 (papermill … -p n VALUE)"),
    ("learning_rate", "fast", "number > 0", "Parameter learning_rate must be a number greater than 0, got str 'fast'.",
     "-p learning_rate VALUE"),
    ("box", [6, 30, 30], "list of 4 int >= 0", "Parameter box must be a list of 4 whole numbers, each at least 0, "
     "got list [6, 30, 30].", "-y 'box: [...]'"),
    ("mixed_precision", "fp32", "one of no, fp16, bf16 or None",
     "Parameter mixed_precision must be one of 'no', 'fp16', 'bf16' or None, got str 'fp32'.", "'bf16' or None"),
    ("train_text_encoder", "yes", "bool", "Parameter train_text_encoder must be True or False, got str 'yes'.",
     "-p train_text_encoder VALUE"),
    ("seeds", [], "list of int", "Parameter seeds must be a list of whole numbers, got list [].", "seeds"),
    ("class_prompt", 3, "str or list of str or None",
     "Parameter class_prompt must be text, a list of strings or None, got int 3.", "class_prompt"),
])
def test_a_parameter_in_the_wrong_form_is_refused_by_name_with_its_value_and_fix(name, value, spec, message, fix):
    with pytest.raises(InvalidParameter) as err:
        check_parameters({name: value}, **{name: spec})
    assert err.value.message == message
    assert err.value.value == value and fix in err.value.fix


def test_values_of_the_right_form_pass():
    check_parameters({"seeds": [0, 1], "size": None, "box": (6, 30, 30, 54), "n": 1, "lr": 2e-3, "weights": [0, -0.5],
                      "mp": None, "root": Path("."), "cp": ["a circle"], "flag": False},
                     seeds="list of int >= 0", size="size or None", box="list of 4 int >= 0", n="int >= 1",
                     lr="number > 0", weights="list of number", mp="one of no, fp16, bf16 or None",
                     root="path or None", cp="str or list of str or None", flag="bool")
    check_parameters({"size": [32, 48]}, size="size")


@pytest.mark.parametrize("value", [True, 1.0, float("nan")])
def test_a_whole_number_is_an_int_not_a_bool_or_a_float(value):
    with pytest.raises(InvalidParameter, match="must be a whole number"):
        check_parameters({"n": value}, n="int")


def test_a_spec_the_grammar_does_not_know_or_a_parameter_the_notebook_never_sets_is_the_notebooks_fault():
    with pytest.raises(ConfigError, match="cannot read the spec 'list of ints' of seeds"):
        check_parameters({"seeds": [0]}, seeds="list of ints")
    with pytest.raises(ConfigError, match="never sets steps"):
        check_parameters({}, steps="int")


def _parameters_and_check(name: str) -> tuple[ast.Module, ast.Call]:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert "parameters" in book.cells[0].metadata.get("tags", [])
    check = book.cells[1]
    calls = [n for n in ast.walk(ast.parse(check.source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "check_parameters"]
    assert check.cell_type == "code" and len(calls) == 1, f"{name}: the cell after `parameters` checks them"
    return ast.parse(book.cells[0].source), calls[0]


@pytest.mark.parametrize("name", CHECKED)
def test_each_notebook_checks_every_parameter_it_declares_and_its_defaults_pass(name):
    cell, call = _parameters_and_check(name)
    assert [k.arg for k in call.keywords] == list(notebook_parameters(NOTEBOOKS / f"{name}.ipynb")), name
    defaults: dict = {}
    exec(compile(cell, name, "exec"), defaults)  # the parameters cell as a user runs it
    check_parameters(defaults, **{k.arg: ast.literal_eval(k.value) for k in call.keywords})


def _papermill(name: str, out: Path, project: Path, *args: str) -> subprocess.CompletedProcess:
    """The papermill command line, as a user types it (`-p NAME VALUE` goes through papermill's own parsing)."""
    return subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"), str(out),
                           "-k", "python3", "--cwd", str(project), "-p", "root", str(project), *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.notebook
@pytest.mark.parametrize(("name", "args", "message"), [
    ("06_lora_training", ["-p", "seeds", "3", "-p", "steps", "2"], "Parameter seeds must be a list of whole numbers"),
    ("03_controller", ["-p", "size", "[32, 32]", "-p", "render", "True"], "Parameter size must be [width, height]"),
    ("03_controller", ["-p", "controllers", "rules"], "Parameter controllers must be a list of strings, got str"),
    ("04_compare_runs", ["-p", "n", "-1"], "Parameter n must be a whole number of at least 1, got int -1"),
    # notebooks that used these unchecked: `for s in 3` failed after the lab opened, tuple("[32, 32]") inside a render
    ("01_image_lab", ["-p", "seeds", "3"], "Parameter seeds must be a list of whole numbers, each at least 0, "
     "got int 3"),
    ("02_video_lab", ["-p", "size", "[32, 32]"], "Parameter size must be [width, height] (two positive whole numbers) "
     "or None, got str '[32, 32]'"),
    ("05_compliance_report", ["-p", "n", "0"], "Parameter n must be a whole number of at least 1, got int 0"),
])
def test_a_bad_command_line_parameter_stops_the_notebook_at_its_check(migrated_store, project, tmp_path, name, args,
                                                                      message):
    out = tmp_path / "out.ipynb"
    done = _papermill(name, out, project, *args)
    assert done.returncode != 0, done.stdout + done.stderr
    book = nbformat.read(out, as_version=4)
    [failed] = [c for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert "check_parameters(globals()" in failed.source   # nothing ran past the check
    [error] = [o for o in failed.outputs if o.get("output_type") == "error"]
    assert error.ename == "InvalidParameter" and error.evalue.startswith(message), error.evalue
    assert "Fix: in the parameters cell, set" in error.evalue
    assert not list((project / "mlruns").glob("artifacts/*")) and not (project / "lora").exists()


# -- cached_folder -----------------------------------------------------------------------------------------


def _write(folder: Path, n: int, *, licence: str = "CC0-1.0", delay: float = 0.0) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i}.txt").write_text(licence)
        time.sleep(delay)


def _write_broken(folder: Path) -> None:
    _write(folder, 2)
    raise RuntimeError("disk full")


def test_cached_folder_is_made_once_per_arguments_and_other_arguments_get_their_own(tmp_path):
    a = cached_folder(tmp_path, "hexagon-data", _write, 3, licence="CC0-1.0")
    assert sorted(p.name for p in a.iterdir()) == ["0.txt", "1.txt", "2.txt", MADE_BY]
    made_by = json.loads((a / MADE_BY).read_text())
    assert made_by["args"] == [3] and made_by["kwargs"] == {"licence": "CC0-1.0"}
    assert made_by["write"].endswith("._write")
    (a / "0.txt").write_text("touched")
    assert cached_folder(tmp_path, "hexagon-data", _write, 3, licence="CC0-1.0") == a  # reused, not rewritten
    assert (a / "0.txt").read_text() == "touched"
    b = cached_folder(tmp_path, "hexagon-data", _write, 2, licence="CC0-1.0")
    c = cached_folder(tmp_path, "hexagon-data", _write, 3, licence="CC-BY-NC-4.0")
    assert len({a, b, c}) == 3 and all(p.name.startswith("hexagon-data-") for p in (a, b, c))
    assert len(list(b.glob("*.txt"))) == 2 and (c / "0.txt").read_text() == "CC-BY-NC-4.0"


def test_a_writer_that_fails_leaves_no_folder_that_looks_done(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        cached_folder(tmp_path, "data", _write_broken)
    assert list(tmp_path.iterdir()) == []
    assert cached_folder(tmp_path, "data", _write, 1).is_dir()


def _make(parent: str) -> str:
    return str(cached_folder(Path(parent), "data", _write, 20, delay=0.01))


def test_two_processes_making_the_same_data_at_once_get_one_whole_folder(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_make, [str(tmp_path)] * 2)
    assert a == b
    assert [p.name for p in tmp_path.iterdir()] == [Path(a).name]  # no temporary folder left behind
    assert len(list(Path(a).glob("*.txt"))) == 20


# -- NewFiles ----------------------------------------------------------------------------------------------


def test_new_files_reports_what_was_written_since_it_was_made_once_each(tmp_path):
    folder = tmp_path / "validation"
    folder.mkdir()
    old, kept = folder / "step-000004.png", folder / "step-000002.png"
    old.write_bytes(b"earlier run")
    kept.write_bytes(b"earlier run")
    past = time.time() - 60
    os.utime(old, (past, past))
    os.utime(kept, (past, past))
    fresh = NewFiles(folder, "step-*.png")
    assert fresh() == []
    kept.write_bytes(b"this run")                        # rewritten under the same name
    (folder / "step-000003.png").write_bytes(b"this run")
    (folder / "notes.json").write_text("{}")
    assert [p.name for p in fresh()] == ["step-000002.png", "step-000003.png"]
    kept.write_bytes(b"this run, again")
    assert fresh() == []                                 # each once
    assert NewFiles(tmp_path / "missing")() == []
