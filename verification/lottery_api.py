"""The invoice lottery over JSON (API.md "Consumers"): register an invoice, a period's commitment, draw and
winners, and its entries in cursor pages (what `invoiceloop lottery verify` recomputes a draw from)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter, QueryParameter

from invoicing.errors import BadParameters, FieldError
from invoicing.http import BAD_PARAMETERS, Strict, decode_cursor, encode_cursor
from verification import lottery as rules
from verification import lottery_services as lottery
from verification.lottery_services import Lottery
from verification.model import parse_query
from verification.views import PublicApi, client_address

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
Period = Annotated[str, Parameter(pattern=PERIOD_PATTERN, description="`YYYY-MM` (Asia/Shanghai)")]


class LotteryEntryIn(Strict):
    """`POST /v1/lottery/entries`: the invoice as for a verification, and the mobile a prize is announced to."""

    invoice_code: str | None = None
    invoice_number: str | None = None
    issue_date: str | None = None
    check_code_last6: str | None = None
    total_amount: str | None = None
    phone: str | None = None
    altcha: str | None = None  # a solved proof of work, after a 428


def the_lottery(public_api: PublicApi) -> Lottery:
    """The lottery of this process (the composition root always provides one)."""
    assert public_api.lottery is not None
    return public_api.lottery


def checked_period(text: str) -> str:
    """The path's period; 400 naming `period` when it is no `YYYY-MM` from 2000 on."""
    period = rules.parse_period(text)
    if period is None:
        raise BadParameters(
            errors=[FieldError("period", "must be a month YYYY-MM from 2000-01")], detail=BAD_PARAMETERS
        )
    return period


@post("/v1/lottery/entries", status_code=201, tags=["lottery"], request_max_body_size=16 * 1024)
async def create_lottery_entry(
    request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi], data: JSONBody[LotteryEntryIn]
) -> Response[dict[str, Any]]:
    """Register an invoice for its period's lottery: 201 `{"entry_id", "seq", "period"}`. The invoice is verified
    as `POST /v1/verifications` does (the same rate, locks and 428 challenge), then it must be `valid`, at least
    LOTTERY_MIN_TOTAL including tax and of a period still open (422 otherwise), never registered before (409); a
    phone registers at most 10 invoices an Asia/Shanghai day (429)."""
    lot = the_lottery(public_api)
    query = parse_query(msgspec.structs.asdict(data))
    requester = lot.verifier.requester("json", client_address(request), query.phone)
    entry = await lottery.register(lot, query, requester, altcha=data.altcha)
    return Response(entry.as_json(), status_code=201)


@get("/v1/lottery/draws/{period:str}", tags=["lottery"])
async def lottery_draw(public_api: NamedDependency[PublicApi], period: Period) -> dict[str, Any]:
    """A period's lottery: `status` (open, closed, drawn), the `commitment` (SHA-256 of the seed, published before
    the first entry), `entries_count`, `prizes`; once closed the `entries_root`; once drawn the `seed`, the
    `beacon` and the `winners` in draw order (`tier`, `seq`, `entry_id`). 404 for a period not begun, or closed
    without entries."""
    return await lottery.period_json(the_lottery(public_api), checked_period(period))


@get("/v1/lottery/draws/{period:str}/entries", tags=["lottery"])
async def lottery_entries(
    public_api: NamedDependency[PublicApi],
    period: Period,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    cursor: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """The period's entries in `seq` order, `{"items": [{"seq", "entry_id"}], "next_cursor"}`."""
    rows = await lottery.entries_page(
        the_lottery(public_api), checked_period(period), decode_cursor(cursor) or 0, limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [{"seq": r["seq"], "entry_id": r["entry_id"]} for r in rows],
        "next_cursor": encode_cursor(rows[-1]["seq"]) if more else None,
    }
