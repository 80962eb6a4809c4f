"""Replies read by the protocol that takes over each connection's transport
(sessionstore_redis.wire): replies are put together however their bytes arrive, error replies
included; a connection that ends (cut, or closed by the server while idle) fails the command
waiting on it at once, or is replaced before the next command; bytes the server sent unasked get
the connection replaced, never read as the next command's reply; TLS connections are read the
same way. Every test fails if the commands fall back to redis-py's own reading (``wire_only``).

Each ``DirectCommands`` here has a timeout far past ``BOUND``: a command that ends within
``BOUND`` was ended by what the test did, not by its deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import pytest
import redis
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ResponseError
from redis_servers import RedisServer, ServerFactory
from reply_gate import BOUND, ReplyGate, until

from sessionstore_redis import direct as direct_module
from sessionstore_redis.direct import DirectCommands
from sessionstore_redis.wire import ReplyProtocol, known_clean

VALUE = b"v" * 300
LONG = 20.0  # seconds: the commands' own timeout, never reached by a passing test


@pytest.fixture
def wire_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any exchange that goes through redis-py's API instead of the protocol."""

    async def refused(*args: Any) -> list[Any]:
        raise AssertionError("the exchange fell back to redis-py's API")

    monkeypatch.setattr(direct_module, "_exchange_through_the_api", refused)


def protocols(direct: DirectCommands) -> list[type]:
    """The protocol type reading each idle connection of ``direct``."""
    return [type(c._writer.transport.get_protocol()) for c in direct._idle if c._writer]


async def test_replies_arriving_a_byte_at_a_time_are_put_together(
    redis_server: RedisServer, wire_only: None
) -> None:
    """A lone GET, then a batch with a bulk string, an integer, a nil and an error reply, every
    byte of the replies delivered on its own: each caller gets its own whole reply."""
    async with ReplyGate(redis_server.port) as gate:
        direct = DirectCommands(ConnectionPool.from_url(gate.url, max_connections=1), timeout=LONG)
        try:
            await direct.execute("SET", "k", VALUE)
            assert protocols(direct) == [ReplyProtocol]
            gate.holding = True
            lone = asyncio.ensure_future(direct.execute("GET", "k"))
            await until("the lone reply held", lambda: len(gate.held) > 0)
            batch = [("GET", "k"), ("STRLEN", "k"), ("GET", "missing"), ("LPUSH", "k", "x")]
            queued = [asyncio.ensure_future(direct.execute(*c)) for c in batch]
            waiting = [lone, *queued]

            def delivered() -> bool:
                if gate.held:
                    gate.let_through(1)
                return all(f.done() for f in waiting)

            await until("every reply, a byte at a time", delivered)
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            assert outcomes[:4] == [VALUE, VALUE, len(VALUE), None]
            assert isinstance(outcomes[4], ResponseError)
            assert "WRONGTYPE" in str(outcomes[4])
            gate.open()
            assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE  # in step
        finally:
            await direct.close()


async def test_a_cut_connection_fails_the_command_waiting_on_it_at_once(
    redis_server: RedisServer, wire_only: None
) -> None:
    async with ReplyGate(redis_server.port) as gate:
        direct = DirectCommands(ConnectionPool.from_url(gate.url, max_connections=1), timeout=LONG)
        try:
            await direct.execute("SET", "k", VALUE)
            gate.holding = True
            lone = asyncio.ensure_future(direct.execute("GET", "k"))
            await until("the reply held", lambda: len(gate.held) > 0)
            gate.cut()
            with pytest.raises(redis.ConnectionError):
                await asyncio.wait_for(lone, BOUND)
            assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE
        finally:
            await direct.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    redis_server: RedisServer, wire_only: None
) -> None:
    direct = DirectCommands(
        ConnectionPool.from_url(redis_server.url, max_connections=1), timeout=LONG
    )
    admin = redis.Redis(port=redis_server.port)
    try:
        await direct.execute("SET", "k", VALUE)
        (idle,) = direct._idle
        assert admin.client_kill_filter(_type="normal", skipme=True) == 1
        await until("the end of the connection seen", lambda: not known_clean(idle))
        assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE
        assert protocols(direct) == [ReplyProtocol]
    finally:
        admin.close()
        await direct.close()


async def test_bytes_the_server_sent_unasked_get_the_connection_replaced(
    redis_server: RedisServer, wire_only: None
) -> None:
    """A reply nobody asked for (a server or proxy out of step) is never taken for the next
    command's: the connection is dropped (and its close completes) and a new one answers."""
    async with ReplyGate(redis_server.port) as gate:
        direct = DirectCommands(ConnectionPool.from_url(gate.url, max_connections=1), timeout=LONG)
        try:
            await direct.execute("SET", "k", VALUE)
            (idle,) = direct._idle
            old = idle._writer.transport  # type: ignore[union-attr]
            gate.inject(b"+PONG\r\n")
            await until("the stray reply arrived", lambda: not known_clean(idle))
            assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE
            assert old.is_closing()
            assert idle._writer is not None
            assert idle._writer.transport is not old
        finally:
            await direct.close()


async def test_tls_connections_are_read_by_the_protocol(
    make_redis_server: ServerFactory, wire_only: None
) -> None:
    server = make_redis_server(tls=True)
    pool = ConnectionPool.from_url(server.url, max_connections=1, ssl_ca_certs=server.ca_file)
    direct = DirectCommands(pool, timeout=LONG)
    try:
        await direct.execute("SET", "k", VALUE)
        assert await direct.execute("GET", "k") == VALUE
        assert protocols(direct) == [ReplyProtocol]
    finally:
        await direct.close()


async def test_a_cancelled_command_never_hands_its_reply_to_the_next(
    redis_server: RedisServer, wire_only: None
) -> None:
    """A command cancelled while the server works on it (a BLPOP that answers nil after a
    while): its connection is dropped, so the next command, sent at once, gets its own reply,
    not the late nil."""
    direct = DirectCommands(
        ConnectionPool.from_url(redis_server.url, max_connections=1), timeout=LONG
    )
    admin = redis.Redis(port=redis_server.port)
    try:
        await direct.execute("SET", "k", VALUE)

        def blocked() -> int:
            return int(admin.info("clients")["blocked_clients"])

        before = blocked()
        slow = asyncio.ensure_future(direct.execute("BLPOP", "empty-list", "0.5"))
        await until("the BLPOP blocking", lambda: blocked() > before)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE
        assert await asyncio.wait_for(direct.execute("STRLEN", "k"), BOUND) == len(VALUE)
    finally:
        admin.close()
        await direct.close()


async def test_a_connection_reset_while_idle_is_replaced(
    redis_server: RedisServer, wire_only: None
) -> None:
    """A TCP reset (not a clean close) while the connection sits idle: the next command goes out
    on a new connection instead of failing on the dead one."""
    async with ReplyGate(redis_server.port) as gate:
        direct = DirectCommands(ConnectionPool.from_url(gate.url, max_connections=1), timeout=LONG)
        try:
            await direct.execute("SET", "k", VALUE)
            (idle,) = direct._idle
            gate.reset()
            await until("the reset seen", lambda: not known_clean(idle))
            assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE
        finally:
            await direct.close()


async def test_bytes_sent_with_the_handshake_are_never_a_reply() -> None:
    """A server that answers the connection's handshake with one reply too many, arrived by the
    time the first command would go out: that command fails (its connection is dropped) rather
    than take the extra reply for its own, and the next one, on a new connection, gets its
    own. (Bytes still in flight then cannot be told from the reply; no client can.)"""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                if command[0].upper() == b"GET":
                    writer.write(b"$%d\r\n%b\r\n" % (len(VALUE), VALUE))
                elif first and command[:3] == [b"CLIENT", b"SETINFO", b"LIB-VER"]:
                    writer.write(b"+OK\r\n+STRAY\r\n")  # one reply nobody asked for
                    first = False
                else:
                    writer.write(b"+OK\r\n")

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    direct = DirectCommands(
        ConnectionPool.from_url(f"redis://127.0.0.1:{port}/0", max_connections=1), timeout=LONG
    )
    try:
        with pytest.raises(redis.ConnectionError, match="no command asked for"):
            await asyncio.wait_for(direct.execute("GET", "k"), BOUND)
        assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == VALUE
        assert connections == 2
    finally:
        await direct.close()
        server.close()


async def test_a_resp3_push_is_never_taken_for_a_reply(
    redis_server: RedisServer, wire_only: None
) -> None:
    """redis-py speaks RESP3, where the server may push out-of-band data on the connection (here
    a client-tracking invalidation) ahead of a command's reply: the command gets its reply."""
    admin = redis.Redis(port=redis_server.port)
    async with ReplyGate(redis_server.port) as gate:
        direct = DirectCommands(ConnectionPool.from_url(gate.url, max_connections=1), timeout=LONG)
        try:
            assert await direct.execute("CLIENT", "TRACKING", "ON") == b"OK"
            await direct.execute("SET", "k", VALUE)
            assert await direct.execute("GET", "k") == VALUE  # now tracked for this connection
            gate.holding = True
            admin.set("k", VALUE)  # the server pushes an invalidation: held by the gate
            await until("the invalidation held", lambda: b"invalidate" in gate.held)
            reply = asyncio.ensure_future(direct.execute("STRLEN", "k"))
            await until("the reply held behind it", lambda: gate.held.endswith(b":300\r\n"))
            gate.open()
            assert await asyncio.wait_for(reply, BOUND) == len(VALUE)
        finally:
            admin.close()
            await direct.close()
