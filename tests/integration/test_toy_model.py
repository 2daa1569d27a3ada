"""The toy model's builders: a standard Stable Diffusion folder that diffusers loads offline and
renders at 64×64, a real BPE tokenizer that spells unseen words, and the toy-base recipe's two
training phases running through the engine.

Weights here are untrained (quality is the evaluator's business, on the shipped model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("diffusers")

from labkit.toyworld import model as tm  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return tm.build_untrained(tmp_path_factory.mktemp("toy") / "model", seed=0)


def test_saving_the_pipeline_draws_no_library_progress_bars(tmp_path, capfd):
    """A training command ends by saving its model: transformers' "Writing model shards" bar is not the
    command's output."""
    tm.build_untrained(tmp_path / "model", seed=0)
    assert "Writing model shards" not in capfd.readouterr().err


def test_folder_is_a_standard_sd_pipeline_tagged_toy(folder: Path, offline):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["labkit"]["family"] == "toy"
    from labkit.catalog import family_from_model_index

    assert family_from_model_index(index) == "toy"
    assert tm.weights_bytes(folder) <= 10 * 1024 * 1024
    assert not list(folder.rglob("*.bin")), "weights must be safetensors"

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.vae_scale_factor == 2 and pipe.unet.config.sample_size == 32
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    n_unet = sum(p.numel() for p in pipe.unet.parameters())
    assert 1.0e6 < n_unet < 2.5e6  # DESIGN's data point: ~1.7 M

    def render(seed):
        return pipe("a small red circle on the left", num_inference_steps=2, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images

    a, b, c = render(0), render(0), render(1)
    assert a.shape == (1, 64, 64, 3) and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_tokenizer_spells_unseen_words_with_known_tokens(folder: Path, offline):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    vocab = tok.get_vocab()
    assert (folder / "tokenizer" / "vocab.json").is_file() and (folder / "tokenizer" / "merges.txt").is_file()
    # the toy world's words are one token each...
    for word in ("circle", "square", "triangle", "diamond", "red", "purple", "left", "centre", "small", "large"):
        assert tok.tokenize(word) == [f"{word}</w>"], word
    # ...words it never saw spell out as several known tokens (no unknown token), CLIP-style
    for word in ("hexagon", "sks", "zyzzyva"):
        pieces = tok.tokenize(word)
        assert len(pieces) > 1 and all(p in vocab for p in pieces), (word, pieces)
        assert pieces[-1].endswith("</w>") and tok.unk_token_id not in tok.convert_tokens_to_ids(pieces)
        assert tok.decode(tok.convert_tokens_to_ids(pieces)).strip() == word
    ids = tok("a sks hexagon", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(ids) == tok.model_max_length == 32
    assert ids[0] == vocab["<|startoftext|>"]


def test_toy_recipe_phases_train_through_the_engine(lab, tmp_path, offline):
    from labkit.training import TrainConfig, train
    from labkit.training.toy_base import ToyDiffusionTask, ToyVAETask, validation_prompts

    comps = tm.build_components(tmp_path / "build", seed=0)
    prompts = validation_prompts(1, 1)
    common = dict(batch_size=2, learning_rate=1e-3, checkpoint_every=0, checkpoint_artifacts="none",
                  validate_every=2, validation_prompts=prompts, log_every=1, cpu=True, licence="CC0-1.0")
    before = comps["vae"].decoder.conv_out.weight.detach().clone()
    res = train(ToyVAETask(comps["vae"]), TrainConfig(output_dir=tmp_path / "vae", steps=2, **common), lab=lab)
    assert res.status == "finished" and not torch.equal(before, comps["vae"].decoder.conv_out.weight)
    task = ToyDiffusionTask(comps, guidance_scale=3.0, sampling_steps=2, min_snr_gamma=5.0, object_weight=4.0)
    # adherence on an untrained model is a number in [0, 1]; cheap: fewer prompts
    import labkit.training.toy_base as tt

    real = tt.adherence
    tt.adherence = lambda pipe, **kw: real(pipe, **{**kw, "n": 2})
    try:
        res = train(task, TrainConfig(output_dir=tmp_path / "unet", steps=2, **common), lab=lab)
    finally:
        tt.adherence = real
    assert res.status == "finished"
    metrics = lab.tracker.client.get_run(res.run_id).data.metrics
    assert 0.0 <= metrics["val/colour"] <= 1.0 and "val/two_colour" in metrics
    index = json.loads((res.export_dir / "model_index.json").read_text())
    assert index["labkit"] == {"family": "toy", "trained": True}
    assert "CC0-1.0" in (res.export_dir / "README.md").read_text()


def test_text_pretraining_teaches_the_encoder_what_is_where_how_many_and_which_side_in_unseen_captions(
        lab, tmp_path, offline):
    from labkit.toyworld.geneval import check_mix
    from labkit.training import TrainConfig, train
    from labkit.training.toy_text import ToyTextTask

    comps = tm.build_components(tmp_path / "build", seed=0)
    task = ToyTextTask(comps["text_encoder"], comps["tokenizer"], data_mix=check_mix(None))  # the recipe's mix
    before = task.validate((), (), 0).metrics
    res = train(task, TrainConfig(output_dir=tmp_path / "text", steps=250, batch_size=64, learning_rate=3e-3,
                                  checkpoint_every=0, validate_every=250, validation_prompts=("captions",),
                                  log_every=50, cpu=True, licence="CC0-1.0"), lab=lab)
    assert res.status == "finished"
    metrics = lab.tracker.client.get_run(res.run_id).data.metrics
    # held-out captions: attribute combinations the encoder never saw, in every paraphrase (measured after 250
    # steps: colour 0.59, size 0.68, counts 0.97, relations 1.0, each phrase's object in two- and three-object
    # captions 0.985; before: 0, 0, 0, 0.01, 0)
    assert before["heldout_colour"] < 0.2 and before["heldout_count"] < 0.2 and before["heldout_relation"] < 0.3
    assert before["heldout_binding"] < 0.2
    assert metrics["val/heldout_colour"] > 0.4 and metrics["val/heldout_size"] > 0.4
    assert metrics["val/heldout_count"] > 0.6 and metrics["val/heldout_relation"] > 0.8
    assert metrics["val/heldout_binding"] > 0.8
    assert (res.export_dir / "text_encoder.safetensors").is_file()


def test_cli_train_toy_base_writes_a_loadable_toy_pipeline(cli_env, project, tmp_path):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab
    from tests.integration.test_cli import labkit

    out = tmp_path / "toy-run"
    labkit("train", "toy-base", "--output", str(out), "--steps", "2", "--vae-steps", "2", "--text-steps", "2",
           "--batch-size", "2", "--no-eval", "--threads", "1", env=cli_env)
    model = out / "model"
    lab = Lab(project, hardware=HardwareProfile.simulated(None))
    r = lab.generate("a small red circle on the left", model=str(model), steps=2, seed=0, size=(64, 64))
    assert r.model["family"] == "toy" and r.image.size == (64, 64)


def test_toy_base_resume_without_a_stopped_run_says_there_is_nothing_to_resume(lab, tmp_path):
    from labkit.errors import InvalidParameter
    from labkit.training.toy_base import ToyBaseConfig, train_toy_base

    with pytest.raises(InvalidParameter, match="Nothing to resume") as err:
        train_toy_base(lab, ToyBaseConfig(output_dir=tmp_path / "empty", resume="latest"))
    assert "--resume" in err.value.fix
    assert not (tmp_path / "empty").exists() and lab.runs() == []


@pytest.mark.slow  # 60 s; `make test` trains toy-base on the default mix already (the CLI test above)
def test_toy_base_trains_on_the_benchmark_scene_kinds_by_a_data_mix(cli_env, project, tmp_path):
    """A smoke run of `labkit train toy-base --data-mix`: the phases draw the mixed kinds, the card says so,
    and a bad mix fails before any model is built."""
    from labkit.toyworld.geneval import read
    from labkit.training.toy_base import _train_batch
    from tests.integration.test_cli import labkit

    _, captions = _train_batch(0, 24, 0, {"count": 1.0, "relation": 1.0})
    assert {read(c).kind for c in captions} == {"count", "relation"}
    out = tmp_path / "toy-mix"
    labkit("train", "toy-base", "--output", str(out), "--steps", "2", "--vae-steps", "2", "--text-steps", "2",
           "--batch-size", "2", "--no-eval", "--threads", "1", "--data-mix", "single=1,count=2,relation=1",
           env=cli_env)
    card = (out / "model" / "README.md").read_text()
    assert "scene kinds single 25%, count 50%, relation 25%" in card
    bad = labkit("train", "toy-base", "--output", str(tmp_path / "bad"), "--data-mix", "single=1,five=1",
                 env=cli_env, check=False)
    assert bad.returncode == 2 and "five" in bad.stderr and not (tmp_path / "bad").exists()
