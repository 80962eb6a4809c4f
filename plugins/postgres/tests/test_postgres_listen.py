"""The listener of the PostgreSQL backend's event notifications (``listen.py``), against a real
server: ``pg_notify`` from another connection wakes the watches of the session it names; a killed
listening connection wakes every watch and listens again; the last watch closed stops listening.

No test times a wake-up: each waits for it with a generous bound (:data:`BOUND`).
"""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import pytest
from postgres_servers import PostgresCluster

from sessionstore import StoreUnavailableError
from sessionstore_postgres.connection import parse_spec
from sessionstore_postgres.listen import PostgresNotifications

BOUND = 10.0
"""Seconds a watch may take to wake: a test fails only when the wake-up never comes."""


def _notifications(url: str, namespace: str = "listen") -> PostgresNotifications:
    return PostgresNotifications(
        lambda: asyncpg.connect(url), namespace, parse_spec(url), timeout=5.0
    )


async def _notify(url: str, namespace: str, session_id: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        channel = _notifications(url, namespace).channel
        await connection.execute("SELECT pg_notify($1, $2)", channel, session_id)
    finally:
        await connection.close()


async def test_a_notify_wakes_every_watch_of_its_session(postgres_url: str) -> None:
    notifications = _notifications(postgres_url)
    try:
        a1 = await notifications.watch("a")
        a2 = await notifications.watch("a")
        b = await notifications.watch("b")
        assert notifications.hub.subscriptions == 2
        await _notify(postgres_url, "listen", "a")
        assert await a1.wait(BOUND), "the first watch of 'a' did not wake"
        assert await a2.wait(BOUND), "the second watch of 'a' did not wake"
        await _notify(postgres_url, "listen", "b")
        assert await b.wait(BOUND), "the watch of 'b' did not wake"
        await _notify(postgres_url, "another-namespace", "a")
        await _notify(postgres_url, "listen", "b")  # delivered in order, after the one above
        assert await b.wait(BOUND)
        assert not await a1.wait(0), "another namespace's notification woke a watch"
    finally:
        await notifications.close()


async def test_a_lost_connection_wakes_every_watch_and_listens_again(
    postgres_url: str,
) -> None:
    notifications = _notifications(postgres_url)
    admin = await asyncpg.connect(postgres_url)
    try:
        watch = await notifications.watch("a")
        connection = notifications._connection
        assert connection is not None
        await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
        assert await watch.wait(BOUND), "the lost connection woke nobody"
        while not notifications.listening:  # each reconnection wakes the watch too
            assert await watch.wait(BOUND), "no new connection listens"
        assert notifications._connection is not connection
        await watch.wait(0)  # what the reconnection's wake-up left
        await _notify(postgres_url, "listen", "a")
        assert await watch.wait(BOUND), "after the reconnection, a notification woke nobody"
    finally:
        await admin.close()
        await notifications.close()


async def test_the_last_watch_closed_stops_listening(postgres_url: str) -> None:
    notifications = _notifications(postgres_url)
    try:
        a = await notifications.watch("a")
        b = await notifications.watch("b")
        connection = notifications._connection
        assert connection is not None
        await a.aclose()
        await a.aclose()  # idempotent
        assert notifications.listening, "closing one of two sessions' watches stopped listening"
        await b.aclose()
        assert notifications.hub.subscriptions == 0
        assert not notifications.listening, "every watch is closed, yet it still listens"
        assert connection.is_closed(), "every watch is closed, yet its connection stays open"
        again = await notifications.watch("a")  # listens anew
        await _notify(postgres_url, "listen", "a")
        assert await again.wait(BOUND)
    finally:
        await notifications.close()


async def test_an_unreachable_server_is_store_unavailable_without_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://someone:Sekr1t-pw@127.0.0.1:{port}/db"
    notifications = _notifications(url)
    with pytest.raises(StoreUnavailableError) as raised:
        await notifications.watch("a")
    assert "Sekr1t-pw" not in str(raised.value)
    assert notifications.hub.subscriptions == 0
    await notifications.close()


async def test_a_server_down_wakes_every_watch_and_is_heard_again_once_back(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.url
    notifications = _notifications(url)
    try:
        watch = await notifications.watch("a")
        postgres_cluster.stop()  # down: only the lost connection itself can wake the watch
        assert await watch.wait(BOUND), "the lost connection woke nobody"
        postgres_cluster.start()
        while not notifications.listening:
            assert await watch.wait(BOUND), "no new connection listens"
        await watch.wait(0)
        await _notify(url, "listen", "a")
        assert await watch.wait(BOUND), "once the server was back, a notification woke nobody"
    finally:
        await notifications.close()


async def test_a_subscribe_cancelled_once_connected_closes_that_connection(
    postgres_url: str,
) -> None:
    opened: list[asyncpg.Connection] = []

    async def connect_then_get_cancelled() -> asyncpg.Connection:
        connection = await asyncpg.connect(postgres_url)
        opened.append(connection)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # lands at the listener's next await: its LISTEN
        return connection

    notifications = PostgresNotifications(
        connect_then_get_cancelled, "listen", parse_spec(postgres_url), timeout=5.0
    )
    try:
        with pytest.raises(asyncio.CancelledError):
            await notifications.watch("a")
        assert len(opened) == 1
        assert opened[0].is_closed(), "a cancelled subscribe left its listening connection open"
        assert notifications.hub.subscriptions == 0
        assert not notifications.listening
    finally:
        for connection in opened:
            connection.terminate()
        await notifications.close()
