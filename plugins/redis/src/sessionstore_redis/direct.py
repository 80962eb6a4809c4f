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

Concurrent single commands share round trips (:mod:`.coalescing`); ``timeout`` bounds each such
shared round trip. Commands are packed here (:func:`_packed`): redis-py's ``pack_command`` costs
a few microseconds more per command, a tenth of a loopback round trip.

On a Redis Cluster each node has its own (:mod:`.cluster`): commands coalesce per node.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError, ResponseError

from .coalescing import Coalescer
from .spinning import SPIN_LIMIT, Spinner
from .wire import ReplyProtocol, known_clean, take_over

_HIREDIS: tuple[type, ...]
try:
    from hiredis import Reader as _HiredisReader

    _HIREDIS = (_HiredisReader,)
except ImportError:  # redis-py then parses in Python, and _exchange goes through its API
    _HIREDIS = ()

__all__ = ["DirectCommands"]


class DirectCommands:
    """Run commands on the server of ``pool``, over at most ``pool.max_connections`` connections
    made by ``pool``'s factory (the pool itself hands out none of them).

    Replies are as redis-py's parser gives them, with no response callback: with
    ``decode_responses=False`` bytes, ints, lists and ``None``. An error reply raises redis-py's
    :class:`~redis.exceptions.ResponseError` (or its subclass, such as ``NoScriptError``);
    a failed connection raises redis-py's ``ConnectionError``, ``TimeoutError`` or ``OSError``.
    ``timeout`` bounds a round trip shared by concurrent commands (see :mod:`.coalescing`);
    ``poll_limit`` is the longest a lone command polls for its reply (see :mod:`.spinning`; 0:
    never).
    """

    def __init__(
        self, pool: ConnectionPool, *, timeout: float, poll_limit: float = SPIN_LIMIT
    ) -> None:
        self._make_connection = pool.make_connection
        self._limit: int = pool.max_connections
        self._idle: list[AbstractConnection] = []
        self._made = 0
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()
        self._closed = False
        self._disconnecting: set[asyncio.Task[None]] = set()
        self._coalescer = Coalescer(self._execute_now, self._execute_together, timeout=timeout)
        self._spinner = Spinner(self._coalescer.idle, poll_limit)

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply: at once, or, while another of this server's
        is on the wire, together with the others issued meanwhile (see :mod:`.coalescing`).
        Never a command that blocks the server's reply (``WAIT``): use :meth:`execute_many`."""
        if self._closed:
            raise ConnectionError("the store is closed")
        return await self._coalescer.execute(args)

    async def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies in order (a pipeline, no
        transaction). An error reply takes its command's place in the list as the exception;
        a failed connection raises, and then none of the replies is known.

        One command goes as :meth:`execute` sends it (it may share a round trip); several go on
        a connection of their own, so that a ``WAIT`` among them holds up no other command."""
        if len(commands) == 1:
            try:
                return [await self.execute(*commands[0])]
            except ResponseError as exc:
                return [exc]
        return await self._execute_together(commands)

    async def close(self) -> None:
        """Disconnect the idle connections; a busy one is disconnected when it is released.
        A command waiting for a connection, or sent after this, fails with ``ConnectionError``."""
        self._closed = True
        await self._coalescer.close()
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

    # -- sending ----------------------------------------------------------------------------------

    async def _execute_now(self, command: Sequence[Any]) -> Any:
        connection = await self._acquire()
        try:
            (reply,) = await _exchange(connection, _packed(connection, command), 1, self._spinner)
        finally:
            self._release(connection)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _execute_together(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        connection = await self._acquire()
        try:
            packed = b"".join([_packed(connection, command) for command in commands])
            return await _exchange(connection, packed, len(commands))
        finally:
            self._release(connection)

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
        if known_clean(connection):  # the common case, without a coroutine
            return connection
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
        writer = connection._writer
        if writer is not None and writer.transport.is_closing():  # reset, or closed under us
            stale = True
        else:
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


def _packed(connection: AbstractConnection, command: Sequence[Any]) -> bytes:
    """``command`` in the Redis protocol, as ``connection.pack_command`` packs it, for less: this
    backend's arguments are ``str``, ``bytes`` and ``int``, encoded here (``str`` as UTF-8, as
    redis-py's default encoder does); anything else is left to redis-py, which refuses what
    Redis cannot take."""
    name = command[0]
    if type(name) is not str or " " in name:  # redis-py splits "CLUSTER SLOTS" into two
        return b"".join(connection.pack_command(*command))
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        kind = type(arg)
        if kind is bytes:
            value = arg
        elif kind is str:
            value = arg.encode()
        elif kind is int:
            value = b"%d" % arg
        else:
            return b"".join(connection.pack_command(*command))
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(parts)


async def _exchange(
    connection: AbstractConnection, data: bytes, count: int, spinner: Spinner | None = None
) -> list[Any]:
    """Write ``data`` (``count`` packed commands) and read ``count`` replies; an error reply is
    the exception in its place (``ResponseError``; one that means the connection cannot serve,
    such as ``LOADING``, raises). Any failure or cancellation drops the connection, as redis-py
    does, so that a late reply is never read as another command's.

    With hiredis the replies are read by a :class:`.wire.ReplyProtocol` that takes over the
    connection's transport on its first exchange: redis-py's ``send_packed_command`` and
    ``read_response`` cost about 20 µs a command on this project's machines, and reading through
    its stream reader 1 to 13 µs more than the protocol (``bench/bench_redis.py``: one task's get
    against ``redis-benchmark -c 1``). The parser's hiredis reader is an attribute of redis-py 8.1
    (pinned in requirements/dev.txt); without it, redis-py's API is used.

    With ``spinner`` (a lone command's), the task polls for the replies before it sleeps: see
    :mod:`.spinning`.
    """
    writer = connection._writer
    protocol: Any = None if writer is None else writer.transport.get_protocol()
    try:
        if type(protocol) is not ReplyProtocol:
            reader: Any = getattr(connection._parser, "_reader", None)
            if type(reader) not in _HIREDIS or (protocol := take_over(connection, reader)) is None:
                return await _exchange_through_the_api(connection, data, count)
        waiter = protocol.exchange(data, count)
        replies = await (waiter if spinner is None else spinner.wait(waiter))
        for reply in replies:
            if isinstance(reply, ConnectionError):  # as redis-py's parser does
                raise reply
            if type(reply) is list and reply and isinstance(reply[0], ConnectionError):
                raise reply[0]
        return replies
    except BaseException as exc:
        await connection.disconnect(nowait=True)
        if isinstance(exc, OSError):
            raise ConnectionError(f"Error while talking to the server: {exc}") from exc
        raise


async def _exchange_through_the_api(
    connection: AbstractConnection, data: bytes, count: int
) -> list[Any]:
    await connection.send_packed_command(data, False)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await connection.read_response())
        except ResponseError as exc:  # the reply was read whole: the stream is in step
            replies.append(exc)
    return replies
