"""The rules controller's words (vocabulary.toml): the shipped file loads once, and a bad entry is a
ConfigError that names its key."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest

from labkit.controller import rules
from labkit.controller.vocabulary import SCHEMA, parse_words, words
from labkit.errors import ConfigError, InvalidParameter

SHIPPED = resources.files("labkit.controller").joinpath("vocabulary.toml").read_text(encoding="utf-8")


def test_the_shipped_words_load_with_every_key_of_the_schema():
    w = words()
    assert w is words()  # read once per process
    assert {k.split(".")[0] for k in w.values} == set(SCHEMA)
    assert len(w.values) == sum(len(keys) for keys in SCHEMA.values())
    assert w["numbers.words"]["twenty"] == 20
    assert w["counts.groups"]["a dozen"] == 12
    assert w["aspect.ratios"]["portrait"] == {"image": (2, 3), "video": (9, 16)}
    assert "flying" in w["modality.motion_verbs"]


def test_changing_the_words_goes_with_a_new_rules_version():
    assert words().digest == rules.VOCABULARY_DIGEST, (
        "vocabulary.toml changed, so plans may change: bump RULES_VERSION in labkit/controller/rules.py, set "
        f"VOCABULARY_DIGEST = {words().digest!r} there, and run `labkit eval controller`.")


def test_a_comment_does_not_change_the_digest():
    assert parse_words("# a note\n" + SHIPPED, "x.toml").digest == words().digest
    changed = SHIPPED.replace("'hd']", "'hd', 'uhd']")
    assert parse_words(changed, "x.toml").digest != words().digest


def test_importing_the_controller_reads_no_file():
    code = ("import labkit.controller.rules\n"
            "from labkit.controller.vocabulary import words\n"
            "from labkit.controller.grammar import grammar\n"
            "print(words.cache_info().currsize, grammar.cache_info().currsize)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "0"]


def _without_line(start: str) -> str:
    lines = SHIPPED.splitlines(keepends=True)
    assert any(line.startswith(start) for line in lines)
    return "".join(line for line in lines if not line.startswith(start))


def _replace(old: str, new: str) -> str:
    assert SHIPPED.count(old) == 1, old
    return SHIPPED.replace(old, new)


BAD = [
    pytest.param(_replace("[toy]\n", "[toy]\ncolours = ['red']\n"), ["unknown key toy.colours", "filler"],
                 id="unknown-key"),
    pytest.param(SHIPPED + "\n[colours]\nred = ['red']\n", ["unknown section [colours]"], id="unknown-section"),
    pytest.param(_without_line("fast_modes = "), ["speed.fast_modes is missing"], id="missing-key"),
    pytest.param(_replace("twelve = 12", 'twelve = "12"'), ["numbers.words.twelve", "'12'", "a number"],
                 id="number-as-text"),
    pytest.param(_replace("'sprites?'", "'sprites?('"), ["outputs.image_nouns", "'sprites?('", "regular expression"],
                 id="bad-regex"),
    pytest.param(_replace("quickly_verbs = ['draw'", "quickly_verbs = [3, 'draw'"), ["speed.quickly_verbs", "3"],
                 id="not-a-word"),
    pytest.param(_replace('tall = "portrait"', 'tall = "skyscraper"'), ["aspect.items", "'skyscraper'"],
                 id="undefined-aspect"),
    pytest.param(_replace("ratios.panorama = { image = [2, 1], video = [2, 1] }",
                          "ratios.panorama = { image = [2, 0], video = [2, 1] }"),
                 ["aspect.ratios.panorama.image", "[2, 0]"], id="zero-ratio"),
    pytest.param(SHIPPED.replace("[toy]", "[toy"), ["not valid TOML"], id="bad-toml"),
]


@pytest.mark.parametrize("text, names", BAD)
def test_a_bad_entry_is_a_config_error_naming_it(text, names):
    with pytest.raises(ConfigError) as info:
        parse_words(text, "my_vocabulary.toml")
    message = str(info.value)
    assert "my_vocabulary.toml" in message
    for name in names:
        assert name in message
    assert info.value.fix


def test_asking_for_a_key_the_words_do_not_have_names_it():
    with pytest.raises(InvalidParameter, match="'modality.colours'") as info:
        words()["modality.colours"]
    assert "modality.motion_verbs" in info.value.fix
