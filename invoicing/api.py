"""The issuer API (API.md "Issuer API"): litestar handlers over the issuing services. Bodies are decoded by
msgspec (`invoicing.schemas`), so every refusal names its field; answers are built there too."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from cachetools import LRUCache
from litestar import Controller, Request, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response
from prometheus_client import Counter

from invoicing import formats, mail_outbox, numbering, repository, rollup_repository, services, sms_outbox, validation
from invoicing.batching import Coalescer
from invoicing.errors import FieldError, FieldErrors, ValidationFailed
from invoicing.http import BEARER, Authenticator, decode_cursor, encode_cursor, provide_issuer
from invoicing.model import DEFAULT_MAX_BATCH_LINES, Invoice, Kind
from invoicing.numbering import Issuing
from invoicing.pdf import render_invoice_pdf
from invoicing.queue import FULFIL_ORDERS, Queue
from invoicing.replicas import Reads
from invoicing.repository import Issuer
from invoicing.schemas import (
    BatchIn,
    CreditIn,
    InvoiceIn,
    VoidIn,
    invoice_json,
    month_figures,
    province_figures,
    request_hash,
)
from invoicing.webhook_sender import Nudge

SINGLE_MAX_BYTES = 512 * 1024
BATCH_MAX_BYTES = 16 * 1024 * 1024
MAX_BATCH = 1000
ISSUED = Counter("invoiceloop_records_issued_total", "Invoices and credit notes issued", ["kind"])


class PdfCache:
    """Rendered PDFs by record hash and status (what changes the document), at most `max_bytes` in all, least
    recently used first out, so a repeated download does not render again. Rendering runs in a thread to
    keep the event loop free."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.entries: LRUCache[tuple[str, str], bytes] = LRUCache(maxsize=max_bytes, getsizeof=len)

    async def get(self, inv: Invoice, verify_url: str) -> bytes:
        """The PDF of `inv`, from the cache or rendered now."""
        key = (inv.record_hash, inv.status)
        body = self.entries.get(key)
        if body is None:
            body = await asyncio.to_thread(render_invoice_pdf, inv, verify_url)
            if len(body) <= self.entries.maxsize:
                self.entries[key] = body
        return body


@dataclass(frozen=True)
class IssuerApi:
    """What the issuer routes use; the composition root builds it at start-up and provides it as `issuer_api`."""

    pool: asyncpg.Pool
    issuing: Issuing
    queue: Queue
    public_base_url: str
    tax_rates: tuple[Decimal, ...]
    auth: Authenticator
    reads: Reads  # reads that may lag (the stats): a replica's, if any
    pdfs: PdfCache = field(default_factory=PdfCache)
    max_batch_lines: int = DEFAULT_MAX_BATCH_LINES
    hooks: Nudge | None = None  # the webhook fan-out's nudge after commit

    @functools.cached_property
    def groups(self) -> services.IssueGroups:
        """This process's single issues, grouped (made on first use, inside the event loop)."""
        return services.IssueGroups(self.pool, self.issuing)

    @functools.cached_property
    def nudges(self) -> Nudges:
        """This process's after-commit nudges (made on first use, inside the event loop)."""
        return Nudges(self.queue, self.hooks)


def _idempotency(request: Request[Any, Any, Any], endpoint: str, payload: Any) -> services.Idempotency | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ValidationFailed(errors=[FieldError("Idempotency-Key", "must be 1 to 255 characters")])
    return services.Idempotency(key, request_hash(endpoint, payload))


class Nudges:
    """After commit, ask the worker to mail and text the buyers and fulfil the postal invoices' delivery orders.
    The requests answered while one nudge is at Redis share the next (`Coalescer`): a busy process pays one
    enqueue of each kind per group of requests, not a few Redis round trips per request (docs/issuing.md). Never
    raises: if Redis is down the nudge is skipped, and the worker's sweeps find pending mails, texts and orders."""

    def __init__(self, queue: Queue, hooks: Nudge | None = None) -> None:
        self.queue, self.hooks = queue, hooks
        self.batches: Coalescer[services.Issued, None] = Coalescer(self._run, max_batch=1024)

    async def after_commit(self, issued: services.Issued) -> None:
        """Nudge the worker for what `issued` wrote (nothing for a replay), together with whatever else is being
        nudged now."""
        await self.batches.submit(issued)

    async def _run(self, batch: list[services.Issued]) -> list[None]:
        fresh = [inv for issued in batch if not issued.replayed for inv in issued.invoices]
        by_kind: dict[Kind, list[Invoice]] = {}
        for inv in fresh:
            by_kind.setdefault(inv.kind, []).append(inv)
        for kind, invoices in by_kind.items():
            ISSUED.labels(kind).inc(len(invoices))
            await mail_outbox.nudge(self.queue, kind, invoices)
            await sms_outbox.nudge_buyer(self.queue, kind, invoices)
        postal = [inv.id for inv in fresh if inv.delivery_method == "postal" and inv.kind == "invoice"]
        if postal:
            await self.queue.enqueue(FULFIL_ORDERS, postal, job_id=f"fulfil:{postal[0]}")
        if self.hooks is not None and fresh:
            await self.hooks.after_commit(list(dict.fromkeys(inv.issuer_id for inv in fresh)))
        return [None] * len(batch)


def _issued_response(
    api: IssuerApi, issued: services.Issued, *, batch: bool, items: list[dict[str, Any]] | None = None
) -> Response[Any]:
    if items is None:
        items = _invoices_json(api, issued)
    headers = {"Idempotent-Replayed": "true"} if issued.replayed else {}
    if not batch:
        headers["Location"] = f"/v1/invoices/{issued.invoices[0].id}"
    return Response({"invoices": items} if batch else items[0], status_code=201, headers=headers)


def _invoices_json(api: IssuerApi, issued: services.Issued) -> list[dict[str, Any]]:
    contents: list[dict[str, Any] | None] = [*issued.contents] if issued.contents else [None] * len(issued.invoices)
    return [invoice_json(inv, api.public_base_url, c) for inv, c in zip(issued.invoices, contents, strict=True)]


def _drafts_of(items: list[InvoiceIn], tax_rates: tuple[Decimal, ...]) -> list[numbering.Draft]:
    """The drafts of a batch's invoices, or every wrong field of all of them (`invoices[i].field`)."""
    drafts: list[numbering.Draft] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            req = validation.invoice_request(msgspec.to_builtins(item), tax_rates)
            drafts.append(numbering.draft_of(req))
        except ValidationFailed as exc:
            errors.extend(FieldError(f"invoices[{i}].{e.field}", e.message) for e in exc.errors)
    if errors:
        raise ValidationFailed(errors=errors)
    return drafts


class InvoiceController(Controller):
    """The issuer's invoices: issue, read, list, PDF, void and credit, for its own invoices only."""

    path = "/v1/invoices"
    tags = ["invoices"]  # noqa: RUF012 - litestar reads these class attributes
    dependencies = {"issuer": Provide(provide_issuer)}  # noqa: RUF012
    security = BEARER
    cache_control = CacheControlHeader(no_store=True)  # every answer carries the check code (JSON, PDF)

    @post(
        "/",
        request_max_body_size=SINGLE_MAX_BYTES,
        status_code=201,
        description="Issue one invoice. `Idempotency-Key` makes retries safe.",
    )
    async def issue(
        self,
        request: Request[Any, Any, Any],
        issuer_api: NamedDependency[IssuerApi],
        issuer: NamedDependency[Issuer],
        data: JSONBody[InvoiceIn],
    ) -> Response[Any]:
        """Issue one invoice."""
        req = validation.invoice_request(msgspec.to_builtins(data), issuer_api.tax_rates)
        idem = _idempotency(request, "invoice", data)
        issued = await issuer_api.groups.issue(issuer, numbering.draft_of(req), idem)
        await issuer_api.nudges.after_commit(issued)
        return _issued_response(issuer_api, issued, batch=False)

    @post(
        "/batch",
        request_max_body_size=BATCH_MAX_BYTES,
        status_code=201,
        description="Issue 1 to 1000 invoices, all or nothing, numbered in the order given.",
    )
    async def issue_batch(
        self,
        request: Request[Any, Any, Any],
        issuer_api: NamedDependency[IssuerApi],
        issuer: NamedDependency[Issuer],
        data: JSONBody[BatchIn],
    ) -> Response[Any]:
        """Issue 1 to 1000 invoices, all or nothing."""
        if not 1 <= len(data.invoices) <= MAX_BATCH:
            raise ValidationFailed(errors=[FieldError("invoices", f"send 1 to {MAX_BATCH} invoices")])
        lines = sum(len(item.lines) for item in data.invoices)
        if lines > issuer_api.max_batch_lines:
            why = f"at most {issuer_api.max_batch_lines} lines in one batch, this one has {lines}: split it"
            raise ValidationFailed(errors=[FieldError("invoices", why)])
        # The batch's CPU work (checking, sealing, the answer) runs in threads: the event loop stays free
        # for everyone else's requests meanwhile.
        drafts = await asyncio.to_thread(_drafts_of, data.invoices, issuer_api.tax_rates)
        idem = _idempotency(request, "batch", data)
        async with issuer_api.pool.acquire() as conn:
            issued = await services.issue(conn, issuer_api.issuing, issuer, drafts, idem)
        await issuer_api.nudges.after_commit(issued)
        items = await asyncio.to_thread(_invoices_json, issuer_api, issued)
        return _issued_response(issuer_api, issued, batch=True, items=items)

    @get("/{invoice_id:str}")
    async def get_one(
        self, issuer_api: NamedDependency[IssuerApi], issuer: NamedDependency[Issuer], invoice_id: FromPath[str]
    ) -> dict[str, Any]:
        """One of this issuer's invoices."""
        async with issuer_api.pool.acquire() as conn:
            inv = await services.get_invoice(conn, issuer.id, invoice_id)
        return invoice_json(inv, issuer_api.public_base_url)

    @get(
        "/{invoice_id:str}/pdf",
        media_type="application/pdf",
        description="The invoice as PDF; `ETag` from the record hash and status, `If-None-Match` answers 304.",
        responses={304: ResponseSpec(None, description="Not modified: the `If-None-Match` ETag is current.")},
    )
    async def pdf(
        self,
        request: Request[Any, Any, Any],
        issuer_api: NamedDependency[IssuerApi],
        issuer: NamedDependency[Issuer],
        invoice_id: FromPath[str],
    ) -> Response[Any]:
        """The invoice as PDF."""
        async with issuer_api.pool.acquire() as conn:
            inv = await services.get_invoice(conn, issuer.id, invoice_id)
        etag = f'"{hashlib.sha256(f"{inv.record_hash}|{inv.status}".encode()).hexdigest()[:32]}"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(b"", status_code=304, headers=headers)
        body = await issuer_api.pdfs.get(inv, formats.verify_url(issuer_api.public_base_url, inv))
        headers["Content-Disposition"] = f'inline; filename="invoice-{inv.invoice_code}-{inv.invoice_number}.pdf"'
        return Response(body, media_type="application/pdf", headers=headers)

    @get("/", description="This issuer's invoices, newest first, in cursor pages.")
    async def list_all(
        self,
        issuer_api: NamedDependency[IssuerApi],
        issuer: NamedDependency[Issuer],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
        status: FromQuery[Literal["issued", "voided", "partially_credited", "reversed"] | None] = None,
        issued_from: FromQuery[date | None] = None,
        issued_to: FromQuery[date | None] = None,
        invoice_number: Annotated[str | None, QueryParameter(pattern="^[0-9]{8}$")] = None,
        invoice_code: Annotated[str | None, QueryParameter(pattern="^[0-9]{12}$")] = None,
        kind: FromQuery[Literal["invoice", "credit_note"] | None] = None,
    ) -> dict[str, Any]:
        """This issuer's invoices, filtered, newest first."""
        filt = repository.ListFilter(status, issued_from, issued_to, invoice_number, invoice_code, kind)
        async with issuer_api.pool.acquire() as conn:
            rows = await repository.list_invoices(conn, issuer.id, filt, decode_cursor(cursor), limit)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [invoice_json(repository.to_invoice(r), issuer_api.public_base_url) for r in rows]
        return {"items": items, "next_cursor": encode_cursor(rows[-1]["seq"]) if more else None}

    @post(
        "/{invoice_id:str}/void",
        request_max_body_size=64 * 1024,
        status_code=200,
        description="Void an invoice of this month that nobody verified and the post has not taken (409 otherwise).",
    )
    async def void(
        self,
        issuer_api: NamedDependency[IssuerApi],
        issuer: NamedDependency[Issuer],
        invoice_id: FromPath[str],
        data: JSONBody[VoidIn],
    ) -> dict[str, Any]:
        """Void an invoice."""
        errors = FieldErrors()
        reason = validation.text({"reason": data.reason}, "reason", "reason", errors)
        errors.raise_if_any()
        async with issuer_api.pool.acquire() as conn:
            inv = await services.void(conn, issuer_api.issuing, issuer, invoice_id, reason)
        await mail_outbox.nudge(issuer_api.queue, "void", [inv])
        await sms_outbox.nudge_buyer(issuer_api.queue, "void", [inv])
        if issuer_api.hooks is not None:
            await issuer_api.hooks.after_commit([issuer.id])
        return invoice_json(inv, issuer_api.public_base_url)

    @post(
        "/{invoice_id:str}/credit-notes",
        request_max_body_size=SINGLE_MAX_BYTES,
        status_code=201,
        description="A red-letter credit note: all of the invoice (omit `lines`) or `[{line_no, quantity}]`.",
    )
    async def credit(
        self,
        request: Request[Any, Any, Any],
        issuer_api: NamedDependency[IssuerApi],
        issuer: NamedDependency[Issuer],
        invoice_id: FromPath[str],
        data: JSONBody[CreditIn],
    ) -> Response[Any]:
        """Issue a red-letter credit note against an invoice."""
        reason, wanted = validation.credit_request(msgspec.to_builtins(data))
        idem = _idempotency(request, f"credit:{invoice_id}", data)
        async with issuer_api.pool.acquire() as conn:
            issued = await services.credit(conn, issuer_api.issuing, issuer, invoice_id, reason, wanted, idem)
        await issuer_api.nudges.after_commit(issued)
        return _issued_response(issuer_api, issued, batch=False)


@get("/v1/stats", dependencies={"issuer": Provide(provide_issuer)}, tags=["invoices"], security=BEARER)
async def issuer_stats(
    issuer_api: NamedDependency[IssuerApi],
    issuer: NamedDependency[Issuer],
    by: Annotated[
        Literal["month", "province"],
        QueryParameter(description="`month` (the default): by month of issue; `province`: by the seller's province"),
    ] = "month",
) -> dict[str, Any]:
    """This issuer's own figures, from the closed-loop rollup: by month of issue (`months`), or by province
    (`?by=province`: `provinces`, each with its GB/T 2260 code and names)."""
    if by == "province":
        read = functools.partial(rollup_repository.by_province, issuer_id=issuer.id)
        rows = await issuer_api.reads.run(read)
        return {"issuer_id": issuer.id, "provinces": [province_figures(r) for r in rows]}
    months = await issuer_api.reads.run(functools.partial(repository.stats, issuer_id=issuer.id))
    return {"issuer_id": issuer.id, "months": [month_figures(r) for r in months]}
