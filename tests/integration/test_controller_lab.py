"""Planning through the lab: preview, fallback to rules, the plan cache, ask, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from labkit.controller.plan import Plan, plan_schema
from tests.integration.test_cli import labkit
from tests.integration.test_controller_remote import GOOD, ChatServer


def test_rules_plan_is_previewed_not_rendered(lab, search_runs):
    plan = lab.plan("a small red circle on the left")
    assert plan.controller.name == "rules" and plan.model == "toyworld"
    assert Plan.from_json(plan.to_json()) == plan
    assert search_runs(lab.config.tracking_uri) == []  # planning renders nothing


def test_remote_plan_is_cached_across_labs(lab, project):
    server = ChatServer([("answer", GOOD)])
    try:
        spec = f"remote:{server.url}#tiny-llm"
        first = lab.plan("two watercolor circles", controller=spec)
        from labkit.lab import Lab

        again = Lab(project, hardware=lab.hardware).plan("two watercolor circles", controller=spec)
        assert first == again and first.controller.name == "remote" and first.controller.fallback_reason is None
        assert len(server.requests) == 1  # the second plan came from the cache, not the LLM
        assert len(list((project / "mlruns" / "plan-cache").glob("*.json"))) == 1
    finally:
        server.close()


@pytest.mark.parametrize("script", [[("answer", "{modality: image, oops")], [("sleep", 2)] * 3],
                         ids=["malformed-json", "timeout"])
def test_llm_failure_modes_end_in_a_rules_plan(lab, script, monkeypatch):
    monkeypatch.setenv("LABKIT_LLM_TIMEOUT", "0.5")
    server = ChatServer(script)
    try:
        plan = lab.plan("a small red circle on the left", controller=f"remote:{server.url}#tiny-llm")
        assert plan.controller.name == "rules" and "tiny-llm" in plan.controller.fallback_reason
        jsonschema.validate(plan.to_dict(), plan_schema())
    finally:
        server.close()


def test_failing_llm_falls_back_to_rules_and_says_why(lab):
    server = ChatServer([("status", 500)] * 6)
    try:
        spec = f"remote:{server.url}#tiny-llm"
        plan = lab.plan("a small red circle on the left", controller=spec)
        assert plan.controller.name == "rules"
        assert plan.controller.fallback_reason.startswith(f"{spec} failed:")
        assert plan.model == "toyworld"
        # A fallback is not cached: the next request tries the LLM again.
        n = len(server.requests)
        lab.plan("a small red circle on the left", controller=spec)
        assert len(server.requests) > n
    finally:
        server.close()


def test_cli_plan_json_and_eval_controller(cli_env, project, search_runs):
    out = labkit("plan", "a cinematic video of waves, 4 seconds", "--json", env=cli_env)
    plan = json.loads(out.stdout)
    assert plan["modality"] == "video" and plan["controller"]["name"] == "rules"
    result = json.loads(labkit("eval", "controller", "--json", env=cli_env).stdout)
    assert result["overall"] >= 0.95 and result["fields_checked"] >= 60
    (run,) = search_runs(f"sqlite:///{project}/mlruns/mlflow.db")  # the benchmark is logged, like the others
    assert run.info.run_id == result["run_id"] and run.data.tags["labkit.job"] == "eval-controller"
    assert run.data.params["controller"] == "rules" and int(run.data.params["cases"]) == result["cases"]
    assert run.data.metrics["controller.overall"] == result["overall"]
    assert run.data.metrics["controller.count.accuracy"] == result["fields"]["count"]["accuracy"]
    saved = Path(run.info.artifact_uri.removeprefix("file://")) / "controller_eval.json"
    assert len(json.loads(saved.read_text())["verdicts"]) == result["cases"]


def test_ask_plans_renders_and_records_the_controller(cli_env, project, tmp_path, search_runs):
    from labkit.testing import build_tiny_sd15

    folder = build_tiny_sd15(tmp_path / "toy")
    cat = tmp_path / "catalog.toml"
    cat.write_text(f'[models.toyworld]\nsource = "path:{folder}"\ndefault_steps = 2\n')
    out = labkit("ask", "a small red circle on the left", "--json", env={**cli_env, "LABKIT_CATALOG": str(cat)})
    rec = json.loads(out.stdout)
    assert rec["plan"]["controller"]["name"] == "rules" and rec["model"]["id"] == "toyworld"
    (run,) = search_runs(f"sqlite:///{project}/mlruns/mlflow.db")
    assert run.data.tags["labkit.controller"] == "rules" and run.data.params["plan.controller.name"] == "rules"


def test_local_controller_through_the_lab(lab, tmp_path):
    from labkit.testing.chat import build_tiny_chat_model

    folder = build_tiny_chat_model(tmp_path / "chat")
    plan = lab.plan("a small red circle on the left", controller=f"local:{folder}")
    # A random-weight model constrained to the schema still yields a valid plan, never an exception.
    assert plan.controller.name in ("local", "rules")
    if plan.controller.name == "local":
        assert plan.controller.licence == "apache-2.0" and plan.controller.revision.startswith("sha256:")
    else:
        assert plan.controller.fallback_reason
