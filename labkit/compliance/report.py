"""The compliance report: which assets the runs of a store used, under which licences, and the output
terms each run's outputs carry.

    report = compliance_report(lab.tracker)                 # every experiment in the store
    report = compliance_report(lab.tracker, "my-study")     # one experiment
    print(report.text())                                    # assets table, then one block per run
    report.to_dict()                                        # what `labkit compliance report --json` prints

It reads what renders and training runs already record as tags — `labkit.terms.assets` (the licence
chain as JSON), `labkit.terms.text` / `.commercial`, `labkit.compliance.mode` / `.verdict` /
`.warnings` — falling back to `model.id` / `model.licence` (renders) and the `data.*` params
(training) for runs logged before the chain was a tag. Runs with no licence record at all (the demo
run, evaluations) are counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.compliance.terms import DISCLAIMER
from labkit.errors import InvalidParameter

if TYPE_CHECKING:  # pragma: no cover
    from labkit.tracking import Tracker

ASSETS_TAG = "labkit.terms.assets"
TERMS_TAG = "labkit.terms.text"
COMMERCIAL_TAG = "labkit.terms.commercial"


@dataclass(frozen=True)
class RunCompliance:
    """One run's licence record: the assets it combined and the terms of its outputs."""

    run_id: str
    name: str
    experiment: str
    job: str
    status: str
    started: str
    assets: list[dict[str, Any]]
    terms: str
    commercial: str
    mode: str = ""
    verdict: str = ""
    warnings: str = ""
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "name": self.name, "experiment": self.experiment, "job": self.job,
                "status": self.status, "started": self.started, "assets": [dict(a) for a in self.assets],
                "terms": self.terms, "commercial": self.commercial, "mode": self.mode, "verdict": self.verdict,
                "warnings": self.warnings, "c2pa_signed": self.signed}


@dataclass(frozen=True)
class ComplianceReport:
    """Runs with their licence records, newest first; `skipped` counts runs that recorded none."""

    experiments: list[str]
    runs: list[RunCompliance]
    skipped: int = 0

    def assets(self) -> list[dict[str, Any]]:
        """Every asset used, once: kind, id, licence (as recorded), licence_id (as resolved), and
        the runs that used it — most used first."""
        seen: dict[tuple, dict[str, Any]] = {}
        for run in self.runs:
            for a in run.assets:
                key = (a.get("kind"), a.get("id"), a.get("licence"))
                row = seen.setdefault(key, {"kind": a.get("kind", ""), "id": a.get("id", ""),
                                            "licence": a.get("licence"), "licence_id": a.get("licence_id"),
                                            "runs": 0, "run_ids": []})
                if run.run_id not in row["run_ids"]:
                    row["runs"] += 1
                    row["run_ids"].append(run.run_id)
        return sorted(seen.values(), key=lambda r: (-r["runs"], str(r["kind"]), str(r["id"])))

    def to_dict(self) -> dict[str, Any]:
        return {"experiments": list(self.experiments), "assets": self.assets(),
                "runs": [r.to_dict() for r in self.runs], "skipped": self.skipped, "disclaimer": DISCLAIMER}

    def text(self) -> str:
        """The report as plain text: a table of assets, then each run with its terms."""
        exps = ", ".join(self.experiments) or "(none)"
        lines = [f"Compliance report: {len(self.runs)} run(s) in {exps}"
                 + (f" ({self.skipped} without a licence record skipped)" if self.skipped else "")]
        assets = self.assets()
        if assets:
            kw = max(4, *(len(str(a["kind"])) for a in assets))
            iw = min(48, max(2, *(len(str(a["id"])) for a in assets)))
            lw = max(7, *(len(_licence(a)) for a in assets))
            lines += ["", "Assets used", f"  {'kind':<{kw}}  {'id':<{iw}}  {'licence':<{lw}}  runs"]
            lines += [f"  {a['kind']:<{kw}}  {_cut(str(a['id']), iw):<{iw}}  {_licence(a):<{lw}}  {a['runs']}"
                      for a in assets]
        if self.runs:
            lines += ["", "Runs (newest first)"]
            for r in self.runs:
                check = f"{r.mode}: {r.verdict}" if r.mode else "mode not recorded"
                lines.append(f"  {r.run_id[:8]}  {r.job or '-':<6}  {r.status:<8}  {check:<18}  "
                             f"commercial: {r.commercial or '?':<11}  {_cut(r.name, 40)}")
                lines.append(f"      terms: {r.terms or '(not recorded)'}")
                if r.warnings:
                    lines.append(f"      warnings: {r.warnings}")
                if r.signed:
                    lines.append("      outputs signed with C2PA content credentials")
        lines += ["", DISCLAIMER]
        return "\n".join(lines) + "\n"


def _licence(asset: Mapping[str, Any]) -> str:
    recorded = asset.get("licence") or "(none)"
    resolved = asset.get("licence_id")
    return recorded if not resolved or resolved == recorded else f"{recorded} → {resolved}"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _assets_of(tags: Mapping[str, str], params: Mapping[str, str]) -> list[dict[str, Any]]:
    raw = tags.get(ASSETS_TAG)
    if raw:
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError:
            rows = None
        if isinstance(rows, list):
            return [r for r in rows if isinstance(r, dict) and "left_off" not in r]
    # Runs logged before the chain was a tag: what the model and data tags say.
    out: list[dict[str, Any]] = []
    if tags.get("model.id"):
        out.append({"kind": "model", "id": tags["model.id"], "licence": tags.get("model.licence") or None})
    data_id = params.get("data.source") or params.get("data.folder") or params.get("data.description")
    if data_id and (params.get("data.licence") or TERMS_TAG in tags):
        out.append({"kind": "dataset", "id": data_id, "licence": params.get("data.licence") or None})
    return out


def _iso(ms: int | None) -> str:
    import datetime as dt

    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def compliance_report(tracker: Tracker, experiment: str | None = None, *, max_runs: int = 5000) -> ComplianceReport:
    """The licence record of every run in `experiment` (default: every experiment of the store).

    Args:
        tracker: the store: `lab.tracker`, or the `Lab` itself.
        experiment: an experiment name; an unknown one raises `InvalidParameter` naming those that exist.
        max_runs: stop after this many runs (newest first); a positive whole number.
    """
    from labkit.tracking.bundle import _tracker

    tracker = _tracker(tracker, "compliance_report needs")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
        raise InvalidParameter(f"max_runs={max_runs!r:.80}: the report needs a positive whole number of runs to read.",
                               value=max_runs, fix="pass a positive int such as 5000 (--max-runs), or leave it at "
                               "the default.")
    client = tracker.client
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in client.search_experiments())
            raise InvalidParameter(f"No experiment named {experiment!r} in {tracker.uri}.", value=experiment,
                                   fix=f"use one of {names}, or leave --experiment out to report on all of them."
                                   if names else "run something first: the store has no experiments.")
        experiments = [exp]
    else:
        experiments = list(client.search_experiments())
    names = {e.experiment_id: e.name for e in experiments}
    runs: list[RunCompliance] = []
    skipped = 0
    found = []
    token = None
    while names and len(found) < max_runs:
        page = client.search_runs(list(names), max_results=min(1000, max_runs - len(found)), page_token=token,
                                  order_by=["attributes.start_time DESC"])
        found += list(page)
        token = getattr(page, "token", None)
        if not token:
            break
    for run in found:
        tags, params = run.data.tags, run.data.params
        assets = _assets_of(tags, params)
        if not assets and TERMS_TAG not in tags:
            skipped += 1
            continue
        runs.append(RunCompliance(
            run_id=run.info.run_id, name=tags.get("mlflow.runName") or run.info.run_name or "",
            experiment=names.get(run.info.experiment_id, run.info.experiment_id), job=tags.get("labkit.job", ""),
            status=run.info.status, started=_iso(run.info.start_time), assets=assets,
            terms=tags.get(TERMS_TAG, ""), commercial=tags.get(COMMERCIAL_TAG, ""),
            mode=tags.get("labkit.compliance.mode", ""), verdict=tags.get("labkit.compliance.verdict", ""),
            warnings=tags.get("labkit.compliance.warnings", ""), signed=tags.get("labkit.c2pa") == "signed"))
    used = sorted({r.experiment for r in runs}) if not experiment else [experiment]
    return ComplianceReport(experiments=used or sorted(names.values()), runs=runs, skipped=skipped)


__all__ = ["ComplianceReport", "RunCompliance", "compliance_report"]
