"""`invoiceloop run` stops its worker within a bound, even when the worker's shutdown waits on something that
does not come (a suite run once saw SIGTERM leave `invoiceloop run` waiting on its worker for over 60 s)."""

from __future__ import annotations

import asyncio

from invoiceloop.worker import stop_within


async def test_a_shutdown_that_waits_forever_is_cancelled_where_it_waits() -> None:
    """The first cancel lands in the worker's run; its cleanup then waits for an event nobody sets, as a pool's
    close waits for a connection that never comes back. The second cancel ends that wait."""
    cleaned_up = asyncio.Event()

    async def worker() -> None:
        try:
            await asyncio.Event().wait()  # the run, until cancelled
        finally:
            try:
                await asyncio.Event().wait()  # the shutdown hook, waiting forever
            finally:
                cleaned_up.set()

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    assert await stop_within(task, 0.05)
    assert task.cancelled() and cleaned_up.is_set()


async def test_a_worker_that_stops_at_once_is_cancelled_once() -> None:
    cancels = 0

    async def worker() -> None:
        nonlocal cancels
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancels += 1
            raise

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    assert await stop_within(task, 5)
    assert cancels == 1


async def test_a_worker_that_ignores_both_cancels_is_reported_not_stopped() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not await stop_within(task, 0.05)
    release.set()
    await task
