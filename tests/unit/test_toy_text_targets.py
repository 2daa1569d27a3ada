"""What the toy text encoder's pre-training teaches from each kind of caption (`ToyTextTask._targets`): the
objects at each named position, how many of each shape and colour, which shape is on which side of which, and
nothing it cannot know from the words (left out of the loss); and at the last token of each object's phrase, that
object whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import labkit

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def task():
    from transformers import CLIPTokenizer

    from labkit.training.toy_text import ToyTextTask

    tokenizer = CLIPTokenizer.from_pretrained(str(Path(labkit.__file__).parent / "toyworld" / "model" / "tokenizer"))
    return ToyTextTask(SimpleNamespace(config=SimpleNamespace(hidden_size=8)), tokenizer=tokenizer)


def _targets(task, text):
    from labkit.toyworld.geneval import read

    req = read(text)
    return {k: v[0].tolist() for k, v in task._targets([(req.scene, text)]).items()}


def _counts(task, t, attr):
    return {name: n for name, n in zip(task.vocab[attr], t[f"n_{attr}"], strict=True) if n}


def _relations(task, t):
    return {(a, b, r): bit for (a, b), row in zip(task.pairs, t["relation"], strict=True)
            for r, bit in zip(task.relations, row, strict=True) if bit >= 0}


def test_a_positional_caption_says_what_is_where_how_many_and_every_side(task):
    t = _targets(task, "a small red circle on the left and a large blue square on the right")
    at = {p: (c, s, z) for p, c, s, z in zip(task.positions, t["colour"], t["shape"], t["size"], strict=True) if c}
    assert at == {"left": (task.vocab["colour"].index("red") + 1, task.vocab["shape"].index("circle") + 1,
                           task.vocab["size"].index("small") + 1),
                  "right": (task.vocab["colour"].index("blue") + 1, task.vocab["shape"].index("square") + 1,
                            task.vocab["size"].index("large") + 1)}
    assert _counts(task, t, "shape") == {"circle": 1, "square": 1}
    assert _counts(task, t, "colour") == {"red": 1, "blue": 1}
    rel = _relations(task, t)
    # both anchors are known: every relation of the pair, both ways, is said (same row: neither above the other)
    assert rel[("circle", "square", "left of")] == 1 and rel[("square", "circle", "right of")] == 1
    assert rel[("circle", "square", "right of")] == 0 and rel[("circle", "square", "above")] == 0
    assert len(rel) == 8


def test_a_count_caption_says_how_many_and_nothing_about_places(task):
    t = _targets(task, "exactly three blue circles")
    assert _counts(task, t, "shape") == {"circle": 3} and _counts(task, t, "colour") == {"blue": 3}
    assert set(t["colour"]) == set(t["shape"]) == set(t["size"]) == {-100}  # where they go is the model's choice
    assert _relations(task, t) == {}


def test_a_relation_caption_says_its_side_both_ways_and_leaves_the_other_axis_open(task):
    t = _targets(task, "a red square to the left of a green circle")
    assert _relations(task, t) == {("square", "circle", "left of"): 1, ("square", "circle", "right of"): 0,
                                   ("circle", "square", "right of"): 1, ("circle", "square", "left of"): 0}
    assert _counts(task, t, "shape") == {"square": 1, "circle": 1}
    assert set(t["colour"]) == {-100}


@pytest.mark.parametrize("text, last_words", [
    ("a small red circle on the left and a large blue square at the top", ("left", "top")),
    ("left: one small red circle; top: one large blue square", ("circle", "square")),
    ("a red circle, small, on the left, and a blue square, large, at the top", ("left", "top")),
])
def test_each_phrase_s_last_token_learns_its_object_whole_whatever_the_word_order(task, text, last_words):
    t = _targets(task, text)
    marked = {i: row for i, row in enumerate(t["object"]) if row[0] != -100}
    ids = task.tokenizer(text).input_ids
    words = [task.tokenizer.decode([ids[i]]).strip() for i in marked]
    assert tuple(words) == last_words
    objects = [tuple(names[k] for names, k in zip(task.object_parts.values(), row, strict=True))
               for row in marked.values()]
    assert objects == [("red", "circle", "small", "left"), ("blue", "square", "large", "top")]


def test_count_and_relation_captions_mark_no_phrase(task):
    for text in ("exactly three blue circles", "a red square to the left of a green circle"):
        assert {v for row in _targets(task, text)["object"] for v in row} == {-100}
