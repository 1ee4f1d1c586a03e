"""Reading the QR codes of a photo or a PDF (`POST /v1/verifications/scan`): PNG and JPEG photos are decoded
with Pillow, PDF pages rasterised with pdfium (pypdfium2), and the codes read with zxing-cpp, off the event loop
in a pool of its own, within a time bound.

The size, page and pixel limits are constants, not settings: they bound what one request may cost this process
(memory) and are part of the contract (API.md: up to 10 MB), not a figure a deployment tunes. The time bound and
the number of files decoded at once are the process's CPU, so they are settings (SCAN_TIMEOUT_S, SCAN_SLOTS), held
by a `Scanner`. Nothing is decoded before its size is known: an image's pixel count comes from its header, a PDF's page count and the pixel size of every image it
holds from its structure, so a small file that declares a huge image (a decompression bomb) is refused without
being allocated."""

from __future__ import annotations

import asyncio
import io
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import zxingcpp
from PIL import Image

from invoicing.errors import FieldError, Unavailable, ValidationFailed

MAX_BYTES = 10 * 1024 * 1024  # the request body (the route's request_max_body_size): API.md's 10 MB
MAX_PAGES = 10  # PDF pages read: an invoice is a page or two; a PDF of several is read in one request
MAX_PIXELS = 50_000_000  # per image, from its header (a 48 MP phone photo passes; a bomb declaring more is refused)
RENDER_DPI = 300  # PDF pages rendered at this resolution ...
RENDER_PIXELS = 16_000_000  # ... or less, so no page renders to more pixels than this (a page may declare any size)
DECODE_PIXELS = 16_000_000  # a JPEG is decoded at 1/2, 1/4 or 1/8 of its size to stay under this (a QR needs few)
SLOTS = 2  # SCAN_SLOTS: files decoded at once in this process; the next one is answered 503 until one is done
TIMEOUT_S = 20.0  # SCAN_TIMEOUT_S: a file not read within this is refused (422); its thread holds its slot until done
FILE = "file"  # the multipart field

_QR = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class Busy(Unavailable):
    """Every slot is decoding: 503, try again shortly."""


def refused(message: str) -> ValidationFailed:
    """422 naming the `file` field."""
    return ValidationFailed(errors=[FieldError(FILE, message)], detail="the file cannot be read")


def _codes(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image, formats=_QR) if r.text]


def _check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_PIXELS:
        raise refused(f"{what} is {width}×{height} pixels; at most {MAX_PIXELS:,} are read")


def read_image(data: bytes) -> list[str]:
    """The QR texts of a PNG or JPEG photo; its pixel count is checked from the header before decoding."""
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    except Image.DecompressionBombError:
        raise refused(f"the image declares more than {MAX_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError):
        raise refused("is not a PNG, JPEG or PDF file") from None
    with image:
        _check_pixels(*image.size, "the image")
        if image.format == "JPEG":
            image.draft("L", _fitting(image.size, DECODE_PIXELS))
        try:
            grey = image.convert("L")
        except (OSError, ValueError, SyntaxError):
            raise refused("the image is damaged") from None
    return _codes(grey)


def _fitting(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, math.sqrt(pixels / max(1, width * height)))
    return max(1, int(width * scale)), max(1, int(height * scale))


def read_pdf(data: bytes) -> list[str]:
    """The QR texts of a PDF's pages (at most MAX_PAGES), each page's embedded images checked for size first."""
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        raise refused("is not a PDF that can be read (damaged, or protected by a password)") from None
    try:
        if len(document) > MAX_PAGES:
            raise refused(f"the PDF has {len(document)} pages; at most {MAX_PAGES} are read")
        texts: list[str] = []
        for index in range(len(document)):
            texts += _read_page(document[index], index + 1)
        return texts
    finally:
        document.close()


def _read_page(page: pdfium.PdfPage, number: int) -> list[str]:
    try:
        for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=4):
            assert isinstance(obj, pdfium.PdfImage)
            width, height = obj.get_px_size()
            _check_pixels(int(width), int(height), f"an image on page {number}")
        page_width, page_height = page.get_size()
        scale = min(RENDER_DPI / 72, math.sqrt(RENDER_PIXELS / max(1.0, page_width * page_height)))
        bitmap = page.render(scale=scale, grayscale=True)
        return _codes(bitmap.to_pil())
    finally:
        page.close()


def read_codes_now(data: bytes) -> list[str]:
    """The QR texts of a PDF, PNG or JPEG file (told apart by their first bytes, not by what the client says)."""
    if b"%PDF-" in data[:1024]:
        return read_pdf(data)
    return read_image(data)


class Scanner:
    """This process's decoding: at most `slots` files at once, in threads of its own, each answered within
    `timeout_s`. A slot is taken by a request and given back by its thread when the thread ends, even when its
    request has been answered (a slow file's thread cannot be stopped: its slot stays taken until it is done)."""

    def __init__(self, slots: int = SLOTS, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="scan")
        self._slots = threading.BoundedSemaphore(slots)

    def _run(self, data: bytes) -> list[str]:
        try:
            return read_codes_now(data)
        finally:
            self._slots.release()

    async def read_codes(self, data: bytes) -> list[str]:
        """The QR texts of the file, read within `timeout_s` (422 beyond it, naming `file`); 503 when every slot
        is busy."""
        if not self._slots.acquire(blocking=False):
            raise Busy("every scanner of this server is busy; send the file again shortly")
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._run, data)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise refused(f"could not be read within {self.timeout_s:g} s") from None
