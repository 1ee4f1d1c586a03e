"""The issuer API (API.md "Issuer API"): litestar handlers and msgspec request structs, mapping
to and from the model. Bodies are decoded here so every refusal names its field."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response
from prometheus_client import Counter

from invoicing import formats, repository, services, validation
from invoicing.errors import DomainError, FieldError, FieldErrors, Unauthorized, ValidationFailed
from invoicing.model import Invoice, Line, money_str, plain_str
from invoicing.pdf import render_invoice_pdf
from invoicing.repository import Issuer

SINGLE_MAX_BYTES = 512 * 1024
BATCH_MAX_BYTES = 16 * 1024 * 1024
MAX_BATCH = 1000


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class AddressIn(Strict):
    recipient: str
    line1: str
    city: str
    province: str
    postal_code: str
    country: str = "CN"
    line2: str = ""


class BuyerIn(Strict):
    name: str
    tax_id: str | None = None
    phone: str | None = None
    email: str | None = None
    address: AddressIn | None = None


class LineIn(Strict):
    description: str
    quantity: str
    unit_price: str
    tax_rate: str
    unit: str = ""


class InvoiceIn(Strict):
    buyer: BuyerIn
    lines: list[LineIn]
    delivery: Literal["electronic", "postal"] = "electronic"
    series: str = "default"
    remarks: str = ""


class BatchIn(Strict):
    invoices: list[InvoiceIn]


class VoidIn(Strict):
    reason: str


class CreditLineIn(Strict):
    line_no: int
    quantity: str | None = None


class CreditIn(Strict):
    reason: str
    lines: list[CreditLineIn] | None = None


T = TypeVar("T")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_DECIMAL_FIELDS = ("quantity", "unit_price", "tax_rate")


class MalformedBody(DomainError):
    status = 400
    title = "Malformed JSON"
    type_slug = "malformed-json"


def body_field_error(path: str, message: str) -> FieldError:
    """A msgspec decoding error (`path` like `lines[0]`, message like "Object contains unknown field
    `x`") as the field path and plain words the API promises (`lines[0].x`: "unknown field")."""
    path = "" if path in ("data", "$") else path.lstrip("$").lstrip(".")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        path, message = ".".join(p for p in (path, unknown[1]) if p), "unknown field"
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        path, message = ".".join(p for p in (path, missing[1]) if p), "is required"
    if path.split(".")[-1] in _DECIMAL_FIELDS and "got `" in message:
        message = 'must be a decimal string such as "2.50", not a JSON number'
    return FieldError(path or "(body)", message)


def decode(body: bytes, kind: type[T]) -> T:
    """Decode a JSON body strictly: malformed JSON is a 400; wrong types or unknown fields a 422
    whose `errors` names the field path (`lines[2].quantity`)."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        raise ValidationFailed(errors=[body_field_error(match["path"] or "", match["msg"])]) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None


def request_hash(endpoint: str, payload: Any) -> str:
    """A digest of the decoded request (whitespace and key order do not matter), for Idempotency-Key."""
    return hashlib.sha256(
        endpoint.encode() + b"\0" + msgspec.json.encode(msgspec.to_builtins(payload), order="sorted")
    ).hexdigest()


# ---------------------------------------------------------------- responses


def _line_json(line: Line) -> dict[str, Any]:
    item: dict[str, Any] = {
        "description": line.description,
        "unit": line.unit,
        "quantity": plain_str(line.quantity),
        "unit_price": plain_str(line.unit_price, 2),
        "tax_rate": plain_str(line.tax_rate),
        "amount": money_str(line.amount),
        "tax_amount": money_str(line.tax_amount),
    }
    if line.original_line is not None:
        item["original_line"] = line.original_line
    return item


def invoice_json(inv: Invoice, base_url: str) -> dict[str, Any]:
    """The Invoice of API.md: every request field normalised, the figures, identity and proofs."""
    return {
        "id": inv.id,
        "kind": inv.kind,
        "series": inv.series,
        "invoice_code": inv.invoice_code,
        "invoice_number": inv.invoice_number,
        "issue_date": inv.issue_date.isoformat(),
        "issued_at": formats.rfc3339(inv.issued_at),
        "status": inv.status,
        "seller": formats.seller_content(inv.seller),
        "buyer": formats.buyer_content(inv.buyer),
        "currency": inv.currency,
        "lines": [_line_json(line) for line in inv.lines],
        "total_amount": money_str(inv.totals.total_amount),
        "total_tax": money_str(inv.totals.total_tax),
        "total": money_str(inv.totals.total),
        "total_in_words": inv.total_in_words,
        "check_code": inv.check_code,
        "record_hash": inv.record_hash,
        "prev_hash": inv.prev_hash,
        "signature": inv.signature,
        "key_id": inv.key_id,
        "verify_url": formats.verify_url(base_url, inv),
        "pdf_url": f"{base_url}/v1/invoices/{inv.id}/pdf",
        "delivery": {
            "method": inv.delivery_method,
            "status": inv.delivery_status,
            "tracking_number": inv.tracking_number,
        },
        "remarks": inv.remarks,
        "original_invoice_id": inv.original_invoice_id,
        "original_invoice_code": inv.original_invoice_code,
        "original_invoice_number": inv.original_invoice_number,
        "voided_at": formats.rfc3339(inv.voided_at) if inv.voided_at else None,
        "void_reason": inv.void_reason,
    }


def encode_cursor(seq: int, tag: str = "s") -> str:
    """An opaque list cursor: the last row's sequence number, tagged by list kind."""
    return base64.urlsafe_b64encode(f"{tag}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, tag: str = "s") -> int | None:
    """The sequence number in a cursor of this list kind; 422 naming `cursor` for anything else."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith(tag) and text[len(tag) :].isdigit():
            return int(text[len(tag) :])
    except (ValueError, UnicodeDecodeError):
        pass
    raise ValidationFailed(errors=[FieldError("cursor", "is not a cursor this API gave out")])


class PdfCache:
    """Rendered PDFs by record hash and status (what changes the document), bounded in bytes, so a
    repeated download does not render again. Rendering runs in a thread to keep the loop free."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.size = 0

    async def get(self, inv: Invoice, verify_url: str) -> bytes:
        key = (inv.record_hash, inv.status)
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        body = await asyncio.to_thread(render_invoice_pdf, inv, verify_url)
        self.entries[key] = body
        self.size += len(body)
        while self.size > self.max_bytes and self.entries:
            self.size -= len(self.entries.popitem(last=False)[1])
        return body


# ---------------------------------------------------------------- authentication


@dataclass
class KeyCache:
    """API keys checked against the database at most every `ttl_s` per key (revocation takes
    effect within that time); only key hashes are held."""

    ttl_s: float
    entries: dict[bytes, tuple[float, tuple[str, str] | None]]

    async def lookup(self, state: State, api_key: str) -> tuple[str, str] | None:
        import time

        digest = repository.key_hash(api_key)
        now = time.monotonic()
        hit = self.entries.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        async with state.pool.acquire() as conn:
            found = await repository.find_key(conn, api_key)
        if len(self.entries) > 10_000:
            self.entries.clear()
        self.entries[digest] = (now + self.ttl_s, found)
        return found


async def authenticate(request: Request[Any, Any, Any], kind: str) -> str:
    """The owner id of a valid bearer key of `kind`; 401 otherwise (a key of the other kind too)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    found = await request.app.state.key_cache.lookup(request.app.state, token.strip())
    if found is None or found[0] != kind:
        raise Unauthorized(f"the key is not a valid {kind} key")
    return str(found[1])


async def provide_issuer(request: Request[Any, Any, Any]) -> Issuer:
    issuer_id = await authenticate(request, "issuer")
    cache: dict[str, Issuer] = request.app.state.issuers
    if issuer_id not in cache:
        async with request.app.state.pool.acquire() as conn:
            issuer = await repository.get_issuer(conn, issuer_id)
        if issuer is None:
            raise Unauthorized("the key's issuer no longer exists")
        cache[issuer_id] = issuer
    return cache[issuer_id]


def _idempotency(request: Request[Any, Any, Any], endpoint: str, payload: Any) -> services.Idempotency | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ValidationFailed(errors=[FieldError("Idempotency-Key", "must be 1 to 255 characters")])
    return services.Idempotency(key, request_hash(endpoint, payload))


ISSUED = Counter("invoiceloop_records_issued_total", "Invoices and credit notes issued", ["kind"])


async def _nudge_fulfilment(state: State, issued: services.Issued) -> None:
    """After commit: ask the worker to fulfil the postal invoices' delivery orders. If Redis is
    down this is skipped; the worker's sweep finds pending orders anyway."""
    if not issued.replayed:
        for inv in issued.invoices:
            ISSUED.labels(inv.kind).inc()
    postal = [inv.id for inv in issued.invoices if inv.delivery_method == "postal" and inv.kind == "invoice"]
    if postal and not issued.replayed:
        await state.queue.enqueue("fulfil_orders", postal, job_id=f"fulfil:{postal[0]}")


def _issued_response(state: State, issued: services.Issued, *, batch: bool) -> Response[Any]:
    items = [invoice_json(inv, state.settings.public_base_url) for inv in issued.invoices]
    headers = {"Idempotent-Replayed": "true"} if issued.replayed else {}
    if not batch:
        headers["Location"] = f"/v1/invoices/{issued.invoices[0].id}"
    return Response({"invoices": items} if batch else items[0], status_code=201, headers=headers)


# The OpenAPI security requirement of the routes that take an issuer or operator key; the public routes
# (verification, SMS webhook, published keys, health, metrics) carry none.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


class InvoiceController(Controller):
    path = "/v1/invoices"
    tags = ["invoices"]  # noqa: RUF012 - litestar reads these class attributes
    dependencies = {"issuer": Provide(provide_issuer)}  # noqa: RUF012
    security = BEARER

    @post(
        "/",
        request_max_body_size=SINGLE_MAX_BYTES,
        status_code=201,
        description="Issue one invoice. `Idempotency-Key` makes retries safe.",
    )
    async def issue(
        self, request: Request[Any, Any, Any], state: State, issuer: NamedDependency[Issuer], data: JSONBody[InvoiceIn]
    ) -> Response[Any]:
        payload = data
        req = validation.invoice_request(msgspec.to_builtins(payload), state.settings.tax_rates)
        idem = _idempotency(request, "invoice", payload)
        async with state.pool.acquire() as conn:
            issued = await services.issue(conn, state.issuing, issuer, [services.draft_of(req)], idem)
        await _nudge_fulfilment(state, issued)
        return _issued_response(state, issued, batch=False)

    @post(
        "/batch",
        request_max_body_size=BATCH_MAX_BYTES,
        status_code=201,
        description="Issue 1 to 1000 invoices, all or nothing, numbered in the order given.",
    )
    async def issue_batch(
        self, request: Request[Any, Any, Any], state: State, issuer: NamedDependency[Issuer], data: JSONBody[BatchIn]
    ) -> Response[Any]:
        payload = data
        if not 1 <= len(payload.invoices) <= MAX_BATCH:
            raise ValidationFailed(errors=[FieldError("invoices", f"send 1 to {MAX_BATCH} invoices")])
        drafts: list[services.Draft] = []
        errors: list[FieldError] = []
        for i, item in enumerate(payload.invoices):
            try:
                req = validation.invoice_request(msgspec.to_builtins(item), state.settings.tax_rates)
                drafts.append(services.draft_of(req))
            except ValidationFailed as exc:
                errors.extend(FieldError(f"invoices[{i}].{e.field}", e.message) for e in exc.errors)
        if errors:
            raise ValidationFailed(errors=errors)
        idem = _idempotency(request, "batch", payload)
        async with state.pool.acquire() as conn:
            issued = await services.issue(conn, state.issuing, issuer, drafts, idem)
        await _nudge_fulfilment(state, issued)
        return _issued_response(state, issued, batch=True)

    @get("/{invoice_id:str}")
    async def get_one(self, state: State, issuer: NamedDependency[Issuer], invoice_id: FromPath[str]) -> dict[str, Any]:
        async with state.pool.acquire() as conn:
            inv = await services.get_invoice(conn, issuer.id, invoice_id)
        return invoice_json(inv, state.settings.public_base_url)

    @get(
        "/{invoice_id:str}/pdf",
        media_type="application/pdf",
        description="The invoice as PDF; `ETag` from the record hash and status, `If-None-Match` answers 304.",
    )
    async def pdf(
        self, request: Request[Any, Any, Any], state: State, issuer: NamedDependency[Issuer], invoice_id: FromPath[str]
    ) -> Response[Any]:
        async with state.pool.acquire() as conn:
            inv = await services.get_invoice(conn, issuer.id, invoice_id)
        etag = f'"{hashlib.sha256(f"{inv.record_hash}|{inv.status}".encode()).hexdigest()[:32]}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(b"", status_code=304, headers=headers)
        body = await state.pdf_cache.get(inv, formats.verify_url(state.settings.public_base_url, inv))
        headers["Content-Disposition"] = f'inline; filename="invoice-{inv.invoice_code}-{inv.invoice_number}.pdf"'
        return Response(body, media_type="application/pdf", headers=headers)

    @get("/", description="This issuer's invoices, newest first, in cursor pages.")
    async def list_all(
        self,
        state: State,
        issuer: NamedDependency[Issuer],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
        status: FromQuery[Literal["issued", "voided", "partially_credited", "reversed"] | None] = None,
        issued_from: FromQuery[date | None] = None,
        issued_to: FromQuery[date | None] = None,
        invoice_number: FromQuery[str | None] = None,
        invoice_code: FromQuery[str | None] = None,
        kind: FromQuery[Literal["invoice", "credit_note"] | None] = None,
    ) -> dict[str, Any]:
        filt = repository.ListFilter(status, issued_from, issued_to, invoice_number, invoice_code, kind)
        async with state.pool.acquire() as conn:
            rows = await repository.list_invoices(conn, issuer.id, filt, decode_cursor(cursor), limit)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [invoice_json(repository.to_invoice(r), state.settings.public_base_url) for r in rows]
        return {"items": items, "next_cursor": encode_cursor(rows[-1]["seq"]) if more else None}

    @post(
        "/{invoice_id:str}/void",
        request_max_body_size=64 * 1024,
        status_code=200,
        description="Void an invoice of this month that nobody verified and the post has not taken (409 otherwise).",
    )
    async def void(
        self, state: State, issuer: NamedDependency[Issuer], invoice_id: FromPath[str], data: JSONBody[VoidIn]
    ) -> dict[str, Any]:
        payload = data
        errors = FieldErrors()
        reason = validation.text({"reason": payload.reason}, "reason", "reason", errors)
        errors.raise_if_any()
        async with state.pool.acquire() as conn:
            inv = await services.void(conn, state.issuing, issuer, invoice_id, reason)
        return invoice_json(inv, state.settings.public_base_url)

    @post(
        "/{invoice_id:str}/credit-notes",
        request_max_body_size=SINGLE_MAX_BYTES,
        status_code=201,
        description="A red-letter credit note: all of the invoice (omit `lines`) or `[{line_no, quantity}]`.",
    )
    async def credit(
        self,
        request: Request[Any, Any, Any],
        state: State,
        issuer: NamedDependency[Issuer],
        invoice_id: FromPath[str],
        data: JSONBody[CreditIn],
    ) -> Response[Any]:
        payload = data
        reason, wanted = validation.credit_request(msgspec.to_builtins(payload))
        idem = _idempotency(request, f"credit:{invoice_id}", payload)
        async with state.pool.acquire() as conn:
            issued = await services.credit(conn, state.issuing, issuer, invoice_id, reason, wanted, idem)
        await _nudge_fulfilment(state, issued)
        return _issued_response(state, issued, batch=False)


@get("/v1/stats", dependencies={"issuer": Provide(provide_issuer)}, tags=["invoices"], security=BEARER)
async def issuer_stats(state: State, issuer: NamedDependency[Issuer]) -> dict[str, Any]:
    """This issuer's figures by month."""
    async with state.pool.acquire() as conn:
        rows = await repository.stats(conn, issuer.id)
    return {"issuer_id": issuer.id, "months": [month_figures(r) for r in rows]}


def month_figures(row: Any) -> dict[str, Any]:
    """One month's figures: counts, amounts, and the closed-loop shares (verified, delivered)."""
    live, postal = row["live"], row["postal"]
    return {
        "month": row["month"],
        "invoices": row["invoices"],
        "credit_notes": row["credit_notes"],
        "voided": row["voided"],
        "amount": money_str(row["amount"]),
        "credited": money_str(row["credited"]),
        "verified": row["verified"],
        "verified_share": round(row["verified"] / live, 4) if live else 0.0,
        "mismatches": row["mismatches"],
        "postal": postal,
        "delivered": row["delivered"],
        "returned": row["returned"],
        "pending_without_operator": row["pending_without_operator"],
        "delivered_share": round(row["delivered"] / postal, 4) if postal else 0.0,
    }


@get("/.well-known/jwks.json", tags=["verification"])
async def jwks(state: State) -> dict[str, Any]:
    """Every Ed25519 public key ever used to sign, so old invoices stay checkable after a rotation."""
    from invoicing.keys import jwk

    async with state.pool.acquire() as conn:
        keys = await repository.signing_keys(conn)
    return {"keys": [jwk(kid, raw) for kid, raw in keys.items()]}


ROUTES = [InvoiceController, issuer_stats, jwks]
