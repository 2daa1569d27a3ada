"""notebooks/06_lora_training.ipynb, executed by papermill on a real ipykernel with tiny parameters on
the toy world: it trains, shows validation grids, compares checkpoints, renders with the adapter; run again with
other parameters, it makes its own data and shows only its own grids."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "06_lora_training.ipynb"
TINY = {"batch_size": 4, "sampling_steps": 2, "seeds": [0], "threads": 1}


def _run(project: Path, out: Path, **parameters) -> tuple[str, int]:
    """Execute the notebook with tiny settings; what it printed, and how many PNGs it showed."""
    import papermill

    papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(project), progress_bar=False,
                               log_output=False, parameters={"root": str(project), **TINY, **parameters})
    book = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") if o.get("output_type") == "stream" else str(o.get("data", {}).get(
        "text/plain", "")) for c in book.cells for o in c.get("outputs", []))
    return text, sum("image/png" in o.get("data", {}) for c in book.cells for o in c.get("outputs", []))


def test_lora_notebook_is_thin_and_has_no_outputs():
    book = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(book)
    first = book.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    assert book.metadata["kernelspec"]["name"] == "python3" and "widgets" not in book.metadata
    assert all(c.outputs == [] and c.execution_count is None for c in book.cells if c.cell_type == "code")


@pytest.mark.notebook
def test_lora_notebook_trains_validates_compares_and_renders_and_a_rerun_uses_its_own_data(
        migrated_store, project, tmp_path, monkeypatch, search_runs):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    text, pngs = _run(project, tmp_path / "06.out.ipynb", n_examples=8, steps=4, validate_every=2, checkpoint_every=2,
                      weights=[0.0, 1.0], licence="CC-BY-NC-4.0")
    seconds = time.perf_counter() - start
    assert "8 images; licences: {'cc-by-nc-4.0': 8}" in text
    assert "step 2: step-000002.png" in text and "step 4: step-000004.png" in text
    assert "adapter written to" in text and "comparison run" in text
    assert "checkpoint-000002 @ 0" in text and "final @ 1" in text
    assert "terms: non-commercial" in text
    assert pngs >= 4  # two validation grids, the comparison grid, the rendered image
    jobs = [r.data.tags.get("labkit.job") for r in search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")]
    assert sorted(jobs) == ["compare", "render", "train"], jobs
    print(f"\nthe LoRA notebook ran in {seconds:.0f} s")  # a figure for the log, not an assertion: timing is noisy

    # A rerun with other parameters in the same project used to train on the data the first run generated (8
    # images under another licence) and to show the first run's validation grids (step 4) as its own.
    again, pngs = _run(project, tmp_path / "again.ipynb", n_examples=4, steps=2, validate_every=2, checkpoint_every=2,
                       weights=[1.0], licence="CC0-1.0")
    assert "4 images; licences: {'cc0-1.0': 4}" in again and "terms: non-commercial" not in again
    assert "step 2: step-000002.png" in again
    assert "step-000004.png" not in again  # the first run's grid, still in the folder
    assert pngs == 3  # this run's validation grid, the comparison grid, the render
    folders = [p for p in (project / "lora").iterdir() if p.name.startswith("hexagon-data")]
    assert len(folders) == 2, folders  # each set of parameters its own data; the first run's kept for its record
    trains = [r for r in search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
              if r.data.tags.get("labkit.job") == "train"]
    assert sorted(r.data.params["steps"] for r in trains) == ["2", "4"]

