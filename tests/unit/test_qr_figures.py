"""A QR link's figures against the record (issue 12, item 5): which differ, and the headline that names them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from verification.model import differing_text, qr_figures_differing

RECORD = {"issue_date": "2026-11-27", "total_amount": "200.00", "total_tax": "26.00", "total": "226.00"}
LINK = {"d": "20261127", "a": "200.00", "x": "26.00", "t": "226.00"}


def test_the_same_figures_differ_in_nothing() -> None:
    assert qr_figures_differing(LINK, RECORD) == ()
    assert qr_figures_differing({}, RECORD) == ()  # a figure the link does not state is not compared


def test_an_altered_total_is_named() -> None:
    assert qr_figures_differing({**LINK, "t": "114.70"}, RECORD) == ("total",)
    assert qr_figures_differing({**LINK, "d": "20261128", "a": "1.00"}, RECORD) == ("issue_date", "total_amount")
    assert qr_figures_differing({**LINK, "x": "lots"}, RECORD) == ("total_tax",)  # unreadable: not the record's


def test_the_headline_names_the_figure_in_both_languages() -> None:
    zh, en = differing_text(("total",))
    assert zh == "查验不一致：二维码中的价税合计与记录不符"
    assert en == "Mismatch: the QR code's total incl. tax differs from our records"
    zh, en = differing_text(("issue_date", "total_amount"))
    assert "开票日期、金额" in zh and "issue date, amount excl. tax differ" in en


@given(st.decimals(min_value=-(10**6), max_value=10**6, places=2))
def test_any_other_total_differs(total: object) -> None:
    stated = f"{total:.2f}"
    assert (qr_figures_differing({"t": stated}, RECORD) == ()) == (stated == "226.00")
