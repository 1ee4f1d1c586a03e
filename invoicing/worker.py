"""arq settings for the fulfilment worker, and the one-process `run` (HTTP service + worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker

from invoicing import db, sms_outbox
from invoicing.app import _optional, create_app, extra_routes, load_issuing, make_sms
from invoicing.settings import Settings


async def ping(ctx: dict[str, Any]) -> str:
    """A job that only proves the worker is alive."""
    return "pong"


def job_modules() -> list[Any]:
    """The modules with jobs: the SMS outbox and the delivery package's. Each provides FUNCTIONS and may
    provide CRON_JOBS, WORKER_OPTIONS and async `startup(ctx)` / `shutdown(ctx)`."""
    modules = [sms_outbox, _optional("delivery.jobs")]
    return [m for m in modules if m is not None]


def redis_settings(settings: Settings) -> RedisSettings:
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    return RedisSettings.from_dsn(settings.redis_url)


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """The arq worker with the jobs and cron sweeps of the SMS outbox and the delivery package.

    ctx carries `settings`, `pool` (asyncpg), `issuing` and `sms` (the SMS channel) for every job."""
    # arq logs every job's start and end at INFO: with the delivery sweep every 2 s that buried everything
    # else (the console SMS of `invoiceloop run`, warnings). Failures stay visible: our jobs log their own
    # warnings, and arq its exceptions and given-up retries at WARNING and above.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
    modules = job_modules()
    functions: list[Any] = [ping, *(f for m in modules for f in m.FUNCTIONS)]
    cron_jobs = [c for m in modules for c in getattr(m, "CRON_JOBS", [])]

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["pool"] = await db.create_pool(settings.require_database_url(), max_size=10)
        ctx["issuing"] = await load_issuing(settings, ctx["pool"])
        ctx["sms"] = make_sms(settings)
        for m in modules:
            if hasattr(m, "startup"):
                await m.startup(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        for m in modules:
            if hasattr(m, "shutdown"):
                await m.shutdown(ctx)
        await ctx["pool"].close()

    options: dict[str, Any] = {"max_jobs": 50, "job_timeout": 60, "keep_result": 0, "handle_signals": False}
    for m in modules:
        options.update(getattr(m, "WORKER_OPTIONS", {}))
    options.update(overrides)
    return Worker(
        functions=functions,
        cron_jobs=cron_jobs,
        redis_settings=redis_settings(settings),
        on_startup=startup,
        on_shutdown=shutdown,
        **options,
    )


async def run_worker(settings: Settings) -> int:
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

    app = create_app(settings, extra_routes=extra_routes())
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


async def create_demo_operator(settings: Settings) -> dict[str, Any]:
    """The demo postal operator (serving every province), when the delivery package provides it."""
    delivery_services = _optional("delivery.services")
    if delivery_services is None:
        return {}
    conn = await __import__("asyncpg").connect(settings.require_database_url())
    try:
        result: dict[str, Any] = await delivery_services.create_demo_operator(conn)
        return result
    finally:
        await conn.close()
