"""How long the event loop is kept from its other work: a task wakes every `TICK_S` and records the CPU time
the loop's thread spent since its last wake-up (`invoiceloop_event_loop_busy_seconds`). A request that holds
the loop with CPU work (a large batch checked or sealed in place) shows as a long busy turn, during which no
other request of the process is answered; time the process merely waited for a CPU or for the GIL is not
counted, so a busy machine does not show as a blocked loop."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

TICK_S = 0.025
LOOP_BUSY = Histogram(
    "invoiceloop_event_loop_busy_seconds",
    "CPU time the event loop's thread spent between two wake-ups of a task that asks for one every 25 ms",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


async def watch_loop() -> None:
    """Record the loop's busy turns until cancelled."""
    last = time.thread_time()
    while True:
        await asyncio.sleep(TICK_S)
        now = time.thread_time()
        LOOP_BUSY.observe(now - last)
        last = now
