"""The ``sessionstore`` command against real PostgreSQL databases (see conftest.py: without a
server these tests are skipped, and fail under ``CI=true``): ``migrate`` through PostgreSQL,
``check`` and ``bench``.

The command is driven through click's runner, as a user would from a shell. The migration test
reuses the seeding and the comparison of the Redis tests (plugins/redis/tests/test_cli_redis.py)
and ends in a throwaway redis-server (plugins/redis/tests/redis_servers.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sessionstore.benchmark import OPERATIONS
from sessionstore_contract import skip_or_fail

sys.path.append(str(Path(__file__).resolve().parents[2] / "redis" / "tests"))
from redis_servers import RedisServer, redis_server_binary
from test_cli_redis import (
    _seed_redis as seed_kept,  # five sessions with an event each, in a namespace
)
from test_cli_redis import (
    assert_identical,
    invoke,
    seed_sqlite,
)

# `make test` migrates 5,000 sessions (every session goes through three stores and two
# comparisons: 17 s on a shared 2-core machine, where 20,000 took 97 s under heavier load);
# `make long` sets SESSIONSTORE_MIGRATE_SESSIONS=100000, as for the Redis migration test.
SESSIONS = int(os.environ.get("SESSIONSTORE_MIGRATE_SESSIONS", "5000"))

Snapshot = dict[str, list[str]]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server of this test alone."""
    if redis_server_binary() is None:
        skip_or_fail("redis-server not found on PATH: install redis-server to run this test")
    with RedisServer() as server:
        yield server.url


def test_migrate_many_sessions_sqlite_to_postgres_to_redis_keeps_everything(
    tmp_path: Path, postgres_database_url: str, redis_url: str
) -> None:
    """Every session (record, version, deadline, last event id, every stream's events in order)
    arrives whole in PostgreSQL from SQLite, and in Redis from PostgreSQL."""
    started = time.monotonic()
    original = f"sqlite:///{tmp_path / 'original.db'}"
    asyncio.run(seed_sqlite(original, SESSIONS))
    seeded = time.monotonic()

    for source, target in ((original, postgres_database_url), (postgres_database_url, redis_url)):
        result = invoke("migrate", "--from", source, "--to", target)
        assert result.exit_code == 0, result.output
        assert f"copied {SESSIONS}, already there 0, expired before they could be written 0" in (
            result.stdout
        )
        assert f"the source holds {SESSIONS} sessions, the target {SESSIONS}; 100 sampled" in (
            result.stdout
        )
        assert "ok: every session checked arrived whole" in result.stdout
    copied = time.monotonic()

    assert asyncio.run(assert_identical(original, postgres_database_url)) == SESSIONS
    assert asyncio.run(assert_identical(original, redis_url)) == SESSIONS
    print(
        f"seed {seeded - started:.1f} s, SQLite -> PostgreSQL -> Redis {copied - seeded:.1f} s, "
        f"comparisons {time.monotonic() - copied:.1f} s"
    )


async def _snapshot(url: str) -> Snapshot:
    """Every row of every table of the database (the backend's schema and any other, not the
    system's), as text, sorted, by ``schema.table``."""
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE'"
        )
        snapshot: Snapshot = {}
        for (table,) in tables:
            rows = await connection.fetch(f"SELECT t::text FROM {table} AS t")
            snapshot[table] = sorted(row[0] for row in rows)
        return snapshot
    finally:
        await connection.close()


# A test of every numbered guarantee, and those that write most widely (clear, purge, load). The
# whole suite runs on PostgreSQL in test_postgres_contract.py; `sessionstore check` without -k runs
# it too, in four minutes on a loaded 2-core machine, too long to repeat here.
CHECKED = (
    "roundtrip_create_get or batch_update_is_all_or_nothing or count_expired_is_what_purge "
    "or namespaces_never_see or events_go_with_their_session or clear_removes_everything "
    "or purge_stays_within or dump_and_load_copy"
)


def test_check_touches_nothing_but_its_scratch_namespaces(postgres_database_url: str) -> None:
    """The contract suite passes on PostgreSQL through the command, and leaves every row of the
    database as it found it, in its namespaces and outside them."""
    asyncio.run(seed_kept(postgres_database_url, "default"))
    asyncio.run(seed_kept(postgres_database_url, "contract"))  # a tempting name
    before = asyncio.run(_snapshot(postgres_database_url))
    assert sum(map(len, before.values())) > 0

    result = invoke("check", postgres_database_url, "-k", CHECKED)
    assert result.exit_code == 0, result.output
    assert f"against {postgres_database_url}: 8 tests" in result.stdout
    for heading in ("1. serialization", "2. atomicity", "3. expiry", "4. isolation", "5. events"):
        assert f"\n{heading}: holds" in result.stdout
    assert "8 passed, 0 failed, 0 skipped in " in result.stdout
    assert result.stdout.endswith("every guarantee checked holds\n")

    assert asyncio.run(_snapshot(postgres_database_url)) == before


def test_bench_against_postgres_reports_and_clears_its_namespace(
    postgres_database_url: str,
) -> None:
    asyncio.run(seed_kept(postgres_database_url, "default"))
    before = asyncio.run(_snapshot(postgres_database_url))

    result = invoke("bench", postgres_database_url, "--ops", "400", "--concurrency", "16", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == postgres_database_url
    assert list(summary["results"]) == list(OPERATIONS)
    for name, measured in summary["results"].items():
        assert measured["calls"] == (8 if name == "get_batch" else 400)
        assert measured["ops_per_second"] > 0
    assert summary["raw_driver"]["get"]["calls"] == 400  # asyncpg's bare read of the record
    assert summary["raw_driver_ratio"]["get"] > 0

    assert asyncio.run(_snapshot(postgres_database_url)) == before
