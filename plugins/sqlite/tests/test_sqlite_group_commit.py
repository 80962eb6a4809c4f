"""Event appends made in one turn of the event loop share one transaction (a group commit)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from sessionstore import Session, SessionNotFoundError, TransportType, open_store


async def test_concurrent_appends_commit_together_and_each_gets_its_own_id(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    async with open_store(f"sqlite:///{path}") as store:
        sessions = [
            (await store.create_session(Session(transport=TransportType.HTTP))).id for _ in range(5)
        ]
        watcher = sqlite3.connect(path)  # PRAGMA data_version counts others' commits
        commits_before = watcher.execute("PRAGMA data_version").fetchone()[0]
        appends = [
            store.append_event(sessions[i % 5], f"s{i % 3}", f"event {i}".encode())
            for i in range(50)
        ]
        appends.append(store.append_event("no-such-session", "s0", b"lost"))
        outcomes = await asyncio.gather(*appends, return_exceptions=True)
        commits = watcher.execute("PRAGMA data_version").fetchone()[0] - commits_before
        watcher.close()
        assert commits == 1, f"51 appends in one turn took {commits} commits"
        assert isinstance(outcomes[-1], SessionNotFoundError)
        ids = outcomes[:-1]
        assert all(isinstance(i, str) for i in ids), ids
        assert len(set(ids)) == 50
        # Every event is stored, in its stream, in the order it was appended.
        for session_id in sessions:
            for stream in ("s0", "s1", "s2"):
                mine = [
                    (i, ids[i])
                    for i in range(50)
                    if sessions[i % 5] == session_id and f"s{i % 3}" == stream
                ]
                if len(mine) < 2:
                    continue
                _, replayed = await store.replay_events_after(mine[0][1], session_id=session_id)
                assert [e.data for e in replayed] == [f"event {i}".encode() for i, _ in mine[1:]]


async def test_appends_wait_for_a_writer_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with open_store(f"sqlite:///{path}", busy_timeout=10) as store:
        session_id = (await store.create_session(Session(transport=TransportType.HTTP))).id
        cursor = await store.append_event(session_id, "s", None)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock

        async def release_later() -> None:
            await asyncio.sleep(0.3)
            other.execute("COMMIT")

        release = asyncio.create_task(release_later())
        ids = await asyncio.wait_for(
            asyncio.gather(*(store.append_event(session_id, "s", b"x") for _ in range(20))), 10
        )
        await release
        assert len(set(ids)) == 20
        _, replayed = await store.replay_events_after(cursor, session_id=session_id)
        assert sorted(e.id for e in replayed) == sorted(ids)  # each retried alone: any order
        other.close()


async def test_a_cancelled_append_does_not_disturb_the_others(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'events.db'}") as store:
        session_id = (await store.create_session(Session(transport=TransportType.HTTP))).id
        doomed = asyncio.create_task(store.append_event(session_id, "s", b"doomed"))
        kept = asyncio.create_task(store.append_event(session_id, "s", b"kept"))
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert isinstance(await kept, str)
