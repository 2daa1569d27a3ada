"""Addresses in the MLflow UI (3.17's hash routes): an experiment's runs table and the compare page of some runs.

    runs_url("http://127.0.0.1:5000", "1")          # …/#/experiments/1/runs?workflowType=machine_learning
    compare_url("http://127.0.0.1:5000", ["ab12…", "cd34…"], ["1"])
                                                    # …/#/compare-runs?runs=[…]&experiments=[…]&workflowType=…

MLflow 3.17's UI has a GenAI / Model training switch whose setting, not the experiment's `mlflow.experimentKind`
tag, decides what an experiment opens on: a fresh browser is on GenAI (a traces overview, runs listed as
"Evaluations", an assistant panel). `workflowType=machine_learning` in the address switches it to Model training
(the runs table), and the UI keeps it while one navigates from there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from labkit.errors import InvalidParameter

#: The query that puts the MLflow UI in its Model training mode.
MODEL_TRAINING = "workflowType=machine_learning"


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING}"


def compare_url(base: str, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> str:
    """The compare page of `run_ids` (its artifact pane shows files every run has, e.g. `preview.png`, side by side)."""
    def arg(ids: Sequence[str]) -> str:
        return quote(json.dumps(list(ids), separators=(",", ":")), safe="")

    return (f"{base.rstrip('/')}/#/compare-runs?runs={arg(run_ids)}&experiments={arg(experiment_ids)}"
            f"&{MODEL_TRAINING}")


def resolve_run(tracker: Any, text: str, *, recent: list[Any] | None = None) -> Any:
    """The MLflow run named by `text`: a full run id (of any experiment), or the first characters of one of the
    experiment's runs (as the Runs panel shows them). InvalidParameter naming `text` when it matches no run, or
    several. `recent`: the experiment's runs, when the caller has them already."""
    try:
        return tracker.client.get_run(text)
    except Exception:
        pass
    if recent is None:
        recent = tracker.search_runs(max_results=1000)
    found = [r for r in recent if r.info.run_id.startswith(text)] if text else []
    if len(found) != 1:
        where = f"experiment {tracker.config.experiment!r} in the store {tracker.uri!r}"
        why = (f"The store {tracker.uri!r} has no run {text!r} (nor a run of experiment "
               f"{tracker.config.experiment!r} whose id starts so)." if not found else
               f"{len(found)} runs of {where} start with {text!r}.")
        raise InvalidParameter(why, value=text, fix="give run ids (or enough of their first characters to tell them "
                                                    "apart) as the Runs panel or `lab.runs()` shows them.")
    return found[0]


def resolve_runs(tracker: Any, given: Sequence[str]) -> list[Any]:
    """The MLflow runs named by `given` (see `resolve_run`). InvalidParameter naming the one that matches no run,
    or several, or a run named twice."""
    if len(given) < 2:
        raise InvalidParameter(f"Comparing needs at least two runs, got {len(given)}.", value=list(given),
                               fix="name two or more run ids, e.g. `labkit ui --compare 1a2b3c4d 5e6f7a8b`.")
    recent = None
    runs: list[Any] = []
    for text in given:
        try:
            run = tracker.client.get_run(text)
        except Exception:
            if recent is None:
                recent = tracker.search_runs(max_results=1000)
            run = resolve_run(tracker, text, recent=recent)
        twice = [given[i] for i, r in enumerate(runs) if r.info.run_id == run.info.run_id]
        if twice:
            raise InvalidParameter(f"{text!r} and {twice[0]!r} name the same run {run.info.run_id}.", value=text,
                                   fix="name each run once: comparing a run with itself shows nothing.")
        runs.append(run)
    return runs
