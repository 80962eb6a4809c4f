"""Commands to one Redis server over connections held here rather than in redis-py's pool.

redis-py's ``Redis.execute_command`` takes a connection from its pool under a lock, records
metrics on the way in and out, and wraps every call in its retry machinery: about 30 µs a
command on this project's machines, a quarter of a loopback round trip. This backend needs none
of it (it never retries, see :func:`.connection.open_client`, and bounds each operation itself),
so on a single server it talks to redis-py's ``Connection`` objects directly: the same sockets,
TLS, AUTH, ``SELECT`` and hiredis parsing, without the per-command bookkeeping.

What the pool did that still matters is kept:

* a connection the server closed while it sat idle (a restart, ``timeout``, ``CLIENT KILL``) is
  noticed before a command is written to it, and connected again (``Connection.can_read``);
* a connection is never handed out in the middle of a reply: redis-py drops the socket when a
  send or a read fails or is cancelled, so a late reply can never be read as another command's;
* ``max_connections`` bounds the connections; a command that finds them all busy waits for one
  (bounded by the operation's deadline) instead of failing.

A Redis Cluster keeps redis-py's cluster client, which routes every command to its slot's node.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError, ResponseError

__all__ = ["DirectCommands"]


class DirectCommands:
    """Run commands on the server of ``pool``, over at most ``pool.max_connections`` connections
    made by ``pool``'s factory (the pool itself hands out none of them).

    Replies are as redis-py's parser gives them, with no response callback: with
    ``decode_responses=False`` bytes, ints, lists and ``None``. An error reply raises redis-py's
    :class:`~redis.exceptions.ResponseError` (or its subclass, such as ``NoScriptError``);
    a failed connection raises redis-py's ``ConnectionError``, ``TimeoutError`` or ``OSError``.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._make_connection = pool.make_connection
        self._limit: int = pool.max_connections
        self._idle: list[AbstractConnection] = []
        self._made = 0
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()
        self._closed = False
        self._disconnecting: set[asyncio.Task[None]] = set()

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply."""
        connection = await self._acquire()
        try:
            await connection.send_packed_command(connection.pack_command(*args), False)
            return await connection.read_response()
        finally:
            self._release(connection)

    async def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies in order (a pipeline, no
        transaction). An error reply takes its command's place in the list as the exception;
        a failed connection raises, and then none of the replies is known."""
        connection = await self._acquire()
        try:
            await connection.send_packed_command(connection.pack_commands(commands), False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # the reply was read whole: the stream is in step
                    replies.append(exc)
            return replies
        finally:
            self._release(connection)

    async def close(self) -> None:
        """Disconnect the idle connections; a busy one is disconnected when it is released.
        A command waiting for a connection, or sent after this, fails with ``ConnectionError``."""
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("the store is closed"))
        idle, self._idle = self._idle, []
        # All at once, and without waiting on each socket's shutdown: a hung server (a TLS
        # close never answered) must not keep the others open or stall the store's close.
        await asyncio.gather(
            *(connection.disconnect(nowait=True) for connection in idle),
            *self._disconnecting,
            return_exceptions=True,
        )

    # -- the connections ------------------------------------------------------------------------

    async def _acquire(self) -> AbstractConnection:
        if self._closed:
            raise ConnectionError("the store is closed")
        if self._idle:
            connection = self._idle.pop()
        elif self._made < self._limit:
            self._made += 1
            connection = self._make_connection()  # type: ignore[no-untyped-call]
        else:
            connection = await self._wait_for_connection()
        try:
            await self._ready(connection)
        except BaseException:
            try:  # half connected (a handshake cut short) is not connected
                await connection.disconnect(nowait=True)
            finally:
                self._release(connection)
            raise
        return connection

    async def _wait_for_connection(self) -> AbstractConnection:
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a connection just as this task was cancelled: pass it on, or it is lost.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            raise

    @staticmethod
    async def _ready(connection: AbstractConnection) -> None:
        if not connection.is_connected:
            await connection.connect()  # type: ignore[no-untyped-call]
            return
        try:
            stale = await connection.can_read()  # unread bytes, or the server hung up
        except (ConnectionError, OSError):
            stale = True
        if stale:
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]

    def _release(self, connection: AbstractConnection) -> None:
        if self._closed:
            # In a task: a release must not suspend (callers release in ``finally``).
            task = asyncio.get_running_loop().create_task(connection.disconnect(nowait=True))
            self._disconnecting.add(task)
            task.add_done_callback(self._disconnecting.discard)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)
