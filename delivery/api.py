"""The postal operator API (API.md "Postal operator API") and the issuer's `GET /v1/invoices/{id}/delivery`.

Operator keys work only here and issuer keys never do (401); an operator sees only its own manifests,
orders and labels (404 otherwise)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Response, Stream

from delivery import events, export, labels, model, services
from delivery import repository as repo
from delivery.s10 import parse_tracking_number
from invoicing import formats, repository, sms_outbox
from invoicing.errors import FieldError, NotFound, ValidationFailed
from invoicing.formats import rfc3339
from invoicing.http import BEARER, Authenticator, decode, decode_cursor, encode_cursor, provide_issuer, provide_operator
from invoicing.queue import Queue
from invoicing.replicas import Reads
from invoicing.repository import Issuer
from invoicing.webhook_sender import Nudge

MAX_EVENTS = 1000
EVENTS_MAX_BYTES = 4 * 1024 * 1024
MEDIA = {"json": "application/json", "csv": "text/csv", "pdf": "application/pdf"}


class Rejected(msgspec.Struct):
    """One refused event of a batch: its place in `events` and why."""

    index: int
    reason: str


class EventsOut(msgspec.Struct):
    """The answer of `POST /v1/postal/events`."""

    accepted: int
    duplicates: int
    rejected: list[Rejected]


class EventsIn(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/postal/events`: the events, each checked on its own (`model.validate_event`)."""

    events: list[Any]  # each event is checked on its own (model.validate_event), so one bad one refuses only itself


def _text(limit: int, description: str) -> Schema:
    return Schema(type=OpenAPIType.STRING, max_length=limit, description=description)


# The body as the OpenAPI document shows it. The handler decodes each event on its own (a bad event is rejected
# in the answer, the others applied), so litestar cannot decode the body for it; this says what an event is.
EVENT_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["event_id", "tracking_number", "status", "occurred_at", "location"],
    additional_properties=False,
    properties={
        "event_id": _text(model.EVENT_ID_MAX, "The operator's id of the scan; a repeated id is a duplicate."),
        "tracking_number": Schema(
            type=OpenAPIType.STRING, description="The order's S10 tracking number (e.g. `RR123456785CN`)."
        ),
        "status": Schema(type=OpenAPIType.STRING, enum=list(model.EVENT_STATUSES)),
        "occurred_at": Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE_TIME,
            description="RFC 3339 with an offset, from 2000-01-01 to at most 5 minutes from now.",
        ),
        "location": _text(model.TEXT_MAX["location"], "Where the scan happened."),
        "note": Schema(one_of=[_text(model.TEXT_MAX["note"], "A remark."), Schema(type=OpenAPIType.NULL)]),
        "signed_by": Schema(
            one_of=[
                _text(model.TEXT_MAX["signed_by"], "Who signed for it: on a `delivered` event only."),
                Schema(type=OpenAPIType.NULL),
            ]
        ),
    },
)
EVENTS_BODY = RequestBody(
    required=True,
    content={
        "application/json": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["events"],
                additional_properties=False,
                properties={
                    "events": Schema(type=OpenAPIType.ARRAY, items=EVENT_SCHEMA, min_items=1, max_items=MAX_EVENTS)
                },
            )
        )
    },
)
EVENTS_ANSWER = ResponseSpec(
    EventsOut, description="How many were accepted, how many were duplicates, and each rejected event's reason."
)


@dataclass
class EventsOperation(Operation):
    """`POST /v1/postal/events` in the OpenAPI document, with its body (`EVENTS_BODY`)."""

    def __post_init__(self) -> None:
        self.request_body = EVENTS_BODY


@dataclass(frozen=True)
class PostalApi:
    """What the postal routes use, provided by the composition root as `postal_api`."""

    pool: asyncpg.Pool
    queue: Queue
    public_base_url: str
    auth: Authenticator
    reads: Reads  # manifest exports read a replica that has caught up with the primary, if any
    hooks: Nudge | None = None  # the issuers' webhook fan-out, nudged after tracking events moved an order


def _manifest_json(row: Any) -> dict[str, Any]:
    item = export.header(row)
    item["created_at"] = rfc3339(row["created_at"])
    item["closed_at"] = rfc3339(row["closed_at"]) if row["closed_at"] else None
    return item


@dataclass
class ManifestOperation(Operation):
    """`GET /v1/postal/manifests/{id}` in the OpenAPI document: one answer in the three formats `format` picks."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("200")
        if isinstance(answer, OpenAPIResponse):
            answer.content = {media.split(";")[0]: OpenAPIMediaType(schema=Schema()) for media in MEDIA.values()}


class PostalController(Controller):
    """The postal operator's routes: manifests, labels and tracking events, for its own orders only."""

    path = "/v1/postal"
    tags = ["postal"]  # noqa: RUF012 - litestar reads these class attributes
    dependencies = {"operator_id": Provide(provide_operator)}  # noqa: RUF012
    security = BEARER

    @get("/manifests", description="This operator's manifests, newest first, in cursor pages.")
    async def list_manifests(
        self,
        postal_api: NamedDependency[PostalApi],
        operator_id: NamedDependency[str],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
        status: FromQuery[Literal["open", "closed"] | None] = None,
    ) -> dict[str, Any]:
        """This operator's manifests, newest first, in cursor pages."""
        async with postal_api.pool.acquire() as conn:
            rows = await repo.list_manifests(conn, operator_id, status, decode_cursor(cursor, "m"), limit)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [_manifest_json(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1]["seq"], "m") if more else None,
        }

    @get(
        "/manifests/{manifest_id:str}",
        description="One manifest as `json` (default), `csv` (FORMATS.md) or a printable `pdf`; streamed.",
        operation_class=ManifestOperation,
    )
    async def get_manifest(
        self,
        postal_api: NamedDependency[PostalApi],
        operator_id: NamedDependency[str],
        manifest_id: FromPath[str],
        format: FromQuery[Literal["json", "csv", "pdf"]] = "json",
    ) -> Stream:
        """One manifest, streamed as JSON, CSV or a printable PDF."""
        async with postal_api.pool.acquire() as conn:
            row = await services.get_manifest(conn, operator_id, manifest_id)
        name = f"manifest-{row['manifest_number']}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        pool = await postal_api.reads.caught_up_pool()  # every item committed before this request is there
        if format == "csv":
            body = export.csv_stream(pool, row)
        elif format == "pdf":
            body = export.file_stream(await export.pdf_file(pool, row))
        else:
            body = export.json_stream(pool, row)
        return Stream(body, media_type=MEDIA[format], headers=headers)

    @post(
        "/manifests/{manifest_id:str}/close",
        status_code=200,
        description="Hand the manifest over: frozen, its orders dispatched; 409 when already closed.",
    )
    async def close(
        self, postal_api: NamedDependency[PostalApi], operator_id: NamedDependency[str], manifest_id: FromPath[str]
    ) -> dict[str, Any]:
        """Close the open manifest: frozen, its orders dispatched."""
        async with postal_api.pool.acquire() as conn:
            row = await services.close_manifest(conn, operator_id, manifest_id)
        return _manifest_json(row)

    @get(
        "/labels/{tracking_number:str}",
        media_type="application/pdf",
        description="The 100 x 150 mm address label with the tracking barcode.",
    )
    async def label(
        self, postal_api: NamedDependency[PostalApi], operator_id: NamedDependency[str], tracking_number: FromPath[str]
    ) -> Response[bytes]:
        """The address label of one of this operator's orders."""
        number = parse_tracking_number(tracking_number)
        async with postal_api.pool.acquire() as conn:
            row = await repo.label_row(conn, str(number), operator_id) if number else None
            invoice = (
                await repository.get_invoice_row(conn, str(row["issuer_id"]), str(row["invoice_id"])) if row else None
            )
        if row is None or invoice is None:
            raise NotFound(f"no delivery order {tracking_number} for this operator")
        url = formats.verify_url(postal_api.public_base_url, repository.to_invoice(invoice))
        data = labels.LabelData(
            row["tracking_number"],
            labels.address_from(row["address"]),
            row["phone"],
            row["invoice_code"],
            row["invoice_number"],
            row["issuer_name"],
            row["issuer_address"],
            row["issuer_phone"],
            row["operator_name"],
            url,
        )
        body = await asyncio.to_thread(labels.render_label, data)
        disposition = f'inline; filename="label-{row["tracking_number"]}.pdf"'
        return Response(body, media_type="application/pdf", headers={"Content-Disposition": disposition})

    @post(
        "/events",
        status_code=200,
        request_max_body_size=EVENTS_MAX_BYTES,
        description="Up to 1000 tracking events; each is accepted, a duplicate, or rejected with its reason.",
        operation_class=EventsOperation,
        responses={200: EVENTS_ANSWER},
    )
    async def post_events(
        self, request: Request[Any, Any, Any], postal_api: NamedDependency[PostalApi], operator_id: NamedDependency[str]
    ) -> dict[str, Any]:
        """Apply a batch of tracking events; each is accepted, a duplicate or rejected with its reason."""
        payload = decode(await request.body(), EventsIn)
        if not 1 <= len(payload.events) <= MAX_EVENTS:
            raise ValidationFailed(errors=[FieldError("events", f"send 1 to {MAX_EVENTS} events")])
        async with postal_api.pool.acquire() as conn:
            result = await events.ingest(conn, operator_id, payload.events)
        await sms_outbox.nudge(postal_api.queue, result.sms_ids)
        if postal_api.hooks is not None:
            await postal_api.hooks.after_commit(result.issuer_ids)
        return result.as_json()


def _delivery_json(found: dict[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return str(value)
        return rfc3339(value) if hasattr(value, "astimezone") else value

    out = {k: text(v) for k, v in found.items() if k != "events"}
    out["events"] = [{k: text(v) for k, v in e.items()} for e in found["events"]]
    return out


@get(
    "/v1/invoices/{invoice_id:str}/delivery",
    dependencies={"issuer": Provide(provide_issuer)},
    tags=["invoices"],
    security=BEARER,
)
async def invoice_delivery(
    postal_api: NamedDependency[PostalApi], issuer: NamedDependency[Issuer], invoice_id: FromPath[str]
) -> dict[str, Any]:
    """The postal delivery order of this issuer's invoice: status, tracking number, events (404 for electronic)."""
    async with postal_api.pool.acquire() as conn:
        found = await events.delivery_of(conn, issuer.id, invoice_id)
    return _delivery_json(found)
