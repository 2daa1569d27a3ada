"""The rules controller's data: the English it reads (`vocabulary.toml`) and the lab's styles (`styles.toml`).

Two files, two loaders:

- `words()` reads `vocabulary.toml` (number words, output nouns, aspect words, durations, motion
  verbs, speed words …) once per process and checks it against `SCHEMA`: an unknown section or key, a
  missing key, a value of the wrong shape or a regex fragment that does not compile is a `ConfigError`
  naming the key. The words are part of the rules: changing them changes plans, so it goes with a new
  `RULES_VERSION` (the `digest` says when the file changed).
- `Vocabulary.load()` reads `styles.toml` (styles, model preferences, step factors), then the user's
  files named by `$LABKIT_STYLES` or passed as `extra`; its `digest` is part of the controller's revision.

Example:

    >>> from labkit.controller.vocabulary import words
    >>> words()["numbers.words"]["twelve"]
    12
    >>> words()["aspect.ratios"]["portrait"]["video"]
    (9, 16)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, InvalidParameter
from labkit.plan import MAX_STEPS

ENV_VAR = "LABKIT_STYLES"
WORDS_FILE = "labkit/controller/vocabulary.toml"

# -- vocabulary.toml: the words ---------------------------------------------------------------------

#: section -> key -> kind of value. Kinds: "words" (a list of words), "regex" (a list of regex fragments),
#: "numbers" (word -> number), "regex_numbers" (regex fragment -> number), "names" (word -> aspect name),
#: "ratios" (aspect name -> {image = [w, h], video = [w, h]}), "pairs" (a list of [w, h]),
#: "patterns" (a list of {pattern = regex, aspect = aspect name}).
SCHEMA: dict[str, dict[str, str]] = {
    "numbers": {"words": "numbers", "scales": "numbers"},
    "counts": {"groups": "numbers"},
    "outputs": {"image_nouns": "regex", "video_nouns": "regex", "plain_image_nouns": "regex",
                "generic_many": "regex", "instruction_adjectives": "words", "function_words": "regex",
                "ing_adjectives": "words"},
    "durations": {"units": "regex_numbers", "leads": "regex"},
    "modality": {"video_words": "regex", "image_words": "regex", "motion_verbs": "regex",
                 "attributive_verbs": "words", "not_video": "regex"},
    "aspect": {"ratios": "ratios", "common_ratios": "pairs", "items": "names", "weak": "patterns",
               "strong": "patterns"},
    "speed": {"quick_objects": "regex", "quickly_verbs": "words", "draft_not_before": "regex", "fast": "regex",
              "fast_modes": "words", "instruction_nouns": "regex", "best": "regex"},
    "request": {"lead_verbs": "regex", "polite_tail": "regex", "negations": "regex"},
    "language": {"english": "words", "foreign": "words"},
    "toy": {"filler": "words"},
}


@dataclass(frozen=True)
class Words:
    """The checked contents of `vocabulary.toml`: `words()["section.key"]` (lists become tuples)."""

    values: Mapping[str, Any]
    digest: str
    source: str

    def __getitem__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise InvalidParameter(f"The rules vocabulary has no {key!r}.", value=key,
                                   fix=f"use one of {', '.join(sorted(self.values))}.") from None


@cache
def words() -> Words:
    """The shipped `vocabulary.toml`, read and checked once per process (see the module docstring)."""
    text = resources.files("labkit.controller").joinpath("vocabulary.toml").read_text(encoding="utf-8")
    return parse_words(text, WORDS_FILE)


def parse_words(text: str, source: str) -> Words:
    """Check TOML `text` shaped like `vocabulary.toml` against `SCHEMA`; `ConfigError` naming the first
    bad section or key (unknown, missing, or a value of the wrong shape)."""
    data = _toml(text, source)
    values: dict[str, Any] = {}
    for section in data:
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}].", value=section,
                              fix=f"use the sections {', '.join(SCHEMA)} (see the comments in {WORDS_FILE}).")
    for section, keys in SCHEMA.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: section [{section}] is missing.", value=section,
                              fix=f"add [{section}] with the keys {', '.join(keys)}.")
        for key in table:
            if key not in keys:
                raise ConfigError(f"{source}: unknown key {section}.{key}.", value=f"{section}.{key}",
                                  fix=f"[{section}] takes {', '.join(keys)}.")
        for key, kind in keys.items():
            name = f"{section}.{key}"
            if key not in table:
                raise ConfigError(f"{source}: {name} is missing.", value=name,
                                  fix=f"add {key} to [{section}] (see {WORDS_FILE}).")
            values[name] = _CHECKS[kind](table[key], f"{source}: {name}")
    names = set(values["aspect.ratios"])
    for key in ("aspect.items", "aspect.weak", "aspect.strong"):
        value = values[key]
        used = value.values() if isinstance(value, Mapping) else [p[1] for p in value]
        for aspect in used:
            if aspect not in names:
                raise ConfigError(f"{source}: {key} names aspect {aspect!r}, which aspect.ratios does not define.",
                                  value=aspect, fix=f"use one of {', '.join(sorted(names))}, or add it to "
                                                    "[aspect.ratios].")
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    return Words(values, digest, source)


def _bad(where: str, value: Any, shape: str) -> ConfigError:
    return ConfigError(f"{where} is {value!r}: it must be {shape}.", value=value,
                       fix=f"write {shape}, as the comments in {WORDS_FILE} show.")


def _regex(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text:
        raise _bad(where, text, "a non-empty string")
    try:
        re.compile(text)
    except re.error as e:
        raise ConfigError(f"{where}: {text!r} is not a valid regular expression ({e}).", value=text,
                          fix="fix the fragment (Python `re` syntax), or escape special characters with \\\\.") from e
    return text


def _number(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _bad(where, value, "a number of at least 0")
    return value


def _list(value: Any, where: str, item: Callable[[Any, str], Any]) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise _bad(where, value, "a non-empty list")
    return tuple(item(v, where) for v in value)


def _table(value: Any, where: str, item: Callable[[Any, str], Any], key: Callable[[Any, str], Any] = _regex
           ) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise _bad(where, value, "a non-empty table")
    return {key(k, where): item(v, f"{where}.{k}") for k, v in value.items()}


def _word(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[\w'-]+(?: [\w'-]+)*", value):
        raise _bad(where, value, "a word (letters, digits, ' and -)")
    return value


def _pair(value: Any, where: str) -> tuple[int | float, int | float]:
    if not isinstance(value, list) or len(value) != 2 or not all(_number(v, where) > 0 for v in value):
        raise _bad(where, value, "a pair of positive numbers [width, height]")
    return value[0], value[1]


def _ratio(value: Any, where: str) -> dict[str, tuple[int | float, int | float]]:
    if not isinstance(value, dict) or set(value) != {"image", "video"}:
        raise _bad(where, value, "a table { image = [w, h], video = [w, h] }")
    return {k: _pair(v, f"{where}.{k}") for k, v in value.items()}


def _pattern(value: Any, where: str) -> tuple[str, str]:
    if not isinstance(value, dict) or set(value) != {"pattern", "aspect"}:
        raise _bad(where, value, "a table { pattern = 'regex', aspect = 'name' }")
    return _regex(value["pattern"], where), _word(value["aspect"], where)


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "words": lambda v, w: _list(v, w, _word),
    "regex": lambda v, w: _list(v, w, _regex),
    "numbers": lambda v, w: _table(v, w, _number, _word),
    "regex_numbers": lambda v, w: _table(v, w, _number),
    "names": lambda v, w: _table(v, w, _word, _word),
    "ratios": lambda v, w: _table(v, w, _ratio, _word),
    "pairs": lambda v, w: _list(v, w, _pair),
    "patterns": lambda v, w: _list(v, w, _pattern),
}


# -- styles.toml: the lab's styles and preferences ---------------------------------------------------


@dataclass(frozen=True)
class Style:
    """A style of `styles.toml`: the phrases that select it and the words it adds."""

    name: str
    match: tuple[str, ...]
    prompt: tuple[str, ...]
    negative: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """The rules controller's tunable data: styles, model preferences, step factors (see styles.toml)."""

    styles: tuple[Style, ...]
    quality: tuple[str, ...]
    fast: tuple[str, ...]
    cpu_families: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...]
    headroom: float = 0.85
    best_steps_factor: float = 1.5
    best_turbo_steps: int = 4
    fast_steps_factor: float = 0.5
    max_steps: int = 100
    min_fps: int = 8
    digest: str = ""
    sources: tuple[str, ...] = ()

    @classmethod
    def load(cls, extra: str | Path | Iterable[str | Path] | None = None, *, use_env: bool = True) -> Vocabulary:
        """The shipped `styles.toml`, then `$LABKIT_STYLES` (paths joined by os.pathsep), then `extra`."""
        text = resources.files("labkit.controller").joinpath("styles.toml").read_text(encoding="utf-8")
        data = _toml(text, "labkit/controller/styles.toml")
        sources = ["labkit/controller/styles.toml"]
        paths: list[str] = []
        if use_env and os.environ.get(ENV_VAR):
            paths += [p for p in os.environ[ENV_VAR].split(os.pathsep) if p.strip()]
        if extra is not None:
            paths += [str(extra)] if isinstance(extra, (str, Path)) else [str(p) for p in extra]
        for p in paths:
            path = Path(p).expanduser()
            try:
                more = _toml(path.read_text(encoding="utf-8"), str(path))
            except OSError as e:
                raise ConfigError(f"Cannot read style vocabulary {str(path)!r}: {e}.", value=str(path),
                                  fix="pass the path of an existing TOML file shaped like styles.toml.") from e
            for name, spec in (more.get("styles") or {}).items():
                data.setdefault("styles", {})[name] = spec
            for section in ("models", "quality", "video"):
                for k, v in (more.get(section) or {}).items():
                    if k == "aliases" and isinstance(v, dict):
                        data.setdefault(section, {}).setdefault("aliases", {}).update(v)
                    else:
                        data.setdefault(section, {})[k] = v
            sources.append(str(path))
        return cls._build(data, tuple(sources))

    @classmethod
    def _build(cls, data: dict[str, Any], sources: tuple[str, ...]) -> Vocabulary:
        where = " + ".join(sources)
        styles = []
        for name, spec in (data.get("styles") or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("match"), list) or not spec["match"] \
                    or not isinstance(spec.get("prompt"), list):
                raise ConfigError(f"{where} [styles.{name}] needs `match` and `prompt` lists.", value=spec,
                                  fix='write match = ["word", …] and prompt = ["words to add", …].')
            styles.append(Style(name, tuple(str(m).lower() for m in spec["match"]),
                                tuple(str(p) for p in spec["prompt"]),
                                tuple(str(n) for n in spec.get("negative", []))))
        models = data.get("models") or {}
        quality = data.get("quality") or {}
        video = data.get("video") or {}
        try:
            vocab = cls(
                styles=tuple(styles),
                quality=tuple(models.get("quality", ())), fast=tuple(models.get("fast", ())),
                cpu_families=tuple(models.get("cpu_families", ("toy",))),
                aliases=tuple(sorted((str(k).lower(), str(v)) for k, v in (models.get("aliases") or {}).items())),
                headroom=float(models.get("headroom", 0.85)),
                best_steps_factor=float(quality.get("best_steps_factor", 1.5)),
                best_turbo_steps=int(quality.get("best_turbo_steps", 4)),
                fast_steps_factor=float(quality.get("fast_steps_factor", 0.5)),
                max_steps=min(int(quality.get("max_steps", 100)), MAX_STEPS),
                min_fps=int(video.get("min_fps", 8)),
                digest=hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8],
                sources=sources,
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: a number in [models], [quality] or [video] is malformed ({e}).",
                              value=None, fix="see the key list at the top of labkit/controller/styles.toml.") from e
        if not 0 < vocab.headroom <= 1:
            raise ConfigError(f"{where}: headroom {vocab.headroom} is outside (0, 1].", value=vocab.headroom,
                              fix="use e.g. 0.85 (keep 15 % of the tier's VRAM free).")
        return vocab

    def style(self, name: str) -> Style:
        for s in self.styles:
            if s.name == name:
                return s
        raise InvalidParameter(f"Unknown style {name!r}.", value=name,
                               fix=f"use one of {', '.join(s.name for s in self.styles)}.")


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Vocabulary file {source} is not valid TOML: {e}.", value=source,
                          fix="fix the TOML syntax at the position shown.") from e
