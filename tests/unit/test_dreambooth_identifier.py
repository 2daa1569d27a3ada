"""The DreamBooth identifier and prompts as a user sets them up: a token the tokenizer splits or a common word is
flagged with rarer words to use; class prompts are the captions without the identifier; the toy subject's
held-out contexts are the ones its images never show."""

from __future__ import annotations

from pathlib import Path

import pytest

import labkit
from labkit.errors import InvalidParameter
from labkit.toyworld.subject import (
    HELDOUT_CONTEXTS,
    TRAIN_CONTEXTS,
    class_prompts,
    subject_prompts,
    write_class_prompts,
    write_subject_dataset,
)
from labkit.training.dreambooth import DreamBoothConfig, identifier_report

TOY_TOKENIZER = Path(labkit.__file__).parent / "toyworld" / "model" / "tokenizer"


def _tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(TOY_TOKENIZER))


def test_a_split_or_common_identifier_is_flagged_with_rarer_single_piece_words():
    tok = _tokenizer()
    split = identifier_report(tok, "sks")
    assert split["pieces"] == ["sk", "s</w>"] and "splits into 2 pieces" in split["warning"]
    assert split["suggestions"] and all(len(tok.tokenize(w)) == 1 for w in split["suggestions"])
    common = identifier_report(tok, "dog")
    assert "common word" in common["warning"]
    rare = identifier_report(tok, split["suggestions"][0])
    assert rare["warning"] is None and rare["suggestions"] == []


def test_class_prompts_are_the_captions_without_the_identifier(tmp_path):
    write_subject_dataset(tmp_path / "ring")
    cfg = DreamBoothConfig(data=tmp_path / "ring", output_dir=tmp_path / "out")
    captions = cfg.instance_captions()
    assert captions[0] == "a small yellow sks circle on the left"
    classes = cfg.class_prompts(captions)
    assert classes[0] == "a small yellow circle on the left" and len(classes) == len(set(classes)) == len(set(captions))
    assert DreamBoothConfig(data=tmp_path / "ring", output_dir=tmp_path / "o", class_prompt="a circle"
                            ).class_prompts(captions) == ["a circle"]


def test_held_out_contexts_are_never_in_the_training_images():
    assert not set(HELDOUT_CONTEXTS) & set(TRAIN_CONTEXTS)
    assert {s for s, _ in TRAIN_CONTEXTS} == {"small", "large"}
    assert all(obj.shape == "ring" and obj.colour == "yellow" for _, obj in subject_prompts("heldout"))


def test_several_class_prompts_are_taken_in_turn_and_never_name_the_subject(tmp_path):
    write_subject_dataset(tmp_path / "ring")
    cfg = DreamBoothConfig(data=tmp_path / "ring", output_dir=tmp_path / "o",
                           class_prompt=["a red circle", "a blue circle", "a red circle"])
    cfg.validate()
    assert cfg.class_prompts(cfg.instance_captions()) == ["a red circle", "a blue circle"]
    for bad in ([], ["a circle", " "], ["a sks circle"], "a big sks circle"):
        with pytest.raises(InvalidParameter) as e:
            DreamBoothConfig(data=tmp_path / "ring", output_dir=tmp_path / "o", class_prompt=bad).validate()
        assert "class_prompt" in str(e.value) and e.value.fix


def test_the_toy_class_prompts_split_in_two_halves_the_benchmark_scores_only_one_of():
    scored, drawn = class_prompts("eval"), class_prompts("train")
    assert len(scored) == len(drawn) == 35 and len(class_prompts("all")) == 70
    assert not {p for p, _ in scored} & {p for p, _ in drawn}
    for half in (scored, drawn):  # each half asks every colour, both sizes and every place
        assert {o.colour for _, o in half} == {o.colour for _, o in class_prompts("all")}
        assert {o.size for _, o in half} == {"small", "large"}
        assert {o.position for _, o in half} == {o.position for _, o in class_prompts("all")}
    with pytest.raises(InvalidParameter):
        class_prompts("test")


def test_the_class_prompt_file_lists_the_subject_captions_without_the_identifier_then_the_drawn_half(tmp_path):
    """The toy recipe's class prompts: DreamBooth's default (each subject caption without "sks", the contexts the
    ring is shown at), then the half the benchmark does not score."""
    write_subject_dataset(tmp_path / "ring")
    cfg = DreamBoothConfig(data=tmp_path / "ring", output_dir=tmp_path / "o")
    defaults = cfg.class_prompts(cfg.instance_captions())
    assert len(defaults) == len(TRAIN_CONTEXTS) and all("sks" not in p and "yellow circle" in p for p in defaults)
    path = write_class_prompts(tmp_path / "class_prompts.txt")
    assert path.read_text().splitlines() == [*defaults, *(p for p, _ in class_prompts("train"))]
