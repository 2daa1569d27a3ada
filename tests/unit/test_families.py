"""A model family's special steps are declared in the catalogue ([families.NAME]), not decided by an `if`."""

from __future__ import annotations

import sys

import pytest

from labkit.catalog import Catalog, FamilySteps
from labkit.errors import ConfigError, InvalidParameter
from labkit.pipelines.animatediff import keyframe_prompt
from labkit.toyworld.motion import still_prompt


@pytest.fixture(autouse=True)
def _no_user_catalogue(monkeypatch):
    monkeypatch.delenv("LABKIT_CATALOG", raising=False)


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.load(use_env=False)


def test_the_shipped_catalogue_declares_the_toy_keyframe_prompt_and_the_svd_first_frame(shipped):
    toy, svd, sd15 = shipped.family("toy"), shipped.family("svd"), shipped.family("sd15")
    assert toy.function("keyframe_prompt") is still_prompt and not toy.txt2vid_first_frame
    assert svd.txt2vid_first_frame and svd.function("keyframe_prompt") is None
    assert sd15 == FamilySteps("sd15") and sd15.function("keyframe_prompt") is None  # nothing declared


def test_keyframe_prompt_follows_the_family_declaration(shipped):
    clip = "a blue square moving up"
    assert keyframe_prompt("toy", clip, shipped) == still_prompt(clip) != clip
    assert "moving" not in keyframe_prompt("toy", clip, shipped)
    assert keyframe_prompt("sd15", clip, shipped) == clip  # a family without a hook draws the prompt itself
    assert keyframe_prompt("toy", clip) == still_prompt(clip)  # without a catalogue: the shipped one
    with pytest.raises(InvalidParameter):  # the toy hook's own refusal of a caption without one motion
        keyframe_prompt("toy", "a blue square", shipped)


def test_a_catalogue_made_from_entries_alone_keeps_the_shipped_family_steps(shipped):
    assert Catalog([shipped.get("toyworld")]).family("toy") == shipped.family("toy")


def test_a_user_file_declares_steps_for_another_family_and_overrides_keys(tmp_path, shipped):
    user = tmp_path / "mine.toml"
    user.write_text('[families.sd15]\nkeyframe_prompt = "labkit.toyworld.motion:still_prompt"\n'
                    '[families.svd]\ntxt2vid_first_frame = false\n')
    cat = Catalog.load(extra=user, use_env=False)
    assert cat.family("sd15").function("keyframe_prompt") is still_prompt
    assert cat.family("sd15").origin == str(user)
    assert not cat.family("svd").txt2vid_first_frame
    assert cat.family("toy") == shipped.family("toy")  # untouched families stay as shipped


@pytest.mark.parametrize(("table", "named"), [
    ('[families.toy]\nkeyframe_promt = "labkit.toyworld.motion:still_prompt"\n', "keyframe_promt"),
    ('[families.toy]\nkeyframe_prompt = "os:system"\n', "os:system"),
    ('[families.toy]\nkeyframe_prompt = "still_prompt"\n', "still_prompt"),
    ("[families.svd]\ntxt2vid_first_frame = 1\n", "1"),
    ('[families.nosuchfamily]\ntxt2vid_first_frame = true\n', "nosuchfamily"),
    ('families = "toy"\n', "toy"),
])
def test_a_bad_family_table_is_a_config_error_naming_the_value(tmp_path, table, named):
    user = tmp_path / "bad.toml"
    user.write_text(table)
    with pytest.raises(ConfigError) as info:
        Catalog.load(extra=user, use_env=False)
    assert named in str(info.value) and info.value.fix


def test_a_hook_outside_labkit_is_refused_before_anything_is_imported(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "antigravity", raising=False)
    user = tmp_path / "bad.toml"
    user.write_text('[families.toy]\nkeyframe_prompt = "antigravity:fly"\n')
    with pytest.raises(ConfigError):
        Catalog.load(extra=user, use_env=False)
    assert "antigravity" not in sys.modules


def test_a_hook_that_names_no_function_fails_when_used_naming_it(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[families.toy]\nkeyframe_prompt = "labkit.toyworld.motion:no_such_function"\n')
    cat = Catalog.load(extra=user, use_env=False)
    with pytest.raises(ConfigError) as info:
        keyframe_prompt("toy", "a blue square moving up", cat)
    assert "labkit.toyworld.motion:no_such_function" in str(info.value) and str(user) in str(info.value)
