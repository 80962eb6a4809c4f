"""Several OS processes on one database file: no lost update, and no lost acknowledged write when
a writer is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sessionstore import Session, TransportType, open_store
from sessionstore_sqlite import SCHEMA_VERSION

WORKER = str(Path(__file__).with_name("sqlite_workers.py"))


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_four_processes_incrementing_one_session_end_at_exactly_1000(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'shared.db'}"

    async def setup() -> None:
        async with open_store(spec) as store:
            await store.create_session(
                Session(id="counter", transport=TransportType.HTTP, metadata={"count": 0})
            )

    asyncio.run(setup())
    workers = [_start("increment", spec, "250") for _ in range(4)]
    for worker in workers:
        _out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        assert "locked" not in err

    async def check() -> Session:
        async with open_store(spec) as store:
            return await store.get_session("counter")

    final = asyncio.run(check())
    assert final.metadata == {"count": 1000}
    assert final.version == 1001


def test_processes_opening_a_new_file_together_create_it_once(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'fresh.db'}"
    openers = [_start("open", spec, str(n)) for n in range(6)]
    for opener in openers:
        _, err = opener.communicate(timeout=120)
        assert opener.returncode == 0, err

    async def check() -> int:
        async with open_store(spec) as store:
            return await store.count_sessions()

    assert asyncio.run(check()) == 6
    conn = sqlite3.connect(tmp_path / "fresh.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    spec = f"sqlite:///{path}"
    rng = random.Random(20261124)
    created: set[int] = set()
    events: dict[int, str] = {}
    counter_version = 0
    next_id = 0
    for _ in range(20):
        writer = _start("write", spec, str(next_id))
        time.sleep(rng.uniform(0.3, 0.9))  # includes start-up; kills land at random points
        os.kill(writer.pid, signal.SIGKILL)
        out, _ = writer.communicate(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        for line in out.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # cut off by the kill: never acknowledged
            kind, *rest = line.split()[1:]
            if kind == "create":
                created.add(int(rest[0]))
            elif kind == "update":
                counter_version = max(counter_version, int(rest[0]))
            elif kind == "event":
                events[int(rest[0])] = rest[1]
        next_id = max(created, default=-1) + 2  # skip an id that may exist unacknowledged

        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()

    assert len(created) > 20, "the writer should have acknowledged many writes"

    async def check() -> None:
        async with open_store(spec) as store:
            sessions = await store.get_sessions_batch([f"s{n}" for n in sorted(created)])
            assert [s.metadata["n"] for s in sessions] == sorted(created)
            counter = await store.get_session("counter")
            assert counter.version >= counter_version
            assert counter.metadata["count"] == counter.version - 1
            for n, event_id in events.items():
                # an event that was never stored would raise EventNotFoundError here
                stream_id, _ = await store.replay_events_after(event_id, session_id=f"s{n}")
                assert stream_id == "stream"

    asyncio.run(check())
