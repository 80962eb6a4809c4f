"""The database layout and its migrations, versioned with ``PRAGMA user_version``.

Each migration takes the schema from version ``n - 1`` to ``n`` inside one write transaction, so a
database is never left half-upgraded and several processes opening it at once upgrade it once.
A database of a newer version than :data:`SCHEMA_VERSION` is refused, never touched.
"""

from __future__ import annotations

import sqlite3

from sessionstore import ConfigurationError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions keyed by (namespace, id), an index on deadlines, streams and their events.
    """
    CREATE TABLE sessions (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        deadline INTEGER,
        payload BLOB NOT NULL,
        last_event_id TEXT,
        PRIMARY KEY (namespace, id)
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_deadline ON sessions (namespace, deadline)
        WHERE deadline IS NOT NULL;
    CREATE TABLE streams (
        handle INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        session_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        next_seq INTEGER NOT NULL,
        UNIQUE (namespace, session_id, stream_id)
    );
    CREATE TABLE events (
        handle INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        data BLOB,
        PRIMARY KEY (handle, seq)
    ) WITHOUT ROWID;
    CREATE TRIGGER sessions_drop_streams AFTER DELETE ON sessions BEGIN
        DELETE FROM streams WHERE namespace = old.namespace AND session_id = old.id;
    END;
    CREATE TRIGGER streams_drop_events AFTER DELETE ON streams BEGIN
        DELETE FROM events WHERE handle = old.handle;
    END;
    """,
    # 2: a per-namespace row count kept by triggers, so counting never scans live sessions.
    """
    CREATE TABLE session_counts (namespace TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO session_counts SELECT namespace, count(*) FROM sessions GROUP BY namespace;
    CREATE TRIGGER sessions_count_insert AFTER INSERT ON sessions BEGIN
        INSERT INTO session_counts VALUES (new.namespace, 1)
            ON CONFLICT (namespace) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER sessions_count_delete AFTER DELETE ON sessions BEGIN
        UPDATE session_counts SET n = n - 1 WHERE namespace = old.namespace;
    END;
    """,
    # 3: which creation of an id a row is, compared by compare-and-set with the version.
    """
    ALTER TABLE sessions ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this release writes; databases of older versions are upgraded on open."""


def migrate(conn: sqlite3.Connection, location: str, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to schema ``target``; return the version it had before.

    Raises :class:`~sessionstore.ConfigurationError` for a database of a newer schema. Runs in one
    ``BEGIN IMMEDIATE`` transaction, so concurrent openers wait for each other and the second
    finds the work done.
    """
    version = _version(conn)
    if version == target:
        return version
    if version > SCHEMA_VERSION:
        raise _too_new(version, location)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)  # another process may have migrated while we waited
        if version > SCHEMA_VERSION:
            raise _too_new(version, location)
        for number in range(version + 1, target + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _too_new(version: int, location: str) -> ConfigurationError:
    return ConfigurationError(
        f"SQLite database {location} has schema version {version}, newer than the "
        f"{SCHEMA_VERSION} this sessionstore-sqlite understands; upgrade sessionstore-sqlite "
        "(the database was left untouched)"
    )


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping each trigger body whole."""
    statements, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete statement in a migration: {current!r}")
    return statements
