"""The controller benchmark: the suite is data, the scoring can fail, and `rules` reaches 95 %."""

from __future__ import annotations

import json

import pytest

from labkit.controller.evaluate import FIELDS, check_case, evaluate, load_suite, to_table
from labkit.controller.plan import ControllerInfo, Plan
from labkit.controller.rules import RulesController
from labkit.errors import ConfigError


@pytest.fixture(scope="module")
def report():
    return evaluate(RulesController(use_env=False))


def test_suite_is_big_varied_and_holds_the_bad_requests():
    cases = load_suite()
    assert len(cases) >= 60
    ids = {c["id"] for c in cases}
    assert {"bad-empty", "bad-20000", "bad-french", "bad-injection", "count-10000", "vid-10-minutes"} <= ids
    assert {c["modality"] for c in cases if "modality" in c} == {"image", "video"}
    assert {str(c["tier"]) for c in cases} == {"cpu", "4", "6", "8", "12", "16", "24", "40"}
    for field in ("frames", "seconds", "aspect", "styles", "count", "model"):
        assert sum(field in c for c in cases) >= 4, field
    assert len({c["request"] for c in cases}) == len(cases)


def test_rules_reach_95_percent_of_fields(report):
    print(report.to_table())
    assert report["overall"] >= 0.95, report.to_table()
    assert report["fields_checked"] >= 400
    for name in ("valid", "modality", "count", "fits"):
        assert report["fields"][name]["accuracy"] >= 0.95, (name, report.to_table())
    assert report["controller"]["name"] == "rules" and report["controller"]["model"] is None


def test_report_shape_latency_and_table(report):
    assert report["cases"] == len(report["verdicts"])
    assert set(report["fields"]) <= set(FIELDS)
    lat = report["latency_ms"]
    assert 0 < lat["median"] <= lat["p95"] <= lat["max"]
    assert lat["median"] < 50  # rules plan in well under a frame of a notebook's patience
    json.dumps(report)  # a plain JSON-able dict for `labkit eval controller --json`
    table = to_table(report)
    assert "overall" in table and "latency" in table and "valid" in table


class _Naive:
    """Takes the request as the prompt and nothing else: what the benchmark must not reward."""

    name, model, revision = "naive", None, "0"

    def plan(self, request, context):
        return Plan(prompt=request or "x", model="sdxl", controller=ControllerInfo(name="naive"))


class _Broken:
    name, model, revision = "broken", None, "0"

    def plan(self, request, context):
        raise RuntimeError("boom")


def test_the_benchmark_can_fail():
    naive = evaluate(_Naive())
    assert naive["overall"] < 0.8, naive["overall"]
    assert naive["fields"]["modality"]["accuracy"] < 0.8
    broken = evaluate(_Broken())
    assert broken["overall"] == 0.0 and broken["cases_right"] == 0
    assert "RuntimeError" in to_table(broken)


def test_check_case_names_what_was_wrong(report):
    from labkit.controller.evaluate import default_context_factory

    case = {"id": "x", "request": "r", "tier": "cpu", "modality": "video", "count": 2, "aspect": "portrait",
            "styles": ["watercolor painting"], "frames": [40, 60]}
    ctx = default_context_factory()(case)
    plan = Plan(prompt="a fox", model="sdxl", width=1024, height=512)
    got = check_case(case, plan, None, ctx)
    assert got["valid"][0] is True
    for f in ("modality", "count", "aspect", "styles", "frames", "fits"):
        assert got[f][0] is False, f
    assert "landscape" in got["aspect"][1] and "watercolor painting" in got["styles"][1]


def test_suite_file_errors(tmp_path):
    bad = tmp_path / "suite.toml"
    bad.write_text('[[cases]]\nid = "a"\nrequest = "x"\ntier = "8"\nmodality = "image"\n'
                   '[[cases]]\nid = "a"\nrequest = "y"\ntier = "8"\nmodality = "image"\n')
    with pytest.raises(ConfigError, match="repeated"):
        load_suite(bad)
    bad.write_text('[[cases]]\nid = "a"\nrequest = "x"\ntier = "8"\n')
    with pytest.raises(ConfigError, match="neither"):
        load_suite(bad)
    good = tmp_path / "good.toml"
    good.write_text('[[cases]]\nid = "a"\nrequest = "two images of a cat"\ntier = "8"\nmodality = "image"\ncount = 2\n')
    r = evaluate(RulesController(use_env=False), good)
    assert r["overall"] == 1.0 and r["cases"] == 1
