"""A warning labkit raises during a command prints as one `labkit COMMAND: warning: …` line; other libraries'
warnings keep Python's own form (file, line, category)."""

from __future__ import annotations

import warnings
from pathlib import Path

import labkit
from labkit.cli._boundary import _LabkitWarnings

INSIDE = str(Path(labkit.__file__).parent / "training" / "dreambooth.py")


def test_labkits_own_warning_is_one_line_and_others_keep_pythons_form(capsys):
    shown = []  # Python's own printer, as a command line has it (pytest records warnings in its place)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = python = lambda *a, **k: shown.append(warnings.formatwarning(*a[:4]))
        with _LabkitWarnings("train dreambooth"):
            warnings.warn_explicit("'sks' splits into 2 pieces\nrarer words: olis", UserWarning, INSIDE, 458)
            warnings.warn_explicit("a library's own warning", FutureWarning, "/somewhere/else/lib.py", 7)
        assert warnings.showwarning is python  # put back when the command ends
    err = capsys.readouterr().err
    assert err == "labkit train dreambooth: warning: 'sks' splits into 2 pieces rarer words: olis\n"
    assert len(shown) == 1 and "/somewhere/else/lib.py:7: FutureWarning: a library's own warning" in shown[0]
