"""The SQLite backend's own behaviour: files, permissions, errors, schema versions, locking."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from sessionstore import (
    ConfigurationError,
    Session,
    SessionStoreError,
    StoreUnavailableError,
    TransportType,
    open_store,
)
from sessionstore_sqlite import DEFAULT_PATH, SCHEMA_VERSION, database_path
from sessionstore_sqlite.schema import migrate


def _session(session_id: str, **fields: object) -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sqlite", Path(DEFAULT_PATH)),
        ("sqlite:///relative.db", Path("relative.db")),
        ("sqlite:///dir/rel.db", Path("dir/rel.db")),
        ("sqlite:////absolute/s.db", Path("/absolute/s.db")),
        ("SQLITE:////a%20b.db", Path("/a b.db")),
    ],
)
def test_url_forms(spec: str, expected: Path) -> None:
    assert database_path(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/x.db",
        "sqlite:///x.db?mode=ro",
        "sqlit",
        "sqlite:///:memory:",
        "sqlite://admin:hunter2@host/x.db",
        "sqlite:///x.db?password=hunter2",
    ],
)
def test_bad_urls_are_refused_without_repeating_a_password(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as raised:
        open_store(spec)
    assert "hunter2" not in str(raised.value)
    assert list(tmp_path.iterdir()) == [], "nothing may be created for a refused spec"


def test_relative_url_and_the_default_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    async def scenario() -> None:
        async with open_store("sqlite:///rel.db") as store:
            await store.create_session(_session("r"))
        async with open_store("sqlite") as store:
            await store.create_session(_session("d"))

    asyncio.run(scenario())
    assert (tmp_path / "rel.db").exists()
    assert (tmp_path / DEFAULT_PATH).exists()


def test_sessions_survive_reopening(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 's.db'}"

    async def write() -> Session:
        async with open_store(spec, ttl=3600) as store:
            session = await store.create_session(_session("kept", metadata={"n": 1}))
            await store.store_last_event_id("kept", "e-7")
            await store.append_event("kept", "s", b"payload")
            return session

    async def read() -> None:
        async with open_store(spec, ttl=3600) as store:
            assert await store.get_session("kept") == written
            assert await store.get_last_event_id("kept") == "e-7"
            assert await store.count_sessions() == 1

    written = asyncio.run(write())
    asyncio.run(read())


def test_database_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    old_umask = os.umask(0o022)
    try:

        async def scenario() -> None:
            async with open_store(f"sqlite:///{path}") as store:
                await store.create_session(_session("p"))

        asyncio.run(scenario())
    finally:
        os.umask(old_umask)
    for file in [path, *tmp_path.glob("private.db-*")]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="does not exist") as raised:
        open_store(f"sqlite:///{tmp_path / 'no' / 'such' / 's.db'}")
    assert "no/such" in str(raised.value)


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root ignores permission bits; nobody may create files in /proc
        where = Path("/proc/sessionstore-test.db")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        where = locked / "s.db"
    with pytest.raises(StoreUnavailableError, match="cannot create SQLite database") as raised:
        open_store(f"sqlite:///{where}")
    assert str(where) in str(raised.value)


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "dir-not-file.db"
    path.mkdir()
    with pytest.raises(StoreUnavailableError) as raised:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(raised.value)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StoreUnavailableError, match="is not a SQLite database"):
        open_store(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are my notes"), "the file must be left alone"


def test_older_schema_is_upgraded_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), target=1) == 0
    conn.execute(
        "INSERT INTO sessions VALUES ('ns', 'old', 3, NULL, ?, 'e-1')",
        (_payload_of(_session("old", metadata={"from": "v1"})),),
    )
    conn.close()

    async def scenario() -> None:
        async with open_store(f"sqlite:///{path}", namespace="ns") as store:
            old = await store.get_session("old")
            assert (old.version, old.metadata) == (3, {"from": "v1"})
            assert await store.count_sessions() == 1  # the counter was seeded from the rows
            await store.create_session(_session("new"))
            assert await store.count_sessions() == 2
            assert await store.get_last_event_id("old") == "e-1"

    asyncio.run(scenario())
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 3


def _payload_of(session: Session) -> bytes:
    from sessionstore import encode_session

    return encode_session(session)


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    asyncio.run(_create_one(path))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="newer than") as raised:
        open_store(f"sqlite:///{path}")
    assert f"schema version {SCHEMA_VERSION + 5}" in str(raised.value)
    assert "upgrade sessionstore-sqlite" in str(raised.value)
    assert path.read_bytes() == before


async def _create_one(path: Path) -> None:
    async with open_store(f"sqlite:///{path}") as store:
        await store.create_session(_session("x"))


def test_a_held_write_lock_is_waited_for_then_reported(tmp_path: Path) -> None:
    """'database is locked' never escapes: writes wait (without blocking the loop), then fail
    clearly after busy_timeout."""
    path = tmp_path / "locked.db"
    asyncio.run(_create_one(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction

    async def blocked_then_released() -> None:
        async with open_store(f"sqlite:///{path}", busy_timeout=5) as store:
            session = await store.get_session("x")  # WAL: reads are not blocked
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticking = asyncio.create_task(ticker())
            asyncio.get_running_loop().call_later(0.3, holder.rollback)
            started = time.monotonic()
            await store.update_session(session)
            waited = time.monotonic() - started
            ticking.cancel()
            assert 0.25 <= waited < 3
            assert ticks >= 10, "the event loop must keep running while the write waits"

    asyncio.run(blocked_then_released())

    holder.execute("BEGIN IMMEDIATE")

    async def gives_up() -> None:
        async with open_store(f"sqlite:///{path}", busy_timeout=0.3) as store:
            session = await store.get_session("x")
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="stayed locked") as raised:
                await store.update_session(session)
            assert time.monotonic() - started < 2
            assert "busy_timeout=0.3" in str(raised.value)
            assert not isinstance(raised.value.__cause__, sqlite3.Error)

    asyncio.run(gives_up())
    holder.rollback()
    holder.close()


@pytest.mark.parametrize("bad", [{"busy_timeout": -1}, {"busy_timeout": "5"}, {"synchronous": "x"}])
def test_bad_options_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        open_store(f"sqlite:///{tmp_path / 'o.db'}", **bad)


def test_counting_and_purging_use_the_deadline_index(tmp_path: Path) -> None:
    path = tmp_path / "plan.db"
    asyncio.run(_create_one(path))
    conn = sqlite3.connect(path)
    for sql in (
        "SELECT count(*) FROM sessions WHERE namespace = 'n' AND deadline <= 5",
        "DELETE FROM sessions WHERE namespace = 'n' AND deadline <= 5",
    ):
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "sessions_by_deadline" in plan, (sql, plan)
    plan = " ".join(
        row[-1]
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE namespace = 'n' "
            "AND id IN (SELECT value FROM json_each('[1,2]'))"
        )
    )
    assert "PRIMARY KEY" in plan or "USING INDEX" in plan, plan
    conn.close()


def test_corrupt_payload_is_reported_not_raised_raw(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    asyncio.run(_create_one(path))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET payload = x'c1c1c1' WHERE id = 'x'")
    conn.commit()
    conn.close()

    async def scenario() -> None:
        async with open_store(f"sqlite:///{path}") as store:
            with pytest.raises(SessionStoreError, match="'x'"):
                await store.get_session("x")

    asyncio.run(scenario())


def test_raw_get_is_the_same_select_with_the_driver_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_store(f"sqlite:///{tmp_path / 'raw.db'}") as store:
            assert store.offers_raw_get
            created = await store.create_session(Session(id="raw", transport="http"))
            version, deadline, payload, _ = await store.raw_get("raw")  # type: ignore[misc]
            assert (version, deadline) == (created.version, None)
            assert payload == (await store.dump_session("raw")).record.payload
            assert await store.raw_get("absent") is None

    asyncio.run(scenario())
