"""``sessionstore._tasks.cancel_and_wait``: background tasks stopped one way."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from sessionstore._tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_finished_when_it_returns() -> None:
    cleaned: list[int] = []

    async def worker(n: int) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # cleanup that waits: must be over on return
            cleaned.append(n)

    tasks = [asyncio.create_task(worker(n)) for n in range(3)]
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0)
    await cancel_and_wait([*tasks, done])
    assert all(task.done() for task in tasks)
    assert sorted(cleaned) == [0, 1, 2]


async def stubborn() -> None:
    """A task whose cleanup after a cancellation takes a while."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(0.3)


async def test_a_cancellation_of_the_caller_is_not_swallowed() -> None:
    async def stop() -> str:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await cancel_and_wait([task])
        return "went on as if not cancelled"

    stopping = asyncio.create_task(stop())
    await asyncio.sleep(0.05)  # it is waiting for the stubborn task's cleanup
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


async def test_the_pattern_it_replaces_does_swallow_it() -> None:
    """Why the helper exists: ``cancel()``, then ``await`` under ``suppress(CancelledError)``,
    takes the caller's own cancellation for the task's and carries on."""

    async def stop() -> str:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return "went on as if not cancelled"

    stopping = asyncio.create_task(stop())
    await asyncio.sleep(0.05)
    stopping.cancel()
    assert await stopping == "went on as if not cancelled"
