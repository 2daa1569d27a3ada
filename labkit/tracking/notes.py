"""Research notes and run descriptions: both live in MLflow's description tag, `mlflow.note.content`.

A render's description starts with a one-line summary labkit writes (model, size, steps, seed, time — the line the
MLflow UI shows under the run's name), kept again in the tag `labkit.summary`; a researcher's notes follow it after
a blank line. labkit's readers (`Tracker.get_note`, the Runs panel, `RunSummary.note`) see the notes only, so a
summary never reads as something a person wrote, and `replace=True` replaces the notes, never the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The tag the MLflow UI shows (and edits) as a run's or an experiment's description.
NOTE_TAG = "mlflow.note.content"
#: The one-line summary labkit put at the top of a run's description.
SUMMARY_TAG = "labkit.summary"
#: MLflow's limits on one tag value: runs truncate silently beyond 8000, experiments refuse 20000.
MAX_NOTE_LEN = {"run": 8000, "experiment": 20000}


def own_note(tags: Mapping[str, str]) -> str:
    """The notes in a run's (or experiment's) tags: its description without labkit's summary line."""
    note, summary = tags.get(NOTE_TAG, ""), tags.get(SUMMARY_TAG, "")
    if summary and note.startswith(summary):
        return note[len(summary):].lstrip("\n")
    return note


def description(summary: str, note: str = "") -> str:
    """The description MLflow shows: `summary` first, then `note` after a blank line."""
    return f"{summary}\n\n{note}" if summary and note else summary or note


def get_note(tracker: Any, run_id: str | None = None, *, experiment: str | None = None) -> str:
    """The notes of run `run_id`, or of `experiment` (default: the tracker's) without one."""
    if run_id is not None:
        return own_note(tracker.get_run(run_id).data.tags)
    return own_note(tracker.client.get_experiment(tracker.experiment_id(experiment)).tags)


def add_note(tracker: Any, text: str, run_id: str | None = None, *, experiment: str | None = None,
             replace: bool = False) -> str:
    """Add `text` (Markdown) to the notes of run `run_id`, or of `experiment` without one; return the notes."""
    from labkit.errors import InvalidParameter

    if not isinstance(text, str) or not text.strip():
        raise InvalidParameter("The note is empty.", value=text, fix="write the note as a Markdown string.")
    with tracker.lock():  # read-modify-write: two processes adding notes at once must both land
        if run_id is not None:
            tags = tracker.get_run(run_id).data.tags
        else:
            tags = tracker.client.get_experiment(tracker.experiment_id(experiment)).tags
        old = "" if replace else own_note(tags)
        note = f"{old.rstrip()}\n\n{text.strip()}" if old.strip() else text.strip()
        summary = tags.get(SUMMARY_TAG, "") if tags.get(NOTE_TAG, "").startswith(tags.get(SUMMARY_TAG, "")) else ""
        full = description(summary, note)
        target = "run" if run_id is not None else "experiment"
        limit = MAX_NOTE_LEN[target]
        if len(full) > limit:
            raise InvalidParameter(
                f"The {target} note would have {len(full)} characters; MLflow keeps at most {limit}.",
                value=len(full), fix="shorten it, pass replace=True, or log long text as an artifact "
                                     "(run.log_text(text, 'notes.md')).")
        if run_id is not None:
            tracker.client.set_tag(run_id, NOTE_TAG, full)
        else:
            tracker.client.set_experiment_tag(tracker.experiment_id(experiment), NOTE_TAG, full)
    return note
