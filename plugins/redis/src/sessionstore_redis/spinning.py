"""A lone command's task polls for its reply for a moment before it sleeps (spin, then park).

A task that awaits its reply's future parks: when nothing else is ready, the event loop blocks in
``epoll_wait`` until the reply arrives and the kernel wakes the thread. A task that instead yields
to the loop (``asyncio.sleep(0)``) until its reply is in keeps the loop turning without
blocking: every other task and callback still runs between its polls, and the reply is seen on
the turn after it arrives, without the sleep and the wake-up. That saves little on asyncio's own
loop and more on uvloop's, whose turns are cheaper (figures in docs/backends/redis.md).

Time is read with ``time.perf_counter``: uvloop's ``loop.time()`` moves in whole milliseconds,
and ``time.monotonic`` in 15.6 ms steps on Windows before Python 3.13, both far coarser than the
round trips measured here.

Polling costs CPU while it waits, so it is bounded three times, per server:

* a wait polls for at most :data:`SPIN_LIMIT` (plus the one turn of the loop under way), then
  parks as before;
* a server whose replies have lately taken longer than that (a remote one, or one under load)
  is not polled at all: a running average of the round trips decides, and it goes on being
  measured while parked, so polling resumes when the replies are fast again. Each round trip
  counts as at most twice the limit, so one slow command (a long script, a large value) does
  not switch polling off for the fast ones after it;
* a wait stops polling once another command queues behind it (``alone()`` turns false): then
  the caller is no longer alone, the loop has other work to wake for, and polling measurably
  cost 50 tasks' gets throughput.

Only a lone command polls (:class:`.direct.DirectCommands` on an idle server): a batch of
commands sent together (:mod:`.coalescing`) parks at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from math import isfinite
from time import perf_counter
from typing import TypeVar

__all__ = ["SPIN_LIMIT", "Spinner"]

T = TypeVar("T")

SPIN_LIMIT = 0.0002
"""Seconds a lone command's task polls for its reply at most, by default (200 µs: a loopback or
same-host round trip, several times over; a network round trip is not polled). The store option
``poll_limit`` sets another limit; 0 turns polling off."""

_WEIGHT = 8
"""The running average of the round trips moves 1/8 of the way to each new one."""


class Spinner:
    """How the lone commands of one server wait for their replies (see the module docstring)."""

    def __init__(self, alone: Callable[[], bool], limit: float = SPIN_LIMIT) -> None:
        if not (limit >= 0 and isfinite(limit)):
            raise ValueError(f"limit must be a finite number >= 0, not {limit!r}")
        self._alone = alone
        self.limit = limit
        self.typical = 0.0
        """The running average of the round trips, in seconds."""

    async def wait(self, reply: asyncio.Future[T]) -> T:
        """Return ``reply``'s result (or raise its exception), polling for it first while this
        server's replies are fast. ``reply`` was just sent. Cancelling the caller cancels
        ``reply``, as awaiting it would (the caller then drops the connection)."""
        start = perf_counter()
        if self.typical < self.limit:
            until, alone = start + self.limit, self._alone
            try:
                # Polling is the point (see the module docstring): not an Event.
                while not reply.done() and perf_counter() < until and alone():  # noqa: ASYNC110
                    await asyncio.sleep(0)
            except BaseException:
                reply.cancel()  # as awaiting it would have: nobody is left to read it
                raise
        result = await reply
        sample = min(perf_counter() - start, 2 * self.limit)
        self.typical += (sample - self.typical) / _WEIGHT
        return result
