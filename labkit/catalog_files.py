"""The catalogue's files: where a `source` entry's folder is, and the `[SECTION.ID]` tables other modules read
(`[adapters.ID]` in labkit.pipelines.lora_files, `[controlnets.ID]` in labkit.pipelines.controlnet) from the
shipped catalogue and the user's files, in that order."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError

#: The name the shipped catalogue goes by in `Catalog.sources` and entries' `origin`.
SHIPPED = "labkit/catalog.toml"


def source_folder(source: str, origin: str, where: str) -> Path:
    """The folder a catalogue `source` names: "package:PKG/PATH" inside an installed package, or "path:FOLDER"
    (relative to the TOML file `origin` that wrote it, unless that is the shipped catalogue). Only computes
    the path; ConfigError (naming `where`) when the package is not installed."""
    kind, _, rest = source.partition(":")
    if kind == "package":
        package, _, sub = rest.partition("/")
        try:
            root = resources.files(package)
        except ModuleNotFoundError as err:
            raise ConfigError(f"{where} source {source!r} names package {package!r}, which is not installed.",
                              value=source, fix=f'install {package!r}, or point source at a folder ("path:FOLDER").'
                              ) from err
        return Path(str(root.joinpath(sub))) if sub else Path(str(root))
    path = Path(rest).expanduser()
    if not path.is_absolute() and origin != SHIPPED:
        path = Path(origin).parent / path
    return path


def section_tables(catalog: Any, section: str) -> list[tuple[str, Path | None, str, dict[str, Any]]]:
    """The `[SECTION.ID]` tables of `catalog`'s files (a `Catalog`; None: the shipped file alone), shipped first
    then the user's, as (file, folder that relative paths in it start from — None for the shipped file, id in
    lower case, table). ConfigError names a file that is not TOML, or an entry that is not a table."""
    from labkit.files import read_text

    out: list[tuple[str, Path | None, str, dict[str, Any]]] = []
    for src in catalog.sources if catalog is not None else (SHIPPED,):
        if src == SHIPPED:
            text, base = resources.files("labkit").joinpath("catalog.toml").read_text(encoding="utf-8"), None
        else:
            p = Path(src).expanduser()
            text = read_text(p, what="catalogue file", fix="pass the path of an existing TOML file.")
            base = p.parent
        try:
            tables = tomllib.loads(text).get(section, {})
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Catalogue file {src} is not valid TOML: {e}.", value=str(src),
                              fix="fix the TOML syntax at the position shown.") from e
        if not isinstance(tables, dict):
            raise ConfigError(f"{src}: `{section}` is {tables!r}, not a set of [{section}.ID] tables.", value=tables,
                              fix=f"write each entry as a [{section}.ID] table.")
        for tid, spec in tables.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{src} [{section}.{tid}] is {spec!r}, not a table.", value=spec,
                                  fix=f"write it as a [{section}.{tid}] table of keys.")
            out.append((src, base, tid.lower(), spec))
    return out


__all__ = ["SHIPPED", "section_tables", "source_folder"]
