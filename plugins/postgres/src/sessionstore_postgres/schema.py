"""The database layout and its migrations, versioned in a ``schema_version`` table.

Every table lives in one PostgreSQL schema (the ``schema`` option, default ``sessionstore``), so
the backend never touches anything else in the database. Opening checks the version with one
query; only when it is behind does it take a transaction-level advisory lock, re-read the version
and run the missing migrations in that one transaction: several processes opening a fresh
database at once upgrade it exactly once, and a failed migration leaves nothing behind. A
database of a newer version than :data:`SCHEMA_VERSION` is refused (a
:class:`~sessionstore.ConfigurationError` naming both versions), never touched.
"""

from __future__ import annotations

import re

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from sessionstore import ConfigurationError

__all__ = ["ADVISORY_LOCK_KEY", "MIGRATIONS", "SCHEMA_VERSION", "check_schema_name", "migrate"]

ADVISORY_LOCK_KEY = 0x5E55_0001
"""First key of the two-key advisory lock migrations hold (the second is the schema's hash)."""
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")

# Each migration is a template: {s} is the quoted schema name. Ids are COLLATE "C" so that
# ORDER BY id and the keyset cursor (id > $cursor) follow code points, as Python's str does,
# and the primary key index serves both.
MIGRATIONS: tuple[str, ...] = (
    # 1: sessions keyed by (namespace, id), a deadline index, streams and their events; deleting
    # a session deletes its streams, deleting a stream its events (the foreign keys cascade).
    # Stream handles come from an identity sequence, so an event id ("handle-seq") is never
    # issued twice in the database, whatever was deleted since.
    """
    CREATE TABLE {s}.sessions (
        namespace text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        deadline bigint,
        payload bytea NOT NULL,
        incarnation bigint NOT NULL DEFAULT 0,
        last_event_id text,
        PRIMARY KEY (namespace, id)
    );
    CREATE INDEX sessions_by_deadline ON {s}.sessions (namespace, deadline)
        WHERE deadline IS NOT NULL;
    CREATE TABLE {s}.streams (
        handle bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace text COLLATE "C" NOT NULL,
        session_id text COLLATE "C" NOT NULL,
        stream_id text NOT NULL,
        next_seq bigint NOT NULL,
        UNIQUE (namespace, session_id, stream_id),
        FOREIGN KEY (namespace, session_id) REFERENCES {s}.sessions ON DELETE CASCADE
    );
    CREATE TABLE {s}.events (
        handle bigint NOT NULL REFERENCES {s}.streams ON DELETE CASCADE,
        seq bigint NOT NULL,
        data bytea,
        PRIMARY KEY (handle, seq)
    );
    """,
    # 2: a row count per namespace, kept by statement triggers in the same transaction as the
    # rows, so count_sessions reads a few counter rows (less the expired rows, found through the
    # deadline index) instead of scanning every session: one snapshot sees both consistent.
    # Each connection adds to its own slot (its backend pid mod 16), so concurrent writers
    # rarely wait for one another's counter row; the count is the sum of the slots.
    """
    CREATE TABLE {s}.session_counts (
        namespace text COLLATE "C" NOT NULL,
        slot integer NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (namespace, slot)
    );
    INSERT INTO {s}.session_counts
        SELECT namespace, 0, count(*) FROM {s}.sessions GROUP BY namespace;
    CREATE FUNCTION {s}.count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.session_counts AS c
            SELECT namespace, pg_backend_pid() % 16, count(*) FROM added
            GROUP BY namespace ORDER BY namespace
        ON CONFLICT (namespace, slot) DO UPDATE SET n = c.n + excluded.n;
        RETURN NULL;
    END $$;
    CREATE FUNCTION {s}.count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.session_counts AS c
            SELECT namespace, pg_backend_pid() % 16, -count(*) FROM removed
            GROUP BY namespace ORDER BY namespace
        ON CONFLICT (namespace, slot) DO UPDATE SET n = c.n + excluded.n;
        RETURN NULL;
    END $$;
    CREATE TRIGGER sessions_count_insert AFTER INSERT ON {s}.sessions
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_inserted();
    CREATE TRIGGER sessions_count_delete AFTER DELETE ON {s}.sessions
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_deleted();
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this release writes; databases of older versions are upgraded on open."""


def check_schema_name(schema: object) -> str:
    """Return ``schema`` if it is a plain lower-case identifier (so it never needs escaping),
    else raise :class:`~sessionstore.ConfigurationError`."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ConfigurationError(
            f"schema {schema!r} must be 1-63 characters of a-z 0-9 _, not starting with a digit"
        )
    return schema


async def migrate(
    conn: asyncpg.Connection, schema: str, where: str, *, target: int = SCHEMA_VERSION
) -> int:
    """Bring ``schema`` to version ``target``; return the version it had before (0: none).

    Raises :class:`~sessionstore.ConfigurationError` for a newer schema, naming both versions.
    """
    version = await _version(conn, schema)
    if version == target:
        return version
    if version > SCHEMA_VERSION:
        raise _too_new(version, schema, where)
    async with conn.transaction():
        # Held to the end of the transaction: the next opener waits, then finds the work done.
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", ADVISORY_LOCK_KEY, schema
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.schema_version (version int)")
        version = await _version(conn, schema)
        if version > SCHEMA_VERSION:
            raise _too_new(version, schema, where)
        for number in range(version + 1, target + 1):
            await conn.execute(MIGRATIONS[number - 1].replace("{s}", schema))
        await conn.execute(f"DELETE FROM {schema}.schema_version")
        await conn.execute(f"INSERT INTO {schema}.schema_version VALUES ($1)", target)
    return version


async def _version(conn: asyncpg.Connection, schema: str) -> int:
    """The schema's version; 0 when it (or its version table) does not exist yet."""
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schema_version")
    if exists is None:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_version")
    return int(version or 0)


def _too_new(version: int, schema: str, where: str) -> ConfigurationError:
    return ConfigurationError(
        f"PostgreSQL database {where} holds sessionstore schema {schema!r} at version {version}, "
        f"newer than the {SCHEMA_VERSION} this sessionstore-postgres understands; upgrade "
        "sessionstore-postgres (the database was left untouched)"
    )
