"""The DreamBooth identifier and prompts as a user sets them up: a token the tokenizer splits or a common word is
flagged with rarer words to use; class prompts are the captions without the identifier; the toy subject's
held-out contexts are the ones its images never show."""

from __future__ import annotations

from pathlib import Path

import labkit
from labkit.toyworld.subject import HELDOUT_CONTEXTS, TRAIN_CONTEXTS, subject_prompts, write_subject_dataset
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
    assert captions[0] == "a small sks circle on the left"
    classes = cfg.class_prompts(captions)
    assert classes[0] == "a small circle on the left" and len(classes) == len(set(classes)) == len(set(captions))
    assert DreamBoothConfig(data=tmp_path / "ring", output_dir=tmp_path / "o", class_prompt="a circle"
                            ).class_prompts(captions) == ["a circle"]


def test_held_out_contexts_are_never_in_the_training_images():
    assert not set(HELDOUT_CONTEXTS) & set(TRAIN_CONTEXTS)
    assert {s for s, _ in TRAIN_CONTEXTS} == {"small", "large"}
    assert all(obj.shape == "ring" and obj.colour == "yellow" for _, obj in subject_prompts("heldout"))
