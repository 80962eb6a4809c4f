"""The test servers themselves: each kind of throwaway Redis that conftest hands out works with
redis-py's asyncio client as the backend will use it, and fails the way a real one does."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError
from redis_servers import RedisClusterServers, RedisServer, ServerFactory

# Characters that must be percent-encoded in a URL: proves url/url_for quote credentials.
AWKWARD_PASSWORD = "s3cr:t@/#%? pw"


def client(url: str, **options: Any) -> redis.asyncio.Redis:
    """A client that reports the first failure instead of retrying it with backoff."""
    return redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)


async def test_plain_server_ping_set_get(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}"
    async with client(redis_server.url) as r:
        assert await r.ping() is True
        await r.set("greeting", "hello")
        assert await r.get("greeting") == b"hello"


async def test_session_redis_url_answers(redis_url: str) -> None:
    async with client(redis_url) as r:
        assert await r.ping() is True


async def test_password_is_required_and_checked(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(password=AWKWARD_PASSWORD)
    async with client(server.url) as r:
        await r.set("k", "v")
        assert await r.get("k") == b"v"
    async with client(server.url_for(password="wrong")) as r:
        with pytest.raises(AuthenticationError):
            await r.ping()
    async with client(server.url_for()) as r:
        with pytest.raises(AuthenticationError):
            await r.ping()


async def test_acl_user_has_full_access(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(acl_users={"alice": AWKWARD_PASSWORD, "bob": "pw"})
    assert server.url == server.url_for("alice", AWKWARD_PASSWORD)
    async with client(server.url) as r:
        assert await r.acl_whoami() == "alice"
        await r.set("k", "v")
        assert await r.get("k") == b"v"
    async with client(server.url_for("bob", "pw")) as r:
        assert await r.acl_whoami() == "bob"
    async with client(server.url_for("alice", "wrong")) as r:
        with pytest.raises(AuthenticationError):
            await r.ping()


async def test_tls_needs_the_ca(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(tls=True)
    assert server.url.startswith("rediss://127.0.0.1:")
    async with client(server.url, ssl_ca_certs=server.ca_file) as r:
        await r.set("k", "v")
        assert await r.get("k") == b"v"
    # The system's CAs do not know the throwaway CA: verification fails.
    async with client(server.url) as r:
        with pytest.raises(ConnectionError, match="certificate verify failed"):
            await r.ping()
    # Plain text to the TLS port gets no reply from Redis.
    async with client(server.url.replace("rediss://", "redis://")) as r:
        with pytest.raises(ConnectionError):
            await r.ping()


async def test_tls_with_password(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(tls=True, password="pw")
    assert server.url == f"rediss://:pw@127.0.0.1:{server.port}"
    async with client(server.url, ssl_ca_certs=server.ca_file) as r:
        assert await r.ping() is True


async def test_stop_and_restart_on_the_same_port(redis_server: RedisServer) -> None:
    port = redis_server.port
    async with client(redis_server.url) as r:
        await r.set("k", "v")
        redis_server.stop()
        with pytest.raises(ConnectionError):
            await r.get("k")
        redis_server.restart()
        assert redis_server.port == port
        assert await r.ping() is True
        assert await r.get("k") is None  # nothing is persisted across a restart

        redis_server.kill()
        assert not redis_server.running
        with pytest.raises(ConnectionError):
            await r.ping()
        redis_server.restart()
        assert redis_server.port == port
        assert await r.ping() is True


def test_a_server_that_cannot_start_says_why(make_redis_server: ServerFactory) -> None:
    with pytest.raises(RuntimeError, match=r"exited with status 1(.|\n)*Bad directive"):
        make_redis_server(config={"no-such-directive": "x"})


def test_close_stops_and_cleans_up(redis_server: RedisServer) -> None:
    os.kill(redis_server.pid, signal.SIGSTOP)  # even a frozen server stops at once
    started = time.monotonic()
    redis_server.close()
    assert time.monotonic() - started < 2
    assert not redis_server.running
    assert not redis_server.directory.exists()
    redis_server.close()  # idempotent: the fixture closes it again


async def test_cluster_has_three_masters_covering_every_slot(
    redis_cluster: RedisClusterServers, redis_cluster_url: str
) -> None:
    assert len(redis_cluster.nodes) == 3
    hosts_ports = ",".join(f"{host}:{port}" for host, port in redis_cluster.nodes)
    assert redis_cluster_url == f"redis+cluster://{hosts_ports}"

    host, port = redis_cluster.nodes[0]
    rc = RedisCluster(host=host, port=port)
    try:
        await rc.initialize()
        primaries = rc.get_primaries()
        assert sorted((n.host, n.port) for n in primaries) == sorted(redis_cluster.nodes)
        assert rc.get_replicas() == []
        info = await rc.cluster_info()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == int(info["cluster_slots_ok"]) == 16384
        assert int(info["cluster_size"]) == 3

        # One key on each master, so a write is routed (and redirected) to every node.
        keys: dict[str, str] = {}
        for number in range(1000):
            key = f"key-{number}"
            node = rc.get_node_from_key(key)
            assert node is not None
            keys.setdefault(node.name, key)
            if len(keys) == 3:
                break
        assert len(keys) == 3
        for key in keys.values():
            await rc.set(key, key.encode())
        for key in keys.values():
            assert await rc.get(key) == key.encode()
        assert len({rc.keyslot(key) for key in keys.values()}) == 3
    finally:
        await rc.aclose()
