"""The special steps of a model family, declared in the catalogue's `[families.NAME]` tables.

The contract: what one family does differently from a plain diffusers pipeline call is data here, never an
`if family == ...` in the code that renders. `Catalog.family(name)` returns the `FamilySteps` of a family
(an empty one when nothing is declared); a hook field names a function that the caller imports with
`FamilySteps.function`.

    [families.toy]
    keyframe_prompt = "labkit.toyworld.motion:still_prompt"

    Catalog.load().family("toy").function("keyframe_prompt")("a red square moving up")
    # -> "a red square at the bottom"
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.errors import ConfigError

SHIPPED = "labkit/catalog.toml"

# [families.NAME] key -> (accepted type, what to write). A hook names a function in a labkit module: a
# catalogue is data that people share, and data must not name arbitrary code to run.
_FAMILY_SPEC: dict[str, tuple[type, str]] = {
    "txt2vid_first_frame": (bool, "true or false"),
    "keyframe_prompt": (str, '"labkit.MODULE:FUNCTION"'),
}
_HOOK = re.compile(r"^labkit(\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FamilySteps:
    """What a model family does differently from a plain pipeline call (`[families.NAME]`; none: nothing).

    `txt2vid_first_frame`: the family's pipelines only animate a given image, so text-to-video first renders
    that frame with an image model, as its own run (Stable Video Diffusion).
    `keyframe_prompt`: "labkit.MODULE:FUNCTION", what a keyframe model draws for a text-to-video prompt of a
    motion model that names one (``"keyframe_model"`` in its `model_index.json`); unset: the prompt itself.
    """

    name: str
    txt2vid_first_frame: bool = False
    keyframe_prompt: str | None = None
    origin: str = SHIPPED

    def function(self, key: str) -> Callable[..., Any] | None:
        """The function that hook field `key` names, imported; None when unset. ConfigError when missing."""
        spec = getattr(self, key)
        if not spec:
            return None
        module, _, attr = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{self.origin} [families.{self.name}] `{key}` = {spec!r} names no function ({e}).",
                              value=spec, fix='name an existing function as "labkit.MODULE:FUNCTION".') from e
        return fn


def merge_families(raw: dict[str, dict[str, Any]], origins: dict[str, str], families: dict[str, Any],
                   name: str) -> None:
    """Merge one file's `[families.*]` tables into `raw`: a later file sets only the keys it names."""
    for fam, spec in families.items():
        raw[fam] = {**raw.get(fam, {}), **spec}
        origins[fam] = name


def build_family(fam: str, spec: dict[str, Any], origin: str) -> FamilySteps:
    """The `FamilySteps` of one merged table; ConfigError naming the field for an unknown key or a bad value."""
    where = f"{origin} [families.{fam}]"
    for key, v in spec.items():
        if key not in _FAMILY_SPEC:
            close = difflib.get_close_matches(key, list(_FAMILY_SPEC), n=1)
            raise ConfigError(f"{where}: unknown field {key!r}{f' (did you mean {close[0]!r}?)' if close else ''}.",
                              value=key, fix=f"use only {', '.join(_FAMILY_SPEC)}.")
        kind, what = _FAMILY_SPEC[key]
        if not isinstance(v, kind) or (kind is str and not _HOOK.match(v)):
            raise ConfigError(f"{where}: field `{key}` = {v!r} is not {what}.", value=v, fix=f"write {key} = {what}.")
    return FamilySteps(fam, origin=origin, **spec)


__all__ = ["FamilySteps", "build_family", "merge_families"]
