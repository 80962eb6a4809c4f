"""Broken backends that are right one operation at a time and wrong only when operations race.

Each checks something, awaits (as a backend awaiting its driver would), then acts on what it
checked: the classic check-then-act race. Every sequential test passes on them; only the
concurrent histories of ``concurrency.py`` show an order no client could have observed. They reach
into the memory backend's private structures to act without its lock, as the bug would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from delegating import Delegating, wrapping_factory

from sessionstore import (
    ConflictError,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    hookimpl,
)
from sessionstore_memory import MemoryBackend


async def _driver_round_trip() -> None:
    await asyncio.sleep(0)


class RacyBatchUpdate(Delegating):
    """Checks the batch's versions, then writes it over whatever landed meanwhile."""

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        current = self.inner.session_get_many([r.id for r in records], now_ms)
        missing = [r.id for r in records if r.id not in current]
        if missing:
            raise SessionNotFoundError(*missing)
        stale = [
            r.id
            for r in records
            if current[r.id].version != r.version - 1
            or (r.incarnation != 0 and r.incarnation != current[r.id].incarnation)
        ]
        if stale:
            raise ConflictError(*stale)
        await _driver_round_trip()
        for record in records:
            self.inner._space.records[record.id] = record._replace(
                incarnation=current[record.id].incarnation
            )


class RacyCreate(Delegating):
    """Checks that no live session has the id, then writes the new one over whatever was
    created meanwhile: two racing creates both succeed."""

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        if self.inner.session_get(record.id, now_ms) is not None:
            raise SessionExistsError(record.id)
        await _driver_round_trip()
        self.inner.session_delete(record.id, now_ms)
        self.inner.session_create(record, now_ms)


class CachedReadsPerHandle(Delegating):
    """Each handle keeps the records it read or wrote and serves reads from them: its own writes
    are seen at once, another handle's only after this handle's next conflict."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.cache: dict[str, SessionRecord] = {}

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        cached = self.cache.get(session_id)
        if cached is not None and self.inner.session_get(session_id, now_ms) is not None:
            return cached
        record = self.inner.session_get(session_id, now_ms)
        if record is not None:
            self.cache[session_id] = record
        return record

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        try:
            self.inner.session_update(record, now_ms)
        except Exception:
            self.cache.pop(record.id, None)
            raise
        self.cache[record.id] = self.inner.session_get(record.id, now_ms) or record


class RacyLastEventId(Delegating):
    """Stores a last event id by rewriting the record it read before (to move the deadline),
    undoing an update that landed in between."""

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        record = self.inner.session_get(session_id, now_ms)
        if record is None:
            raise SessionNotFoundError(session_id)
        await _driver_round_trip()
        self.inner.last_event_id_set(session_id, event_id, deadline_ms, now_ms)
        if self.inner._space.records.get(session_id) is not None:
            self.inner._space.records[session_id] = record._replace(deadline_ms=deadline_ms)


class RacyAppend(Delegating):
    """Reads the stream's next sequence number, then appends under it: two racing appends get the
    same id."""

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        if self.inner.session_get(session_id, now_ms) is None:
            raise SessionNotFoundError(session_id)
        handle, stream = self.inner._stream(session_id, stream_id)
        sequence = stream.next_seq
        await _driver_round_trip()
        stream.next_seq = sequence + 1
        stream.events.append((sequence, data))
        while len(stream.events) > retention:
            stream.events.popleft()
        return f"{handle}-{sequence}"


class TornDump(Delegating):
    """Reads the record, then the last event id and events in a second round trip."""

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        record = self.inner.session_get(session_id, now_ms)
        if record is None:
            return None
        await _driver_round_trip()
        rest = self.inner.session_dump(session_id, now_ms)
        if rest is None:
            return None
        return rest._replace(record=record)


class RacyLoad(Delegating):
    """Checks that no live session has the id, then writes the dump over whatever was created
    meanwhile."""

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        if self.inner.session_get(dump.record.id, now_ms) is not None:
            return False
        await _driver_round_trip()
        self.inner.session_delete(dump.record.id, now_ms)
        return self.inner.session_load(dump, retention, now_ms)


class ResurrectingUpdate(Delegating):
    """Compares versions, then writes: an update racing a delete brings the session back after
    the delete was acknowledged, and one racing a re-create lands on the successor."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        current = self.inner.session_get(record.id, now_ms)
        if current is None:
            raise SessionNotFoundError(record.id)
        self.inner.session_update(record, now_ms)  # raises ConflictError when stale
        await _driver_round_trip()
        self.inner._space.records[record.id] = record._replace(incarnation=current.incarnation)


racy_batch_update = wrapping_factory(RacyBatchUpdate)
racy_create = wrapping_factory(RacyCreate)
cached_reads_per_handle = wrapping_factory(CachedReadsPerHandle)
racy_last_event_id = wrapping_factory(RacyLastEventId)
racy_append = wrapping_factory(RacyAppend)
torn_dump = wrapping_factory(TornDump)
racy_load = wrapping_factory(RacyLoad)
resurrecting_update = wrapping_factory(ResurrectingUpdate)

EXPECTED_FAILURES: dict[str, set[str]] = {
    "racy_batch_update": {"test_race_batch_batch", "test_race_batch_update"},
    "racy_create": {"test_race_create_create"},
    "cached_reads_per_handle": {"test_race_update_update"},
    "racy_last_event_id": {"test_race_last_event_id_update"},
    "racy_append": {"test_race_append_append"},
    "torn_dump": {"test_race_dump_load"},
    "racy_load": {"test_race_dump_load"},
    "resurrecting_update": {"test_race_delete_update"},
}
