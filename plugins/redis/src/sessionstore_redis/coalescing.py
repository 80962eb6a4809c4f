"""Concurrent commands to one server share round trips: those issued while one is on the wire go
out together, in one write on one connection, and their replies are read together.

* A command issued while none of this server's is on the wire goes out at once, in its caller's
  task: a lone caller waits for no timer, no other task and no other command.
* Commands issued while one is on the wire queue. When it is answered, a sender task sends all
  that queued in one write and reads their replies in order, then goes on with what queued
  meanwhile, until a turn of the event loop leaves nothing queued. Under load a round trip so
  carries as many commands as there are callers, and the per-command cost of a write, a read
  and an event-loop wake-up is paid once per batch.
* A caller cancelled (its deadline, a shutdown) before its command was sent is left out of the
  batch: the command is never sent. One cancelled while its batch is on the wire only stops
  waiting: the sender still reads its reply, so every reply stays matched to its request.
* A lone command and a batch are each bounded by ``timeout``: past it the connection is
  dropped and its callers get ``TimeoutError``, so a stalled connection holds the commands
  behind it no longer than that (a lone command between ``timeout`` and ``1.25 * timeout``:
  see :mod:`.deadlines`). A failed connection fails every caller of the batch (none
  of its replies is known; a write among them may or may not have run).

Only commands that never block the server's reply belong here (not ``WAIT``, ``BLPOP`` or
``SUBSCRIBE``): every command of a batch waits for the slowest one in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError

from .deadlines import OperationDeadlines

__all__ = ["Coalescer"]

Command = Sequence[Any]


class Coalescer:
    """The queue of one server's commands, and the task that sends them in batches.

    ``run_one(command)`` sends one command and returns its reply (an error reply raises);
    ``run_batch(commands)`` sends several in one write on one connection and returns their
    replies in order, an error reply as the exception in its place, and raises if the connection
    fails. Both are the server's (:class:`.direct.DirectCommands`); this class decides only when
    and with what they are called.
    """

    def __init__(
        self,
        run_one: Callable[[Command], Awaitable[Any]],
        run_batch: Callable[[Sequence[Command]], Awaitable[list[Any]]],
        *,
        timeout: float,
    ) -> None:
        self._run_one = run_one
        self._run_batch = run_batch
        self._timeout = timeout
        self._deadlines = OperationDeadlines(timeout)  # of lone commands
        self._busy = False  # a command or a batch of this queue is on the wire
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def execute(self, command: Command) -> Any:
        """Send ``command`` (at once, or with the next batch) and return its reply."""
        if not self._busy:
            self._busy = True
            # Bounded like a batch: a stalled lone command would otherwise keep ``_busy`` set
            # and hold every command queued behind it (its connection is dropped when it is
            # interrupted, so replies stay in step). By the watcher of OperationDeadlines, not
            # asyncio.timeout: a timer per command costs about 5 us, a third of a fast round trip.
            deadlines = self._deadlines
            task = deadlines.begin()
            try:
                return await self._run_one(command)
            except asyncio.CancelledError:
                reason = deadlines.end(task)
                if reason is None or task.cancelling():
                    raise
                raise TimeoutError(f"no reply within {self._timeout} s") from None
            finally:
                deadlines.end(task)
                if self._queue:
                    self._sender = asyncio.get_running_loop().create_task(
                        self._send_queued(), name="sessionstore-redis batches"
                    )
                else:
                    self._busy = False
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        return await future

    def idle(self) -> bool:
        """No command waits for the one on the wire: it is a lone caller's."""
        return not self._queue

    async def close(self) -> None:
        """Stop sending: the commands queued or on the wire fail with ``ConnectionError``. A lone
        command on the wire is not interrupted: it stays bounded by its deadline, whose watcher
        stops here, or by itself once no lone command runs."""
        await self._deadlines.stop()
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done() and not sender.get_loop().is_closed():
            sender.cancel()
            if sender.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(sender, return_exceptions=True)
        self._fail(self._queue, ConnectionError("the store is closed"))
        self._queue = []

    async def _send_queued(self) -> None:
        try:
            while True:
                # A cancelled caller's future is done: its command is not sent.
                batch = [entry for entry in self._queue if not entry[1].done()]
                self._queue = []
                if not batch:
                    # The callers the last batch answered usually send their next command as
                    # soon as they run: one turn of the loop lets them join the next batch
                    # instead of each going out alone.
                    await asyncio.sleep(0)
                    if not self._queue:
                        return
                    continue
                try:
                    async with asyncio.timeout(self._timeout):
                        replies = await self._run_batch([command for command, _ in batch])
                except asyncio.CancelledError:
                    self._fail(batch, ConnectionError("the store is closed"))
                    raise
                except Exception as exc:
                    replies = [exc] * len(batch)
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller stopped waiting; the reply was read all the same
                        continue
                    if isinstance(reply, BaseException):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._busy = False

    @staticmethod
    def _fail(entries: Sequence[tuple[Command, asyncio.Future[Any]]], error: Exception) -> None:
        for _, future in entries:
            if not future.done():
                future.set_exception(error)
