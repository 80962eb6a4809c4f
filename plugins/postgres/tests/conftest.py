"""Fixtures of the PostgreSQL backend's tests: real servers (see ``postgres_servers``).

``async def`` tests run in a fresh event loop each (the workspace's root conftest.py), so async
fixtures are not supported; fixtures here are plain and hand out URLs and cluster handles.

No server to be found skips the tests that need one, with the reason in the summary, except in CI
(``CI=true``), where it fails them. Every database a fixture creates is dropped, and every
cluster it starts is stopped and removed, whether the test passed or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from postgres_servers import (
    PostgresCluster,
    PostgresUnavailable,
    fresh_database,
    postgres_server,
)

from sessionstore_contract import skip_or_fail


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """An admin URL of the server the session tests against (``SESSIONSTORE_POSTGRES_URL``, else
    127.0.0.1:5432, else a throwaway cluster). Never stop or restart it; create databases in it
    with ``fresh_database`` rather than writing to the database it names."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailable as exc:
            skip_or_fail(str(exc))
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """The URL of a fresh database of this test session (``sessionstore_test_<random>``), dropped
    at its end. Tests sharing it keep apart by namespace or clear it.

    Its connections commit without waiting for the WAL flush (``synchronous_commit=off``, a
    server setting passed in the URL): a commit's fsync would otherwise make up most of the
    suite's time, and no test here cuts the power.
    """
    with fresh_database(postgres_server_url) as url:
        yield url + "?synchronous_commit=off"


@pytest.fixture
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """The URL of a fresh database of this test alone, dropped after it."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started throwaway cluster of this test alone: stop or restart it at will. Its ``url``
    is an admin URL (database ``postgres``)."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        skip_or_fail(str(exc))
    with cluster:
        yield cluster
