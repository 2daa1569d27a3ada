"""Prompt rules: names a compliance mode warns about or blocks in prompts.

The shipped list (`prompt_rules.toml`) is a small starting point — a few trademarked characters
and living artists — not a complete or authoritative list; extend it with $LABKIT_PROMPT_RULES or
`PromptRules.load(extra=...)`. Names match as whole words, case-insensitively.

    v = check_prompt("a cat in the style of Greg Rutkowski", mode="research")
    v.action          # "warn"  (the mode's `prompt_names`, or the category's own action for the mode)
    v.matches[0].name # "Greg Rutkowski"
    enforce_prompt(prompt, mode="open")   # ComplianceViolation naming the name, its category, the mode and the fix
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.compliance.policy import ACTIONS, ENV_MODE, Mode, _mode, worst
from labkit.errors import ComplianceViolation, ConfigError

ENV_VAR = "LABKIT_PROMPT_RULES"
_KEYS = {"description", "reason", "names", "actions", "replace", "allow"}


@dataclass(frozen=True)
class Category:
    """One group of names with the reason given when they match."""

    name: str
    description: str
    reason: str
    names: tuple[str, ...]
    actions: Mapping[str, str]
    pattern: re.Pattern[str] | None


def _pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    # Longest first so "Super Mario" wins over a shorter name it contains; words joined by any whitespace.
    parts = [r"\s+".join(re.escape(w) for w in n.split()) for n in sorted(set(names), key=len, reverse=True)]
    if not parts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


class PromptRules:
    """The categories of names, loaded from `prompt_rules.toml` and user files."""

    def __init__(self, categories: Mapping[str, Category]):
        self.categories = dict(categories)

    @classmethod
    def load(cls, extra: str | Path | Iterable[str | Path] | None = None, use_env: bool = True) -> PromptRules:
        """Read the shipped rules, then the files of $LABKIT_PROMPT_RULES and `extra`.

        A category that exists already gains the new names (`replace = true` replaces them); `allow`
        drops names from it.
        """
        from labkit.compliance.licences import _read_toml, _shipped_toml, _user_files

        cats: dict[str, dict[str, Any]] = {}
        sources = [("labkit/compliance/prompt_rules.toml", _shipped_toml("prompt_rules.toml"))]
        sources += [(str(p), _read_toml(p)) for p in _user_files(ENV_VAR, extra, use_env)]
        for origin, data in sources:
            for cname, entry in data.get("categories", {}).items():
                if not isinstance(entry, dict):
                    raise ConfigError(f"{origin}: categories.{cname} must be a table.", value=cname,
                                      fix=f"Write [categories.{cname}] with names = [...] below it.")
                for key in entry:
                    if key not in _KEYS:
                        raise ConfigError(f"{origin}: categories.{cname} has an unknown key {key!r}.", value=key,
                                          fix=f"Use only {sorted(_KEYS)}.")
                names = entry.get("names", [])
                allow = entry.get("allow", [])
                for key, value in (("names", names), ("allow", allow)):
                    if not isinstance(value, list) or not all(isinstance(n, str) and n.strip() for n in value):
                        raise ConfigError(f"{origin}: categories.{cname}.{key} must be a list of non-empty strings.",
                                          value=value, fix=f'Write {key} = ["Name One", "Name Two"].')
                actions = entry.get("actions", {})
                for m, a in dict(actions).items():
                    if a not in ACTIONS:
                        raise ConfigError(f"{origin}: categories.{cname}.actions.{m} = {a!r} is not an action.",
                                          value=a, fix=f"Use one of {list(ACTIONS)}.")
                cur = cats.setdefault(cname, {"names": [], "actions": {}, "description": "", "reason": cname})
                if entry.get("replace"):
                    cur["names"] = []
                cur["names"] = [n for n in cur["names"] + list(names)]
                lowered = {a.lower() for a in allow}
                cur["names"] = [n for n in cur["names"] if n.lower() not in lowered]
                cur["actions"].update(actions)
                for key in ("description", "reason"):
                    if key in entry:
                        cur[key] = str(entry[key])
        return cls({c: Category(name=c, description=e["description"], reason=e["reason"],
                                names=tuple(dict.fromkeys(e["names"])), actions=dict(e["actions"]),
                                pattern=_pattern(e["names"])) for c, e in cats.items()})

    def find(self, prompt: str) -> list[PromptMatch]:
        """Every listed name in `prompt`, in order of appearance (no mode applied)."""
        found: list[PromptMatch] = []
        for cat in self.categories.values():
            if cat.pattern is None:
                continue
            canon = {" ".join(n.lower().split()): n for n in cat.names}
            for m in cat.pattern.finditer(prompt or ""):
                name = canon.get(" ".join(m.group(0).lower().split()), m.group(0))
                found.append(PromptMatch(name=name, category=cat.name, reason=cat.reason, start=m.start(),
                                         end=m.end(), text=m.group(0)))
        return sorted(found, key=lambda x: (x.start, x.category))


@dataclass(frozen=True)
class PromptMatch:
    name: str
    category: str
    reason: str
    start: int
    end: int
    text: str
    action: str = "allow"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "reason": self.reason, "start": self.start,
                "end": self.end, "text": self.text, "action": self.action}


@dataclass(frozen=True)
class PromptVerdict:
    """What a mode does with a prompt: the strictest action over its matches."""

    mode: str
    prompt: str
    matches: tuple[PromptMatch, ...]

    @property
    def action(self) -> str:
        return worst(m.action for m in self.matches)

    @property
    def ok(self) -> bool:
        return self.action != "block"

    def messages(self) -> list[str]:
        verb = {"warn": "warns about", "block": "blocks"}
        return [f"Mode {self.mode!r} {verb[m.action]} {m.text!r} in the prompt: {m.reason} "
                f"(prompt rule category {m.category!r})." for m in self.matches if m.action != "allow"]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "action": self.action, "matches": [m.to_dict() for m in self.matches]}

    def raise_if_blocked(self) -> PromptVerdict:
        if self.ok:
            return self
        blocked = [m for m in self.matches if m.action == "block"]
        first = blocked[0]
        names = ", ".join(repr(m.text) for m in blocked)
        err = ComplianceViolation(
            f"Mode {self.mode!r} blocks {names} in the prompt: {first.reason} "
            f"(prompt rule category {first.category!r}).",
            value=first.text,
            fix=(f"remove or rephrase {names}; or, if your use is cleared, run in a mode that only warns "
                 f"(e.g. 'research', via --mode or ${ENV_MODE}), or add the name to `allow` of category "
                 f"{first.category!r} in a prompt-rules TOML named by ${ENV_VAR}."))
        err.verdict = self  # type: ignore[attr-defined]
        err.mode = self.mode  # type: ignore[attr-defined]
        raise err


def check_prompt(prompt: str, mode: str | Mode | None = None, *, rules: PromptRules | None = None,
                 modes: Mapping[str, Mode] | None = None) -> PromptVerdict:
    """Match the prompt against the rules and apply the mode (its `prompt_names`, or a category's own action)."""
    rules = rules if rules is not None else PromptRules.load()
    mode_obj, _ = _mode(mode, modes)
    out = []
    for m in rules.find(prompt):
        cat = rules.categories[m.category]
        action = cat.actions.get(mode_obj.name, mode_obj.prompt_names)
        out.append(PromptMatch(**{**m.to_dict(), "action": action}))
    return PromptVerdict(mode=mode_obj.name, prompt=prompt, matches=tuple(out))


def enforce_prompt(prompt: str, mode: str | Mode | None = None, *, rules: PromptRules | None = None,
                   modes: Mapping[str, Mode] | None = None) -> PromptVerdict:
    """`check_prompt`, raising ComplianceViolation when the mode blocks a name in the prompt."""
    return check_prompt(prompt, mode, rules=rules, modes=modes).raise_if_blocked()


__all__ = ["ENV_VAR", "Category", "PromptMatch", "PromptRules", "PromptVerdict", "check_prompt", "enforce_prompt"]
