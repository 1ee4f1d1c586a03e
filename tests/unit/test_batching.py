"""The coalescer behind batched verifications: concurrent items share batches, each caller gets its own
answer or exception, a failed batch fails its callers only, and a caller that leaves does not stop its item."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from invoicing.batching import Coalescer


class Recorder:
    """A runner that doubles numbers, fails odd ones when told, and remembers its batches."""

    def __init__(self, *, fail_odd: bool = False, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.fail_odd, self.delay_s = fail_odd, delay_s

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(self.delay_s)
        return [ValueError(f"odd {n}") if self.fail_odd and n % 2 else 2 * n for n in items]


async def test_concurrent_items_share_batches_and_get_their_own_answers() -> None:
    runner = Recorder(delay_s=0.01)
    batches = Coalescer(runner, lanes=2, max_batch=16)
    first = await batches.submit(1)  # alone: runs at once, in a batch of one
    answers = await asyncio.gather(*(batches.submit(n) for n in range(100)))
    assert first == 2 and answers == [2 * n for n in range(100)]
    assert runner.batches[0] == [1]
    assert sorted(n for batch in runner.batches[1:] for n in batch) == list(range(100))
    assert len(runner.batches) - 1 < 20 and max(len(b) for b in runner.batches) <= 16


async def test_an_item_submitted_as_the_last_lane_ends_still_runs() -> None:
    """The caller of a lone item resumes before its lane's task is done: its next item must start a lane."""
    batches = Coalescer(Recorder(), lanes=1)
    async with asyncio.timeout(10):  # not wait_for: its task would submit a turn later, after the lane is gone
        for n in range(5):
            assert await batches.submit(n) == 2 * n


async def test_an_item_can_fail_alone() -> None:
    batches = Coalescer(Recorder(fail_odd=True))
    answers = await asyncio.gather(*(batches.submit(n) for n in range(6)), return_exceptions=True)
    assert answers[0::2] == [0, 4, 8]
    assert [str(a) for a in answers[1::2]] == ["odd 1", "odd 3", "odd 5"]


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []

    async def flaky(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return items

    batches = Coalescer(flaky, lanes=1)
    failed = await asyncio.gather(*(batches.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in failed)
    assert await batches.submit(7) == 7


async def test_a_wrong_number_of_answers_is_an_error_not_a_misdelivery() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    with pytest.raises(RuntimeError, match="a batch of 1 got 0 answers"):
        await Coalescer(short).submit(1)


async def test_a_caller_that_leaves_does_not_stop_its_item() -> None:
    runner = Recorder(delay_s=0.05)
    batches = Coalescer(runner, lanes=1)
    leaving = asyncio.create_task(batches.submit(1))
    await asyncio.sleep(0)
    staying = asyncio.create_task(batches.submit(2))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert await staying == 4
    assert sorted(n for batch in runner.batches for n in batch) == [1, 2]  # the leaver's item ran too
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def _callers_coming_back(batches: Coalescer[int, int], callers: int, rounds: int) -> None:
    """Callers that each come back a few turns of the loop after their answer (1 to 4, as requests do: answer
    sent, next request read and parsed) and submit again, `rounds` times each."""

    async def caller(i: int) -> None:
        for _ in range(rounds):
            await batches.submit(i)
            for _ in range(i % 4 + 1):
                await asyncio.sleep(0)

    await asyncio.gather(*(caller(i) for i in range(callers)))


async def test_after_a_batch_the_lane_lets_callers_come_back_before_the_next() -> None:
    """Without the settling turns, the lane takes what is waiting at once: the callers that need one more turn
    than others miss it, and after the first the batches break up (51 batches, of 2 to 6); with them, every batch
    holds all 8."""
    runner = Recorder()
    await _callers_coming_back(Coalescer(runner, lanes=1, settle_turns=8), callers=8, rounds=20)
    assert [len(b) for b in runner.batches] == [8] * 20
    broken = Recorder()
    await _callers_coming_back(Coalescer(broken, lanes=1), callers=8, rounds=20)
    assert len(broken.batches) > 40 and max(len(b) for b in broken.batches[1:]) < 8


async def test_a_lone_caller_is_not_kept_waiting_by_the_settling_turns() -> None:
    """A batch of one is not followed by settling turns: a caller alone gets its answer in a few turns of the
    loop, however many turns a busy lane would let pass."""
    batches = Coalescer(Recorder(), lanes=1, settle_turns=10_000)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    for n in range(5):
        assert await batches.submit(n) == 2 * n
    counter.cancel()
    assert turns < 5 * 10
