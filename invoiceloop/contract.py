"""The error half of the OpenAPI contract, in one place: every refusal the service can give (problems.py) is
documented on the operations where it can occur, as application/problem+json with the one `Problem` schema.

Which operation can answer which status follows from the kind of route (one rule per status, `RULES`): a route
that takes a key can answer 401, one that reads a JSON or multipart body 413, 415 and 422, one with a path parameter 404, and
so on; the few routes with refusals of their own are named. `document_errors` applies the rules to the app's
OpenAPI document once, when the app is made, so a new route gets its errors documented without a line of its
own. Schemathesis (tests/e2e/test_contract.py) checks the result against a running server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litestar import Litestar
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)

from invoiceloop.problems import PROBLEM

PROBLEM_SCHEMA_NAME = "Problem"
PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="RFC 9457 problem details: every refusal of the service (except /readyz's own answer and the "
    "HTML verification page).",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="https://invoiceloop.dev/problems/<kind>"),
        "title": Schema(type=OpenAPIType.STRING, description="The kind of refusal, the same for every instance."),
        "status": Schema(type=OpenAPIType.INTEGER, description="The HTTP status code."),
        "detail": Schema(type=OpenAPIType.STRING, description="What was wrong with this request."),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            description="400 and 422: each field at fault, by its path in the body (`lines[2].quantity`) or the "
            "parameter's name.",
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["field", "message"],
                properties={
                    "field": Schema(type=OpenAPIType.STRING),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
        "retry_after": Schema(
            type=OpenAPIType.INTEGER, description="429 and 503: seconds to wait (also the Retry-After header)."
        ),
        "challenge": Schema(
            type=OpenAPIType.OBJECT, description="428: the ALTCHA proof-of-work challenge to solve and send back."
        ),
    },
)
RETRY_AFTER = OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER), description="Seconds to wait before trying again.")

# Routes whose refusals are their own, besides what their kind implies.
NOT_FOUND_WITHOUT_PARAMETERS = {  # the log has no checkpoint yet, or the server does not publish the key
    ("GET", "/v1/log/checkpoint"),
    ("GET", "/v1/log/key"),
    ("GET", "/v1/log/proof/inclusion"),
    ("GET", "/v1/log/proof/consistency"),
}
CONFLICTS = {  # a state that forbids the change (issuing: an idempotent retry still in flight, the series cap)
    ("POST", "/v1/invoices"),
    ("POST", "/v1/invoices/batch"),
    ("POST", "/v1/invoices/{invoice_id}/void"),
    ("POST", "/v1/invoices/{invoice_id}/credit-notes"),
    ("POST", "/v1/postal/manifests/{manifest_id}/close"),
    ("POST", "/v1/webhooks"),  # the issuer has as many endpoints as it may
    ("POST", "/v1/lottery/entries"),  # the invoice was registered already
}
FORBIDDEN = {("POST", "/v1/sms/inbound"), ("GET", "/metrics")}  # a wrong Twilio signature; a peer not let in
TOKEN_GUARDED = {("GET", "/metrics")}  # METRICS_TOKEN as a bearer, when it is set
GUARDED_BY_LIMITS = {  # the public verification's rate limit and challenge
    ("POST", "/v1/verifications"),
    ("POST", "/v1/verifications/batch"),  # 428: its `altcha` does not prove; 429: not one item got past the rate
    ("POST", "/v1/verifications/scan"),
    ("POST", "/v1/lottery/entries"),  # it verifies the invoice; 429 also for a phone's 10 entries a day
}
RATE_LIMITED = GUARDED_BY_LIMITS | {("GET", "/d/{token}")}  # the download link: the rate, no challenge
GONE = {("GET", "/d/{token}")}  # a download link whose time is up
NEVER_FAILS = {("GET", "/healthz")}  # answers without touching anything
NO_BACKEND = {("GET", "/metrics")}  # this process's own counters


@dataclass(frozen=True)
class Route:
    """One operation of the document, as the rules see it."""

    method: str
    path: str
    operation: Operation

    @property
    def key(self) -> tuple[str, str]:
        """(METHOD, path) as the tables above name it."""
        return self.method, self.path

    @property
    def keyed(self) -> bool:
        """It takes an issuer or an operator key."""
        return bool(self.operation.security)

    @property
    def json_body(self) -> bool:
        """It reads a JSON body."""
        body = self.operation.request_body
        return body is not None and not isinstance(body, Reference) and "application/json" in body.content

    @property
    def multipart_body(self) -> bool:
        """It reads a multipart/form-data body (an upload): its fields are checked like a JSON body's."""
        body = self.operation.request_body
        return body is not None and not isinstance(body, Reference) and "multipart/form-data" in body.content

    @property
    def parameters(self) -> list[Parameter]:
        """Its documented path, query and header parameters."""
        return [p for p in self.operation.parameters or [] if isinstance(p, Parameter)]

    @property
    def reads_body(self) -> bool:
        """It reads a request body of some kind (JSON, a form)."""
        return self.method in ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class Rule:
    """A status, the routes that can answer it, and what it means there."""

    status: int
    applies: Callable[[Route], bool]
    description: str
    retry_after: bool = False


RULES: tuple[Rule, ...] = (
    Rule(
        400,
        lambda r: r.json_body or r.multipart_body or bool(r.parameters),
        "Malformed JSON or multipart body, or a query or path parameter of the wrong form (`errors` names it).",
    ),
    Rule(
        401,
        lambda r: r.keyed or r.key in TOKEN_GUARDED,
        "No key, or not a valid key of the kind this route takes.",
    ),
    Rule(403, lambda r: r.key in FORBIDDEN, "Refused: the request is not signed by, or not from, who may send it."),
    Rule(
        404,
        lambda r: any(p.param_in == "path" for p in r.parameters) or r.key in NOT_FOUND_WITHOUT_PARAMETERS,
        "Nothing of this caller's by that name (another tenant's records are not found either).",
    ),
    Rule(409, lambda r: r.key in CONFLICTS, "The record's state forbids this (`detail` says why)."),
    Rule(410, lambda r: r.key in GONE, "The link has expired; verify the invoice on /verify or ask the seller."),
    Rule(413, lambda r: r.reads_body, "The body is larger than this route accepts."),
    Rule(415, lambda r: r.reads_body, "The body's Content-Type is not the one this route reads."),
    Rule(
        422,
        lambda r: r.json_body or r.multipart_body,
        "The body is well-formed JSON or multipart but invalid (an upload: unreadable, too many pixels or pages, "
        "no invoice QR code): `errors` names each field at fault by its path.",
    ),
    Rule(
        428,
        lambda r: r.key in GUARDED_BY_LIMITS,
        "Many wrong answers for this invoice: solve `challenge` (ALTCHA) and send the solution with the request.",
    ),
    Rule(429, lambda r: r.key in RATE_LIMITED, "Over the rate limit; see Retry-After.", retry_after=True),
    Rule(500, lambda r: r.key not in NEVER_FAILS, "An unexpected error (a bug); it has been logged."),
    Rule(
        503,
        lambda r: r.key not in NEVER_FAILS | NO_BACKEND,
        "PostgreSQL or Redis cannot be reached just now; send the same request again after Retry-After.",
        retry_after=True,
    ),
)


def problem_response(rule: Rule) -> OpenAPIResponse:
    """The documented answer of one rule: problem+json with the shared schema."""
    schema = Reference(ref=f"#/components/schemas/{PROBLEM_SCHEMA_NAME}")
    return OpenAPIResponse(
        description=rule.description,
        content={PROBLEM: OpenAPIMediaType(schema=schema)},
        headers={"Retry-After": RETRY_AFTER} if rule.retry_after else None,
    )


def routes(document: OpenAPI) -> list[Route]:
    """Every operation of the document."""
    found: list[Route] = []
    for path, item in (document.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if isinstance(operation, Operation):
                found.append(Route(method.upper(), path, operation))
    return found


def document_errors(document: OpenAPI) -> OpenAPI:
    """Add the Problem schema and, to each operation, the problem+json answer of every status its kind of route can
    give. A status the route documents itself with another body (`/readyz`'s 503) is left as it is; litestar's own
    400 (application/json) is replaced: the service answers it as a problem."""
    components = document.components
    components.schemas = {**(components.schemas or {}), PROBLEM_SCHEMA_NAME: PROBLEM_SCHEMA}
    for route in routes(document):
        responses = route.operation.responses = dict(route.operation.responses or {})
        for rule in RULES:
            if not rule.applies(route):
                continue
            code = str(rule.status)
            if code in responses and not _litestar_default(responses[code]):
                continue
            responses[code] = problem_response(rule)
    return document


def _litestar_default(answer: OpenAPIResponse | Reference) -> bool:
    """litestar's own error answer (`{status_code, detail, extra}` as application/json, from a handler's `raises`
    or its parameters), which the service never sends: every error goes through problems.py."""
    if not isinstance(answer, OpenAPIResponse):
        return False
    shapes = [m.schema for m in (answer.content or {}).values()]
    shapes += [s for shape in shapes if isinstance(shape, Schema) for s in shape.one_of or []]
    return any(isinstance(s, Schema) and "status_code" in (s.properties or {}) for s in shapes)


def attach(app: Litestar) -> Litestar:
    """Document the app's errors in the OpenAPI document it serves (built now, once; litestar serves this object)."""
    document_errors(app.openapi_schema)
    return app
