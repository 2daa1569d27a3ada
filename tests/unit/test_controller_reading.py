"""Reading a request field by field (labkit.controller.reading): what each reader takes out of the text and
what it sets, including the clamps a user sees as notes; the docstring examples of the controller's modules
are run too, so they stay true."""

from __future__ import annotations

import doctest

import pytest

from labkit.controller import fit, grammar, reading, rules, vocabulary
from labkit.controller.reading import (
    Request,
    read_count,
    read_duration,
    read_modality,
    read_negative,
    read_request,
    read_seed,
    read_size,
    read_steps,
)
from labkit.controller.vocabulary import Vocabulary
from labkit.plan import MAX_COUNT, MAX_SEED, MAX_STEPS


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.load(use_env=False)


def read(reader, text: str, *args) -> tuple[str, Request]:
    """Run one reader on `text`; the working text it returns, whitespace tidied, and the Request."""
    r = Request(text)
    return " ".join(reader(text, r, *args).split()), r


@pytest.mark.parametrize("module", [reading, grammar, vocabulary, fit, rules], ids=lambda m: m.__name__)
def test_the_docstring_examples_hold(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module.__name__} has no example"
    assert result.failed == 0


def test_seed_above_the_largest_wraps_and_says_so():
    work, r = read(read_seed, "a fox, seed 99999999999")
    assert work == "a fox,"
    assert 0 <= r.seed <= MAX_SEED and r.seed == 99999999999 % (MAX_SEED + 1)
    assert r.notes == [f"seed 99999999999 is above {MAX_SEED}: used {r.seed}"]


def test_steps_are_clamped_and_say_so():
    work, r = read(read_steps, "a fox in 5000 steps")
    assert (work, r.steps) == ("a fox", MAX_STEPS)
    assert r.notes == [f"5000 steps clamped to {MAX_STEPS}"]


@pytest.mark.parametrize("text, left, size, ratio, aspect", [
    ("a tower 640x480 in portrait", "a tower in portrait", (640, 480), None, None),  # a size beats format words
    ("a harbour, 16:9", "a harbour,", None, (16.0, 9.0), None),
    ("a tower, aspect ratio 3:7", "a tower,", None, (3.0, 7.0), None),
    ("meet at 3:7 by the tower", "meet at 3:7 by the tower", None, None, None),  # a time, not a ratio
    ("a tower at night, tall", "a tower at night", None, None, "portrait"),  # a trailing format item
    ("a portrait of a knight", "a portrait of a knight", None, None, "portrait"),  # weak cue: stays in the text
])
def test_size_ratio_and_aspect(text, left, size, ratio, aspect):
    work, r = read(read_size, text, text.lower())
    assert (work, r.size, r.ratio, r.aspect) == (left, size, ratio, aspect)


@pytest.mark.parametrize("text, left, count", [
    ("three images of a lighthouse", "a lighthouse", 3),
    ("5 logos for a bakery", "a logo for a bakery", 5),  # one logo per output
    ("a pair of pictures of a cat", "a cat", 2),
    ("a cat, count: 6", "a cat,", 6),
    ("a man holding three photos of his kids", "a man holding three photos of his kids", 1),  # inside the subject
])
def test_count(text, left, count):
    work, r = read(read_count, text)
    assert (work, r.count) == (left, count)


def test_a_count_over_the_limit_is_clamped_and_says_so():
    work, r = read(read_count, "200 images of a cat")
    assert (work, r.count) == ("a cat", MAX_COUNT)
    assert r.notes == [f"200 outputs asked ('200 images of'): clamped to {MAX_COUNT}, the most one plan makes"]


@pytest.mark.parametrize("text, seconds, left", [
    ("a 10 second clip of rain", 10.0, "a clip of rain"),
    ("half a minute of waves", 30.0, "of waves"),
    ("a 2-minute video of the sea", 120.0, "a video of the sea"),
    ("a 1950s diner", None, "a 1950s diner"),  # a decade
    ("a 90s style poster", None, "a 90s style poster"),
])
def test_duration(text, seconds, left):
    work, r = read(read_duration, text, text.lower())
    assert (r.duration_s, work) == (seconds, left)


@pytest.mark.parametrize("text, modality", [
    ("a hawk flying over a canyon", "video"),
    ("a flying car over a city", "image"),  # a participle naming a kind of thing
    ("a photo of a bird flying", "image"),  # an image noun wins over a motion verb
    ("a video game character", "image"),
    ("a cat, 24 frames", "video"),
])
def test_modality(text, modality, vocab):
    assert read_request(text, vocab).modality == modality
    work, r = read(read_modality, text, text.lower())
    assert work == text  # modality words stay in the subject


def test_no_items_go_to_the_negative_prompt_but_a_single_item_keeps_its_no():
    r = Request("x", subject="a quiet beach, no people, without boats")
    read_negative(r)
    assert (r.subject, r.negative) == ("a quiet beach", ["people", "boats"])
    r = Request("x", subject="a no entry sign")
    read_negative(r)
    assert (r.subject, r.negative) == ("a no entry sign", [])


def test_read_request_composes_the_readers(vocab):
    r = read_request("please make me 4 quick watercolor images of a fox in the snow, portrait, no people, seed 7",
                     vocab)
    # the instructions go, the style word selects the style (which adds its own words at planning)
    assert (r.subject, r.count, r.aspect, r.speed, r.seed, r.styles, r.negative) == (
        "a fox in the snow", 4, "portrait", "fast", 7, ["watercolor"], ["people"])
