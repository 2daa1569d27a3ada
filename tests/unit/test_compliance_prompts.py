"""Prompt rules: whole-word, case-insensitive names that a mode warns about or blocks."""

from __future__ import annotations

import pytest

from labkit.compliance import PromptRules, check_prompt, enforce_prompt, load_modes
from labkit.errors import ComplianceViolation


@pytest.fixture(scope="module")
def rules():
    return PromptRules.load(use_env=False)


@pytest.fixture(scope="module")
def modes():
    return load_modes(use_env=False)


@pytest.mark.parametrize("prompt,names", [
    ("a red circle on a blue square", []),
    ("Mickey Mouse on a beach", ["Mickey Mouse"]),
    ("mickey   MOUSE on a beach", ["Mickey Mouse"]),
    ("a painting by Greg Rutkowski, trending", ["Greg Rutkowski"]),
    ("Batman's car", ["Batman"]),
    ("a batmanesque figure", []),                     # not a whole word
    ("pikachus everywhere", []),
    ("a superbatman suit", []),
    ("Spider-Man and Pikachu", ["Spider-Man", "Pikachu"]),
    ("art by loish\nand james jean", ["Loish", "James Jean"]),
])
def test_whole_word_case_insensitive(rules, prompt, names):
    assert [m.name for m in rules.find(prompt)] == names


def test_mode_actions(rules, modes):
    p = "Pikachu by Greg Rutkowski"
    assert check_prompt(p, "research", rules=rules, modes=modes).action == "warn"
    assert check_prompt(p, "open", rules=rules, modes=modes).action == "block"
    assert check_prompt(p, "strict", rules=rules, modes=modes).action == "block"
    assert check_prompt("a green triangle", "open", rules=rules, modes=modes).action == "allow"
    v = check_prompt(p, "research", rules=rules, modes=modes)
    assert len(v.messages()) == 2 and "trademarked character" in v.messages()[0]


def test_enforce_prompt_message(rules, modes):
    with pytest.raises(ComplianceViolation) as info:
        enforce_prompt("Darth Vader eating soup", "open", rules=rules, modes=modes)
    err = info.value
    assert "'Darth Vader'" in str(err) and "'open'" in str(err) and "trademarked-characters" in str(err)
    assert err.value == "Darth Vader" and "'research'" in err.fix and "LABKIT_PROMPT_RULES" in err.fix
    assert enforce_prompt("Darth Vader eating soup", "research", rules=rules, modes=modes).action == "warn"


def test_user_rules_extend_replace_allow_and_override(tmp_path, modes):
    f = tmp_path / "rules.toml"
    f.write_text(
        '[categories.trademarked-characters]\nnames = ["Totoro"]\nallow = ["Batman"]\n'
        '[categories.house-names]\nreason = "a name our lab keeps out"\nnames = ["Project Nightjar"]\n'
        'actions = { research = "block" }\n')
    rules = PromptRules.load(extra=f, use_env=False)
    assert [m.name for m in rules.find("Totoro meets Batman")] == ["Totoro"]
    assert check_prompt("the project  nightjar logo", "research", rules=rules, modes=modes).action == "block"
    f.write_text('[categories.living-artists]\nreplace = true\nnames = ["Someone Else"]\n')
    rules = PromptRules.load(extra=f, use_env=False)
    assert rules.find("by Greg Rutkowski") == [] and rules.find("by someone else")[0].name == "Someone Else"


def test_default_list_is_described_as_a_starting_point():
    from importlib import resources

    text = resources.files("labkit.compliance").joinpath("prompt_rules.toml").read_text()
    assert "STARTING POINT" in text and "NOT A COMPLETE OR AUTHORITATIVE LIST" in text
