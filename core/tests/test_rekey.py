"""``sessionstore rekey`` and :func:`sessionstore.rekey.rekey`: records move to the newest key by
compare-and-set, keeping deadlines; a concurrent writer is never overwritten; a run killed
mid-way (SIGKILL) resumes from its checkpoint; events stay under their key and are reported."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from core_testkit import DictBackend, factory_of

from sessionstore import ConfigurationError, Session, TransportType, hookimpl, open_store
from sessionstore.cli import cli
from sessionstore.encryption import EncryptionMiddleware, generate_key
from sessionstore.records import SessionDump, SessionRecord
from sessionstore.rekey import PLAINTEXT, rekey

OLD, NEW = generate_key(), generate_key()
OLD_ID, NEW_ID = (EncryptionMiddleware([key]).newest_key_id for key in (OLD, NEW))


def invoke(*args: str, keys: str | None = None) -> Result:
    env = {"SESSIONSTORE_ENCRYPTION_KEYS": keys} if keys is not None else {}
    return CliRunner().invoke(cli, list(args), prog_name="sessionstore", env=env)


async def seed(spec: str, count: int, key: str | None = OLD, **options: Any) -> None:
    middleware = [EncryptionMiddleware([key])] if key is not None else []
    async with open_store(spec, middleware=middleware, ttl=3600, **options) as store:
        for i in range(count):
            await store.create_session(
                Session(id=f"s{i:04d}", transport=TransportType.HTTP, metadata={"i": i})
            )
            await store.append_event(f"s{i:04d}", "stream", f"event {i}".encode())


async def raw_dumps(spec: str) -> dict[str, SessionDump]:
    async with open_store(spec) as store:
        return {
            record.id: await store.dump_session(record.id)
            for record in (await store._call("session_page", None, 10_000, store._now_ms()))[0]
        }


def key_ids(dumps: dict[str, SessionDump]) -> set[str | None]:
    return {EncryptionMiddleware.key_id_of(d.record.payload) for d in dumps.values()}


async def read_all(spec: str, *keys: str) -> dict[str, Any]:
    async with open_store(spec, middleware=[EncryptionMiddleware(list(keys))]) as store:
        sessions = await store.list_sessions()
        events = {s.id: (await store.dump_session(s.id)).streams for s in sessions}
        return {s.id: (s.metadata, events[s.id]) for s in sessions}


async def test_records_move_to_the_newest_key_keeping_deadline_and_incarnation() -> None:
    spec = "memory://rekey-basics"
    await seed(spec, 30)
    before = await raw_dumps(spec)
    async with open_store(spec, page_size=7) as store:
        report = await rekey(store, EncryptionMiddleware([NEW, OLD]))
        again = await rekey(store, EncryptionMiddleware([NEW, OLD]))
        after = await raw_dumps(spec)
        await store.clear()
    assert (report.visited, report.rewritten, report.current, report.ok) == (30, 30, 0, True)
    assert report.old_event_keys == {OLD_ID: 30}
    assert (again.rewritten, again.current) == (0, 30)  # a second run skips them all
    assert key_ids(after) == {NEW_ID}
    for session_id, dump in before.items():
        moved = after[session_id].record
        assert moved.version == dump.record.version + 1  # by compare-and-set
        assert moved.deadline_ms == dump.record.deadline_ms  # a rewrite is no activity
        assert moved.incarnation == dump.record.incarnation
        assert after[session_id].streams == dump.streams  # events stay as they were


async def test_a_store_opened_with_payload_middleware_is_refused_and_left_alone() -> None:
    """Its hooks would decrypt what rekey reads and encrypt again what it writes: rekey refuses
    it, naming the middleware, before touching any record."""
    spec = "memory://rekey-refused"
    await seed(spec, 3)
    before = await raw_dumps(spec)
    async with open_store(spec, middleware=[EncryptionMiddleware([NEW, OLD])]) as store:
        with pytest.raises(ConfigurationError, match=r"without payload middleware.*Encryption"):
            await rekey(store, EncryptionMiddleware([NEW, OLD]))
    assert await raw_dumps(spec) == before
    async with open_store(spec) as store:
        await store.clear()


class WriterFirst:
    """Makes one concurrent writer win against rekey: just before rekey's compare-and-set of
    ``session_id`` reaches the backend, ``writer`` updates that session through another
    handle."""

    def __init__(self, session_id: str, writer: Any) -> None:
        self.session_id = session_id
        self.writer = writer
        self.done = False

    @hookimpl(wrapper=True)
    def session_update(self, record: SessionRecord, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield

        async def racing() -> Any:
            if record.id == self.session_id and not self.done:
                self.done = True
                await self.writer()
            return await inner

        return racing()


async def test_a_concurrent_writer_is_never_overwritten() -> None:
    backend = DictBackend()  # async hooks: rekey's write starts only once awaited
    writer_store = open_store(factory_of(backend), middleware=[EncryptionMiddleware([OLD])])
    async with writer_store:
        await writer_store.create_session(Session(id="s", transport=TransportType.HTTP))

        async def write() -> None:
            await writer_store.modify_session("s", lambda s: s.metadata.update(writer="won"))

        race = WriterFirst("s", write)
        async with open_store(factory_of(backend), middleware=[race]) as store:
            report = await rekey(store, EncryptionMiddleware([NEW, OLD]))
    assert race.done
    assert report.conflicts == 1
    assert report.rewritten == 1
    stored = backend.records["s"]
    assert EncryptionMiddleware.key_id_of(stored.payload) == NEW_ID
    assert stored.version == 3  # create, the writer, rekey of the writer's version
    async with open_store(factory_of(backend), middleware=[EncryptionMiddleware([NEW])]) as s:
        assert (await s.get_session("s")).metadata == {"writer": "won"}


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'sessions.db'}"
    checkpoint = tmp_path / "rekey.json"
    asyncio.run(seed(spec, 60))
    expected = asyncio.run(read_all(spec, OLD))
    command = ["rekey", "--store", spec, "-o", "page_size=10", "--checkpoint", str(checkpoint)]
    # The real command, killed with SIGKILL right after it saved its second checkpoint.
    killer = (
        "import os, signal, sys\n"
        "from sessionstore.transfer import MigrationCheckpoint\n"
        "save, saved = MigrationCheckpoint.save, []\n"
        "def dying(self, cursor, handled):\n"
        "    save(self, cursor, handled)\n"
        "    saved.append(cursor)\n"
        "    if len(saved) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "MigrationCheckpoint.save = dying\n"
        "from sessionstore.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", killer, *command],
        env={"SESSIONSTORE_ENCRYPTION_KEYS": f"{NEW},{OLD}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads(checkpoint.read_text())["last_id"]  # the page cursor
    halfway = asyncio.run(raw_dumps(spec))
    assert key_ids(halfway) == {NEW_ID, OLD_ID}  # killed mid-run: some moved, some not

    resumed = invoke(*command, "--json", keys=f"{NEW},{OLD}")
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.output)
    assert report["resumed"] is True
    assert report["visited"] == 60 - 20  # the two finished pages are not visited again
    assert report["rewritten"] + report["current"] == report["visited"]
    assert not checkpoint.exists()
    assert key_ids(asyncio.run(raw_dumps(spec))) == {NEW_ID}

    final = invoke("rekey", "--store", spec, "--json", keys=f"{NEW},{OLD}")
    assert json.loads(final.output)["current"] == 60
    assert asyncio.run(read_all(spec, NEW, OLD)) == expected  # sessions and events intact


def test_records_under_a_key_not_given_fail_the_command_and_are_left_alone(
    tmp_path: Path,
) -> None:
    spec = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(seed(spec, 3))
    result = invoke("rekey", "--store", spec, "--json", keys=NEW)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    report = json.loads(lines[0])
    assert report["unreadable"] == 3
    assert f"no key for key id {OLD_ID}" in report["unreadable_ids"][0]
    assert "could not be decrypted" in lines[-1]
    assert OLD not in result.output
    assert NEW not in result.output
    assert key_ids(asyncio.run(raw_dumps(spec))) == {OLD_ID}


def test_keys_come_from_a_file_or_the_environment(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(seed(spec, 2))
    missing = invoke("rekey", "--store", spec, keys="")
    assert missing.exit_code == 1
    assert "SESSIONSTORE_ENCRYPTION_KEYS is not set" in missing.output
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# newest first\n{NEW}\n\n{OLD}\n", encoding="utf-8")
    result = invoke("rekey", "--store", spec, "--keys-file", str(keys_file))
    assert result.exit_code == 0, result.output
    assert "2 rewritten" in result.output
    assert "2 events still under key id" in result.output


def test_a_plaintext_store_moves_to_encryption(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(seed(spec, 4, key=None))
    refused = invoke("rekey", "--store", spec, "--json", keys=NEW)
    assert refused.exit_code == 1
    assert "not encrypted" in refused.output
    result = invoke("rekey", "--store", spec, "--json", "--accept-plaintext", keys=NEW)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["old_event_keys"] == {PLAINTEXT: 4}
    assert key_ids(asyncio.run(raw_dumps(spec))) == {NEW_ID}


def test_a_checkpoint_of_another_rekey_is_refused(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'sessions.db'}"
    checkpoint = tmp_path / "rekey.json"
    checkpoint.write_text(
        json.dumps(
            {
                "format": "sessionstore-migrate-checkpoint",
                "source": spec,
                "source_namespace": "default",
                "target": f"encryption key id {OLD_ID}",  # a rekey to another key
                "target_namespace": "default",
                "last_id": "s0001",
            }
        )
    )
    result = invoke("rekey", "--store", spec, "--checkpoint", str(checkpoint), keys=NEW)
    assert result.exit_code == 1
    assert "belongs to another migration" in result.output
