"""Failures: an unreachable or silent server, a server restarted under load, a connection killed
in the middle of a transaction, a full pool. Each gives StoreUnavailableError (within the
``timeout``: a generous bound catches a hang), leaves nothing half-written, and the same store
works again once the cause is gone, without being reopened."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import asyncpg
import pytest
from postgres_servers import PostgresCluster, fresh_database

from sessionstore import (
    ConflictError,
    Session,
    StoreUnavailableError,
    TransportType,
    open_store,
)

TIMEOUT = 1.0  # the stores' timeout option, seconds
HANG = 30.0  # far beyond TIMEOUT: a call still running then is hung


def _session(session_id: str, count: int = 0) -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, metadata={"count": count})


async def _bounded(awaitable: object, what: str) -> object:
    """Await ``awaitable``; fail (rather than hang the suite) if it is not done in HANG s."""
    try:
        return await asyncio.wait_for(awaitable, HANG)  # type: ignore[arg-type]
    except TimeoutError:
        pytest.fail(f"{what} still running after {HANG} s (timeout option: {TIMEOUT} s)")


async def _wait_for(condition: object, what: str) -> None:
    """Poll the async ``condition()`` until it is true, for at most HANG seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while not await condition():  # type: ignore[operator]
        if loop.time() > deadline:
            pytest.fail(f"waited {HANG} s for {what}")
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@contextlib.asynccontextmanager
async def _admin(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def _waiting_backend(admin: asyncpg.Connection) -> int:
    """The pid of the one other backend of this database waiting for a lock."""
    pids: list[int] = []

    async def found() -> bool:
        pids[:] = [
            row[0]
            for row in await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        ]
        return len(pids) == 1

    await _wait_for(found, "a statement of the store to wait for the lock held")
    return pids[0]


@contextlib.asynccontextmanager
async def _lock_held(url: str, statement: str) -> AsyncIterator[None]:
    """Run ``statement`` (one that takes a lock) in a transaction of a connection of its own,
    and hold that lock for the block."""
    async with _admin(url) as locker:
        tx = locker.transaction()
        await tx.start()
        await locker.execute(statement)
        try:
            yield
        finally:
            await tx.rollback()


async def _kill_while_waiting(
    url: str, lock: str, operation: Coroutine[Any, Any, object], what: str
) -> None:
    """Start ``operation`` while ``lock`` is held elsewhere, wait until its statement waits for
    that lock (its transaction open), terminate its connection, and expect
    StoreUnavailableError from it."""
    async with _admin(url) as admin, _lock_held(url, lock):
        running = asyncio.ensure_future(operation)
        pid = await _waiting_backend(admin)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(StoreUnavailableError):
            await _bounded(running, what)


async def test_a_server_nobody_listens_on_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the store connects
    async with open_store(f"postgresql://postgres@127.0.0.1:{port}/db", timeout=TIMEOUT) as store:
        with pytest.raises(StoreUnavailableError, match=f"PostgreSQL at .*:{port}"):
            await _bounded(store.get_session("s1"), "get_session on a closed port")


async def test_a_silent_server_is_unavailable_within_the_timeout() -> None:
    with _silent_server() as port:
        spec = f"postgresql://postgres@127.0.0.1:{port}/db"
        async with open_store(spec, timeout=TIMEOUT) as store:
            with pytest.raises(StoreUnavailableError, match="timed out"):
                await _bounded(store.create_session(_session("s1")), "create on a silent server")


async def test_a_connection_killed_in_a_batch_update_writes_nothing(
    postgres_database_url: str,
) -> None:
    """A batch holds its transaction (it locked a and b, and waits for c, locked elsewhere) when
    its connection is terminated: StoreUnavailableError, none of the three changed, and the same
    store then runs the batch."""
    url = postgres_database_url
    async with open_store(url, timeout=HANG / 2) as store:
        ids = ["a", "b", "c"]
        for session_id in ids:
            await store.create_session(_session(session_id))
        batch = await store.get_sessions_batch(ids)
        for session in batch:
            session.metadata = {"count": 1}
        await _kill_while_waiting(
            url,
            "SELECT 1 FROM sessionstore.sessions WHERE id = 'c' FOR UPDATE",
            store.update_sessions_batch(batch),
            "the batch whose connection was killed",
        )
        after = await store.get_sessions_batch(ids)
        assert [(s.version, s.metadata["count"]) for s in after] == [(1, 0)] * 3
        stored = await store.update_sessions_batch(batch)  # recovered, same store
        assert [s.version for s in stored] == [2, 2, 2]


async def test_a_connection_killed_in_a_load_writes_nothing(postgres_database_url: str) -> None:
    """A load of a session with events (dumped, then deleted) is killed between its two
    statements (the second waits for a lock on the events table): StoreUnavailableError, no
    trace of the session, and the same store then loads it."""
    url = postgres_database_url
    async with open_store(url, timeout=HANG / 2) as store, _admin(url) as admin:
        await store.create_session(_session("source"))
        await store.append_event("source", "stream-1", b"e1")
        await store.append_event("source", "stream-1", b"e2")
        dump = await store.dump_session("source")
        assert await store.delete_session("source")
        await _kill_while_waiting(
            url,
            "LOCK TABLE sessionstore.events IN EXCLUSIVE MODE",
            store.load_session(dump),
            "the load whose connection was killed",
        )
        assert await store.get_sessions_batch(["source"]) == []
        assert await admin.fetchval("SELECT count(*) FROM sessionstore.streams") == 0
        assert await admin.fetchval("SELECT count(*) FROM sessionstore.events") == 0
        assert await store.count_sessions() == 0
        assert await store.load_session(dump)  # recovered, same store
        loaded = await store.dump_session("source")
        assert loaded.streams == dump.streams


async def test_a_full_pool_is_unavailable_within_the_timeout(postgres_database_url: str) -> None:
    """max_size=1, and the one connection is busy (a bare driver read, which has no deadline,
    waits for a table lock held elsewhere): an update and a read find no connection free and
    raise StoreUnavailableError saying so; the update wrote nothing, and once the lock is gone
    the same store reads and writes."""
    url = postgres_database_url
    async with open_store(url, timeout=TIMEOUT, max_size=1) as store:
        created = await store.create_session(_session("held"))
        changed = created.model_copy(update={"metadata": {"count": 1}})
        lock = "LOCK TABLE sessionstore.sessions IN ACCESS EXCLUSIVE MODE"
        async with _admin(url) as admin, _lock_held(url, lock):
            holder = asyncio.ensure_future(store.raw_get("held"))
            await _waiting_backend(admin)
            with pytest.raises(StoreUnavailableError, match="pool connections were busy"):
                await _bounded(store.update_session(changed), "an update on a full pool")
            with pytest.raises(StoreUnavailableError, match="pool connections were busy"):
                await _bounded(store.get_session("held"), "a read on a full pool")
        assert await _bounded(holder, "the bare read once the lock is gone") is not None
        current = await store.get_session("held")
        assert (current.version, current.metadata["count"]) == (1, 0)
        assert (await store.update_session(changed)).version == 2


async def test_a_server_restarted_under_load(postgres_cluster: PostgresCluster) -> None:
    """Writers keep incrementing a counter (modify_session) and a pair of sessions (one batch)
    while the server restarts: every call either succeeds or raises StoreUnavailableError;
    afterwards every acknowledged increment is there (plus at most the ones whose outcome was
    unknown), the pair moved together, and the same store works again."""
    with fresh_database(postgres_cluster.url) as url:
        async with open_store(url, timeout=TIMEOUT, max_size=4, modify_attempts=1000) as store:
            await store.create_session(_session("counter"))
            for session_id in ("pair-a", "pair-b"):
                await store.create_session(_session(session_id))
            acked = {"counter": 0, "pair": 0}
            unknown = {"counter": 0, "pair": 0}
            failures: list[BaseException] = []
            restarted = asyncio.Event()
            ok_after_restart = {"counter": 0, "pair": 0}
            stop = asyncio.Event()

            async def bump_counter() -> None:
                def inc(s: Session) -> None:
                    s.metadata = {"count": s.metadata["count"] + 1}

                await store.modify_session("counter", inc)

            async def bump_pair() -> None:
                pair = await store.get_sessions_batch(["pair-a", "pair-b"])
                for s in pair:
                    s.metadata = {"count": s.metadata["count"] + 1}
                await store.update_sessions_batch(pair)

            async def writer(kind: str) -> None:
                bump = bump_counter if kind == "counter" else bump_pair
                while not stop.is_set():
                    was_restarted = restarted.is_set()
                    try:
                        await bump()
                    except StoreUnavailableError:
                        unknown[kind] += 1
                        await asyncio.sleep(0.01)
                        continue
                    except ConflictError:
                        continue  # the pair's read-modify-write lost a race: nothing written
                    except BaseException as exc:
                        failures.append(exc)
                        raise
                    acked[kind] += 1
                    if was_restarted:
                        ok_after_restart[kind] += 1

            writers = [asyncio.ensure_future(writer(k)) for k in ("counter", "pair") * 2]
            await _wait_for(
                _true_when(lambda: acked["counter"] > 5 and acked["pair"] > 5),
                "writes before the restart",
            )
            restart = threading.Thread(target=postgres_cluster.restart)
            restart.start()
            await asyncio.to_thread(restart.join)
            restarted.set()
            await _wait_for(
                _true_when(lambda: failures or min(ok_after_restart.values()) > 5),
                "the store to recover after the restart",
            )
            stop.set()
            await _bounded(asyncio.gather(*writers, return_exceptions=True), "the writers to stop")
            assert not failures, f"a writer got {failures[0]!r}"
            assert sum(unknown.values()) > 0, "the restart interrupted no call: nothing was tested"
            counter = await store.get_session("counter")
            assert acked["counter"] <= counter.metadata["count"]
            assert counter.metadata["count"] <= acked["counter"] + unknown["counter"]
            pair = await store.get_sessions_batch(["pair-a", "pair-b"])
            counts = [s.metadata["count"] for s in pair]
            assert counts[0] == counts[1], f"a batch was half-written: {counts}"
            assert acked["pair"] <= counts[0] <= acked["pair"] + unknown["pair"]


def _true_when(predicate: object) -> object:
    async def condition() -> bool:
        return bool(predicate())  # type: ignore[operator]

    return condition


@pytest.fixture
def store_on_cluster(postgres_cluster: PostgresCluster) -> Iterator[str]:
    with fresh_database(postgres_cluster.url) as url:
        yield url


async def test_a_stopped_server_is_unavailable_and_the_store_recovers(
    postgres_cluster: PostgresCluster, store_on_cluster: str
) -> None:
    async with open_store(store_on_cluster, timeout=TIMEOUT) as store:
        await store.create_session(_session("kept"))
        await asyncio.to_thread(postgres_cluster.stop)
        with pytest.raises(StoreUnavailableError):
            await _bounded(store.get_session("kept"), "a read while the server is stopped")
        await asyncio.to_thread(postgres_cluster.start)
        assert (await store.get_session("kept")).id == "kept"
