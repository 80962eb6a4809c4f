"""Fixtures of the Redis backend's tests: real, throwaway Redis servers (see ``redis_servers``).

``async def`` tests run in a fresh event loop each (the workspace's root conftest.py), so async
fixtures are not supported; fixtures here are plain and hand out addresses and server handles.

A missing ``redis-server`` (or ``redis-cli``, for the cluster) skips the tests that need it, with
the reason in the summary, except in CI (``CI=true``), where it fails them: there a skipped
server test would hide that nothing was tested. Every server is stopped and its directory removed
after the test or session that started it, whether the test passed or not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import pytest
from redis_servers import (
    RedisClusterServers,
    RedisServer,
    ServerFactory,
    redis_cli_binary,
    redis_server_binary,
    redis_server_supports_tls,
)

from sessionstore_contract import skip_or_fail


def require_redis_server() -> None:
    """Skip (or, in CI, fail) unless ``redis-server`` is on PATH."""
    if redis_server_binary() is None:
        skip_or_fail("redis-server not found on PATH: install redis-server to run the Redis tests")


def require_redis_cli() -> None:
    """Skip (or, in CI, fail) unless ``redis-server`` and ``redis-cli`` are on PATH."""
    require_redis_server()
    if redis_cli_binary() is None:
        skip_or_fail(
            "redis-cli not found on PATH: install redis-server (with redis-cli) to run the "
            "Redis Cluster tests"
        )


@pytest.fixture
def make_redis_server() -> Iterator[ServerFactory]:
    """A factory of started throwaway servers: ``make_redis_server(password=..., acl_users=...,
    tls=...)`` takes ``RedisServer``'s options. Every server it made is closed after the test.

    ``tls=True`` on a redis-server built without TLS skips the test (fails it in CI).
    """
    require_redis_server()
    servers: list[RedisServer] = []

    def make(
        *,
        password: str | None = None,
        acl_users: Mapping[str, str] | None = None,
        tls: bool = False,
        config: Mapping[str, str] | None = None,
    ) -> RedisServer:
        if tls and not redis_server_supports_tls():
            skip_or_fail(f"{redis_server_binary()} was built without TLS support")
        server = RedisServer(password=password, acl_users=acl_users, tls=tls, config=config)
        servers.append(server)  # before start(): a server that fails to start is closed too
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(make_redis_server: ServerFactory) -> RedisServer:
    """A started throwaway server of this test alone: stop, kill or restart it at will."""
    return make_redis_server()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis to test against, shared by the session.

    ``SESSIONSTORE_REDIS_URL`` when set (a server you run, e.g. in CI; its data is not cleared),
    else one throwaway server started for the session. Tests must not stop it: use
    ``redis_server`` for that.
    """
    url = os.environ.get("SESSIONSTORE_REDIS_URL")
    if url:
        yield url
        return
    require_redis_server()
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A started throwaway Redis Cluster of three masters, shared by the session."""
    require_redis_cli()
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis_cluster_with_replicas() -> Iterator[RedisClusterServers]:
    """A started throwaway Redis Cluster of three masters with a replica each, that notices a
    failed node after one second; one per test module, as its tests may fail masters over."""
    require_redis_cli()
    with RedisClusterServers(3, replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`` of the session's cluster."""
    return redis_cluster.url
