"""The buyer's mail, as the message it is: Chinese first with English beside it, the record's PDF attached and
its verify link. Pure: the same record and kind make the same message, Message-ID included, so a mail sent
twice (the window `invoicing.mail_outbox` explains) is recognisably the same mail."""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

from invoicing.model import Invoice, money_str

MailKind = Literal["invoice", "void", "credit_note"]

SUBJECTS: dict[MailKind, tuple[str, str]] = {
    "invoice": ("电子发票", "Electronic invoice"),
    "void": ("发票已作废", "Invoice voided"),
    "credit_note": ("红字发票", "Credit note"),
}
KINDS: dict[str, MailKind] = {"invoice": "invoice", "void": "void", "credit_note": "credit_note"}
FOOTER = "此邮件由系统自动发送，请勿回复。\nThis message was sent automatically; please do not reply."


def message_id(kind: MailKind, invoice_id: str, sender: str) -> str:
    """`<kind.invoice-id@sender's domain>`: one per record and kind, the same on every try."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "invoiceloop.invalid"
    return f"<{kind}.{invoice_id}@{domain}>"


def _intro(kind: MailKind, inv: Invoice) -> list[str]:
    seller = inv.seller.name
    if kind == "invoice":
        return [
            f"{seller} 为您开具了电子发票，PDF 文件见附件。",
            f"{seller} has issued you an electronic invoice; the PDF is attached.",
        ]
    if kind == "void":
        return [
            f"{seller} 已将下列发票作废，作废后的发票见附件。作废原因：{inv.void_reason or ''}",
            f"{seller} has voided the invoice below; the voided invoice is attached. Reason: {inv.void_reason or ''}",
        ]
    original = f"{inv.original_invoice_code} {inv.original_invoice_number}"
    return [
        f"{seller} 已就发票 {original} 为您开具红字发票（冲红），PDF 文件见附件。",
        f"{seller} has issued you a credit note against invoice {original}; the PDF is attached.",
    ]


def body_text(kind: MailKind, inv: Invoice, verify_url: str) -> str:
    """The mail's text: greeting, what happened, the record's figures and the verify link, in both languages."""
    lines = [
        f"{inv.buyer.name}，您好：",
        f"Dear {inv.buyer.name},",
        "",
        *_intro(kind, inv),
        "",
        f"发票代码 Invoice code：{inv.invoice_code}",
        f"发票号码 Invoice number：{inv.invoice_number}",
        f"开票日期 Issue date：{inv.issue_date.isoformat()}",
        f"价税合计 Total (tax included)：¥{money_str(inv.totals.total)}",
        f"校验码 Check code：{inv.check_code}",
        "",
        "查验发票真伪 Verify this invoice:",
        verify_url,
        "",
        FOOTER,
    ]
    return "\n".join(lines) + "\n"


def build(kind: MailKind, inv: Invoice, *, to: str, sender: str, verify_url: str, pdf: bytes) -> EmailMessage:
    """The mail of `kind` about `inv` to `to`; ValueError when `to` is no usable address."""
    zh, en = SUBJECTS[kind]
    msg = EmailMessage()
    msg["Subject"] = f"{zh} {en}：{inv.invoice_code} {inv.invoice_number} {inv.seller.name}"
    msg["From"] = sender
    try:  # refuses CR/LF (no header injection) and what is no address
        msg["To"] = Address(display_name=inv.buyer.name, addr_spec=to)
    except HeaderParseError as exc:
        raise ValueError(str(exc)) from None
    msg["Message-ID"] = message_id(kind, inv.id, sender)
    msg["Date"] = format_datetime(inv.voided_at if kind == "void" and inv.voided_at else inv.issued_at)
    msg["Content-Language"] = "zh-CN, en"
    msg.set_content(body_text(kind, inv, verify_url), charset="utf-8")
    name = f"invoice-{inv.invoice_code}-{inv.invoice_number}.pdf"
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    return msg
