"""Listings that go on past records that cannot be decoded (issue 14, item 9).

``iter_sessions``, ``list_sessions``, ``iter_dumps`` and ``export_store`` stop at the first
unreadable record by default; given ``on_corrupt`` they hand each one to it and go on. The CLI's
``ls`` and ``export`` always go on, name the unreadable ids and fail at the end. The records are
damaged below the core, as a disk, a foreign writer or a bug would: on the memory backend through
its hook, on SQLite with the ``sqlite3`` driver (the Redis side is in
plugins/redis/tests/test_redis_corrupt_listing.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from core_testkit import DictBackend

from sessionstore import (
    CorruptRecordError,
    Session,
    SessionRecord,
    SessionStore,
    TransportType,
    hookimpl,
    open_store,
)
from sessionstore.cli import cli
from sessionstore.records import new_record
from sessionstore.transfer import ExportReader, export_store, verify_export
from sessionstore_memory.backend import create_backend

GOOD = ["a-good", "c-good", "e-good", "g-good"]
BAD = {"b-bad": b"\x93garbage", "d-bad": b"", "f-bad": "a text value"}
"""Damaged records: not msgpack, empty, and (SQLite's dynamic typing) text instead of bytes."""


@dataclass
class Damaged:
    """A store spec holding the sessions ``GOOD`` and the unreadable records ``BAD``."""

    spec: str
    options: dict[str, object]

    def open(self, **options: object) -> SessionStore:
        return open_store(self.spec, **{**self.options, **options})  # type: ignore[arg-type]


async def _create_good(spec: str, options: dict[str, object]) -> None:
    async with open_store(spec, **options) as store:  # type: ignore[arg-type]
        for session_id in GOOD:
            await store.create_session(Session(id=session_id, transport=TransportType.HTTP))


def _memory(tmp_path: Path) -> Damaged:
    spec = f"memory://corrupt-{uuid.uuid4().hex}"
    backend = create_backend(spec, namespace="default")
    now = int(time.time() * 1000)
    for session_id, payload in BAD.items():
        backend.session_create(new_record((session_id, 1, None, payload, 7)), now)  # type: ignore[arg-type]
    return Damaged(spec, {})


def _sqlite(tmp_path: Path) -> Damaged:
    path = tmp_path / "sessions.db"
    spec = f"sqlite:///{path}"

    async def create_all() -> None:
        async with open_store(spec) as store:
            for session_id in [*GOOD, *BAD]:
                await store.create_session(Session(id=session_id, transport=TransportType.HTTP))

    asyncio.run(create_all())
    with sqlite3.connect(path) as conn:
        for session_id, payload in BAD.items():
            conn.execute("UPDATE sessions SET payload = ? WHERE id = ?", (payload, session_id))
    conn.close()
    return Damaged(spec, {})


@pytest.fixture(params=["memory", "sqlite"])
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Damaged]:
    if request.param == "memory":
        made = _memory(tmp_path)
        asyncio.run(_create_good(made.spec, made.options))
        yield made
    else:
        yield _sqlite(tmp_path)


# -- the API --------------------------------------------------------------------------------------


async def test_listings_still_stop_at_the_first_unreadable_record_by_default(
    damaged: Damaged,
) -> None:
    async with damaged.open() as store:
        with pytest.raises(CorruptRecordError, match="'b-bad'"):
            await store.list_sessions()
        with pytest.raises(CorruptRecordError, match="'b-bad'"):
            [s async for s in store.iter_sessions()]


async def test_iter_sessions_goes_on_past_unreadable_records_and_names_them(
    damaged: Damaged,
) -> None:
    async with damaged.open(page_size=2) as store:  # unreadable records on several pages
        corrupt: list[CorruptRecordError] = []
        listed = [s.id async for s in store.iter_sessions(on_corrupt=corrupt.append)]
    assert listed == GOOD
    assert [error.session_id for error in corrupt] == list(BAD)
    assert all(isinstance(error, CorruptRecordError) and error.reason for error in corrupt)


async def test_list_sessions_goes_on_past_unreadable_records_and_names_them(
    damaged: Damaged,
) -> None:
    async with damaged.open(page_size=3) as store:
        corrupt: list[CorruptRecordError] = []
        listed = await store.list_sessions(on_corrupt=corrupt.append)
    assert [s.id for s in listed] == GOOD
    assert [error.session_id for error in corrupt] == list(BAD)


async def test_iter_dumps_refuses_unreadable_records_unless_told_to_go_on(
    damaged: Damaged,
) -> None:
    async with damaged.open(page_size=2) as store:
        # Before: the dump of an undecodable payload was handed on, and an import refused it.
        with pytest.raises(CorruptRecordError, match="'b-bad'"):
            [d.record.id async for d in store.iter_dumps()]
        corrupt: list[CorruptRecordError] = []
        dumped = [d.record.id async for d in store.iter_dumps(on_corrupt=corrupt.append)]
    assert dumped == GOOD
    assert [error.session_id for error in corrupt] == list(BAD)


async def test_on_corrupt_stops_the_listing_by_raising(damaged: Damaged) -> None:
    class Enough(Exception):
        pass

    def stop(error: CorruptRecordError) -> None:
        raise Enough(error.session_id)

    seen: list[str] = []

    async def walk(store: SessionStore) -> None:
        async for session in store.iter_sessions(on_corrupt=stop):
            seen.append(session.id)

    async with damaged.open() as store:
        with pytest.raises(Enough, match="b-bad"):
            await walk(store)
    assert seen == ["a-good"]


async def test_export_store_goes_on_past_unreadable_records(damaged: Damaged) -> None:
    out = io.StringIO()
    corrupt: list[CorruptRecordError] = []
    ticks: list[int] = []
    async with damaged.open(page_size=2) as store:
        exported = await export_store(
            store, out, source=damaged.spec, progress=ticks.append, on_corrupt=corrupt.append
        )
    assert exported == len(GOOD)
    assert [error.session_id for error in corrupt] == list(BAD)
    assert sum(ticks) == len(GOOD) + len(BAD)  # a progress bar sized by count_sessions ends full
    lines = out.getvalue().splitlines(keepends=True)
    _, count = verify_export(lines, name="export")  # every payload in it decodes
    assert count == len(GOOD)
    assert [d.record.id for d in ExportReader(lines)] == GOOD


class _DamagedPageBackend(DictBackend):
    """A backend that cannot read one record's stored form, and puts its error in the page (as
    the session_page hookspec says) rather than raising it for the whole page."""

    @hookimpl
    async def session_page(  # type: ignore[override]  # a page may hold errors (hookspec)
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord | CorruptRecordError], str | None]:
        page, after = await super().session_page(cursor, limit, now_ms)
        return [
            CorruptRecordError(r.id, "the stored form is damaged") if r.id == "b" else r
            for r in page
        ], after


async def test_a_backend_reports_a_record_it_cannot_read_inside_the_page() -> None:
    backend = _DamagedPageBackend()

    def factory(spec: str, *, namespace: str) -> _DamagedPageBackend:
        return backend

    async with open_store(factory, page_size=2) as store:
        for session_id in "abc":
            await store.create_session(Session(id=session_id, transport=TransportType.HTTP))
        with pytest.raises(CorruptRecordError, match=r"'b'.*damaged"):
            await store.list_sessions()
        corrupt: list[CorruptRecordError] = []
        assert [s.id for s in await store.list_sessions(on_corrupt=corrupt.append)] == ["a", "c"]
        assert [(e.session_id, e.reason) for e in corrupt] == [("b", "the stored form is damaged")]


# -- the command ----------------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="sessionstore")


def _assert_names_the_unreadable_records(result: Result) -> list[str]:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    for session_id in BAD:
        assert any(f"{session_id!r}" in line and "skipped" in line for line in lines), lines
    last = _as_text(lines[-1])
    assert last.startswith("sessionstore: error: 3 stored records could not be read"), lines
    assert all(f"{session_id!r}" in last for session_id in BAD), last
    return lines


def _as_text(line: str) -> str:
    """A failure line as text: with --json it is ``{"error": {"kind", "message", "status"}}``."""
    if not line.startswith("{"):
        return line
    error = json.loads(line)["error"]
    return f"sessionstore: {error['kind']}: {error['message']}"


def test_ls_goes_on_past_unreadable_records_names_them_and_fails(damaged: Damaged) -> None:
    result = invoke("ls", "--store", damaged.spec)
    _assert_names_the_unreadable_records(result)
    rows = result.stdout.splitlines()
    assert [row.split()[0] for row in rows[1:]] == GOOD


def test_ls_json_names_the_unreadable_records_in_its_output(damaged: Damaged) -> None:
    result = invoke("ls", "--store", damaged.spec, "--json")
    _assert_names_the_unreadable_records(result)
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in objects if "id" in o] == GOOD
    corrupt = [o["corrupt"] for o in objects if "corrupt" in o]
    assert [c["id"] for c in corrupt] == list(BAD)
    assert all(c["reason"] for c in corrupt)


def test_ls_filters_and_limit_leave_unreadable_records_reported(damaged: Damaged) -> None:
    result = invoke("ls", "--store", damaged.spec, "--status", "closed", "--json")
    _assert_names_the_unreadable_records(result)
    assert [json.loads(line)["corrupt"]["id"] for line in result.stdout.splitlines()] == list(BAD)


def test_export_goes_on_past_unreadable_records_names_them_and_fails(
    damaged: Damaged, tmp_path: Path
) -> None:
    target = tmp_path / "backup.jsonl"
    result = invoke("export", str(target), "--store", damaged.spec)
    lines = _assert_names_the_unreadable_records(result)
    assert "exported 4 sessions" in result.stderr
    assert "backup.jsonl" in lines[-1]
    # The file holds every readable session, whole, and imports.
    _, count = verify_export(target.read_text().splitlines(keepends=True), name=str(target))
    assert count == len(GOOD)
    fresh = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = invoke("import", str(target), "--store", fresh, "-n", "default")
    assert restored.exit_code == 0, restored.output


def test_export_to_stdout_goes_on_too(damaged: Damaged) -> None:
    result = invoke("export", "--store", damaged.spec)
    _assert_names_the_unreadable_records(result)
    lines = result.stdout.splitlines(keepends=True)
    assert [d.record.id for d in ExportReader(lines)] == GOOD
