"""The issuer's webhook endpoints (API.md "Issuers: webhooks"): create (the secret shown once), list, delete, rotate
the secret, and read the delivery log. Every query names the issuer: another tenant's endpoint answers 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from litestar import Controller, delete, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from invoicing import formats, validation, webhooks
from invoicing import webhook_repository as repo
from invoicing.errors import Conflict, FieldErrors, NotFound
from invoicing.http import BEARER, Strict, decode_cursor, encode_cursor, provide_issuer
from invoicing.repository import Issuer
from invoicing.webhook_sender import Nudge


@dataclass(frozen=True)
class WebhookApi:
    """What the webhook routes use (`webhook_api`); built at start-up."""

    pool: asyncpg.Pool
    allow_private: bool = False  # WEBHOOK_ALLOW_PRIVATE (tests): http:// and private addresses accepted
    nudge: Nudge | None = None  # told when an issuer's endpoints change


class EndpointIn(Strict):
    """`POST /v1/webhooks`."""

    url: str
    events: list[str]
    description: str = ""


def _check(data: EndpointIn, allow_private: bool) -> tuple[list[str], str]:
    """The endpoint's event types (deduplicated, in the order given) and description; 422 naming every field at
    fault."""
    errors = FieldErrors()
    why = webhooks.check_url(data.url, allow_private=allow_private)
    if why is not None:
        errors.add("url", why)
    if not data.events:
        errors.add("events", "name at least one event type: " + ", ".join(webhooks.EVENT_TYPES))
    for i, kind in enumerate(data.events):
        if kind not in webhooks.EVENT_TYPES:
            errors.add(f"events[{i}]", "not an event type; one of " + ", ".join(webhooks.EVENT_TYPES))
    description = validation.text(
        {"description": data.description}, "description", "description", errors, required=False
    )
    errors.raise_if_any()
    return list(dict.fromkeys(data.events)), description


def _stamp(value: datetime | None) -> str | None:
    return formats.rfc3339(value) if value is not None else None


def endpoint_json(row: Any, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it; the secret only when just made (create, rotate)."""
    answer: dict[str, Any] = {
        "id": str(row["id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "created_at": _stamp(row["created_at"]),
        "status": "disabled" if row["disabled_at"] else "enabled",
        "disabled_at": _stamp(row["disabled_at"]),
        "failing_since": _stamp(row["failing_since"]),
        "previous_secret_expires_at": _stamp(row["old_secret_until"]),
    }
    if secret is not None:
        answer["secret"] = secret
    return answer


def attempt_json(row: Any) -> dict[str, Any]:
    """One line of the delivery log."""
    return {
        "webhook_id": row["webhook_id"],
        "event": row["event_type"],
        "attempt": row["attempt"],
        "attempted_at": _stamp(row["attempted_at"]),
        "status_code": row["status_code"],
        "duration_ms": row["duration_ms"],
        "error": row["error"],
        "next_retry_at": _stamp(row["next_retry_at"]),
    }


def _endpoint_key(endpoint_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(endpoint_id)
    except ValueError:
        raise NotFound(f"no webhook endpoint {endpoint_id}") from None


class WebhookController(Controller):
    """This issuer's webhook endpoints and their delivery logs."""

    path = "/v1/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - litestar reads these class attributes
    dependencies = {"issuer": Provide(provide_issuer)}  # noqa: RUF012
    security = BEARER
    cache_control = CacheControlHeader(no_store=True)  # answers can carry a secret

    @post(
        "/",
        request_max_body_size=16 * 1024,
        status_code=201,
        description="A new endpoint: `url` (https), `events` it wants. The answer's `secret` is shown this once. 409 "
        "past 20 endpoints.",
    )
    async def create(
        self, webhook_api: NamedDependency[WebhookApi], issuer: NamedDependency[Issuer], data: JSONBody[EndpointIn]
    ) -> dict[str, Any]:
        """Create an endpoint."""
        events, description = _check(data, webhook_api.allow_private)
        secret = webhooks.new_secret()
        async with webhook_api.pool.acquire() as conn:
            row = await repo.insert_endpoint(
                conn, issuer.id, data.url, events, description, secret, webhooks.MAX_ENDPOINTS
            )
        if row is None:
            raise Conflict(f"at most {webhooks.MAX_ENDPOINTS} webhook endpoints per issuer: delete one first")
        if webhook_api.nudge is not None:
            webhook_api.nudge.forget(issuer.id)
        return endpoint_json(row, secret)

    @get("/", description="This issuer's endpoints, oldest first, in cursor pages (no secrets).")
    async def list_all(
        self,
        webhook_api: NamedDependency[WebhookApi],
        issuer: NamedDependency[Issuer],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """List endpoints."""
        async with webhook_api.pool.acquire() as conn:
            rows = await repo.list_endpoints(conn, issuer.id, decode_cursor(cursor, "w"), limit)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [endpoint_json(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1]["seq"], "w") if more else None,
        }

    @delete("/{endpoint_id:str}", status_code=204, description="Delete an endpoint, its messages and its log.")
    async def remove(
        self, webhook_api: NamedDependency[WebhookApi], issuer: NamedDependency[Issuer], endpoint_id: FromPath[str]
    ) -> None:
        """Delete an endpoint."""
        async with webhook_api.pool.acquire() as conn:
            found = await repo.delete_endpoint(conn, issuer.id, _endpoint_key(endpoint_id))
        if not found:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        if webhook_api.nudge is not None:
            webhook_api.nudge.forget(issuer.id)

    @post(
        "/{endpoint_id:str}/rotate-secret",
        status_code=200,
        description="A new secret, shown this once; the previous one keeps signing beside it for 24 hours.",
    )
    async def rotate(
        self, webhook_api: NamedDependency[WebhookApi], issuer: NamedDependency[Issuer], endpoint_id: FromPath[str]
    ) -> dict[str, Any]:
        """Rotate the endpoint's secret."""
        secret = webhooks.new_secret()
        async with webhook_api.pool.acquire() as conn:
            row = await repo.rotate_secret(
                conn, issuer.id, _endpoint_key(endpoint_id), secret, webhooks.ROTATION_OVERLAP_S
            )
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return endpoint_json(row, secret)

    @get(
        "/{endpoint_id:str}/deliveries",
        description="The endpoint's delivery log, newest first: each try's event, status code, duration, error and "
        "next retry, and a line when the endpoint was disabled.",
    )
    async def deliveries(
        self,
        webhook_api: NamedDependency[WebhookApi],
        issuer: NamedDependency[Issuer],
        endpoint_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """The delivery log."""
        key = _endpoint_key(endpoint_id)
        async with webhook_api.pool.acquire() as conn:
            endpoint = await repo.get_endpoint(conn, issuer.id, key)
            if endpoint is None:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            rows = await repo.list_attempts(conn, key, decode_cursor(cursor, "a"), limit)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "endpoint": endpoint_json(endpoint),
            "items": [attempt_json(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1]["id"], "a") if more else None,
        }
