"""The direct command path on one server (``sessionstore_redis.direct``), against real servers:
what redis-py's pool did for the backend must still hold without it."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis_servers import RedisServer

from sessionstore import Session, StoreUnavailableError, TransportType, open_store
from sessionstore_redis.backend import create_backend
from sessionstore_redis.direct import DirectCommands


def session(**metadata: object) -> Session:
    return Session(transport=TransportType.HTTP, metadata=dict(metadata))


def connections_received(server: RedisServer) -> int:
    with redis.Redis.from_url(server.url) as client:
        return int(client.info("stats")["total_connections_received"])


def pause_server(server: RedisServer, milliseconds: int) -> None:
    """Hold every client's commands for a while (the server answers them afterwards)."""
    with redis.Redis.from_url(server.url) as client:
        client.execute_command("CLIENT", "PAUSE", milliseconds, "ALL")


async def test_connections_the_server_closed_while_idle_are_replaced_before_use(
    redis_server: RedisServer,
) -> None:
    async with open_store(redis_server.url, namespace="direct") as store:
        sessions = await asyncio.gather(*(store.create_session(session(n=n)) for n in range(8)))
        for round_ in range(3):
            with redis.Redis.from_url(redis_server.url) as client:
                killed = client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            assert killed >= 1, "the store's idle connections were not there to close"
            await asyncio.sleep(0.05)  # the hang-ups reach the event loop
            # Every idle connection is dead: each command must notice and connect again.
            found = await asyncio.gather(*(store.get_session(s.id) for s in sessions))
            assert [s.metadata for s in found] == [{"n": n} for n in range(8)], round_
            sessions = await asyncio.gather(*(store.update_session(s) for s in sessions))


async def test_max_connections_bounds_the_connections_and_commands_wait_for_one(
    redis_server: RedisServer,
) -> None:
    async with open_store(redis_server.url, namespace="direct", max_connections=2) as store:
        created = [await store.create_session(session(n=n)) for n in range(30)]
        before = connections_received(redis_server)
        updated = await asyncio.gather(*(store.update_session(s) for s in created))
        found = await asyncio.gather(*(store.get_session(s.id) for s in created))
        assert [s.version for s in updated] == [2] * 30
        assert [s.metadata for s in found] == [{"n": n} for n in range(30)]
        opened = connections_received(redis_server) - before - 1  # less this check's own
        assert opened <= 2, opened


async def test_a_cancelled_command_never_leaves_its_reply_for_the_next(
    redis_server: RedisServer,
) -> None:
    async with open_store(redis_server.url, namespace="direct", max_connections=1) as store:
        first = await store.create_session(session(name="first"))
        second = await store.create_session(session(name="second"))
        pause_server(redis_server, 300)
        reading = asyncio.create_task(store.get_session(first.id))
        await asyncio.sleep(0.1)  # its GET is on the wire, its reply held by the pause
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        # The one connection comes back; the first GET's late reply must not answer this one.
        assert (await store.get_session(second.id)).metadata == {"name": "second"}
        assert (await store.get_session(first.id)).metadata == {"name": "first"}


async def test_waiting_for_a_connection_is_bounded_by_the_operation_timeout(
    redis_server: RedisServer,
) -> None:
    async with open_store(
        redis_server.url, namespace="direct", max_connections=1, timeout=0.4
    ) as store:
        created = await store.create_session(session())
        pause_server(redis_server, 1500)
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(store.get_session(created.id) for _ in range(3)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(o, StoreUnavailableError) for o in outcomes), outcomes
        assert all("timed out" in str(o) for o in outcomes), outcomes
        assert elapsed < 1.2, elapsed  # 0.4 s, plus up to a quarter for the watcher
        await asyncio.sleep(1.5 - elapsed)
        assert (await store.get_session(created.id)).id == created.id


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_passes_it_on(
    redis_server: RedisServer,
) -> None:
    pool = ConnectionPool.from_url(redis_server.url, max_connections=1)
    direct = DirectCommands(pool, timeout=5)
    try:
        assert await direct.execute("SET", "k", "v") == b"OK"
        held = await direct._acquire()
        waiter = asyncio.create_task(direct._acquire())
        await asyncio.sleep(0)  # the waiter queues: the one connection is held
        direct._release(held)  # handed to the waiter, which has not run yet...
        waiter.cancel()  # ...and is cancelled before it does
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The connection went on to the next taker rather than being lost with the waiter.
        assert await asyncio.wait_for(direct.execute("GET", "k"), 2) == b"v"
    finally:
        await direct.close()
        await pool.aclose()


async def closed_with_a_waiter(
    server: RedisServer,
) -> tuple[ConnectionPool, DirectCommands, AbstractConnection, asyncio.Task[object]]:
    """Commands over one connection, held here, a PING queued for it, then ``close()``."""
    pool = ConnectionPool.from_url(server.url, max_connections=1)
    direct = DirectCommands(pool, timeout=5)
    held = await direct._acquire()
    waiter = asyncio.create_task(direct.execute("PING"))
    await asyncio.sleep(0)  # the PING waits for the held connection
    await direct.close()
    return pool, direct, held, waiter


async def test_a_waiter_cancelled_after_close_failed_it_is_cancelled_still(
    redis_server: RedisServer,
) -> None:
    pool, direct, held, waiter = await closed_with_a_waiter(redis_server)  # its future failed...
    waiter.cancel()  # ...and its task is cancelled before it runs: a cancellation it stays
    with pytest.raises(asyncio.CancelledError):
        await waiter
    direct._release(held)
    await asyncio.sleep(0.05)
    await pool.aclose()


async def test_commands_after_close_fail_and_waiters_are_released(
    redis_server: RedisServer,
) -> None:
    pool, direct, held, waiter = await closed_with_a_waiter(redis_server)
    with pytest.raises(redis.ConnectionError, match="closed"):
        await asyncio.wait_for(waiter, 2)
    direct._release(held)
    with pytest.raises(redis.ConnectionError, match="closed"):
        await direct.execute("PING")
    await asyncio.sleep(0.05)
    assert not held.is_connected
    await pool.aclose()


async def test_an_empty_batch_asks_the_server_nothing(redis_server: RedisServer) -> None:
    backend = create_backend(redis_server.url, namespace="direct")
    try:
        assert await backend.session_get_many([], 0) == {}  # a bare MGET is an error reply
    finally:
        await backend.store_close()
