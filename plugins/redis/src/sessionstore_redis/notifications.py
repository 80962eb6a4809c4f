"""Event notifications over Redis pub/sub: the ``event_watch`` hook of the Redis backend.

The scripts that change a session's events (append, load, delete; see :mod:`.scripts`) publish
an empty message, in the same script, on a channel named exactly like the session's events key
(``P:{NS/k}:e:<id>``; channels and keys are separate name spaces in Redis). A script runs alone,
so the message goes out after the change is visible. On Redis 7 and later the scripts use sharded
pub/sub (``SPUBLISH``): on a cluster the message stays on the shard that owns the channel's slot,
which is the session's slot, and a listener subscribes (``SSUBSCRIBE``) on that shard's master;
before Redis 7, plain ``PUBLISH``/``SUBSCRIBE``.

Each store has one listener connection per server (per master on a cluster), made with the
store's credentials and TLS but outside its pool, and a :class:`~sessionstore.WatchHub` that
counts the watches of each session: the first subscribes, the last one closed unsubscribes. When
a listener's connection drops, every watch is woken (notifications may have been missed), and a
new connection subscribes again; once the server confirms, every watch is woken once more, for
the changes made while nothing listened. When a cluster slot moves, its master ends the
sharded subscriptions of that slot (an ``sunsubscribe`` nobody asked for): their watches are
woken and subscribed again on the slot's new master.

Pub/sub channels ignore the database number: two stores on different databases of one server
with the same key prefix and namespace would wake each other (spuriously, never wrongly).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from sessionstore import StoreUnavailableError, WatchHub
from sessionstore.watching import EventWatch

from .cluster import ClusterCommands
from .connection import UNAVAILABLE, Endpoint, unavailable
from .layout import Layout

__all__ = ["RedisNotifications", "connection_maker"]

Address = tuple[str, int] | None
"""A cluster master's address, or ``None`` for the one server."""

_FAILED: tuple[type[BaseException], ...] = (TimeoutError, *UNAVAILABLE)  # a deadline, or down
_RECONNECT_FIRST = 0.05  # seconds before connecting again after a lost connection, doubling
_RECONNECT_LONGEST = 2.0


class RedisNotifications:
    """The watches of one store: a hub, and a listener per server it subscribed on."""

    def __init__(
        self,
        make_connection: Callable[[Address], AbstractConnection],
        layout: Layout,
        endpoint: Endpoint,
        *,
        cluster: ClusterCommands | None,
        timeout: float,
    ) -> None:
        self._make_connection = make_connection
        self._layout = layout
        self._endpoint = endpoint
        self._cluster = cluster
        self._timeout = timeout
        self._listeners: dict[Address, _Listener] = {}
        self._channels: dict[bytes, tuple[str, Address]] = {}  # channel -> (session id, where)
        self.hub = WatchHub(self._subscribe, self._unsubscribe)
        self._closed = False

    async def watch(self, session_id: str) -> EventWatch:
        """A watch of ``session_id``, subscribed when this returns."""
        return await self.hub.watch(session_id)

    def channel_of(self, session_id: str) -> bytes:
        """The session's channel: its events key (see :mod:`.layout`)."""
        return self._layout.session_keys(session_id)[2].encode()

    async def close(self) -> None:
        """Drop every listener and wake every watch (their waiters read once more)."""
        self._closed = True
        await self.hub.close()
        listeners, self._listeners = self._listeners, {}
        await asyncio.gather(*(listener.close() for listener in listeners.values()))
        self.hub.wake_all()

    # -- the hub's subscribe / unsubscribe ----------------------------------------------------

    async def _subscribe(self, session_id: str) -> None:
        channel = self.channel_of(session_id)
        where = await self._owner(channel)
        self._channels[channel] = (session_id, where)
        try:
            await self._listener(where).subscribe([channel])
        except BaseException:
            self._channels.pop(channel, None)
            raise

    async def _unsubscribe(self, session_id: str) -> None:
        channel = self.channel_of(session_id)
        _, where = self._channels.pop(channel, (session_id, None))
        listener = self._listeners.get(where)
        if listener is not None:
            await listener.unsubscribe(channel)

    # -- listeners ------------------------------------------------------------------------------

    async def _owner(self, channel: bytes, *, again: bool = False) -> Address:
        """Where ``channel`` is served: the master of its slot on a cluster (from the slot table
        the commands use, read again first when ``again`` or when it is stale)."""
        cluster = self._cluster
        if cluster is None:
            return None
        try:
            if again or cluster._stale:
                await cluster.initialize()
        except UNAVAILABLE as exc:
            raise unavailable(exc, self._endpoint) from exc
        return cluster._slots[key_slot(channel)]

    def _listener(self, where: Address) -> _Listener:
        if self._closed:
            raise StoreUnavailableError(f"redis at {self._endpoint.display}: the store is closed")
        listener = self._listeners.get(where)
        if listener is None:
            listener = self._listeners[where] = _Listener(self, where)
        return listener

    def _notified(self, channel: bytes) -> None:
        entry = self._channels.get(channel)
        if entry is not None:
            self.hub.notify(entry[0])

    def is_watched(self, channel: bytes) -> bool:
        return channel in self._channels

    def _channels_of(self, where: Address) -> list[bytes]:
        return [c for c, (_, w) in self._channels.items() if w == where]

    async def _moved(self, channel: bytes) -> None:
        """The server ended ``channel``'s subscription (its slot moved): subscribe it on the
        slot's master now, then wake its watches (a change may have come in between)."""
        entry = self._channels.get(channel)
        if entry is None:
            return
        session_id, _ = entry
        with contextlib.suppress(StoreUnavailableError):
            where = await self._owner(channel, again=True)
            self._channels[channel] = (session_id, where)
            await self._listener(where).subscribe([channel])
        self.hub.notify(session_id)


class _Listener:
    """One pub/sub connection to one server, and the task reading it."""

    def __init__(self, owner: RedisNotifications, where: Address) -> None:
        self._owner = owner
        self._where = where
        self._connection: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._sending = asyncio.Lock()
        self._sharded = True
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._unsubscribing: dict[bytes, asyncio.Future[None]] = {}
        self._undoing: set[asyncio.Task[None]] = set()  # subscriptions given up, unsubscribing

    async def subscribe(self, channels: list[bytes]) -> None:
        """Subscribe ``channels``; return once the server confirmed each of them.

        Given up (cancelled, timed out, failed), the channels are unsubscribed by a task the
        listener keeps: the server may hold the subscription the command asked for."""
        connection = await self._connected()
        futures: list[asyncio.Future[None]] = []
        try:
            await self._send_subscribe(connection, channels, futures=futures)
        except BaseException:
            for channel, future in zip(channels, futures, strict=False):
                if self._confirmations.get(channel) is future:
                    del self._confirmations[channel]  # its late confirmation finds nobody
            for channel in channels:
                task = asyncio.get_running_loop().create_task(
                    self.unsubscribe(channel, unless_watched=True)
                )
                self._undoing.add(task)
                task.add_done_callback(self._undoing.discard)
            raise

    async def unsubscribe(self, channel: bytes, *, unless_watched: bool = False) -> None:
        """Unsubscribe ``channel``; return once the server confirmed it (or the connection,
        and the subscription with it, is gone). With ``unless_watched``, not if the channel
        is watched (again) by the time its turn to send comes."""
        connection = self._connection
        if connection is None:
            return  # the connection is gone, and the subscription with it
        future = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._owner._timeout):
                async with self._sending:
                    if unless_watched and self._owner.is_watched(channel):
                        return  # a later subscription's: the server keeps it
                    self._unsubscribing[channel] = future
                    command = "SUNSUBSCRIBE" if self._sharded else "UNSUBSCRIBE"
                    await connection.send_command(command, channel)
                await future
        except _FAILED:
            pass  # the reader sees a lost connection; a late confirmation finds no watch
        finally:
            if self._unsubscribing.get(channel) is future:
                del self._unsubscribing[channel]

    async def close(self) -> None:
        undoing = list(self._undoing)
        for task in undoing:
            task.cancel()  # the subscriptions go with the connection
        await asyncio.gather(*undoing, return_exceptions=True)
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *UNAVAILABLE):
                await reader
        await self._drop()

    async def _send_subscribe(
        self,
        connection: AbstractConnection,
        channels: list[bytes],
        *,
        confirmed: bool = True,
        futures: list[asyncio.Future[None]] | None = None,
    ) -> list[asyncio.Future[None]]:
        """Send the subscription of ``channels``; with ``confirmed``, return once the server
        confirmed each (the reader resolves the returned futures: the reader itself must not
        wait for them). ``futures``, if given, receives them before anything is sent."""
        loop = asyncio.get_running_loop()
        waiting = [] if futures is None else futures
        for channel in channels:
            future = self._confirmations.get(channel)
            if future is None or future.done():
                future = self._confirmations[channel] = loop.create_future()
            waiting.append(future)
        try:
            async with asyncio.timeout(self._owner._timeout):
                async with self._sending:
                    command = "SSUBSCRIBE" if self._sharded else "SUBSCRIBE"
                    await connection.send_command(command, *channels)
                if confirmed:
                    await asyncio.gather(*waiting)
        except TimeoutError as exc:
            raise unavailable(exc, self._owner._endpoint) from None
        except UNAVAILABLE as exc:
            raise unavailable(exc, self._owner._endpoint) from None
        return waiting

    async def _connected(self) -> AbstractConnection:
        """The listener's connection, connected (and its reader started) if it was not."""
        async with self._connecting:
            if self._connection is not None:
                return self._connection
            connection = self._owner._make_connection(self._where)
            try:
                async with asyncio.timeout(self._owner._timeout):
                    await connection.connect()  # type: ignore[no-untyped-call]
                    await connection.send_command("INFO", "server")
                    info = await connection.read_response()
            except _FAILED as exc:
                with contextlib.suppress(*UNAVAILABLE):
                    await connection.disconnect(nowait=True)
                raise unavailable(exc, self._owner._endpoint) from None
            self._sharded = _major_version(info) >= 7  # the scripts SPUBLISH from Redis 7 on
            self._connection = connection
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(
                    self._read(), name="sessionstore-redis notifications"
                )
            return connection

    async def _read(self) -> None:
        """Read notifications until closed; after a lost connection, connect again while any
        session is watched, subscribe them all, and wake every watch."""
        pause = _RECONNECT_FIRST
        current: AbstractConnection | None = None
        lost = False
        while True:
            connection = self._connection
            if connection is None:
                if not self._owner._channels_of(self._where):
                    return  # nothing to listen for: the next subscribe connects again
                try:
                    connection = await self._connected()
                except StoreUnavailableError:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _RECONNECT_LONGEST)
                    continue
            if connection is not current:  # a new connection: by this loop or by a subscribe
                current, pause = connection, _RECONNECT_FIRST
                if lost:  # subscribe every watched session again, then wake them all
                    lost = False
                    channels = self._owner._channels_of(self._where)
                    try:
                        confirmations = await self._send_subscribe(
                            connection, channels, confirmed=False
                        )
                    except StoreUnavailableError:
                        await self._lost()
                        lost = True
                        continue
                    task = asyncio.get_running_loop().create_task(self._wake_all(confirmations))
                    task.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                # RESP3 (redis-py's default) sends messages as pushes, read only when asked
                # for; no read timeout: a listener waits as long as nothing happens.
                reply: Any = await connection.read_response(timeout=math.inf, push_request=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # a lost connection (or an error reply: start again cleanly)
                await self._lost()
                lost = True
                continue
            self._dispatch(reply)

    async def _wake_all(self, confirmations: list[asyncio.Future[None]]) -> None:
        """Wake every watch once the server confirmed the subscriptions made again: changes
        made while nothing listened are then read."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self._owner._timeout):
                await asyncio.gather(*confirmations)
        self._owner.hub.wake_all()

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 2:
            return
        kind, channel = reply[0], reply[1]
        if kind in (b"smessage", b"message"):
            self._owner._notified(channel)
        elif kind in (b"ssubscribe", b"subscribe"):
            future = self._confirmations.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind in (b"sunsubscribe", b"unsubscribe"):
            unsubscribed = self._unsubscribing.pop(channel, None)
            if unsubscribed is not None:
                if not unsubscribed.done():
                    unsubscribed.set_result(None)
            elif self._owner.is_watched(channel):
                # The server ended it: on a cluster, its slot moved to another master.
                task = asyncio.get_running_loop().create_task(self._owner._moved(channel))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _lost(self) -> None:
        await self._drop()
        for future in self._confirmations.values():
            if not future.done():
                future.set_exception(ConnectionError("the listener's connection was lost"))
                future.exception()  # marked seen: its subscriber may have given up
        self._confirmations.clear()
        for future in self._unsubscribing.values():
            if not future.done():
                future.set_result(None)  # the subscription went with the connection
        self._unsubscribing.clear()
        self._owner.hub.wake_all()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await connection.disconnect(nowait=True)


def connection_maker(
    client: Any, cluster: ClusterCommands | None
) -> Callable[[Address], AbstractConnection]:
    """How a listener makes its connection to ``where``: with the pool's settings (credentials,
    TLS, timeouts) but outside the pool, so it never takes a command's place."""
    if cluster is None:
        return lambda where: client.connection_pool.make_connection()

    def make(where: Address) -> AbstractConnection:
        assert where is not None
        return cluster._node(where)._make_connection()  # type: ignore[no-untyped-call,no-any-return]

    return make


def _major_version(info: object) -> int:
    """The major version in an ``INFO server`` reply (0 if none is found)."""
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("redis_version:"):
            head = line.partition(":")[2].partition(".")[0]
            return int(head) if head.isdigit() else 0
    return 0
