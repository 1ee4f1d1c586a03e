"""The arq worker: every job and cron sweep of the service and the worker's options, in one place, and the
one-process `run` (HTTP service and worker together). Jobs are thin: each takes what it needs from the typed
`WorkerContext` and calls its package."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from arq import ArqRedis, cron, func
from arq.worker import Worker
from redis.exceptions import RedisError

from delivery import jobs as delivery_jobs
from invoiceloop.app import create_app, log_signer, make_sms
from invoiceloop.settings import Settings
from invoicing import db, mail_outbox, sms_outbox, transparency, webhook_sender
from invoicing.mail_message import KINDS
from invoicing.mail_outbox import Mailer
from invoicing.queue import (
    DELIVER_WEBHOOKS,
    FAN_OUT_MAIL,
    FAN_OUT_SMS,
    FAN_OUT_WEBHOOKS,
    FULFIL_ORDERS,
    SEND_MAIL,
    SEND_SMS,
    arq_client,
)
from invoicing.sms_outbox import SmsChannel

# arq's own options for every job; a job that needs less time says so in its `func(..., timeout=)` below.
log = logging.getLogger("invoiceloop.worker")

WORKER_OPTIONS: dict[str, Any] = {"max_jobs": 50, "job_timeout": 60, "keep_result": 0}


@dataclass(frozen=True)
class WorkerContext:
    """What jobs use, built at worker start-up (arq's own `ctx` carries it under "app")."""

    pool: asyncpg.Pool
    sms: SmsChannel
    redis: ArqRedis
    mail: Mailer | None = None  # None without SMTP_URL: the buyer's mails wait in the outbox
    hooks: webhook_sender.HookConfig = field(default_factory=webhook_sender.HookConfig)
    http: httpx.AsyncClient | None = None  # the issuers' webhooks' client (no redirects, no proxies)
    sms_lease_s: float = sms_outbox.STALE_SENDING_S  # SMS_LEASE_S


def _app(ctx: dict[str, Any]) -> WorkerContext:
    app = ctx["app"]
    assert isinstance(app, WorkerContext)
    return app


async def ping(ctx: dict[str, Any]) -> str:
    """A job that only proves the worker is alive."""
    return "pong"


async def send_sms(ctx: dict[str, Any], outbox_id: int) -> str:
    """Send one SMS outbox row."""
    app = _app(ctx)
    return await sms_outbox.send(app.pool, app.sms, outbox_id, int(ctx.get("job_try", 1)), app.sms_lease_s)


async def fan_out_sms(ctx: dict[str, Any], kind: str, invoice_ids: list[str]) -> int:
    """One `send_sms` job for each pending buyer's text of these records."""
    app = _app(ctx)
    return await sms_outbox.fan_out(app.pool, app.redis, kind, invoice_ids)


async def sweep_sms(ctx: dict[str, Any]) -> int:
    """Re-enqueue SMS outbox rows whose job was lost."""
    app = _app(ctx)
    return await sms_outbox.sweep(app.pool, app.redis, app.sms_lease_s)


async def send_mail(ctx: dict[str, Any], kind: str, invoice_id: str) -> str:
    """Send one of the buyer's mails (the outbox row of this record and kind)."""
    app = _app(ctx)
    if app.mail is None:
        return "SMTP_URL is not set"
    mail_kind = KINDS.get(kind)
    if mail_kind is None:
        return "unknown kind"
    return await mail_outbox.send(app.pool, app.mail, mail_kind, invoice_id)


async def fan_out_mail(ctx: dict[str, Any], kind: str, invoice_ids: list[str]) -> int:
    """One `send_mail` job for each record of a batch."""
    return await mail_outbox.fan_out(_app(ctx).redis, kind, invoice_ids)


async def sweep_mail(ctx: dict[str, Any]) -> int:
    """Re-enqueue the buyer's mails whose job was lost or whose retry is due."""
    app = _app(ctx)
    return 0 if app.mail is None else await mail_outbox.sweep(app.pool, app.redis, app.mail.lease_s)


async def fulfil_orders(ctx: dict[str, Any], invoice_ids: list[str]) -> int:
    """Fulfil the delivery orders of freshly issued postal invoices."""
    return await delivery_jobs.fulfil_orders(_app(ctx).pool, invoice_ids)


async def sweep_orders(ctx: dict[str, Any]) -> int:
    """Fulfil pending delivery orders whose job was lost."""
    return await delivery_jobs.sweep_orders(_app(ctx).pool)


async def fan_out_webhooks(ctx: dict[str, Any]) -> int:
    """Fan the issuers' waiting webhook events out to their endpoints and nudge a delivery job for each."""
    app = _app(ctx)
    return await webhook_sender.fan_out(app.pool, app.redis)


async def deliver_webhooks(ctx: dict[str, Any], endpoint_id: str) -> int:
    """Send one endpoint's due webhook messages."""
    app = _app(ctx)
    assert app.http is not None
    return await webhook_sender.deliver(app.pool, app.http, app.hooks, endpoint_id)


async def sweep_webhooks(ctx: dict[str, Any]) -> int:
    """Fan out events no nudge reached, and start delivery jobs for endpoints with messages due (retries, leases of
    killed workers)."""
    app = _app(ctx)
    return await webhook_sender.sweep(app.pool, app.redis, app.hooks)


async def prune_webhooks(ctx: dict[str, Any]) -> int:
    """Delete webhook events, messages and delivery-log lines older than WEBHOOK_LOG_DAYS."""
    app = _app(ctx)
    return await webhook_sender.prune(app.pool, app.hooks)


FUNCTIONS = [
    func(ping, name="ping"),
    func(send_sms, name=SEND_SMS, timeout=30),
    func(fan_out_sms, name=FAN_OUT_SMS, timeout=60),
    func(fulfil_orders, name=FULFIL_ORDERS, timeout=delivery_jobs.JOB_TIMEOUT_S),
    # the worker's job timeout; the SMTP exchange itself is bounded inside the lease (MAIL_LEASE_S). arq's tries
    # are the first retries only: the sweep goes on retrying for as long as the row allows
    func(send_mail, name=SEND_MAIL, max_tries=5),
    func(fan_out_mail, name=FAN_OUT_MAIL, timeout=60),
    func(fan_out_webhooks, name=FAN_OUT_WEBHOOKS, timeout=60, max_tries=3),
]
CRON_JOBS = [
    cron(sweep_sms, second={0, 15, 30, 45}, run_at_startup=False, unique=True, timeout=30),
    cron(sweep_mail, second={5, 20, 35, 50}, run_at_startup=True, unique=True, timeout=30),
    cron(sweep_webhooks, second=set(range(1, 60, 2)), run_at_startup=True, unique=True, timeout=30),
    cron(prune_webhooks, minute=17, second=30, run_at_startup=False, unique=True, timeout=300),
    cron(
        sweep_orders,
        name="delivery_sweep_orders",
        second=set(range(0, 60, delivery_jobs.SWEEP_EVERY_S)),
        microsecond=0,
        run_at_startup=True,
        timeout=delivery_jobs.JOB_TIMEOUT_S,
    ),
]


def make_mailer(settings: Settings) -> Mailer | None:
    """The buyer's mail sender of SMTP_URL / SMTP_FROM / MAIL_LEASE_S, or None when SMTP_URL is unset."""
    smtp = settings.smtp
    if smtp is None:
        return None
    return Mailer(smtp, settings.smtp_from, settings.public_base_url, settings.mail_lease_s)


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """The arq worker with every job and sweep; `overrides` are arq options (tests, `run`)."""
    # arq logs every job's start and end at INFO: with the delivery sweep every 2 s that buried everything
    # else (the console SMS of `invoiceloop run`, warnings). Failures stay visible: our jobs log their own
    # warnings, and arq its exceptions and given-up retries at WARNING and above.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)

    async def startup(ctx: dict[str, Any]) -> None:
        pool = await db.create_pool(settings.require_database_url(), max_size=10)
        hooks = settings.hooks
        ctx["app"] = WorkerContext(
            pool,
            make_sms(settings),
            ctx["redis"],
            make_mailer(settings),
            hooks,
            webhook_sender.new_client(hooks),
            settings.sms_lease_s,
        )
        # The log's sequencer runs beside the jobs for as long as the worker does (one at a time across
        # workers: the others find the lock taken and wait their turn).
        ctx["sequencer"] = asyncio.create_task(transparency.run_sequencer(pool, log_signer(settings)))

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "sequencer" in ctx:
            ctx["sequencer"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ctx["sequencer"]
        if "app" in ctx:
            app = _app(ctx)
            if app.http is not None:
                await app.http.aclose()
            await app.pool.close()

    if settings.redis is None:
        raise ValueError("neither REDIS_URL nor REDIS_SENTINELS is set")
    options = {**WORKER_OPTIONS, "handle_signals": False, **overrides}
    # a delivery job's bound follows WEBHOOK_TIMEOUT_S; its retries are the database's (the sweep), not arq's
    deliver = func(deliver_webhooks, name=DELIVER_WEBHOOKS, timeout=settings.hooks.job_timeout_s, max_tries=1)
    return Worker(
        functions=[*FUNCTIONS, deliver],
        cron_jobs=CRON_JOBS,
        redis_pool=arq_client(settings.redis),
        on_startup=startup,
        on_shutdown=shutdown,
        **options,
    )


# What a Redis that went away (killed, restarted, a network cut) or hangs raises out of arq's polling.
REDIS_DROPPED: tuple[type[BaseException], ...] = (RedisError, OSError)
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0


async def _close(worker: Worker) -> None:
    """Stop a worker's jobs and run its shutdown. When Redis is gone, arq's own close stops half-way (it deletes its
    health key before its shutdown hook), so the hook is run here and the client dropped. It also stops half-way when
    a job it has just cancelled ends cancelled: it cancels the running jobs, then gathers them, and a job cancelled
    where it waited (for Redis, writing its result as Redis dropped) re-raises its cancellation out of the gather.
    That is not a stop of the worker, which would then have ended the process silently; only a cancellation of
    this task itself (SIGTERM) is passed on."""
    try:
        await worker.close()
        return
    except REDIS_DROPPED:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    if "app" in worker.ctx and worker.on_shutdown is not None:
        await worker.on_shutdown(worker.ctx)
    with contextlib.suppress(Exception):
        await worker.pool.aclose(close_connection_pool=True)


async def work(settings: Settings, **overrides: Any) -> None:
    """Run the worker until cancelled; when Redis drops, log it, wait (0.5 s, doubling up to 10 s while it
    stays away) and start it again in the same process: jobs lost meanwhile are what the sweeps find."""
    loop = asyncio.get_running_loop()
    delay_s = RECONNECT_FIRST_S
    while True:
        worker = build_worker(settings, **overrides)
        started = loop.time()
        try:
            await worker.async_run()
            return  # a burst worker ran dry
        except REDIS_DROPPED as exc:
            log.warning("Redis dropped (%s); reconnecting in %.1f s", type(exc).__name__, delay_s)
        finally:
            await _close(worker)
        await asyncio.sleep(delay_s)
        # back to a short wait once a worker had run a while: a new outage starts its backoff over
        delay_s = (
            RECONNECT_FIRST_S if loop.time() - started > 2 * RECONNECT_MAX_S else min(delay_s * 2, RECONNECT_MAX_S)
        )


async def run_worker(settings: Settings) -> int:
    """`invoiceloop worker`: until SIGINT or SIGTERM, reconnecting whenever Redis drops."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):  # a signal: a normal stop
        await work(settings)
    return 0


# How long `invoiceloop run` lets the worker stop (its jobs cancelled, its shutdown hook run) once the server has.
# A shutdown still waiting then (a pool's graceful close waits for every connection to come back) is cancelled
# where it waits, so that SIGTERM ends the process promptly, as systemd and container runtimes expect.
STOP_WORKER_S = 8.0


async def stop_within(task: asyncio.Task[Any], timeout_s: float) -> bool:
    """Cancel `task` and wait up to `timeout_s` for it to end; if it has not (its cleanup waits on something that
    does not come), cancel it again, where it now waits, and wait as long once more. Whether it ended."""
    for _ in range(2):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if done:
            break
        log.warning("the worker did not stop within %.0f s; cancelling its shutdown where it waits", timeout_s)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("the worker failed on its way out", exc_info=task.exception())
    return task.done()


async def serve_and_work(settings: Settings, host: str, port: int) -> None:
    """`invoiceloop run`: the HTTP service and the worker in one process until Ctrl-C."""
    import uvicorn

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False))
    worker = asyncio.create_task(work(settings))
    try:
        await server.serve()
    finally:
        await stop_within(worker, STOP_WORKER_S)
