"""Bad files and folders as a user hands them to labkit: each gives a `LabkitError` whose message names the
bad value (the file, the key, the line) and whose fix says what to do — never a `UnicodeDecodeError`, a
`JSONDecodeError` or a safetensors error from inside a parser. Nothing here loads a model or opens a run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.errors import LabkitError

TOY = Path(__file__).resolve().parents[2] / "labkit" / "toyworld" / "model"
GOOD_SPEC = {"name": "study", "plan": {"prompt": "a {colour} circle", "model": "toyworld"},
             "grid": {"colour": ["red", "blue"]}, "seeds": 2}


# -- builders: each writes a bad input under tmp and returns (the call that must fail, a text the message names)

def _spec(tmp: Path, body: str | bytes, **data):
    from labkit.sweeps.spec import load_spec

    path = tmp / "study.yaml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        import yaml

        path.write_text(body if body else yaml.safe_dump({**GOOD_SPEC, **data}))
    return lambda: load_spec(path).check()


def _spec_value(key: str, value, token: str):
    def build(tmp: Path):
        return _spec(tmp, "", **{key: value}), token
    return build


def _raw_spec(text: str | bytes, token: str):
    def build(tmp: Path):
        return _spec(tmp, text), token
    return build


def _spec_folder(tmp: Path):
    from labkit.sweeps.spec import load_spec

    (tmp / "specs").mkdir()
    return lambda: load_spec(tmp / "specs"), "specs"


def _plan_size(tmp: Path):
    from labkit.sweeps.spec import spec_from_dict

    spec = spec_from_dict({**GOOD_SPEC, "parameters": {"size": "64x64"}})
    return lambda: spec.plan_for(spec.check()[0]), "64x64"


def _dataset(lines: bytes | None, token: str, *, as_file: bool = False):
    def build(tmp: Path):
        from labkit.compliance.datasets import read_records

        folder = tmp / "data"
        if as_file:
            folder.write_text("not a folder")
            return lambda: read_records(folder), "data"
        folder.mkdir()
        if lines is not None:
            (folder / "metadata.jsonl").write_bytes(lines)
        return lambda: read_records(folder), token
    return build


def _catalog(content: bytes | None, token: str):
    def build(tmp: Path):
        from labkit.catalog import Catalog

        path = tmp / "mine.toml"
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        return lambda: Catalog.load(extra=path, use_env=False), token
    return build


def _adapter_table(tmp: Path):
    from labkit.catalog import Catalog
    from labkit.pipelines.lora import adapter_entries

    path = tmp / "mine.toml"
    path.write_text('[adapters.hex]\nfamily = "toy"\nlicence = "cc0-1.0"\npath = 5\n')
    cat = Catalog.load(extra=path, use_env=False)
    return lambda: adapter_entries(cat), "path"


def _model_folder(index: bytes | None, token: str):
    def build(tmp: Path):
        from labkit.catalog import Catalog
        from labkit.pipelines.loader import resolve_model

        folder = tmp / "model"
        folder.mkdir()
        if index is not None:
            (folder / "model_index.json").write_bytes(index)
        return lambda: resolve_model(str(folder), Catalog.load(use_env=False)), token
    return build


def _model_index_file(tmp: Path):
    from labkit.catalog import Catalog
    from labkit.pipelines.loader import resolve_model

    return lambda: resolve_model(str(TOY / "model_index.json"), Catalog.load(use_env=False)), "model_index.json"


def _weights(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _valid_safetensors(tmp: Path, name: str) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp / name
    save_file({"unet.down.lora_A.weight": np.zeros((4, 8), dtype=np.float32)}, str(path))
    return path


def _checkpoint(content: bytes | None, name: str = "ckpt.safetensors", *, truncate: bool = False):
    def build(tmp: Path):
        from labkit.catalog import Catalog
        from labkit.pipelines.loader import resolve_model

        if truncate:
            path = _valid_safetensors(tmp, name)
            path.write_bytes(path.read_bytes()[:-40])
        else:
            path = _weights(tmp, name, content or b"")
        return lambda: resolve_model(str(path), Catalog.load(use_env=False), config=str(TOY)), name
    return build


def _adapter(content: bytes | None, name: str, *, truncate: bool = False, in_folder: bool = False):
    def build(tmp: Path):
        from labkit.pipelines.lora import resolve_adapter

        where = tmp / "lora" if in_folder else tmp
        where.mkdir(exist_ok=True)
        if truncate:
            path = _valid_safetensors(where, name)
            path.write_bytes(path.read_bytes()[:-16])
        else:
            path = _weights(where, name, content or b"")
        target = where if in_folder else path
        return lambda: resolve_adapter(str(target)), name
    return build


def _train_config(token: str, **kw):
    def build(tmp: Path):
        from labkit.training.config import TrainConfig

        args = {"output_dir": tmp / "out", "validate_every": 0, **kw}
        if args["output_dir"] == "FILE":
            (tmp / "taken").write_text("a file")
            args["output_dir"] = tmp / "taken"
        elif args["output_dir"] == "UNDER_FILE":
            (tmp / "taken").write_text("a file")
            args["output_dir"] = tmp / "taken" / "run"
        return lambda: TrainConfig(**args).validate(), token
    return build


def _damaged_checkpoint(tmp: Path):
    from labkit.training.config import TrainConfig

    ckpt = tmp / "out" / "checkpoints" / "checkpoint-000004"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text('{"step": 4, "conf')
    cfg = TrainConfig(output_dir=tmp / "out", validate_every=0, resume="latest")
    return cfg.validate, "checkpoint-000004"


def _lora_dataset(tmp: Path) -> Path:
    from labkit.toyworld import write_dataset

    write_dataset(tmp / "shapes", 3, size=32)
    return tmp / "shapes"


def _lora_config(token: str, *, damage: str | None = None, **kw):
    def build(tmp: Path):
        from labkit.training.lora import LoraTrainConfig

        data = _lora_dataset(tmp)
        first = json.loads((data / "metadata.jsonl").read_text().splitlines()[0])
        image = data / first["file_name"]
        if damage == "text-png":
            image.write_text("these are not pixels")
        elif damage == "truncated-png":
            image.write_bytes(image.read_bytes()[:60])
        elif damage == "no-caption":
            lines = (data / "metadata.jsonl").read_text().splitlines()
            lines[0] = json.dumps({**first, "text": ""})
            (data / "metadata.jsonl").write_text("\n".join(lines) + "\n")
        elif damage == "latin1":
            (data / "metadata.jsonl").write_bytes(b'{"file_name": "caf\xe9.png", "text": "a red circle"}\n')
        args = {"data": data, "output_dir": tmp / "out", **kw}
        if args["data"] == "FILE":
            args["data"] = data / "metadata.jsonl"
        if args["output_dir"] == "FILE":
            (tmp / "taken").write_text("a file")
            args["output_dir"] = tmp / "taken"
        tok = {"IMAGE": first["file_name"]}.get(token, token)
        return lambda: LoraTrainConfig(**args).validate(), tok
    return build


def _out_folder(kind: str):
    def build(tmp: Path):
        from labkit.outputs import copy_outputs

        src = tmp / "image.png"
        src.write_bytes(b"png")
        (tmp / "taken").write_text("a file")
        target = tmp / "taken" if kind == "file" else tmp / "taken" / "sub"
        return lambda: copy_outputs([src], target), "taken"
    return build


GARBAGE = b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage header}"
CASES: dict[str, Callable[[Path], tuple[Callable[[], object], str]]] = {
    # sweep specs
    "spec-not-utf8": _raw_spec(b"name: caf\xe9\nplan: {prompt: x}\n", "line 1"),
    "spec-is-a-folder": _spec_folder,
    "spec-bad-yaml": _raw_spec("name: [unclosed\n", "line"),
    "spec-impossible-date": _raw_spec("name: a\ndescription: 2024-13-45\nplan: {prompt: x}\n", "study.yaml"),
    "spec-not-a-mapping": _raw_spec("- name: a\n", "study.yaml"),
    "spec-timeout-abc": _spec_value("timeout", "abc", "abc"),
    "spec-timeout-negative": _spec_value("timeout", -5, "-5"),
    "spec-experiment-list": _spec_value("experiment", [1, 2], "[1, 2]"),
    "spec-seeds-text": _spec_value("seeds", "x", "'x'"),
    "spec-seeds-zero": _spec_value("seeds", 0, "0"),
    "spec-seeds-huge": _spec_value("seeds", 10**12, str(10**12)),
    "spec-seed-negative": _spec_value("seeds", [1, -2], "-2"),
    "spec-grid-number": _spec_value("grid", 5, "5"),
    "spec-grid-axis-scalar": _spec_value("grid", {"colour": "red"}, "'red'"),
    "spec-grid-axis-empty": _spec_value("grid", {"colour": []}, "colour"),
    "spec-grid-numeric-key": _spec_value("grid", {1: [1, 2]}, "[1]"),
    "spec-grid-too-big": _spec_value("grid", {f"a{i}": list(range(10)) for i in range(6)}, "2000000"),
    "spec-points-number": _spec_value("points", 5, "5"),
    "spec-metrics-number": _spec_value("metrics", 5, "5"),
    "spec-kernel-list": _spec_value("kernel", [1], "[1]"),
    "spec-description-mapping": _spec_value("description", {"a": 1}, "{'a': 1}"),
    "spec-max-runs-bool": _spec_value("max_runs", True, "True"),
    "spec-max-runs-zero": _spec_value("max_runs", 0, "0"),
    "spec-name-list": _spec_value("name", ["x"], "['x']"),
    "spec-plan-number": _spec_value("plan", 5, "5"),
    "spec-score-list": _spec_value("score", ["toyworld"], "['toyworld']"),
    "spec-compare-text": _spec_value("compare", "a vs b", "'a vs b'"),
    "spec-size-text": _plan_size,
    # dataset metadata
    "metadata-not-utf8": _dataset(b'{"file_name": "a.png"}\n{"file_name": "caf\xe9.png"}\n', "line 2"),
    "metadata-not-json": _dataset(b'{"file_name": "a.png"}\nnot json\n', "line 2"),
    "metadata-a-list": _dataset(b"[1, 2]\n", "line 1"),
    "metadata-file-name-number": _dataset(b'{"file_name": 5}\n', "line 1"),
    "metadata-missing": _dataset(None, "data"),
    "dataset-is-a-file": _dataset(None, "data", as_file=True),
    # catalogue files
    "catalog-not-utf8": _catalog(b'[models.mine]\nname = "caf\xe9"\n', "line 2"),
    "catalog-is-a-folder": _catalog(None, "mine.toml"),
    "catalog-adapter-path-number": _adapter_table,
    # model folders and checkpoints (resolved only: nothing loads)
    "model-index-truncated": _model_folder(b'{"_class_name": "StableDiff', "model_index.json"),
    "model-index-a-list": _model_folder(b"[1, 2]", "model_index.json"),
    "model-index-not-utf8": _model_folder(b'{"_class_name": "\xff"}', "model_index.json"),
    "model-folder-without-index": _model_folder(None, "model"),
    "model-index-file-itself": _model_index_file,
    "checkpoint-garbage-header": _checkpoint(GARBAGE),
    "checkpoint-empty": _checkpoint(b""),
    "checkpoint-huge-header-length": _checkpoint(b"\xff" * 64),
    "checkpoint-truncated": _checkpoint(None, truncate=True),
    "checkpoint-text-file": _checkpoint(b"hello", "notes.txt"),
    # LoRA adapters (resolved only)
    "adapter-text-file": _adapter(b"just some notes", "notes.txt"),
    "adapter-garbage-header": _adapter(GARBAGE, "lora.safetensors"),
    "adapter-truncated": _adapter(None, "lora.safetensors", truncate=True),
    "adapter-folder-garbage": _adapter(b"\x00" * 20, "pytorch_lora_weights.safetensors", in_folder=True),
    # training configs: checked before any model loads
    "train-steps-zero": _train_config("steps=0", steps=0),
    "train-steps-text": _train_config("'abc'", steps="abc"),
    "train-lr-zero": _train_config("learning_rate=0", learning_rate=0),
    "train-lr-nan": _train_config("nan", learning_rate=float("nan")),
    "train-batch-zero": _train_config("batch_size=0", batch_size=0),
    "train-betas-text": _train_config("'x'", adam_betas=(0.9, "x")),
    "train-prompts-string": _train_config("'a red circle'", validation_prompts="a red circle"),
    "train-output-is-file": _train_config("taken", output_dir="FILE"),
    "train-output-under-file": _train_config("taken", output_dir="UNDER_FILE"),
    "train-resume-latest-none": _train_config("checkpoints", resume="latest"),
    "train-resume-missing-folder": _train_config("nowhere", resume="nowhere"),
    "train-resume-number": _train_config("resume=5", resume=5),
    "train-resume-damaged": _damaged_checkpoint,
    "lora-steps-zero": _lora_config("steps=0", steps=0),
    "lora-lr-negative": _lora_config("learning_rate=-0.1", learning_rate=-0.1),
    "lora-rank-zero": _lora_config("rank=0", rank=0),
    "lora-batch-zero": _lora_config("batch_size=0", batch_size=0),
    "lora-resolution-odd": _lora_config("resolution=30", resolution=30),
    "lora-resume-latest-none": _lora_config("checkpoints", resume="latest"),
    "lora-output-is-file": _lora_config("taken", output_dir="FILE"),
    "lora-data-is-file": _lora_config("metadata.jsonl", data="FILE"),
    "lora-data-missing": _lora_config("nowhere", data="nowhere"),
    "lora-png-is-text": _lora_config("IMAGE", damage="text-png"),
    "lora-png-truncated": _lora_config("IMAGE", damage="truncated-png"),
    "lora-no-caption": _lora_config("IMAGE", damage="no-caption"),
    "lora-metadata-latin1": _lora_config("line 1", damage="latin1"),
    # output folders
    "out-is-a-file": _out_folder("file"),
    "out-under-a-file": _out_folder("under"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_the_value_and_a_fix(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABKIT_CATALOG", raising=False)
    call, token = CASES[case](tmp_path)
    with pytest.raises(LabkitError) as info:
        call()
    err = info.value
    assert token in str(err), f"{case}: the message does not name {token!r}: {err}"
    assert err.fix and len(err.fix) > 10, f"{case}: no fix: {err}"


def test_at_least_35_cases():
    assert len(CASES) >= 35


def test_a_catalogue_named_by_the_environment_that_is_not_utf8(tmp_path, monkeypatch):
    from labkit.catalog import Catalog
    from labkit.errors import ConfigError

    path = tmp_path / "mine.toml"
    path.write_bytes(b'[models.mine]\nname = "Mod\xe8le"\n')
    monkeypatch.setenv("LABKIT_CATALOG", str(path))
    with pytest.raises(ConfigError, match="line 2") as info:
        Catalog.load()
    assert str(path) in str(info.value) and "LABKIT_CATALOG" in str(info.value) and info.value.fix


def test_a_text_file_is_not_called_a_pickle(tmp_path):
    from labkit.errors import InvalidParameter, UnsafeWeights
    from labkit.pipelines.lora import resolve_adapter

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidParameter, match="not a weights file") as info:
        resolve_adapter(str(tmp_path / "notes.txt"))
    assert "pickle" not in str(info.value)
    (tmp_path / "lora.pt").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeWeights, match="pickle"):
        resolve_adapter(str(tmp_path / "lora.pt"))


def test_resume_if_any_starts_fresh_and_a_real_checkpoint_resolves(tmp_path):
    from labkit.training.config import TrainConfig
    from labkit.training.engine import resolve_resume

    cfg = TrainConfig(output_dir=tmp_path / "out", validate_every=0, resume="latest-if-any")
    cfg.validate()
    assert resolve_resume(cfg) is None
    ckpt = tmp_path / "out" / "checkpoints" / "checkpoint-000002"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 2, "config": cfg.to_dict()}))
    assert resolve_resume(cfg.replace(resume="latest")) == ckpt


def test_checkpoint_from_other_settings_is_refused_before_any_model(tmp_path):
    from labkit.errors import InvalidParameter
    from labkit.training.config import TrainConfig

    cfg = TrainConfig(output_dir=tmp_path / "out", validate_every=0, batch_size=4)
    ckpt = tmp_path / "out" / "checkpoints" / "checkpoint-000002"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 2, "config": cfg.to_dict()}))
    with pytest.raises(InvalidParameter, match="batch_size=4") as info:
        cfg.replace(batch_size=8, resume="latest").validate()
    assert "checkpoint-000002" in str(info.value)


def test_copy_outputs_copies_into_a_new_folder(tmp_path):
    from labkit.outputs import check_output_folder, copy_outputs

    src = tmp_path / "image.png"
    src.write_bytes(b"png bytes")
    assert check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing
    copies = copy_outputs([src], tmp_path / "a" / "b")
    assert copies == [tmp_path / "a" / "b" / "image.png"] and copies[0].read_bytes() == b"png bytes"
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["image.png"]  # no temporary left behind


def test_a_valid_safetensors_header_passes(tmp_path):
    from labkit.pipelines.loader import safetensors_header

    header = safetensors_header(TOY / "unet" / "diffusion_pytorch_model.safetensors")
    assert any(k.startswith("conv_in") for k in header)


# -- property-based: arbitrary bytes and values parse, or give a LabkitError; nothing else escapes

_FAST = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
_values = st.recursive(_json_scalars, lambda kids: st.lists(kids, max_size=4)
                       | st.dictionaries(st.text(max_size=6) | st.integers(), kids, max_size=4), max_leaves=12)


def _jsonl_lines():
    record = st.dictionaries(st.sampled_from(["file_name", "text", "licence", "license", "x"]), _values, max_size=4)
    line = st.one_of(record.map(lambda r: json.dumps(r).encode()), st.binary(max_size=40))
    return st.lists(line, max_size=6).map(lambda ls: b"\n".join(ls))


@_FAST
@given(data=st.one_of(st.binary(max_size=300), _jsonl_lines()))
def test_any_bytes_as_dataset_metadata(tmp_path, data):
    from labkit.compliance.datasets import dataset_breakdown

    (tmp_path / "metadata.jsonl").write_bytes(data)
    try:
        b = dataset_breakdown(tmp_path)
    except LabkitError as e:
        assert e.fix
    else:
        assert b.total == sum(b.counts.values()) > 0


def _yaml_texts():
    import yaml

    docs = st.dictionaries(st.sampled_from(list(GOOD_SPEC) + ["timeout", "points", "metrics", "max_runs"]), _values,
                           max_size=6).map(lambda d: yaml.safe_dump({**GOOD_SPEC, **d}).encode())
    return st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode), docs)


@_FAST
@given(data=_yaml_texts())
def test_any_bytes_as_sweep_spec(tmp_path, data):
    from labkit.sweeps.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    try:
        spec = load_spec(path)
        points = spec.check(yes=True)
        spec.plan_for(points[0])
    except LabkitError as e:
        assert e.fix


@pytest.mark.parametrize("key", ["name", "description", "experiment", "kernel", "timeout", "plan", "parameters",
                                 "grid", "points", "seeds", "score", "metrics", "compare", "max_runs", "notebook"])
@settings(deadline=None, max_examples=100)
@given(value=_values)
def test_any_value_for_each_sweep_spec_key(key, value):
    from labkit.sweeps.spec import spec_from_dict

    data = {**GOOD_SPEC, key: value}
    if key == "notebook":
        data.pop("plan")
    try:
        spec = spec_from_dict(data)
        points = spec.check(yes=True)
        for p in points[:3]:
            spec.plan_for(p)
    except LabkitError as e:
        assert e.fix
