"""Training on an image folder: the run records the folder's licence breakdown (table, chart, missing
items, implied terms), checks every item's licence before the first step, and the model card says it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from labkit.errors import ComplianceViolation, InvalidParameter  # noqa: E402
from labkit.toyworld.data import write_dataset  # noqa: E402
from labkit.training import TrainConfig, TrainTask, train  # noqa: E402


class FolderTask(TrainTask):
    """Autoencode the images of an imagefolder dataset with one conv layer: data_card names the folder."""

    name = "folder-ae"

    def __init__(self, folder: Path):
        import numpy as np
        from PIL import Image

        self.folder = Path(folder)
        files = sorted(self.folder.glob("*.png"))
        self.images = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32))
                                   .permute(2, 0, 1) / 255.0 for f in files])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = torch.nn.Conv2d(3, 3, 3, padding=1)

    def models(self):
        return {"net": self.net}

    def batches(self, batch_size, start):
        i = start
        while True:
            idx = torch.arange(i * batch_size, (i + 1) * batch_size) % len(self.images)
            yield self.images[idx]
            i += 1

    def loss(self, batch, ctx):
        return torch.nn.functional.mse_loss(self.net(batch), batch)

    def data_card(self):
        return {"description": "toy-world shapes", "folder": str(self.folder), "name": "shapes"}


def mixed_folder(folder: Path, n: int = 10, nc: int = 3, missing: int = 2) -> tuple[Path, list[str]]:
    """A toy-world folder: `nc` items under CC-BY-NC-4.0, `missing` without a licence, the rest CC0."""
    meta = write_dataset(folder, n=n, seed=1, size=32)
    lines = [json.loads(x) for x in meta.read_text().splitlines()]
    for i, item in enumerate(lines):
        if i < nc:
            item["licence"] = "CC-BY-NC-4.0"
        elif i < nc + missing:
            item.pop("licence")
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder, [x["file_name"] for x in lines[nc:nc + missing]]


def config(out: Path, **kw) -> TrainConfig:
    base = dict(output_dir=out, steps=2, batch_size=4, learning_rate=1e-2, seed=0, checkpoint_every=0,
                validate_every=0, log_every=1, licence="CC-BY-NC-4.0", cpu=True)
    base.update(kw)
    return TrainConfig(**base)


def test_training_run_logs_the_folders_licence_breakdown(lab, tmp_path):
    folder, missing = mixed_folder(tmp_path / "shapes")
    result = train(FolderTask(folder), config(tmp_path / "out"), lab=lab, run_name="folder")
    assert result.status == "finished"
    run = lab.tracker.client.get_run(result.run_id)
    tags = run.data.tags
    art = Path(run.info.artifact_uri.removeprefix("file://")) / "compliance"

    table = json.loads((art / "dataset-licences.json").read_text())
    assert table["total"] == 10 and table["name"] == "shapes"
    assert table["counts"] == {"cc0-1.0": 5, "cc-by-nc-4.0": 3, "(none)": 2}
    assert sorted(table["missing"]) == sorted(missing)
    assert (art / "dataset-licences.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted((art / "missing-licences.txt").read_text().split()) == sorted(missing)

    assert tags["labkit.dataset.items"] == "10" and tags["labkit.dataset.missing"] == "2"
    assert tags["labkit.dataset.licences"] == "cc0-1.0: 5, cc-by-nc-4.0: 3, (none): 2"
    assert tags["labkit.dataset.terms.commercial"] == "false"
    # The run's own terms come from every licence group of the items: the NC items make it non-commercial,
    # the items without a licence are warned about (research mode) and named.
    assert tags["labkit.terms.commercial"] == "false" and "non-commercial" in tags["labkit.terms.text"]
    assert tags["labkit.compliance.verdict"] == "warn" and "without a licence" in tags["labkit.compliance.warnings"]
    chain = json.loads(tags["labkit.terms.assets"])
    assert {a["kind"] for a in chain} == {"dataset-item"} and len(chain) == 3
    assert run.data.params["data.folder"] == str(folder)

    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "## Licences of the training data" in card and "| cc-by-nc-4.0 | 3 | 30.0% |" in card
    assert "license: cc-by-nc-4.0" in card  # the licence the config gave; the mixed data alone names none:
    assert FolderTask(folder).output_licence() is None and FolderTask(folder).output_licence("mit") == "mit"
    assert all(name in card for name in missing)


def test_items_without_a_licence_block_strict_training_before_any_step(project, tmp_path, search_runs):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    folder, missing = mixed_folder(tmp_path / "shapes", nc=0)
    strict = Lab(project, hardware=HardwareProfile.simulated(None), compliance_mode="strict")
    with pytest.raises(ComplianceViolation, match="without a licence") as err:
        train(FolderTask(folder), config(tmp_path / "out"), lab=strict)
    assert missing[0] in str(err.value)
    assert search_runs(strict.config.tracking_uri) == [] and not (tmp_path / "out").exists()


def test_a_malformed_metadata_file_fails_before_training(lab, tmp_path):
    folder, _ = mixed_folder(tmp_path / "shapes")
    (folder / "metadata.jsonl").write_text('{"file_name": "000000.png"}\nnot json\n')
    with pytest.raises(InvalidParameter, match="line 2 is not JSON"):
        train(FolderTask(folder), config(tmp_path / "out"), lab=lab)
