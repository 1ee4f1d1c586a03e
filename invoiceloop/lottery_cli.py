"""`invoiceloop lottery draw | verify`: draw a closed period (FORMATS.md "Lottery") and publish it, texting the
winners; and anyone's check of a published draw from the public endpoints alone."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from invoiceloop.errors import CliError
from invoiceloop.settings import Settings
from invoicing import db, sms_outbox
from invoicing.errors import Conflict, NotFound
from invoicing.queue import Queue
from verification import lottery as rules
from verification.lottery_services import draw

FETCH_TIMEOUT_S = 30
PAGE = 500


def _period(text: str) -> str:
    period = rules.parse_period(text)
    if period is None:
        raise CliError(f"--period {text!r} must be a month YYYY-MM, e.g. 2026-11")
    return period


def _beacon(text: str | None) -> bytes:
    if not text:
        return b""
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CliError("--beacon must be hexadecimal (the bytes of a public random value)") from None


def cmd_lottery_draw(args: argparse.Namespace, settings: Settings) -> int:
    """Draw a closed period, publish seed, beacon, entries root and winners; the winners' texts go through the
    SMS outbox written in the same transaction (the worker sends them)."""
    period, beacon = _period(args.period), _beacon(args.beacon)

    async def run() -> None:
        pool = await db.create_pool(settings.require_database_url(), min_size=1, max_size=2)
        queue = Queue(settings.redis)
        try:
            result = await draw(pool, period, settings.lottery_prizes, beacon, datetime.now(UTC))
            await sms_outbox.nudge(queue, result.outbox_ids)
        except (Conflict, NotFound) as exc:
            raise CliError(exc.detail) from None
        finally:
            await queue.close()
            await pool.close()
        summary = {
            "period": period,
            "entries_count": result.entries,
            "entries_root": result.root.hex(),
            "beacon": beacon.hex(),
            "winners": [{"tier": w.tier, "seq": w.seq, "entry_id": w.entry_id} for w in result.winners],
            "texts_queued": len(result.outbox_ids),
        }
        print(json.dumps(summary, ensure_ascii=False, indent=2))

    asyncio.run(run())
    return 0


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - the operator's URL
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise CliError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(f"cannot read {url}: {exc}") from None


def fetch_public(base_url: str, period: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The period's published draw and all its entries (following the cursor pages)."""
    base = base_url.rstrip("/") + f"/v1/lottery/draws/{period}"
    published = _get(base)
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        page = _get(base + "/entries?" + urllib.parse.urlencode(query))
        entries += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return published, entries


def check_draw(published: dict[str, Any], entries: list[dict[str, Any]]) -> list[str]:
    """What does not hold in a published draw, recomputed from it and its entries alone (empty: it matches)."""
    if published.get("status") != "drawn":
        return [f"period {published.get('period')} is not drawn (status {published.get('status')})"]
    problems: list[str] = []
    seed, beacon = bytes.fromhex(published["seed"]), bytes.fromhex(published["beacon"])
    if hashlib.sha256(seed).hexdigest() != published["commitment"]:
        problems.append("the seed does not hash to the commitment published before the first entry")
    if [e["seq"] for e in entries] != list(range(1, len(entries) + 1)):
        problems.append("the entries are not numbered 1..N in order")
    if len(entries) != published["entries_count"]:
        problems.append(f"{len(entries)} entries listed, entries_count says {published['entries_count']}")
    ids = [str(e["entry_id"]) for e in entries]
    prizes = rules.prizes_from_json(published["prizes"])
    root, winners = rules.winners_of(seed, beacon, ids, prizes)
    if root.hex() != published["entries_root"]:
        problems.append(f"the entries' root is {root.hex()}, the published entries_root {published['entries_root']}")
    expected = [{"tier": w.tier, "seq": w.seq, "entry_id": w.entry_id} for w in winners]
    if expected != published["winners"]:
        problems.append(f"the winners recomputed are {expected}, the published ones {published['winners']}")
    return problems


def cmd_lottery_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Recompute a published draw from the public endpoints alone: exit 0 when it matches, 1 when it does not."""
    period = _period(args.period)
    published, entries = fetch_public(args.url, period)
    try:
        problems = check_draw(published, entries)
    except (KeyError, TypeError, ValueError) as exc:
        problems = [f"the published draw is not readable: {type(exc).__name__}: {exc}"]
    if problems:
        for problem in problems:
            print(f"MISMATCH: {problem}", file=sys.stderr)
        return 1
    print(
        f"OK: the {period} draw matches: {len(entries)} entries, root {published['entries_root']}, "
        f"{len(published['winners'])} winners recomputed from the seed (commitment checked) and beacon"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`lottery draw` and `lottery verify`."""
    lottery = sub.add_parser("lottery", help="the invoice lottery").add_subparsers(dest="action", required=True)
    drawing = lottery.add_parser("draw", help="draw a closed period, publish it, text the winners")
    drawing.add_argument("--period", required=True, help="YYYY-MM")
    drawing.add_argument("--beacon", help="hex bytes of a public random value named at draw time")
    drawing.set_defaults(handler=cmd_lottery_draw)
    check = lottery.add_parser("verify", help="recompute a published draw from the public endpoints alone")
    check.add_argument("--url", required=True, help="the service's base URL")
    check.add_argument("--period", required=True, help="YYYY-MM")
    check.set_defaults(handler=cmd_lottery_verify)
