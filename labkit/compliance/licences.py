"""The licence table: what each licence says about commercial use, derivatives, attribution,
share-alike, research-only use and use-based restrictions, read from `licences.toml`.

labkit records what licences say; it does not give legal advice. Every entry cites the text it
was checked against (`checked`, `checked_against`) and says in `notes` what could not be confirmed.

    table = LicenceTable.load()                  # shipped table + $LABKIT_LICENCES + extra files
    table.get("CC-BY-NC-4.0").commercial_use     # False  (aliases and SPDX spellings resolve)
    table.resolve(None).id                       # "unknown": missing licences resolve to the unknown entry
    table.canonical("creativeml-openrail++-m")   # "openrail++"  (the catalogue's id)

Nothing is read at import; `LicenceTable.load()` reads and checks the files on first use, and again whenever
the list of user files, or one's modification time or size, changes.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, InvalidParameter

ENV_VAR = "LABKIT_LICENCES"
SHIPPED = "labkit/compliance/licences.toml"
UNKNOWN = "unknown"
CATEGORIES = ("open", "model", "unknown")
CHECKED = ("yes", "partial", "no")

_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_BOOL_KEYS = ("derivatives", "attribution_required", "output_attribution", "share_alike", "research_only",
              "use_restrictions")
_STR_KEYS = ("name", "url", "commercial_condition", "use_restrictions_summary", "checked_against", "notes")


def normalise(text: str) -> str:
    """The lookup form of a licence spelling: trimmed, lower-case, runs of spaces/underscores as "-"."""
    return re.sub(r"[\s_]+", "-", text.strip().lower())


@dataclass(frozen=True)
class Licence:
    """One licence of the table. See licences.toml for what each field means.

    `commercial_use` is True, False, or "conditional" (allowed under `commercial_condition`).
    """

    id: str
    name: str
    url: str = ""
    category: str = "open"
    commercial_use: bool | str = False
    commercial_condition: str = ""
    derivatives: bool = False
    attribution_required: bool = False
    output_attribution: bool = False
    share_alike: bool = False
    research_only: bool = False
    use_restrictions: bool = False
    use_restrictions_summary: str = ""
    checked: str = "no"
    checked_against: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = ()
    origin: str = SHIPPED

    @property
    def is_unknown(self) -> bool:
        return self.id == UNKNOWN

    @property
    def commercial(self) -> bool:
        """True only when commercial use is allowed without conditions."""
        return self.commercial_use is True

    @property
    def conditional(self) -> bool:
        return self.commercial_use == "conditional"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        return d


def _read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"Data file {p} does not exist.", value=str(p),
                          fix="Point at an existing TOML file (check the environment variable or the extra= argument).")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p} is not valid TOML: {err}.", value=str(p),
                          fix="Fix the TOML syntax at that line.") from err


def _shipped_toml(name: str) -> dict[str, Any]:
    # A fresh copy each call (callers merge into it); the file itself ships with the package and is
    # parsed once per process, since every render checks its licences more than once.
    return copy.deepcopy(_parsed_shipped_toml(name))


@functools.lru_cache(maxsize=8)
def _parsed_shipped_toml(name: str) -> dict[str, Any]:
    text = resources.files("labkit.compliance").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _user_files(env_var: str, extra: str | Path | Iterable[str | Path] | None,
                use_env: bool) -> list[str | Path]:
    files: list[str | Path] = []
    if use_env and os.environ.get(env_var):
        files += [p for p in os.environ[env_var].split(os.pathsep) if p.strip()]
    if extra is not None:
        files += [extra] if isinstance(extra, (str, Path)) else list(extra)
    return files


def load_tables(shipped: str, section: str, env_var: str, extra: str | Path | Iterable[str | Path] | None = None,
                use_env: bool = True) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Read `[section.NAME]` tables from the shipped file, then from user files merged key by key.

    Returns (tables, origin of each name). Shared by the licence table, the modes and the prompt rules.
    """
    tables: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    sources: list[tuple[str, dict[str, Any]]] = [(f"labkit/compliance/{shipped}", _shipped_toml(shipped))]
    sources += [(str(p), _read_toml(p)) for p in _user_files(env_var, extra, use_env)]
    for origin, data in sources:
        body = data.get(section, {})
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table of tables.", value=section,
                              fix=f"Write one [{section}.NAME] table per entry.")
        for name, entry in body.items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{origin}: {section}.{name} must be a table.", value=name,
                                  fix=f"Write it as [{section}.{name}] with keys below it.")
            tables.setdefault(name, {}).update(entry)
            origins[name] = origin
    return tables, origins


def _stamp(path: str | Path) -> tuple[int, int] | None:
    """A user file's modification time and size: a table read from it is reused until either changes."""
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


#: Tables already read, by the user files they merged (path, modification time, size): every render checks its
#: licences more than once, and reading and checking the table is most of what that costs.
_LOADED: dict[tuple, Any] = {}


class LicenceTable(Mapping[str, Licence]):
    """The licences by canonical id, with alias lookup. Build it with `LicenceTable.load()`."""

    def __init__(self, licences: Mapping[str, Licence]):
        self._by_id = dict(licences)
        self._lookup: dict[str, str] = {}
        for lic in self._by_id.values():
            for spelling in (lic.id, *lic.aliases):
                key = normalise(spelling)
                other = self._lookup.get(key)
                if other is not None and other != lic.id:
                    raise ConfigError(
                        f"Licence spelling {spelling!r} names both {other!r} and {lic.id!r} ({lic.origin}).",
                        value=spelling, fix="Remove the alias from one of the two entries.")
                self._lookup[key] = lic.id
        if UNKNOWN not in self._by_id:
            raise ConfigError("The licence table has no 'unknown' entry.", value=UNKNOWN,
                              fix="Keep the [licences.unknown] table: missing licences resolve to it.")

    @classmethod
    def load(cls, extra: str | Path | Iterable[str | Path] | None = None, use_env: bool = True) -> LicenceTable:
        """Read `licences.toml`, merge the files named by $LABKIT_LICENCES and `extra` over it, check it.

        Raises ConfigError naming the file, entry, key and fix of the first problem.
        """
        files = _user_files(ENV_VAR, extra, use_env)
        key = (cls, tuple((str(f), _stamp(f)) for f in files))
        table = _LOADED.get(key)
        if table is None:
            raw, origins = load_tables("licences.toml", "licences", ENV_VAR, extra, use_env)
            table = cls({lid: _build(lid, entry, origins[lid]) for lid, entry in raw.items()})
            if len(_LOADED) >= 8:
                _LOADED.clear()
            _LOADED[key] = table
        return table

    # Mapping protocol over canonical ids
    def __getitem__(self, key: str) -> Licence:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def canonical(self, spelling: str | None) -> str | None:
        """The canonical id of a spelling (id or alias, any case), or None if the table does not know it."""
        if spelling is None or not str(spelling).strip():
            return None
        return self._lookup.get(normalise(str(spelling)))

    def get(self, spelling: str | None, default: Any = None) -> Licence | Any:  # type: ignore[override]
        cid = self.canonical(spelling)
        return self._by_id[cid] if cid else default

    def resolve(self, spelling: str | None) -> Licence:
        """The entry for a spelling; missing or unrecognised licences resolve to the `unknown` entry."""
        return self.get(spelling) or self._by_id[UNKNOWN]

    def close_matches(self, spelling: str, n: int = 3) -> list[str]:
        """Up to `n` canonical ids whose id or an alias is spelled close to `spelling` (each once; never the
        `unknown` entry), for "did you mean" hints."""
        import difflib

        close = difflib.get_close_matches(normalise(str(spelling)), list(self._lookup), n=3 * n)
        return [i for i in dict.fromkeys(self._lookup[c] for c in close) if i != UNKNOWN][:n]

    def require(self, spelling: str) -> Licence:
        """The entry for a spelling, or InvalidParameter naming close matches and how to add one."""
        lic = self.get(spelling)
        if lic is None:
            close = self.close_matches(spelling)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidParameter(f"Licence {spelling!r} is not in the licence table.{hint}", value=spelling,
                                   fix=f"Use an id of licences.toml, or add an entry to a TOML file named by "
                                       f"{ENV_VAR}.")
        return lic


def _build(lid: str, entry: dict[str, Any], origin: str) -> Licence:
    def bad(key: str, want: str) -> ConfigError:
        return ConfigError(f"{origin}: licences.{lid}.{key} = {entry.get(key)!r} is not valid.",
                           value=entry.get(key), fix=f"Set {key} to {want}.")

    if not _ID.match(lid):
        raise ConfigError(f"{origin}: licence id {lid!r} is not a lower-case id.", value=lid,
                          fix='Use lower-case letters, digits, ".", "+" and "-" (e.g. "cc-by-4.0"); '
                              'put other spellings in aliases.')
    if "name" not in entry:
        raise bad("name", "a display name string")
    known = {*_BOOL_KEYS, *_STR_KEYS, "category", "commercial_use", "checked", "aliases"}
    for key in entry:
        if key not in known:
            raise ConfigError(f"{origin}: licences.{lid} has an unknown key {key!r}.", value=key,
                              fix=f"Use only {sorted(known)}.")
    for key in _BOOL_KEYS:
        if key in entry and not isinstance(entry[key], bool):
            raise bad(key, "true or false")
    for key in _STR_KEYS:
        if key in entry and not isinstance(entry[key], str):
            raise bad(key, "a string")
    commercial = entry.get("commercial_use", False)
    if not (isinstance(commercial, bool) or commercial == "conditional"):
        raise bad("commercial_use", 'true, false or "conditional"')
    if commercial == "conditional" and not entry.get("commercial_condition"):
        raise bad("commercial_condition", "the condition under which commercial use is allowed")
    if entry.get("category", "open") not in CATEGORIES:
        raise bad("category", f"one of {list(CATEGORIES)}")
    if entry.get("checked", "no") not in CHECKED:
        raise bad("checked", f"one of {list(CHECKED)}")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise bad("aliases", "a list of non-empty strings")
    fields = {k: entry[k] for k in (*_BOOL_KEYS, *_STR_KEYS, "category", "commercial_use", "checked") if k in entry}
    return Licence(id=lid, aliases=tuple(aliases), origin=origin, **fields)


__all__ = ["ENV_VAR", "UNKNOWN", "Licence", "LicenceTable", "load_tables", "normalise"]
