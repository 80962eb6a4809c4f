"""A Redis server at ``maxmemory`` (policy ``noeviction``) refuses every write that adds data, and
its memory stays bounded (issue 14, item 5).

Redis checks memory once, when a command arrives; for a script (an ``EVALSHA`` without flags) it
refuses at the script's first command that may add memory (``SET``, ``HSET``, ``ZADD``...) only
if the script wrote nothing before it. A script that deletes first (a ``DEL`` of nothing is a
write too) then writes as much as it likes: the create script did, and 7,000 creates filled a
3 MiB server to 12.4 MiB. Deleting, purging and clearing still work on a full server: they are
how one makes room.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis
from redis_servers import RedisServer, ServerFactory

from sessionstore import (
    Session,
    SessionDump,
    SessionNotFoundError,
    SessionStore,
    StoreUnavailableError,
    TransportType,
    open_store,
)

MAXMEMORY = 3 * 1024 * 1024
PAD = "x" * 65536  # what each refused write below would have added
ONE_WRITE = 128 * 1024  # used_memory past maxmemory: the write that crossed it, buffers, Lua


def used_memory(server: RedisServer) -> int:
    """What ``maxmemory`` is compared with: data, and buffers, Lua and scripts around it."""
    with redis.Redis.from_url(server.url) as client:
        return int(client.info("memory")["used_memory"])


def data_memory(server: RedisServer) -> int:
    """The bytes the keys take (``MEMORY USAGE`` of each): unlike ``used_memory`` it does not
    move with client buffers or the script cache, so a write, and only a write, changes it."""
    with redis.Redis.from_url(server.url) as client:
        return sum(int(client.memory_usage(key, samples=0) or 0) for key in client.scan_iter())


def set_maxmemory(server: RedisServer, value: int) -> None:
    with redis.Redis.from_url(server.url) as client:
        client.config_set("maxmemory", value)


def session(session_id: str | None = None, **metadata: object) -> Session:
    if session_id is None:
        return Session(transport=TransportType.HTTP, metadata=dict(metadata))
    return Session(id=session_id, transport=TransportType.HTTP, metadata=dict(metadata))


async def test_a_full_server_refuses_creates_and_its_memory_stays_near_maxmemory(
    make_redis_server: ServerFactory,
) -> None:
    server = make_redis_server(
        config={"maxmemory": str(MAXMEMORY), "maxmemory-policy": "noeviction"}
    )
    async with open_store(server.url, namespace="full") as store:
        refused: StoreUnavailableError | None = None
        attempts = 0
        while refused is None and attempts < 2000:  # 2,000 x 4 KiB: over twice maxmemory
            attempts += 1
            try:
                await store.create_session(session(pad="x" * 4096))
            except StoreUnavailableError as exc:
                refused = exc
        used = used_memory(server)
        assert refused is not None, (
            f"{attempts} creates of 4 KiB were all accepted by a server with maxmemory "
            f"{MAXMEMORY}: used_memory is {used}"
        )
        assert "maxmemory" in str(refused), str(refused)
        assert "nothing was written" in str(refused), str(refused)
        for _ in range(100):  # and it stays refused; memory does not move
            with pytest.raises(StoreUnavailableError, match="maxmemory"):
                await store.create_session(session(pad="x" * 4096))
        assert used_memory(server) <= MAXMEMORY + ONE_WRITE, (used_memory(server), MAXMEMORY)
        # Room is made by deleting, which a full server allows; then creates work again.
        ids = [s.id async for s in store.iter_sessions()]
        for session_id in ids[: len(ids) // 4]:
            assert await store.delete_session(session_id)
        await store.create_session(session(pad="x" * 4096))


@dataclass(frozen=True)
class Setting:
    """What a write below works on: a live session, its last event, the dump of a deleted one."""

    live: Session
    event_id: str
    deleted: SessionDump


async def _create(store: SessionStore, given: Setting) -> object:
    return await store.create_session(session("new", pad=PAD))


async def _update(store: SessionStore, given: Setting) -> object:
    return await store.update_session(given.live.model_copy(update={"metadata": {"pad": PAD}}))


async def _update_batch(store: SessionStore, given: Setting) -> object:
    changed = given.live.model_copy(update={"metadata": {"pad": PAD}})
    return await store.update_sessions_batch([changed])


async def _last_event_id(store: SessionStore, given: Setting) -> object:
    return await store.store_last_event_id(given.live.id, given.event_id)


async def _append_to_a_stream(store: SessionStore, given: Setting) -> object:
    return await store.append_event(given.live.id, "s", PAD.encode())


async def _append_to_a_new_stream(store: SessionStore, given: Setting) -> object:
    return await store.append_event(given.live.id, "another", PAD.encode())


async def _load(store: SessionStore, given: Setting) -> object:
    return await store.load_session(given.deleted)


@pytest.mark.parametrize(
    "write",
    [
        _create,
        _update,
        _update_batch,
        _last_event_id,
        _append_to_a_stream,
        _append_to_a_new_stream,
        _load,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_every_write_that_adds_data_is_refused_by_a_full_server(
    make_redis_server: ServerFactory, write: Callable[[SessionStore, Setting], Awaitable[object]]
) -> None:
    server = make_redis_server(config={"maxmemory-policy": "noeviction"})
    async with open_store(server.url, namespace="full", event_retention=1000) as store:
        live = await store.create_session(session("live", pad="small"))
        event_id = await store.append_event(live.id, "s", b"first")
        loaded = await store.create_session(session("loaded", pad=PAD))
        await store.append_event(loaded.id, "s", PAD.encode())
        deleted = await store.dump_session(loaded.id)
        await store.delete_session(loaded.id)
        before = await store.dump_session(live.id)
        set_maxmemory(server, 1)  # far below what the server holds: it is full from now on
        data = data_memory(server)
        with pytest.raises(StoreUnavailableError, match="maxmemory") as info:
            await write(store, Setting(live, event_id, deleted))
        assert "nothing was written" in str(info.value)
        assert data_memory(server) == data
        assert await store.dump_session(live.id) == before  # nothing of it changed
        for absent in ("new", "loaded"):
            with pytest.raises(SessionNotFoundError):
                await store.get_session(absent)


async def test_reads_deletes_purges_and_clears_work_on_a_full_server(
    make_redis_server: ServerFactory,
) -> None:
    server = make_redis_server(config={"maxmemory-policy": "noeviction"})
    now = [time.time()]
    async with open_store(server.url, namespace="full", ttl=60, clock=lambda: now[0]) as store:
        kept = await store.create_session(session("kept"))
        gone = await store.create_session(session("gone"))
        event_id = await store.append_event(kept.id, "s", b"e1")
        await store.append_event(kept.id, "s", b"e2")
        set_maxmemory(server, 1)
        assert (await store.get_session(kept.id)).id == kept.id
        assert await store.count_sessions() == 2
        assert [e.data for e in (await store.replay_events_after(event_id))[1]] == [b"e2"]
        assert await store.delete_session(gone.id)
        now[0] += 120  # "kept" expires
        assert await store.purge_expired() == 1
        await store.clear()
        set_maxmemory(server, 0)
        await store.create_session(session("after"))
