"""Delivering issuers' webhooks (the worker's side): fan events out into messages, send each message signed, log
every try, retry on the schedule, disable an endpoint that keeps failing.

At least once. A message is taken under a lease (`sending`, `claimed_at`) before the request; a worker killed
mid-request leaves it `sending`, and once the lease (longer than any request may last) runs out the sweep hands it
to another job, which sends it again with the same `webhook-id`: receivers deduplicate on it (Standard Webhooks).

Where a request may go (server-side request forgery). The host is resolved here, every address it resolves to is
checked (`webhooks.refusal`: loopback, private, link-local, CGNAT, multicast, metadata, IPv4-mapped forms), and the
connection goes to the checked address (the URL's host replaced by it, with `Host` and the TLS SNI name kept), so
there is no second lookup that DNS rebinding could answer differently. Redirects are never followed: a 3xx is a
failed try ("redirects are not followed"), so no hop needs checking and an endpoint cannot bounce the worker
inward. Proxies from the environment are ignored (they would connect elsewhere than checked).

A slow receiver never holds the worker: connect, write and read timeouts and an overall bound on each try
(WEBHOOK_TIMEOUT_S), at most WEBHOOK_ENDPOINT_CONCURRENCY tries in flight per endpoint (counted in the database,
across jobs and workers), each endpoint sent to by jobs of its own, and at most `BODY_CAP` bytes of an answer
read."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from arq import ArqRedis

from invoicing import webhook_repository as repo
from invoicing import webhooks
from invoicing.queue import DELIVER_WEBHOOKS, FAN_OUT_WEBHOOKS, Queue

log = logging.getLogger("invoiceloop.webhooks")
BODY_CAP = 1024  # bytes of an answer read (an excerpt of a refusal goes into the log)
FAN_OUT_LIMIT = 500
SWEEP_LIMIT = 500
JOB_BUDGET_S = 20.0  # a delivery job takes no new messages after this long; the sweep starts another


@dataclass(frozen=True)
class HookConfig:
    """Delivery settings (README "Configuration")."""

    allow_private: bool = False  # WEBHOOK_ALLOW_PRIVATE: tests only
    timeout_s: float = 10.0  # WEBHOOK_TIMEOUT_S: one try, everything included
    in_flight: int = 4  # WEBHOOK_ENDPOINT_CONCURRENCY: tries in flight per endpoint
    schedule_s: tuple[float, ...] = webhooks.DEFAULT_RETRY_SCHEDULE_S  # WEBHOOK_RETRY_SCHEDULE_S
    disable_after_s: float = webhooks.DEFAULT_DISABLE_AFTER_S  # WEBHOOK_DISABLE_AFTER_S
    log_days: int = 30  # WEBHOOK_LOG_DAYS: events, messages and the delivery log are kept this long

    @property
    def lease_s(self) -> float:
        """A message `sending` this long lost its worker: well past the try's own bound."""
        return 2 * self.timeout_s + 10

    @property
    def job_timeout_s(self) -> float:
        """arq's bound on a delivery job: its budget for taking messages plus one last try."""
        return JOB_BUDGET_S + self.timeout_s + 10


class Refused(Exception):
    """The request is not made: the address is not one a delivery may reach."""


async def resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to for `host`: resolved once, every address checked (unless `allow_private`)."""
    literal = webhooks.ip_literal(host)
    if literal is not None:
        found: list[webhooks.Address] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"the host name does not resolve ({exc.strerror or type(exc).__name__})") from None
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not found:
        raise Refused("the host name resolves to no address")
    if not allow_private:
        for address in found:
            why = webhooks.refusal(address)
            if why is not None:
                raise Refused(f"refused: the host resolves to {why}")
    return str(found[0])


def new_client(config: HookConfig) -> httpx.AsyncClient:
    """The worker's one client: no redirects, no proxies from the environment, bounded steps and pool."""
    timeout = httpx.Timeout(config.timeout_s, connect=min(5.0, config.timeout_s))
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
    )


async def post(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: str, config: HookConfig
) -> tuple[int | None, str | None]:
    """One try: (status code, None) on a 2xx; (status code or None, why) otherwise. Never raises."""
    try:
        async with asyncio.timeout(config.timeout_s):
            return await _post(client, httpx.URL(url), headers, body, config)
    except Refused as exc:
        return None, str(exc)
    except TimeoutError:
        return None, f"no answer within {config.timeout_s:g} s"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200] or 'connection failed'}"


async def _post(
    client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str], body: str, config: HookConfig
) -> tuple[int | None, str | None]:
    port = url.port or (443 if url.scheme == "https" else 80)
    address = await resolve(url.host, port, config.allow_private)
    target = url.copy_with(host=address)
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    request = client.build_request(
        "POST", target, content=body.encode(), headers={**headers, "host": url.netloc.decode()}, extensions=extensions
    )
    response = await client.send(request, stream=True)
    try:
        excerpt = await _excerpt(response)
    finally:
        await response.aclose()
    if 200 <= response.status_code < 300:
        return response.status_code, None
    if response.is_redirect:
        return response.status_code, "redirects are not followed: give the final URL"
    return response.status_code, f"answered {response.status_code}" + (f": {excerpt}" if excerpt else "")


async def _excerpt(response: httpx.Response) -> str:
    """At most `BODY_CAP` bytes of the answer, as text (the rest is never read)."""
    taken = b""
    async for chunk in response.aiter_raw():
        taken += chunk
        if len(taken) >= BODY_CAP:
            break
    return taken[:BODY_CAP].decode(errors="replace")[:200].strip()


def _secrets(msg: Any) -> list[str]:
    return [msg["secret"], *([msg["old_secret"]] if msg["old_secret"] else [])]


async def _try(pool: asyncpg.Pool, client: httpx.AsyncClient, config: HookConfig, msg: Any) -> bool:
    """Send one claimed message and settle it; True when delivered."""
    body = webhooks.body_of(msg["type"], msg["created_at"], msg["data"])  # the pool decodes jsonb
    started = datetime.now(UTC)
    headers = webhooks.signed_headers(msg["webhook_id"], started, body, _secrets(msg))
    clock = time.perf_counter()
    code, error = await post(client, msg["url"], headers, body, config)
    duration_ms = round((time.perf_counter() - clock) * 1000)
    async with pool.acquire() as conn:
        if error is None and code is not None:
            await repo.mark_delivered(conn, msg, started, code, duration_ms)
            return True
        retry = webhooks.retry_in_s(msg["attempts"], config.schedule_s)
        disabled = await repo.mark_failed(
            conn, msg, started, (code, duration_ms, error or ""), retry, config.disable_after_s
        )
    log.warning("webhook %s try %s failed: %s", msg["webhook_id"], msg["attempts"], error)
    if disabled:
        log.warning("webhook endpoint disabled after failing for %.0f s", config.disable_after_s)
    return False


async def deliver(pool: asyncpg.Pool, client: httpx.AsyncClient, config: HookConfig, endpoint_id: str) -> int:
    """The `deliver_webhooks` job: send the endpoint's due messages, at most `in_flight` at once, until none is
    due or the job's budget is spent; how many were delivered."""
    key = uuid.UUID(endpoint_id)
    delivered = 0
    deadline = time.monotonic() + JOB_BUDGET_S
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            batch = await repo.claim(conn, key, config.lease_s, config.in_flight)
        if not batch:
            break
        results = await asyncio.gather(*(_try(pool, client, config, msg) for msg in batch))
        delivered += sum(results)
    return delivered


def job_id(endpoint_id: uuid.UUID | str, stamp: str) -> str:
    """The arq id of a delivery job (arq refuses a known id: each nudge and sweep gives its own stamp)."""
    return f"webhooks:{endpoint_id}:{stamp}"


async def fan_out(pool: asyncpg.Pool, redis: ArqRedis) -> int:
    """The `fan_out_webhooks` job: waiting events become messages; a delivery job for each endpoint that got
    some. How many endpoints were nudged."""
    nudged = 0
    stamp = uuid.uuid4().hex[:12]
    while True:
        async with pool.acquire() as conn:
            endpoints = await repo.fan_out(conn, FAN_OUT_LIMIT)
        for endpoint_id in endpoints:
            await redis.enqueue_job(DELIVER_WEBHOOKS, str(endpoint_id), _job_id=job_id(endpoint_id, stamp))
        nudged += len(endpoints)
        if len(endpoints) == 0:
            return nudged


async def sweep(pool: asyncpg.Pool, redis: ArqRedis, config: HookConfig) -> int:
    """The cron sweep: fan out what no nudge did (Redis away at the time), then a delivery job for each endpoint
    with a message due (retries, leases of killed workers)."""
    await fan_out(pool, redis)
    async with pool.acquire() as conn:
        endpoints = await repo.due_endpoints(conn, config.lease_s, SWEEP_LIMIT)
    stamp = f"sweep{int(time.time())}"
    for endpoint_id in endpoints:
        await redis.enqueue_job(DELIVER_WEBHOOKS, str(endpoint_id), _job_id=job_id(endpoint_id, stamp))
    return len(endpoints)


PRUNE_BATCH = 5000
PRUNE_ROUNDS = 20  # at most this many batches a run: the hourly run catches up over a few hours


async def prune(pool: asyncpg.Pool, config: HookConfig) -> int:
    """The hourly `prune_webhooks`: what is older than `log_days` goes, in bounded batches."""
    deleted = 0
    for _ in range(PRUNE_ROUNDS):
        async with pool.acquire() as conn:
            count = await repo.prune(conn, config.log_days, PRUNE_BATCH)
        deleted += count
        if count == 0:
            break
    return deleted


class Nudge:
    """After commit, the API asks the worker to fan out an issuer's events at once, when the issuer has any
    endpoint (known per process for `ttl_s`, so an issuer without webhooks costs no query per issue). A nudge lost
    or skipped only waits for the sweep."""

    def __init__(self, pool: asyncpg.Pool, queue: Queue, ttl_s: float = 5.0) -> None:
        self.pool, self.queue, self.ttl_s = pool, queue, ttl_s
        self._known: dict[str, tuple[float, bool]] = {}

    async def after_commit(self, issuer_ids: Sequence[str]) -> None:
        """Nudge the fan-out when one of these issuers has an endpoint. Never raises."""
        try:
            wanted = [i for i in set(issuer_ids) if await self._has_endpoints(i)]
        except Exception:  # the database busy or away: the sweep finds the events (the request has its answer)
            log.debug("webhook nudge skipped", exc_info=True)
            return
        if wanted:
            await self.queue.enqueue(FAN_OUT_WEBHOOKS)

    async def _has_endpoints(self, issuer_id: str) -> bool:
        now = time.monotonic()
        known = self._known.get(issuer_id)
        if known is not None and known[0] > now:
            return known[1]
        async with self.pool.acquire() as conn:
            has = await repo.has_endpoints(conn, issuer_id)
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[issuer_id] = (now + self.ttl_s, has)
        return has

    def forget(self, issuer_id: str) -> None:
        """The issuer's endpoints changed in this process: ask again next time."""
        self._known.pop(issuer_id, None)
