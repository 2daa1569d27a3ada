"""The model catalogue: shipped entries are complete and consistent; bad data fails loudly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit.catalog import (
    TASKS,
    Catalog,
    CatalogEntry,
    family_from_model_index,
    validate_frames,
    validate_size,
)
from labkit.errors import ConfigError, InvalidParameter, UnknownFamily, UnknownModel
from labkit.hardware import families

REQUIRED = {
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15"),
    "sd-turbo": ("stabilityai/sd-turbo", "sd-turbo"),
    "sdxl-turbo": ("stabilityai/sdxl-turbo", "sdxl"),
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "sdxl"),
    "svd": ("stabilityai/stable-video-diffusion-img2vid", "svd"),
    "svd-xt": ("stabilityai/stable-video-diffusion-img2vid-xt", "svd"),
    "wan2.1-t2v-1.3b": ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "t2v"),
    "ltx-video": ("Lightricks/LTX-Video", "t2v"),
}

# A complete, valid entry that the malformed-entry tests break one field at a time.
GOOD = """
[models.mine]
name = "My model"
repo = "me/my-model"
revision = "main"
family = "sd15"
tasks = ["txt2img"]
licence = "apache-2.0"
default_steps = 20
default_guidance = 7.0
default_size = [512, 512]
min_size = 256
max_size = 1024
size_multiple = 8
default_frames = 0
default_fps = 0
max_frames = 0
fallbacks = ["sd15"]
"""


@pytest.fixture(autouse=True)
def _no_user_catalogue(monkeypatch):
    monkeypatch.delenv("LABKIT_CATALOG", raising=False)


@pytest.fixture
def shipped() -> Catalog:
    return Catalog.load()


def _user_file(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _break(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GOOD, old
    return _user_file(tmp_path, GOOD.replace(old, new))


# -- the shipped catalogue ----------------------------------------------------------------------


def test_shipped_catalogue_passes_its_own_check(shipped):
    shipped.check()  # load() already checked; an explicit call must agree
    assert len(shipped) >= len(REQUIRED) + 1


@pytest.mark.parametrize("mid", sorted(REQUIRED))
def test_required_hub_entries_are_present_and_pinned(shipped, mid):
    repo, family = REQUIRED[mid]
    e = shipped.get(mid)
    assert e.repo == repo and e.family == family
    assert family in families(), "the family must be a row of strategies.toml"
    # Either pinned to a full commit, or openly unpinned: never an abbreviated or invented form.
    assert e.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", e.revision)
    assert e.licence and e.description


def test_pinned_revisions_are_distinct(shipped):
    shas = [e.revision for e in shipped if e.revision and e.revision != "main"]
    assert len(shas) == len(set(shas)), "two repos cannot share one commit"


def test_toy_world_is_a_packaged_model(shipped):
    e = shipped.get("toyworld")
    assert e.family == "toy" and e.licence == "cc0-1.0"
    assert e.repo is None and e.revision is None and e.source == "package:labkit/toyworld/model"
    assert e.source_kind == "package" and e.is_pinned
    import labkit

    # The folder is computed inside the installed package whether or not the model has landed yet.
    assert e.local_path() == Path(labkit.__file__).parent / "toyworld" / "model"
    assert e.pretrained_name_or_path() == str(e.local_path())


def test_licences_match_the_model_cards(shipped):
    assert shipped.get("sd15").licence == "creativeml-openrail-m"
    assert shipped.get("sdxl").licence == "openrail++"
    assert shipped.get("sd-turbo").licence == shipped.get("sdxl-turbo").licence == "sai-nc-community"
    assert shipped.get("wan2.1-t2v-1.3b").licence == "apache-2.0"


def test_defaults_follow_the_model_cards(shipped):
    turbo = shipped.get("sdxl-turbo")
    assert turbo.default_steps <= 4 and turbo.default_guidance == 0.0 and turbo.default_size == (512, 512)
    svd = shipped.get("svd")
    assert (svd.width, svd.height, svd.default_frames, svd.default_fps) == (1024, 576, 14, 7)
    assert shipped.get("svd-xt").default_frames == 25
    wan = shipped.get("wan2.1-t2v-1.3b")
    assert (wan.width, wan.height, wan.default_frames, wan.default_fps, wan.default_guidance) == (832, 480, 81, 16, 5.0)
    assert shipped.get("sdxl").default_size == (1024, 1024)
    for e in shipped:
        validate_size(e, e.width, e.height)  # every default is a size the entry accepts
        validate_frames(e, e.default_frames)


def test_every_task_has_a_model(shipped):
    for task in TASKS:
        assert shipped.entries(task=task), task


# -- lookup -------------------------------------------------------------------------------------


def test_get_by_id_and_by_repo_id_case_insensitive(shipped):
    e = shipped.get("sd15")
    assert isinstance(e, CatalogEntry) and e.id == "sd15"
    assert shipped.get("stable-diffusion-v1-5/stable-diffusion-v1-5") is e
    assert shipped.get("Stable-Diffusion-v1-5/Stable-Diffusion-V1-5") is e
    assert shipped.get("SD15") is e
    assert shipped.get("wan-ai/wan2.1-t2v-1.3b-diffusers").id == "wan2.1-t2v-1.3b"
    assert "stabilityai/sd-turbo" in shipped and "nope/nope" not in shipped


def test_unknown_id_lists_close_matches_and_the_fix(shipped):
    with pytest.raises(UnknownModel) as info:
        shipped.get("sd-trubo")
    msg = str(info.value)
    assert "'sd-trubo'" in msg and "'sd-turbo'" in msg
    assert "repo id" in info.value.fix and "local folder" in info.value.fix and "sd15" in info.value.fix
    with pytest.raises(UnknownModel, match="stabilityai/sdxl-turbo"):
        shipped.get("stabilityai/sdxl-trubo")
    assert isinstance(info.value, KeyError)  # callers that catch KeyError still work


def test_entries_filters(shipped):
    assert {e.id for e in shipped.entries(task="img2vid")} == {"svd", "svd-xt", "ltx-video", "toyworld-motion",
                                                                 "toyworld-animatediff"}
    assert {e.id for e in shipped.entries(family="t2v")} == {"wan2.1-t2v-1.3b", "ltx-video"}
    assert [e.id for e in shipped.entries(task="txt2img", family="toy")] == ["toyworld"]
    assert len(shipped.entries()) == len(shipped)
    with pytest.raises(InvalidParameter, match="txt2video"):
        shipped.entries(task="txt2video")
    with pytest.raises(UnknownFamily, match="sd3"):
        shipped.entries(family="sd3")


def test_fallback_chain_is_breadth_first_without_repeats(shipped):
    assert [e.id for e in shipped.fallback_chain("sdxl")] == ["sdxl", "sdxl-turbo", "sd15", "sd-turbo"]
    assert [e.id for e in shipped.fallback_chain("svd-xt")] == ["svd-xt", "svd"]
    assert [e.id for e in shipped.fallback_chain("sd-turbo")] == ["sd-turbo"]
    with pytest.raises(UnknownModel):
        shipped.fallback_chain("nope")


# -- user catalogues ----------------------------------------------------------------------------


def test_user_file_overrides_keys_and_adds_entries(tmp_path):
    user = _user_file(tmp_path, GOOD + """
        [models.sd15]
        revision = "main"
        default_steps = 12
        """)
    cat = Catalog.load(extra=user)
    sd15 = cat.get("sd15")
    # only the keys the user set change; the rest stay as shipped
    assert sd15.revision == "main" and sd15.default_steps == 12
    assert sd15.repo == "stable-diffusion-v1-5/stable-diffusion-v1-5" and sd15.licence == "creativeml-openrail-m"
    assert sd15.origin == str(user)
    mine = cat.get("me/my-model")
    assert mine.id == "mine" and mine.fallbacks == ("sd15",)
    assert "toyworld" in cat and str(user) in cat.sources


def test_env_var_names_user_files(tmp_path, monkeypatch):
    a = _user_file(tmp_path, GOOD, "a.toml")
    b = _user_file(tmp_path, "[models.mine]\ndefault_steps = 7\n", "b.toml")
    monkeypatch.setenv("LABKIT_CATALOG", f"{a}{os.pathsep}{b}")
    cat = Catalog.load()
    assert cat.get("mine").default_steps == 7  # later files win
    assert "mine" not in Catalog.load(use_env=False)


def test_user_entry_can_point_at_a_local_folder(tmp_path):
    user = _user_file(tmp_path, """
        [models.sd15]
        source = "path:weights/sd15"
        """)
    e = Catalog.load(extra=user).get("sd15")
    assert e.repo is None and e.revision is None and e.source_kind == "path"
    assert e.local_path() == tmp_path / "weights" / "sd15"


def test_base_path_replaces_the_shipped_file(tmp_path):
    base = _user_file(tmp_path, GOOD.replace('fallbacks = ["sd15"]', "fallbacks = []"), "base.toml")
    cat = Catalog.load(base)
    assert cat.ids() == ["mine"]


def test_missing_user_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        Catalog.load(extra=tmp_path / "nope.toml")


def test_invalid_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        Catalog.load(extra=_user_file(tmp_path, "[models.mine\nname = 1"))


# -- malformed entries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "value"),
    [
        ('tasks = ["txt2img"]', 'tasks = ["txt2image"]', "tasks", "txt2image"),
        ('tasks = ["txt2img"]', 'tasks = ["txt2img", "txt2vid"]', "tasks", "txt2vid"),
        ('fallbacks = ["sd15"]', 'fallbacks = ["sd16"]', "fallbacks", "sd16"),
        ('fallbacks = ["sd15"]', 'fallbacks = ["svd"]', "fallbacks", "svd"),  # cannot do txt2img
        ('fallbacks = ["sd15"]', 'fallbacks = ["mine"]', "fallbacks", "mine"),
        ('revision = "main"', 'revision = "451f4fe"', "revision", "451f4fe"),
        ('revision = "main"', 'revision = "v1.0"', "revision", "v1.0"),
        ('revision = "main"\n', "", "revision", "None"),
        ('family = "sd15"', 'family = "sd3"', "family", "sd3"),
        ('licence = "apache-2.0"', 'licence = "Apache 2.0"', "licence", "Apache 2.0"),
        ("default_size = [512, 512]", "default_size = [512, 500]", "default_size", "500"),
        ("max_size = 1024", "max_size = 128", "max_size", "128"),
        ("default_steps = 20", "default_steps = 0", "default_steps", "0"),
        ("default_frames = 0", "default_frames = 16", "default_frames", "16"),
        ('repo = "me/my-model"', 'repo = "my-model"', "repo", "my-model"),
    ],
)
def test_malformed_entry_names_entry_field_value_and_fix(tmp_path, old, new, field, value):
    with pytest.raises(ConfigError) as info:
        Catalog.load(extra=_break(tmp_path, old, new))
    err = info.value
    msg = str(err)
    assert "[models.mine]" in msg and f"`{field}`" in msg and value in msg, msg
    assert err.fix and "Fix:" in msg
    assert err.field == field and err.entry == "mine"


def test_fallback_cycle_is_reported_with_its_path(tmp_path):
    user = _user_file(tmp_path, GOOD.replace('fallbacks = ["sd15"]', 'fallbacks = ["theirs"]') + """
        [models.theirs]
        name = "Theirs"
        repo = "them/theirs"
        revision = "main"
        family = "sd15"
        tasks = ["txt2img"]
        licence = "mit"
        default_steps = 20
        default_guidance = 7.0
        default_size = [512, 512]
        min_size = 256
        max_size = 1024
        size_multiple = 8
        default_frames = 0
        default_fps = 0
        max_frames = 0
        fallbacks = ["mine"]
        """)
    with pytest.raises(ConfigError, match=r"`fallbacks`.*cycle (mine -> theirs -> mine|theirs -> mine -> theirs)"):
        Catalog.load(extra=user)


def test_shipped_fallback_turned_into_a_cycle_is_caught(tmp_path):
    user = _user_file(tmp_path, '[models.sd-turbo]\nfallbacks = ["sdxl-turbo"]\n')
    with pytest.raises(ConfigError, match="cycle"):
        Catalog.load(extra=user)


def test_unknown_and_missing_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"default_step.*default_steps"):
        Catalog.load(extra=_break(tmp_path, "default_steps = 20", "default_steps = 20\ndefault_step = 3"))
    with pytest.raises(ConfigError, match="`licence` is missing"):
        Catalog.load(extra=_break(tmp_path, 'licence = "apache-2.0"\n', ""))
    with pytest.raises(ConfigError, match="`default_steps` = '20' has the wrong type"):
        Catalog.load(extra=_break(tmp_path, "default_steps = 20", 'default_steps = "20"'))


def test_video_entry_frame_rules(tmp_path):
    video = (GOOD.replace('tasks = ["txt2img"]', 'tasks = ["txt2vid"]')
             .replace('fallbacks = ["sd15"]', "fallbacks = []")
             .replace('family = "sd15"', 'family = "t2v"'))
    ok = video.replace("default_frames = 0", "default_frames = 81").replace("default_fps = 0", "default_fps = 16")
    ok = ok.replace("max_frames = 0", "max_frames = 81\nframe_step = 4")
    Catalog.load(extra=_user_file(tmp_path, ok)).get("mine")
    with pytest.raises(ConfigError, match="`default_fps` = 0"):
        Catalog.load(extra=_user_file(tmp_path, ok.replace("default_fps = 16", "default_fps = 0")))
    with pytest.raises(ConfigError, match="`default_frames` = 80 is not 1 \\+ a multiple of frame_step"):
        Catalog.load(extra=_user_file(tmp_path, ok.replace("default_frames = 81", "default_frames = 80")))


def test_check_uses_the_given_family_list(shipped):
    with pytest.raises(ConfigError, match=r"\[models\.sd15\] field `family` = 'sd15'"):
        shipped.check(families=["sdxl", "svd", "t2v", "toy", "sd-turbo"])


# -- model_index.json ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "family"),
    [
        ("StableDiffusionPipeline", "sd15"),
        ("StableDiffusionImg2ImgPipeline", "sd15"),
        ("StableDiffusionInpaintPipeline", "sd15"),
        ("StableDiffusionXLPipeline", "sdxl"),
        ("StableDiffusionXLImg2ImgPipeline", "sdxl"),
        ("StableDiffusionXLInpaintPipeline", "sdxl"),
        ("StableVideoDiffusionPipeline", "svd"),
        ("WanPipeline", "t2v"),
        ("WanImageToVideoPipeline", "t2v"),
        ("LTXPipeline", "t2v"),
        ("LTXImageToVideoPipeline", "t2v"),
        ("CogVideoXPipeline", "t2v"),
        ("HunyuanVideoPipeline", "t2v"),
        ("FluxPipeline", None),
        ("StableDiffusion3Pipeline", None),
    ],
)
def test_family_from_model_index(cls, family):
    assert family_from_model_index({"_class_name": cls, "_diffusers_version": "0.42.0"}) == family


def test_family_from_model_index_labkit_key_wins():
    index = {"_class_name": "StableDiffusionPipeline", "labkit": {"family": "toy"}}
    assert family_from_model_index(index) == "toy"
    assert family_from_model_index({}) is None
    with pytest.raises(ConfigError, match="'labkit'"):
        family_from_model_index({"_class_name": "StableDiffusionPipeline", "labkit": "toy"})
    with pytest.raises(InvalidParameter):
        family_from_model_index('{"_class_name": "StableDiffusionPipeline"}')  # text, not parsed JSON


def test_families_from_model_index_exist_in_the_strategy_table():
    for cls in ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableVideoDiffusionPipeline", "WanPipeline"):
        assert family_from_model_index({"_class_name": cls}) in families()


# -- sizes and frames ---------------------------------------------------------------------------


def test_validate_size_accepts_and_rejects(shipped):
    sd15 = shipped.get("sd15")
    assert validate_size(sd15, 768, 512) == (768, 512)
    with pytest.raises(InvalidParameter) as info:
        validate_size(sd15, 513, 512)
    assert "513" in str(info.value) and "multiple of 8" in str(info.value) and "512 or 520" in info.value.fix
    assert info.value.value == 513
    with pytest.raises(InvalidParameter, match=r"height 2048 is outside 256-1024"):
        validate_size(sd15, 512, 2048)
    with pytest.raises(InvalidParameter, match=r"width 128 is outside 256-1024"):
        validate_size(sd15, 128, 512)
    with pytest.raises(InvalidParameter, match="whole number"):
        validate_size(sd15, 512.0, 512)
    ltx = shipped.get("ltx-video")
    with pytest.raises(InvalidParameter, match="multiple of 32"):
        validate_size(ltx, 720, 480)


def test_validate_frames(shipped):
    assert validate_frames(shipped.get("ltx-video"), 97) == 97
    with pytest.raises(InvalidParameter, match="1 \\+ a multiple of 8") as info:
        validate_frames(shipped.get("ltx-video"), 100)
    assert "97 or 105" in info.value.fix
    with pytest.raises(InvalidParameter, match="outside 1-14"):
        validate_frames(shipped.get("svd"), 25)
    with pytest.raises(InvalidParameter, match="makes images"):
        validate_frames(shipped.get("sd15"), 8)


# -- house rules --------------------------------------------------------------------------------


def test_import_reads_nothing_and_loads_no_heavy_modules(tmp_path):
    # Every file open raises an "open" audit event, whichever API opens it.
    code = (
        "import sys\n"
        "opened = []\n"
        "sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == 'open' else None)\n"
        "import labkit.catalog\n"
        "heavy = [m for m in ('torch', 'diffusers', 'mlflow', 'transformers') if m in sys.modules]\n"
        "print(heavy, [f for f in opened if f.endswith('.toml')])\n"
        "labkit.catalog.Catalog.load(use_env=False)\n"
        "print(any(f.endswith('catalog.toml') for f in opened))\n"
    )
    # A broken LABKIT_CATALOG must not matter until load() is called.
    env = {**os.environ, "LABKIT_CATALOG": str(tmp_path / "missing.toml")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split("\n")[:2] == ["[] []", "True"]


def test_entry_is_frozen_and_serialisable(shipped):
    e = shipped.get("svd")
    with pytest.raises(AttributeError):
        e.revision = "main"  # type: ignore[misc]
    d = e.to_dict()
    assert d["default_size"] == [1024, 576] and d["tasks"] == ["img2vid"] and d["id"] == "svd"
