"""The invoice PDF: read back with pypdf and poppler, its QR code and Code 128 decoded from a raster."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import zxingcpp
from hypothesis import given, settings
from PIL import Image
from pypdf import PdfReader
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFontFile
from reportlab.pdfgen.canvas import Canvas

from invoicing import pdf
from invoicing.formats import verify_url
from invoicing.model import DEFAULT_TAX_RATES, Invoice, LineInput, money_str
from invoicing.pdf import barcodes, fonts, render_invoice_pdf
from invoicing.pdf.layout import COL_X, PAD, PAGE_H
from invoicing.pdf.render import _FLATE, ZLIB_LEVEL, _Canvas
from tests.unit.invoice_samples import BASE_URL, BUYER, invoices, make_invoice, sample_invoice

OUT = Path(__file__).resolve().parents[2] / "test-output" / "pdf"
needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils is not installed")


def render(inv: Invoice) -> bytes:
    return render_invoice_pdf(inv, verify_url(BASE_URL, inv))


def pypdf_pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def poppler_text(pdf: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()


def raster(pdf: bytes, page: int = 1, dpi: int = 200) -> Image.Image:
    png = subprocess.run(
        ["pdftoppm", "-f", str(page), "-l", str(page), "-r", str(dpi), "-png", "-singlefile", "-"],
        input=pdf,
        capture_output=True,
        check=True,
    ).stdout
    return Image.open(io.BytesIO(png))


def decoded(image: Image.Image) -> dict[str, str]:
    return {r.format.name: r.text for r in zxingcpp.read_barcodes(image)}


def distinct_lines(count: int, kind: str = "invoice", **overrides: object) -> Invoice:
    """Lines with different amounts, so that finding each amount in the text proves each line is there."""
    items = [
        LineInput(
            f"项目 {i + 1} 号：测试商品",
            "个",
            Decimal(i + 1),
            Decimal("10.01"),
            DEFAULT_TAX_RATES[i % len(DEFAULT_TAX_RATES)],
        )
        for i in range(count)
    ]
    return make_invoice(items, kind=kind, **overrides)


def test_text_holds_identity_parties_figures_and_words() -> None:
    inv = sample_invoice(10)
    pdf = render(inv)
    for text in (poppler_text(pdf), "\n".join(pypdf_pages(pdf))):
        for expected in (
            "电子发票",
            "e-Invoice",
            inv.invoice_code,
            inv.invoice_number,
            "2026年11月27日",
            inv.check_code,
            inv.seller.name,
            inv.seller.tax_id,
            BUYER.name,
            "Buyer",
            "Seller",
            "价税合计",
            inv.total_in_words,
            f"¥{money_str(inv.totals.total)}",
            f"¥{money_str(inv.totals.total_amount)}",
            f"¥{money_str(inv.totals.total_tax)}",
            "第 1 页 / 共 1 页",
            "扫码查验",
            "Scan to verify",
        ):
            assert expected in text, expected
        for line in inv.lines:
            assert money_str(line.amount) in text
            assert money_str(line.tax_amount) in text


@needs_poppler
def test_qr_holds_exactly_the_verify_url_and_the_barcode_code_and_number() -> None:
    inv = sample_invoice(10)
    url = verify_url(BASE_URL, inv)
    image = raster(render_invoice_pdf(inv, url), dpi=200)
    found = decoded(image)
    assert found["QRCode"] == url
    assert found["Code128"] == inv.invoice_code + inv.invoice_number
    qr = next(r for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode))
    assert qr.ec_level == "M"
    width_px = abs(qr.position.top_right.x - qr.position.top_left.x)
    assert width_px / 200 * 25.4 >= 25  # FORMATS.md: at least 25 mm wide


@pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbar-tools is not installed")
@pytest.mark.parametrize("dpi", [200, 300])
def test_codes_decode_with_an_independent_reader(tmp_path: Path, dpi: int) -> None:
    inv = sample_invoice(3)
    url = verify_url(BASE_URL, inv)
    path = tmp_path / "page.png"
    raster(render_invoice_pdf(inv, url), dpi=dpi).save(path)
    out = subprocess.run(["zbarimg", "-q", str(path)], capture_output=True, check=True).stdout.decode()
    assert f"QR-Code:{url}\n" in out
    assert f"CODE-128:{inv.invoice_code}{inv.invoice_number}\n" in out


def test_qr_mask_is_the_one_zxing_cpp_chooses() -> None:
    """`qrmask` scores the 8 masks itself (zint's rules, on bitboards): the symbol must be zxing-cpp's own,
    over sizes from 21 modules up and byte, alphanumeric and Chinese (ECI) content."""
    import random
    import string

    rng = random.Random(18004)
    alphabets = (
        string.ascii_uppercase + string.digits + " $%*+-./:",
        string.printable,
        "发票校验码" + string.ascii_letters,
    )
    for _ in range(150):
        data = "".join(rng.choices(rng.choice(alphabets), k=rng.randint(1, 700)))
        code = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
        image = zxingcpp.write_barcode_to_image(code, scale=1, add_quiet_zones=False)
        n, pixels = image.shape[0], bytes(memoryview(image)).translate(bytes.maketrans(b"\x00\xff", b"\x01\x00"))
        assert pdf.qr_matrix(data) == [pixels[i * n : (i + 1) * n] for i in range(n)], data


@needs_poppler
def test_segno_encoder_makes_the_same_decodable_qr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback when zxing-cpp is not installed."""
    inv = sample_invoice(2)
    url = verify_url(BASE_URL, inv)
    fast = pdf.qr_matrix(url)
    monkeypatch.setattr(barcodes, "zxingcpp", None)
    slow = pdf.qr_matrix(url)
    assert len(slow) == len(fast)  # same version: level M, not boosted
    assert decoded(raster(render_invoice_pdf(inv, url)))["QRCode"] == url


def test_many_lines_flow_over_pages_with_the_header_and_page_numbers() -> None:
    inv = distinct_lines(120)
    pdf = render(inv)
    pages = pypdf_pages(pdf)
    assert len(pages) >= 3
    for number, text in enumerate(pages, 1):
        assert f"第 {number} 页 / 共 {len(pages)} 页" in text
        assert inv.invoice_number in text and inv.check_code in text and "项目名称" in text
    everything = "\n".join(pages)
    for line in inv.lines:
        assert money_str(line.amount) in everything
    assert "价税合计" not in "".join(pages[:-1]) and "价税合计" in pages[-1]
    assert "续下页" in pages[0] and "续下页" not in pages[-1]


@needs_poppler
def test_qr_decodes_on_a_continuation_page() -> None:
    inv = distinct_lines(60)
    url = verify_url(BASE_URL, inv)
    pdf = render_invoice_pdf(inv, url)
    assert decoded(raster(pdf, page=len(PdfReader(io.BytesIO(pdf)).pages)))["QRCode"] == url


def test_credit_note_is_red_letter_and_names_the_original() -> None:
    inv = sample_invoice(4, kind="credit_note")
    text = "\n".join(pypdf_pages(render(inv)))
    assert "红字" in text and "销项负数" in text and "Credit note" in text
    assert "对应正数发票代码 440126000111" in text and "号码 00000001" in text
    assert inv.totals.total < 0 and f"¥{money_str(inv.totals.total)}" in text
    for line in inv.lines:
        assert line.amount < 0 and money_str(line.amount) in text
    assert inv.total_in_words in text


def test_voided_invoice_is_stamped_on_every_page() -> None:
    inv = distinct_lines(70, status="voided", void_reason="开票信息有误")
    pages = pypdf_pages(render(inv))
    assert len(pages) >= 2
    for text in pages:
        assert "作废" in text and "VOID" in text
    assert "作废" not in "\n".join(pypdf_pages(render(distinct_lines(3))))


def test_long_descriptions_wrap_and_stay_whole() -> None:
    long = "高端定制实木办公桌椅套装（含安装调试、五年质保、免费上门维修服务）" * 5 + " with an English tail"
    inv = make_invoice([LineInput(long, "套", Decimal(1), Decimal("99999.99"), Decimal("0.13"))])
    text = "".join(pypdf_pages(render(inv))[0].split())
    assert "".join(long.split()) in text
    font = pdf.cjk_font()
    lines = pdf.wrap_text(long, font, 8, 150)
    assert len(lines) > 5
    assert all(pdfmetrics.stringWidth(line, font, 8) <= 150 for line in lines)
    assert "".join(lines).replace(" ", "") == long.replace(" ", "")
    assert not any(line.startswith(("，", "、", "）")) for line in lines)


def test_a_description_longer_than_a_page_goes_on_over_the_page() -> None:
    huge = "".join(f"第{i}段：超长的商品说明文字，用于检查跨页续排。" for i in range(150))
    items = [
        LineInput("短", "个", Decimal(1), Decimal("1.00"), Decimal("0.13")),
        LineInput(huge, "个", Decimal(2), Decimal("3.00"), Decimal("0.13")),
    ]
    reader = PdfReader(io.BytesIO(render(make_invoice(items))))
    assert len(reader.pages) >= 3
    column: list[tuple[int, float, str]] = []  # (page, -y, text) of what is written in the item column
    lowest = PAGE_H

    for number, page in enumerate(reader.pages):

        def visit(text: str, cm: list[float], tm: list[float], fonts: object, size: object, n: int = number) -> None:
            nonlocal lowest
            x, y = cm[4] + tm[4], cm[5] + tm[5]
            if text.strip():
                lowest = min(lowest, y)
                if abs(x - COL_X[1] - PAD) < 0.3 * mm and text.strip() != "短":  # where descriptions start
                    column.append((n, -y, text.strip()))

        page.extract_text(visitor_text=visit)
    # By page and line; within a line in the order written (a line may be several runs, one per subset).
    assert "".join(text for _, _, text in sorted(column, key=lambda run: run[:2])) == huge
    assert lowest >= 8 * mm  # nothing runs off the bottom: only the page number sits below the frame


def test_same_invoice_gives_the_same_bytes() -> None:
    """Whatever was rendered before in the process (the caller may key a cache or an ETag on them)."""
    inv = sample_invoice(5)
    first = render(inv)
    render(sample_invoice(40, kind="credit_note"))
    assert render(inv) == first


@needs_poppler
def test_chinese_font_is_embedded(tmp_path: Path) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(render(sample_invoice(2)))
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, check=True, text=True).stdout
    cjk = [row for row in fonts.splitlines() if "WenQuanYiZenHei" in row]
    assert cjk and all(re.search(r"TrueType\s+\S+\s+yes\s+yes\s+yes", row) for row in cjk), fonts  # emb sub uni


def _cjk_subsets(pdf: bytes) -> list[bytes]:
    return re.findall(rb"/BaseFont /([A-Z]{6})\+WenQuanYiZenHei", pdf)


@pytest.mark.parametrize("delivery", ["electronic", "postal"])
def test_every_label_is_in_the_shared_subset(delivery: str) -> None:
    """An invoice whose own text (parties, items) is all Latin uses the shared subset alone: every label
    drawn in the CJK font is in `SHARED_TEXT` (or it would need a subset of the document's own)."""
    from invoicing.model import Seller
    from tests.unit.invoice_samples import Party

    items = [
        LineInput(f"Item {i} Model X-200", "pcs", Decimal(i + 1), Decimal("9.99"), Decimal("0.13")) for i in range(70)
    ]
    inv = make_invoice(
        items,
        seller=Seller("ACME Trading Ltd", "91440101MA5CYB9X2T", "385 Tianhe Road, Guangzhou", "+862038880000"),
        buyer=Party("Example Buyer Co", "91440300MA5FQ1234K", "+8613800138000", "buyer@example.cn"),
        delivery_method=delivery,
    )
    pdf = render(inv)
    assert len(PdfReader(io.BytesIO(pdf)).pages) >= 2  # 续下页 too
    assert _cjk_subsets(pdf) == [b"AAAAAA"]


def test_shared_subset_is_the_same_bytes_in_every_document_and_the_rest_is_the_documents_own() -> None:
    def font_files(pdf: bytes) -> list[bytes]:
        return [m.group(0) for m in re.finditer(rb"<<[^>]*/Length1 \d+[^>]*>>\s*stream\n.*?endstream", pdf, re.S)]

    one, other = render(sample_invoice(3)), render(sample_invoice(2, kind="credit_note"))
    assert _cjk_subsets(one) == _cjk_subsets(other) == [b"AAAAAA", b"AAAAAB"]
    (shared, own), (shared_too, own_too) = font_files(one), font_files(other)
    assert shared == shared_too and own != own_too
    unzipped = render_invoice_pdf(sample_invoice(3), "https://x.example", compress=False)
    assert len(font_files(unzipped)[0]) > len(shared)  # the raw program when the document is not compressed


def test_font_path_override_and_a_clear_error_when_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = pdf.find_cjk_font({})
    assert pdf.find_cjk_font({pdf.CJK_FONT_ENV: str(real)}) == real
    with pytest.raises(pdf.CJKFontMissing, match=pdf.CJK_FONT_ENV):
        pdf.find_cjk_font({pdf.CJK_FONT_ENV: str(tmp_path / "nope.ttc")})
    monkeypatch.setattr(fonts, "CJK_FONT_PATHS", (str(tmp_path / "nope.ttc"),))
    with pytest.raises(pdf.CJKFontMissing, match="fonts-wqy-zenhei"):
        pdf.find_cjk_font({})


def test_glyph_cache_makes_reportlabs_subset_for_any_characters() -> None:
    """The cached subsetter (`_GlyphCache`) against reportlab's own, composite glyphs included."""
    import random

    font = pdfmetrics.getFont(pdf.cjk_font())
    plain = TTFontFile(str(pdf.find_cjk_font({})), subfontIndex=0)
    codes = sorted(plain.charToGlyph)
    composites = _composite_glyphs(plain)
    composite = [c for c in codes if plain.charToGlyph[c] in composites][:40]
    assert composite
    rng = random.Random(7)
    for size in (1, 17, 120, 255):
        chars = rng.sample(codes, size) + composite[: size // 4] + [0x10FFFF]  # and one the font lacks
        assert font.face.makeSubset(chars) == plain.makeSubset(chars)


def _composite_glyphs(face: TTFontFile) -> set[int]:
    glyf = face.get_table("glyf")
    return {
        g
        for g in range(len(face.glyphPos) - 1)
        if face.glyphPos[g + 1] - face.glyphPos[g] > 2 and glyf[face.glyphPos[g]] & 0x80
    }


def test_shared_subset_codes_are_the_ones_reportlab_numbers_in_a_document() -> None:
    """`draw_text` writes a string of shared characters from codes kept per process (`_SharedSubset.encode`):
    they must be what reportlab's `splitString` gives in a document, whatever the document drew before;
    the document's own characters are numbered from subset 1 on, as reportlab numbers them."""
    from reportlab.pdfbase.pdfdoc import PDFDocument

    font = pdfmetrics.getFont(pdf.cjk_font())
    doc = PDFDocument()
    assert font.splitString("名称 张三丰", doc) == [(0, font.shared.encode("名称 ")), (1, bytes([1, 2, 3]))]
    for text in ("发票代码", "价税合计 Total", "0123456789", "壹万贰仟元整", "（小写）", pdf.SHARED_TEXT[:200]):
        codes = font.shared.encode(text)
        assert codes is not None and font.splitString(text, doc) == [(0, codes)], text
    assert font.shared.encode("张三") is None and font.shared.encode("") is None
    assert font.doc_state(doc).subsets[1] == [0, *map(ord, "张三丰")]


_TEXT_OPS = re.compile(r"(/F\d+(?:\+\d+)?) (\S+) Tf|(\((?:\\.|[^\\)])*\)) Tj")


def _shown(code: list[str]) -> list[tuple[str, str, str]]:
    """(font resource, size, string) of each string a page's operators show."""
    shown, font = [], ("", "")
    for m in _TEXT_OPS.finditer(" ".join(code)):
        if m[1]:
            font = (m[1], m[2])
        else:
            shown.append((*font, m[3]))
    return shown


def test_draw_text_shows_what_reportlabs_draw_string_shows() -> None:
    """`draw_text` writes the text operators itself, from work kept per process (`_placed`): the font
    resources, sizes and codes must be what reportlab's `drawString` writes for the same strings drawn in
    the same order (shared subset, the document's own subsets, Helvetica and its substitute fonts)."""
    texts = [
        ("发票代码", None),
        ("Unit price", None),
        ("12000.00", None),
        ("名称 张三丰", None),
        ("¥20684.84", None),
        ("深圳市南山区海岸城数码贸易有限公司", None),
        ("混合 Mixed 文字 123（小写）", None),
        ("\xa0张\xa0", None),
        ("✓ Ⅻ ok", pdf.LATIN_FONT),
        ("第 2 页 / 共 3 页  Page 2 of 3", None),
        ("名称 张三丰", None),  # again: the codes numbered the first time
    ]
    ours, theirs = Canvas(io.BytesIO()), Canvas(io.BytesIO())
    for i, (text, font) in enumerate(texts):
        size = (8, 7.5, 10.5)[i % 3]
        pdf.draw_text(ours, 10, 10, text, size, font=font)
        theirs.setFont(font or pdf.font_for(text), size)
        theirs.drawString(10, 10, text)
    shown = [_shown(c._code) for c in (ours, theirs)]
    assert len(shown[0]) > len(texts) and shown[0] == shown[1]


def test_font_objects_are_the_ones_reportlab_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """`SubsetFont.addObjects` writes the font dictionaries, descriptors, widths, ToUnicode CMaps and font
    programs as bytes (the shared subset's made and compressed once per process): read back, each is what
    reportlab's own `TTFont.addObjects` writes for the same document, zipped or not."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject
    from reportlab.pdfbase.ttfonts import TTFont

    from invoicing.pdf.fontsubset import SubsetFont

    def plain(obj: object) -> object:
        if isinstance(obj, IndirectObject):
            return plain(obj.get_object())
        if isinstance(obj, StreamObject):
            return plain(
                DictionaryObject({k: v for k, v in obj.items() if k not in ("/Length", "/Filter")})
            ), obj.get_data()
        if isinstance(obj, DictionaryObject):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, ArrayObject):
            return [plain(v) for v in obj]
        return obj

    def fonts(pdf_bytes: bytes) -> object:
        return plain(PdfReader(io.BytesIO(pdf_bytes)).pages[0]["/Resources"]["/Font"])

    inv = sample_invoice(3, kind="credit_note")
    url = verify_url(BASE_URL, inv)
    ours = [fonts(render_invoice_pdf(inv, url, compress=zipped)) for zipped in (True, False)]
    monkeypatch.setattr(SubsetFont, "addObjects", TTFont.addObjects)
    theirs = [fonts(render_invoice_pdf(inv, url, compress=zipped)) for zipped in (True, False)]
    assert ours == theirs
    assert len(ours[0]) == 3  # type: ignore[arg-type]  # Helvetica, the shared subset, the document's own


def test_forms_get_the_stream_bytes_reportlab_would_give_them() -> None:
    for literal in ("0 0 m 10 10 l S (a\\(b\\)) Tj\t\x7f", "(caf\xe9 \u2022) Tj"):  # ASCII; PDFDocEncoding
        streams = []
        for kind in (Canvas, _Canvas):
            c = kind(io.BytesIO())
            c.beginForm("f")
            c.setFillColorRGB(1, 0, 0)
            c.addLiteral(literal)
            c.endForm()
            streams.append(c._doc.idToObject["FormXob.f"].stream)
        assert streams[0] == streams[1]


def test_streams_are_zipped_at_a_fast_level_for_our_documents_only() -> None:
    import zlib

    from reportlab.pdfbase import pdfdoc

    default = pdfdoc.PDFZCompress
    zipped = render(sample_invoice(3))
    assert pdfdoc.PDFZCompress is default and type(default) is pdfdoc.PDFStreamFilterZCompress
    # head form (no void form: not voided), page; font file and ToUnicode of the shared subset and of the
    # document's own
    assert zipped.count(b"/FlateDecode") == 6
    assert b"/FlateDecode" not in render_invoice_pdf(sample_invoice(3), "https://x.example", compress=False)
    raw = b"0 0 m 10 10 l S " * 500
    assert _FLATE.encode(raw) == zlib.compress(raw, ZLIB_LEVEL) != zlib.compress(raw)
    buf = io.BytesIO()  # any other reportlab document keeps reportlab's filter (zlib's default level)
    c = Canvas(buf)
    c.drawString(10, 10, "x")
    c.save()
    assert b"/FlateDecode" in buf.getvalue()
    assert pdfdoc.PDFZCompress is default


def test_address_block_and_barcode_pieces_draw_on_any_canvas() -> None:
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=(100 * mm, 150 * mm))
    assert BUYER.address is not None
    lines = pdf.address_lines(BUYER.address)
    assert lines == ["邮编 518057", "广东省深圳市", "科技园南区深南大道 9999 号", "张三"]
    bottom = pdf.draw_address_block(c, 10 * mm, 120 * mm, 40 * mm, lines, size=11)
    assert bottom < 120 * mm - 4 * 11  # the street wraps in 40 mm
    pdf.draw_code128(c, 10 * mm, 20 * mm, "RR473124829CN", 70 * mm, 15 * mm)
    pdf.draw_qr(c, 60 * mm, 60 * mm, "https://example.cn/t/RR473124829CN", 30 * mm)
    c.save()
    text = pypdf_pages(buf.getvalue())[0]
    assert "科技园南区" in text and "张三" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_chromium_shows_the_page_and_its_qr_code(tmp_path: Path) -> None:
    """Chromium's own PDF viewer (PDFium, as on most phones' browsers) draws the page: the QR code read
    off its screenshot is the verify URL, and the red title of a credit note is there."""
    sync_api = pytest.importorskip("playwright.sync_api")
    inv = sample_invoice(4, kind="credit_note")
    url = verify_url(BASE_URL, inv)
    (tmp_path / "invoice.pdf").write_bytes(render_invoice_pdf(inv, url))
    (tmp_path / "view.html").write_text(
        '<body style="margin:0"><embed src="invoice.pdf#toolbar=0&zoom=200" '
        'type="application/pdf" width="1000" height="1300"></body>'
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 1300})
        page.goto((tmp_path / "view.html").as_uri())
        shot, reds = None, 0
        for _ in range(120):  # the viewer loads and draws progressively (slowly on a loaded machine: up to a minute)
            page.wait_for_timeout(500)
            shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
            reds = red_pixels(shot)
            if "QRCode" in decoded(shot) and reds > 2000:
                break
        browser.close()
    assert shot is not None and decoded(shot).get("QRCode") == url
    assert reds > 2000  # 电子发票（红字） in red


def red_pixels(image: Image.Image) -> int:
    px = image.tobytes()
    return sum(1 for i in range(0, len(px), 3) if px[i] > 150 and px[i + 1] < 60 and px[i + 2] < 60)


@given(invoices())
@settings(max_examples=25)  # each example renders and reads back a PDF of up to 200 lines
def test_random_invoices_render_with_every_amount(inv: Invoice) -> None:
    pdf = render(inv)
    pages = pypdf_pages(pdf)
    text = "\n".join(pages)
    for line in inv.lines:
        assert money_str(line.amount) in text
    assert f"共 {len(pages)} 页" in pages[-1]
    assert money_str(inv.totals.total) in pages[-1]


@needs_poppler
def test_save_png_renders_for_a_person_to_look_at() -> None:
    """test-output/pdf/*.png (git-ignored): open them after a layout change."""
    OUT.mkdir(parents=True, exist_ok=True)
    cases = {
        "invoice-10-lines": sample_invoice(10),
        "invoice-60-lines": sample_invoice(60),
        "credit-note": sample_invoice(4, kind="credit_note"),
        "voided": sample_invoice(6, status="voided"),
    }
    for name, inv in cases.items():
        for old in OUT.glob(f"{name}*.png"):
            old.unlink()
        (OUT / f"{name}.pdf").write_bytes(render(inv))
        subprocess.run(["pdftoppm", "-r", "110", "-png", str(OUT / f"{name}.pdf"), str(OUT / name)], check=True)
    assert (OUT / "invoice-60-lines-1.png").exists() and (OUT / "voided-1.png").exists()
