"""Compliance modes and the check that applies them to a chain of assets.

A mode (`modes.toml`) maps each licence property to allow / warn / block. `check()` resolves each
asset's licence in the licence table, applies the mode, and returns a `Verdict` with one decision
per asset and its reasons; `enforce()` does the same and raises `ComplianceViolation` when anything
is blocked, naming the asset, its licence, the mode and what would make it pass.

    verdict = enforce([Asset("model", "sd15", "creativeml-openrail-m"),
                       Asset("adapter", "my-lora", "cc-by-nc-4.0")], mode="research")
    verdict.warnings                       # decisions that warn: record them on the run
    pick = licence_ok("open")              # a predicate a controller can filter models with
    [m for m in catalogue if pick(m.licence)]

Mode resolution: explicit argument > $LABKIT_COMPLIANCE_MODE > "research" (a `LabConfig` also reads
`[lab] compliance_mode` and passes where its mode came from as `source=`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.compliance.licences import Licence, LicenceTable, load_tables
from labkit.errors import ComplianceViolation, ConfigError, InvalidParameter, LabkitError

ENV_MODE = "LABKIT_COMPLIANCE_MODE"
ENV_MODES = "LABKIT_COMPLIANCE_MODES"
DEFAULT_MODE = "research"

ACTIONS = ("allow", "warn", "block")
_RANK = {a: i for i, a in enumerate(ACTIONS)}
KINDS = ("model", "adapter", "controlnet", "controller-llm", "dataset", "dataset-item")
TRAINING_KINDS = ("dataset", "dataset-item")
RULES = ("missing", "unknown", "non_commercial", "research_only", "conditional_commercial", "no_derivatives",
         "use_restrictions", "share_alike")
_MODE_KEYS = {*RULES, "description", "require_record", "prompt_names", "extends", "kinds"}


def worst(actions: Iterable[str]) -> str:
    """The strictest of some actions ("allow" when there are none)."""
    return max(actions, key=_RANK.__getitem__, default="allow")


# ---------------------------------------------------------------------------------------------
# Modes

@dataclass(frozen=True)
class Mode:
    """One compliance mode: an action per rule, optional per-kind overrides, and two flags."""

    name: str
    description: str
    rules: Mapping[str, str]
    kinds: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    require_record: bool = False
    prompt_names: str = "warn"
    origin: str = "labkit/compliance/modes.toml"

    def action(self, rule: str, kind: str) -> str:
        """What this mode does when `rule` fires for an asset of `kind`."""
        return self.kinds.get(kind, {}).get(rule, self.rules[rule])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "rules": dict(self.rules),
                "kinds": {k: dict(v) for k, v in self.kinds.items()}, "require_record": self.require_record,
                "prompt_names": self.prompt_names}


def load_modes(extra: str | Path | Iterable[str | Path] | None = None, use_env: bool = True) -> dict[str, Mode]:
    """The modes of `modes.toml`, with the files named by $LABKIT_COMPLIANCE_MODES and `extra` merged over them.

    Raises ConfigError naming the file, mode, key and fix of the first problem.
    """
    raw, origins = load_tables("modes.toml", "modes", ENV_MODES, extra, use_env)
    modes: dict[str, Mode] = {}

    def build(name: str, seen: tuple[str, ...] = ()) -> Mode:
        if name in modes:
            return modes[name]
        entry, origin = raw[name], origins[name]
        for key in entry:
            if key not in _MODE_KEYS:
                raise ConfigError(f"{origin}: modes.{name} has an unknown key {key!r}.", value=key,
                                  fix=f"Use only {sorted(_MODE_KEYS)}.")
        base: dict[str, Any] = {}
        parent = entry.get("extends")
        if parent is not None:
            if parent not in raw:
                raise ConfigError(f"{origin}: modes.{name} extends {parent!r}, which is not a mode.", value=parent,
                                  fix=f"Extend one of {sorted(raw)}.")
            if parent in seen or parent == name:
                raise ConfigError(f"{origin}: modes.{name} extends itself through {parent!r}.", value=parent,
                                  fix="Break the cycle of `extends`.")
            p = build(parent, (*seen, name))
            base = {**p.rules, "description": p.description, "require_record": p.require_record,
                    "prompt_names": p.prompt_names, "kinds": {k: dict(v) for k, v in p.kinds.items()}}
        merged = {**base, **{k: v for k, v in entry.items() if k != "kinds"}}
        kinds = {k: dict(v) for k, v in base.get("kinds", {}).items()}
        for kind, over in entry.get("kinds", {}).items():
            if kind not in KINDS or not isinstance(over, dict):
                raise ConfigError(f"{origin}: modes.{name}.kinds.{kind} is not a table of a known kind.", value=kind,
                                  fix=f"Use [modes.{name}.kinds.KIND] with KIND one of {list(KINDS)}.")
            for rule, action in over.items():
                _check_action(origin, f"modes.{name}.kinds.{kind}.{rule}", rule, action)
            kinds.setdefault(kind, {}).update(over)
        for rule in RULES:
            if rule not in merged:
                raise ConfigError(f"{origin}: modes.{name} does not say what to do for {rule!r}.", value=rule,
                                  fix=f'Add {rule} = "allow" | "warn" | "block", or extends = "research".')
            _check_action(origin, f"modes.{name}.{rule}", rule, merged[rule])
        _check_action(origin, f"modes.{name}.prompt_names", "prompt_names", merged.get("prompt_names", "warn"))
        if not isinstance(merged.get("require_record", False), bool):
            raise ConfigError(f"{origin}: modes.{name}.require_record must be true or false.",
                              value=merged.get("require_record"), fix="Set require_record = true or false.")
        mode = Mode(name=name, description=str(merged.get("description", "")),
                    rules={r: merged[r] for r in RULES}, kinds=kinds,
                    require_record=bool(merged.get("require_record", False)),
                    prompt_names=merged.get("prompt_names", "warn"), origin=origin)
        modes[name] = mode
        return mode

    for name in raw:
        build(name)
    return {name: modes[name] for name in raw}


def _check_action(origin: str, where: str, rule: str, action: Any) -> None:
    if rule not in RULES and rule != "prompt_names":
        raise ConfigError(f"{origin}: {where}: {rule!r} is not a rule.", value=rule, fix=f"Use one of {list(RULES)}.")
    if action not in ACTIONS:
        raise ConfigError(f"{origin}: {where} = {action!r} is not an action.", value=action,
                          fix=f"Use one of {list(ACTIONS)}.")


def resolve_mode(explicit: str | None = None, modes: Mapping[str, Mode] | None = None, *,
                 source: str | None = None) -> Mode:
    """The mode in force: `explicit` > $LABKIT_COMPLIANCE_MODE > "research"; InvalidParameter if unknown.

    `source` says where `explicit` came from (a `LabConfig`'s `compliance_mode_source`: "argument",
    "$LABKIT_COMPLIANCE_MODE", "<file> [lab] compliance_mode", "default"), so the error names it; without
    it an explicit mode is reported as "argument".
    """
    modes = modes if modes is not None else load_modes()
    where = source or "argument"
    if explicit is not None and not isinstance(explicit, str):
        raise InvalidParameter(f"Compliance mode {explicit!r} (from {where}) is not a name but "
                               f"{type(explicit).__name__}.", value=explicit,
                               fix=f"Use one of {sorted(modes)} as text, e.g. compliance_mode = \"research\".")
    name = explicit.strip() if isinstance(explicit, str) and explicit.strip() else None
    if name is None and os.environ.get(ENV_MODE, "").strip():
        name, where = os.environ[ENV_MODE].strip(), f"${ENV_MODE}"
    if name is None:
        name, where = DEFAULT_MODE, "default"
    key = name.lower()
    if key not in modes:
        raise InvalidParameter(f"Compliance mode {name!r} (from {where}) is not defined.", value=name,
                               fix=f"Use one of {', '.join(sorted(modes))}, or define it in a TOML file named by "
                                   f"{ENV_MODES}.")
    return modes[key]


def _mode(mode: str | Mode | None, modes: Mapping[str, Mode] | None) -> tuple[Mode, Mapping[str, Mode]]:
    if isinstance(mode, Mode):
        if modes is None:  # the other modes still make the fixes ("run in mode 'research'"): load them
            try:
                modes = load_modes()
            except LabkitError:
                modes = {}
        return mode, {**modes, mode.name: mode}
    modes = modes if modes is not None else load_modes()
    return resolve_mode(mode, modes), modes


# ---------------------------------------------------------------------------------------------
# Assets and decisions

@dataclass(frozen=True)
class Asset:
    """Something that touches an output: a model, adapter, ControlNet, the controller's LLM, a dataset or an item.

    `licence` is the licence id as recorded (any spelling the table knows); None when nothing is recorded.
    """

    kind: str
    id: str
    licence: str | None = None
    revision: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidParameter(f"Asset kind {self.kind!r} (asset {self.id!r}) is not known.", value=self.kind,
                                   fix=f"Use one of {list(KINDS)}.")
        if not str(self.id).strip():
            raise InvalidParameter("An asset has an empty id.", value=self.id, fix="Name the asset (model id, path…).")

    @classmethod
    def of(cls, obj: Asset | Mapping[str, Any] | tuple | list) -> Asset:
        """An Asset from an Asset, a (kind, id, licence) tuple, or a dict with kind, id, licence."""
        if isinstance(obj, Asset):
            return obj
        if isinstance(obj, Mapping):
            return cls(kind=obj["kind"], id=str(obj["id"]), licence=obj.get("licence", obj.get("license")),
                       revision=obj.get("revision"), source=obj.get("source"))
        if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
            return cls(obj[0], str(obj[1]), obj[2] if len(obj) == 3 else None)
        raise InvalidParameter(f"Cannot read an asset from {obj!r}.", value=obj,
                               fix="Pass Asset(kind, id, licence), a (kind, id, licence) tuple or a dict.")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {"kind": self.kind, "id": self.id, "licence": self.licence,
                                  "revision": self.revision, "source": self.source}.items() if v is not None}


@dataclass(frozen=True)
class Decision:
    """What a mode decided for one asset, why, and what would make a blocked asset pass."""

    asset: Asset
    licence: Licence
    action: str
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()

    @property
    def licence_label(self) -> str:
        """The licence as recorded, with the table's id when it differs (e.g. "CC-BY-NC-4.0")."""
        recorded = self.asset.licence
        if not recorded or not str(recorded).strip():
            return "no licence recorded"
        if not self.licence.is_unknown and str(recorded) != self.licence.id:
            return f"{recorded} = {self.licence.id}"
        return str(recorded)

    def sentence(self, mode: str) -> str:
        why = "; ".join(self.reasons) if self.reasons else "no rule applies"
        verb = {"allow": "allows", "warn": "warns about", "block": "blocks"}[self.action]
        return f"Mode {mode!r} {verb} {self.asset.kind} {self.asset.id!r} (licence: {self.licence_label}): {why}."

    def to_dict(self) -> dict[str, Any]:
        return {"asset": self.asset.to_dict(), "licence": self.licence.id, "action": self.action,
                "rules": list(self.rules), "reasons": list(self.reasons), "fixes": list(self.fixes)}


@dataclass(frozen=True)
class Verdict:
    """The decisions of one check: `action` is the strictest; `ok` is False when anything is blocked."""

    mode: str
    decisions: tuple[Decision, ...]
    require_record: bool = False

    @property
    def action(self) -> str:
        return worst(d.action for d in self.decisions)

    @property
    def ok(self) -> bool:
        return self.action != "block"

    @property
    def blocked(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "block"]

    @property
    def warnings(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "warn"]

    @property
    def allowed(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "allow"]

    def for_asset(self, asset_id: str) -> Decision:
        for d in self.decisions:
            if d.asset.id == asset_id:
                return d
        raise KeyError(asset_id)

    def messages(self) -> list[str]:
        """One sentence per warned or blocked asset, for the run record and the notebook."""
        return [d.sentence(self.mode) for d in self.decisions if d.action != "allow"]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "action": self.action, "require_record": self.require_record,
                "decisions": [d.to_dict() for d in self.decisions]}

    def tags(self, prefix: str = "labkit.compliance") -> dict[str, str]:
        """Flat string tags for an MLflow run: mode, verdict, and the warned / blocked assets."""
        tags = {f"{prefix}.mode": self.mode, f"{prefix}.verdict": self.action}
        if self.warnings:
            tags[f"{prefix}.warnings"] = " | ".join(d.sentence(self.mode) for d in self.warnings)[:5000]
        if self.blocked:
            tags[f"{prefix}.blocked"] = " | ".join(d.sentence(self.mode) for d in self.blocked)[:5000]
        return tags

    def raise_if_blocked(self) -> Verdict:
        """Raise ComplianceViolation for the blocked assets; return self when none is blocked."""
        if self.ok:
            return self
        blocked = self.blocked
        first = blocked[0]
        message = first.sentence(self.mode)
        if len(blocked) > 1:
            message += " Also blocked: " + "; ".join(
                f"{d.asset.kind} {d.asset.id!r} (licence: {d.licence_label})" for d in blocked[1:]) + "."
        fix = ("; or ".join(first.fixes) + ".") if first.fixes else None
        err = ComplianceViolation(message, value=first.asset.id, fix=fix[0].upper() + fix[1:] if fix else None)
        # The error's fields stay those of LabkitError; panels that want the whole picture read these.
        err.verdict = self  # type: ignore[attr-defined]
        err.asset = first.asset  # type: ignore[attr-defined]
        err.licence = first.licence_label  # type: ignore[attr-defined]
        err.mode = self.mode  # type: ignore[attr-defined]
        raise err


# ---------------------------------------------------------------------------------------------
# The check

def _fired(asset: Asset, lic: Licence, known: bool) -> list[tuple[str, str]]:
    """The rules an asset trips, each with its reason."""
    recorded = asset.licence
    if recorded is None or not str(recorded).strip():
        return [("missing", "no licence is recorded for it")]
    if not known:
        return [("unknown", f"licence {recorded!r} is not in labkit's licence table, "
                            "so nothing is known about what it allows")]
    if lic.is_unknown:
        return [("unknown", f"licence {recorded!r} is unknown, so nothing is known about what it allows")]
    out: list[tuple[str, str]] = []
    if lic.research_only:
        out.append(("research_only", f"{lic.name} grants research use only"))
    if lic.commercial_use is False:
        out.append(("non_commercial", f"{lic.name} does not allow commercial use"))
    if lic.conditional:
        out.append(("conditional_commercial",
                    f"{lic.name} allows commercial use only on a condition: {lic.commercial_condition}"))
    if not lic.derivatives and asset.kind in TRAINING_KINDS:
        out.append(("no_derivatives", f"{lic.name} does not allow sharing adapted material, and training adapts it"))
    if lic.use_restrictions:
        out.append(("use_restrictions", f"use restrictions of {lic.name} apply"
                    + (f" ({lic.use_restrictions_summary})" if lic.use_restrictions_summary else "")))
    if lic.share_alike:
        out.append(("share_alike", f"{lic.name} requires adapted material to be shared alike"))
    return out


def decide(asset: Asset | Mapping[str, Any] | tuple, mode: str | Mode | None = None, *,
           licences: LicenceTable | None = None, modes: Mapping[str, Mode] | None = None) -> Decision:
    """The decision of `mode` for one asset (see `check`)."""
    asset = Asset.of(asset)
    licences = licences if licences is not None else LicenceTable.load()
    mode_obj, modes = _mode(mode, modes)
    return _decide(asset, mode_obj, modes, licences)


def _action(asset: Asset, mode: Mode, licences: LicenceTable) -> str:
    """The action alone (no reasons, no fixes): what fixes and predicates need."""
    fired = _fired(asset, licences.resolve(asset.licence), licences.canonical(asset.licence) is not None)
    return worst(mode.action(rule, asset.kind) for rule, _ in fired)


def _decide(asset: Asset, mode: Mode, modes: Mapping[str, Mode], licences: LicenceTable) -> Decision:
    known = licences.canonical(asset.licence) is not None
    lic = licences.resolve(asset.licence)
    fired = _fired(asset, lic, known)
    acted = [(rule, reason, mode.action(rule, asset.kind)) for rule, reason in fired]
    action = worst(a for _, _, a in acted)
    # Reasons: the ones that set the action first; "allow" reasons are kept too, as information.
    acted.sort(key=lambda t: -_RANK[t[2]])
    reasons = tuple(reason for _, reason, a in acted if a == action) or tuple(reason for _, reason, _ in acted)
    rules = tuple(rule for rule, _, a in acted if a == action)
    if not reasons:
        reasons = (f"{lic.name} has no term that mode {mode.name!r} restricts",)
    fixes = tuple(_fixes(asset, lic, rules, mode, modes, licences)) if action == "block" else ()
    return Decision(asset=asset, licence=lic, action=action, rules=rules, reasons=reasons, fixes=fixes)


def _fixes(asset: Asset, lic: Licence, rules: tuple[str, ...], mode: Mode, modes: Mapping[str, Mode],
           licences: LicenceTable) -> list[str]:
    fixes: list[str] = []
    if {"missing", "unknown"} & set(rules):
        where = ("the `licence` field of its metadata.jsonl line" if asset.kind == "dataset-item"
                 else "the `licence` of its catalogue entry (or Asset(licence=...))")
        fixes.append(f"record the licence of {asset.kind} {asset.id!r} in {where}; if labkit does not know that "
                     f"licence, add an entry for it to a licences TOML named by $LABKIT_LICENCES")
    passing = []
    for other in modes.values():
        if other.name == mode.name:
            continue
        action = _action(asset, other, licences)
        if action != "block":
            passing.append(f"{other.name!r}" + (" (with a warning)" if action == "warn" else ""))
    if passing:
        fixes.append(f"run in compliance mode {' or '.join(passing)} (--mode, Lab(compliance_mode=...) or "
                     f"${ENV_MODE}) if your use fits it")
    ok_ids = [lic_.id for lic_ in licences.values()
              if not lic_.is_unknown and _action(Asset(asset.kind, asset.id, lic_.id), mode, licences) == "allow"]
    # Suggest licences of the asset's sort first (model licences for models, open licences for data),
    # and those checked against their text before the rest.
    first = "open" if asset.kind in TRAINING_KINDS else "model"
    checked_rank = {"yes": 0, "partial": 1, "no": 2}
    prefer = sorted(ok_ids, key=lambda i: (licences[i].category != first, checked_rank[licences[i].checked]))
    if asset.kind == "dataset-item":
        group = "without a licence" if "missing" in rules else f"under {asset.licence}"
        fixes.append(f"remove the items {group} from the dataset, or replace them with items under a licence "
                     f"mode {mode.name!r} allows (e.g. {', '.join(prefer[:4])})")
    elif prefer:
        fixes.append(f"use a {asset.kind} under a licence mode {mode.name!r} allows (e.g. {', '.join(prefer[:5])})")
    return fixes


def check(assets: Iterable[Asset | Mapping[str, Any] | tuple], mode: str | Mode | None = None, *,
          licences: LicenceTable | None = None, modes: Mapping[str, Mode] | None = None) -> Verdict:
    """Apply a compliance mode to every asset of a chain; never raises for a forbidden licence.

    Args:
        assets: Asset objects, (kind, id, licence) tuples or dicts; kind one of KINDS.
        mode: a mode name or Mode; None resolves $LABKIT_COMPLIANCE_MODE, then "research".
        licences: the licence table (default: `LicenceTable.load()`).
        modes: the modes (default: `load_modes()`); used to resolve `mode` and to suggest other modes.

    Returns a Verdict: one Decision (allow / warn / block, reasons, fixes) per asset, in order.
    """
    licences = licences if licences is not None else LicenceTable.load()
    mode_obj, modes = _mode(mode, modes)
    decisions = tuple(_decide(Asset.of(a), mode_obj, modes, licences) for a in assets)
    return Verdict(mode=mode_obj.name, decisions=decisions, require_record=mode_obj.require_record)


def enforce(assets: Iterable[Asset | Mapping[str, Any] | tuple], mode: str | Mode | None = None, *,
            licences: LicenceTable | None = None, modes: Mapping[str, Mode] | None = None) -> Verdict:
    """`check`, then raise ComplianceViolation if any asset is blocked; otherwise return the Verdict.

    The error's message names the asset, its licence, the mode and the reasons; its `fix` says what
    would make it pass (another mode, a differently licensed asset, recording a licence). The error
    also carries `.verdict`, `.asset`, `.licence` and `.mode`. Record `verdict.warnings` on the run.
    """
    return check(assets, mode, licences=licences, modes=modes).raise_if_blocked()


def licence_ok(mode: str | Mode | None = None, *, kind: str = "model", allow_warnings: bool = True,
               licences: LicenceTable | None = None,
               modes: Mapping[str, Mode] | None = None) -> Callable[[str | None], bool]:
    """A predicate: does `mode` accept an asset of `kind` under this licence id?

    Loads the tables once; the predicate is cheap. With allow_warnings=False, warned licences fail too.
    """
    licences = licences if licences is not None else LicenceTable.load()
    mode_obj, modes = _mode(mode, modes)
    accept = ("allow", "warn") if allow_warnings else ("allow",)

    def ok(licence: str | None) -> bool:
        return _action(Asset(kind, "candidate", licence), mode_obj, licences) in accept

    return ok


__all__ = ["ACTIONS", "DEFAULT_MODE", "ENV_MODE", "ENV_MODES", "KINDS", "RULES", "Asset", "Decision", "Mode", "Verdict",
           "check", "decide", "enforce", "licence_ok", "load_modes", "resolve_mode", "worst"]
