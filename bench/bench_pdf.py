"""Invoice PDF speed: our reportlab renderer against WeasyPrint on equivalent HTML, in one run.

    python -m bench.bench_pdf [--seconds 8] [--weasy-pages 6]

Both render the same 10-line invoice (tests/unit/invoice_samples.py): Chinese text in WenQuanYi Zen Hei
(WeasyPrint through @font-face), the verify QR code (segno's SVG) and the Code 128 (python-barcode's SVG).
The two are measured in alternating rounds, so that load from elsewhere on the machine hits both alike;
the ratio is what to read, the absolute figures depend on the machine. Needs the `bench` extra (weasyprint).
"different invoices" renders 200 distinct invoices in turn, so that per-process caches are not flattered.
"""

from __future__ import annotations

import argparse
import html
import io
import time
from collections.abc import Callable
from decimal import Decimal

import segno
from barcode.codex import Code128
from barcode.writer import SVGWriter

from invoicing.formats import verify_url
from invoicing.model import Invoice, LineInput, money_str, plain_str
from invoicing.pdf import barcodes, find_cjk_font, render_invoice_pdf
from tests.unit.invoice_samples import BASE_URL, ITEMS, make_invoice, sample_invoice


def invoice_html(inv: Invoice, url: str) -> str:
    """The same content as our PDF, as an HTML page for WeasyPrint."""
    qr = segno.make(url, error="m", boost_error=False, micro=False).svg_inline(scale=1, border=0)
    buf = io.BytesIO()
    Code128(inv.invoice_code + inv.invoice_number, writer=SVGWriter()).write(
        buf, options={"write_text": False, "module_height": 9, "quiet_zone": 0}
    )
    barcode_svg = buf.getvalue().decode().split("?>", 1)[1].split("]>", 1)[-1]
    e = html.escape
    rows = "".join(
        f"<tr><td>{i}</td><td class=d>{e(line.description)}</td><td>{e(line.unit)}</td>"
        f"<td class=n>{plain_str(line.quantity)}</td><td class=n>{plain_str(line.unit_price, 2)}</td>"
        f"<td class=n>{money_str(line.amount)}</td><td class=n>{plain_str(line.tax_rate * 100)}%</td>"
        f"<td class=n>{money_str(line.tax_amount)}</td></tr>"
        for i, line in enumerate(inv.lines, 1)
    )
    b, s, t = inv.buyer, inv.seller, inv.totals
    return f"""<!doctype html><html lang=zh-CN><head><meta charset=utf-8><style>
@font-face {{ font-family: WQY; src: url(file://{find_cjk_font()}); }}
@page {{ size: A4; margin: 10mm 12mm 15mm; @bottom-center {{ content: "第 " counter(page) " 页 / 共 " counter(pages) " 页";
  font: 7.5pt WQY; color: #9e401f; }} }}
body {{ font: 8pt WQY; color: #000; }} .ink {{ color: #9e401f; }}
header {{ display: flex; justify-content: space-between; align-items: flex-start; height: 42mm; }}
.qr svg {{ width: 30mm; height: 30mm; }} .bc svg {{ width: 56mm; height: 9mm; }}
h1 {{ font-size: 21pt; color: #9e401f; border-bottom: 3px double #9e401f; margin: 6mm 0 2mm; }}
table {{ width: 100%; border-collapse: collapse; border: 1px solid #9e401f; }}
td, th {{ border: 0.6pt solid #9e401f; padding: 1.5mm; vertical-align: top; }} .n {{ text-align: right; }}
th {{ color: #9e401f; font-weight: normal; }} thead {{ display: table-header-group; }}
</style></head><body>
<header><div class=qr>{qr}<div class=ink>扫码查验 / Scan to verify</div></div>
<div><h1>电子发票</h1><div class=ink>e-Invoice</div></div>
<div><div class=bc>{barcode_svg}</div><div>发票代码 Code {inv.invoice_code}</div><div>发票号码 No. {inv.invoice_number}</div>
<div>开票日期 Date {inv.issue_date:%Y年%m月%d日}</div><div>校验码 Check code {inv.check_code}</div></div></header>
<table><tr><td class=ink>购买方 Buyer</td><td>名称 {e(b.name)}<br>纳税人识别号 {e(b.tax_id or "")}<br>电话 {e(b.phone or "")}</td>
<td class=ink>销售方 Seller</td><td>名称 {e(s.name)}<br>纳税人识别号 {e(s.tax_id)}<br>地址 {e(s.address)}<br>电话 {e(s.phone or "")}</td></tr></table>
<table><thead><tr><th>序号</th><th>项目名称 Item</th><th>单位</th><th>数量</th><th>单价</th><th>金额</th><th>税率</th><th>税额</th></tr></thead>
<tbody>{rows}<tr><td></td><td>合计 Total</td><td></td><td></td><td></td><td class=n>¥{money_str(t.total_amount)}</td><td></td>
<td class=n>¥{money_str(t.total_tax)}</td></tr></tbody></table>
<table><tr><td class=ink>价税合计 Total incl. tax</td><td>（大写）{e(inv.total_in_words)}</td><td class=n>（小写）¥{money_str(t.total)}</td></tr>
<tr><td class=ink>备注 Remarks</td><td colspan=2>交付方式 Delivery：电子 Electronic {e(inv.remarks)}</td></tr></table>
</body></html>"""


def varied_invoices(count: int) -> list[Invoice]:
    """`count` invoices like the sample, each with its own number, check code and quantities (so its own
    figures, amount in words, QR code and barcode): the renderer's per-process caches (glyphs, label
    strings) cannot serve a whole invoice from what an identical one left behind."""
    invoices = []
    for k in range(count):
        items = [
            LineInput(desc, unit, Decimal(qty) + k % 7, Decimal(price) + Decimal(k) / 100, Decimal(rate))
            for desc, unit, qty, price, rate in (ITEMS * 2)[:10]
        ]
        invoices.append(make_invoice(items, number=k + 3, check_code=f"{7919 * k:020d}"))
    return invoices


def timed(fn: Callable[[], bytes], *, count: int | None = None, seconds: float | None = None) -> tuple[int, float]:
    """Call `fn` `count` times, or for about `seconds`; (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    while (count is not None and calls < count) or (seconds is not None and time.perf_counter() - start < seconds):
        fn()
        calls += 1
    return calls, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time given to our renderer, in all rounds")
    parser.add_argument("--weasy-pages", type=int, default=6, help="WeasyPrint renders, in all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import weasyprint  # the bench extra; imported late so `--help` works without it

    inv = sample_invoice(10)
    url = verify_url(BASE_URL, inv)
    page = invoice_html(inv, url)

    def ours() -> bytes:
        return render_invoice_pdf(inv, url)

    varied = [(other, verify_url(BASE_URL, other)) for other in varied_invoices(200)]
    turn = iter(range(1 << 62))

    def ours_varied() -> bytes:
        other, other_url = varied[next(turn) % len(varied)]
        return render_invoice_pdf(other, other_url)

    def ours_unzipped() -> bytes:
        return render_invoice_pdf(inv, url, compress=False)

    def weasy() -> bytes:
        return weasyprint.HTML(string=page).write_pdf()  # type: ignore[no-any-return]

    runs = {"ours": ours, "ours_varied": ours_varied, "ours_unzipped": ours_unzipped, "weasy": weasy}
    sizes = {name: len(fn()) for name, fn in runs.items()}  # also warms up fonts on both sides
    totals = {name: [0, 0.0] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            calls, elapsed = (
                timed(fn, count=max(1, args.weasy_pages // args.rounds))
                if name == "weasy"
                else timed(fn, seconds=args.seconds / args.rounds / 2)
            )
            totals[name][0] += calls
            totals[name][1] += elapsed
    rate = {name: calls / elapsed for name, (calls, elapsed) in totals.items()}
    qr = "zxing-cpp" if barcodes.zxingcpp is not None else "segno"
    print(f"10-line invoice, one A4 page; QR code encoded by {qr}")
    for name, label in (
        ("ours", "ours (reportlab, compressed)"),
        ("ours_varied", "ours, 200 different invoices"),
        ("ours_unzipped", "ours, compress=False"),
        ("weasy", "WeasyPrint"),
    ):
        print(f"{label:30} {rate[name]:8.2f} pages/s  {sizes[name]:>7,} bytes  ({totals[name][0]} pages)")
    print(
        f"{'ratio ours / WeasyPrint':30} {rate['ours'] / rate['weasy']:8.1f} x"
        f"  (different invoices: {rate['ours_varied'] / rate['weasy']:.1f} x;"
        f" compress=False: {rate['ours_unzipped'] / rate['weasy']:.1f} x)"
    )


if __name__ == "__main__":
    main()
