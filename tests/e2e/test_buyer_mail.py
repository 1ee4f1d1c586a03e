"""The buyer receives the invoice (issue 14, item 1): the real service, the real arq worker in a subprocess and
a real SMTP server on a local port (`tests.mail_server`), read back and parsed. The module's tests share one
database, so each looks only at the mails of its own invoices (by Message-ID)."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import asyncpg
import pytest
from pypdf import PdfReader

from tests.conftest import ServerProcess, free_port
from tests.delivery_fixtures import wait_until
from tests.mail_server import MailServer
from tests.samples import invoice_body

SENDER = "invoices@invoiceloop.test"
LEASE_S = "10"  # a killed worker's mails are taken again after this


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer(free_port())
    server.start()
    yield server
    server.gate.set()
    server.stop()


def worker_env(mail: MailServer, server: ServerProcess) -> dict[str, str]:
    return {"SMTP_URL": mail.url, "SMTP_FROM": SENDER, "MAIL_LEASE_S": LEASE_S, "PUBLIC_BASE_URL": server.base_url}


def mail_id(kind: str, invoice_id: str) -> str:
    return f"<{kind}.{invoice_id}@invoiceloop.test>"


def mails_of(mail: MailServer, message_id: str) -> list[EmailMessage]:
    return [m for m in mail.received() if ident(m) == message_id]


def ident(message: EmailMessage) -> str:
    """The Message-ID, unfolded (a long one is folded onto a line of its own, which is legal)."""
    return str(message["Message-ID"]).strip()


async def arrived(mail: MailServer, message_id: str, timeout_s: float = 90) -> EmailMessage:
    async def check() -> list[EmailMessage]:
        return mails_of(mail, message_id)

    [message] = await wait_until(check, timeout_s)
    return message


async def issue(client: Any, email: str | None = "buyer@example.cn") -> dict[str, Any]:
    body = invoice_body()
    body["buyer"]["email"] = email
    resp = await client.post("/v1/invoices", json=body)
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def text_and_pdf(message: EmailMessage) -> tuple[str, str]:
    """The mail's text part and the text of its PDF attachment (which must open)."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    pdf = PdfReader(io.BytesIO(attachment.get_content()))
    return body.get_content(), "".join(page.extract_text() for page in pdf.pages)


async def test_issued_invoice_is_mailed_with_its_pdf_and_verify_link_then_its_void(
    issuer_client: Any, server: ServerProcess, mail_server: MailServer, start_worker: Any
) -> None:
    start_worker(**worker_env(mail_server, server))
    inv = await issue(issuer_client)
    message = await arrived(mail_server, mail_id("invoice", inv["id"]))
    assert message["To"].addresses[0].addr_spec == "buyer@example.cn"
    assert "电子发票" in message["Subject"] and "Electronic invoice" in message["Subject"]
    assert inv["invoice_number"] in message["Subject"]
    text, pdf_text = text_and_pdf(message)
    assert "您好" in text and "Dear" in text and "has issued you an electronic invoice" in text
    assert inv["verify_url"] in text  # the QR's own link, on this service
    assert inv["invoice_number"] in pdf_text and inv["invoice_code"] in pdf_text

    resp = await issuer_client.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "开错了"})
    assert resp.status_code == 200, resp.text
    voided = await arrived(mail_server, mail_id("void", inv["id"]))
    assert "发票已作废" in voided["Subject"] and "Invoice voided" in voided["Subject"]
    text, pdf_text = text_and_pdf(voided)
    assert "开错了" in text and "has voided" in text and inv["invoice_number"] in pdf_text
    assert len(mails_of(mail_server, mail_id("invoice", inv["id"]))) == 1


async def test_credit_note_reaches_the_same_buyer(
    issuer_client: Any, server: ServerProcess, mail_server: MailServer, start_worker: Any
) -> None:
    start_worker(**worker_env(mail_server, server))
    inv = await issue(issuer_client, "credit@example.cn")
    resp = await issuer_client.post(f"/v1/invoices/{inv['id']}/credit-notes", json={"reason": "退货"})
    assert resp.status_code == 201, resp.text
    note = resp.json()
    message = await arrived(mail_server, mail_id("credit_note", note["id"]))
    assert message["To"].addresses[0].addr_spec == "credit@example.cn"
    assert "红字发票" in message["Subject"] and "Credit note" in message["Subject"]
    text, pdf_text = text_and_pdf(message)
    assert f"{inv['invoice_code']} {inv['invoice_number']}" in text and note["invoice_number"] in pdf_text
    await arrived(mail_server, mail_id("invoice", inv["id"]))


async def test_invoice_without_email_sends_nothing(
    issuer_client: Any, server: ServerProcess, mail_server: MailServer, start_worker: Any, pool: asyncpg.Pool
) -> None:
    start_worker(**worker_env(mail_server, server))
    silent = await issue(issuer_client, None)
    heard = await issue(issuer_client)  # issued after: once its mail is in, the silent one's would have been
    await arrived(mail_server, mail_id("invoice", heard["id"]))
    async with pool.acquire() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM mail_outbox WHERE invoice_id = $1", uuid.UUID(silent["id"]))
    assert rows == 0
    assert not [m for m in mail_server.received() if silent["id"] in ident(m)]


@pytest.mark.slow
@pytest.mark.timeout(420)  # a lease, a sweep and a backoff to wait out, on a loaded machine
async def test_worker_killed_mid_send_every_mail_arrives_exactly_once(
    issuer_client: Any, server: ServerProcess, mail_server: MailServer, start_worker: Any, pool: asyncpg.Pool
) -> None:
    mail_server.gate.clear()  # every message is held before the server's 250
    first = start_worker(**worker_env(mail_server, server))
    bodies = [invoice_body() for _ in range(12)]  # a batch: more than NUDGE_ONE_BY_ONE, so fanned out
    for body in bodies:
        body["buyer"]["email"] = "batch@example.cn"
    resp = await issuer_client.post("/v1/invoices/batch", json={"invoices": bodies})
    assert resp.status_code == 201, resp.text
    ids = [inv["id"] for inv in resp.json()["invoices"]]
    assert await asyncio.to_thread(mail_server.arrived.wait, 90)  # sends are under way, held at the server
    first.kill()  # kill -9, mid-DATA
    mail_server.gate.set()
    start_worker(**worker_env(mail_server, server))

    async def all_sent() -> bool:
        async with pool.acquire() as conn:
            done = await conn.fetchval(
                "SELECT count(*) FROM mail_outbox WHERE invoice_id = ANY($1::uuid[]) AND status = 'sent'",
                [uuid.UUID(i) for i in ids],
            )
        return bool(done == len(ids))

    await wait_until(all_sent, 300)
    wanted = {mail_id("invoice", i) for i in ids}
    counts = Counter(ident(m) for m in mail_server.received() if ident(m) in wanted)
    assert set(counts) == wanted and set(counts.values()) == {1}, counts
    async with pool.acquire() as conn:
        retaken = await conn.fetchval(
            "SELECT count(*) FROM mail_outbox WHERE invoice_id = ANY($1::uuid[]) AND attempts >= 2",
            [uuid.UUID(i) for i in ids],
        )
    assert retaken >= 1  # the held sends were taken again after the lease, and sent once


@pytest.mark.slow
@pytest.mark.timeout(420)  # a lease, a sweep and a backoff to wait out, on a loaded machine
async def test_smtp_server_down_mail_is_retried_and_delivered_once_back(
    issuer_client: Any, server: ServerProcess, start_worker: Any, pool: asyncpg.Pool
) -> None:
    mail = MailServer(free_port())  # not started: nothing listens on its port
    start_worker(**worker_env(mail, server))
    inv = await issue(issuer_client, "later@example.cn")

    async def refused() -> bool:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT status, attempts, last_error FROM mail_outbox WHERE invoice_id = $1 AND kind = 'invoice'",
                uuid.UUID(inv["id"]),
            )
        return row is not None and row["attempts"] >= 1 and row["status"] == "pending" and bool(row["last_error"])

    await wait_until(refused, 90)
    mail.start()
    try:
        await arrived(mail, mail_id("invoice", inv["id"]), timeout_s=150)

        async def marked() -> bool:  # the server has the mail; the worker marks the row just after its 250
            async with pool.acquire() as conn:
                status = await conn.fetchval(
                    "SELECT status FROM mail_outbox WHERE invoice_id = $1 AND kind = 'invoice'", uuid.UUID(inv["id"])
                )
            return bool(status == "sent")

        await wait_until(marked, 30)
        assert len(mails_of(mail, mail_id("invoice", inv["id"]))) == 1
    finally:
        mail.stop()
