"""The versioned schema: created on first use, upgraded from older versions with the data kept,
upgraded once when several stores open at once, and a newer version refused untouched."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from sessionstore import ConfigurationError, Session, TransportType, open_store
from sessionstore_postgres import SCHEMA_VERSION
from sessionstore_postgres.schema import migrate


async def _version(url: str, schema: str) -> int | None:
    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schema_version")
        if exists is None:
            return None
        return int(await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_version"))
    finally:
        await conn.close()


async def test_many_stores_opening_a_fresh_database_at_once_create_it_once(
    postgres_database_url: str,
) -> None:
    """Eight stores (eight pools) make their first call together on an empty database: every one
    succeeds (the advisory lock makes the others wait, then find the work done) and the version
    table holds one row."""
    stores = [open_store(postgres_database_url, namespace=f"n{i}") for i in range(8)]
    try:
        counts = await asyncio.gather(*(store.count_sessions() for store in stores))
    finally:
        for store in stores:
            await store.aclose()
    assert counts == [0] * 8
    conn = await asyncpg.connect(postgres_database_url)
    try:
        rows = await conn.fetch("SELECT version FROM sessionstore.schema_version")
    finally:
        await conn.close()
    assert [row[0] for row in rows] == [SCHEMA_VERSION]


async def test_an_older_schema_is_upgraded_keeping_its_sessions(postgres_database_url: str) -> None:
    """A database at version 1 (no session counters yet) holding sessions is upgraded on open:
    the sessions are still there and counted (migration 2 counts the rows it finds)."""
    conn = await asyncpg.connect(postgres_database_url)
    try:
        assert await migrate(conn, "sessionstore", "test", target=1) == 0
        for n in range(3):
            await conn.execute(
                "INSERT INTO sessionstore.sessions (namespace, id, version, deadline, payload) "
                "VALUES ('old', $1, 1, NULL, '\\x00'::bytea)",
                f"s{n}",
            )
    finally:
        await conn.close()
    assert await _version(postgres_database_url, "sessionstore") == 1
    async with open_store(postgres_database_url, namespace="old") as store:
        assert await store.count_sessions() == 3
        await store.delete_session("s0")
        assert await store.count_sessions() == 2
    assert await _version(postgres_database_url, "sessionstore") == SCHEMA_VERSION


async def test_a_newer_schema_is_refused_naming_both_versions(postgres_database_url: str) -> None:
    async with open_store(postgres_database_url, schema="future") as store:
        await store.count_sessions()  # creates the schema at this release's version
    newer = SCHEMA_VERSION + 1
    conn = await asyncpg.connect(postgres_database_url)
    try:
        await conn.execute("UPDATE future.schema_version SET version = $1", newer)
        tables_before = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'future'"
        )
    finally:
        await conn.close()
    async with open_store(postgres_database_url, schema="future") as store:
        with pytest.raises(ConfigurationError) as caught:
            await store.count_sessions()
    message = str(caught.value)
    assert f"version {newer}" in message
    assert f"the {SCHEMA_VERSION} this sessionstore-postgres understands" in message
    assert await _version(postgres_database_url, "future") == newer  # left untouched
    conn = await asyncpg.connect(postgres_database_url)
    try:
        tables_after = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'future'"
        )
    finally:
        await conn.close()
    assert tables_after == tables_before


async def test_schemas_keep_stores_apart(postgres_url: str) -> None:
    """The same namespace in two schemas of one database: two separate stores."""
    async with (
        open_store(postgres_url, schema="apart_a", namespace="same") as a,
        open_store(postgres_url, schema="apart_b", namespace="same") as b,
    ):
        await a.clear()
        await b.clear()
        await a.create_session(Session(id="only-in-a", transport=TransportType.HTTP))
        assert await a.count_sessions() == 1
        assert await b.count_sessions() == 0
        assert await b.get_sessions_batch(["only-in-a"]) == []
