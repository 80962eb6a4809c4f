"""Concurrent commands share round trips (sessionstore_redis.coalescing), and nothing else moves:
every reply goes to its own caller, whatever the mix of commands, errors and script reloads; a
cancelled caller never puts the connection out of step; a connection lost mid-batch fails each of
the batch's callers and loses nothing acknowledged; a lone command goes out before its caller
first yields to the event loop; on a cluster, commands coalesce per node.

The batches are made to form, and held on the wire, by a proxy that holds the server's replies
back (``ReplyGate``); writes are counted by a connection class that counts them.
"""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Coroutine, Generator
from typing import Any

import pytest
import redis
from cluster_admin import wait_for
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, ConnectionPool
from redis.exceptions import NoScriptError, ResponseError
from redis_servers import RedisClusterServers, RedisServer
from reply_gate import BOUND, ReplyGate, until

from sessionstore import (
    ConflictError,
    Session,
    SessionNotFoundError,
    StoreUnavailableError,
    TransportType,
    open_store,
)
from sessionstore_redis import direct as direct_module
from sessionstore_redis.cluster import ClusterCommands
from sessionstore_redis.direct import DirectCommands


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


class CountingTransport:
    """A connection's transport, its writes counted in ``count[0]``; the rest is the transport's
    own. (uvloop's transports take no attribute, so the write is not patched on the transport.)"""

    def __init__(self, transport: asyncio.WriteTransport, count: list[int]) -> None:
        self._transport = transport
        self._count = count

    def write(self, data: bytes) -> None:
        self._count[0] += 1
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def writes_counted() -> tuple[type[Connection], list[int]]:
    """A connection class that counts the writes to its sockets, and the count: at the
    transport, where both redis-py's stream writer and the backend's reply protocol write."""
    count = [0]

    class CountingConnection(Connection):
        async def _connect(self) -> None:
            await super()._connect()
            writer: Any = self._writer
            writer._transport = CountingTransport(writer.transport, count)

    return CountingConnection, count


def calls_of(client: redis.Redis, command: str) -> int:
    """How many times the server has run ``command`` (``INFO commandstats``)."""
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return 0 if stats is None else int(stats["calls"])


# -- replies matched to callers ------------------------------------------------------------------


@pytest.fixture(params=["hiredis", "api"])
def exchange_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which way ``direct._exchange`` reads: straight from hiredis's reader (the pinned redis-py
    and hiredis), every call checked to stay on it, so an upgrade that renames what it reads is
    noticed here rather than as a silent slowdown; or redis-py's own API, its fallback."""
    if request.param == "hiredis":
        assert direct_module._HIREDIS, "hiredis is pinned in requirements/dev.txt"

        async def refused(*args: Any) -> list[Any]:
            raise AssertionError("the hiredis path fell back to redis-py's API")

        monkeypatch.setattr(direct_module, "_exchange_through_the_api", refused)
    else:
        monkeypatch.setattr(direct_module, "_HIREDIS", ())
    return str(request.param)


async def test_concurrent_mixed_commands_share_writes_and_each_get_their_own_reply(
    redis_server: RedisServer, exchange_path: str
) -> None:
    """One command goes out alone; the 200 issued while it is on the wire go out in one write,
    and each caller gets its own reply or error reply, NOSCRIPT included, on both read paths."""
    connection_class, writes = writes_counted()
    pool = ConnectionPool.from_url(redis_server.url, connection_class=connection_class)
    direct = DirectCommands(pool, timeout=BOUND)
    try:
        for i in range(50):
            await direct.execute("SET", f"k{i}", f"value {i}")
        await direct.execute("SET", "text", "not a number")
        before = writes[0]
        expected: list[Any] = []
        calls: list[Coroutine[Any, Any, Any]] = []
        for i in range(201):
            kind = i % 6
            if kind == 0:
                calls.append(direct.execute("GET", f"k{i % 50}"))
                expected.append(f"value {i % 50}".encode())
            elif kind == 1:
                calls.append(direct.execute("ECHO", f"echo {i}"))
                expected.append(f"echo {i}".encode())
            elif kind == 2:
                calls.append(direct.execute("INCR", "text"))
                expected.append(ResponseError)
            elif kind == 3:
                calls.append(direct.execute("EVALSHA", "0" * 40, 0))
                expected.append(NoScriptError)
            elif kind == 4:
                calls.append(direct.execute("EVAL", "return ARGV[1]", 0, f"script {i}"))
                expected.append(f"script {i}".encode())
            else:
                calls.append(direct.execute("HGET", "text", "field"))  # WRONGTYPE
                expected.append(ResponseError)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for i, (outcome, wanted) in enumerate(zip(outcomes, expected, strict=True)):
            if isinstance(wanted, type):
                assert isinstance(outcome, wanted), (i, outcome)
            else:
                assert outcome == wanted, (i, outcome)
        # The first alone, the other 200 together (without coalescing: 201 writes).
        assert writes[0] - before <= 3, writes[0] - before
    finally:
        await direct.close()
        await pool.aclose()


async def test_a_store_under_concurrency_matches_every_outcome_after_a_script_flush(
    redis_url: str,
) -> None:
    """Gets, compare-and-set updates (some stale), appends and calls on missing sessions all at
    once, after SCRIPT FLUSH (every script meets NOSCRIPT and is sent again whole): each call
    gets its own outcome, and the stored state is what the acknowledged writes made it."""
    sync = redis.Redis.from_url(redis_url)
    try:
        async with open_store(redis_url, namespace=fresh_namespace()) as store:
            sessions = [
                await store.create_session(
                    Session(id=f"s{i}", transport=TransportType.HTTP, metadata={"n": i})
                )
                for i in range(30)
            ]
            sync.script_flush()
            calls: list[Coroutine[Any, Any, Any]] = []
            for i, session in enumerate(sessions):
                if i % 3 == 0:
                    calls.append(store.get_session(session.id))
                elif i % 3 == 1:
                    session.metadata = {"n": i, "updated": True}
                    calls.append(store.update_session(session))
                else:
                    calls.append(store.append_event(session.id, "stream", f"event {i}".encode()))
            stale = sessions[1].model_copy(update={"version": 7})
            calls.append(store.update_session(stale))
            calls.append(store.get_session("missing"))
            calls.append(store.append_event("missing", "stream", b"x"))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            *mine, stale_outcome, missing_get, missing_append = outcomes
            assert isinstance(stale_outcome, ConflictError), stale_outcome
            assert isinstance(missing_get, SessionNotFoundError), missing_get
            assert isinstance(missing_append, SessionNotFoundError), missing_append
            for i, outcome in enumerate(mine):
                if i % 3 == 0:
                    assert isinstance(outcome, Session), outcome
                    assert (outcome.id, outcome.metadata) == (f"s{i}", {"n": i})
                elif i % 3 == 1:
                    assert isinstance(outcome, Session), outcome
                    assert (outcome.id, outcome.version) == (f"s{i}", 2)
                else:
                    assert isinstance(outcome, str), outcome
                    assert outcome.endswith(f"-s{i}"), outcome
            for i in range(30):
                stored = await store.get_session(f"s{i}")
                updated = i % 3 == 1
                assert stored.version == (2 if updated else 1)
                assert stored.metadata == ({"n": i, "updated": True} if updated else {"n": i})
            await store.clear()
    finally:
        sync.close()


# -- cancellation and failure mid-batch ---------------------------------------------------------


def bulk(value: bytes) -> bytes:
    """A bulk-string reply as the server sends it."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


async def test_a_caller_cancelled_mid_batch_leaves_the_connection_in_step(
    redis_server: RedisServer,
) -> None:
    """Callers cancelled while their batch is on the wire: the others get their own replies,
    the connection is kept (no reconnection) and the next commands read their own replies. A
    caller cancelled while queued: its command is never sent."""
    sync = redis.Redis(port=redis_server.port)
    async with ReplyGate(redis_server.port) as gate:
        pool = ConnectionPool.from_url(gate.url)
        direct = DirectCommands(pool, timeout=BOUND)
        try:
            for i in range(12):
                await direct.execute("SET", f"k{i}", f"value {i}")
            connections = sync.info("stats")["total_connections_received"]
            gets = calls_of(sync, "get")
            gate.holding = True
            lone = asyncio.ensure_future(direct.execute("GET", "k0"))
            batch = [asyncio.ensure_future(direct.execute("GET", f"k{i}")) for i in range(1, 11)]
            await until("the lone GET run", lambda: calls_of(sync, "get") == gets + 1)
            gate.let_through(len(bulk(b"value 0")))  # the lone reply: the batch goes out
            assert await lone == b"value 0"
            await until("the batch run", lambda: calls_of(sync, "get") == gets + 11)
            queued = [asyncio.ensure_future(direct.execute("GET", f"k{i}")) for i in (11, 1)]
            await asyncio.sleep(0)  # they queue behind the batch on the wire
            for cancelled in (batch[2], batch[6], queued[1]):
                cancelled.cancel()
            gate.open()
            for i, call in enumerate(batch, start=1):
                if i in (3, 7):
                    with pytest.raises(asyncio.CancelledError):
                        await call
                else:
                    assert await call == f"value {i}".encode()
            assert await queued[0] == b"value 11"
            with pytest.raises(asyncio.CancelledError):
                await queued[1]
            for i in range(12):
                assert await direct.execute("GET", f"k{i}") == f"value {i}".encode()
            # The queued caller cancelled before its batch went out sent nothing...
            assert calls_of(sync, "get") == gets + 11 + 1 + 12
            # ...and no connection was dropped and made again.
            assert sync.info("stats")["total_connections_received"] == connections
        finally:
            await direct.close()
            await pool.aclose()
            sync.close()


async def test_a_connection_lost_mid_batch_fails_every_caller_of_the_batch(
    redis_server: RedisServer,
) -> None:
    """The connection is cut after part of a batch's replies arrived: every caller of the batch
    gets StoreUnavailableError, none hangs, every acknowledged write is stored, and the store
    works again on a new connection."""
    sync = redis.Redis(port=redis_server.port)
    async with (
        ReplyGate(redis_server.port) as gate,
        open_store(gate.url, namespace=fresh_namespace(), timeout=BOUND) as store,
    ):
        await store.create_session(Session(id="warm", transport=TransportType.HTTP))
        runs = calls_of(sync, "evalsha")
        gate.holding = True
        ids = [f"c{i}" for i in range(11)]
        creates = [
            asyncio.ensure_future(store.create_session(Session(id=i, transport=TransportType.HTTP)))
            for i in ids
        ]
        await until("the lone create run", lambda: calls_of(sync, "evalsha") == runs + 1)
        gate.let_through(len(b":0\r\n"))  # the lone create is acknowledged
        await until("the batch run", lambda: calls_of(sync, "evalsha") == runs + 11)
        gate.let_through(3 * len(b":0\r\n"))  # three of the batch's ten replies...
        await asyncio.sleep(0.05)  # (let them be read: no outcome depends on it)
        gate.cut()  # ...and the connection is gone
        outcomes = await asyncio.wait_for(asyncio.gather(*creates, return_exceptions=True), BOUND)
        acknowledged = [o.id for o in outcomes if isinstance(o, Session)]
        assert acknowledged == ["c0"], outcomes
        assert all(isinstance(o, StoreUnavailableError) for o in outcomes[1:]), outcomes
        # Nothing acknowledged is lost; the unacknowledged ran here too (the server had them).
        for session_id in acknowledged:
            assert (await store.get_session(session_id)).id == session_id
        assert await store.count_sessions() == 1 + 11
        await store.clear()
    sync.close()


async def test_a_stalled_lone_command_times_out_and_frees_the_commands_queued_behind_it(
    redis_server: RedisServer,
) -> None:
    """The reply to a lone command never comes: with no caller deadline above it (the store
    adds its own), the command still fails with TimeoutError once ``timeout`` passes, and the
    commands that queued behind it then run on a new connection with their own replies."""
    async with ReplyGate(redis_server.port) as gate:
        pool = ConnectionPool.from_url(gate.url)
        direct = DirectCommands(pool, timeout=0.5)
        try:
            await direct.execute("SET", "k", "v")
            gate.holding = True
            lone = asyncio.ensure_future(direct.execute("GET", "k"))
            await until("the lone reply held", lambda: bool(gate.held))
            gate.held.clear()  # that reply is lost for good; later replies pass
            gate.holding = False
            queued = [asyncio.ensure_future(direct.execute("GET", "k")) for _ in range(3)]
            (outcome,) = await asyncio.wait_for(asyncio.gather(lone, return_exceptions=True), BOUND)
            assert isinstance(outcome, TimeoutError), outcome
            assert await asyncio.wait_for(asyncio.gather(*queued), BOUND) == [b"v"] * 3
            assert await direct.execute("GET", "k") == b"v"
        finally:
            await direct.close()
            await pool.aclose()


# -- a lone caller ---------------------------------------------------------------------------------


@types.coroutine
def finish(coroutine: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Run the rest of a coroutine that was started by hand and yielded ``yielded``."""
    while True:
        try:
            try:
                sent = yield yielded
            except BaseException as exc:
                yielded = coroutine.throw(exc)
            else:
                yielded = coroutine.send(sent)
        except StopIteration as stop:
            return stop.value


async def test_a_lone_command_is_written_before_its_caller_first_yields(
    redis_server: RedisServer,
) -> None:
    """A lone get waits for no timer and no other task: by the time its coroutine first gives
    the event loop back, the server has run its GET (checked while the loop stands still)."""
    sync = redis.Redis(port=redis_server.port)
    try:
        async with open_store(redis_server.url, namespace=fresh_namespace()) as store:
            await store.create_session(Session(id="lone", transport=TransportType.HTTP))
            for _ in range(3):
                gets = calls_of(sync, "get") + 1
                call = store.get_session("lone")
                yielded = call.send(None)  # up to its first suspension, the loop not running
                wait_for("the GET run", lambda n=gets: calls_of(sync, "get") == n, BOUND)
                assert (await finish(call, yielded)).id == "lone"
            await store.clear()
    finally:
        sync.close()


# -- a cluster -----------------------------------------------------------------------------------


async def test_on_a_cluster_commands_coalesce_per_node(redis_cluster: RedisClusterServers) -> None:
    """150 GETs at once, spread over the three masters: each node's go out together (a lone one
    and one batch each), and every caller gets its own value."""
    writes: dict[tuple[str, int], list[int]] = {}

    def client_for(host: str, port: int) -> Redis:
        connection_class, writes[host, port] = writes_counted()
        pool = ConnectionPool(host=host, port=port, connection_class=connection_class)
        return Redis(connection_pool=pool)

    cluster = ClusterCommands(redis_cluster.nodes, client_for, refresh_timeout=BOUND, timeout=BOUND)
    prefix = fresh_namespace()
    keys = [f"{prefix}:{i}" for i in range(150)]
    try:
        for key in keys:
            await cluster.execute("SET", key, f"value of {key}")
        before = {node: count[0] for node, count in writes.items()}
        assert len(before) == 3  # every master holds some of the keys
        values = await asyncio.gather(*(cluster.execute("GET", key) for key in keys))
        assert values == [f"value of {key}".encode() for key in keys]
        for node, count in writes.items():
            assert count[0] - before[node] <= 3, (node, count[0] - before[node])
        await asyncio.gather(*(cluster.execute("DEL", key) for key in keys))
    finally:
        await cluster.close()


async def test_a_closed_store_leaves_no_task_of_its_own_running(redis_server: RedisServer) -> None:
    """After ``aclose()`` no task of the backend is left (the operations' deadline watchers
    included): an application that closes its loop by hand gets no "Task was destroyed but it
    is pending" at exit."""

    def ours() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if "sessionstore" in t.get_name()]

    store = open_store(redis_server.url, namespace=fresh_namespace())
    await store.create_session(Session(id="tasks", transport=TransportType.HTTP))
    await asyncio.gather(*(store.get_session("tasks") for _ in range(20)))
    assert ours()  # the deadline watchers run while the store is used
    await store.clear()
    await store.aclose()
    assert ours() == []
