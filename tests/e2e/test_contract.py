"""The contract, fuzzed (issue 12, item 18): Schemathesis reads the OpenAPI schema a real server serves and sends
what it describes (positive cases) and what it does not (negative cases) to every operation, with an issuer key on
the issuer routes and an operator key on the postal ones. Every answer must be documented: its status on that
operation, its media type and its body's schema; and none may be a 5xx. The same run also sends each operation
that names a record the records the fixture issued, so the success answers are checked too, not only the 404s.

Bounded to about a minute on a loaded 2-core machine: a fixed number of examples per operation and mode, no
deadline, no shrinking, no "slow data generation" health check. `-m contract` selects it; it is part of the
default suite. CONTRACT_MAX_EXAMPLES raises the count for a longer hunt."""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup

from delivery import services as delivery_services
from tests.conftest import ServerProcess, new_issuer
from tests.delivery_fixtures import new_operator, postal_body
from tests.unit.test_contract import assert_errors_are_problems

pytestmark = [pytest.mark.contract, pytest.mark.slow, pytest.mark.timeout(600)]

CHECKS = [
    getattr(checks, name)
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
]
PROVINCE = "65"
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "8"))
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, the time stays bounded
    suppress_health_check=list(HealthCheck),  # Schemathesis's strategies, not ours: only a failed check may fail
    database=None,  # each run explores afresh; a failure prints its example
    print_blob=False,
)


@pytest.fixture(scope="module")
async def contract_keys(server: ServerProcess, pool: Any) -> dict[str, str]:
    """An issuer key and an operator key (Xinjiang's: no other test of this module serves a province)."""
    _, issuer_key = await new_issuer(pool)
    _, operator_key = await new_operator(pool, [PROVINCE], "契约邮政")
    return {"issuer": issuer_key, "operator": operator_key}


@pytest.fixture(scope="module")
async def known(server: ServerProcess, pool: Any, contract_keys: dict[str, str]) -> dict[str, str]:
    """Real values for the path parameters: a postal invoice of the issuer, fulfilled (as the worker would) into
    the operator's open manifest, with its tracking number and record hash, and a webhook endpoint of the issuer."""
    issuer = {"Authorization": f"Bearer {contract_keys['issuer']}"}
    operator = {"Authorization": f"Bearer {contract_keys['operator']}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        issued = await http.post("/v1/invoices", json=postal_body(PROVINCE), headers=issuer)
        assert issued.status_code == 201, issued.text
        async with pool.acquire() as conn:
            assert await delivery_services.fulfil_all(conn, [issued.json()["id"]]) == 1
        invoice = (await http.get(f"/v1/invoices/{issued.json()['id']}", headers=issuer)).json()
        [manifest] = (await http.get("/v1/postal/manifests", headers=operator)).json()["items"]
        hook = {"url": "https://hooks.example.com/in", "events": ["invoice.issued"]}
        endpoint = await http.post("/v1/webhooks", json=hook, headers=issuer)
        assert endpoint.status_code == 201, endpoint.text
    return {
        "endpoint_id": endpoint.json()["id"],
        "invoice_id": invoice["id"],
        "manifest_id": manifest["id"],
        "tracking_number": invoice["delivery"]["tracking_number"],
        "record_hash": invoice["record_hash"],
    }


def auth_for(case: Any, keys: dict[str, str]) -> dict[str, str]:
    """The key the operation takes: an operator's on /v1/postal, an issuer's on the other keyed routes."""
    if not case.operation.definition.raw.get("security"):
        return {}
    key = keys["operator"] if case.operation.path.startswith("/v1/postal") else keys["issuer"]
    return {"Authorization": f"Bearer {key}"}


def fuzz(operation: Any, mode: GenerationMode, base_url: str, keys: dict[str, str], **fixed: Any) -> str | None:
    """Run one operation's examples of one mode; the first failure's report, or None."""

    @SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=auth_for(case, keys), checks=CHECKS, timeout=60)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # nothing to negate: no parameters, or strings of any form
        return None
    except (Exception, FailureGroup) as exc:  # a check's failure (or several): reported with the others at the end
        return f"{operation.label} ({mode.value}, {fixed or 'generated'}):\n{exc}"
    return None


def test_the_served_schema_documents_every_error_as_problem_json(server: ServerProcess) -> None:
    assert_errors_are_problems(httpx.get(f"{server.base_url}/schema/openapi.json", timeout=60).json())


def test_every_answer_is_documented(
    server: ServerProcess, contract_keys: dict[str, str], known: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/schema/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.append(fuzz(operation, mode, server.base_url, contract_keys) or "")
        names = set(re.findall(r"\{(\w+)\}", operation.path))
        if names and names <= known.keys():
            found = {name: known[name] for name in names}
            failures.append(
                fuzz(operation, GenerationMode.POSITIVE, server.base_url, contract_keys, path_parameters=found) or ""
            )
    failures = [f for f in failures if f]
    assert not failures, "\n\n".join(failures)
