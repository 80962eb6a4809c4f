"""Deliberately broken backends: each keeps every guarantee but one.

Each factory wraps a real memory backend (a shared one, so handles and namespaces behave as on a
server, see ``delegating.py``) and breaks exactly one thing. ``faithful`` breaks nothing: it
shows that the wrapping itself passes the contract, so every failure of the others comes from its
defect. ``EXPECTED_FAILURES`` of each ``broken_*.py`` module names, per factory, the contract tests
that must fail on it; ``test_teeth.py`` runs them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgpack
from delegating import Delegating, wrapping_factory

from sessionstore import (
    ConflictError,
    Event,
    EventNotFoundError,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    hookimpl,
)
from sessionstore_memory import MemoryBackend, create_backend


class LostUpdate(Delegating):
    """Writes an update whatever version it was read at."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        current = self.inner.session_get(record.id, now_ms)
        if current is None:
            raise SessionNotFoundError(record.id)
        self.inner.session_update(record._replace(version=current.version + 1), now_ms)


class IgnoresIncarnation(Delegating):
    """Compares versions only, so a writer of a deleted session overwrites its successor."""

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(record._replace(incarnation=0), now_ms)


class NonAtomicBatch(Delegating):
    """Writes a batch one session at a time, keeping the writes that came before a conflict."""

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        stale = []
        for record in records:
            try:
                self.inner.session_update(record, now_ms)
            except ConflictError:
                stale.append(record.id)
        if stale:
            raise ConflictError(*stale)


def _without_upstream(record: SessionRecord) -> SessionRecord:
    version, fields = msgpack.unpackb(record.payload)
    fields.pop("upstream_session_id", None)
    return record._replace(payload=msgpack.packb([version, fields]))


class DroppedField(Delegating):
    """Loses ``upstream_session_id`` on every write."""

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_create(_without_upstream(record), now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(_without_upstream(record), now_ms)


class ExpiryIgnored(Delegating):
    """Reads as if no deadline had ever passed."""

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        return self.inner.session_get(session_id, 0)

    @hookimpl
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        return self.inner.session_get_many(session_ids, 0)

    @hookimpl
    async def session_count(self, now_ms: int) -> int:
        return self.inner.session_count(0)

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        return self.inner.session_page(cursor, limit, 0)


class ClobbersLastEventId(Delegating):
    """Keeps the last event id in the session record, so an update written from an older read
    puts back the old value (here: none)."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.last_ids: dict[str, str] = {}

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(record, now_ms)
        self.last_ids.pop(record.id, None)

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        self.inner.last_event_id_set(session_id, event_id, deadline_ms, now_ms)
        self.last_ids[session_id] = event_id

    @hookimpl
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        self.inner.last_event_id_get(session_id, now_ms)
        return self.last_ids.get(session_id)


class ReplayCrossesStreams(Delegating):
    """Replays every later event of the session, whatever its stream."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.log: list[tuple[str, Event]] = []

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        event_id = self.inner.event_append(session_id, stream_id, data, retention, now_ms)
        self.log.append((session_id, Event(event_id, stream_id, data)))
        return event_id

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        stream_id, _ = self.inner.event_replay(event_id, session_id, now_ms)
        position = next(i for i, (_, e) in enumerate(self.log) if e.id == event_id)
        owner = self.log[position][0]
        later = [e for s, e in self.log[position + 1 :] if s == owner]
        return stream_id, later


class ReplayIgnoresSession(Delegating):
    """Replays an event for whichever session asks."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        return self.inner.event_replay(event_id, None, now_ms)


class ForgetsEvictions(Delegating):
    """Reports an evicted cursor as unknown, hiding that events were lost."""

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        try:
            return self.inner.event_replay(event_id, session_id, now_ms)
        except EventNotFoundError as exc:
            raise EventNotFoundError(event_id, evicted=False) from exc


async def _all_records(inner: MemoryBackend, now_ms: int) -> list[SessionRecord]:
    everything: list[SessionRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = inner.session_page(cursor, 1000, now_ms)
        everything.extend(page)
        if cursor is None:
            return everything


class OffsetPaging(Delegating):
    """Pages by position: a session deleted behind the cursor makes the next page skip one."""

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        everything = await _all_records(self.inner, now_ms)
        offset = int(cursor or 0)
        more = len(everything) > offset + limit
        return everything[offset : offset + limit], (str(offset + limit) if more else None)


class JoinedKeys(Delegating):
    """Every namespace in one shared space, keyed ``"{namespace}.{id}"``: namespace ``x`` with id
    ``b.secret`` is namespace ``x.b`` with id ``secret``."""

    def __init__(self, inner: MemoryBackend, namespace: str) -> None:
        super().__init__(inner)
        self.prefix = namespace + "."

    def _out(self, record: SessionRecord) -> SessionRecord:
        return record._replace(id=record.id[len(self.prefix) :])

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        try:
            self.inner.session_create(record._replace(id=self.prefix + record.id), now_ms)
        except SessionExistsError:
            raise SessionExistsError(record.id) from None

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        record = self.inner.session_get(self.prefix + session_id, now_ms)
        return None if record is None else self._out(record)

    @hookimpl
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        found = self.inner.session_get_many([self.prefix + i for i in session_ids], now_ms)
        return {key[len(self.prefix) :]: self._out(r) for key, r in found.items()}

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        try:
            self.inner.session_update(record._replace(id=self.prefix + record.id), now_ms)
        except ConflictError:
            raise ConflictError(record.id) from None
        except SessionNotFoundError:
            raise SessionNotFoundError(record.id) from None

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        dump = self.inner.session_dump(self.prefix + session_id, now_ms)
        return None if dump is None else dump._replace(record=self._out(dump.record))

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = dump.record._replace(id=self.prefix + dump.record.id)
        return self.inner.session_load(dump._replace(record=record), retention, now_ms)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        try:
            self.inner.session_update_many(
                [r._replace(id=self.prefix + r.id) for r in records], now_ms
            )
        except ConflictError as exc:
            raise ConflictError(*[i[len(self.prefix) :] for i in exc.session_ids]) from None
        except SessionNotFoundError as exc:
            raise SessionNotFoundError(*[i[len(self.prefix) :] for i in exc.session_ids]) from None

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        return self.inner.session_delete(self.prefix + session_id, now_ms)

    async def _mine(self, now_ms: int) -> list[SessionRecord]:
        everything = await _all_records(self.inner, now_ms)
        return [self._out(r) for r in everything if r.id.startswith(self.prefix)]

    @hookimpl
    async def session_count(self, now_ms: int) -> int:
        return len(await self._mine(now_ms))

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        after = [r for r in await self._mine(now_ms) if cursor is None or r.id > cursor]
        page = after[:limit]
        return page, (page[-1].id if len(after) > limit else None)

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        live = {r.id for r in await _all_records(self.inner, now_ms)}
        expired = [
            r.id
            for r in await _all_records(self.inner, 0)
            if r.id.startswith(self.prefix) and r.id not in live
        ]
        for session_id in expired:
            self.inner.session_delete(session_id, now_ms)
        return len(expired)

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        self.inner.last_event_id_set(self.prefix + session_id, event_id, deadline_ms, now_ms)

    @hookimpl
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        return self.inner.last_event_id_get(self.prefix + session_id, now_ms)

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        scoped = None if session_id is None else self.prefix + session_id
        return self.inner.event_replay(event_id, scoped, now_ms)

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        return self.inner.event_append(self.prefix + session_id, stream_id, data, retention, now_ms)

    @hookimpl
    async def store_clear(self) -> None:
        for record in await _all_records(self.inner, 0):
            if record.id.startswith(self.prefix):
                self.inner.session_delete(record.id, 0)


class LoadRestartsVersions(Delegating):
    """Loads a dumped session as if it were new: version 1 and a fresh incarnation."""

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = dump.record._replace(version=1, incarnation=dump.record.incarnation + 1)
        return self.inner.session_load(dump._replace(record=record), retention, now_ms)


def _joined_keys(spec: str, *, namespace: str) -> JoinedKeys:
    return JoinedKeys(create_backend("memory://teeth-JoinedKeys", namespace="all"), namespace)


faithful = wrapping_factory(Delegating)
lost_update = wrapping_factory(LostUpdate)
ignores_incarnation = wrapping_factory(IgnoresIncarnation)
non_atomic_batch = wrapping_factory(NonAtomicBatch)
dropped_field = wrapping_factory(DroppedField)
expiry_ignored = wrapping_factory(ExpiryIgnored)
namespace_leak = wrapping_factory(Delegating, leak=True)
clobbers_last_event_id = wrapping_factory(ClobbersLastEventId)
replay_crosses_streams = wrapping_factory(ReplayCrossesStreams)
replay_ignores_session = wrapping_factory(ReplayIgnoresSession)
forgets_evictions = wrapping_factory(ForgetsEvictions)
offset_paging = wrapping_factory(OffsetPaging)
joined_namespace_keys = _joined_keys
load_restarts_versions = wrapping_factory(LoadRestartsVersions)

# broken backend -> contract tests that must fail on it
EXPECTED_FAILURES: dict[str, set[str]] = {
    "lost_update": {
        "test_stale_update_raises_conflict",
        "test_concurrent_modify_session_loses_no_increment",
        "test_concurrent_modify_across_handles",
        "test_state_machine",
    },
    "ignores_incarnation": {"test_a_writer_of_a_deleted_session_cannot_overwrite_its_successor"},
    "non_atomic_batch": {"test_batch_update_is_all_or_nothing", "test_state_machine"},
    "dropped_field": {"test_roundtrip_create_get", "test_roundtrip_update", "test_state_machine"},
    "expiry_ignored": {
        "test_expired_session_is_gone_for_every_read",
        "test_expiry_follows_the_clock_to_the_millisecond",
        "test_state_machine",
    },
    "namespace_leak": {"test_namespaces_never_see_each_other"},
    "clobbers_last_event_id": {
        "test_last_event_id_and_update_never_undo_each_other",
        "test_state_machine",
    },
    "replay_crosses_streams": {
        "test_events_replay_in_order_within_one_stream",
        "test_event_ids_unique_and_never_cross_sessions",
        "test_state_machine",
    },
    "replay_ignores_session": {
        "test_event_ids_unique_and_never_cross_sessions",
        "test_state_machine",
    },
    "forgets_evictions": {"test_evicted_cursor_is_reported", "test_state_machine"},
    "offset_paging": {"test_iter_sessions_while_the_store_changes"},
    "joined_namespace_keys": {"test_namespaces_that_prefix_each_other_stay_apart"},
    "load_restarts_versions": {"test_dump_and_load_copy_a_session_whole"},
}
