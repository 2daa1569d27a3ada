"""LoRA end to end on the toy world: train an adapter for a shape the base model never saw, then load,
stack, switch, fuse, unfuse, unload, convert to kohya, compare, and follow its licence into the outputs.

One short training run (module fixture, a few CPU minutes at most) feeds most tests; the full
acceptance run (≥ 80 % hexagons from ≤ 50 examples in ≤ 10 minutes) is `test_lora_acceptance.py` (slow).
Assertions compare the adapter with the base model on the same prompts and seeds, so they hold for
any trained toy model in labkit/toyworld/model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("peft")

PROMPT = "a large red hexagon in the centre"
# Wider than diffusers' default attention-only targets: a new *shape* lives in the convolutions too.
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A hexagon adapter trained briefly on 32 generated examples licensed CC-BY-NC-4.0."""
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.toyworld.data import write_dataset
    from labkit.training.lora import LoraTrainConfig, train_lora

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lora")
    (root / "project" / "mlruns").mkdir(parents=True)
    data = root / "hexagons"
    write_dataset(data, 32, seed=0, split="train", n_objects=(1,), shapes=("hexagon",), licence="CC-BY-NC-4.0")
    lab = Lab(root / "project", hardware=HardwareProfile.simulated(None))
    cfg = LoraTrainConfig(data=data, output_dir=root / "out", steps=200, batch_size=8, learning_rate=2e-3,
                          target_modules=TARGETS, checkpoint_every=100, kohya=True, validate_every=200,
                          validation_prompts=(PROMPT,), validation_seeds=(0, 1), sampling_steps=10)
    result = train_lora(lab, cfg)
    assert result.status == "finished"
    return {"lab": lab, "result": result, "root": root, "data": data, "adapter": result.export_dir}


@pytest.fixture
def fresh_lab(trained, tmp_path):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    (tmp_path / "p" / "mlruns").mkdir(parents=True)
    return Lab(tmp_path / "p", hardware=HardwareProfile.simulated(None))


def _pixels(result) -> np.ndarray:
    return np.asarray(result.image).astype(np.int16)


def _hexagon_rate(pipe_render, prompts, seeds) -> float:
    from labkit.toyworld.detect import detect

    found = [detect(im) for im in pipe_render(prompts, seeds)]
    return sum(any(d.shape == "hexagon" for d in ds) for ds in found) / len(prompts)


def test_parse_adapter_spec():
    from labkit.pipelines.lora import parse_adapter

    assert parse_adapter("a/b.safetensors:0.5") == parse_adapter("a/b.safetensors:0.50")
    assert parse_adapter("x.safetensors:0.5").weight == 0.5
    assert parse_adapter("owner/repo").weight == 1.0
    assert parse_adapter("run:0123456789abcdef0123456789abcdef").id == "run:0123456789abcdef0123456789abcdef"
    assert parse_adapter(r"C:\loras\x.safetensors").id == r"C:\loras\x.safetensors"
    assert parse_adapter("run:0123456789abcdef0123456789abcdef:-1").weight == -1.0
    for digits in ("01234567890123456789012345678901", "0123456789e123456789012345678901"):  # reads as a number
        assert parse_adapter(f"run:{digits}") == parse_adapter(f"run:{digits}:1")
        assert parse_adapter(f"run:{digits}").id == f"run:{digits}"


def test_adapter_moves_the_shape_toward_hexagon(trained):
    """The fast stand-in for the acceptance test: same held-out prompts and seeds, adapter on vs off."""
    from labkit.toyworld.captions import prompts
    from labkit.training.lora import load_base_pipeline

    lab = trained["lab"]
    pipe, _ = load_base_pipeline(lab, "toyworld")
    from labkit.pipelines.lora import activate, resolve_adapter

    src = resolve_adapter(str(trained["adapter"]))
    ps = prompts("heldout", n=16, seed=3, n_objects=1, shapes=("hexagon",))
    seeds = list(range(16))

    def render(p, s):
        gens = [torch.Generator().manual_seed(x) for x in s]
        return pipe(p, num_inference_steps=10, guidance_scale=4.0, height=64, width=64, generator=gens).images

    activate(pipe, [], family="toy")
    base = _hexagon_rate(render, ps, seeds)
    activate(pipe, [(src, 1.0)], family="toy")
    with_adapter = _hexagon_rate(render, ps, seeds)
    print(f"hexagons on 16 held-out prompts: base {base:.0%}, adapter {with_adapter:.0%}")
    assert with_adapter >= base + 0.25, (base, with_adapter)


def test_training_records_metadata_card_checkpoints_and_validation(trained):
    from labkit.pipelines.lora import KOHYA_NAME, WEIGHT_NAME, read_metadata

    adapter = trained["adapter"]
    meta = read_metadata(adapter / WEIGHT_NAME)
    assert meta["labkit.base_model"] == "toyworld" and meta["labkit.base_family"] == "toy"
    dataset = json.loads(meta["labkit.dataset"])
    assert dataset["licences"] == {"cc-by-nc-4.0": 32} and dataset["items"] == 32
    chain = json.loads(meta["labkit.licence_chain"])
    assert chain[0] == {"kind": "model", "id": "toyworld", "licence": "cc0-1.0"}
    assert any(a["licence"] == "cc-by-nc-4.0" for a in chain[1:])
    card = (adapter / "README.md").read_text()
    assert "`toyworld`" in card and "| cc-by-nc-4.0 | 32 | 100.0% |" in card and "non-commercial" in card
    assert "license: cc-by-nc-4.0" in card and "## Licence\n\ncc-by-nc-4.0." in card  # the header's, not "other"
    assert (adapter / KOHYA_NAME).is_file()
    out = trained["result"].output_dir
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-000100", "checkpoint-000200"]
    assert all((out / "checkpoints" / c / "adapter" / WEIGHT_NAME).is_file() for c in ckpts)
    # checkpoints hold the adapter and optimizer state, never a copy of the base model
    assert (out / "checkpoints" / ckpts[0] / "model.safetensors").stat().st_size < 2_000_000
    grid = json.loads((out / "validation" / "step-000200.json").read_text())
    assert grid["labels"][:4] == [f"adapter: {PROMPT} (seed 0)", f"adapter: {PROMPT} (seed 1)",
                                  f"base: {PROMPT} (seed 0)", f"base: {PROMPT} (seed 1)"]
    metrics = trained["lab"].tracker.client.get_run(trained["result"].run_id).data.metrics
    assert "val/adapter_all_correct" in metrics and "val/base_all_correct" in metrics


def test_outputs_carry_the_adapter_and_its_data_licence(trained, fresh_lab, search_runs):
    """Issue 6's acceptance: CC-BY-NC training data makes the rendered outputs non-commercial."""
    r = fresh_lab.generate(PROMPT, seed=1, steps=4, adapters=[f"{trained['adapter']}:0.8"])
    terms = r.record["provenance"]["terms"]
    assert terms["commercial"] is False
    assert any("cc-by-nc-4.0" in x for x in terms["non_commercial"])
    assert "non-commercial" in r.record["terms"]
    kinds = [a["kind"] for a in r.record["provenance"]["assets"]]
    assert kinds[:2] == ["model", "adapter"] and "dataset-item" in kinds
    [rec] = r.model["adapters"]
    assert rec["weight"] == 0.8 and rec["family"] == "toy" and len(rec["hash"]) == 64
    [run] = search_runs(f"sqlite:///{fresh_lab.config.root / 'mlruns' / 'mlflow.db'}")
    assert run.data.tags["labkit.terms.commercial"] == "false"
    assert json.loads(run.data.tags["model.adapters"])[0]["hash"] == rec["hash"]
    assert json.loads(run.data.params["plan.adapters"].replace("'", '"'))[0]["weight"] == 0.8


def test_stack_switch_and_drop_adapters_without_reloading_the_base(trained, fresh_lab):
    out = trained["result"].output_dir
    final, early = str(trained["adapter"]), str(out / "checkpoints" / "checkpoint-000100")
    base = fresh_lab.generate(PROMPT, seed=2, steps=4)
    one = fresh_lab.generate(PROMPT, seed=2, steps=4, adapters=[f"{final}:1.0"])
    both = fresh_lab.generate(PROMPT, seed=2, steps=4, adapters=[f"{final}:0.6", f"{early}:0.6"])
    again = fresh_lab.generate(PROMPT, seed=2, steps=4, adapters=[f"{final}:1.0"])
    bare = fresh_lab.generate(PROMPT, seed=2, steps=4)
    assert len(fresh_lab.pipelines) == 1
    assert all(r.timings["load_s"] == 0.0 for r in (one, both, again, bare))
    assert np.abs(_pixels(one) - _pixels(base)).max() > 10       # the adapter does something
    assert np.abs(_pixels(both) - _pixels(one)).max() > 0        # stacking does something else
    assert np.array_equal(_pixels(again), _pixels(one))          # switching back is exact
    assert np.array_equal(_pixels(bare), _pixels(base))          # and so is dropping them
    zero = fresh_lab.generate(PROMPT, seed=2, steps=4, adapters=[f"{final}:0"])
    assert np.abs(_pixels(zero) - _pixels(base)).max() <= 1


def test_fused_equals_unfused_and_unload_restores_the_base(trained):
    from labkit.pipelines.lora import activate, fuse, resolve_adapter, unfuse, unload
    from labkit.training.lora import load_base_pipeline

    pipe, _ = load_base_pipeline(trained["lab"], "toyworld")
    src = resolve_adapter(str(trained["adapter"]))

    def render():
        g = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
        return pipe([PROMPT] * 2, num_inference_steps=6, guidance_scale=4.0, height=64, width=64, generator=g,
                    output_type="np").images

    before = render()
    weights = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    activate(pipe, [(src, 0.9)], family="toy")
    unfused = render()
    assert np.abs(unfused - before).max() > 10 / 255
    assert fuse(pipe) > 0
    fused = render()
    assert np.abs(fused - unfused).max() <= 2 / 255
    unfuse(pipe)
    assert np.abs(render() - unfused).max() <= 1e-6
    unload(pipe)
    assert np.array_equal(render(), before)
    after = dict(pipe.unet.named_parameters())
    assert set(after) == set(weights) and all(torch.equal(after[n], w) for n, w in weights.items())


def test_kohya_copy_renders_the_same_images(trained, fresh_lab):
    from labkit.pipelines.lora import KOHYA_NAME, resolve_adapter

    kohya = trained["adapter"] / KOHYA_NAME
    assert resolve_adapter(str(kohya)).format == "kohya"
    a = fresh_lab.generate(PROMPT, seed=3, steps=6, adapters=[f"{trained['adapter']}:0.7"])
    b = fresh_lab.generate(PROMPT, seed=3, steps=6, adapters=[f"{kohya}:0.7"])
    assert np.abs(_pixels(a) - _pixels(b)).max() <= 1


def _write_fake(path: Path, tensors: dict, **meta) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt", **meta})
    return path


def test_adapter_for_another_family_fails_before_rendering(trained, fresh_lab, tmp_path, search_runs):
    from safetensors.torch import load_file

    from labkit.errors import IncompatibleAdapter
    from labkit.pipelines.lora import WEIGHT_NAME

    sd = load_file(str(trained["adapter"] / WEIGHT_NAME))
    sdxl = _write_fake(tmp_path / "sdxl-style.safetensors", sd, **{"labkit.base_family": "sdxl"})
    with pytest.raises(IncompatibleAdapter, match="made for the 'sdxl' family.*'toy'") as e:
        fresh_lab.generate(PROMPT, seed=0, steps=2, adapters=[str(sdxl)])
    assert "sdxl model" in e.value.fix
    assert search_runs(f"sqlite:///{fresh_lab.config.root / 'mlruns' / 'mlflow.db'}") == []


def test_adapter_whose_keys_match_nothing_is_an_error(fresh_lab, tmp_path):
    from labkit.errors import IncompatibleAdapter

    z = torch.zeros
    nothing = _write_fake(tmp_path / "nothing.safetensors", {
        "unet.mid_block.not_a_layer.to_q.lora_A.weight": z(4, 64), "unet.mid_block.not_a_layer.to_q.lora_B.weight":
        z(64, 4)})
    with pytest.raises(IncompatibleAdapter, match="1 of 1 LoRA layers match no layer"):
        fresh_lab.generate(PROMPT, seed=0, steps=2, adapters=[str(nothing)])
    # right names, wrong sizes (an SD 1.5 adapter on the toy model): "other shapes", with the family guess
    wrong = _write_fake(tmp_path / "wrong.safetensors", {
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": z(4, 768),
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": z(64, 4),
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.alpha": torch.tensor(4.0)})
    with pytest.raises(IncompatibleAdapter, match="other shapes.*in 768 vs 64"):
        fresh_lab.generate(PROMPT, seed=0, steps=2, adapters=[str(wrong)])
    # the failed loads left the cached pipeline clean: a plain render is the base model
    assert fresh_lab.generate(PROMPT, seed=0, steps=2).model.get("adapters") is None


def test_hub_adapter_offline_and_not_cached_names_the_download(fresh_lab, offline):
    from labkit.errors import ModelNotCached

    with pytest.raises(ModelNotCached, match="not in the local Hugging Face cache") as e:
        fresh_lab.generate(PROMPT, seed=0, steps=2, adapters=["someone/toy-hexagon-lora:0.8"])
    assert "hf download someone/toy-hexagon-lora pytorch_lora_weights.safetensors" in e.value.fix


def test_catalogue_adapter_carries_its_family_and_licence(trained, tmp_path, monkeypatch, offline):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from labkit.pipelines.lora import WEIGHT_NAME

    cat = tmp_path / "mine.toml"
    cat.write_text(f'[adapters.hexagon]\npath = "{trained["adapter"] / WEIGHT_NAME}"\nfamily = "toy"\n'
                   'licence = "cc-by-4.0"\nname = "Toy hexagons"\n')
    monkeypatch.setenv("LABKIT_CATALOG", str(cat))
    (tmp_path / "p" / "mlruns").mkdir(parents=True)
    lab = Lab(tmp_path / "p", hardware=HardwareProfile.simulated(None))
    r = lab.generate(PROMPT, seed=0, steps=2, adapters=["hexagon:0.5"])
    assert r.model["adapters"][0]["licence"] == "cc-by-4.0"
    assert any(a == {"kind": "adapter", "id": "hexagon", "licence": "cc-by-4.0"}
               for a in r.record["provenance"]["assets"])


def test_interrupted_and_resumed_lora_training_matches_uninterrupted(trained, tmp_path):
    from safetensors.torch import load_file

    from labkit.pipelines.lora import WEIGHT_NAME
    from labkit.training.lora import LoraTrainConfig, train_lora

    lab = trained["lab"]
    common = dict(data=trained["data"], steps=6, batch_size=4, checkpoint_every=3, learning_rate=2e-3,
                  train_text_encoder=True, rank=4)
    full = train_lora(lab, LoraTrainConfig(output_dir=tmp_path / "full", **common))

    def stop_at_3(state):
        if state.step == 3:
            raise KeyboardInterrupt

    split = LoraTrainConfig(output_dir=tmp_path / "split", **common)
    first = train_lora(lab, split, callbacks=[stop_at_3])
    assert first.status == "interrupted" and first.step == 3
    # an interrupted run's checkpoint is already a loadable adapter
    assert (first.checkpoint / "adapter" / WEIGHT_NAME).is_file()
    second = train_lora(lab, split.replace(resume="latest"))
    assert second.status == "finished" and second.step == 6
    a, b = load_file(str(full.export_dir / WEIGHT_NAME)), load_file(str(second.export_dir / WEIGHT_NAME))
    assert set(a) == set(b) and any(k.startswith("text_encoder.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_generate_with_adapters_and_compare_checkpoints(trained, fresh_lab, capsys, monkeypatch):
    from labkit.cli import main

    root = str(fresh_lab.config.root)
    monkeypatch.setenv("LABKIT_ROOT", root)
    assert main(["generate", PROMPT, "--steps", "2", "--seed", "1", "--json",
                 "--adapter", f"{trained['adapter']}:0.5", "--adapter",
                 f"{trained['result'].output_dir / 'checkpoints' / 'checkpoint-000100'}:0.5"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [a["weight"] for a in record["model"]["adapters"]] == [0.5, 0.5]
    assert main(["compare", "adapters", str(trained["result"].output_dir), "--prompts", PROMPT,
                 "--seeds", "0", "1", "--weights", "0", "1", "--steps", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # checkpoints 100 and 200 and the final adapter, × 2 weights × 2 seeds × 1 prompt
    assert len(out["rows"]) == 12 and {r["checkpoint"] for r in out["rows"]} == {
        "checkpoint-000100", "checkpoint-000200", "final"}
    assert all(r["all_correct"] in (0.0, 1.0) for r in out["rows"])
    run = fresh_lab.tracker.client.get_run(out["run_id"])
    assert run.data.tags["labkit.job"] == "compare" and any(k.startswith("all_correct/") for k in run.data.metrics)
    files = {Path(f.path).name for f in fresh_lab.tracker.client.list_artifacts(out["run_id"], "compare")}
    assert {"grid-00.png", "table.csv", "table.json"} <= files
    # weight 0 is the base model whatever the checkpoint
    zero = [r for r in out["rows"] if r["weight"] == 0.0 and r["seed"] == 0]
    assert len({r["all_correct"] for r in zero}) == 1
