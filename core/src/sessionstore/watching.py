"""Watching a session's events: what the optional ``event_watch`` hook returns, and the hub
backends build it from.

A watch wakes its waiter when the session's events may have changed. The promise is one-sided:
a wake-up may be spurious (a notification for a change already read, a lost listener
connection, a polling fallback), but a change that committed after the watch was started is
never missed: either the waiter's next read sees it or its next :meth:`EventWatch.wait` returns
at once. So a follower subscribes first and reads second::

    async with store.watch_events(session_id) as watch:
        while True:
            ...read and deliver what is new...
            await watch.wait(1.0)  # woken early by a change; at the latest after a second

Notifications ride on pub/sub (Redis) or ``LISTEN``/``NOTIFY`` (PostgreSQL), which deliver at
most once: a follower keeps a slow safety re-read (the ``timeout`` above).

:class:`WatchHub` is what backends share: one listener per store, its subscriptions counted per
session in this process (many watches of one session share one subscription; the last one
closed unsubscribes, so memory stays bounded by the watches open), and every watch woken when
the listener's connection was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from .errors import SessionStoreError

__all__ = ["EventWatch", "PollingWatch", "WatchHub"]


@runtime_checkable
class EventWatch(Protocol):
    """A subscription to one session's events (see the module's docstring)."""

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 -- the protocol's bound
        """Return ``True`` once the session's events may have changed since the last ``True``
        (at once if they did meanwhile), ``False`` after ``timeout`` seconds without a sign."""
        ...

    async def aclose(self) -> None:
        """Stop watching; idempotent. The subscription goes once no watch of the session is
        left."""
        ...


class PollingWatch:
    """The watch of a backend without notifications: it says "may have changed" every
    ``poll_interval`` seconds, so the caller reads that often."""

    def __init__(self, poll_interval: float) -> None:
        self._poll_interval = poll_interval

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 -- the protocol's bound
        if timeout < self._poll_interval:
            await asyncio.sleep(max(0.0, timeout))
            return False
        await asyncio.sleep(self._poll_interval)
        return True

    async def aclose(self) -> None:
        return None


class _HubWatch:
    """One watch handed out by a :class:`WatchHub`: a flag set by notifications."""

    __slots__ = ("_hub", "_woken", "key")

    def __init__(self, hub: WatchHub, key: str) -> None:
        self._hub = hub
        self.key = key
        self._woken = asyncio.Event()

    def wake(self) -> None:
        self._woken.set()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 -- the protocol's bound
        if not self._woken.is_set():
            try:
                await asyncio.wait_for(self._woken.wait(), max(0.0, timeout))
            except TimeoutError:
                return False
        self._woken.clear()
        return True

    async def aclose(self) -> None:
        await self._hub.release(self)


class WatchHub:
    """The watches of one listener (one store), demultiplexed by key in this process.

    ``subscribe(key)`` must return once the listener receives every notification of ``key``
    sent from then on; ``unsubscribe(key)`` once it stops. Both run one at a time (a lock), and
    only for the first watch of a key and after its last one closed. The backend calls
    :meth:`notify` for each notification it receives and :meth:`wake_all` when its listener's
    connection was lost (notifications may have been missed; the waiters read again), then
    subscribes :meth:`keys` again on its new connection. A key is whatever names a session's
    channel to the backend (its session id, usually). Closing its listener, the backend awaits
    :meth:`close` first.
    """

    def __init__(
        self,
        subscribe: Callable[[str], Awaitable[None]],
        unsubscribe: Callable[[str], Awaitable[None]],
    ) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._watches: dict[str, set[_HubWatch]] = {}
        self._releasing: set[asyncio.Task[None]] = set()  # unsubscriptions under way
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    @property
    def subscriptions(self) -> int:
        """How many keys have at least one open watch (each one subscription)."""
        return len(self._watches)

    def keys(self) -> list[str]:
        """The keys with at least one open watch: what a new listener connection subscribes."""
        return list(self._watches)

    async def watch(self, key: str) -> EventWatch:
        """A new watch of ``key``, subscribed before this returns.

        Errors of ``subscribe`` propagate (nothing is left registered)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
        watch = _HubWatch(self, key)
        async with self._lock:
            watches = self._watches.get(key)
            if watches is not None:
                watches.add(watch)
                return watch
            # Registered before the subscription is confirmed: a notification that the listener
            # reads between the confirmation and this task running again is not lost.
            self._watches[key] = {watch}
            try:
                await self._subscribe(key)
            except BaseException:
                del self._watches[key]
                raise
            return watch

    async def release(self, watch: _HubWatch) -> None:
        """Forget ``watch``; unsubscribe its key if it was the last one (idempotent).

        The watch is forgotten before anything is awaited, and the unsubscription runs in a
        task the hub keeps: a caller cancelled here (a client gone while its follower closes
        its watch) leaves neither the watch registered nor its subscription open."""
        watches = self._watches.get(watch.key)
        if watches is None or watch not in watches:
            return
        watches.discard(watch)
        if watches:
            return
        del self._watches[watch.key]
        task = asyncio.get_running_loop().create_task(self._unsubscribe_unwatched(watch.key))
        self._releasing.add(task)
        task.add_done_callback(self._released)
        await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel the unsubscriptions still running (their listener is closing with them)."""
        tasks = list(self._releasing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _unsubscribe_unwatched(self, key: str) -> None:
        assert self._lock is not None  # a watch was made, so the lock was
        async with self._lock:
            if key in self._watches:  # watched again meanwhile: that watch's subscription
                return
            with contextlib.suppress(SessionStoreError):  # gone with its connection
                await self._unsubscribe(key)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled():
            task.exception()  # seen: its caller may have been cancelled, and has it otherwise

    def notify(self, key: str) -> None:
        """Wake every watch of ``key``. Safe from any thread."""
        if self._thread and threading.get_ident() != self._thread:
            self._call_in_loop(self.notify, key)
            return
        for watch in self._watches.get(key, ()):
            watch.wake()

    def wake_all(self) -> None:
        """Wake every watch (the listener lost its connection). Safe from any thread."""
        if self._thread and threading.get_ident() != self._thread:
            self._call_in_loop(self.wake_all)
            return
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()

    def _call_in_loop(self, function: Callable[..., None], *args: str) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
            self._loop.call_soon_threadsafe(function, *args)
