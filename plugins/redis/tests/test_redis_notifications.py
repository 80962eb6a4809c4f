"""The Redis backend's event notifications (``notifications.py``) against real servers: the
server sees one subscription per watched session and none once its watches closed; a killed
listener connection wakes every watch and subscribes again; a server down wakes every watch, and
once it is back the sessions are subscribed again; on a cluster, a slot moved to another master
keeps its watches (subscribed again there).

The contract suite checks the promises (wake-ups, never a missed change, namespaces); these
check what only Redis shows. No test times a wake-up: each waits with a generous bound.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal

from cluster_admin import master_of, migrate_slot
from redis.asyncio import Redis
from redis.crc import key_slot
from redis_servers import RedisClusterServers, RedisServer

from sessionstore import SessionStore, open_store
from sessionstore.watching import EventWatch
from sessionstore_contract.common import new_session
from sessionstore_redis.backend import RedisBackend

BOUND = 10.0
"""Seconds a watch may take to wake: a test fails only when the wake-up never comes."""


def _channel(store: SessionStore, session_id: str) -> bytes:
    backend = store._backend
    assert isinstance(backend, RedisBackend)
    return backend._layout.session_keys(session_id)[2].encode()


async def _subscribers(admin: Redis, channel: bytes) -> int:
    reply = await admin.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def _listener_connected(watch: EventWatch, store: SessionStore) -> None:
    """Wait (each reconnection wakes the watch) until the store's listener is connected."""
    backend = store._backend
    assert isinstance(backend, RedisBackend)
    notifications = backend._notifications
    assert notifications is not None
    while not any(listener._connection for listener in notifications._listeners.values()):
        assert await watch.wait(BOUND), "the listener never connected again"


async def test_the_server_holds_one_subscription_per_watched_session(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    async with open_store(redis_url, namespace="notify-count") as store:
        try:
            channel = _channel(store, "a")
            async with store.watch_events("a"), store.watch_events("a"):
                assert await _subscribers(admin, channel) == 1
                async with store.watch_events("b"):
                    assert await _subscribers(admin, _channel(store, "b")) == 1
                assert await _subscribers(admin, _channel(store, "b")) == 0, (
                    "the last watch of b closed, yet the server keeps its subscription"
                )
                assert await _subscribers(admin, channel) == 1
            assert await _subscribers(admin, channel) == 0
            assert store.watched_sessions == 0
        finally:
            await store.clear()
            await admin.aclose()


async def test_a_killed_listener_wakes_every_watch_and_subscribes_again(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    async with (
        open_store(redis_url, namespace="notify-kill") as store,
        open_store(redis_url, namespace="notify-kill") as other,
    ):
        try:
            await store.create_session(new_session("a"))
            async with store.watch_events("a") as watch:
                assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
                assert await watch.wait(BOUND), "the lost connection woke nobody"
                await _listener_connected(watch, store)
                channel = _channel(store, "a")
                while await _subscribers(admin, channel) == 0:  # confirmed, then woken
                    assert await watch.wait(BOUND), "the session was not subscribed again"
                await watch.wait(0)  # what the resubscription's wake-up left
                await other.append_event("a", "st", b"after")
                assert await watch.wait(BOUND), "after the reconnection, an append woke nobody"
        finally:
            await store.clear()
            await admin.aclose()


async def test_a_stopped_server_wakes_every_watch_and_a_restarted_one_is_heard_again(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url
    async with open_store(url, namespace="notify-restart") as store:
        await store.create_session(new_session("a"))
        async with store.watch_events("a") as watch:
            redis_server.kill()  # down: only the lost connection itself can wake the watch
            assert await watch.wait(BOUND), "the lost connection woke nobody"
            redis_server.restart()  # empty, on the same port
            await _listener_connected(watch, store)
            admin = Redis.from_url(url)
            try:
                while await _subscribers(admin, _channel(store, "a")) == 0:
                    assert await watch.wait(BOUND), "the session was not subscribed again"
            finally:
                await admin.aclose()
            await watch.wait(0)
            async with open_store(url, namespace="notify-restart") as other:
                if not await other.get_sessions_batch(["a"]):  # a server that keeps no data
                    await other.create_session(new_session("a"))
                await other.append_event("a", "st", b"after the restart")
            assert await watch.wait(BOUND), "after the restart, an append woke nobody"


async def test_a_slot_moved_to_another_master_keeps_its_watches(
    redis_cluster_with_replicas: RedisClusterServers,
) -> None:
    """The old master ends the sharded subscriptions of a slot it gave away: the watch wakes,
    is subscribed on the slot's new master, and hears the next append there."""
    cluster = redis_cluster_with_replicas
    namespace = f"notify-{secrets.token_hex(4)}"
    async with (
        open_store(cluster.url, namespace=namespace) as store,
        open_store(cluster.url, namespace=namespace) as other,
    ):
        try:
            await store.create_session(new_session("a"))
            channel = _channel(store, "a")
            slot = key_slot(channel)
            async with store.watch_events("a") as watch:
                source = master_of(cluster, slot)
                target = next(
                    n
                    for n in cluster.topology()
                    if n.is_master and not n.failed and n.node_id != source.node_id
                )
                await asyncio.to_thread(migrate_slot, cluster, slot, target)
                assert await watch.wait(BOUND), "the moved slot woke nobody"
                new_master = Redis(host="127.0.0.1", port=target.port)
                try:
                    while await _subscribers(new_master, channel) == 0:
                        assert await watch.wait(BOUND), "not subscribed on the new master"
                finally:
                    await new_master.aclose()
                await watch.wait(0)
                await other.append_event("a", "st", b"on the new master")
                assert await watch.wait(BOUND), "after the move, an append woke nobody"
        finally:
            await store.clear()


async def test_a_subscribe_cancelled_after_it_was_sent_is_unsubscribed(
    redis_server: RedisServer,
) -> None:
    admin = Redis.from_url(redis_server.url)
    async with open_store(redis_server.url, namespace="notify-cancel") as store:
        backend = store._backend
        assert isinstance(backend, RedisBackend)
        channel = _channel(store, "a")
        async with store.watch_events("b"):  # the listener is connected
            notifications = backend._notifications
            assert notifications is not None
            (listener,) = notifications._listeners.values()
            # The server, this test's alone, is frozen: the SSUBSCRIBE is written (the kernel
            # buffers it), its confirmation does not come.
            os.kill(redis_server.pid, signal.SIGSTOP)
            try:
                watching = asyncio.create_task(notifications.watch("a"))
                # Until sent: its confirmation awaited, the sending lock let go (the listener's
                # own state: there is no event to wait on).
                async with asyncio.timeout(BOUND):
                    while channel not in listener._confirmations or listener._sending.locked():  # noqa: ASYNC110
                        await asyncio.sleep(0)
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
                assert watching.cancelled()
            finally:
                os.kill(redis_server.pid, signal.SIGCONT)
            assert channel not in listener._confirmations, "its confirmation entry stays"
            assert notifications.hub.subscriptions == 1
            await asyncio.wait_for(asyncio.gather(*listener._undoing), BOUND)
            assert await _subscribers(admin, channel) == 0, "the server keeps its subscription"
            assert await _subscribers(admin, _channel(store, "b")) == 1
    await admin.aclose()
