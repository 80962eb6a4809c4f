"""Bound how long each operation runs, for about the price of a dict write per operation.

``asyncio.timeout`` arms a timer for every operation (a handle pushed on the event loop's heap,
then cancelled), which costs several microseconds per call on the hottest paths. Here one
watcher task per event loop wakes every ``timeout / 4`` seconds and cancels the operations that
have run longer than ``timeout``: an operation is cancelled between ``timeout`` and
``1.25 * timeout`` after it began, and :meth:`OperationDeadlines.end` tells the operation that the
cancellation was the deadline's, so it can raise a timeout instead.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["OperationDeadlines"]


class OperationDeadlines:
    """The running operations of one backend and the watcher that cancels the overdue ones."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = timeout
        self._started: dict[asyncio.Task[object], float] = {}
        self._overdue: set[asyncio.Task[object]] = set()
        self._watcher: asyncio.Task[None] | None = None

    def begin(self) -> asyncio.Task[object]:
        """Start bounding the current task's operation; pass the result to :meth:`end`."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("an operation must run in an asyncio task")
        loop = task.get_loop()
        self._started[task] = loop.time()
        watcher = self._watcher
        if watcher is None or watcher.done() or watcher.get_loop() is not loop:
            self._watcher = loop.create_task(self._watch(loop), name="sessionstore-redis deadlines")
        return task

    def end(self, task: asyncio.Task[object]) -> bool:
        """Stop bounding ``task``'s operation; return whether its deadline cancelled it.

        When it did, the cancellation is taken back (``task.uncancel()``), so the caller raises
        a timeout in its place (unless ``task.cancelling()`` shows another cancellation, which
        must go on). Calling it again for the same operation returns ``False``.
        """
        self._started.pop(task, None)
        if task in self._overdue:
            self._overdue.discard(task)
            task.uncancel()
            return True
        return False

    async def close(self) -> None:
        """Stop the watcher (the backend is closing)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done() and not watcher.get_loop().is_closed():
            watcher.cancel()
            if watcher.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._started:
            await asyncio.sleep(self.timeout / 4)
            limit = loop.time() - self.timeout
            for task, started in list(self._started.items()):
                if task.get_loop() is not loop:
                    if task.get_loop().is_closed():  # never resumed: forget it
                        self._started.pop(task, None)
                elif started <= limit and task not in self._overdue:
                    self._overdue.add(task)
                    task.cancel()
