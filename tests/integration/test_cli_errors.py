"""Bad input through the `labkit` command: every case ends with one line on stderr naming the bad value and a fix,
never a traceback. Unexpected errors leave their traceback in a log file; SIGTERM ends an open run KILLED.

Most cases run in-process through `labkit.cli.main` (fast); a handful as real subprocesses (real argv bytes,
real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import labkit.cli as cli
from labkit.cli import main


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str) -> str:
    assert rc != 0
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def paths(project: Path) -> dict[str, str]:
    """A file where folders are expected, a folder where files are, and paths under a file."""
    (project / "a-file").write_text("x")
    (project / "a-folder").mkdir()
    (project / "latin-1.txt").write_bytes(b"caf\xe9 au lait\n")
    return {"file": str(project / "a-file"), "folder": str(project / "a-folder"),
            "latin1": str(project / "latin-1.txt"), "under-file": str(project / "a-file" / "sub"),
            "zip-under-file": str(project / "a-file" / "b.zip")}


# (argv with {placeholders}, words the one line must contain: the bad value, the option, the fix)
CASES = [
    (["generate", "\udcff"], ["prompt", "\\xff", "UTF-8", "Fix:"]),
    (["generate", "ok", "--negative", "bad \udce9"], ["--negative", "\\xe9", "Fix:"]),
    (["generate", "ok", "--model", "\ud800"], ["--model", "\\ud800", "Fix:"]),
    (["plan", "a red \udcff circle"], ["request", "\\xff", "Fix:"]),
    (["compliance", "dataset", "\udcfe"], ["path", "\\xfe", "Fix:"]),
    (["generate", "ok", "--out", "{file}"], ["--out", "{file}", "is a file", "Fix:"]),
    (["generate", "ok", "--out", "{under-file}"], ["--out", "{file}", "is a file", "Fix:"]),
    (["video", "ok", "--out", "{file}"], ["--out", "{file}", "Fix:"]),
    (["ask", "ok", "--out", "{file}"], ["--out", "{file}", "Fix:"]),
    (["demo", "--out", "{file}"], ["--out", "{file}", "Fix:"]),
    (["compliance", "dataset", "{folder}", "--chart", "{folder}"], ["--chart", "{folder}", "is a folder", "Fix:"]),
    (["compliance", "dataset", "{folder}", "--chart", "{under-file}"], ["--chart", "{file}", "Fix:"]),
    (["compliance", "sign", "x.png", "--out", "{folder}"], ["--out", "{folder}", "Fix:"]),
    (["compliance", "keygen", "--out", "{file}"], ["--out", "{file}", "Fix:"]),
    (["export", "labkit", "--out", "{folder}"], ["--out", "{folder}", "Fix:"]),
    (["export", "labkit", "--out", "{zip-under-file}"], ["--out", "{file}", "Fix:"]),
    (["train", "toy-base", "--output", "{file}"], ["--output", "{file}", "Fix:"]),
    (["train", "toy-motion", "--output", "{under-file}"], ["--output", "{file}", "Fix:"]),
    (["train", "lora", "{folder}", "--output", "{file}"], ["--output", "{file}", "Fix:"]),
    (["generate", "ok", "--steps", "abc"], ["--steps", "'abc'", "Fix:"]),
    (["generate", "ok", "--size", "64"], ["--size", "'64'", "Fix:"]),
    (["generate", "ok", "--seed", "1.5"], ["--seed", "'1.5'", "Fix:"]),
    (["train", "toy-motion", "--arch", "gan"], ["--arch", "'gan'", "Fix:"]),
    (["eval", "fid"], ["'fid'", "Fix:"]),
    (["eval", "toyworld", "--categories", "counts,position"], ["'counts'", "Fix:", "colour_attribution"]),
    (["eval", "toyworld", "--prompts", "{file}-missing"], ["{file}-missing", "Fix:"]),
    (["eval", "toyworld", "--prompts", "{latin1}"], ["{latin1}", "not UTF-8", "line 1", "Fix:"]),
    (["eval", "toyworld", "--controlnet", "x", "--scale=1.5"], ["toyworld takes no --controlnet, --scale", "Fix:"]),
    (["generate", "ok", "--model", "./no-such-folder"], ["no model folder or file at './no-such-folder'", "Fix:"]),
    (["generate", "ok", "--model", "{folder}/tuned.safetensors"], ["no model folder or file", "tuned", "sd15"]),
    (["video", "ok", "--model", "toyworld-motion", "--image", "{folder}"], ["{folder}", "is a folder", "Fix:"]),
    (["eval", "controller", "--n", "5"], ["controller takes no --n", "Fix:", "--controller"]),
    (["eval", "toyworld", "--prompts", "{folder}"], ["{folder}", "is a folder", "Fix:"]),
    (["bench", "gpu", "--suggest-table", "{file}-missing"], ["{file}-missing", "Fix:", "bench_gpu.csv"]),
    (["bench", "gpu", "--suggest-table", "{folder}"], ["{folder}", "is a folder", "Fix:"]),
    (["bench", "gpu", "--suggest-table", "{latin1}"], ["{latin1}", "not UTF-8", "Fix:"]),
    (["bench", "gpu", "--suggest-table", "{file}"], ["{file}", "not a `labkit bench gpu` table", "Fix:"]),
    (["train", "toy-base", "--data-mix", "single=1,five=1"], ["'five'", "Fix:", "relation"]),
    (["frobnicate"], ["'frobnicate'", "Fix:"]),
    ([], ["COMMAND", "Fix:"]),
    (["plan", "a red circle", "--mode", "resarch"], ["'resarch' (from --mode)", "Fix:", "research"]),
    (["doctor", "--root", "{file}"], ["{file}", "is a file", "Fix:"]),
    (["compliance", "report", "--tracking-uri", "./mlruns"], ["'./mlruns'", "file store", "Fix:"]),
    (["compliance", "report", "--tracking-uri", "sqlite:///{folder}"], ["{folder}", "not a database file", "Fix:"]),
    (["generate", "ok", "--out", "a" * 300], ["--out", "aaaa", "too long", "Fix:"]),
    (["compliance", "sign", "x.png", "--out", ""], ["--out", "empty path", "Fix:"]),
]


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(a)[:40] or "no-command" for a, _ in CASES])
def test_bad_argument_is_one_line_with_the_value_and_a_fix(capsys, paths, argv, words):
    argv = [a.format(**paths) if "{" in a else a for a in argv]
    line = assert_one_line_error(*run_main(capsys, *argv))
    for word in words:
        word = word.format(**paths) if "{" in word else word
        assert word in line, (word, line)


ENV_CASES = [
    ({"LABKIT_COMPLIANCE_MODE": "resarch"}, None, ["'resarch' (from $LABKIT_COMPLIANCE_MODE)", "Fix:"]),
    ({}, '[lab]\ncompliance_mode = "resarch"\n', ["'resarch' (from ", "labkit.toml [lab] compliance_mode)", "Fix:"]),
    ({}, "[lab]\ncompliance_mode = 5\n", ["labkit.toml", "compliance_mode = 5", "Fix:"]),
    ({}, "[tracking]\nuri = 5\n", ["labkit.toml", "[tracking] uri = 5", "Fix:"]),
    ({}, "[tracking]\nsystem_metrics_interval = \"fast\"\n", ["system_metrics_interval = 'fast'", "Fix:"]),
    ({}, "[tracking]\nexperiment = [1, 2]\n", ["experiment = [1, 2]", "Fix:"]),
    ({}, "x = = 1\n", ["labkit.toml is not valid TOML", "Fix:"]),
    ({"LABKIT_ROOT": "{file}"}, None, ["$LABKIT_ROOT", "{file}", "a file", "Fix:"]),
    ({"LABKIT_ROOT": "{file}-missing"}, None, ["{file}-missing", "does not exist", "Fix:"]),
    ({"MLFLOW_TRACKING_URI": "sqlite:///{folder}"}, None, ["$MLFLOW_TRACKING_URI", "{folder}", "Fix:"]),
]


@pytest.mark.parametrize(("env", "toml", "words"), ENV_CASES,
                         ids=[next(iter(e.values()), None) or t.splitlines()[-1] for e, t, _ in ENV_CASES])
def test_bad_configuration_is_one_line_with_the_source_and_a_fix(capsys, monkeypatch, project, paths, env, toml,
                                                                 words):
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**paths))
    if toml:
        (project / "labkit.toml").write_text(toml)
    command = ["compliance", "report"] if "MLFLOW_TRACKING_URI" in env else ["plan", "a red circle"]
    line = assert_one_line_error(*run_main(capsys, *command))
    for word in words:
        word = word.format(**paths) if "{" in word else word
        assert word in line, (word, line)


def test_a_mode_from_labkit_toml_is_checked_before_it_can_tag_a_run(capsys, project):
    """`compliance_mode = 5` used to render under `research` with the run tagged `5`."""
    (project / "labkit.toml").write_text("[lab]\ncompliance_mode = 5\n")
    rc, _, err = run_main(capsys, "generate", "a red circle", "--steps", "2")
    assert rc == 2 and "compliance_mode = 5 is not text" in err
    assert not (project / "mlruns" / "mlflow.db").exists(), "a run was opened"


def test_ui_compare_names_the_run_it_cannot_find_before_starting_a_server(capsys, migrated_store):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    with Lab(migrated_store, hardware=HardwareProfile.simulated(None)).run("only") as run:
        pass
    line = assert_one_line_error(*run_main(capsys, "ui", "--port", "1", "--compare", run.run_id[:8], "0123abcd"))
    assert "has no run '0123abcd' (nor a run of experiment 'labkit' whose id starts so)" in line
    assert "first characters" in line
    line = assert_one_line_error(*run_main(capsys, "ui", "--port", "1", "--compare", run.run_id))
    assert "Comparing needs at least two runs, got 1" in line


# -- unexpected errors: one line on the terminal, the traceback in a log file -----------------------------------


def _boom(args):
    def deeper():
        raise RuntimeError("boom in a helper")

    deeper()


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_project_log(capsys, monkeypatch, project):
    monkeypatch.setattr(cli.system, "cmd_doctor", _boom)
    rc, out, err = run_main(capsys, "doctor")
    assert rc == 1
    line = assert_one_line_error(rc, out, err)
    assert line.startswith("labkit doctor: unexpected error: RuntimeError: boom in a helper (full traceback in ")
    log = Path(line.split("(full traceback in ", 1)[1].rstrip(")"))
    assert log.parent == project / "mlruns" / "logs"
    assert log.name.startswith("labkit-") and log.name.endswith(f"-{os.getpid()}.log")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in deeper" in text and "RuntimeError: boom" in text
    assert "command: labkit doctor" in text


def test_without_a_project_the_log_goes_to_the_temporary_folder(capsys, monkeypatch, tmp_path):
    import tempfile

    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.chdir(bare)
    for var in ("LABKIT_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(cli.system, "cmd_doctor", _boom)
    line = assert_one_line_error(*run_main(capsys, "doctor"))
    log = Path(line.split("(full traceback in ", 1)[1].rstrip(")"))
    assert log.parent == tmp_path / "tmp" / "labkit-logs" and "RuntimeError" in log.read_text()
    assert not (bare / "mlruns").exists(), "a folder that is not a project got an mlruns/"


def test_an_unexpected_error_inside_a_run_fails_the_run_with_error_txt(capsys, monkeypatch, migrated_store,
                                                                     search_runs):
    def failing(args):
        with cli._lab(args).run("failing"):
            raise KeyError("no such thing")

    monkeypatch.setattr(cli.system, "cmd_doctor", failing)
    line = assert_one_line_error(*run_main(capsys, "doctor"))
    assert "unexpected error: KeyError: 'no such thing'" in line
    (run,) = search_runs(f"sqlite:///{migrated_store}/mlruns/mlflow.db")
    assert run.info.status == "FAILED"
    error_txt = Path(run.info.artifact_uri.removeprefix("file://")) / "error.txt"
    assert "KeyError" in error_txt.read_text()


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch, project):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.system, "cmd_doctor", interrupted)
    rc, out, err = run_main(capsys, "doctor")
    assert rc == 130 and err == "labkit doctor: interrupted.\n"


def test_sigterm_in_process_is_an_interrupt_and_the_handler_is_restored(capsys, monkeypatch, project):
    before = signal.getsignal(signal.SIGTERM)

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
        raise AssertionError("SIGTERM did not interrupt the command")

    monkeypatch.setattr(cli.system, "cmd_doctor", terminated)
    rc, out, err = run_main(capsys, "doctor")
    assert rc == 143 and err.startswith("labkit doctor: stopped by SIGTERM") and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) == before


# -- real processes ------------------------------------------------------------------------------------------------


def labkit_bytes(*args: bytes | str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], env=env, capture_output=True, timeout=timeout)


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "PYTHONPATH": str(Path(cli.__file__).parents[2])}


def test_a_prompt_that_is_not_utf8_in_a_real_process(cli_env):
    out = labkit_bytes("generate", b"a \xff circle", env=_env(cli_env))
    err = out.stderr.decode()
    assert out.returncode == 2 and b"Traceback" not in out.stderr
    assert err.splitlines() == [err.strip()] and "prompt" in err and "\\xff" in err and "Fix:" in err


def test_out_naming_a_file_in_a_real_process(cli_env, project):
    (project / "taken").write_text("x")
    out = labkit_bytes("generate", "a red circle", "--out", str(project / "taken"), env=_env(cli_env))
    err = out.stderr.decode()
    assert out.returncode == 2 and len(err.splitlines()) == 1 and str(project / "taken") in err and "Fix:" in err
    assert (project / "taken").read_text() == "x"


def test_a_bad_mode_in_labkit_toml_in_a_real_process(cli_env, project):
    (project / "labkit.toml").write_text('[lab]\ncompliance_mode = "opne"\n')
    out = labkit_bytes("plan", "a red circle", env=_env(cli_env))
    err = out.stderr.decode()
    assert out.returncode == 2 and len(err.splitlines()) == 1
    assert f"'opne' (from {project / 'labkit.toml'} [lab] compliance_mode)" in err


SLOW_COMMAND = """
import sys, time
import labkit.cli as cli

def slow(args):
    with cli._lab(args).run("slow") as run:
        print(run.run_id, flush=True)
        time.sleep(120)
    return 0

cli.system.cmd_doctor = slow
sys.exit(cli.main(["doctor"]))
"""


def test_sigterm_during_a_command_ends_its_run_killed(cli_env, migrated_store, search_runs):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_COMMAND], env=_env(cli_env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert err.splitlines() == ["labkit doctor: stopped by SIGTERM (an open run ends KILLED)."]
    (run,) = search_runs(f"sqlite:///{migrated_store}/mlruns/mlflow.db")
    assert run.info.run_id == run_id and run.info.status == "KILLED"


ENGINE_COMMAND = """
import sys, time
import labkit.cli as cli
from labkit.training.engine import _SignalsAsInterrupt

def train(args):
    sigterm = _SignalsAsInterrupt()  # what the engine's Trainer.fit installs around its loop
    sigterm.install()
    try:
        print("training", flush=True)
        time.sleep(120)
    except KeyboardInterrupt as e:
        sigterm.release()
        print(f"engine caught {e}; saving a checkpoint", flush=True)
        time.sleep(120)
    return 130

cli.system.cmd_doctor = train
sys.exit(cli.main(["doctor"]))
"""


def test_the_training_engine_keeps_its_own_sigterm_handling_under_the_cli(cli_env, project):
    """The engine's handler takes the first SIGTERM (checkpoint path); a second one during the save still ends
    the process at once, as it does without the CLI's handler."""
    proc = subprocess.Popen([sys.executable, "-c", ENGINE_COMMAND], env=_env(cli_env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "training", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "engine caught training stopped by SIGTERM; saving a checkpoint"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM and "Traceback" not in err


# -- property-based: arbitrary values for the options of cheap commands ---------------------------------------------


class _WouldRender(BaseException):
    """Raised by the stand-in renderer once the plan validated: the real one would load the model now."""


@pytest.fixture
def validate_only(monkeypatch):
    """`render` that validates the plan (resolving the model from the catalogue, loading nothing) and stops."""
    import labkit.render

    def render(lab, plan, **kwargs):
        labkit.render.complete(lab, plan, kwargs.get("config"))
        raise _WouldRender

    monkeypatch.setattr(labkit.render, "render", render)


def check_any_outcome(capsys, argv: list[str]) -> None:
    try:
        rc = main(argv)
        event(f"exit {rc}")
    except _WouldRender:
        rc = 0
        event("validated, would render")
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if rc != 0:
        assert len(err.splitlines()) == 1, (argv, err)
        assert err.startswith("labkit"), err


text = st.text(max_size=30)  # includes lone surrogates, as argv bytes that are not UTF-8 decode to
number_text = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats().map(str), text)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def optional(strategy):
    return st.one_of(st.none(), strategy)


@FAST
@given(prompt=st.one_of(st.just("a red circle on the left"), text),
       steps=optional(st.one_of(st.integers(-5, 300).map(str), text)),
       size=optional(st.one_of(st.tuples(st.integers(-64, 4096), st.integers(-64, 4096)).map("{0[0]}x{0[1]}".format),
                               text)),
       seed=optional(st.one_of(st.integers(-2**70, 2**70).map(str), text)),
       guidance=optional(st.one_of(st.floats().map(str), text)))
def test_generate_options_any_value(capsys, migrated_store, validate_only, prompt, steps, size, seed, guidance):
    argv = ["generate", prompt]
    for option, value in (("--steps", steps), ("--size", size), ("--seed", seed), ("--guidance", guidance)):
        if value is not None:
            argv += [option, value]
    check_any_outcome(capsys, argv)


@FAST
@given(request=text, mode=st.one_of(st.sampled_from(["research", "open", "strict"]), text))
def test_plan_options_any_value(capsys, migrated_store, request, mode):
    check_any_outcome(capsys, ["plan", request, "--mode", mode, "--no-cache"])


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    from labkit.toyworld.data import write_dataset

    folder = tmp_path_factory.mktemp("data") / "shapes"
    write_dataset(folder, n=4, seed=0)
    return folder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.one_of(st.none(), text), chart=st.one_of(st.none(), text),
       mode=st.one_of(st.sampled_from(["research", "strict"]), text))
def test_compliance_dataset_options_any_value(capsys, project, small_dataset, path, chart, mode):
    argv = ["compliance", "dataset", str(small_dataset) if path is None else path, "--mode", mode]
    if chart is not None:
        # keep what the chart may write inside the project
        argv += ["--chart", "./" + chart.lstrip("/").replace("..", "__")]
    check_any_outcome(capsys, argv)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(experiment=text, uri=st.one_of(text, st.just("sqlite:///./mlruns/mlflow.db")))
def test_doctor_options_any_value(capsys, project, experiment, uri):
    check_any_outcome(capsys, ["doctor", "--json", "--experiment", experiment, "--tracking-uri", uri])
