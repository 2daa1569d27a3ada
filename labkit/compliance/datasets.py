"""Licence breakdown of an image dataset in the Hugging Face imagefolder layout.

A folder of images with a `metadata.jsonl` (one JSON object per line: `file_name`, `text` or
`caption`, `licence` or `license`, `source`, `author`) gets a table of licence → count and share,
the items without a licence (or with one labkit does not know), the terms training on it implies,
a bar chart, and the assets a compliance check needs.

    b = dataset_breakdown("data/shapes")
    b.counts                      # {"cc0-1.0": 90, "cc-by-nc-4.0": 8, "unknown": 2}
    b.missing                     # ["000017.png", "000042.png"]
    b.terms.text                  # "non-commercial (…); attribution required: …"
    b.chart("breakdown.png")      # matplotlib, Agg canvas (no pyplot, no global backend change)
    enforce(b.assets(), mode)     # one asset per licence group, named with its item count
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.compliance.licences import UNKNOWN, LicenceTable
from labkit.compliance.policy import Asset, Mode, Verdict, check
from labkit.compliance.terms import DISCLAIMER, Terms, derive_terms
from labkit.errors import InvalidParameter

METADATA_FILE = "metadata.jsonl"
MISSING = "(none)"
LICENCE_KEYS = ("licence", "license")
CAPTION_KEYS = ("text", "caption")
#: A licence id or spelling is short ("cc-by-nc-sa-4.0", "Creative Commons Attribution 4.0 International").
MAX_LICENCE_CHARS = 200


@dataclass(frozen=True)
class DatasetBreakdown:
    """What the licences of a dataset's items are, and what training on it implies.

    counts: canonical licence id → number of items; items with no licence count under "(none)",
        items whose licence labkit does not know under "unknown" (their spellings in `unrecognised`).
    missing: file names of items without a licence.
    unrecognised: licence spelling → file names, for licences not in the licence table.
    """

    folder: str
    name: str
    total: int
    counts: dict[str, int]
    missing: list[str]
    unrecognised: dict[str, list[str]]
    spellings: dict[str, list[str]]
    terms: Terms
    sample_files: dict[str, list[str]] = field(default_factory=dict)

    @property
    def shares(self) -> dict[str, float]:
        """Licence → share of the items (0..1), in the order of `counts`."""
        return {k: v / self.total for k, v in self.counts.items()}

    def table(self) -> list[dict[str, Any]]:
        """Rows of licence, count and share (percent, one decimal), largest first."""
        return [{"licence": k, "count": v, "share": round(100.0 * v / self.total, 1)} for k, v in self.counts.items()]

    def assets(self, kind: str = "dataset-item") -> list[Asset]:
        """One asset per licence group, for `check` / `enforce`: its id names the dataset, the group and its size."""
        out = []
        for lid, n in self.counts.items():
            if lid == MISSING:
                files = self.missing
                out.append(Asset(kind, f"{self.name}: {n} item(s) without a licence ({_some(files)})", None,
                                 source=self.folder))
            elif lid == UNKNOWN:
                for spelling, files in self.unrecognised.items():
                    out.append(Asset(kind, f"{self.name}: {len(files)} item(s) under {spelling} ({_some(files)})",
                                     spelling, source=self.folder))
            else:
                out.append(Asset(kind, f"{self.name}: {n} item(s) under {lid}", lid, source=self.folder))
        return out

    def check(self, mode: str | Mode | None = None, **kw: Any) -> Verdict:
        """The compliance verdict of training on this dataset (one decision per licence group)."""
        return check(self.assets(), mode, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "name": self.name, "total": self.total, "counts": dict(self.counts),
                "shares": {k: round(v, 4) for k, v in self.shares.items()}, "table": self.table(),
                "missing": list(self.missing), "unrecognised": {k: list(v) for k, v in self.unrecognised.items()},
                "spellings": {k: list(v) for k, v in self.spellings.items()},
                "terms": self.terms.to_dict(), "disclaimer": DISCLAIMER}

    def chart(self, path: str | Path, title: str | None = None) -> Path:
        """Save a horizontal bar chart of licence → count as a PNG; returns the path.

        Uses matplotlib's Agg canvas directly, so it works headless and leaves pyplot's backend alone.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        labels = list(self.counts)[::-1]
        values = [self.counts[k] for k in labels]
        colours = ["#b0b0b0" if k in (MISSING, UNKNOWN) else "#4c72b0" for k in labels]
        fig = Figure(figsize=(6.4, 0.45 * len(labels) + 1.4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        bars = ax.barh(labels, values, color=colours)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {v} ({100.0 * v / self.total:.1f}%)", va="center", fontsize=9)
        ax.set_xlabel("items")
        ax.set_xlim(0, max(values) * 1.3)
        ax.set_title(title or f"Licences of {self.name} ({self.total} items)")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
        return out


def _some(files: list[str], n: int = 3) -> str:
    return ", ".join(files[:n]) + (f", … {len(files) - n} more" if len(files) > n else "")


def read_records(folder: str | Path) -> list[dict[str, Any]]:
    """The records of `folder/metadata.jsonl`; InvalidParameter naming the file and line of a bad record
    (not UTF-8, not a JSON object, no `file_name` text, a `licence` that is not a licence id as text), or the
    folder when it is a file or has no metadata."""
    from labkit.files import read_text

    folder = Path(folder)
    layout = (f"Point at an imagefolder dataset: a folder of images plus a {METADATA_FILE} with one JSON object "
              "per line (file_name, text, licence, source, author).")
    if folder.is_file():
        raise InvalidParameter(f"The dataset {str(folder)!r} is a file, not a folder.", value=str(folder),
                               fix=f"pass the folder that holds the images and {METADATA_FILE}"
                                   + (f" ({str(folder.parent)!r})." if folder.name == METADATA_FILE else "."))
    if not folder.is_dir():
        raise InvalidParameter(f"There is no dataset folder {str(folder)!r}.", value=str(folder), fix=layout)
    path = folder / METADATA_FILE
    if not path.is_file():
        raise InvalidParameter(f"No {METADATA_FILE} in {folder}.", value=str(folder), fix=layout)
    text = read_text(path, what="dataset metadata", fix="write one JSON object per line.", error=InvalidParameter)
    records = []
    # JSON Lines ends a record at "\n" only: str.splitlines() would also cut at U+2028, U+0085, \f … inside a
    # caption, where JSON allows them unescaped.
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as err:
            raise InvalidParameter(f"{path} line {n} is not JSON: {err}.", value=f"{path}:{n}: {line[:80]}",
                                   fix="Write one JSON object per line.") from err
        if not isinstance(rec, dict):
            raise InvalidParameter(f"{path} line {n} is a JSON {type(rec).__name__}, not an object.",
                                   value=f"{path}:{n}: {line[:80]}",
                                   fix='Write one object per line, e.g. {"file_name": "0001.png", "text": "…", '
                                       '"licence": "cc0-1.0"}.')
        name = rec.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameter(f"{path} line {n} has no file_name"
                                   + (f" (it is {name!r})." if "file_name" in rec else "."),
                                   value=f"{path}:{n}: {line[:80]}",
                                   fix='Give every line a "file_name" (the image path relative to the folder).')
        _check_licence_field(rec, path, n, line)
        records.append(rec)
    if not records:
        raise InvalidParameter(f"{path} has no records.", value=str(path), fix="Add one JSON line per image.")
    return records


def _check_licence_field(rec: dict[str, Any], path: Path, n: int, line: str) -> None:
    """InvalidParameter for a `licence` / `license` that is not a licence id: not text (a number, a list of
    licences, an object), or text far longer than any id (the licence's whole text pasted in)."""
    for key in LICENCE_KEYS:
        value = rec.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidParameter(f"{path} line {n}: {key} is a JSON {type(value).__name__} "
                                   f"({json.dumps(value)[:80]}), not a licence id.", value=f"{path}:{n}: {line[:80]}",
                                   fix=f'write the licence id as text, e.g. "{key}": "cc0-1.0" (for an item under '
                                       "several licences, the one you use it under).")
        if len(value) > MAX_LICENCE_CHARS:
            raise InvalidParameter(f"{path} line {n}: {key} is {len(value):,} characters long "
                                   f"({value[:60]!r}…), not a licence id.", value=f"{path}:{n}: {line[:80]}",
                                   fix=f'write the licence id (at most {MAX_LICENCE_CHARS} characters), e.g. '
                                       f'"{key}": "cc-by-4.0", not the licence text; put a link in "source".')


def record_licence(rec: dict[str, Any]) -> str | None:
    """The licence of one record (`licence` or `license`), None when absent or empty."""
    for key in LICENCE_KEYS:
        value = rec.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def dataset_breakdown(folder: str | Path, *, name: str | None = None,
                      licences: LicenceTable | None = None) -> DatasetBreakdown:
    """The licence breakdown of an imagefolder dataset.

    Args:
        folder: the folder holding the images and `metadata.jsonl`.
        name: how the dataset is named in assets and terms (default: the folder's name).
        licences: the licence table (default: `LicenceTable.load()`).

    Spellings are resolved through the licence table ("CC-BY-NC-4.0" and "cc by-nc 4.0" count as
    one licence); counts are ordered largest first.
    """
    licences = licences if licences is not None else LicenceTable.load()
    folder = Path(folder)
    records = read_records(folder)
    name = name or folder.resolve().name
    counts: Counter[str] = Counter()
    missing: list[str] = []
    unrecognised: dict[str, list[str]] = {}
    spellings: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for rec in records:
        fname = str(rec["file_name"])
        raw = record_licence(rec)
        if raw is None:
            key = MISSING
            missing.append(fname)
        else:
            cid = licences.canonical(raw)
            key = cid if cid is not None else UNKNOWN
            if cid is None or cid == UNKNOWN:
                unrecognised.setdefault(raw, []).append(fname)
            spellings.setdefault(key, [])
            if raw not in spellings[key]:
                spellings[key].append(raw)
        counts[key] += 1
        if len(samples.setdefault(key, [])) < 5:
            samples[key].append(fname)
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    group_assets = []
    for lid in ordered:
        if lid == MISSING:
            group_assets.append(Asset("dataset", f"{name} ({len(missing)} item(s) without a licence)", None))
        elif lid == UNKNOWN:
            group_assets += [Asset("dataset", f"{name} ({len(files)} item(s))", spelling)
                             for spelling, files in unrecognised.items()]
        else:
            group_assets.append(Asset("dataset", name, lid))
    terms = derive_terms(group_assets, licences=licences)
    return DatasetBreakdown(folder=str(folder), name=name, total=len(records), counts=ordered, missing=missing,
                            unrecognised=unrecognised, spellings=spellings, terms=terms, sample_files=samples)


__all__ = ["METADATA_FILE", "MISSING", "DatasetBreakdown", "dataset_breakdown", "read_records", "record_licence"]
