"""The decision service against its own OpenAPI document: schemathesis generates requests for every operation
from the document served at /openapi.json (bounded examples, loopback) and checks each answer against it, and
that no generated request gets a server error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import RULES

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("granian")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from policy_engine.service.process import ServiceProcess  # noqa: E402


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess(["--rules", str(RULES), "--state", "memory://"]) as svc:
        yield svc


@pytest.fixture(scope="module")
def api(service):
    return schemathesis.openapi.from_url(f"{service.base}/openapi.json")


def test_every_operation_answers_as_documented(api):
    operations = [result.ok() for result in api.get_all_operations()]
    # schemathesis leaves out the document's own path when it loads the document from there
    assert {o.path for o in operations} == set(api.raw_schema["paths"]) - {"/openapi.json"}

    for operation in operations:
        @given(operation.as_strategy())
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.text)
            case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                     response_schema_conformance])

        answers_as_documented()
