"""The OpenAPI document says how each operation can fail: every 4xx and 5xx it lists is application/problem+json
with the shared Problem schema (issue 12, item 18). The schema the server serves is checked the same way by
tests/e2e/test_contract.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from invoiceloop.app import create_app
from invoiceloop.settings import Settings

PROBLEM_REF = "#/components/schemas/Problem"
# What must be documented where, whichever branch's code produces it first.
EXPECTED = {
    ("POST", "/v1/invoices"): {400, 401, 409, 413, 415, 422, 503},
    ("POST", "/v1/invoices/batch"): {400, 401, 409, 413, 415, 422, 503},
    ("GET", "/v1/invoices/{invoice_id}"): {401, 404, 503},
    ("GET", "/v1/invoices"): {400, 401, 503},
    ("POST", "/v1/invoices/{invoice_id}/void"): {401, 404, 409, 413, 415, 422, 503},
    ("POST", "/v1/verifications"): {400, 413, 415, 422, 428, 429, 503},
    ("POST", "/v1/postal/events"): {400, 401, 413, 415, 422, 503},
    ("POST", "/v1/postal/manifests/{manifest_id}/close"): {401, 404, 409, 503},
    ("GET", "/v1/log/checkpoint"): {404, 503},
    ("POST", "/v1/sms/inbound"): {403, 413, 415, 503},
}
OWN_ANSWERS = {("GET", "/readyz", "503")}  # a probe's answer, documented as its own JSON


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "delete", "patch")
    ]


def assert_errors_are_problems(document: dict[str, Any]) -> None:
    """Every 4xx/5xx of every operation is problem+json with the Problem schema (OWN_ANSWERS aside)."""
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["errors"]["items"]["required"] == ["field", "message"]
    wrong = []
    for method, path, op in operations(document):
        for code, answer in op["responses"].items():
            if code[0] not in "45" or (method, path, code) in OWN_ANSWERS:
                continue
            content = answer.get("content", {})
            if list(content) != ["application/problem+json"] or content["application/problem+json"].get("schema") != {
                "$ref": PROBLEM_REF
            }:
                wrong.append(f"{method} {path} {code}: {content}")
    assert not wrong, "\n".join(wrong)
    for (method, path), codes in EXPECTED.items():
        listed = {int(c) for c in document["paths"][path][method.lower()]["responses"]}
        assert codes <= listed, f"{method} {path} lacks {sorted(codes - listed)}"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:9/none",  # never connected: the lifespan does not run
        data_dir=Path(tmp_path_factory.mktemp("data")),
        check_code_secret="unit-test-secret-0123456789",
    )
    return dict(create_app(settings).openapi_schema.to_schema())


def test_every_error_an_operation_lists_is_problem_json(document: dict[str, Any]) -> None:
    assert_errors_are_problems(document)


def test_the_postal_events_body_is_documented(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/postal/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    event = body["properties"]["events"]["items"]
    assert body["properties"]["events"]["maxItems"] == 1000
    assert set(event["required"]) == {"event_id", "tracking_number", "status", "occurred_at", "location"}
    assert "delivered" in event["properties"]["status"]["enum"]


def test_keyed_routes_document_401_and_public_ones_do_not(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        if op.get("security"):
            assert "401" in op["responses"], f"{method} {path}"
        elif path.startswith("/v1/verifications"):
            assert "401" not in op["responses"]
