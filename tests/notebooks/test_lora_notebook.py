"""notebooks/06_lora_training.ipynb, executed by papermill on a real ipykernel with tiny parameters on
the toy world: it trains, shows validation grids, compares checkpoints, renders with the adapter."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "06_lora_training.ipynb"


def test_lora_notebook_is_thin_and_has_no_outputs():
    book = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(book)
    first = book.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    assert book.metadata["kernelspec"]["name"] == "python3" and "widgets" not in book.metadata
    assert all(c.outputs == [] and c.execution_count is None for c in book.cells if c.cell_type == "code")


@pytest.mark.notebook
def test_lora_notebook_trains_validates_compares_and_renders(migrated_store, project, tmp_path, monkeypatch,
                                                            search_runs):
    import papermill

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "06.out.ipynb"
    start = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(project), progress_bar=False, log_output=False,
        parameters={"root": str(project), "n_examples": 8, "steps": 4, "batch_size": 4, "validate_every": 2,
                    "checkpoint_every": 2, "sampling_steps": 2, "weights": [0.0, 1.0], "seeds": [0],
                    "licence": "CC-BY-NC-4.0", "threads": 1})
    seconds = time.perf_counter() - start
    book = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") if o.get("output_type") == "stream" else str(o.get("data", {}).get(
        "text/plain", "")) for c in book.cells for o in c.get("outputs", []))
    pngs = sum("image/png" in o.get("data", {}) for c in book.cells for o in c.get("outputs", []))
    assert "8 images; licences: {'cc-by-nc-4.0': 8}" in text
    assert "step 2: step-000002.png" in text and "step 4: step-000004.png" in text
    assert "adapter written to" in text and "comparison run" in text
    assert "checkpoint-000002 @ 0" in text and "final @ 1" in text
    assert "terms: non-commercial" in text
    assert pngs >= 4  # two validation grids, the comparison grid, the rendered image
    jobs = [r.data.tags.get("labkit.job") for r in search_runs(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")]
    assert sorted(jobs) == ["compare", "render", "train"], jobs
    print(f"\nthe LoRA notebook ran in {seconds:.0f} s")  # a figure for the log, not an assertion: timing is noisy
