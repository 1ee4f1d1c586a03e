"""Sample invoices for tests and benchmarks: `sample_invoice(...)` and the hypothesis strategy `invoices()`.

Line figures come from `model.compute_line` / `compute_totals`, so every sample is self-consistent.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from hypothesis import strategies as st
from msgspec.structs import replace

from invoicing.model import (
    DEFAULT_TAX_RATES,
    Address,
    Invoice,
    LineInput,
    Party,
    Seller,
    compute_line,
    compute_totals,
)
from invoicing.words import amount_in_words

BASE_URL = "https://verify.invoiceloop.example"
LARGEST = Decimal("9999999999.99")

ITEMS = (
    ("办公椅", "把", "2", "100.00", "0.13"),
    ("A4 复印纸 80g（5 包/箱）", "箱", "3", "129.50", "0.13"),
    ("技术服务费：软件维护与升级（2026 年第四季度）", "项", "1", "12000.00", "0.06"),
    ("不锈钢保温杯 500ml", "个", "12", "45.8", "0.13"),
    ("运输服务", "次", "1", "35.00", "0.09"),
    ("会议室租赁（半天）", "次", "0.5", "1600.00", "0.05"),
    ("LED 台灯 Model X-200 with USB charging port", "台", "4", "89.99", "0.13"),
    ("有机大米 五常稻花香 10kg 真空包装 产地直供", "袋", "7", "138.123456", "0.09"),
    ("咨询服务", "小时", "6.25", "480.00", "0.06"),
    ("图书《发票管理实务》", "本", "20", "58.00", "0"),
)

SELLER = Seller(
    "广州天河云启科技有限公司", "91440101MA5CYB9X2T", "广州市天河区天河路 385 号太古汇一座 2301 室", "+862038880000"
)
BUYER = Party(
    "深圳市南山区海岸城数码贸易有限公司",
    "91440300MA5FQ1234K",
    "+8613800138000",
    "buyer@example.cn",
    Address("张三", "科技园南区深南大道 9999 号", "深圳市", "广东省", "44", "518057"),
)


def make_invoice(
    items: list[LineInput], *, kind: str = "invoice", status: str = "issued", number: int = 1, **overrides: Any
) -> Invoice:
    """An issued invoice (or credit note, negative) whose figures are computed from `items`."""
    sign = -1 if kind == "credit_note" else 1
    lines = tuple(compute_line(item, sign) for item in items)
    totals = compute_totals(lines)
    fields: dict[str, Any] = dict(
        id=f"inv_{number:08d}",
        issuer_id="iss_demo",
        kind=kind,
        series="default",
        invoice_code="440126000111",
        invoice_number=f"{number:08d}",
        issue_date=date(2026, 11, 27),
        issued_at=datetime(2026, 11, 27, 6, 59, 19, tzinfo=UTC),
        status=status,
        seller=SELLER,
        buyer=BUYER,
        currency="CNY",
        lines=lines,
        totals=totals,
        total_in_words=amount_in_words(totals.total),
        check_code="03815246901728364519",
        record_hash="9f2c" * 16,
        prev_hash="0" * 64,
        signature="mQ3vT0c8x4E1wY2-Q_zR" * 4 + "a1B2c3",
        key_id="4f1c2a9d7e3b6a05",
        delivery_method="electronic",
        remarks="",
        voided_at=None,
        void_reason=None,
    )
    if kind == "credit_note":
        fields.update(
            original_invoice_id="inv_00000001",
            original_invoice_code="440126000111",
            original_invoice_number="00000001",
            remarks="退货：部分商品质量问题",
        )
    if status == "voided":
        fields.update(voided_at=datetime(2026, 11, 28, 2, 0, tzinfo=UTC), void_reason="开票信息有误，重新开具")
    fields.update(overrides)
    return Invoice(**fields)


def sample_invoice(lines: int = 10, kind: str = "invoice", status: str = "issued", **overrides: Any) -> Invoice:
    """A realistic invoice with `lines` lines taken in turn from ITEMS."""
    items = []
    for i in range(lines):
        description, unit, quantity, price, rate = ITEMS[i % len(ITEMS)]
        suffix = f" #{i + 1}" if i >= len(ITEMS) else ""  # later rounds of ITEMS are told apart
        items.append(LineInput(description + suffix, unit, Decimal(quantity), Decimal(price), Decimal(rate)))
    return make_invoice(items, kind=kind, status=status, number=2 if kind == "credit_note" else 1, **overrides)


_hanzi = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
_text_chars = st.one_of(_hanzi, _hanzi, st.sampled_from(list("ABCxyz0123456789 -/（），。、：%")))
chinese_text = st.text(_text_chars, min_size=1, max_size=80).map(str.strip).filter(bool)
_PHRASES = (
    "办公用品",
    "技术服务费",
    "（含安装调试、培训）",
    "不锈钢",
    "LED 台灯",
    " 500ml ",
    "Model X-200",
    "、",
    "，",
    "有机大米五常稻花香",
    "年度维护与升级",
    "运输服务",
    "12%",
    "第四季度",
    "国家重点工程建设项目设备采购",
    "supercalifragilisticexpialidocious",
    "《发票管理实务》",
    "；",
    "。",
    "广东省广州市天河区",
)


def _phrase_descriptions(count: int, seed: int = 2026) -> tuple[str, ...]:
    """`count` descriptions of 1 to 25 phrases each, the same every run: long text that wraps over several
    lines of a PDF cell, at no cost to draw."""
    rnd = random.Random(seed)
    return tuple("".join(rnd.choices(_PHRASES, k=rnd.randint(1, 25))).strip() for _ in range(count))


# Descriptions from a pool made once (the sample items and long phrase strings: sampled_from is one cheap
# draw), or short random text for characters nobody thought of. Drawing long random text for each line made
# an invoice cost ~0.1 s to draw, which fails Hypothesis' "too slow" health check on a loaded machine.
DESCRIPTIONS = tuple(item[0] for item in ITEMS) + _phrase_descriptions(40)
descriptions = st.sampled_from(DESCRIPTIONS) | chinese_text
_quantities = st.decimals(Decimal("0.00000001"), Decimal("100000"), places=8) | st.sampled_from(
    [Decimal(1), Decimal(2), Decimal("0.5"), Decimal(1000)]
)


@st.composite
def line_inputs(draw: st.DrawFn) -> LineInput:
    """A line whose amount stays within ±9,999,999,999.99 (and is at least a cent)."""
    quantity = draw(_quantities)
    top = min(LARGEST, (LARGEST / quantity).quantize(Decimal("0.01"), rounding=ROUND_DOWN))
    price = draw(st.decimals(Decimal("0.01"), max(top, Decimal("0.01")), places=2))
    if quantity * price < Decimal("0.005"):
        quantity = Decimal(1)
    rate = draw(st.sampled_from(DEFAULT_TAX_RATES))
    unit = draw(st.sampled_from(["个", "件", "台", "箱", "项", "千克", "平方米", "小时", "pcs"]))
    return LineInput(draw(descriptions) or "商品", unit, quantity, price, rate)


@st.composite
def invoices(draw: st.DrawFn) -> Invoice:
    """Valid random invoices and credit notes: 1 to 200 lines, long Chinese text, amounts up to 9,999,999,999.99.

    Cheap to draw: up to six distinct lines are drawn and repeated in turn to the line count (half the
    invoices have 1 to 12 lines, half 13 to 200, so one and many pages both come often)."""
    distinct = draw(st.lists(line_inputs(), min_size=1, max_size=6))
    count = draw(st.integers(1, 12) | st.integers(13, 200))
    items = [distinct[i % len(distinct)] for i in range(count)]
    kind = draw(st.sampled_from(["invoice", "credit_note"]))
    status = "issued" if kind == "credit_note" else draw(st.sampled_from(["issued", "voided"]))
    buyer = replace(BUYER, name=draw(chinese_text))
    seller = replace(SELLER, name=draw(chinese_text), address=draw(chinese_text))
    remarks = draw(st.text(_text_chars, max_size=300))
    return make_invoice(
        items,
        kind=kind,
        status=status,
        number=2 if kind == "credit_note" else 1,
        buyer=buyer,
        seller=seller,
        remarks=remarks,
        delivery_method=draw(st.sampled_from(["electronic", "postal"])),
    )
