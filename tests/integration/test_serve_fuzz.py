"""Property-based fuzzing of the live OpenAPI schema of `labkit serve` with schemathesis: every endpoint,
a valid admin key, at least 500 generated requests; no response is a 5xx and every one conforms to the
schema (status code documented, content type, body)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.serve_helpers import add_key, project, start

schemathesis = pytest.importorskip("schemathesis")

PER_OPERATION = 36  # x 15 operations (+ /health): over 500 requests
TOML = "[serve]\nrequests_per_minute = 100000\njobs_in_flight = 1000\nqueue = 1000\n"


def test_fuzzing_every_endpoint_finds_no_server_error_and_no_schema_violation(tmp_path, _fresh_store_file):
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    root = project(tmp_path / "p", _fresh_store_file, TOML)
    key = add_key(root, "fuzz", "admin")
    server = start(root, keys={"fuzz": key})
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        def fuzz_one(op) -> None:
            @given(case=op.as_strategy())
            @settings(max_examples=PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def fuzz(case):
                response = case.call(headers={"Authorization": f"Bearer {key}"}, timeout=60)
                seen[(op.label, response.status_code)] += 1
                try:
                    case.validate_response(response, checks=checks)
                except Exception as e:  # noqa: BLE001 - collect them all, report at the end
                    failures.append(f"{op.label} -> {response.status_code}: {str(e)[:800]}")

            fuzz()

        for op in operations:
            fuzz_one(op)
        with server.client("fuzz") as c:
            assert c.get("/health").status_code == 200  # still up after all that
    finally:
        code = server.stop()
    assert not failures, "\n".join(failures[:10])
    assert sum(seen.values()) >= 500, seen
    assert not [k for k in seen if k[1] >= 500], seen
    answered = {label for label, status in seen if status < 300}
    assert len(answered) >= 8, seen  # the fuzzer got past validation on most endpoints, not only errors
    assert code == 0, server.output()
