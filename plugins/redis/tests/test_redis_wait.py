"""``wait_replicas`` on one server with a replica: a write returns only once a replica confirmed
it (``WAIT`` on the write's connection, in the same round trip), else ``StoreUnavailableError``.
The cluster's side, a failover included, is in test_redis_cluster_changes.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from redis_servers import RedisServer, ServerFactory

from sessionstore import (
    ConfigurationError,
    ConflictError,
    Session,
    StoreUnavailableError,
    TransportType,
    open_store,
)

WAIT_TIMEOUT = 0.3
MASTER = {"repl-diskless-sync-delay": "0"}  # a replica syncs at once, not after 5 s


def replica_of(make_redis_server: ServerFactory, master: RedisServer) -> RedisServer:
    """A replica of ``master``, returned once its first sync is done."""
    replica = make_redis_server(config={"replicaof": f"{master.host} {master.port}"})
    with redis.Redis.from_url(master.url) as client:
        deadline = time.monotonic() + 10
        # Synced is not enough: for a while after its first sync a replica shows as online
        # but does not answer the master's requests for acknowledgement, so WAIT times out.
        while client.set("probe", "x") and client.execute_command("WAIT", 1, 100) != 1:
            assert time.monotonic() < deadline, "the replica did not confirm a write in 10 s"
        client.delete("probe")
    return replica


@contextlib.contextmanager
def replica_cut_off(master: RedisServer, replica: RedisServer) -> Iterator[None]:
    """The replica frozen and its link cut: the master goes on alone. Resumed afterwards."""
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        with redis.Redis.from_url(master.url) as client:
            assert client.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
        yield
    finally:
        os.kill(replica.pid, signal.SIGCONT)


def session(**metadata: object) -> Session:
    return Session(transport=TransportType.HTTP, metadata=dict(metadata))


async def test_a_write_returns_once_a_replica_has_it(make_redis_server: ServerFactory) -> None:
    master = make_redis_server(config=MASTER)
    replica = replica_of(make_redis_server, master)
    async with open_store(
        master.url, namespace="w", wait_replicas=1, wait_timeout=WAIT_TIMEOUT
    ) as store:
        created = await store.create_session(session(n=0))
        updated = await store.update_session(created.model_copy(update={"metadata": {"n": 1}}))
        ids = await asyncio.gather(*(store.append_event(created.id, "s", b"e") for _ in range(20)))
        # Each acknowledged write is on the replica already: read it there at once.
        with redis.Redis.from_url(replica.url) as client:
            assert client.dbsize() > 0
            key = f"sessionstore:{{w/0}}:s:{created.id}"
            assert client.get(key) == (await store.raw_get(created.id))
        assert updated.version == 2
        assert len(set(ids)) == 20


async def test_without_the_replica_a_write_is_not_acknowledged(
    make_redis_server: ServerFactory,
) -> None:
    master = make_redis_server(config=MASTER)
    replica = replica_of(make_redis_server, master)
    async with open_store(
        master.url, namespace="w", timeout=2, wait_replicas=1, wait_timeout=WAIT_TIMEOUT
    ) as store:
        created = await store.create_session(session(n=0))
        event_id = await store.append_event(created.id, "s", b"before")
        with replica_cut_off(master, replica):
            # Reads do not wait.
            started = time.monotonic()
            await store.replay_events_after(event_id)
            await store.get_last_event_id(created.id)
            await store.dump_session(created.id)
            assert time.monotonic() - started < WAIT_TIMEOUT
            # Concurrent appends go out in one pipeline with one WAIT: all refused together.
            outcomes = await asyncio.gather(
                *(store.append_event(created.id, "s", b"x") for _ in range(5)),
                return_exceptions=True,
            )
            assert all(isinstance(o, StoreUnavailableError) for o in outcomes), outcomes
            for write in (
                lambda: store.update_session(created.model_copy(update={"metadata": {"n": 1}})),
                lambda: store.create_session(session()),
                lambda: store.append_event(created.id, "s", b"lost?"),
                lambda: store.delete_session(created.id),
            ):
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError, match="0 of 1 replicas") as info:
                    await write()
                assert WAIT_TIMEOUT <= time.monotonic() - started < 1.5
                assert "not acknowledged" in str(info.value)


async def test_a_refusal_still_waits_for_the_replicas_and_is_unavailable_without_them(
    make_redis_server: ServerFactory,
) -> None:
    """A conflict is reported as one while the replica confirms; without it the outcome is
    unavailable: WAIT speaks for the connection's writes, which this instance cannot tell
    apart from the refused one's."""
    master = make_redis_server(config=MASTER)
    replica = replica_of(make_redis_server, master)
    async with open_store(
        master.url, namespace="w", timeout=2, wait_replicas=1, wait_timeout=WAIT_TIMEOUT
    ) as store:
        created = await store.create_session(session(n=0))
        stale = created.model_copy()
        await store.update_session(created)  # bumps created.version in place
        with pytest.raises(ConflictError):
            await store.update_session(stale.model_copy())
        with replica_cut_off(master, replica), pytest.raises(StoreUnavailableError):
            await store.update_session(stale.model_copy())


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"wait_replicas": -1}, "wait_replicas must be an int >= 0"),
        ({"wait_replicas": 1.5}, "wait_replicas must be an int >= 0"),
        ({"wait_replicas": 1, "wait_timeout": 0}, "wait_timeout must be > 0"),
        ({"wait_replicas": 1, "timeout": 1, "wait_timeout": 1}, "must be below timeout"),
    ],
)
def test_bad_wait_options_are_refused_by_name(options: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        open_store("redis://127.0.0.1:1/0", **options)
