"""Output terms derived from a chain of licences.

An output made with a base model, adapters, a controller LLM and (through an adapter) training
data carries the strictest terms of them all: any non-commercial licence makes it non-commercial,
every attribution is collected, every set of use restrictions applies, share-alike travels.

    t = derive_terms([Asset("model", "sd15", "creativeml-openrail-m"),
                      Asset("dataset", "shapes", "cc-by-nc-4.0")])
    t.commercial      # False
    t.text            # "non-commercial (dataset 'shapes': …); attribution required: …; use restrictions of …"
    t.to_dict()       # JSON-able, with the disclaimer

The reading is conservative on purpose: whether a model's outputs are adapted material of its
training data, or bound by the model licence's terms, is unsettled, so labkit carries those terms
forward rather than drop them. DISCLAIMER goes with every record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.compliance.licences import Licence, LicenceTable
from labkit.compliance.policy import TRAINING_KINDS, Asset

DISCLAIMER = ("labkit records what the licences of the assets used say, as read into its licence table; "
              "it does not give legal advice. Check the licence texts, and ask a lawyer before relying on these terms.")


@dataclass(frozen=True)
class Terms:
    """The terms that follow for an output from its chain of licences.

    commercial: True (every licence allows it), "conditional" (allowed under the conditions listed),
        or False (a licence forbids it or grants research use only, or a licence is unknown/missing).
    attribution: credits owed, one "KIND 'ID' (LICENCE)" per asset.
    restrictions: use restrictions that apply ("use restrictions of CreativeML Open RAIL-M apply: …").
    share_alike: assets whose licence requires adapted material to be shared alike.
    research_only: a licence grants research use only.
    conditions: the conditions of conditional licences.
    non_commercial: assets whose licence forbids commercial use.
    no_derivatives: training data whose licence forbids sharing adapted material.
    unknown: assets without a known licence.
    sources: every asset with its licence id (as recorded and as resolved).
    """

    commercial: bool | str
    attribution: tuple[str, ...] = ()
    restrictions: tuple[str, ...] = ()
    share_alike: tuple[str, ...] = ()
    research_only: bool = False
    conditions: tuple[str, ...] = ()
    non_commercial: tuple[str, ...] = ()
    no_derivatives: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    sources: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """The terms as one line, e.g. "non-commercial (…); attribution required: …; use restrictions of … apply"."""
        parts: list[str] = []
        if self.research_only:
            parts.append("research use only")
        if self.commercial is False:
            if self.non_commercial:
                parts.append(f"non-commercial ({', '.join(self.non_commercial)})")
            elif not self.research_only:
                parts.append("commercial use not established")
        elif self.commercial == "conditional":
            parts.append(f"commercial use conditional ({'; '.join(self.conditions)})")
        else:
            parts.append("commercial use allowed")
        if self.unknown:
            parts.append(f"licence unknown: {', '.join(self.unknown)}")
        if self.attribution:
            parts.append(f"attribution required: {', '.join(self.attribution)}")
        parts += [r.split(":")[0] for r in self.restrictions]
        if self.share_alike:
            parts.append(f"share-alike: {', '.join(self.share_alike)}")
        if self.no_derivatives:
            parts.append(f"no-derivatives training data: {', '.join(self.no_derivatives)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"commercial": self.commercial, "research_only": self.research_only,
                "attribution": list(self.attribution), "restrictions": list(self.restrictions),
                "share_alike": list(self.share_alike), "conditions": list(self.conditions),
                "non_commercial": list(self.non_commercial), "no_derivatives": list(self.no_derivatives),
                "unknown": list(self.unknown), "sources": [dict(s) for s in self.sources],
                "text": self.text, "disclaimer": DISCLAIMER}

    def tags(self, prefix: str = "labkit.terms") -> dict[str, str]:
        """Flat string tags for an MLflow run; `<prefix>.assets` is the chain as JSON (what
        `labkit compliance report` reads back)."""
        return {f"{prefix}.commercial": str(self.commercial).lower(), f"{prefix}.text": self.text[:5000],
                f"{prefix}.research_only": str(self.research_only).lower(), f"{prefix}.disclaimer": DISCLAIMER,
                f"{prefix}.assets": self.assets_json()}

    def assets_json(self, limit: int = 7900) -> str:
        """The chain as compact JSON — kind, id, licence as recorded, licence_id as resolved — within
        `limit` characters (MLflow keeps 8000 per tag); when cut, a last entry says how many were left off."""
        rows = [{k: s[k] for k in ("kind", "id", "licence", "revision", "licence_id") if s.get(k) is not None}
                for s in self.sources]
        text = json.dumps(rows, separators=(",", ":"))
        kept = len(rows)
        while len(text) > limit and kept > 0:
            kept -= 1
            text = json.dumps([*rows[:kept], {"left_off": len(rows) - kept}], separators=(",", ":"))
        return text


def _label(asset: Asset, lic: Licence) -> str:
    recorded = asset.licence if asset.licence and str(asset.licence).strip() else "no licence"
    return f"{asset.kind} {asset.id!r} ({recorded})"


def derive_terms(chain: Iterable[Asset | Mapping[str, Any] | tuple | str | None], *,
                 licences: LicenceTable | None = None) -> Terms:
    """The output terms of a chain of assets.

    Args:
        chain: Asset objects, (kind, id, licence) tuples, dicts, or bare licence ids (read as models
            named after their licence). Order is kept in the lists of the result.
        licences: the licence table (default: `LicenceTable.load()`).

    Rules: attribution is owed for training data under any attribution licence, and for other assets
    whose licence's `output_attribution` is set (Creative Commons); every licence with use restrictions
    adds them; share-alike, non-commercial and research-only licences always carry; unknown or missing
    licences make commercial use "not established" (False).
    """
    licences = licences if licences is not None else LicenceTable.load()
    assets = [Asset("model", str(c) if c else "unnamed", c) if c is None or isinstance(c, str) else Asset.of(c)
              for c in chain]
    attribution: list[str] = []
    restrictions: list[str] = []
    share_alike: list[str] = []
    conditions: list[str] = []
    non_commercial: list[str] = []
    no_derivatives: list[str] = []
    unknown: list[str] = []
    sources: list[dict[str, Any]] = []
    research_only = False

    def add(lst: list[str], item: str) -> None:
        if item not in lst:
            lst.append(item)

    for asset in assets:
        lic = licences.resolve(asset.licence)
        known = licences.canonical(asset.licence) is not None and not lic.is_unknown
        sources.append({**asset.to_dict(), "licence_id": lic.id if known else "unknown", "licence_name": lic.name,
                        "licence_url": lic.url})
        label = _label(asset, lic)
        if not known:
            add(unknown, label)
            continue
        if lic.research_only:
            research_only = True
        if lic.commercial_use is False:
            add(non_commercial, label)
        elif lic.conditional:
            add(conditions, f"{lic.name}: {lic.commercial_condition}")
        if lic.attribution_required and (asset.kind in TRAINING_KINDS or lic.output_attribution):
            add(attribution, label)
        if lic.use_restrictions:
            add(restrictions, f"use restrictions of {lic.name} apply"
                + (f": {lic.use_restrictions_summary}" if lic.use_restrictions_summary else ""))
        if lic.share_alike:
            add(share_alike, label)
        if not lic.derivatives and asset.kind in TRAINING_KINDS:
            add(no_derivatives, label)

    if non_commercial or research_only or unknown:
        commercial: bool | str = False
    elif conditions:
        commercial = "conditional"
    else:
        commercial = True
    return Terms(commercial=commercial, attribution=tuple(attribution), restrictions=tuple(restrictions),
                 share_alike=tuple(share_alike), research_only=research_only, conditions=tuple(conditions),
                 non_commercial=tuple(non_commercial), no_derivatives=tuple(no_derivatives), unknown=tuple(unknown),
                 sources=tuple(sources))


__all__ = ["DISCLAIMER", "Terms", "derive_terms"]
