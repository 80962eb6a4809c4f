"""OperationDeadlines: the per-operation time bound of the Redis backend, without a server."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from sessionstore_redis.deadlines import Interruption, OperationDeadlines


async def bounded(deadlines: OperationDeadlines, seconds: float) -> str:
    task = deadlines.begin()
    try:
        await asyncio.sleep(seconds)
        return "done"
    except asyncio.CancelledError:
        reason = deadlines.end(task)
        if reason is Interruption.TIMEOUT:
            return "timed out"
        if reason is Interruption.CLOSED:
            return "closed"
        raise
    finally:
        deadlines.end(task)


async def test_an_overdue_operation_is_cancelled_within_a_quarter_of_its_timeout() -> None:
    deadlines = OperationDeadlines(0.2)
    started = time.monotonic()
    assert await bounded(deadlines, 5) == "timed out"
    took = time.monotonic() - started
    assert 0.2 <= took < 0.2 * 1.25 + 0.1, took
    # The cancellation was taken back: the task goes on awaiting undisturbed.
    await asyncio.sleep(0.3)
    await deadlines.close(grace=1)


async def test_operations_within_their_timeout_are_never_touched() -> None:
    deadlines = OperationDeadlines(0.2)
    outcomes = await asyncio.gather(*(bounded(deadlines, 0.01 * (i % 5)) for i in range(200)))
    assert outcomes == ["done"] * 200
    # Many short operations in a row on one task, spanning several watcher wake-ups.
    for _ in range(40):
        assert await bounded(deadlines, 0.01) == "done"
    await deadlines.close(grace=1)


async def test_only_the_overdue_one_of_concurrent_operations_times_out() -> None:
    deadlines = OperationDeadlines(0.2)
    outcomes = await asyncio.gather(bounded(deadlines, 5), bounded(deadlines, 0.05))
    assert outcomes == ["timed out", "done"]
    await deadlines.close(grace=1)


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    deadlines = OperationDeadlines(10)
    task = asyncio.create_task(bounded(deadlines, 5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await deadlines.close(grace=1)


async def test_close_interrupts_every_running_operation_and_waits_for_them() -> None:
    deadlines = OperationDeadlines(10)
    running = [asyncio.create_task(bounded(deadlines, 5)) for _ in range(3)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await deadlines.close(grace=2)
    assert time.monotonic() - started < 0.5
    assert all(task.done() for task in running)  # close() returned once they had ended
    assert [task.result() for task in running] == ["closed"] * 3


async def test_close_waits_no_longer_than_its_grace_for_an_operation_that_will_not_end() -> None:
    deadlines = OperationDeadlines(10)

    async def stubborn() -> None:
        task = deadlines.begin()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(5)
            await asyncio.sleep(5)  # ignores the interruption and goes on
        finally:
            deadlines.end(task)

    running = asyncio.create_task(stubborn())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await deadlines.close(grace=0.2)
    assert 0.2 <= time.monotonic() - started < 1
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        OperationDeadlines(0)
