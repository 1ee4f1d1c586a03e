"""The buyer's mail as a message (`invoicing.mail_message`), SMTP_URL (`invoicing.smtp`), the backoff."""

from __future__ import annotations

import dataclasses

import pytest

from invoiceloop.settings import Settings
from invoicing import mail_message
from invoicing.errors import ConfigError
from invoicing.mail_outbox import RETRY_MAX_S, backoff_s
from invoicing.smtp import SmtpTarget
from tests.unit.invoice_samples import sample_invoice

SENDER = "发票 <invoices@mail.example.cn>"


def test_message_is_bilingual_has_the_pdf_and_a_stable_message_id() -> None:
    inv = sample_invoice(2)
    url = "https://fp.example.cn/verify?c=1&n=2"
    first = mail_message.build("invoice", inv, to="buyer@example.cn", sender=SENDER, verify_url=url, pdf=b"%PDF-1")
    again = mail_message.build("invoice", inv, to="buyer@example.cn", sender=SENDER, verify_url=url, pdf=b"%PDF-1")
    assert first["Message-ID"] == again["Message-ID"] == f"<invoice.{inv.id}@mail.example.cn>"
    assert mail_message.message_id("void", inv.id, SENDER) != first["Message-ID"]
    body = first.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "您好" in text and "Dear" in text and url in text and inv.invoice_number in text
    [pdf] = list(first.iter_attachments())
    assert pdf.get_content() == b"%PDF-1" and pdf.get_filename().endswith(f"{inv.invoice_number}.pdf")


@pytest.mark.parametrize("to", ["a@b.cn\r\nBcc: victim@example.cn", "a@b.cn\nBcc: x@y.cn", "no address", "a@@b"])
def test_an_address_that_would_inject_headers_is_refused(to: str) -> None:
    with pytest.raises(ValueError):
        mail_message.build("invoice", sample_invoice(1), to=to, sender=SENDER, verify_url="u", pdf=b"")


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://127.0.0.1:2525", SmtpTarget("127.0.0.1", 2525)),
        ("smtp://relay", SmtpTarget("relay", 25)),
        (
            "smtp+starttls://u%40x:p%3Aw@mx.example.cn",
            SmtpTarget("mx.example.cn", 587, starttls=True, username="u@x", password="p:w"),
        ),
        ("smtps://u:p@mx.example.cn:4650", SmtpTarget("mx.example.cn", 4650, tls=True, username="u", password="p")),
    ],
)
def test_smtp_url(url: str, target: SmtpTarget) -> None:
    assert SmtpTarget.from_url(url) == target


@pytest.mark.parametrize("url", ["http://x", "smtp://", "smtp://h:99999", "smtp://h:port"])
def test_bad_smtp_url_is_a_config_error_without_the_password(url: str) -> None:
    settings = dataclasses.replace(Settings(), smtp_url=url.replace("//", "//u:secretpw@", 1))
    with pytest.raises(ConfigError) as caught:
        _ = settings.smtp
    assert "secretpw" not in str(caught.value)
    assert "secretpw" not in repr(SmtpTarget("h", 1, password="secretpw"))


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff_s(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert backoff_s(30) == RETRY_MAX_S
