"""Compliance: the licence of every asset, modes that decide what may be combined, the terms that follow.

labkit records what licences say; it does not give legal advice (see `DISCLAIMER`).

- `LicenceTable.load()` — licences.toml: commercial use, derivatives, attribution, share-alike,
  research-only, use restrictions, each entry citing what it was checked against.
- `load_modes()`, `resolve_mode()` — modes.toml: `research` (default), `open`, `strict`, user modes.
- `check(assets, mode)` → `Verdict`; `enforce(...)` raises `ComplianceViolation`; `licence_ok(mode)`
  is a predicate for picking models.
- `derive_terms(chain)` → `Terms`: the output terms of a chain of licences, structured and as text.
- `dataset_breakdown(folder)` → `DatasetBreakdown`: licence counts, missing items, terms, chart.
- `check_prompt(prompt, mode)` / `enforce_prompt(...)` — prompt_rules.toml names.
- `compliance_report(tracker, experiment)` → `ComplianceReport`: assets, licences and output terms per run.
- `labkit.compliance.signing` (optional, c2pa-python): `keygen`, `load_identity`, `sign_file`, `verify`.

Importing this package reads no file and imports nothing heavy (matplotlib only inside `chart()`).
"""

from labkit.compliance.datasets import DatasetBreakdown, dataset_breakdown
from labkit.compliance.licences import Licence, LicenceTable
from labkit.compliance.policy import (
    ACTIONS,
    DEFAULT_MODE,
    ENV_MODE,
    KINDS,
    Asset,
    Decision,
    Mode,
    Verdict,
    check,
    decide,
    enforce,
    licence_ok,
    load_modes,
    resolve_mode,
)
from labkit.compliance.prompts import PromptRules, PromptVerdict, check_prompt, enforce_prompt
from labkit.compliance.report import ComplianceReport, RunCompliance, compliance_report
from labkit.compliance.terms import DISCLAIMER, Terms, derive_terms

__all__ = [
    "ACTIONS", "DEFAULT_MODE", "DISCLAIMER", "ENV_MODE", "KINDS", "Asset", "ComplianceReport", "DatasetBreakdown",
    "Decision", "Licence", "LicenceTable", "Mode", "PromptRules", "PromptVerdict", "RunCompliance", "Terms", "Verdict",
    "check", "check_prompt", "compliance_report", "dataset_breakdown", "decide", "derive_terms", "enforce",
    "enforce_prompt", "licence_ok", "load_modes", "resolve_mode",
]
