"""Event notifications over ``LISTEN``/``NOTIFY``: the ``event_watch`` hook of the PostgreSQL
backend.

The backend's writes that change a session's events (append, load, delete) call
``pg_notify(pg_notify_channel(namespace), session_id)`` in their transaction (see
:mod:`.notify`): PostgreSQL delivers the notification when that transaction commits, so after the
change is visible, and never for a transaction rolled back.

One store listens on one dedicated connection, outside its pool (a pooled connection may be reset
or handed to a query; ``LISTEN`` belongs to the session that issued it). It listens on its
namespace's channel while at least one watch is open, and the payload (the session id) picks the
watches to wake (:class:`~sessionstore.WatchHub`). The connection is opened by the first watch
and closed after the last one. When it drops, every watch is woken (notifications may have been
missed) and a new connection listens again, after which every watch is woken once more for the
changes made in between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from sessionstore import StoreUnavailableError, WatchHub
from sessionstore.watching import EventWatch

from .connection import UNAVAILABLE, Endpoint, unavailable
from .notify import pg_notify_channel

__all__ = ["PostgresNotifications"]

_RECONNECT_FIRST = 0.05  # seconds before connecting again after a lost connection, doubling
_RECONNECT_LONGEST = 2.0

Connect = Callable[[], Awaitable[asyncpg.Connection]]
"""Opens a new connection with the store's settings (not from its pool)."""


class PostgresNotifications:
    """The watches of one store on one namespace, over one listening connection."""

    def __init__(self, connect: Connect, namespace: str, endpoint: Endpoint, *, timeout: float):
        self._connect = connect
        self.channel = pg_notify_channel(namespace)
        self._endpoint = endpoint
        self._timeout = timeout
        self._connection: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False
        self._opening = asyncio.Lock()  # one connection at a time: a watch's, or a reconnection's
        self.hub = WatchHub(self._subscribe, self._unsubscribe)

    async def watch(self, session_id: str) -> EventWatch:
        """A watch of ``session_id``, listening when this returns."""
        if self._closed:
            raise StoreUnavailableError(f"PostgreSQL at {self._endpoint.display}: store closed")
        return await self.hub.watch(session_id)

    @property
    def listening(self) -> bool:
        """Whether the listening connection is open."""
        return self._connection is not None and not self._connection.is_closed()

    async def close(self) -> None:
        """Close the listening connection and wake every watch."""
        self._closed = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.hub.close()
        await self._drop()
        self.hub.wake_all()

    # -- the hub's subscribe / unsubscribe: one LISTEN for every session ------------------------

    async def _subscribe(self, session_id: str) -> None:
        async with self._opening:
            if not self.listening:
                await self._listen()

    async def _unsubscribe(self, session_id: str) -> None:
        async with self._opening:
            if self.hub.subscriptions == 0:  # the last watch of the namespace closed
                await self._drop()

    # -- the connection -------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Open the connection and ``LISTEN``; return once the server confirmed it."""
        connection = None
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connect()
                await connection.add_listener(self.channel, self._notified)
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            if connection is not None:
                connection.terminate()
            raise unavailable(exc, self._endpoint, "cannot listen for notifications") from None
        except BaseException:  # cancelled: the connection, and its LISTEN, go with the call
            if connection is not None:
                connection.terminate()
            raise
        connection.add_termination_listener(self._terminated)
        self._connection = connection

    def _notified(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        if isinstance(payload, str):
            self.hub.notify(payload)

    def _terminated(self, connection: Any) -> None:
        """The listening connection closed: by us (nothing to do), or lost."""
        if connection is not self._connection:
            return
        self._connection = None
        self.hub.wake_all()  # notifications may have been missed
        if not self._closed and self.hub.subscriptions and self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._listen_again(), name="sessionstore-postgres listen"
            )

    async def _listen_again(self) -> None:
        """Listen again while any session is watched; then wake every watch for the changes
        made while nothing listened."""
        pause = _RECONNECT_FIRST
        try:
            while not self._closed and self.hub.subscriptions:
                try:
                    async with self._opening:
                        if not self.listening:
                            await self._listen()
                        if not self.hub.subscriptions:  # the last watch closed meanwhile
                            await self._drop()
                except StoreUnavailableError:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _RECONNECT_LONGEST)
                    continue
                self.hub.wake_all()
                return
        finally:
            self._reconnecting = None

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            async with asyncio.timeout(self._timeout):
                await connection.close()  # leaves its LISTEN with it
        except (*UNAVAILABLE, asyncpg.PostgresError):
            connection.terminate()
