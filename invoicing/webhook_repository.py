"""SQL of issuers' webhooks: endpoints (every query names the issuer: another tenant's endpoint is not found), the
worker's fan-out of events into messages, the lease on a message, and the delivery log. The events themselves are
written by the statements that cause them (`chain_repository`, `verification.repository`,
`delivery.events_repository`). The caller owns the transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

ENDPOINT_COLUMNS = "id, url, events, description, created_at, disabled_at, failing_since, old_secret_until, seq"

# At most $7 endpoints per issuer. The issuer's row is locked first, by a statement of its own in the same
# transaction (`LOCK_ISSUER`), so this statement's snapshot, taken after the lock, counts a concurrent creation.
# NO KEY UPDATE: it does not wait for the issuer's issues in flight (their foreign keys hold KEY SHARE).
LOCK_ISSUER = "SELECT id FROM issuers WHERE id = $1 FOR NO KEY UPDATE"

INSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints (id, issuer_id, url, events, description, secret)
SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT count(*) FROM webhook_endpoints WHERE issuer_id = $2) < $7
RETURNING {ENDPOINT_COLUMNS}"""  # noqa: S608 - constants

LIST_ENDPOINTS = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
 WHERE issuer_id = $1 AND ($2::bigint IS NULL OR seq > $2) ORDER BY seq LIMIT $3"""  # noqa: S608 - constants

GET_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND issuer_id = $2"  # noqa: S608

DELETE_ENDPOINT = "DELETE FROM webhook_endpoints WHERE id = $1 AND issuer_id = $2 RETURNING id"

# The secret in use becomes the old one, signing beside the new one for the overlap; a second rotation within the
# overlap drops the oldest (only the last two secrets ever sign).
ROTATE_SECRET = f"""
UPDATE webhook_endpoints SET old_secret = secret, old_secret_until = now() + make_interval(secs => $4), secret = $3
 WHERE id = $1 AND issuer_id = $2 RETURNING {ENDPOINT_COLUMNS}"""  # noqa: S608 - constants

HAS_ENDPOINTS = "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE issuer_id = $1 AND disabled_at IS NULL)"

LIST_ATTEMPTS = """
SELECT id, webhook_id, event_type, attempt, attempted_at, status_code, duration_ms, error, next_retry_at
  FROM webhook_attempts WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"""


async def insert_endpoint(
    conn: asyncpg.Connection, issuer_id: str, url: str, events: list[str], description: str, secret: str, most: int
) -> asyncpg.Record | None:
    """A new endpoint of this issuer (its row, without the secret); None when it has `most` already. Opens its
    own transaction."""
    owner = uuid.UUID(issuer_id)
    async with conn.transaction():
        await conn.execute(LOCK_ISSUER, owner)
        return await conn.fetchrow(INSERT_ENDPOINT, uuid.uuid4(), owner, url, events, description, secret, most)


async def list_endpoints(conn: asyncpg.Connection, issuer_id: str, after_seq: int | None, limit: int) -> list[Any]:
    """This issuer's endpoints, oldest first; `limit + 1` rows so the caller knows whether a next page exists."""
    return list(await conn.fetch(LIST_ENDPOINTS, uuid.UUID(issuer_id), after_seq, limit + 1))


async def get_endpoint(conn: asyncpg.Connection, issuer_id: str, endpoint_id: uuid.UUID) -> asyncpg.Record | None:
    """This issuer's endpoint, or None (another tenant's too)."""
    return await conn.fetchrow(GET_ENDPOINT, endpoint_id, uuid.UUID(issuer_id))


async def delete_endpoint(conn: asyncpg.Connection, issuer_id: str, endpoint_id: uuid.UUID) -> bool:
    """Delete this issuer's endpoint with its messages and log; False when it is not this issuer's."""
    return await conn.fetchval(DELETE_ENDPOINT, endpoint_id, uuid.UUID(issuer_id)) is not None


async def rotate_secret(
    conn: asyncpg.Connection, issuer_id: str, endpoint_id: uuid.UUID, secret: str, overlap_s: float
) -> asyncpg.Record | None:
    """Give this issuer's endpoint a new secret, the old one kept signing for `overlap_s`; None: not found."""
    return await conn.fetchrow(ROTATE_SECRET, endpoint_id, uuid.UUID(issuer_id), secret, overlap_s)


async def has_endpoints(conn: asyncpg.Connection, issuer_id: str) -> bool:
    """Whether the issuer has an endpoint that is not disabled (the nudge after an issue asks)."""
    return bool(await conn.fetchval(HAS_ENDPOINTS, uuid.UUID(issuer_id)))


async def list_attempts(
    conn: asyncpg.Connection, endpoint_id: uuid.UUID, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """The endpoint's delivery log, newest first (`limit + 1` rows)."""
    return list(await conn.fetch(LIST_ATTEMPTS, endpoint_id, before_id, limit + 1))


# ---------------------------------------------------------------- events of delivery status changes

# The tail of a statement whose CTE `moved` (invoice_id, issuer_id, tracking_number, status, previous, occurred_at,
# signed_by) returns the delivery orders it changed: the issuer's `delivery.status_changed` event of each order whose
# status moved, in the same statement, when the issuer has an endpoint that wants it (`delivery.events_repository`,
# `delivery.repository`, `chain_repository` for a void's cancelled order).
DELIVERY_STATUS_EVENTS = """
INSERT INTO webhook_events (issuer_id, type, data)
SELECT moved.issuer_id, 'delivery.status_changed',
       jsonb_build_object('invoice_id', moved.invoice_id, 'tracking_number', moved.tracking_number,
                          'status', moved.status, 'previous_status', moved.previous,
                          'occurred_at', moved.occurred_at, 'signed_by', moved.signed_by)
  FROM moved
 WHERE moved.status IS DISTINCT FROM moved.previous
   AND EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.issuer_id = moved.issuer_id AND w.disabled_at IS NULL
                  AND 'delivery.status_changed' = ANY (w.events))"""

# ---------------------------------------------------------------- the worker

# Events not fanned out yet become one message per endpoint of their issuer that wants their type (and is not
# disabled). SKIP LOCKED: two fan-outs at once take different events; the UNIQUE (event, endpoint) makes a repeat
# harmless. The endpoints that got messages come back, to be nudged.
FAN_OUT = """
WITH ev AS (
  SELECT id, issuer_id, type FROM webhook_events WHERE NOT fanned_out ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), fan AS (
  INSERT INTO webhook_messages (event_id, endpoint_id)
  SELECT ev.id, e.id FROM ev JOIN webhook_endpoints e
      ON e.issuer_id = ev.issuer_id AND e.disabled_at IS NULL AND ev.type = ANY (e.events)
   ORDER BY ev.id
  ON CONFLICT (event_id, endpoint_id) DO NOTHING
  RETURNING endpoint_id
), done AS (
  UPDATE webhook_events w SET fanned_out = true FROM ev WHERE w.id = ev.id
)
SELECT DISTINCT endpoint_id FROM fan"""

# A message may be taken when it is pending and due, or `sending` under a lease that has run out (its worker died).
DUE_ENDPOINTS = """
SELECT DISTINCT m.endpoint_id FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
 WHERE m.status IN ('pending', 'sending') AND e.disabled_at IS NULL
   AND ((m.status = 'pending' AND m.next_attempt_at <= now())
        OR (m.status = 'sending' AND m.claimed_at < now() - make_interval(secs => $2)))
 LIMIT $1"""

LOCK_ENDPOINT = "SELECT id FROM webhook_endpoints WHERE id = $1 AND disabled_at IS NULL FOR UPDATE"

# Under the endpoint's row lock (taken just before, in the same transaction, so this statement's snapshot sees
# every other claim): at most $3 messages of one endpoint are in flight at once, the live leases included.
CLAIM = """
WITH busy AS (
  SELECT count(*) AS n FROM webhook_messages
   WHERE endpoint_id = $1 AND status = 'sending' AND claimed_at >= now() - make_interval(secs => $2)
), pick AS (
  SELECT m.id FROM webhook_messages m
   WHERE m.endpoint_id = $1 AND m.status IN ('pending', 'sending')
     AND ((m.status = 'pending' AND m.next_attempt_at <= now())
          OR (m.status = 'sending' AND m.claimed_at < now() - make_interval(secs => $2)))
   ORDER BY m.id LIMIT greatest(0, $3 - (SELECT n FROM busy)) FOR UPDATE SKIP LOCKED
)
UPDATE webhook_messages m SET status = 'sending', claimed_at = clock_timestamp(), attempts = m.attempts + 1
  FROM pick, webhook_events ev, webhook_endpoints e
 WHERE m.id = pick.id AND ev.id = m.event_id AND e.id = m.endpoint_id
RETURNING m.id, m.attempts, m.claimed_at, ev.webhook_id, ev.type, ev.data, ev.created_at, e.url, e.secret,
          CASE WHEN e.old_secret_until > now() THEN e.old_secret END AS old_secret"""

# Only the lease holder settles a message: a worker whose lease ran out and was taken over changes nothing.
MARK_DELIVERED = """
WITH m AS (
  UPDATE webhook_messages SET status = 'delivered', claimed_at = NULL
   WHERE id = $1 AND status = 'sending' AND claimed_at = $2 RETURNING id, endpoint_id, attempts
), healthy AS (
  UPDATE webhook_endpoints w SET failing_since = NULL FROM m WHERE w.id = m.endpoint_id AND w.failing_since IS NOT NULL
)
INSERT INTO webhook_attempts (endpoint_id, message_id, webhook_id, event_type, attempt, attempted_at, status_code,
                              duration_ms, error, next_retry_at)
SELECT m.endpoint_id, m.id, $3, $4, m.attempts, $5, $6, $7, $8, NULL FROM m"""

# A failed try: back to pending after $9 seconds, or failed for good ($9 NULL: the schedule is spent). The endpoint
# is failing since its first failed try after its last delivered one; failing for $10 seconds, it is disabled and
# its log says so.
MARK_FAILED = """
WITH m AS (
  UPDATE webhook_messages SET status = CASE WHEN $9::float8 IS NULL THEN 'failed' ELSE 'pending' END,
         next_attempt_at = now() + make_interval(secs => coalesce($9::float8, 0)), claimed_at = NULL
   WHERE id = $1 AND status = 'sending' AND claimed_at = $2 RETURNING id, endpoint_id, attempts
), e AS (
  UPDATE webhook_endpoints w SET failing_since = coalesce(w.failing_since, now()),
         disabled_at = CASE WHEN coalesce(w.failing_since, now()) <= now() - make_interval(secs => $10::float8)
                            THEN now() END
    FROM m WHERE w.id = m.endpoint_id AND w.disabled_at IS NULL
  RETURNING w.id, w.failing_since, w.disabled_at
), notice AS (
  INSERT INTO webhook_attempts (endpoint_id, event_type, error)
  SELECT e.id, 'endpoint.disabled', 'endpoint disabled: every try has failed since '
         || to_char(e.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
         || '; nothing more is sent to it (delete it and create it again once it answers)'
    FROM e WHERE e.disabled_at IS NOT NULL
), logged AS (
  INSERT INTO webhook_attempts (endpoint_id, message_id, webhook_id, event_type, attempt, attempted_at, status_code,
                                duration_ms, error, next_retry_at)
  SELECT m.endpoint_id, m.id, $3, $4, m.attempts, $5, $6, $7, $8,
         CASE WHEN $9::float8 IS NOT NULL THEN now() + make_interval(secs => $9::float8) END FROM m
)
SELECT (SELECT disabled_at IS NOT NULL FROM e) AS disabled"""


# Pruning, oldest first and a bounded batch a statement: the log's lines, then the messages of old events that are
# settled (or pending for a disabled endpoint: nothing sends them), then old events that no message needs.
PRUNE_ATTEMPTS = """
DELETE FROM webhook_attempts WHERE id IN (
  SELECT id FROM webhook_attempts WHERE attempted_at < now() - make_interval(days => $1) ORDER BY attempted_at LIMIT $2)"""

PRUNE_MESSAGES = """
DELETE FROM webhook_messages WHERE id IN (
  SELECT m.id FROM webhook_events e JOIN webhook_messages m ON m.event_id = e.id
   WHERE e.created_at < now() - make_interval(days => $1) AND m.status <> 'sending' ORDER BY e.created_at LIMIT $2)"""

PRUNE_EVENTS = """
DELETE FROM webhook_events WHERE id IN (
  SELECT e.id FROM webhook_events e
   WHERE e.created_at < now() - make_interval(days => $1) AND e.fanned_out
     AND NOT EXISTS (SELECT 1 FROM webhook_messages m WHERE m.event_id = e.id)
   ORDER BY e.created_at LIMIT $2)"""


async def prune(conn: asyncpg.Connection, days: int, batch: int) -> int:
    """Delete up to `batch` rows of each kind older than `days`; how many rows in all."""
    deleted = 0
    for statement in (PRUNE_ATTEMPTS, PRUNE_MESSAGES, PRUNE_EVENTS):
        deleted += int((await conn.execute(statement, days, batch)).split()[-1])
    return deleted


async def fan_out(conn: asyncpg.Connection, limit: int) -> list[uuid.UUID]:
    """Fan up to `limit` waiting events out into messages; the endpoints that got some."""
    return [row["endpoint_id"] for row in await conn.fetch(FAN_OUT, limit)]


async def due_endpoints(conn: asyncpg.Connection, lease_s: float, limit: int) -> list[uuid.UUID]:
    """Endpoints with a message due now (a retry, a lost nudge, a lease that ran out)."""
    return [row["endpoint_id"] for row in await conn.fetch(DUE_ENDPOINTS, limit, lease_s)]


async def claim(conn: asyncpg.Connection, endpoint_id: uuid.UUID, lease_s: float, in_flight: int) -> list[Any]:
    """Take due messages of the endpoint under a lease, at most `in_flight` at once for the endpoint (its live
    leases counted), each with its event and the endpoint's URL and secrets. Opens its own transaction."""
    async with conn.transaction():
        if await conn.fetchval(LOCK_ENDPOINT, endpoint_id) is None:
            return []  # deleted or disabled
        return list(await conn.fetch(CLAIM, endpoint_id, lease_s, in_flight))


async def mark_delivered(conn: asyncpg.Connection, msg: Any, started: datetime, code: int, duration_ms: int) -> None:
    """The receiver answered 2xx: the message is delivered, the endpoint healthy, the try logged."""
    await conn.execute(
        MARK_DELIVERED, msg["id"], msg["claimed_at"], msg["webhook_id"], msg["type"], started, code, duration_ms, None
    )


async def mark_failed(
    conn: asyncpg.Connection,
    msg: Any,
    started: datetime,
    outcome: tuple[int | None, int, str],
    retry_in_s: float | None,
    disable_after_s: float,
) -> bool:
    """A failed try (`outcome`: status code or None, duration in ms, error): retried after `retry_in_s` or
    failed for good (None), logged; True when it got the endpoint disabled."""
    code, duration_ms, error = outcome
    disabled = await conn.fetchval(
        MARK_FAILED,
        msg["id"],
        msg["claimed_at"],
        msg["webhook_id"],
        msg["type"],
        started,
        code,
        duration_ms,
        error[:500],
        retry_in_s,
        disable_after_s,
    )
    return bool(disabled)
