"""The public figures' rules (invoicing.figures) and the server-drawn charts (verification.charts)."""

from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from invoicing.figures import K_MIN, Cell, Figures, public_figures
from verification.charts import Series, bar_chart

MONTHS = ["2026-01", "2026-02", "2026-03"]
PROVINCES = ["11", "44", "65"]

figures = st.builds(
    lambda issued, voided, verified, postal, delivered, cents: Figures(
        invoices=issued,
        live=issued - min(voided, issued),
        amount=Decimal(cents) / 100,
        verified=min(verified, issued - min(voided, issued)),
        postal=postal,
        delivered=min(delivered, postal),
    ),
    st.integers(0, 1000),
    st.integers(0, 50),
    st.integers(0, 1000),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 10**9),
)
cells = st.lists(
    st.builds(Cell, st.sampled_from(MONTHS), st.sampled_from(PROVINCES), st.integers(1, 6), figures),
    unique_by=lambda c: (c.month, c.province),
)


@given(cells)
def test_every_public_figure_is_a_sum_of_cells_of_at_least_k_issuers(grid: list[Cell]) -> None:
    public = public_figures(grid)
    shown = [c for c in grid if c.issuers >= K_MIN]
    total = sum((c.figures for c in shown), Figures())
    assert public["total"] == total.public()
    for dimension, key in (("months", "month"), ("provinces", "province")):
        rows = public[dimension]
        assert {r[key] for r in rows} == {getattr(c, key) for c in shown}
        assert sum(r["invoices"] for r in rows) == public["total"]["invoices"]
        assert sum(Decimal(r["amount"]) for r in rows) == Decimal(public["total"]["amount"])
        for r in rows:
            covered = [c for c in shown if getattr(c, key) == r[key]]
            assert r == {**r, **sum((c.figures for c in covered), Figures()).public()}


@given(figures)
def test_shares_stay_between_0_and_1(f: Figures) -> None:
    assert 0 <= f.verified_share <= 1 and 0 <= f.delivered_share <= 1


def test_a_cell_of_two_issuers_is_nowhere() -> None:
    big = Cell("2026-01", "44", 3, Figures(invoices=10, live=10, amount=Decimal("100.00")))
    small = Cell("2026-01", "65", 2, Figures(invoices=1, live=1, amount=Decimal("17577.76")))
    public = public_figures([big, small])
    assert "17577.76" not in str(public) and "65" not in [p["province"] for p in public["provinces"]]
    assert public["total"]["invoices"] == 10 and public["months"][0]["invoices"] == 10


def test_chart_escapes_its_labels_and_carries_each_value() -> None:
    svg = bar_chart("c", "<t>", ["<b>", "x"], [Series("s", "s-issued", [2.0, 1.0], ["2", "1"])], 2.0)
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&lt;t&gt;" in svg
    assert re.findall(r'data-value="([0-9.]+)"', svg) == ["2.0", "1.0"]
    assert "style=" not in svg and "<script" not in svg  # the page's CSP allows neither
