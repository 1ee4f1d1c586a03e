"""Request coalescing: callers submit an item and await its own answer, while a few lanes run whatever
has gathered as one batch. N concurrent verifications then cost a few round trips to Redis and
PostgreSQL instead of four each (one commit instead of N).

There is no timer: an idle service runs a lone item after one turn of the event loop, and batches grow by
themselves while earlier ones are in flight. A caller that goes away (its request cancelled) does not stop its item: the
batch completes, so what was counted is also logged. Items of one batch succeed or fail together only
where `run` says so: it answers one result or exception per item, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Runner = Callable[[list[T]], Awaitable[Sequence["R | BaseException"]]]


class Coalescer(Generic[T, R]):
    """Batches of up to `max_batch` items, at most `lanes` batches in flight at once. After a batch of more than one
    item, a lane lets `settle_turns` turns of the event loop pass before it takes the next batch (below)."""

    def __init__(self, run: Runner[T, R], *, lanes: int = 2, max_batch: int = 128, settle_turns: int = 0) -> None:
        self.run, self.lanes, self.max_batch, self.settle_turns = run, lanes, max_batch, settle_turns
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # kept referenced while they run
        self._running = 0  # lanes that will still look at `_waiting`

    async def submit(self, item: T) -> R:
        """Queue `item` and wait for its answer (or exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running < self.lanes:
            self._running += 1
            task = asyncio.create_task(self._lane())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _lane(self) -> None:
        try:
            await asyncio.sleep(0)  # one turn of the loop: requests already readable join this first batch
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    results = await self.run([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} got {len(results)} answers")
                except BaseException as exc:  # the whole batch failed (or the lane was cancelled): tell everyone
                    results = [exc] * len(batch)
                    if not isinstance(exc, Exception):
                        _settle(batch, results)
                        raise
                _settle(batch, results)
                if len(batch) > 1:
                    await self._let_callers_catch_up()
        finally:
            # Counted off in the same step as the last look at `_waiting`, not in a done callback a turn later: an
            # item submitted in between would otherwise find every lane taken and none left to run it.
            self._running -= 1

    async def _let_callers_catch_up(self) -> None:
        """Let the loop run what is ready before the next batch: the callers just answered send their answers and
        come back, and requests being parsed reach `submit`. On a CPU-bound process the batch taken at once would
        hold only what arrived while the last one was in flight (2 of a process's 8 callers, measured), and each
        batch has a fixed cost. Turns, not a timer: on an idle loop a turn takes microseconds, under load a turn runs
        every ready callback, so the wait grows with the load. Only after a batch of several: a lone caller at a
        time is not made to wait."""
        for _ in range(self.settle_turns):
            await asyncio.sleep(0)


def _settle(batch: list[tuple[T, asyncio.Future[R]]], results: Sequence[R | BaseException]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if future.done():  # the caller went away; its item was still carried out
            continue
        if isinstance(result, asyncio.CancelledError):
            future.cancel()
        elif isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
