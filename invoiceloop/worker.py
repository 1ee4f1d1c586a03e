"""The arq worker: every job and cron sweep of the service and the worker's options, in one place, and the
one-process `run` (HTTP service and worker together). Jobs are thin: each takes what it needs from the typed
`WorkerContext` and calls its package."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq import ArqRedis, cron, func
from arq.connections import RedisSettings
from arq.worker import Worker

from delivery import jobs as delivery_jobs
from invoiceloop.app import create_app, log_signer, make_sms
from invoiceloop.settings import Settings
from invoicing import db, sms_outbox, transparency
from invoicing.queue import FULFIL_ORDERS, SEND_SMS
from invoicing.sms_outbox import SmsChannel

# arq's own options for every job; a job that needs less time says so in its `func(..., timeout=)` below.
WORKER_OPTIONS: dict[str, Any] = {"max_jobs": 50, "job_timeout": 60, "keep_result": 0}


@dataclass(frozen=True)
class WorkerContext:
    """What jobs use, built at worker start-up (arq's own `ctx` carries it under "app")."""

    pool: asyncpg.Pool
    sms: SmsChannel
    redis: ArqRedis


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
    return await sms_outbox.send(app.pool, app.sms, outbox_id, job_try=int(ctx.get("job_try", 1)))


async def sweep_sms(ctx: dict[str, Any]) -> int:
    """Re-enqueue SMS outbox rows whose job was lost."""
    app = _app(ctx)
    return await sms_outbox.sweep(app.pool, app.redis)


async def fulfil_orders(ctx: dict[str, Any], invoice_ids: list[str]) -> int:
    """Fulfil the delivery orders of freshly issued postal invoices."""
    return await delivery_jobs.fulfil_orders(_app(ctx).pool, invoice_ids)


async def sweep_orders(ctx: dict[str, Any]) -> int:
    """Fulfil pending delivery orders whose job was lost."""
    return await delivery_jobs.sweep_orders(_app(ctx).pool)


FUNCTIONS = [
    func(ping, name="ping"),
    func(send_sms, name=SEND_SMS, timeout=30),
    func(fulfil_orders, name=FULFIL_ORDERS, timeout=delivery_jobs.JOB_TIMEOUT_S),
]
CRON_JOBS = [
    cron(sweep_sms, second={0, 15, 30, 45}, run_at_startup=False, unique=True, timeout=30),
    cron(
        sweep_orders,
        name="delivery_sweep_orders",
        second=set(range(0, 60, delivery_jobs.SWEEP_EVERY_S)),
        microsecond=0,
        run_at_startup=True,
        timeout=delivery_jobs.JOB_TIMEOUT_S,
    ),
]


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from REDIS_URL."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    return RedisSettings.from_dsn(settings.redis_url)


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """The arq worker with every job and sweep; `overrides` are arq options (tests, `run`)."""
    # arq logs every job's start and end at INFO: with the delivery sweep every 2 s that buried everything
    # else (the console SMS of `invoiceloop run`, warnings). Failures stay visible: our jobs log their own
    # warnings, and arq its exceptions and given-up retries at WARNING and above.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)

    async def startup(ctx: dict[str, Any]) -> None:
        pool = await db.create_pool(settings.require_database_url(), max_size=10)
        ctx["app"] = WorkerContext(pool, make_sms(settings), ctx["redis"])
        # The log's sequencer runs beside the jobs for as long as the worker does (one at a time across
        # workers: the others find the lock taken and wait their turn).
        ctx["sequencer"] = asyncio.create_task(transparency.run_sequencer(pool, log_signer(settings)))

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "sequencer" in ctx:
            ctx["sequencer"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ctx["sequencer"]
        if "app" in ctx:
            await _app(ctx).pool.close()

    options = {**WORKER_OPTIONS, "handle_signals": False, **overrides}
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=CRON_JOBS,
        redis_settings=redis_settings(settings),
        on_startup=startup,
        on_shutdown=shutdown,
        **options,
    )


async def run_worker(settings: Settings) -> int:
    """`invoiceloop worker`: until SIGINT or SIGTERM."""
    worker = build_worker(settings, handle_signals=True)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass  # SIGINT/SIGTERM: arq cancels its main task; that is a normal stop
    finally:
        await worker.close()
    return 0


async def serve_and_work(settings: Settings, host: str, port: int) -> None:
    """`invoiceloop run`: the HTTP service and the worker in one process until Ctrl-C."""
    import uvicorn

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False))
    worker = build_worker(settings)
    work = asyncio.create_task(worker.async_run())
    try:
        await server.serve()
    finally:
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        await worker.close()
