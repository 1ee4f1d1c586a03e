"""SQL of the closed-loop rollup (`loop_rollups`, migrations/0012): the fragments that keep it, each written into
the statement of its cause (issuing, voiding, a first verification, a delivery or return), and the reads of the
figures. A rollup row is one issuer's invoices of one issue month, province (the seller's) and series; see the
migration for why the series is in the key. Named constants and small `async def f(conn, ...)` functions; the
caller owns the transaction."""

from __future__ import annotations

import uuid

import asyncpg

# The rollup key of an invoice `i` joined with its issuer `s`.
_KEY = "i.issuer_id, date_trunc('month', i.issue_date)::date, left(s.region, 2), i.series_id"
_ON_KEY = "ON CONFLICT (issuer_id, month, province, series_id) DO UPDATE SET"

# Issuing (a CTE of chain_repository.INSERT_RECORDS, reading the records it wrote, `inv`): their count and totals
# added to their rows. Rows are upserted in key order; each is the rollup of a series the statement already holds
# the head of.
ROLL_ISSUED = f"""
  INSERT INTO loop_rollups AS t (issuer_id, month, province, series_id, issued, amount, credit_notes, credited,
                                 postal)
  SELECT {_KEY},
         count(*) FILTER (WHERE i.kind = 'invoice'), coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice'), 0),
         count(*) FILTER (WHERE i.kind = 'credit_note'),
         coalesce(sum(i.total) FILTER (WHERE i.kind = 'credit_note'), 0),
         count(*) FILTER (WHERE i.kind = 'invoice' AND i.delivery_method = 'postal')
    FROM inv i JOIN issuers s ON s.id = i.issuer_id
   GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
  {_ON_KEY} issued = t.issued + excluded.issued, amount = t.amount + excluded.amount,
     credit_notes = t.credit_notes + excluded.credit_notes, credited = t.credited + excluded.credited,
     postal = t.postal + excluded.postal"""  # noqa: S608 - fixed SQL fragments, no input

# Voiding invoice $3 (a CTE of chain_repository.INSERT_VOID): it leaves the live figures.
ROLL_VOIDED = """
  UPDATE loop_rollups t SET voided = t.voided + 1, voided_amount = t.voided_amount + i.total,
         postal = t.postal - (i.delivery_method = 'postal')::int
    FROM invoices i JOIN issuers s ON s.id = i.issuer_id
   WHERE i.id = $3 AND i.kind = 'invoice' AND t.issuer_id = i.issuer_id
     AND t.month = date_trunc('month', i.issue_date)::date AND t.province = left(s.region, 2)
     AND t.series_id = i.series_id"""

# A verification batch (CTEs of verification.repository.RECORD, after `v` and `counted`): an invoice whose count
# of matching verifications is now exactly this batch's was verified for the first time; mismatches add up.
# Only invoices with something to add touch their row (once per invoice for `verified`).
ROLL_VERIFIED = f"""
), batch AS (
  SELECT invoice_id, count(*) FILTER (WHERE counted) AS n, count(*) FILTER (WHERE mismatch) AS m
    FROM v WHERE counted OR mismatch GROUP BY invoice_id
), moved AS (
  SELECT c.invoice_id, (b.n > 0 AND c.times_verified = b.n) AS first, b.m
    FROM counted c JOIN batch b ON b.invoice_id = c.invoice_id
   WHERE (b.n > 0 AND c.times_verified = b.n) OR b.m > 0
), rolled AS (
  INSERT INTO loop_rollups AS t (issuer_id, month, province, series_id, verified, mismatches)
  SELECT {_KEY},
         count(*) FILTER (WHERE m.first AND i.kind = 'invoice' AND i.status <> 'voided'), sum(m.m)
    FROM moved m JOIN invoices i ON i.id = m.invoice_id JOIN issuers s ON s.id = i.issuer_id
   GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
  {_ON_KEY} verified = t.verified + excluded.verified, mismatches = t.mismatches + excluded.mismatches"""  # noqa: S608 - fixed SQL fragments, no input

# Tracking events (a CTE of delivery.events_repository.UPDATE_ORDERS, after `u`, the new states, and `prev`, the
# orders as they were): an order reaching `delivered` or `returned_to_sender` (both final) counts once.
ROLL_DELIVERED = f"""
  INSERT INTO loop_rollups AS t (issuer_id, month, province, series_id, delivered, returned)
  SELECT {_KEY},
         count(*) FILTER (WHERE u.status = 'delivered'), count(*) FILTER (WHERE u.status = 'returned_to_sender')
    FROM u JOIN prev p ON p.id = u.id JOIN invoices i ON i.id = p.invoice_id JOIN issuers s ON s.id = i.issuer_id
   WHERE u.status IN ('delivered', 'returned_to_sender') AND p.status NOT IN ('delivered', 'returned_to_sender')
   GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
  {_ON_KEY} delivered = t.delivered + excluded.delivered, returned = t.returned + excluded.returned"""  # noqa: S608 - fixed SQL fragments, no input

# ---------------------------------------------------------------- reading the figures

_SUMS = """sum(issued) AS invoices, sum(credit_notes) AS credit_notes, sum(voided) AS voided,
       sum(amount - voided_amount) AS amount, sum(credited) AS credited, sum(issued - voided) AS live,
       sum(verified) AS verified, sum(mismatches) AS mismatches, sum(postal) AS postal,
       sum(delivered) AS delivered, sum(returned) AS returned"""

BY_MONTH = f"""
SELECT to_char(month, 'YYYY-MM') AS month, {_SUMS}
  FROM loop_rollups WHERE ($1::uuid IS NULL OR issuer_id = $1) GROUP BY month ORDER BY month"""  # noqa: S608 - fixed SQL fragments, no input

BY_PROVINCE = f"""
SELECT province, {_SUMS}
  FROM loop_rollups WHERE ($1::uuid IS NULL OR issuer_id = $1) GROUP BY province ORDER BY province"""  # noqa: S608 - fixed SQL fragments, no input

# Pending postal orders no operator serves, by their invoice's month: only pending orders are read (a partial
# index), never the invoices at large.
PENDING_WITHOUT_OPERATOR = """
SELECT to_char(i.issue_date, 'YYYY-MM') AS month, count(*) AS pending_without_operator
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
 WHERE d.status = 'pending' AND ($1::uuid IS NULL OR d.issuer_id = $1)
   AND NOT EXISTS (SELECT 1 FROM operators o WHERE d.province_code = ANY (o.provinces))
 GROUP BY 1"""

# The public page's cells: every (month, province) with how many issuers it covers. Which cells may be shown is
# decided in `invoicing.figures`, from these rows alone.
CELLS = f"""
SELECT to_char(month, 'YYYY-MM') AS month, province, count(DISTINCT issuer_id) AS issuers, {_SUMS}
  FROM loop_rollups GROUP BY month, province ORDER BY month, province"""  # noqa: S608 - fixed SQL fragments, no input


def _issuer(issuer_id: str | None) -> uuid.UUID | None:
    return uuid.UUID(issuer_id) if issuer_id else None


async def by_month(conn: asyncpg.Connection, issuer_id: str | None) -> list[asyncpg.Record]:
    """Figures by issue month (of one issuer, or all)."""
    return list(await conn.fetch(BY_MONTH, _issuer(issuer_id)))


async def by_province(conn: asyncpg.Connection, issuer_id: str | None) -> list[asyncpg.Record]:
    """Figures by the seller's province (of one issuer, or all)."""
    return list(await conn.fetch(BY_PROVINCE, _issuer(issuer_id)))


async def pending_without_operator(conn: asyncpg.Connection, issuer_id: str | None) -> dict[str, int]:
    """Month -> pending postal orders that no operator serves."""
    rows = await conn.fetch(PENDING_WITHOUT_OPERATOR, _issuer(issuer_id))
    return {r["month"]: r["pending_without_operator"] for r in rows}


async def cells(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every (month, province) of the whole service with its issuer count and figures."""
    return list(await conn.fetch(CELLS))


# ---------------------------------------------------------------- the figures computed from the invoices

# What the rollup must equal: the same figures from a scan of every invoice. The migration fills the table with
# it; tests compare against it; the scale benchmark refills the rollup with it after writing its data by COPY.
DIRECT = """
SELECT i.issuer_id, date_trunc('month', i.issue_date)::date AS month, left(s.region, 2) AS province, i.series_id,
       count(*) FILTER (WHERE i.kind = 'invoice') AS issued,
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice'), 0) AS amount,
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status = 'voided') AS voided,
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice' AND i.status = 'voided'), 0) AS voided_amount,
       count(*) FILTER (WHERE i.kind = 'credit_note') AS credit_notes,
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'credit_note'), 0) AS credited,
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND i.delivery_method = 'postal') AS postal,
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND k.times_verified > 0) AS verified,
       coalesce(sum(k.mismatches), 0) AS mismatches,
       count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(d.id) FILTER (WHERE d.status = 'returned_to_sender') AS returned
  FROM invoices i
  JOIN issuers s ON s.id = i.issuer_id
  LEFT JOIN invoice_counts k ON k.invoice_id = i.id
  LEFT JOIN delivery_orders d ON d.invoice_id = i.id
 GROUP BY 1, 2, 3, 4"""

ROLLUP_COLUMNS = (
    "issuer_id, month, province, series_id, issued, amount, voided, voided_amount, credit_notes, credited, postal, "
    "verified, mismatches, delivered, returned"
)
ROLLUP_ROWS = f"SELECT {ROLLUP_COLUMNS} FROM loop_rollups"  # noqa: S608 - fixed SQL fragments, no input
REBUILD = f"DELETE FROM loop_rollups; INSERT INTO loop_rollups ({ROLLUP_COLUMNS}) {DIRECT}"  # noqa: S608 - fixed SQL fragments, no input


async def direct_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The rollup as a scan of every invoice computes it (slow: for tests and checks)."""
    return list(await conn.fetch(DIRECT))


async def rollup_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The rollup as kept."""
    return list(await conn.fetch(ROLLUP_ROWS))


async def rebuild(conn: asyncpg.Connection) -> None:
    """Refill the rollup from the invoices (data written around the issuing path, as the scale data is)."""
    await conn.execute(REBUILD)
