"""Arguments of the Python API a user walked, checked before any work: a lone string where a list is meant, a
`Lab` where a `Tracker` is meant, text where a number is meant, and each refusal names the argument, the value
and the fix (a `LabkitError`), never a TypeError or AttributeError from inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import InvalidParameter

REPO = Path(__file__).resolve().parents[2]
LORA = REPO / "notebooks" / "06_lora_training.ipynb"
INSTALL = "git+https://github.com/example/labkit@0123456789abcdef"


# -- 1. the compliance report ----------------------------------------------------------------------


def test_compliance_report_takes_the_lab_as_well_as_its_tracker(migrated_store, lab):
    from labkit.compliance import compliance_report

    with lab.run("old render", tags={"labkit.job": "render", "model.id": "sd15",
                                     "model.licence": "creativeml-openrail-m"}) as run:
        pass
    assert [r.run_id for r in compliance_report(lab).runs] == [run.run_id]
    assert compliance_report(lab).to_dict() == compliance_report(lab.tracker).to_dict()
    with pytest.raises(InvalidParameter, match="compliance_report needs a Lab or its tracker, got str") as err:
        compliance_report("mlruns")
    assert "lab.tracker" in err.value.fix


@pytest.mark.parametrize("max_runs", ["5", 2.5, True, None, 0, -1])
def test_compliance_report_refuses_a_max_runs_that_is_not_a_positive_int(migrated_store, lab, max_runs):
    from labkit.compliance import compliance_report

    with pytest.raises(InvalidParameter, match=f"max_runs={max_runs!r}") as err:
        compliance_report(lab.tracker, max_runs=max_runs)
    assert err.value.value == max_runs and "positive int" in err.value.fix


# -- 2. compare_adapters ---------------------------------------------------------------------------


class _Untouchable:
    """A lab that fails the test if anything is rendered, loaded or looked up: the checks come first."""

    def __getattr__(self, name):
        raise AssertionError(f"compare_adapters used lab.{name} before checking its arguments")


GOOD = {"adapters": ["out/hex"], "prompts": ["a small red hexagon on the left"], "seeds": [0, 1],
        "weights": [0.0, 1.0]}


@pytest.mark.parametrize(("bad", "match", "fix"), [
    ({"prompts": "a small red hexagon on the left"}, "prompts must be a list, got str",
     "prompts=['a small red hexagon on the left']"),
    ({"adapters": "out/hex"}, "adapters must be a list, got str", "adapters=['out/hex']"),
    ({"seeds": 3}, "seeds must be a list, got int", "seeds=[0, 1]"),
    ({"prompts": ["ok", 7]}, r"prompts\[1\] must be text", "string"),
    ({"adapters": ["out/hex", None]}, r"adapters\[1\] must be a path", "run:RUN_ID"),
    ({"weights": [0.5, 9]}, r"weights\[1\] is 9, outside -4–4", "between -4 and 4"),
    ({"weights": [-4.5]}, r"weights\[0\] is -4.5, outside -4–4", "between -4 and 4"),
    ({"weights": ["1"]}, r"weights\[0\] must be a number", "1.0"),
    ({"seeds": [0, -1]}, r"seeds\[1\] -1 is outside 0–4294967295", "0 to 4294967295"),
    ({"seeds": [0.5]}, r"seeds\[0\] must be a whole number", "integer"),
    ({"seeds": []}, "must not be empty", "--seeds"),
])
def test_compare_adapters_refuses_bad_lists_before_any_work(bad, match, fix):
    from labkit.evals.adapters import compare_adapters

    kw = {**GOOD, **bad}
    with pytest.raises(InvalidParameter, match=match) as err:
        compare_adapters(_Untouchable(), kw.pop("adapters"), **kw)
    assert fix in err.value.fix


def test_compare_adapters_takes_the_limits_a_plan_takes():
    """The edges generate accepts (weights -4 and 4, seed 0 and 2**32-1, a range of seeds) pass the checks."""
    from labkit.evals.adapters import _check_args

    _check_args(("out/hex", Path("out/other")), ("a red circle",), range(3), (-4, 4.0, 0))
    _check_args(["out/hex"], ["a red circle"], [0, 2**32 - 1], [1])


# -- 3. the sweep report ---------------------------------------------------------------------------


def test_sweep_report_takes_one_metric_as_a_string(migrated_store, lab, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import labkit.render
    from labkit.sweeps import load_spec, report, run_sweep

    def fake_render(lab_, plan, **kw):  # a render's run and metrics, without a model
        with lab_.run("txt2img", params={"plan": plan.to_dict()}, tags=kw["tags"]) as run:
            run.log_metrics({"adherence.all_correct": plan.steps / 10, "time.total_s": 0.1})
        return SimpleNamespace(run_id=run.run_id, status="finished", files=[])

    monkeypatch.setattr(labkit.render, "render", fake_render)
    path = tmp_path / "one.yaml"
    path.write_text("name: one\nplan: {prompt: 'a small red circle on the left', model: toyworld}\n"
                    "grid: {steps: [2, 3]}\nseeds: 1\n")
    parent = run_sweep(lab, load_spec(path), progress=False).parent_run_id
    rep = report(lab, parent, metrics="adherence.all_correct")
    assert rep.metrics == ("adherence.all_correct",)
    assert report(lab, parent, metrics=["adherence.all_correct"]).metrics == rep.metrics
    with pytest.raises(InvalidParameter, match="metrics must be metric names, got int") as err:
        report(lab, parent, metrics=5)
    assert "adherence.all_correct" in err.value.fix


# -- 4. metrics of a run ---------------------------------------------------------------------------


def test_a_metric_that_is_not_a_number_is_refused_by_name(migrated_store, lab):
    import numpy as np

    with pytest.raises(InvalidParameter, match="Metric 'score' must be a number, got str 'high'") as err:
        with lab.run("metrics") as run:
            run.log_metrics({"score": "high"})
    assert err.value.value == "high" and "tag" in err.value.fix
    with lab.run("more metrics") as run:
        run.log_metrics({"ok": True, "n": np.float32(0.5), "none": None})
        for call in (lambda: run.log_metrics({"a": {"b": "1.5"}}), lambda: run.log_series("loss", [0.5, "x"]),
                     lambda: run.record(metrics={"ratio": b"1"}), lambda: run.record(series={"s": [object()]})):
            with pytest.raises(InvalidParameter, match="must be a number"):
                call()
    got = {k: v for k, v in lab.tracker.client.get_run(run.run_id).data.metrics.items() if not k.startswith("system/")}
    assert got == {"ok": 1.0, "n": 0.5}  # a bool is 1, as MLflow takes it; nothing refused was written


# -- 5, 6. Kaggle and Colab ------------------------------------------------------------------------


def test_a_kaggle_title_too_short_for_a_slug_is_named_as_the_title(project):
    from labkit.cloud.kaggle import build_kernel

    kw = {"owner": "alice", "internet": True, "install": INSTALL}
    with pytest.raises(InvalidParameter, match=r"The title 'ab' does not make a usable Kaggle kernel.*5 to 50") as err:
        build_kernel(project, str(LORA), {}, title="ab", **kw)
    assert err.value.value == "ab" and "title" in err.value.fix
    with pytest.raises(InvalidParameter, match=r"The title '!!!!!!' .*slug \(''"):
        build_kernel(project, str(LORA), {}, title="!!!!!!", **kw)
    with pytest.raises(InvalidParameter, match="The kernel title must be text, got int 12345"):
        build_kernel(project, str(LORA), {}, title=12345, **kw)
    with pytest.raises(InvalidParameter, match="'Bad_Slug' is not a usable Kaggle kernel slug"):  # a slug given
        build_kernel(project, str(LORA), {}, slug="Bad_Slug", title="A fine title", **kw)
    assert not (project / "kaggle").exists()


@pytest.mark.parametrize(("params", "match"), [
    ({"steps": "lots"}, "parameter steps takes a whole number \\(its default is 1000\\), got the text 'lots'"),
    ({"learning_rate": "fast"}, "parameter learning_rate takes a number"),
    ({"train_text_encoder": "yes"}, "parameter train_text_encoder takes True or False"),
])
def test_cloud_notebooks_refuse_text_where_the_parameters_cell_has_a_number(project, params, match):
    from labkit.cloud.colab import build_colab
    from labkit.cloud.kaggle import build_kernel

    with pytest.raises(InvalidParameter, match=match) as err:
        build_kernel(project, str(LORA), params, owner="alice", internet=True, install=INSTALL)
    name = next(iter(params))
    assert err.value.value == params[name] and f"{name}=" in err.value.fix
    with pytest.raises(InvalidParameter, match=match):
        build_colab(project, str(LORA), params, install=INSTALL)
    assert not (project / "kaggle").exists() and not (project / "colab").exists()


def test_cloud_parameter_types_stay_conservative(tmp_path):
    """An int where a float is the default, None, text where the default is text or None, a list: all pass."""
    import nbformat

    from labkit.cloud.prepare import check_parameters, parameter_defaults

    check_parameters(LORA, {"learning_rate": 1, "steps": None, "data": "folder", "concept": "sks",
                            "sampling_steps": 4, "weights": [0.0, 1.0]})
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 3\nn = some_call()\nlr: float = 1e-3\nk = 2\nk += 1\nname = 'x'",
                                          metadata={"tags": ["parameters"]})]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, path)
    assert parameter_defaults(path) == {"lr": 1e-3, "name": "x"}  # the last assignment decides; non-literals drop
    check_parameters(path, {"n": "text", "k": "text", "name": 5})
    with pytest.raises(InvalidParameter, match="lr takes a number"):
        check_parameters(path, {"lr": "1e-3"})
