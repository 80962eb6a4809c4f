"""Fixtures of the MCP end-to-end tests: the SDK pythons, the shared stores, the clusters.

SDK 2.x is the SDK of the python running pytest (``.venv``); SDK 1.x is ``.venv-mcp1``, which
``make unit`` builds (``make .venv-mcp1/.installed`` alone). A missing SDK 1.x environment,
``redis-server`` or PostgreSQL server (``postgres_servers``: ``SESSIONSTORE_POSTGRES_URL``, the
server on 127.0.0.1:5432, or a throwaway cluster) skips the tests that need it, with the reason in
the summary, except in CI (``CI=true``), where it fails them (the house rule,
``sessionstore_contract.skip_or_fail``). Every process a test started is killed after it, and
when a test fails its report carries every process's log (section ``mcp processes``).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Generator, Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from mcp_harness import Cluster, ClusterFactory

from sessionstore_contract import skip_or_fail

ROOT = Path(__file__).resolve().parents[3]
MCP1_PYTHON = ROOT / ".venv-mcp1" / "bin" / "python"

sys.path.append(str(ROOT / "plugins" / "redis" / "tests"))  # the throwaway redis-server helpers
from redis_servers import RedisServer, redis_server_binary  # noqa: E402

sys.path.append(str(ROOT / "plugins" / "postgres" / "tests"))  # finding a PostgreSQL server
from postgres_servers import PostgresUnavailable, fresh_database_url  # noqa: E402


def sdk_python(sdk: str) -> str:
    """The python whose ``mcp`` is the SDK ``sdk`` (``"sdk2"`` or ``"sdk1"``)."""
    if sdk == "sdk2":
        if not version("mcp").startswith("2."):
            skip_or_fail(f"this python has mcp {version('mcp')}, not SDK 2.x")
        return sys.executable
    if not MCP1_PYTHON.exists():
        skip_or_fail(
            f"{MCP1_PYTHON} not found: `make .venv-mcp1/.installed` (or `make unit`) builds the "
            "SDK 1.x environment of the MCP end-to-end tests"
        )
    return str(MCP1_PYTHON)


@pytest.fixture(scope="module")
def mcp_redis_url() -> Iterator[str]:
    """``SESSIONSTORE_REDIS_URL`` when set, else one throwaway redis-server for the module (each
    test has a namespace of its own)."""
    url = os.environ.get("SESSIONSTORE_REDIS_URL")
    if url:
        yield url
        return
    if redis_server_binary() is None:
        skip_or_fail("redis-server not found on PATH: install redis-server to run these tests")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def mcp_postgres_url() -> Iterator[str]:
    """A fresh database for the module (each test has a namespace of its own in it), on the
    server ``postgres_servers.fresh_database_url`` finds (``SESSIONSTORE_POSTGRES_URL``, else
    127.0.0.1:5432, else a throwaway cluster); dropped at the module's end."""
    try:
        database = fresh_database_url()
        url = database.__enter__()
    except PostgresUnavailable as exc:
        skip_or_fail(str(exc))
    try:
        yield url
    finally:
        database.__exit__(None, None, None)


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Generator[ClusterFactory, None, None]:
    """``make_cluster(sdk, store_kind, plain=False)``: a cluster on a fresh SQLite file
    (``"sqlite"``), on the module's Redis (``"redis"``) or on the module's PostgreSQL database
    (``"postgres"``), with a namespace of its own."""
    clusters: list[Cluster] = []

    def make(sdk: str, store_kind: str, *, plain: bool = False) -> Cluster:
        python = sdk_python(sdk)
        if store_kind == "sqlite":
            store = f"sqlite:///{tmp_path / 'sessions.db'}"
        elif store_kind == "redis":
            store = request.getfixturevalue("mcp_redis_url")
        elif store_kind == "postgres":
            store = request.getfixturevalue("mcp_postgres_url")
        else:
            raise ValueError(store_kind)
        namespace = f"e2e-{uuid.uuid4().hex[:12]}"
        cluster = Cluster(python, store=store, namespace=namespace, log_dir=tmp_path, plain=plain)
        clusters.append(cluster)
        return cluster

    request.node.mcp_clusters = clusters
    yield make
    for cluster in clusters:
        cluster.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the logs of every process of its clusters."""
    report = yield
    clusters: list[Cluster] = getattr(item, "mcp_clusters", [])
    if report.failed and clusters:
        report.sections.append(
            ("mcp processes", "\n\n".join(cluster.report() for cluster in clusters))
        )
    return report
