"""API keys for `labkit serve`: named, scoped, stored as hashes only.

    keys = KeyStore.for_project(lab.config.root)
    key, secret = keys.add("alice", scope="render")   # `secret` is shown once, never stored
    keys.check(secret)                                 # -> the ApiKey "alice", or None
    keys.revoke("alice")

A key is ``lk_`` plus 43 URL-safe characters (256 random bits). The store keeps, per key, its name, scope,
creation time, the first characters of the secret (so `keys list` can tell keys apart) and the SHA-256 of the
secret: a stolen key file reveals no key. The file is `<project>/mlruns/serve-keys.json`, mode 0600, written
whole under a file lock, so two `labkit serve keys add` at once both land. Scopes nest: `read` (GET
endpoints) < `render` (plans, jobs, notes, replays) < `admin` (switching the loaded model).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from labkit.errors import ConfigError, InvalidParameter
from labkit.locks import file_lock
from labkit.outputs import atomic_write_bytes

#: Scopes, weakest first: a key may do what its scope and every weaker one allow.
SCOPES = ("read", "render", "admin")
FILE_NAME = "serve-keys.json"
PREFIX = "lk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: no secret, only its hash and its first characters."""

    name: str
    scope: str
    created: str
    shown: str  # the secret's first 8 characters, e.g. "lk_3fQa…"
    sha256: str

    def allows(self, scope: str) -> bool:
        """Whether this key may do what `scope` needs."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def public(self) -> dict[str, str]:
        """What `keys list` prints and the API may show: everything but the hash."""
        return {"name": self.name, "scope": self.scope, "created": self.created, "key": self.shown + "…"}


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidParameter(f"Unknown key scope {scope!r}.", value=scope,
                               fix=f"use one of {', '.join(SCOPES)} (each allows what the ones before it do).")
    return scope


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class KeyStore:
    """The API keys of one project (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cache: tuple[tuple[int, int, int], list[ApiKey]] | None = None

    @classmethod
    def for_project(cls, root: str | Path) -> KeyStore:
        return cls(Path(root) / "mlruns" / FILE_NAME)

    def keys(self) -> list[ApiKey]:
        """Every key, oldest first (read again only when the file changed: a server checks every request)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise ConfigError(f"The API key file {self.path} cannot be read: {e}.", value=str(self.path),
                              fix="make it readable by the user running labkit.") from e
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._cache is not None and self._cache[0] == stamp:
            return list(self._cache[1])
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            keys = [ApiKey(**k) for k in data["keys"]]
            self._cache = (stamp, keys)
            return list(keys)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"The API key file {self.path} cannot be read: {e}.", value=str(self.path),
                              fix="restore it from a backup, or delete it and add the keys again "
                                  "(`labkit serve keys add NAME`).") from e

    def add(self, name: str, scope: str = "render") -> tuple[ApiKey, str]:
        """A new key named `name`: (the stored key, the secret to hand over once)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidParameter(f"The key name {name!r} is not a plain name.", value=name,
                                   fix="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
        check_scope(scope)
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(name=name, scope=scope, created=datetime.now(UTC).isoformat(timespec="seconds"),
                     shown=secret[:8], sha256=_digest(secret))
        with file_lock(self.path):
            keys = self.keys()
            if any(k.name == name for k in keys):
                raise InvalidParameter(f"A key named {name!r} exists already.", value=name,
                                       fix=f"pick another name, or `labkit serve keys revoke {name}` first.")
            self._write([*keys, key])
        return key, secret

    def revoke(self, name: str) -> ApiKey:
        """Remove the key `name` (requests with it fail from now on); returns what was removed."""
        with file_lock(self.path):
            keys = self.keys()
            gone = [k for k in keys if k.name == name]
            if not gone:
                raise InvalidParameter(f"No API key named {name!r}.", value=name,
                                       fix="`labkit serve keys list` shows the names.")
            self._write([k for k in keys if k.name != name])
        return gone[0]

    def check(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, or None. Compares every stored hash in constant time."""
        digest = _digest(secret)
        found = None
        for key in self.keys():
            if hmac.compare_digest(key.sha256, digest):
                found = key
        return found

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"keys": [asdict(k) for k in keys]}, indent=1).encode()
        atomic_write_bytes(self.path, data, mode=0o600)
