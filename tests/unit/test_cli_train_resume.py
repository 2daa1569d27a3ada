"""What `labkit train` prints when a run is stopped: the command to continue it, with the settings it was
started with (a resume under other settings is refused, so the hint must carry them)."""

from __future__ import annotations

import shlex
from types import SimpleNamespace

from labkit.cli import build_parser
from labkit.cli.train import _report_adapter


def _args(argv):
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    return args


def test_a_stopped_training_prints_the_command_that_resumes_it_with_the_same_settings(capsys):
    argv = ["train", "lora", "my data", "--output", "sig", "--steps", "300", "--rank", "4"]
    assert _report_adapter(_args(argv), SimpleNamespace(status="interrupted", step=12)) == 130
    hint = capsys.readouterr().err.strip()
    assert hint == "stopped at step 12; continue with: labkit train lora 'my data' --output sig --steps 300 " \
                   "--rank 4 --resume"
    again = _args(shlex.split(hint.split("continue with: labkit ", 1)[1]))
    assert (again.steps, again.rank, again.resume, again.data) == (300, 4, True, "my data")
    assert _report_adapter(_args(argv + ["--resume"]), SimpleNamespace(status="interrupted", step=20)) == 130
    assert capsys.readouterr().err.count("--resume") == 1  # stopped again: the same command, not --resume twice


def test_a_training_stopped_by_a_signal_prints_the_same_hint(capsys):
    """Ctrl-C or SIGTERM raise the engine's TrainingStopped with the result: the command still says how to go on."""
    from labkit.training import TrainingStopped

    def stopped():
        raise TrainingStopped("SIGTERM", SimpleNamespace(status="interrupted", step=7, checkpoint="ckpt"))

    argv = ["train", "lora", "data", "--output", "sig"]
    assert _report_adapter(_args(argv), stopped) == 143  # 128 + SIGTERM, as every labkit command stopped so
    assert capsys.readouterr().err.strip() == "stopped by SIGTERM at step 7; continue with: labkit train lora data " \
                                               "--output sig --resume"

    def ctrl_c():
        raise TrainingStopped("SIGINT", SimpleNamespace(status="interrupted", step=3, checkpoint="ckpt"))

    assert _report_adapter(_args(argv), ctrl_c) == 130
    assert capsys.readouterr().err.startswith("interrupted by the user (Ctrl-C) at step 3; continue with: ")
