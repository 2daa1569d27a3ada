"""`labkit.toml`, `$LABKIT_ROOT` and the tracking URI as a careless or hostile user writes them: every bad value
is a `ConfigError` (or `InvalidParameter`) naming the file, the key, the value and the fix; nothing else escapes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.compliance import resolve_mode
from labkit.config import SCHEMA, LabConfig
from labkit.errors import ConfigError, InvalidParameter, LabkitError


def write_toml(project: Path, text: str) -> Path:
    path = project / "labkit.toml"
    path.write_text(text, encoding="utf-8")
    return path


BAD_TOML = [
    # (labkit.toml, words the message must contain: the key and the value)
    ("[tracking]\nuri = 5\n", ["[tracking] uri", "5"]),
    ("[tracking]\nexperiment = [1, 2]\n", ["[tracking] experiment", "[1, 2]"]),
    ("[tracking]\nsystem_metrics = \"yes\"\n", ["[tracking] system_metrics", "'yes'"]),
    ("[tracking]\nsystem_metrics_interval = \"fast\"\n", ["system_metrics_interval", "'fast'"]),
    ("[tracking]\nsystem_metrics_interval = -1\n", ["system_metrics_interval", "-1"]),
    ("[tracking]\nsystem_metrics_interval = nan\n", ["system_metrics_interval", "nan"]),
    ("[tracking]\nsystem_metrics_interval = true\n", ["system_metrics_interval", "true"]),
    ("[tracking]\nartifact_root = 3.5\n", ["artifact_root", "3.5"]),
    ("[tracking]\nuri = \"\"\n", ["[tracking] uri", "''"]),
    ("[lab]\ncompliance_mode = 5\n", ["[lab] compliance_mode", "5"]),
    ("[lab]\ndefault_image_model = {id = \"x\"}\n", ["default_image_model", "'id'"]),
    ("[c2pa]\ncert = false\n", ["[c2pa] cert", "false"]),
    ("tracking = \"x\"\n", ["tracking", "'x'"]),
    ("[trackin]\nuri = \"sqlite:///x.db\"\n", ["[trackin]"]),
    ("[tracking]\nexperiement = \"typo\"\n", ["[tracking]", "'experiement'"]),
    ("[tracking]\nuri = \"/data/store\"\n", ["'/data/store'", "file store", "labkit.toml [tracking] uri"]),
    ("[tracking\nuri = 1\n", ["not valid TOML", "line 1"]),
    ("[serve]\ncontrollers = \"remote:http://x/v1#m\"\n", ["[serve] controllers", "a list of text"]),
    ("[serve]\ncontrollers = [\"\"]\n", ["[serve] controllers", "['']"]),
]


@pytest.mark.parametrize(("text", "words"), BAD_TOML, ids=[t.split("\n")[-2] for t, _ in BAD_TOML])
def test_a_bad_labkit_toml_names_the_file_key_value_and_fix(project, text, words):
    path = write_toml(project, text)
    with pytest.raises(ConfigError) as err:
        LabConfig.resolve(project)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, (word, message)
    assert err.value.fix


def test_labkit_toml_that_is_not_utf8(project):
    (project / "labkit.toml").write_bytes(b'[tracking]\nexperiment = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text: byte b'\\xe9' at line 2") as err:
        LabConfig.resolve(project)
    assert "labkit.toml" in str(err.value) and "UTF-8" in err.value.fix


def test_labkit_toml_that_is_a_folder(project):
    (project / "labkit.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder") as err:
        LabConfig.resolve(project)
    assert err.value.fix


@pytest.mark.parametrize("what", ["file", "missing"])
def test_labkit_root_naming_a_file_or_a_missing_folder(project, monkeypatch, what):
    target = project / "not-a-project"
    if what == "file":
        target.write_text("x")
    monkeypatch.setenv("LABKIT_ROOT", str(target))
    with pytest.raises(ConfigError, match="LABKIT_ROOT") as err:
        LabConfig.resolve()
    assert str(target) in str(err.value)
    assert ("a file" if what == "file" else "does not exist") in str(err.value)
    assert "unset" in err.value.fix


def test_an_explicit_root_that_is_a_file(project):
    (project / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file") as err:
        LabConfig.resolve(project / "f")
    assert "'" + str(project / "f") + "'" in str(err.value)


@pytest.mark.parametrize("uri_kind", ["sqlite-folder", "plain-folder", "sqlite-under-a-file"])
def test_a_tracking_uri_that_names_a_folder_fails_at_once(project, monkeypatch, uri_kind):
    """Today MLflow retries such a store for minutes; the config refuses it before MLflow sees it."""
    (project / "a-file").write_text("x")
    uri = {"sqlite-folder": f"sqlite:///{project / 'mlruns'}", "plain-folder": str(project / "mlruns"),
           "sqlite-under-a-file": f"sqlite:///{project / 'a-file' / 'mlflow.db'}"}[uri_kind]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ConfigError) as err:
        LabConfig.resolve(project)
    assert uri in str(err.value) and "$MLFLOW_TRACKING_URI" in str(err.value)
    assert "sqlite:///" in err.value.fix


def test_the_same_uri_in_labkit_toml_names_the_file(project):
    path = write_toml(project, f'[tracking]\nuri = "sqlite:///{project / "mlruns"}"\n')
    with pytest.raises(ConfigError, match="names the folder") as err:
        LabConfig.resolve(project)
    assert f"{path} [tracking] uri" in str(err.value)


def test_artifact_root_that_is_a_file(project):
    (project / "arts").write_text("x")
    write_toml(project, '[tracking]\nartifact_root = "arts"\n')
    with pytest.raises(ConfigError, match="artifact_root = 'arts' is a file"):
        LabConfig.resolve(project)


@pytest.mark.parametrize(("kwargs", "name"), [({"tracking_uri": 5}, "tracking_uri"),
                                              ({"experiment": ["a"]}, "experiment"),
                                              ({"compliance_mode": 5}, "compliance_mode"),
                                              ({"system_metrics": "yes"}, "system_metrics"),
                                              # given but blank: fell back to the default without a word
                                              ({"compliance_mode": " "}, "compliance_mode"),
                                              ({"experiment": ""}, "experiment")])
def test_arguments_of_the_wrong_type(project, kwargs, name):
    with pytest.raises(InvalidParameter, match=name) as err:
        LabConfig.resolve(project, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(err.value) and err.value.fix


def test_a_misspelt_root_is_refused_naming_the_close_folders_and_creating_nothing(project, tmp_path):
    (tmp_path / "my-project").mkdir()
    (tmp_path / "my-projects-old").mkdir()
    typo = tmp_path / "my-projcet"
    with pytest.raises(ConfigError, match="does not exist") as err:
        LabConfig.resolve(typo)
    assert repr(str(typo)) in str(err.value)
    assert repr(str(tmp_path / "my-project")) in err.value.message              # the close match beside it
    assert f"did you mean {str(tmp_path / 'my-project')!r}?" in err.value.fix
    assert "create=True" in err.value.fix and "mkdir -p" in err.value.fix
    assert not typo.exists()                                                  # no new, empty project


def test_a_root_whose_parent_is_missing_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist either") as err:
        LabConfig.resolve(tmp_path / "nowhere" / "project")
    assert "did you mean" not in err.value.fix and "create=True" in err.value.fix
    assert not (tmp_path / "nowhere").exists()


def test_a_lab_with_a_misspelt_root_is_refused_and_create_starts_a_project(project, tmp_path):
    from labkit.hardware import HardwareProfile
    from labkit.lab import Lab

    with pytest.raises(ConfigError, match="does not exist") as err:
        Lab(tmp_path / "projcet")
    assert repr(str(project)) in str(err.value)                               # ~ "project", beside it
    assert not (tmp_path / "projcet").exists()
    lab = Lab(tmp_path / "new" / "study", create=True, hardware=HardwareProfile.simulated(None))
    assert lab.config.root == (tmp_path / "new" / "study").resolve() and lab.config.root.is_dir()
    assert Lab(tmp_path / "new" / "study").config.root == lab.config.root     # and it is found again as it is
    with pytest.raises(InvalidParameter, match="create must be True or False"):
        LabConfig.resolve(tmp_path / "x", create="yes")
    with pytest.raises(InvalidParameter, match="takes no experiment") as err:
        Lab(config=lab.config, experiment="other")                            # it would be ignored without a word
    assert "dataclasses.replace" in err.value.fix


def test_a_root_of_the_wrong_type(project):
    with pytest.raises(InvalidParameter, match="root must be a folder path, not int 123"):
        LabConfig.resolve(123)


# -- the compliance mode: validated, and its source named -------------------------------------------------------


def test_the_mode_source_is_recorded(project, monkeypatch):
    path = write_toml(project, '[lab]\ncompliance_mode = "strict"\n')
    assert LabConfig.resolve(project).compliance_mode_source == f"{path} [lab] compliance_mode"
    monkeypatch.setenv("LABKIT_COMPLIANCE_MODE", "open")
    c = LabConfig.resolve(project)
    assert (c.compliance_mode, c.compliance_mode_source) == ("open", "$LABKIT_COMPLIANCE_MODE")
    c = LabConfig.resolve(project, compliance_mode="research")
    assert (c.compliance_mode, c.compliance_mode_source) == ("research", "argument")
    (project / "labkit.toml").unlink()
    monkeypatch.delenv("LABKIT_COMPLIANCE_MODE")
    c = LabConfig.resolve(project)
    assert (c.compliance_mode, c.compliance_mode_source) == ("research", "default")


@pytest.mark.parametrize("where", ["toml", "env", "argument"])
def test_an_unknown_mode_names_where_it_came_from(project, monkeypatch, where):
    path = project / "labkit.toml"
    if where == "toml":
        write_toml(project, '[lab]\ncompliance_mode = "resarch"\n')
    elif where == "env":
        monkeypatch.setenv("LABKIT_COMPLIANCE_MODE", "resarch")
    config = LabConfig.resolve(project, compliance_mode="resarch" if where == "argument" else None)
    with pytest.raises(InvalidParameter) as err:
        resolve_mode(config.compliance_mode, source=config.compliance_mode_source)
    expected = {"toml": f"{path} [lab] compliance_mode", "env": "$LABKIT_COMPLIANCE_MODE", "argument": "argument"}
    assert f"'resarch' (from {expected[where]})" in str(err.value)
    assert "research" in err.value.fix


def test_a_mode_that_is_not_text_is_refused_not_replaced_by_the_default(project):
    with pytest.raises(InvalidParameter, match=r"Compliance mode 5 \(from somewhere\) is not a name"):
        resolve_mode(5, source="somewhere")


# -- property-based: arbitrary values for every key ------------------------------------------------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                                else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.one_of(text, st.integers(), st.floats(), st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(text, inner, max_size=3)), max_leaves=6)
keys = st.sampled_from([(section, key) for section, table in SCHEMA.items() for key in table])
NOT_OURS = (LabkitError,)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(keys, values), min_size=1, max_size=3, unique_by=lambda e: e[0]))
def test_any_value_for_any_key_resolves_or_raises_a_labkit_error(project, entries):
    sections: dict[str, list[str]] = {}
    for (section, key), value in entries:
        sections.setdefault(section, []).append(f"{key} = {toml_value(value)}")
    write_toml(project, "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items()))
    try:
        config = LabConfig.resolve(project)
    except NOT_OURS as e:
        assert e.fix, e
        return
    # What resolved has the types the schema promises.
    assert isinstance(config.experiment, str) and isinstance(config.tracking_uri, str)
    assert isinstance(config.system_metrics, bool) and config.system_metrics_interval > 0
    assert isinstance(config.compliance_mode, str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))))
def test_any_bytes_as_labkit_toml_resolve_or_raise_a_config_error(project, raw):
    (project / "labkit.toml").write_bytes(raw)
    try:
        LabConfig.resolve(project)
    except ConfigError as e:
        assert "labkit.toml" in str(e) and e.fix


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uri=text, mode=text, experiment=text)
def test_any_environment_resolves_or_raises_a_labkit_error(project, monkeypatch, uri, mode, experiment):
    for var, value in (("MLFLOW_TRACKING_URI", uri), ("LABKIT_COMPLIANCE_MODE", mode),
                       ("LABKIT_EXPERIMENT", experiment)):
        if "\x00" in value:  # the environment cannot hold one
            value = value.replace("\x00", "")
        monkeypatch.setenv(var, value)
    try:
        config = LabConfig.resolve(project)
        resolve_mode(config.compliance_mode, source=config.compliance_mode_source)
    except LabkitError as e:
        assert e.fix


@pytest.mark.parametrize("var", ["LABKIT_EXPERIMENT", "MLFLOW_TRACKING_URI", "LABKIT_COMPLIANCE_MODE", "LABKIT_ROOT"])
def test_an_environment_variable_that_is_not_utf8(project, monkeypatch, var):
    monkeypatch.setenv(var, "caf\udce9")  # the bytes b"caf\xe9", as Python decodes a Latin-1 environment
    with pytest.raises(ConfigError) as err:
        LabConfig.resolve()
    assert f"${var} = 'caf\\xe9' is not UTF-8 text" in str(err.value) and var in err.value.fix


def test_an_argument_that_is_not_utf8(project):
    with pytest.raises(InvalidParameter, match="experiment = 'x\\\\udcff' is not UTF-8") as err:
        LabConfig.resolve(project, experiment="x\udcff")
    assert err.value.fix


def test_the_controllers_a_server_allows_are_read_and_checked(project):
    from labkit.serve.app import allowed_controllers

    write_toml(project, '[serve]\ncontrollers = ["remote:http://127.0.0.1:11434/v1#qwen2.5:3b"]\n')
    cfg = LabConfig.resolve(project)
    assert cfg.serve_controllers == ("remote:http://127.0.0.1:11434/v1#qwen2.5:3b",)
    assert allowed_controllers([*cfg.serve_controllers, "rules", "local:/models/qwen"]) == (
        "rules", "remote:http://127.0.0.1:11434/v1#qwen2.5:3b", "local:/models/qwen")
    for bad in ("remote:ftp://x#m", "remote:http://x/v1", "lcoal:qwen", "local:"):  # refused when the server starts
        with pytest.raises(InvalidParameter):
            allowed_controllers([bad])
