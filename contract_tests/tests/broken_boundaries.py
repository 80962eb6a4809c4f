"""Deliberately broken backends for the boundary tests (``sessionstore_contract.boundaries``).

Each wraps a real memory backend (see ``delegating.py``) and breaks one sentence of the contract
at an edge, the way a backend author plausibly would: a column one byte too short, a key that
normalizes or lower-cases, an id compared as a string, a batch or a page read in chunks, an
expired record one operation still sees, an id whose old life leaks into its new one. Typical
values pass through all of them unharmed; only the value at the edge shows the defect.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from delegating import Delegating, wrapping_factory

from sessionstore import (
    Event,
    EventNotFoundError,
    SessionDump,
    SessionNotFoundError,
    SessionRecord,
    hookimpl,
)
from sessionstore.records import parse_event_id
from sessionstore_memory import MemoryBackend

MEDIUMBLOB = 2**24 - 1
"""MySQL's MEDIUMBLOB holds 2**24 - 1 bytes: one byte less than ``MAX_RECORD_BYTES``."""


def _records(inner: MemoryBackend, now_ms: int) -> list[SessionRecord]:
    """Every record live at ``now_ms`` (0: every record), in the inner backend's order."""
    everything: list[SessionRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = inner.session_page(cursor, 1000, now_ms)
        everything.extend(page)
        if cursor is None:
            return everything


def _page_of(
    records: list[SessionRecord], limit: int
) -> tuple[Sequence[SessionRecord], str | None]:
    page = records[:limit]
    return page, (page[-1].id if len(records) > limit else None)


# -- sizes ------------------------------------------------------------------------------------


def _cut(record: SessionRecord) -> SessionRecord:
    return record._replace(payload=record.payload[:MEDIUMBLOB])


class PayloadCutAtMediumBlob(Delegating):
    """Keeps payloads in a MEDIUMBLOB: the largest payload the core accepts loses its last byte."""

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_create(_cut(record), now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(_cut(record), now_ms)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.inner.session_update_many([_cut(r) for r in records], now_ms)

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        return self.inner.session_load(dump._replace(record=_cut(dump.record)), retention, now_ms)


class EventDataCutAtMediumBlob(Delegating):
    """Keeps event data in a MEDIUMBLOB: the largest event the core accepts loses its last byte."""

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        cut = None if data is None else data[:MEDIUMBLOB]
        return self.inner.event_append(session_id, stream_id, cut, retention, now_ms)


class LoadTurnsEmptyEventsIntoPriming(Delegating):
    """Loads each event as ``data or None``: an empty event comes back as a priming event."""

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        streams = tuple((s, tuple(d or None for d in events)) for s, events in dump.streams)
        return self.inner.session_load(dump._replace(streams=streams), retention, now_ms)


class StreamIdsNormalized(Delegating):
    """Uses NFC-normalized stream ids as keys: "e" and a combining accent come back as "é"."""

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        normal = unicodedata.normalize("NFC", stream_id)
        return self.inner.event_append(session_id, normal, data, retention, now_ms)


class LastEventIdCutAt1024Bytes(Delegating):
    """Keeps last event ids in a column of 1024 bytes: 1024 ASCII characters fit, 1024 CJK
    characters (3072 bytes) are cut."""

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        cut = event_id.encode()[:1024].decode(errors="ignore")
        self.inner.last_event_id_set(session_id, cut, deadline_ms, now_ms)


_UNANCHORED = re.compile(r"\d+-\d+")


class UnanchoredEventIds(Delegating):
    """Parses event ids with a pattern that has no end anchor: an issued id followed by anything
    is taken for that id."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        match = _UNANCHORED.match(event_id)
        if match is None:
            raise EventNotFoundError(event_id)
        return self.inner.event_replay(match.group(0), session_id, now_ms)


def _as_double(record: SessionRecord) -> SessionRecord:
    return record._replace(version=int(float(record.version)))


class VersionsAsDoubles(Delegating):
    """Keeps versions as double-precision numbers (a JSON or Lua number): exact up to 2**53,
    rounded beyond, so a session at the highest versions comes back at another one."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(_as_double(record), now_ms)

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = _as_double(dump.record)
        return self.inner.session_load(dump._replace(record=record), retention, now_ms)


# -- batches ----------------------------------------------------------------------------------


class GetManyStopsAt1000(Delegating):
    """Reads a batch in one round trip of at most 1,000 keys and forgets the rest."""

    @hookimpl
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        return self.inner.session_get_many(session_ids[:1000], now_ms)


class BatchInChunks(Delegating):
    """Writes a batch in chunks of 1,000, each all or nothing: a stale or missing session in a
    later chunk leaves the earlier chunks written."""

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        for start in range(0, len(records), 1000):
            self.inner.session_update_many(records[start : start + 1000], now_ms)


# -- counters that gain a digit ---------------------------------------------------------------


def _stream_events(inner: MemoryBackend, event_id: str) -> list[tuple[str, bytes | None]]:
    """``(id, data)`` of every retained event of ``event_id``'s stream (a valid id)."""
    parsed = parse_event_id(event_id)
    assert parsed is not None
    handle = parsed[0]
    stream = inner._space.streams[handle]
    return [(f"{handle}-{seq}", data) for seq, data in stream.events]


class EventIdsOrderedAsStrings(Delegating):
    """Keeps each stream's events sorted by id as a string and replays those greater than the
    cursor: "1-10" sorts before "1-9"."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        stream_id, _ = self.inner.event_replay(event_id, session_id, now_ms)  # checks the id
        later = sorted(e for e in _stream_events(self.inner, event_id) if e[0] > event_id)
        return stream_id, [Event(i, stream_id, data) for i, data in later]


class EvictionJudgedAsStrings(Delegating):
    """Decides whether a cursor fell out of retention by comparing it, as a string, with the
    oldest kept id: once "1-9" was dropped, "1-9" > "1-10" looks retained (and once "1-98" is
    the oldest, "1-100" looks dropped)."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        try:
            answer = self.inner.event_replay(event_id, session_id, now_ms)
        except EventNotFoundError as exc:
            if not exc.evicted:
                raise
            answer = None
        kept = _stream_events(self.inner, event_id)
        if event_id < kept[0][0]:
            raise EventNotFoundError(event_id, evicted=True)
        if answer is not None:
            return answer
        stream_id = self.inner._space.streams[int(event_id.partition("-")[0])].stream_id
        return stream_id, [Event(i, stream_id, data) for i, data in kept]  # all of them


# -- ids --------------------------------------------------------------------------------------


class CaseInsensitivePaging(Delegating):
    """Pages in case-insensitive order and compares the cursor case-insensitively too: of ids
    that differ only in case, those after a page's last one are skipped."""

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        records = sorted(_records(self.inner, now_ms), key=lambda r: r.id.lower())
        after = [r for r in records if cursor is None or r.id.lower() > cursor.lower()]
        return _page_of(after, limit)


class CollatedPaging(Delegating):
    """Sorts pages with a case-insensitive collation but compares the cursor byte by byte (an
    ``ORDER BY`` and a ``WHERE id > ?`` that disagree): "B" sorts after "a" but is less."""

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        records = sorted(_records(self.inner, now_ms), key=lambda r: r.id.lower())
        return _page_of([r for r in records if cursor is None or r.id > cursor], limit)


class CursorCutAt200(Delegating):
    """Keeps the paging cursor in a 200-character token: after a longer id the listing starts
    over from its first 200 characters."""

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        page, after = self.inner.session_page(cursor, limit, now_ms)
        return page, (None if after is None else after[:200])


class CaseInsensitiveLastEventIds(Delegating):
    """Keeps last event ids in a table with a case-insensitive key: "abc" and "ABC" share one
    row, so setting either sets both and deleting either deletes both."""

    def _variants(self, session_id: str) -> list[str]:
        return [i for i in self.inner._space.records if i.lower() == session_id.lower()]

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        self.inner.last_event_id_set(session_id, event_id, deadline_ms, now_ms)
        with self.inner._lock:
            for variant in self._variants(session_id):
                self.inner._space.last_event_ids[variant] = event_id

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        with self.inner._lock:
            for variant in self._variants(session_id):
                self.inner._space.last_event_ids.pop(variant, None)
        return self.inner.session_delete(session_id, now_ms)


class CaseInsensitiveDelete(Delegating):
    """Deletes with a case-insensitive comparison: deleting "ABC" deletes "abc" too."""

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        existed = self.inner.session_delete(session_id, now_ms)
        for record in _records(self.inner, 0):
            if record.id.lower() == session_id.lower():
                self.inner.session_delete(record.id, now_ms)
        return existed


_STREAM_OWNERS: dict[int, dict[str, tuple[str, str]]] = {}
"""Per memory namespace (the id of its space): joined stream key -> (session, stream) owning it."""


class JoinedStreamKeys(Delegating):
    """Keys streams by ``f"{session_id}:{stream_id}"``: session "a:b" stream "c" and session "a"
    stream "b:c" are one stream (the first live session to append owns it)."""

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        if self.inner.session_get(session_id, now_ms) is None:
            raise SessionNotFoundError(session_id)
        owners = _STREAM_OWNERS.setdefault(id(self.inner._space), {})
        key = f"{session_id}:{stream_id}"
        owner = owners.get(key)
        if owner is None or self.inner.session_get(owner[0], now_ms) is None:
            owner = owners[key] = (session_id, stream_id)
        return self.inner.event_append(*owner, data, retention, now_ms)


# -- expired, deleted, purged and cleared ids -------------------------------------------------


class ExpiredBatchUpdate(Delegating):
    """Checks deadlines in single updates but not in batches: a batch revives expired sessions."""

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.inner.session_update_many(records, 0)


class ExpiredDump(Delegating):
    """Dumps a session whether or not its deadline passed."""

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        return self.inner.session_dump(session_id, 0)


class LoadKeepsExpired(Delegating):
    """Loads only where no record has the id, live or expired: an expired, unpurged session
    blocks the load."""

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        if self.inner.session_get(dump.record.id, 0) is not None:
            return False
        return self.inner.session_load(dump, retention, now_ms)


class ClearReusesEventIds(Delegating):
    """Resets the stream handle counter on clear: event ids issued before are issued again."""

    @hookimpl
    async def store_clear(self) -> None:
        with self.inner._lock:
            self.inner._space.records.clear()
            self.inner._space.last_event_ids.clear()
            self.inner._space.streams.clear()
            self.inner._space.stream_handles.clear()
            self.inner._space.session_streams.clear()
            self.inner._space.next_handle = 1


_ORPHANED_LAST_IDS: dict[tuple[int, str], str] = {}
"""(the id of a memory namespace's space, session id) -> the last event id its delete left."""


class DeleteKeepsLastEventId(Delegating):
    """Forgets the last event id on delete (expiry and purge drop it): the row stays, and the
    next session created with the id finds it."""

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        space = self.inner._space
        last = space.last_event_ids.get(session_id)
        existed = self.inner.session_delete(session_id, now_ms)
        if last is not None:
            _ORPHANED_LAST_IDS[id(space), session_id] = last
        return existed

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_create(record, now_ms)
        orphan = _ORPHANED_LAST_IDS.pop((id(self.inner._space), record.id), None)
        if orphan is not None:
            with self.inner._lock:
                self.inner._space.last_event_ids[record.id] = orphan

    @hookimpl
    async def store_clear(self) -> None:
        self.inner.store_clear()
        space = id(self.inner._space)
        for key in [k for k in _ORPHANED_LAST_IDS if k[0] == space]:
            del _ORPHANED_LAST_IDS[key]


class PurgeKeepsEvents(Delegating):
    """Purges expired records alone (``DELETE FROM sessions`` without the cascade): an id purged
    and created again inherits the old last event id and streams."""

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        with self.inner._lock:
            records = self.inner._space.records
            expired = [
                i
                for i, r in records.items()
                if r.deadline_ms is not None and r.deadline_ms <= now_ms
            ]
            for session_id in expired:
                del records[session_id]
        return len(expired)


payload_cut_at_mediumblob = wrapping_factory(PayloadCutAtMediumBlob)
event_data_cut_at_mediumblob = wrapping_factory(EventDataCutAtMediumBlob)
load_turns_empty_events_into_priming = wrapping_factory(LoadTurnsEmptyEventsIntoPriming)
stream_ids_normalized = wrapping_factory(StreamIdsNormalized)
last_event_id_cut_at_1024_bytes = wrapping_factory(LastEventIdCutAt1024Bytes)
unanchored_event_ids = wrapping_factory(UnanchoredEventIds)
versions_as_doubles = wrapping_factory(VersionsAsDoubles)
get_many_stops_at_1000 = wrapping_factory(GetManyStopsAt1000)
batch_in_chunks = wrapping_factory(BatchInChunks)
event_ids_ordered_as_strings = wrapping_factory(EventIdsOrderedAsStrings)
eviction_judged_as_strings = wrapping_factory(EvictionJudgedAsStrings)
case_insensitive_paging = wrapping_factory(CaseInsensitivePaging)
collated_paging = wrapping_factory(CollatedPaging)
cursor_cut_at_200 = wrapping_factory(CursorCutAt200)
case_insensitive_last_event_ids = wrapping_factory(CaseInsensitiveLastEventIds)
case_insensitive_delete = wrapping_factory(CaseInsensitiveDelete)
joined_stream_keys = wrapping_factory(JoinedStreamKeys)
expired_batch_update = wrapping_factory(ExpiredBatchUpdate)
expired_dump = wrapping_factory(ExpiredDump)
load_keeps_expired = wrapping_factory(LoadKeepsExpired)
clear_reuses_event_ids = wrapping_factory(ClearReusesEventIds)
delete_keeps_last_event_id = wrapping_factory(DeleteKeepsLastEventId)
purge_keeps_events = wrapping_factory(PurgeKeepsEvents)

# broken backend -> contract tests that must fail on it
EXPECTED_FAILURES: dict[str, set[str]] = {
    "payload_cut_at_mediumblob": {"test_payload_at_the_size_limit_roundtrips"},
    "event_data_cut_at_mediumblob": {"test_event_data_at_the_size_limit_roundtrips"},
    "load_turns_empty_events_into_priming": {"test_event_data_at_the_size_limit_roundtrips"},
    "stream_ids_normalized": {"test_ids_at_the_length_limit"},
    "last_event_id_cut_at_1024_bytes": {"test_ids_at_the_length_limit"},
    "unanchored_event_ids": {"test_ids_at_the_length_limit"},
    "versions_as_doubles": {"test_versions_at_their_limit"},
    "get_many_stops_at_1000": {"test_batch_get_at_the_size_limit"},
    "batch_in_chunks": {"test_batch_update_at_the_size_limit"},
    "event_ids_ordered_as_strings": {"test_replay_across_counter_digit_boundaries"},
    "eviction_judged_as_strings": {"test_eviction_across_counter_digit_boundaries"},
    "case_insensitive_paging": {"test_listing_pages_through_ids_in_byte_order"},
    "collated_paging": {"test_listing_pages_through_ids_in_byte_order"},
    "cursor_cut_at_200": {"test_listing_pages_through_ids_in_byte_order"},
    "case_insensitive_last_event_ids": {"test_ids_that_differ_only_in_case_are_distinct"},
    "case_insensitive_delete": {"test_ids_that_differ_only_in_case_are_distinct"},
    "joined_stream_keys": {"test_separator_characters_never_join_keys"},
    "expired_batch_update": {"test_every_operation_on_an_expired_unpurged_session"},
    "expired_dump": {"test_every_operation_on_an_expired_unpurged_session"},
    "load_keeps_expired": {"test_every_operation_on_an_expired_unpurged_session"},
    "clear_reuses_event_ids": {"test_id_created_again_after_delete_or_clear_starts_clean"},
    "delete_keeps_last_event_id": {"test_id_created_again_after_delete_or_clear_starts_clean"},
    "purge_keeps_events": {"test_id_created_again_after_purge_starts_clean"},
}
