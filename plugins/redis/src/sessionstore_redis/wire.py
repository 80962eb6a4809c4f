"""Replies read straight off the socket: a connected redis-py connection's transport is handed to
:class:`ReplyProtocol`, which feeds the bytes to the connection's hiredis reader as they arrive
and wakes the one command waiting once all its replies are in.

redis-py reads through asyncio's ``StreamReader``: for every reply a read coroutine, a future the
stream makes and wakes, and a copy of the buffered bytes before hiredis sees them: 1 to 13 µs
of a loopback round trip, on this project's machines quiet or loaded. Here the work is done in
``data_received``, and the command's task wakes once, with its replies.

The redis-py connection keeps every other job: it connects (TLS, ``AUTH``, ``SELECT``), it
disconnects, and it still tells a closed or dirty connection (``can_read``): the end of the stream
and the loss of the connection are passed on to the stream protocol it gave the transport to, and
bytes no command waits for stay in the hiredis reader it shares.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError

__all__ = ["ReplyProtocol", "known_clean", "take_over"]

_CLOSED = "Connection closed by server."
# A RESP3 push (an invalidation, a maintenance notice): never a reply to a command. None where
# hiredis is missing or predates it (3.2); the protocol is not used without hiredis.
_PUSH: type | None
try:
    from hiredis import PushNotification as _PUSH
except ImportError:
    _PUSH = None


class ReplyProtocol(asyncio.Protocol):
    """The protocol of one connection's transport while this backend holds it: one exchange at
    a time (:meth:`exchange`), as :class:`.direct.DirectCommands` uses a connection."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        reader: Any,
        stream_protocol: asyncio.Protocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._transport = transport
        self._reader = reader  # hiredis.Reader, shared with the connection's parser
        self._gets = reader.gets
        self._stream_protocol = stream_protocol
        self._loop = loop
        self._waiter: asyncio.Future[list[Any]] | None = None
        self._wanted = 0
        self._replies: list[Any] = []
        self._lost: ConnectionError | None = None

    @property
    def clean(self) -> bool:
        """The connection is open and holds no unread bytes: a command may be written to it."""
        return self._lost is None and not self._reader.has_data()

    def exchange(self, data: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write ``data`` (``count`` packed commands); the future gets their ``count`` replies,
        an error reply as the exception instance in its place, or fails with
        ``ConnectionError`` (the connection was lost) or hiredis's protocol error."""
        if self._lost is not None:
            raise self._lost
        if self._waiter is not None:  # DirectCommands holds a connection for one exchange
            raise RuntimeError("an exchange is already waiting on this connection")
        waiter = self._loop.create_future()
        self._waiter, self._wanted, self._replies = waiter, count, []
        self._transport.write(data)
        return waiter

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        if self._waiter is None:
            return  # bytes no command asked for: the connection is dirty (see clean)
        replies, gets, wanted = self._replies, self._gets, self._wanted
        try:
            while len(replies) < wanted:
                reply = gets()
                if reply is NOT_ENOUGH_DATA:
                    return
                if type(reply) is _PUSH:  # RESP3 out-of-band data (redis-py speaks RESP3)
                    continue
                replies.append(reply)
        except Exception as exc:  # not the Redis protocol: nothing more on it can be trusted
            self._finish(exc)
            return
        self._finish(None)

    def eof_received(self) -> bool | None:
        self._lose(ConnectionError(_CLOSED))
        return self._stream_protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(ConnectionError(_CLOSED if exc is None else f"Connection lost: {exc}"))
        self._stream_protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._stream_protocol.pause_writing()

    def resume_writing(self) -> None:
        self._stream_protocol.resume_writing()

    # -- internals -----------------------------------------------------------------------------

    def _lose(self, error: ConnectionError) -> None:
        if self._lost is None:
            self._lost = error
        self._finish(self._lost)

    def _finish(self, error: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        replies, self._replies = self._replies, []
        if waiter is None or waiter.done():  # its caller stopped waiting
            return
        if error is None:
            waiter.set_result(replies)
        else:
            waiter.set_exception(error)


def take_over(connection: AbstractConnection, reader: Any) -> ReplyProtocol | None:
    """Give ``connection``'s transport to a :class:`ReplyProtocol` reading with ``reader`` (the
    connection's hiredis reader) and return it; ``None``, leaving the connection as it is, when
    it is not a connected asyncio stream. Raises ``ConnectionError`` when the connection already
    holds bytes no command asked for (sent with the handshake's replies): they would be read as
    the next command's reply."""
    stream, writer = connection._reader, connection._writer
    if stream is None or writer is None:
        return None
    buffered = getattr(stream, "_buffer", None)
    if buffered is None:
        return None
    if buffered or reader.has_data() or stream.at_eof():
        raise ConnectionError("the server sent bytes no command asked for")
    transport = writer.transport
    stream_protocol = transport.get_protocol()
    if not isinstance(stream_protocol, asyncio.StreamReaderProtocol) or transport.is_closing():
        return None
    protocol = ReplyProtocol(transport, reader, stream_protocol, asyncio.get_running_loop())
    transport.set_protocol(protocol)
    return protocol


def known_clean(connection: AbstractConnection) -> bool:
    """``connection`` is read by a :class:`ReplyProtocol` that holds no unread bytes and has not
    seen the connection end: it can take a command as it is. ``False`` means: ask redis-py."""
    writer = connection._writer
    protocol = None if writer is None else writer.transport.get_protocol()
    return type(protocol) is ReplyProtocol and protocol.clean
