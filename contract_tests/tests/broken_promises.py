"""Deliberately broken backends for the tests of ``promises.py``: each breaks one sentence.

Each is a real memory backend (see ``delegating.py``) with one hook changed the way a third-party
author plausibly gets it wrong; ``EXPECTED_FAILURES`` names the contract test that must catch it.
Where the defect lives in what the backend stores (a last event id left behind, a deadline moved),
the wrapper reaches into the memory backend's own dictionaries, which stand in for the broken
backend's storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack
from delegating import Delegating, wrapping_factory

from sessionstore import (
    ConflictError,
    Event,
    EventNotFoundError,
    SessionDump,
    SessionNotFoundError,
    SessionRecord,
    hookimpl,
)
from sessionstore_memory import MemoryBackend, create_backend


def _space(inner: MemoryBackend) -> Any:
    """The memory backend's data of its namespace (records, last event ids, streams)."""
    return inner._space


def _drop_streams(inner: MemoryBackend, session_id: str) -> None:
    space = _space(inner)
    for key in space.session_streams.pop(session_id, ()):
        del space.streams[space.stream_handles.pop(key)]


def _set_deadline(inner: MemoryBackend, session_id: str, deadline_ms: int | None) -> None:
    record = _space(inner).records[session_id]
    _space(inner).records[session_id] = record._replace(deadline_ms=deadline_ms)


# -- refused writes, reads and appends ------------------------------------------------------------


class CreateRefusedDropsEvents(Delegating):
    """Clears the id's last event id and events before it checks whether a live session has the
    id ("an expired predecessor's events never carry over"), so a refused create wipes them."""

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        _space(self.inner).last_event_ids.pop(record.id, None)
        _drop_streams(self.inner, record.id)
        self.inner.session_create(record, now_ms)


class ConflictMovesDeadline(Delegating):
    """Moves the deadline before it compares versions (an expiry set ahead of the check), so a
    refused update keeps the session alive."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        if self.inner.session_get(record.id, now_ms) is not None:
            _set_deadline(self.inner, record.id, record.deadline_ms)
        self.inner.session_update(record, now_ms)


class _Lifetimes(Delegating):
    """Remembers each session's lifetime (deadline minus the time of the write that set it)."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.lifetimes: dict[str, int] = {}
        self.owners: dict[str, str] = {}

    def remember(self, session_id: str, deadline_ms: int | None, now_ms: int) -> None:
        if deadline_ms is not None:
            self.lifetimes[session_id] = deadline_ms - now_ms

    def keep_alive(self, session_id: str, now_ms: int) -> None:
        lifetime = self.lifetimes.get(session_id)
        if lifetime is not None and self.inner.session_get(session_id, now_ms) is not None:
            _set_deadline(self.inner, session_id, now_ms + lifetime)

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_create(record, now_ms)
        self.remember(record.id, record.deadline_ms, now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(record, now_ms)
        self.remember(record.id, record.deadline_ms, now_ms)

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        event_id = self.inner.event_append(session_id, stream_id, data, retention, now_ms)
        self.owners[event_id] = session_id
        return event_id


class ReplayKeepsSessionAlive(_Lifetimes):
    """Treats a replay (a client resuming its stream) as activity and moves the deadline."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        replayed = self.inner.event_replay(event_id, session_id, now_ms)
        self.keep_alive(self.owners.get(event_id, ""), now_ms)
        return replayed


class AppendKeepsSessionAlive(_Lifetimes):
    """Treats an appended event as activity and moves the deadline."""

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        event_id = self.inner.event_append(session_id, stream_id, data, retention, now_ms)
        self.keep_alive(session_id, now_ms)
        return event_id


# -- compare-and-set ------------------------------------------------------------------------------


class UpdateDropsEvents(Delegating):
    """Rewrites the whole session on update from the record alone: the event log is lost."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(record, now_ms)
        _drop_streams(self.inner, record.id)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.inner.session_update_many(records, now_ms)
        for record in records:
            _drop_streams(self.inner, record.id)


class StoresGivenIncarnation(Delegating):
    """Compares incarnations as it should, but stores the record's own incarnation, so a session
    updated by hand (incarnation 0) loses the incarnation of its creation."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(record, now_ms)
        _space(self.inner).records[record.id] = record

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.inner.session_update_many(records, now_ms)
        for record in records:
            _space(self.inner).records[record.id] = record


class ExpiredStaleIsConflict(Delegating):
    """Compares the version with whatever row has the id, expired or not, before it checks that
    the session is live: a stale write to an expired session gets ConflictError."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        stored = self.inner.session_get(record.id, 0)  # now_ms 0: every deadline lies ahead
        if stored is not None and stored.version != record.version - 1:
            raise ConflictError(record.id)
        self.inner.session_update(record, now_ms)


class BatchNamesOneMissingId(Delegating):
    """Stops at the first missing id of a batch and names only that one."""

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        try:
            self.inner.session_update_many(records, now_ms)
        except SessionNotFoundError as exc:
            raise SessionNotFoundError(exc.session_ids[0]) from None


class BatchKeepsDeadlines(Delegating):
    """Writes each record of a batch but keeps the deadlines the sessions had."""

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        kept = []
        for record in records:
            stored = self.inner.session_get(record.id, now_ms)
            kept.append(
                record if stored is None else record._replace(deadline_ms=stored.deadline_ms)
            )
        self.inner.session_update_many(kept, now_ms)


class KnownFieldsOnly(Delegating):
    """Stores the fields it knows, one column each, and builds the payload again from them: the
    fields of a newer release are dropped."""

    KNOWN = frozenset(
        (
            "id",
            "transport",
            "response_mode",
            "upstream_session_id",
            "status",
            "created_at",
            "last_activity",
            "metadata",
        )
    )

    def columns(self, record: SessionRecord) -> SessionRecord:
        envelope, fields = msgpack.unpackb(record.payload)
        known = {k: v for k, v in fields.items() if k in self.KNOWN}
        return record._replace(payload=msgpack.packb([envelope, known]))

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_create(self.columns(record), now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(self.columns(record), now_ms)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.inner.session_update_many([self.columns(r) for r in records], now_ms)

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        return self.inner.session_load(
            dump._replace(record=self.columns(dump.record)), retention, now_ms
        )


# -- delete, purge, clear -------------------------------------------------------------------------


class DeleteCountsExpired(Delegating):
    """Returns whether a row was deleted, live or expired."""

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        existed = self.inner.session_get(session_id, 0) is not None
        self.inner.session_delete(session_id, now_ms)
        return existed


class DeleteKeepsLastEventId(Delegating):
    """Deletes the session and its events but leaves its last event id behind."""

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        last = _space(self.inner).last_event_ids.get(session_id)
        deleted = self.inner.session_delete(session_id, now_ms)
        if last is not None:
            _space(self.inner).last_event_ids[session_id] = last
        return deleted


class PurgeKeepsLastEventIds(Delegating):
    """Purges expired sessions' records only: their last event ids and events stay behind."""

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        records = _space(self.inner).records
        expired = [
            i for i, r in records.items() if r.deadline_ms is not None and r.deadline_ms <= now_ms
        ]
        for session_id in expired:
            del records[session_id]
        return len(expired)


class PurgeByWholeSeconds(Delegating):
    """Purges with the clock rounded up to the second (expiry kept in seconds, as EXPIRE does),
    removing sessions that have up to a second left."""

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        return self.inner.session_purge_expired(-(-now_ms // 1000) * 1000)


class ClearLeavesEventLogs(Delegating):
    """Clears the namespace's sessions but not their last event ids and events."""

    @hookimpl
    async def store_clear(self) -> None:
        _space(self.inner).records.clear()


# -- paging, event ids, replays -------------------------------------------------------------------


class PagesIgnoreLimit(Delegating):
    """Returns every session in one page, whatever ``limit`` asks (no bounded memory)."""

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        return self.inner.session_page(cursor, 2**31, now_ms)


class HandlesRestartAfterClear(Delegating):
    """Keeps its event-id counter in the namespace and clears it with the namespace, so the
    cleared namespace issues its old event ids again."""

    @hookimpl
    async def store_clear(self) -> None:
        self.inner.store_clear()
        _space(self.inner).next_handle = 1


class EvictionCheckedFirst(Delegating):
    """Decides "evicted" from the stream's retention before it checks whose event it is and
    whether its session lives."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.streams: dict[str, list[str]] = {}  # stream handle -> its event ids, oldest first
        self.retention = 0

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        event_id = self.inner.event_append(session_id, stream_id, data, retention, now_ms)
        self.streams.setdefault(event_id.partition("-")[0], []).append(event_id)
        self.retention = retention
        return event_id

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        ids = self.streams.get(event_id.partition("-")[0], [])
        if event_id in ids[: -self.retention]:
            raise EventNotFoundError(event_id, evicted=True)
        return self.inner.event_replay(event_id, session_id, now_ms)


class DumpSortsStreams(Delegating):
    """Lists a dump's streams by stream id (an ORDER BY on the wrong column)."""

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        dump = self.inner.session_dump(session_id, now_ms)
        if dump is None:
            return None
        return dump._replace(streams=tuple(sorted(dump.streams, key=lambda s: s[0])))


class LoadKeepsOldestEvents(Delegating):
    """Loads at most ``retention`` events per stream, but the oldest instead of the newest."""

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        streams = tuple((stream_id, events[:retention]) for stream_id, events in dump.streams)
        return self.inner.session_load(dump._replace(streams=streams), retention, now_ms)


class LoadMergesIntoExpired(Delegating):
    """Loads over an expired session by replacing its record only: the expired one's last event
    id and events are merged into the loaded session."""

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        session_id = dump.record.id
        if self.inner.session_get(session_id, now_ms) is None:
            _space(self.inner).records.pop(session_id, None)
        return self.inner.session_load(dump, retention, now_ms)


class SilentlyMissing(Delegating):
    """Declares a capability missing without saying why: its tests are skipped in silence."""

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        return {"atomic_batch_update": ""}


# -- handles and namespaces -----------------------------------------------------------------------


class ReadCachePerHandle(Delegating):
    """Caches what each handle read, dropping an entry when this handle writes that session: a
    write through another handle is not seen until then."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.cache: dict[str, SessionRecord | None] = {}

    def written(self, *session_ids: str) -> None:
        for session_id in session_ids or list(self.cache):
            self.cache.pop(session_id, None)

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        if session_id not in self.cache:
            self.cache[session_id] = self.inner.session_get(session_id, now_ms)
        record = self.cache[session_id]
        if record is not None and record.deadline_ms is not None and record.deadline_ms <= now_ms:
            return None
        return record

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.written(record.id)
        self.inner.session_create(record, now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.written(record.id)
        self.inner.session_update(record, now_ms)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.written(*(r.id for r in records))
        self.inner.session_update_many(records, now_ms)

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        self.written(session_id)
        return self.inner.session_delete(session_id, now_ms)

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        self.written(session_id)
        self.inner.last_event_id_set(session_id, event_id, deadline_ms, now_ms)

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        self.written(dump.record.id)
        return self.inner.session_load(dump, retention, now_ms)

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        self.written()
        return self.inner.session_purge_expired(now_ms)

    @hookimpl
    async def store_clear(self) -> None:
        self.written()
        self.inner.store_clear()


class CountExpiredOffByOne(Delegating):
    """Offers the optional ``session_count_expired`` hook but counts one too many (a ``<`` where
    purge has ``<=``, or the count of an index with a sentinel entry): the dry run promises a
    purge it does not deliver."""

    @hookimpl
    async def session_count_expired(self, now_ms: int) -> int:
        return self.inner.session_count_expired(now_ms) + 1


_NAMESPACES: dict[str, dict[str, MemoryBackend]] = {}
"""Store name -> namespace -> its memory backend: what a backend forgetting the namespace in a
query reaches."""


class _EveryNamespace(Delegating):
    def __init__(self, inner: MemoryBackend, others: dict[str, MemoryBackend]) -> None:
        super().__init__(inner)
        self.others = others


class PurgeEveryNamespace(_EveryNamespace):
    """Purges expired sessions of every namespace (a DELETE without its namespace condition)."""

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        return sum(b.session_purge_expired(now_ms) for b in self.others.values())


class ReplaySearchesEveryNamespace(_EveryNamespace):
    """Looks an event id up in every namespace when its own has no such event and no session
    narrows the search (event ids unique in the storage, the namespace condition forgotten)."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        try:
            return self.inner.event_replay(event_id, session_id, now_ms)
        except EventNotFoundError as exc:
            if session_id is not None or exc.evicted:
                raise
            for backend in self.others.values():
                if backend is not self.inner:
                    try:
                        return backend.event_replay(event_id, None, now_ms)
                    except EventNotFoundError:
                        continue
            raise


def _every_namespace(cls: type[_EveryNamespace]) -> Callable[..., _EveryNamespace]:
    def factory(spec: str, *, namespace: str) -> _EveryNamespace:
        name = f"memory://teeth-{cls.__name__}"
        others = _NAMESPACES.setdefault(name, {})
        inner = others.setdefault(namespace, create_backend(name, namespace=namespace))
        return cls(inner, others)

    return factory


create_refused_drops_events = wrapping_factory(CreateRefusedDropsEvents)
conflict_moves_deadline = wrapping_factory(ConflictMovesDeadline)
replay_keeps_session_alive = wrapping_factory(ReplayKeepsSessionAlive)
append_keeps_session_alive = wrapping_factory(AppendKeepsSessionAlive)
update_drops_events = wrapping_factory(UpdateDropsEvents)
stores_given_incarnation = wrapping_factory(StoresGivenIncarnation)
expired_stale_is_conflict = wrapping_factory(ExpiredStaleIsConflict)
batch_names_one_missing_id = wrapping_factory(BatchNamesOneMissingId)
batch_keeps_deadlines = wrapping_factory(BatchKeepsDeadlines)
known_fields_only = wrapping_factory(KnownFieldsOnly)
delete_counts_expired = wrapping_factory(DeleteCountsExpired)
delete_keeps_last_event_id = wrapping_factory(DeleteKeepsLastEventId)
purge_keeps_last_event_ids = wrapping_factory(PurgeKeepsLastEventIds)
purge_by_whole_seconds = wrapping_factory(PurgeByWholeSeconds)
clear_leaves_event_logs = wrapping_factory(ClearLeavesEventLogs)
pages_ignore_limit = wrapping_factory(PagesIgnoreLimit)
handles_restart_after_clear = wrapping_factory(HandlesRestartAfterClear)
eviction_checked_first = wrapping_factory(EvictionCheckedFirst)
dump_sorts_streams = wrapping_factory(DumpSortsStreams)
load_keeps_oldest_events = wrapping_factory(LoadKeepsOldestEvents)
load_merges_into_expired = wrapping_factory(LoadMergesIntoExpired)
silently_missing = wrapping_factory(SilentlyMissing)
read_cache_per_handle = wrapping_factory(ReadCachePerHandle)
count_expired_off_by_one = wrapping_factory(CountExpiredOffByOne)
purge_every_namespace = _every_namespace(PurgeEveryNamespace)
replay_searches_every_namespace = _every_namespace(ReplaySearchesEveryNamespace)

# broken backend -> contract tests that must fail on it
EXPECTED_FAILURES: dict[str, set[str]] = {
    "create_refused_drops_events": {"test_a_refused_create_changes_nothing"},
    "conflict_moves_deadline": {"test_refused_writes_change_nothing"},
    "replay_keeps_session_alive": {"test_reads_never_change_a_session"},
    "append_keeps_session_alive": {"test_an_append_moves_no_deadline"},
    "update_drops_events": {"test_an_update_leaves_the_last_event_id_and_events_alone"},
    "stores_given_incarnation": {"test_an_update_keeps_the_stored_incarnation"},
    "expired_stale_is_conflict": {"test_not_found_comes_before_conflict_and_names_every_id"},
    "batch_names_one_missing_id": {"test_not_found_comes_before_conflict_and_names_every_id"},
    "batch_keeps_deadlines": {"test_a_batch_update_moves_every_deadline"},
    "known_fields_only": {"test_unknown_fields_survive_a_read_modify_write"},
    "delete_counts_expired": {"test_delete_of_an_expired_session_returns_false"},
    "delete_keeps_last_event_id": {"test_delete_removes_the_last_event_id_and_events"},
    "purge_keeps_last_event_ids": {"test_purge_removes_exactly_the_expired_with_their_data"},
    "purge_by_whole_seconds": {"test_purge_removes_exactly_the_expired_with_their_data"},
    "clear_leaves_event_logs": {"test_clear_removes_everything_of_its_namespace_and_nothing_else"},
    "pages_ignore_limit": {"test_pages_hold_at_most_limit_records_and_end_with_none"},
    "handles_restart_after_clear": {"test_event_ids_are_never_issued_twice_in_a_namespace"},
    "eviction_checked_first": {"test_an_evicted_cursor_is_reported_only_to_its_own_live_session"},
    "dump_sorts_streams": {"test_dump_lists_streams_in_creation_order_with_their_retained_events"},
    "load_keeps_oldest_events": {"test_load_keeps_the_newest_events_of_each_stream"},
    "load_merges_into_expired": {"test_load_replaces_an_expired_session_whole"},
    "silently_missing": {"test_declared_capabilities_come_with_reasons"},
    "read_cache_per_handle": {"test_a_read_through_one_handle_sees_every_write_of_another"},
    "count_expired_off_by_one": {"test_count_expired_is_what_purge_then_removes"},
    "purge_every_namespace": {"test_purge_stays_within_its_namespace"},
    "replay_searches_every_namespace": {"test_replays_never_reach_another_namespace"},
}
