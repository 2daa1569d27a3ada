"""Sweep specs are checked before anything runs, and the statistics are the textbook ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from labkit.errors import ConfigError, InvalidParameter
from labkit.sweeps.spec import load_spec, spec_from_dict

REPO = Path(__file__).resolve().parents[2]
POINT_NOTEBOOK = REPO / "tests" / "fixtures" / "sweep_point.ipynb"


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_grid_times_seeds_gives_every_point_in_order():
    spec = spec_from_dict({"name": "s", "plan": {"prompt": "a red circle"}, "grid": {"steps": [4, 8],
                           "guidance": [1.5, 4.0]}, "points": [{"steps": 20, "guidance": 7.0}], "seeds": 3})
    points = spec.check()
    assert len(points) == (2 * 2 + 1) * 3
    assert [p.values for p in points[:4]] == [{"steps": 4, "guidance": 1.5, "seed": s} for s in (0, 1, 2)] + [
        {"steps": 4, "guidance": 4.0, "seed": 0}]
    assert spec.axes == ("steps", "guidance")
    assert len({p.key for p in points}) == len(points)
    plan = spec.plan_for(points[-1])
    assert (plan.steps, plan.guidance, plan.seed, plan.prompt) == (20, 7.0, 2, "a red circle")


def test_placeholders_fill_the_plan_template():
    spec = spec_from_dict({"name": "s", "plan": {"prompt": "a small {colour} circle", "model": "toyworld"},
                           "grid": {"colour": ["red", "blue"]}, "parameters": {"size": [32, 32]}})
    plans = [spec.plan_for(p) for p in spec.check()]
    assert [p.prompt for p in plans] == ["a small red circle", "a small blue circle"]
    assert (plans[0].width, plans[0].height, plans[0].seed) == (32, 32, 0)


@pytest.mark.parametrize(("text", "words"), [
    ("name: s\nplan: {prompt: x}\ngrid: {steps: []}\n", ["grid axis 'steps' is empty"]),
    ("name: s\nplan: {prompt: x}\ngrid: {}\n", ["no points", "grid"]),
    ("name: s\nplan: {prompt: x}\ngrid: {steps: 4}\n", ["'steps' is 4, not a list", "steps: [4]"]),
    ("name: s\nplan: {prompt: x}\ngrid: {steppz: [4, 8]}\n", ["'steppz'", "neither a plan field"]),
    ("name: s\nplan: {prompt: x, sampler: ddim}\ngrid: {steps: [4]}\n", ["unknown field(s) ['sampler']"]),
    ("name: s\nnotebook: nowhere.ipynb\ngrid: {x: [1]}\n", ["'nowhere.ipynb'", "does not exist"]),
    ("name: s\nplan: {prompt: x}\ngrid: {steps: [4]}\nseeds: 0\n", ["seeds: 0"]),
    ("name: s\nplan: {prompt: x}\ngrid: {steps: [4]}\ngird: {}\n", ["unknown key(s) ['gird']"]),
    ("plan: {prompt: x}\n", ["no `name:`"]),
    ("name: s\ngrid: {steps: [4]}\n", ["exactly one of `notebook:` and `plan:`"]),
])
def test_bad_specs_name_the_problem(tmp_path, text, words):
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, text)).check()
    for word in words:
        assert word in str(err.value)
    assert err.value.fix


def test_a_parameter_the_notebook_does_not_declare_is_refused(tmp_path):
    path = _spec(tmp_path, f"name: s\nnotebook: {POINT_NOTEBOOK}\ngrid: {{x: [1, 2], temperature: [0.5]}}\n")
    with pytest.raises(ConfigError) as err:
        load_spec(path).check()
    assert "'temperature'" in str(err.value) and "parameters" in str(err.value)
    assert "'x'" in err.value.fix  # the fix lists what the notebook does declare
    assert len(load_spec(_spec(tmp_path, f"name: s\nnotebook: {POINT_NOTEBOOK}\ngrid: {{x: [1, 2]}}\nseeds: 2\n"))
               .check()) == 4


def test_ten_thousand_points_need_yes():
    grid = {"steps": list(range(1, 101)), "guidance": [float(g) for g in range(100)]}
    spec = spec_from_dict({"name": "big", "plan": {"prompt": "x"}, "grid": grid})
    with pytest.raises(ConfigError) as err:
        spec.check()
    assert "10000 runs" in str(err.value) and "--yes" in err.value.fix
    assert len(spec.check(yes=True)) == 10_000


def test_a_plan_the_model_refuses_fails_at_check_time(migrated_store, lab):
    spec = spec_from_dict({"name": "s", "plan": {"prompt": "a red circle", "model": "toyworld"},
                           "grid": {"size": [[64, 64], [4096, 4096]]}})
    with pytest.raises(ConfigError) as err:
        spec.check(lab)
    assert "Point 1" in str(err.value)
    assert lab.tracker.client.search_runs([lab.tracker.experiment_id()]) == []


def test_the_shipped_studies_are_valid():
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        spec = load_spec(path, root=REPO)
        points = spec.check()
        assert points and spec.compare, path.name


def test_mean_ci_is_students_t():
    from scipy import stats

    from labkit.sweeps.stats import mean_ci

    vals = [0.5, 0.75, 0.25, 1.0]
    s = mean_ci(vals)
    half = stats.t.ppf(0.975, 3) * stats.tstd(vals) / math.sqrt(4)
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.625)
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(0.625 - half), pytest.approx(0.625 + half))
    assert math.isnan(mean_ci([0.3])["ci_low"])


def test_paired_comparison_pairs_on_seed_and_the_other_parameters():
    import pandas as pd
    from scipy import stats

    from labkit.sweeps.stats import SweepReport

    rows = []
    for g in (1.5, 4.0):
        for seed in range(4):
            base = 0.2 + 0.1 * seed + (0.05 if g == 4.0 else 0.0)
            rows.append({"run_id": f"a{g}{seed}", "status": "FINISHED", "steps": 4, "guidance": g, "seed": seed,
                         "score": base, "image": None})
            rows.append({"run_id": f"b{g}{seed}", "status": "FINISHED", "steps": 12, "guidance": g, "seed": seed,
                         "score": base + 0.1 + 0.02 * seed, "image": None})
    frame = pd.DataFrame(rows)
    rep = SweepReport(parent_run_id="p", name="s", axes=("steps", "guidance"), metrics=("score",), frame=frame,
                      summary=pd.DataFrame(), params=("steps", "guidance"))
    p = rep.paired({"steps": 4}, {"steps": 12}, "score")
    a = [r["score"] for r in rows if r["steps"] == 4]
    b = [r["score"] for r in rows if r["steps"] == 12]
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    assert p.n == 8
    assert p.mean_diff == pytest.approx(sum(diffs) / 8)
    assert p.p_value == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert p.effect_size == pytest.approx((sum(diffs) / 8) / stats.tstd(diffs))
    assert p.ci_low < p.mean_diff < p.ci_high
    with pytest.raises(InvalidParameter):
        rep.paired({"steps": 4}, {"steps": 99}, "score")


def test_a_difference_every_pair_agrees_on_gets_the_sign_test_p_value():
    """A detector score of 0 at one setting and 1 at the other on every seed: the t statistic is undefined (no
    spread), the exact sign test is not — 6 pairs that all agree are significant at 0.05 (p = 2 / 2^6). With no
    difference at all neither test is defined: p is None, and the line says why."""
    import pandas as pd

    from labkit.sweeps.stats import SweepReport

    rows = [{"run_id": f"{g}{steps}{seed}", "status": "FINISHED", "steps": steps, "guidance": g, "seed": seed,
             "score": float(g > 1), "same": 0.5, "image": None}
            for g in (1.0, 4.0) for steps in (4, 12) for seed in range(3)]
    rep = SweepReport(parent_run_id="p", name="s", axes=("steps", "guidance"), metrics=("score", "same"),
                      frame=pd.DataFrame(rows), summary=pd.DataFrame(), params=("steps", "guidance"))
    p = rep.paired({"guidance": 1.0}, {"guidance": 4.0}, "score")
    assert (p.n, p.mean_diff, p.test) == (6, 1.0, "sign test")
    assert p.p_value == pytest.approx(2 / 2**6) and "(sign test)" in p.line()
    unchanged = rep.paired({"guidance": 1.0}, {"guidance": 4.0}, "same")
    assert unchanged.p_value is None and unchanged.mean_diff == 0.0
    assert "p undefined (every pair is equal)" in unchanged.line()


def test_a_paired_comparison_is_strict_json_when_a_statistic_is_undefined():
    """Every pair equal: no test defines p (JSON null, not NaN, which strict parsers refuse); pairs that all differ
    by the same amount: d_z is infinite (null too); one pair: no CI. Each dumps with allow_nan=False."""
    import json

    import pandas as pd

    from labkit.sweeps.stats import SweepReport

    rows = [{"run_id": f"{g}{seed}", "status": "FINISHED", "guidance": g, "seed": seed, "same": 0.5,
             "score": float(g > 1), "image": None} for g in (1.0, 4.0) for seed in range(3)]
    rep = SweepReport(parent_run_id="p", name="s", axes=("guidance",), metrics=("same",), frame=pd.DataFrame(rows),
                      summary=pd.DataFrame(), params=("guidance",))
    one = SweepReport(parent_run_id="p", name="s", axes=("guidance",), metrics=("score",),
                      frame=pd.DataFrame([r for r in rows if r["seed"] == 0]), summary=pd.DataFrame(),
                      params=("guidance",))
    equal, agree = (rep.paired({"guidance": 1.0}, {"guidance": 4.0}, m) for m in ("same", "score"))
    single = one.paired({"guidance": 1.0}, {"guidance": 4.0}, "score")
    for p in (equal, agree, single):
        json.loads(json.dumps(p.to_dict(), allow_nan=False))
    assert equal.to_dict()["p_value"] is None and agree.to_dict()["effect_size"] is None
    assert single.to_dict()["ci_low"] is None and single.p_value is None
    assert equal.to_dict()["pairs"] == [{"seed": s, "a": 0.5, "b": 0.5} for s in range(3)]


def test_a_metric_no_run_recorded_is_named_with_the_ones_that_exist():
    import pandas as pd

    from labkit.sweeps.stats import SweepReport

    rows = [{"run_id": f"{g}{seed}", "status": "FINISHED", "guidance": g, "seed": seed, "adherence.all_correct": 0.5,
             "adherence.colour": 1.0, "time.total_s": 2.0, "image": None} for g in (1.0, 4.0) for seed in range(2)]
    rows.append({"run_id": "x", "status": "FAILED", "guidance": 1.0, "seed": 9, "failed.only": 1.0, "image": None})
    rep = SweepReport(parent_run_id="p", name="s", axes=("guidance",), metrics=(), frame=pd.DataFrame(rows),
                      summary=pd.DataFrame(), params=("guidance",))
    assert rep.recorded_metrics == ["adherence.all_correct", "adherence.colour", "time.total_s"]
    for metric in ("adherence.all_corect", "failed.only"):  # a typo; a metric only a failed run has
        with pytest.raises(InvalidParameter) as err:
            rep.paired({"guidance": 1.0}, {"guidance": 4.0}, metric)
        assert repr(metric) in str(err.value) and err.value.value == metric
        assert "adherence.all_correct, adherence.colour, time.total_s" in err.value.fix
    assert err.value.fix.startswith("name a metric")  # nothing close to failed.only
    with pytest.raises(InvalidParameter) as err:
        rep.paired({"guidance": 1.0}, {"guidance": 4.0}, "adherence.all_corect")
    assert err.value.fix.startswith("did you mean 'adherence.all_correct'?")


@pytest.mark.parametrize(("extra", "words"), [
    ("score: toyworld\nmetrics: [adherence.all_corect]\n",
     ["'adherence.all_corect'", "`metrics:`", "did you mean 'adherence.all_correct'"]),
    ("score: toyworld\ncompare: {a: {steps: 4}, b: {steps: 8}, metric: geneval.colour}\n",
     ["'geneval.colour'", "compare.metric", "'geneval.colours'"]),
    ("metrics: [adherence.all_correct]\n", ["'adherence.all_correct'", "score: toyworld"]),
])
def test_a_plan_sweeps_scorer_metric_that_cannot_exist_is_refused_before_it_runs(tmp_path, extra, words):
    """A plan point's adherence.* and geneval.* metrics come from its scorer alone, whose names are known: a typo
    there fails the spec at once, instead of a sweep whose summary silently lacks it."""
    text = "name: s\nplan: {prompt: 'a red circle', model: toyworld}\ngrid: {steps: [4, 8]}\n" + extra
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, text)).check()
    for word in words:
        assert word in str(err.value)
    ok = "name: s\nplan: {prompt: 'a red circle'}\ngrid: {steps: [4, 8]}\nscore: toyworld\n" \
         "metrics: [adherence.all_correct, geneval.overall, time.total_s, anything.else]\n"
    assert len(load_spec(_spec(tmp_path, ok)).check()) == 2  # names outside the scorer's are judged after the run
    notebook = f"name: s\nnotebook: {POINT_NOTEBOOK}\ngrid: {{x: [1, 2]}}\nmetrics: [adherence.whatever]\n"
    assert len(load_spec(_spec(tmp_path, notebook)).check()) == 2  # a notebook records what it likes


@pytest.mark.parametrize("jobs", [0, -3, 1.5, True])
def test_run_sweep_refuses_jobs_below_one(migrated_store, lab, jobs):
    from labkit.sweeps import run_sweep

    spec = spec_from_dict({"name": "s", "plan": {"prompt": "a red circle", "model": "toyworld"},
                           "grid": {"steps": [2]}})
    with pytest.raises(InvalidParameter) as err:
        run_sweep(lab, spec, jobs=jobs, progress=False)
    assert f"jobs={jobs!r}" in str(err.value) and "jobs=1" in err.value.fix and err.value.value == jobs
    assert lab.tracker.client.search_runs([lab.tracker.experiment_id()]) == []
