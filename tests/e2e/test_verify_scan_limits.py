"""The scan's time bound and its busy answer (issue 14 item 2), on a server of their own: SCAN_TIMEOUT_S tiny and
one decoding slot (SCAN_SLOTS=1), so a file that takes seconds to read is refused at once and keeps the slot
while its thread runs on. Nothing here measures time: the slow file takes seconds, the bound is 50 ms, and the
busy answer is asked for while that thread is still reading (the next request, a few milliseconds later)."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from invoiceloop.settings import Settings
from tests.conftest import ServerProcess, server_log
from tests.delivery_fixtures import wait_until
from tests.verification_fixtures import random_address

SCAN = "/v1/verifications/scan"


@pytest.fixture(scope="module")
def scan_server(settings: Settings, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    srv = ServerProcess(settings, server_log(output_dir, request), SCAN_TIMEOUT_S="0.05", SCAN_SLOTS="1")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def client(scan_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=scan_server.base_url, timeout=60, headers={"X-Forwarded-For": random_address()}
    ) as c:
        yield c


def slow_pdf(pages: int = 10, squares: int = 20_000) -> bytes:
    """Ten A4 pages of 20,000 scattered specks each: within every limit (2.4 MB, 10 pages, no image), and seconds
    of work to render at 300 dpi and search for QR codes (4 s on an idle 2-core machine)."""
    rnd = random.Random(14)
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    width, height = A4
    for _ in range(pages):
        for _ in range(squares):
            pdf.rect(rnd.uniform(0, width), rnd.uniform(0, height), 1.5, 1.5, stroke=0, fill=1)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (16, 16), 255).save(out, "PNG")
    return out.getvalue()


async def scan(client: httpx.AsyncClient, content: bytes, name: str, kind: str) -> httpx.Response:
    return await client.post(SCAN, files={"file": (name, content, kind)})


async def test_a_file_too_slow_to_read_is_refused_and_a_busy_scanner_answers_503(client: httpx.AsyncClient) -> None:
    slow = slow_pdf()
    assert len(slow) < 10 * 1024 * 1024
    refused = await scan(client, slow, "specks.pdf", "application/pdf")
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "file" and error["message"] == "could not be read within 0.05 s"

    busy = await scan(client, blank_png(), "blank.png", "image/png")  # the slow file's thread still holds the slot
    assert busy.status_code == 503, busy.text
    assert busy.headers["content-type"].startswith("application/problem+json") and int(busy.headers["retry-after"]) >= 1
    assert "busy" in busy.json()["detail"]

    async def slot_free() -> httpx.Response | None:  # once the slow thread ends, the slot is given back
        again = await scan(client, blank_png(), "blank.png", "image/png")
        return again if again.status_code != 503 else None

    again = await wait_until(slot_free, 120, every_s=1)
    assert again.status_code == 422 and again.json()["errors"][0]["message"] == "no invoice QR code was found in it"


def test_scan_settings() -> None:
    from invoicing.errors import ConfigError

    assert (Settings.from_env({}).scan_slots, Settings.from_env({}).scan_timeout_s) == (2, 20.0)
    assert Settings.from_env({"SCAN_SLOTS": "4", "SCAN_TIMEOUT_S": "7.5"}).scan_slots == 4
    for name, bad in (("SCAN_SLOTS", "0"), ("SCAN_SLOTS", "1.5"), ("SCAN_TIMEOUT_S", "-1"), ("SCAN_TIMEOUT_S", "nan")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: bad})
