"""A schema-driven fuzz of the /v1 API: schemathesis reads the server's own OpenAPI document
(`GET /v1/openapi.json`, `demo.openapi`) and sends generated requests, valid and invalid, to the real
server on loopback. No answer may be a 5xx, and each must be one the document declares.

Bounded: at most `MAX_EXAMPLES` generated requests per operation (plus schemathesis' edge cases); `n` is
at most 10 by the document, as on the server, and the test server samples 4 candidates per image.
"""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from conftest import DEMO_API_KEY, LiveServer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(demo_server: LiveServer) -> schemathesis.BaseSchema:
    """The API's OpenAPI document as the server serves it, aimed at that server with the API key."""
    schema = schemathesis.openapi.from_url(f"{demo_server.url}/v1/openapi.json")
    schema.config.update(base_url=demo_server.url, headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
                         request_timeout=120)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


def test_document_covers_every_route(demo_server: LiveServer) -> None:
    """The document describes the four /v1 routes and needs no API key itself."""
    document = httpx.get(f"{demo_server.url}/v1/openapi.json").json()
    assert set(document["paths"]) == {"/v1/images/generations", "/v1/images/edits", "/v1/models",
                                      "/v1/files/{file_id}.png"}
