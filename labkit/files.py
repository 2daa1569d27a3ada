"""Reading the small text files users hand labkit (sweep specs, dataset metadata, catalogue and model
index files) so that a file that is missing, a folder, unreadable or not UTF-8 gives a `LabkitError`
naming the file, the line and the fix, never a `UnicodeDecodeError` from deep inside a parser.

Nothing heavy is imported here; this module is in the base floor beside `errors`.
"""

from __future__ import annotations

from pathlib import Path

from labkit.errors import ConfigError, LabkitError


def read_text(path: str | Path, *, what: str, fix: str, error: type[LabkitError] = ConfigError) -> str:
    """The text of `path` decoded as UTF-8 (a leading BOM is dropped).

    `what` names the file for the message ("sweep spec", "dataset metadata"…); `fix` says what a
    user should do when the file cannot be read at all; `error` is the `LabkitError` subclass raised.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"The {what} {str(path)!r} is a folder, not a file.", value=str(path), fix=fix)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"Cannot read the {what} {str(path)!r}: {e.strerror or e}.", value=str(path), fix=fix) from e
    return decode_utf8(data, path, what=what, error=error)


def decode_utf8(data: bytes, path: str | Path, *, what: str, error: type[LabkitError] = ConfigError) -> str:
    """`data` as UTF-8 text, or `error` naming the file, the line and the column of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise error(f"The {what} {str(path)!r} is not UTF-8 text: byte 0x{data[e.start]:02x} at line {line}, "
                    f"column {col} ({e.reason}).", value=f"{path}:{line}",
                    fix="save the file as UTF-8 (most editors: 'Save with encoding' → UTF-8), or replace the "
                        f"character at line {line}.") from None


__all__ = ["decode_utf8", "read_text"]


def card_licence(folder: str | Path) -> str | None:
    """The licence a model folder's card declares: the ``license:`` of README.md's YAML front matter (its
    ``license_name:`` when that is "other"), as the hub's cards and labkit's own exports write it; None without
    one (no card, no front matter, an unreadable file)."""
    import re

    try:
        text = (Path(folder) / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    front = text[3:].split("\n---", 1)[0]
    found = dict(re.findall(r"(?m)^(license|license_name):[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*$", front))
    licence = found.get("license")
    return found.get("license_name", licence) if licence == "other" else licence
