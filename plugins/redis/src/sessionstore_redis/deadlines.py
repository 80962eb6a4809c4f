"""Bound how long each operation runs, for about the price of a dict write per operation.

``asyncio.timeout`` arms a timer for every operation (a handle pushed on the event loop's heap,
then cancelled), which costs several microseconds per call on the hottest paths. Here one
watcher task per event loop wakes every ``timeout / 4`` seconds and cancels the operations that
have run longer than ``timeout``: an operation is cancelled between ``timeout`` and
``1.25 * timeout`` after it began, and :meth:`OperationDeadlines.end` tells the operation that the
cancellation was the deadline's, so it can raise a timeout instead.

Closing interrupts the operations still running the same way (:meth:`OperationDeadlines.close`):
the driver has no socket timeout of its own (see :func:`.connection.open_client`), so an operation
waiting on a hung server would otherwise wait for as long as the server stays hung once the
watcher is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

__all__ = ["Interruption", "OperationDeadlines"]


class Interruption(enum.Enum):
    """Why :class:`OperationDeadlines` cancelled an operation."""

    TIMEOUT = "timeout"
    """It ran past its deadline."""
    CLOSED = "closed"
    """The backend was closed while it ran."""


class OperationDeadlines:
    """The running operations of one backend and the watcher that cancels the overdue ones."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = timeout
        self._started: dict[asyncio.Task[object], float] = {}
        self._interrupted: dict[asyncio.Task[object], Interruption] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._ended: asyncio.Event | None = None  # while closing: set by end() as operations end

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

    def end(self, task: asyncio.Task[object]) -> Interruption | None:
        """Stop bounding ``task``'s operation; return why it was cancelled here, if it was.

        When it was, the cancellation is taken back (``task.uncancel()``), so the caller raises
        a timeout (or a closed-store error) in its place, unless ``task.cancelling()`` shows
        another cancellation, which must go on. Calling it again for the same operation returns
        ``None``.
        """
        self._started.pop(task, None)
        reason = self._interrupted.pop(task, None)
        if reason is not None:
            task.uncancel()
        if self._ended is not None:
            self._ended.set()
        return reason

    async def close(self, grace: float) -> None:
        """Interrupt every running operation (:attr:`Interruption.CLOSED`), wait up to
        ``grace`` seconds for them to end (each drops its connection as it does), and stop the
        watcher. Returns early once none runs; never raises for one that outlives ``grace``.

        Operations that :meth:`begin` afterwards are bounded by their deadline as before (the
        watcher starts again for them): the caller refuses them before they reach the server.
        """
        current = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for task in list(self._started):
            if task is current or task in self._interrupted or task.done():
                continue
            if task.get_loop() is loop:
                self._interrupted[task] = Interruption.CLOSED
                task.cancel()
        waiting = [t for t in self._started if t is not current and t.get_loop() is loop]
        if waiting:
            self._ended = ended = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while any(t in self._started for t in waiting):
                        await ended.wait()
                        ended.clear()
            self._ended = None
        await self._end_watcher()

    async def stop(self) -> None:
        """Stop the watcher if no operation is running, interrupting nothing (for an owner that
        is closing and whose operations have ended). While one still runs, the watcher stays,
        and ends by itself once none does."""
        if not self._started:
            await self._end_watcher()

    async def _end_watcher(self) -> None:
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
                elif started <= limit and task not in self._interrupted:
                    self._interrupted[task] = Interruption.TIMEOUT
                    task.cancel()
