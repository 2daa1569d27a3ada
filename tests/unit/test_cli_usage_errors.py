"""A mistyped option is reported by the command it was given to, with that command's --help and the close name."""

from __future__ import annotations

import pytest

from labkit.cli import main


@pytest.mark.parametrize("argv, said", [
    (["compliance", "report", "--mode", "nosuch"],
     "labkit compliance report: unrecognized arguments: --mode nosuch Fix: see `labkit compliance report --help`."),
    (["generate", "a red circle", "--stpes", "3"],
     "labkit generate: unrecognized arguments: --stpes 3 (did you mean --steps?) Fix: see `labkit generate --help`."),
    (["train", "toy-base", "--vea-steps=3"],
     "labkit train toy-base: unrecognized arguments: --vea-steps=3 (did you mean --vae-steps?) "
     "Fix: see `labkit train toy-base --help`."),
    (["doctor", "extra"], "labkit doctor: unrecognized arguments: extra Fix: see `labkit doctor --help`."),
])
def test_an_unknown_argument_is_named_by_its_command(argv, said, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == said


def test_the_project_options_work_before_the_command_too(tmp_path, capsys):
    """`labkit --root X doctor` was 'invalid choice'; after the command the option still wins."""
    import json

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main(["--root", str(tmp_path / "a"), "doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracking"]["uri"] == f"sqlite:///{tmp_path}/a/mlruns/mlflow.db"
    assert main(["--root", str(tmp_path / "a"), "doctor", "--json", "--root", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["tracking"]["uri"] == f"sqlite:///{tmp_path}/b/mlruns/mlflow.db"
