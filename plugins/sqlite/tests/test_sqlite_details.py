"""SQLite details from issue 14, item 11: what a row holds when someone else wrote it (event data
or a payload stored as TEXT), a database created through a dangling symlink, and a directory given
as the database path."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from sessionstore import (
    CorruptRecordError,
    Session,
    SessionDump,
    StoreUnavailableError,
    TransportType,
    open_store,
)
from sessionstore.transfer import export_store
from sessionstore_sqlite import create_backend


def spec(path: Path) -> str:
    return f"sqlite:///{path}"


async def _session_with_events(path: Path) -> list[str]:
    async with open_store(spec(path)) as store:
        await store.create_session(Session(id="s", transport=TransportType.HTTP))
        return [
            await store.append_event("s", "stream", data)
            for data in (None, b"first", b"second", b"\xff\x00")
        ]


def _rewrite(path: Path, sql: str) -> None:
    """Change the database behind the backend's back, as an older release or a person might."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql)
    conn.close()


def _types(path: Path, sql: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [kind for (kind,) in conn.execute(sql)]
    finally:
        conn.close()


def test_event_data_stored_as_text_is_read_back_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    ids = asyncio.run(_session_with_events(path))
    _rewrite(path, "UPDATE events SET data = CAST(data AS TEXT) WHERE data = x'6669727374'")
    _rewrite(path, "UPDATE events SET data = 42 WHERE data = x'7365636f6e64'")
    assert sorted(_types(path, "SELECT typeof(data) FROM events")) == [
        "blob",
        "integer",
        "null",
        "text",
    ]

    async def read() -> None:
        async with open_store(spec(path)) as store:
            _, events = await store.replay_events_after(ids[0])
            assert [event.data for event in events] == [b"first", b"42", b"\xff\x00"]
            assert all(type(event.data) is bytes for event in events)
            dump = await store.dump_session("s")
            ((_, data),) = dump.streams
            assert data == (None, b"first", b"42", b"\xff\x00")
            out = io.StringIO()
            assert await export_store(store, out, source=spec(path)) == 1

    asyncio.run(read())


def test_a_payload_stored_as_text_is_read_as_bytes_and_refused_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "payload.db"
    asyncio.run(_session_with_events(path))
    _rewrite(path, "UPDATE sessions SET payload = 'not an envelope'")

    async def read() -> None:
        async with open_store(spec(path)) as store:
            dump = await store.dump_session("s")
            assert dump.record.payload == b"not an envelope"
            with pytest.raises(CorruptRecordError, match="'s'"):
                await store.get_session("s")

    asyncio.run(read())


def test_event_data_is_always_written_as_a_blob(tmp_path: Path) -> None:
    path = tmp_path / "written.db"

    async def write() -> None:
        async with open_store(spec(path)) as store:
            await store.create_session(Session(id="s", transport=TransportType.HTTP))
            await store.append_event("s", "stream", b"")
            await store.append_event("s", "stream", bytearray(b"text-like"))
            await store.append_event("s", "stream", memoryview(b"123"))
            dump = await store.dump_session("s")
        async with open_store(spec(tmp_path / "copy.db")) as copy:
            assert await copy.load_session(dump)
        # A caller of the hooks themselves (another core, a test harness) may pass a str.
        backend = create_backend(spec(path), namespace="default")
        try:
            now = int(time.time() * 1000)
            await backend.event_append("s", "stream", "a str", 100, now)  # type: ignore[arg-type]
            other = dump.record._replace(id="t")
            loose = SessionDump(other, None, (("other", ("a str", None)),))  # type: ignore[arg-type]
            assert await backend.session_load(loose, 100, now)
        finally:
            await backend.store_close()

    asyncio.run(write())
    assert _types(tmp_path / "copy.db", "SELECT typeof(data) FROM events") == ["blob"] * 3
    assert sorted(_types(path, "SELECT typeof(data) FROM events")) == ["blob"] * 5 + ["null"]


def test_a_database_created_through_a_dangling_symlink_is_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "real" / "sessions.db"
    target.parent.mkdir()
    link = tmp_path / "link.db"
    link.symlink_to(target)
    assert not link.exists()  # dangling
    old_umask = os.umask(0o022)
    try:

        def modes() -> dict[str, str]:
            files = [*target.parent.iterdir(), *tmp_path.glob("link.db-*")]
            return {file.name: oct(stat.S_IMODE(file.stat().st_mode)) for file in files}

        async def scenario() -> dict[str, str]:
            async with open_store(spec(link)) as store:
                await store.create_session(Session(id="p", transport=TransportType.HTTP))
                return modes()  # the -wal and -shm files exist while a connection is open

        created = asyncio.run(scenario())
    finally:
        os.umask(old_umask)
    assert link.is_symlink(), "the link must stay a link"
    assert created == dict.fromkeys(["sessions.db", "sessions.db-wal", "sessions.db-shm"], "0o600")


def test_a_directory_given_as_the_database_is_called_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "sessions.db"
    folder.mkdir()
    with pytest.raises(StoreUnavailableError) as raised:
        open_store(spec(folder))
    message = str(raised.value)
    assert f"{folder} is a directory" in message, message
    assert "permission" not in message
    assert list(folder.iterdir()) == [], "nothing may be created inside it"
