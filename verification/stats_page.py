"""The closed loop for the whole service, in public: `GET /stats` (the page, zh-CN with English beside, charts
drawn as SVG on the server) and `GET /v1/stats/public` (the same figures as JSON).

The figures are read from the closed-loop rollup (a few hundred rows at any size of the service) at most once
per `ttl_s` in each process, however many ask: a flood of requests costs a dictionary lookup each, and caches in
front may keep the answer as long (`Cache-Control: public`). Only cells covering at least `figures.K_MIN`
issuers are in either (see `invoicing.figures`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache
from litestar import Response, get
from litestar.di import NamedDependency

from invoicing import formats, rollup_repository
from invoicing.figures import Cell, Figures, public_figures
from invoicing.model import PROVINCES, beijing_time
from invoicing.replicas import Reads
from verification.charts import Series, bar_chart, percent
from verification.web import PAGE_HEADERS, TEMPLATES

CACHE_TTL_S = 60


@dataclass
class PublicStats:
    """What the public figures' routes use, provided as `public_stats`: the reads (a replica's, if any) and this
    process's copy of the figures, recomputed at most once per `ttl_s` (one computation at a time)."""

    reads: Reads
    ttl_s: float = CACHE_TTL_S
    _cache: TTLCache[str, dict[str, Any]] = field(init=False)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _page: tuple[dict[str, Any], str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._cache = TTLCache(maxsize=1, ttl=self.ttl_s)

    async def figures(self) -> dict[str, Any]:
        """The public figures, from this process's copy while it is fresh."""
        cached = self._cache.get("figures")
        if cached is not None:
            return cached
        async with self._lock:  # the first of many concurrent askers reads; the rest wait for its answer
            cached = self._cache.get("figures")
            if cached is None:
                rows = await self.reads.run(rollup_repository.cells)
                cells = [Cell(r["month"], r["province"], r["issuers"], Figures.of(r)) for r in rows]
                cached = {"generated_at": formats.rfc3339(datetime.now(UTC)), **public_figures(cells)}
                self._cache["figures"] = cached
            return cached

    def page_of(self, figures: dict[str, Any], draw: Callable[[dict[str, Any]], str]) -> str:
        """The page of `figures`, drawn once per copy of them: the charts of many months cost more to draw than
        the figures cost to keep (at 10 M invoices over 23 months, drawing every time halved the page's rate)."""
        if self._page is None or self._page[0] is not figures:
            self._page = (figures, draw(figures))
        return self._page[1]


def _cache_headers(ttl_s: float) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={int(ttl_s)}"}


@get("/v1/stats/public", tags=["figures"])
async def public_stats_json(public_stats: NamedDependency[PublicStats]) -> Response[dict[str, Any]]:
    """The closed loop of the whole service: issued, amount, verified share, delivered share and returned, by
    month and by (the seller's) province, and in total. A (month, province) cell covering fewer than `k_min`
    issuers is left out of every figure, totals included."""
    return Response(await public_stats.figures(), headers=_cache_headers(public_stats.ttl_s))


def _charts(rows: list[dict[str, Any]], key: str, label: str) -> dict[str, str]:
    """The two charts of one dimension: invoices issued, and the verified and delivered shares."""
    names = [r[label] for r in rows]
    issued = [float(r["invoices"]) for r in rows]
    counts = Series("开具 · Issued", "s-issued", issued, [str(r["invoices"]) for r in rows])
    verified = Series(
        "查验率 · Verified",
        "s-verified",
        [r["verified_share"] for r in rows],
        [percent(r["verified_share"]) for r in rows],
    )
    delivered = Series(
        "投递率 · Delivered",
        "s-delivered",
        [r["delivered_share"] for r in rows],
        [percent(r["delivered_share"]) for r in rows],
    )
    return {
        "issued": bar_chart(
            f"chart-{key}-issued", "开具张数 · Invoices issued", names, [counts], max(issued, default=0)
        ),
        "shares": bar_chart(f"chart-{key}-shares", "查验率与投递率 · Shares", names, [verified, delivered], 1.0),
    }


def _draw(figures: dict[str, Any]) -> str:
    provinces = [{**p, "label": PROVINCES[p["province"]][1]} for p in figures["provinces"]]
    return TEMPLATES.get_template("stats.html").render(
        figures=figures,
        provinces=provinces,
        month_charts=_charts(figures["months"], "month", "month"),
        province_charts=_charts(provinces, "province", "label"),
        percent=percent,
        as_of=beijing_time(formats.parse_rfc3339(figures["generated_at"])),
    )


@get("/stats", tags=["figures"], include_in_schema=False)
async def public_stats_page(public_stats: NamedDependency[PublicStats]) -> Response[str]:
    """The page: totals, then by month and by province, a chart beside each table."""
    html = public_stats.page_of(await public_stats.figures(), _draw)
    # the public pages' headers, but kept by caches: the figures are public and the same for everyone
    return Response(html, media_type="text/html", headers={**PAGE_HEADERS, **_cache_headers(public_stats.ttl_s)})
