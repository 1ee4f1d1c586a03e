"""`POST /v1/verifications/scan` end to end: photos made from our own PDFs (rendered, rotated, blurred, JPEG at
quality 60, phone-sized) verify as valid, a PDF of two invoices gives two results, and the clumsy or hostile
uploads (no QR, a decompression bomb, the wrong media type, a forged QR) are refused or told apart."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib
from typing import Any

import pypdfium2 as pdfium
import pytest
import segno
from PIL import Image, ImageFilter
from pypdf import PdfWriter

from tests.verification_fixtures import form_token, query_of

SCAN = "/v1/verifications/scan"
GUESS = {
    "invoice_code": "440126000001",
    "invoice_number": "99999999",
    "issue_date": "2026-01-05",
    "check_code_last6": "123456",
}


async def pdf_of(seller: Any, invoice: dict[str, Any]) -> bytes:
    response = await seller.get(f"/v1/invoices/{invoice['id']}/pdf")
    assert response.status_code == 200
    return bytes(response.content)


def phone_photo(pdf: bytes, degrees: float) -> bytes:
    """What a phone makes of a printed invoice: the page at 200 dpi, a little turned, slightly blurred, at
    2000 px on the long side (a phone's upload, about 3 MP: a 12 MP photo, the page filling two thirds of it), JPEG at quality 60."""
    document = pdfium.PdfDocument(pdf)
    page = document[0].render(scale=200 / 72).to_pil().convert("RGB")
    document.close()
    turned = page.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(235, 230, 220))
    blurred = turned.filter(ImageFilter.GaussianBlur(1.2))
    blurred.thumbnail((2000, 2000), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    blurred.save(out, "JPEG", quality=60)
    return out.getvalue()


def png_declaring(width: int, height: int, full: bool = False) -> bytes:
    """A tiny PNG whose header declares `width`×`height` pixels (a decompression bomb): a few hundred bytes, or
    with `full` every row there, white, compressed about a thousand to one."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * height if full else b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def pdf_with_image(width: int, height: int) -> bytes:
    """A one-page PDF of 700 bytes showing an image that declares `width`×`height` pixels (a bomb inside a PDF)."""
    data = zlib.compress(b"\xff" * 1024)
    content = b"q 500 0 0 700 50 50 cm /Im0 Do Q"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
        % (width, height, len(data))
        + data
        + b"\nendstream",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


async def scan(consumer: Any, content: bytes, name: str = "photo.jpg", kind: str = "image/jpeg") -> Any:
    return await consumer.post(SCAN, files={"file": (name, content, kind)})


@pytest.mark.parametrize("degrees", [-4.0, 3.0])
async def test_a_phone_photo_of_our_pdf_verifies_as_valid(consumer: Any, seller: Any, degrees: float) -> None:
    invoice = await seller.issue()
    photo = phone_photo(await pdf_of(seller, invoice), degrees)
    response = await scan(consumer, photo)
    assert response.status_code == 200, response.text
    [found] = response.json()["results"]
    assert found["qr"]["n"] == invoice["invoice_number"] and found["qr"]["c"] == invoice["invoice_code"]
    assert found["qr_check"] == {"valid": True, "reason": "signature valid"}
    assert found["result"] == "valid"
    assert found["invoice"]["total"] == invoice["total"]


async def test_a_pdf_of_two_invoices_gives_two_results(consumer: Any, seller: Any) -> None:
    first, second = await seller.issue(), await seller.issue()
    writer = PdfWriter()
    for pdf in (await pdf_of(seller, first), await pdf_of(seller, second)):
        writer.append(io.BytesIO(pdf))
    both = io.BytesIO()
    writer.write(both)
    response = await scan(consumer, both.getvalue(), "two.pdf", "application/pdf")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["qr"]["n"] for r in results] == [first["invoice_number"], second["invoice_number"]]
    assert all(r["result"] == "valid" for r in results)


async def test_the_same_answer_and_count_as_opening_the_link(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    scanned = (await scan(consumer, await pdf_of(seller, invoice), "i.pdf", "application/pdf")).json()["results"][0]
    assert scanned["times_verified"] == 1
    typed = await consumer.post("/v1/verifications", json=query_of(invoice))
    assert typed.json()["times_verified"] == 2  # the scan was counted and logged like any verification


def qr_png(text: str) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()


async def test_a_forged_qr_is_read_but_not_trusted(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    forged = re.sub(r"&t=[0-9.]+", "&t=1.00", invoice["verify_url"])  # the total changed: the signature fails
    response = await scan(consumer, qr_png(forged), "forged.png", "image/png")
    assert response.status_code == 200, response.text
    [found] = response.json()["results"]
    assert found["qr_check"] == {"valid": False, "reason": "signature does not match"}
    assert "total" in found["differs"]  # as the page says of the same link


async def test_a_photo_without_a_qr_is_a_422_naming_file(consumer: Any) -> None:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (250, 250, 250)).save(out, "JPEG", quality=60)
    response = await scan(consumer, out.getvalue())
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "file"


async def test_a_qr_that_is_no_invoice_is_not_verified(consumer: Any) -> None:
    response = await scan(consumer, qr_png("https://example.com/?hello=1"), "other.png", "image/png")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "file"


async def test_a_decompression_bomb_is_refused_without_decoding(consumer: Any) -> None:
    bomb = png_declaring(50_000, 50_000)  # 2.5 gigapixels in a few hundred bytes
    assert len(bomb) < 1000
    started = time.monotonic()
    response = await scan(consumer, bomb, "bomb.png", "image/png")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "file" and "pixels" in response.json()["errors"][0]["message"]
    assert time.monotonic() - started < 10  # generous: decoding it would allocate 2.5 GB and take far longer


async def test_a_bomb_below_pillows_own_limit_is_refused_too(consumer: Any) -> None:
    bomb = png_declaring(9_000, 9_000, full=True)  # 81 million pixels, whole, in about 80 kB: Pillow would decode it
    assert len(bomb) < 200_000
    response = await scan(consumer, bomb, "bomb.png", "image/png")
    assert response.status_code == 422, response.text
    assert "9000×9000 pixels" in response.json()["errors"][0]["message"]


async def test_a_bomb_inside_a_pdf_is_refused_before_rendering(consumer: Any) -> None:
    response = await scan(consumer, pdf_with_image(50_000, 50_000), "bomb.pdf", "application/pdf")
    assert response.status_code == 422, response.text
    assert "image on page 1 is 50000×50000 pixels" in response.json()["errors"][0]["message"]


async def test_a_pdf_of_too_many_pages_is_refused(consumer: Any) -> None:
    writer = PdfWriter()
    for _ in range(11):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    response = await scan(consumer, out.getvalue(), "many.pdf", "application/pdf")
    assert response.status_code == 422 and "pages" in response.json()["errors"][0]["message"]


async def test_a_page_declaring_a_huge_size_is_rendered_within_the_pixel_cap(consumer: Any) -> None:
    """A page of 200 × 200 inches (PDF's largest) would be 3.6 gigapixels at 300 dpi: it is rendered at no more than
    RENDER_PIXELS instead, and read like any page (here, nothing on it)."""
    writer = PdfWriter()
    writer.add_blank_page(14_400, 14_400)
    out = io.BytesIO()
    writer.write(out)
    response = await scan(consumer, out.getvalue(), "huge.pdf", "application/pdf")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["message"] == "no invoice QR code was found in it"


async def test_not_an_image_is_a_422_and_the_wrong_media_type_a_415(consumer: Any) -> None:
    text = await scan(consumer, b"hello, I am a text file", "a.txt", "text/plain")
    assert text.status_code == 422 and text.json()["errors"][0]["field"] == "file"
    as_json = await consumer.post(SCAN, json={"file": "x"})
    assert as_json.status_code == 415 and as_json.headers["content-type"].startswith("application/problem+json")
    missing = await consumer.post(SCAN, files={"other": ("a.png", b"x", "image/png")})
    assert 400 <= missing.status_code < 500 and missing.headers["content-type"].startswith("application/problem+json")


async def test_a_body_over_10_mb_is_a_413(consumer: Any) -> None:
    response = await scan(consumer, b"\xff\xd8" + b"\0" * (11 * 1024 * 1024))
    assert response.status_code == 413


async def test_scans_count_against_the_clients_rate_even_when_nothing_is_found(consumer: Any) -> None:
    out = io.BytesIO()
    Image.new("L", (16, 16), 255).save(out, "PNG")
    statuses = [(await scan(consumer, out.getvalue(), "blank.png", "image/png")).status_code for _ in range(31)]
    assert statuses[:30] == [422] * 30 and statuses[30] == 429  # VERIFY_RATE_PER_WINDOW is 30 a minute
    typed = await consumer.post("/v1/verifications", json=GUESS)
    assert typed.status_code == 429  # the same budget as every other verification


async def test_the_page_offers_the_camera_and_verifies_an_upload(consumer: Any, seller: Any) -> None:
    page = await consumer.get("/verify")
    assert 'accept="image/*,application/pdf" capture="environment"' in page.text
    assert 'action="/verify/scan" enctype="multipart/form-data"' in page.text
    invoice = await seller.issue()
    photo = phone_photo(await pdf_of(seller, invoice), 2.0)
    token = await form_token(consumer)
    answer = await consumer.post(
        "/verify/scan", data={"_csrf_token": token}, files={"file": ("p.jpg", photo, "image/jpeg")}
    )
    assert answer.status_code == 200 and 'id="scan-1" data-result="valid"' in answer.text
    assert invoice["invoice_number"] in answer.text and "QR signature valid" in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    blank = await consumer.post(
        "/verify/scan", data={"_csrf_token": token}, files={"file": ("b.png", qr_png("hello"), "image/png")}
    )
    assert blank.status_code == 422 and 'id="scan-error"' in blank.text


async def test_the_page_upload_refuses_another_sites_post(consumer: Any, seller: Any) -> None:
    files = {"file": ("p.png", qr_png("hello"), "image/png")}
    no_token = await consumer.post("/verify/scan", files=files)
    assert no_token.status_code == 403
    token = await form_token(consumer)
    elsewhere = await consumer.post(
        "/verify/scan", data={"_csrf_token": token}, files=files, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert elsewhere.status_code == 403
