"""The tiny pipelines of `labkit.testing` load and render through the hub's own code path.

Each family is built into a temporary folder, loaded with ``DiffusionPipeline.from_pretrained``
with the network blocked, and rendered at a tiny size: the output has the asked-for shape, the
same seed gives the same pixels, another seed other pixels. The SD 1.5 single-file checkpoint must
render exactly what the folder renders, and the pickle variants must hold the same weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("diffusers")

from labkit import testing as lt  # noqa: E402

MAX_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family built once, with seed 0, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("tiny")
    return {family: lt.build_tiny(family, root / family, seed=0) for family in lt.FAMILIES}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _digest(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in _files(folder).items()}


def _gray_image(height: int, width: int):
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# family -> (pipeline class name, call kwargs, expected output shape, output attribute)
CASES = {
    "sd15": (
        "StableDiffusionPipeline",
        {"prompt": "a photo of a red circle", "height": 32, "width": 48},
        (1, 32, 48, 3),
        "images",
    ),
    "sdxl": (
        "StableDiffusionXLPipeline",
        {"prompt": "a photo of a red circle", "height": 32, "width": 48},
        (1, 32, 48, 3),
        "images",
    ),
    "svd": (
        "StableVideoDiffusionPipeline",
        {"image": _gray_image(32, 48), "height": 32, "width": 48, "num_frames": 3, "decode_chunk_size": 3},
        (1, 3, 32, 48, 3),
        "frames",
    ),
    "wan": (
        "WanPipeline",
        {"prompt": "a cat walking", "height": 16, "width": 32, "num_frames": 5, "max_sequence_length": 16},
        (1, 5, 16, 32, 3),
        "frames",
    ),
}


def _render(pipe, family: str, seed: int) -> np.ndarray:
    _, kwargs, _, attr = CASES[family]
    out = pipe(**kwargs, num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(seed))
    return np.asarray(getattr(out, attr))


def test_import_loads_no_torch():
    code = (
        "import sys, labkit.testing as t; t.TINY_CONFIGS; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    root = str(Path(lt.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("family", list(CASES))
def test_folder_has_hub_layout(built: dict[str, Path], family: str):
    folder = built[family]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == CASES[family][0]
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        assert (folder / name).is_dir(), f"model_index names {name} but there is no folder"
    weights = [p.name for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".ckpt", ".pt")]
    assert weights and all(w.endswith(".safetensors") for w in weights)
    size = sum(len(b) for b in _files(folder).values())
    assert size < MAX_BYTES, f"{family} saves {size} bytes"


@pytest.mark.parametrize("family", list(CASES))
def test_loads_offline_and_renders_by_seed(built: dict[str, Path], family: str, offline):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(built[family])
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == CASES[family][0]

    first = _render(pipe, family, seed=0)
    again = _render(pipe, family, seed=0)
    other = _render(pipe, family, seed=1)

    assert first.shape == CASES[family][2]
    assert np.isfinite(first).all() and first.min() >= 0.0 and first.max() <= 1.0
    assert first.std() > 1e-3, "a constant picture: the pipeline is not drawing from its inputs"
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.01, "another seed rendered the same pixels"


def test_offline_guard_blocks_the_network(offline):
    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_same_seed_gives_identical_files(built: dict[str, Path], tmp_path: Path):
    again = lt.build_tiny_sd15(tmp_path / "again", seed=0)
    other = lt.build_tiny_sd15(tmp_path / "other", seed=1)
    assert _digest(again) == _digest(built["sd15"])
    differing = {n for n, h in _digest(other).items() if h != _digest(again)[n]}
    assert differing == {
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    }


def test_build_leaves_global_rng_alone(tmp_path: Path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lt.build_tiny_t2v(tmp_path / "wan", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_tokenizer_spells_unseen_words(built: dict[str, Path]):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built["sd15"] / "tokenizer")
    ids = tok("a hexagon sks")["input_ids"]
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True).strip() == "a hexagon sks"
    assert len(tok("cat")["input_ids"]) == 3, "a corpus word should be a single token"
    assert (built["sd15"] / "tokenizer" / "vocab.json").is_file()
    assert (built["sd15"] / "tokenizer" / "merges.txt").is_file()


def test_single_file_renders_like_the_folder(built: dict[str, Path], tmp_path: Path, offline):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline
    from safetensors import safe_open

    path = lt.save_single_file_sd15(built["sd15"], tmp_path / "tiny-sd15.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in keys
    assert "first_stage_model.decoder.mid.attn_1.q.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    assert all(k.split(".")[0] in ("model", "first_stage_model", "cond_stage_model") for k in keys)

    # Configs from a folder built with another seed: the weights must come from the file.
    other = lt.build_tiny_sd15(tmp_path / "other", seed=1)
    single = StableDiffusionPipeline.from_single_file(str(path), config=str(other), local_files_only=True)
    folder = DiffusionPipeline.from_pretrained(built["sd15"])
    other_pipe = DiffusionPipeline.from_pretrained(other)
    for pipe in (single, folder, other_pipe):
        pipe.set_progress_bar_config(disable=True)

    from_file = _render(single, "sd15", seed=0)
    np.testing.assert_array_equal(from_file, _render(folder, "sd15", seed=0))
    assert np.abs(from_file - _render(other_pipe, "sd15", seed=0)).max() > 0.01


def test_pickle_checkpoint_holds_the_same_weights(built: dict[str, Path], tmp_path: Path):
    from safetensors.torch import load_file

    single = load_file(str(lt.save_single_file_sd15(built["sd15"], tmp_path / "m.safetensors")))
    ckpt = lt.save_pickle_checkpoint(built["sd15"], tmp_path / "m.ckpt")
    head = ckpt.read_bytes()[:4]
    assert head[:2] == b"PK" or head[:1] == b"\x80", "not a torch pickle archive"
    loaded = torch.load(ckpt, weights_only=True)["state_dict"]
    assert loaded.keys() == single.keys()
    assert all(torch.equal(loaded[k], single[k]) for k in single)


def test_pickle_pipeline_loads_only_when_pickle_is_allowed(built: dict[str, Path], tmp_path: Path, offline):
    from diffusers import DiffusionPipeline

    folder = lt.save_pickle_pipeline(built["sd15"], tmp_path / "pickled")
    assert not list(folder.rglob("*.safetensors"))
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert (folder / "text_encoder" / "pytorch_model.bin").is_file()
    with pytest.raises(OSError, match="safetensors"):
        DiffusionPipeline.from_pretrained(folder, use_safetensors=True)

    pipe = DiffusionPipeline.from_pretrained(folder, use_safetensors=False)
    pipe.set_progress_bar_config(disable=True)
    reference = DiffusionPipeline.from_pretrained(built["sd15"])
    reference.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_render(pipe, "sd15", 0), _render(reference, "sd15", 0))


def test_unknown_family_is_named():
    with pytest.raises(KeyError, match="sd99"):
        lt.build_tiny("sd99", "unused")
