"""The error boundary of `labkit` (see `labkit.cli`'s docstring): usage errors and `LabkitError`s as one line
with exit status 2, unexpected errors as one line naming the log file that holds the traceback, SIGTERM as an
interrupt. `labkit.cli.main` is its only caller.

Example: `_say("generate", "The size 12x12 is …")` prints `labkit generate: The size 12x12 is …` to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.config import is_utf8, printable
from labkit.errors import InvalidParameter


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other error of the CLI."""

    def error(self, message: str):  # type: ignore[override]
        fix = "" if "Fix:" in message else f" Fix: see `{self.prog} --help`."
        self.exit(2, f"{printable(self.prog)}: {_one_line(printable(message))}{fix}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        """As argparse's, but an argument no parser took is reported by the command it was given to (argparse
        names the top-level `labkit` and its --help), with the close option names that command has."""
        import difflib

        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = self._command_parser(parsed)
            options = [o for a in leaf._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
            close = [m for x in extras if x.startswith("--")
                     for m in difflib.get_close_matches(x.split("=", 1)[0], options, n=1, cutoff=0.75)]
            hint = f" (did you mean {', '.join(dict.fromkeys(close))}?)" if close else ""
            leaf.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The parser of the (sub)command `parsed` names, e.g. the one of `labkit compliance report`."""
        parser: argparse.ArgumentParser = self
        words = _command_name(parsed).split() if getattr(parsed, "command", None) else []
        for word in words:
            sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            if sub is None or word not in sub.choices:
                break
            parser = sub.choices[word]
        return parser


def _unexpected(command: str, args: argparse.Namespace, argv: Sequence[str] | None, e: Exception) -> int:
    log, why = _write_error_log(args, argv, e)
    where = f"full traceback in {log}" if log else f"the traceback could not be written: {why}"
    _say(command, f"unexpected error: {type(e).__name__}: {_short(str(e))} ({where})")
    return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush into a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in a test): nothing to flush
        pass


def _command_name(args: argparse.Namespace) -> str:
    """'generate', 'compliance dataset', 'cloud kaggle push', …"""
    words = [args.command]
    for key in ("compliance_command", "train_command", "compare_command", "cloud_command", "kaggle_command",
                "colab_command", "serve_command", "keys_command"):
        if getattr(args, key, None):
            words.append(getattr(args, key))
    return " ".join(words)


def _say(command: str, message: str) -> None:
    prefix = f"labkit {command}".strip()
    print(f"{prefix}: {_one_line(printable(message))}", file=sys.stderr, flush=True)


class _LabkitWarnings:
    """While a command runs, a warning labkit itself raises (say, a DreamBooth identifier the tokenizer splits)
    prints as one line `labkit COMMAND: warning: …`, not as Python's file, line and source excerpt; warnings of
    other libraries keep Python's form."""

    def __init__(self, command: str) -> None:
        self.command, self.previous = command, None

    def __enter__(self) -> _LabkitWarnings:
        import os
        import warnings

        import labkit

        here = os.path.dirname(labkit.__file__) + os.sep
        self.previous = previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if str(filename).startswith(here):
                _say(self.command, f"warning: {message}")
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return self

    def __exit__(self, *exc: object) -> None:
        import warnings

        warnings.showwarning = self.previous


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _short(text: str, limit: int = 400) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest → how the user wrote it ('--out', 'prompt'), over every sub-command."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for dest, name in _option_names(sub).items():
                    names.setdefault(dest, name)
        elif action.dest not in (argparse.SUPPRESS, "help"):
            longs = [o for o in action.option_strings if o.startswith("--")]
            names.setdefault(action.dest, (longs or action.option_strings or [action.metavar or action.dest])[0])
    return names


def _check_text(args: argparse.Namespace, names: dict[str, str]) -> None:
    """Every text argument is UTF-8: prompts, paths and names end up in JSON records, MLflow and PNG
    metadata, none of which can hold the lone surrogates that undecodable argv bytes become."""
    for dest, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, str) and not is_utf8(item):
                name = names.get(dest, dest)
                raise InvalidParameter(f'The argument {name} = "{printable(item)}" is not valid UTF-8 text.',
                                       value=printable(item),
                                       fix=f"pass {name} as UTF-8 text (check the terminal's or the script's "
                                           "encoding; LANG=C.UTF-8).")



class _Terminated(KeyboardInterrupt):
    """The KeyboardInterrupt SIGTERM raises. Its `reason` is what an open run records (`Tracker.run` and the sweep
    runner read it; without one they write Ctrl-C), its `signal` what a command reports: the training engine's
    `TrainingStopped` carries the same two."""

    signal = "SIGTERM"
    reason = "stopped by SIGTERM"


class _SigtermAsInterrupt:
    """While a command runs, SIGTERM (`kill`, a scheduler, a closing service) raises KeyboardInterrupt (`_Terminated`)
    in the main thread: an open run ends KILLED, "stopped by SIGTERM", and outputs are cleaned up the way Ctrl-C
    does it.

    Handlers nest: the training engine and `labkit ui` install their own for their loops and restore this
    one after. A SIGTERM arriving while an interrupt is already being handled (a checkpoint being saved,
    a run being closed) ends the process at once, as it would without labkit."""

    def __init__(self) -> None:
        self.received = False
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> _SigtermAsInterrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGTERM, self._handle)
                self.installed = True
            except (ValueError, OSError):  # no signals here (an embedded interpreter): nothing to do
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self.received or isinstance(sys.exc_info()[1], KeyboardInterrupt):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.received = True
        raise _Terminated("SIGTERM")

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)


def _write_error_log(args: argparse.Namespace, argv: Sequence[str] | None, exc: BaseException
                     ) -> tuple[Path | None, str]:
    """Write the traceback of an unexpected error to a log file; (its path, "") or (None, why not).

    The file goes to `<project>/mlruns/logs/` when the project has an `mlruns/` folder (no folder is made
    in a directory that is not a project), else to `<tmp>/labkit-logs/`."""
    import datetime
    import tempfile
    import traceback

    from labkit import __version__

    now = datetime.datetime.now(datetime.UTC)
    command = [printable(a) for a in (sys.argv[1:] if argv is None else argv)]
    text = (f"labkit {__version__}, Python {sys.version.split()[0]}, pid {os.getpid()}\n"
            f"time: {now.isoformat()}\ncwd: {printable(os.getcwd())}\ncommand: labkit {' '.join(command)}\n\n"
            + printable("".join(traceback.format_exception(exc))))
    folders = []
    try:
        from labkit.config import find_project_root

        root = Path(args.root).expanduser() if getattr(args, "root", None) else find_project_root()
        if (root / "mlruns").is_dir():
            folders.append(root / "mlruns" / "logs")
    except Exception:  # a bad root or $LABKIT_ROOT: the temporary folder will do
        pass
    folders.append(Path(tempfile.gettempdir()) / "labkit-logs")
    why = "no folder to write to"
    stem = f"labkit-{now.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):
                path = folder / (stem + (f"-{n}" if n else "") + ".log")
                try:
                    with open(path, "x", encoding="utf-8") as f:
                        f.write(text)
                    return path, ""
                except FileExistsError:
                    continue
        except OSError as e:
            why = f"{folder}: {e.strerror or e}"
    return None, why
