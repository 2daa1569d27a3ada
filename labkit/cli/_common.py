"""What the command modules share: the `Lab` (or just its config) from the common options, JSON output, and
the argparse types that check sizes and output paths while the arguments are parsed (a bad one is a one-line
usage error, before anything loads).

Example: `p.add_argument("--out", type=_out_folder)` refuses `--out some-file` with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from labkit.config import is_utf8, printable


def _lab(args: argparse.Namespace):
    from labkit.compliance import resolve_mode
    from labkit.config import LabConfig
    from labkit.lab import Lab

    config = LabConfig.resolve(args.root, tracking_uri=args.tracking_uri, experiment=args.experiment,
                               compliance_mode=getattr(args, "mode", None))
    if config.compliance_mode_source == "argument":  # on the command line the argument is --mode
        config = dataclasses.replace(config, compliance_mode_source="--mode")
    # Checked here with where the mode came from (--mode, $LABKIT_COMPLIANCE_MODE, labkit.toml, default),
    # so a bad one is reported against its real source.
    resolve_mode(config.compliance_mode, source=config.compliance_mode_source)
    return Lab(config=config)


def _config(args: argparse.Namespace):
    from labkit.config import LabConfig

    return LabConfig.resolve(args.root, tracking_uri=args.tracking_uri, experiment=args.experiment)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 512x512)") from None
    return w, h


def _out_folder(text: str) -> str:
    """argparse type of an option naming a folder to write into (created if missing)."""
    path = _path_arg(text)
    try:
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a file, and a folder is expected. Fix: name a folder "
                                             "(it is created when missing), or move the file away.")
        _check_writable_parent(path, text, "folder")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: {e.strerror or e}. "
                                         "Fix: name another folder.") from None
    return text


def _out_file(text: str) -> str:
    """argparse type of an option naming a file to write (its folder created if missing)."""
    path = _path_arg(text)
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder, and a file name is expected. Fix: name a file "
                                             f"inside it, e.g. {str(path / 'out')!r} with the right extension.")
        _check_writable_parent(path.parent, text, "file")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: {e.strerror or e}. "
                                         "Fix: name another file.") from None
    return text


def _path_arg(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path. Fix: name a path, or leave the option out.")
    if "\x00" in text or not is_utf8(text):
        raise argparse.ArgumentTypeError(f"{printable(text)!r} is not a usable path (not UTF-8 text, or a NUL "
                                         "character). Fix: name the path in UTF-8 text.")
    return Path(text).expanduser()


def _check_writable_parent(path: Path, text: str, what: str) -> None:
    """The nearest folder that exists at or above `path` must be a folder labkit can write in."""
    folder = path if path.is_absolute() else Path.cwd() / path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {str(folder)!r} is a file, so the {what} cannot be created "
                                         "under it. Fix: choose a path under a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: the folder {str(folder)!r} is not writable. Fix: choose a "
                                         "folder you can write to, or change its permissions.")


def check_options(args: argparse.Namespace, options: dict[str, set[str]], command: str) -> None:
    """`InvalidParameter` for an option on the command line that another `args.which` of `command` reads (say
    `labkit eval toyworld --scale`): refused, not silently ignored. `options`: each choice's options."""
    from labkit.errors import InvalidParameter

    known = set().union(*options.values())
    given = {a.split("=", 1)[0] for a in getattr(args, "argv", None) or [] if a.startswith("--")}
    foreign = sorted((given & known) - options[args.which])
    if foreign:
        raise InvalidParameter(f"{command} {args.which} takes no {', '.join(foreign)}.", value=foreign,
                               fix=f"drop {'them' if len(foreign) > 1 else 'it'}: {command} {args.which} reads "
                                   f"{', '.join(sorted(options[args.which])) or 'none of these'}.")
