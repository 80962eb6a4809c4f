"""Helpers shared by the core tests (a module with a unique name, so it never clashes with
another test directory's helpers): a small real backend and a raw payload reader."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack

from sessionstore import (
    ConflictError,
    Event,
    EventNotFoundError,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    SessionStore,
    hookimpl,
)

REDIS_TESTS = Path(__file__).resolve().parents[2] / "plugins" / "redis" / "tests"


def redis_servers() -> ModuleType:
    """``plugins/redis/tests/redis_servers.py``, the Redis tests' own throwaway servers (imported
    from its directory, as core/tests/mcp/conftest.py and bench/benchkit.py import it)."""
    if str(REDIS_TESTS) not in sys.path:
        sys.path.append(str(REDIS_TESTS))
    import redis_servers as module

    return module


class DictBackend:
    """A complete backend on plain dicts (no expiry sweeps, no retention): small and inspectable.

    ``records`` holds what the core wrote, byte for byte; ``calls`` lists the hooks called.
    """

    def __init__(self) -> None:
        self.records: dict[str, SessionRecord] = {}
        self.last_event_ids: dict[str, str] = {}
        self.events: list[tuple[str, str, str, bytes | None]] = []  # id, session, stream, data
        self.calls: list[str] = []
        self.closed = 0

    def _live(self, session_id: str, now_ms: int) -> SessionRecord | None:
        record = self.records.get(session_id)
        if record is None or (record.deadline_ms is not None and record.deadline_ms <= now_ms):
            return None
        return record

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.calls.append("session_create")
        if self._live(record.id, now_ms) is not None:
            raise SessionExistsError(record.id)
        self.records[record.id] = record

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        self.calls.append("session_get")
        return self._live(session_id, now_ms)

    @hookimpl
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        self.calls.append("session_get_many")
        found = {i: self._live(i, now_ms) for i in session_ids}
        return {i: r for i, r in found.items() if r is not None}

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.calls.append("session_update")
        current = self._live(record.id, now_ms)
        if current is None:
            raise SessionNotFoundError(record.id)
        if current.version != record.version - 1:
            raise ConflictError(record.id)
        self.records[record.id] = record

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.calls.append("session_update_many")
        missing = [r.id for r in records if self._live(r.id, now_ms) is None]
        if missing:
            raise SessionNotFoundError(*missing)
        stale = [r.id for r in records if self.records[r.id].version != r.version - 1]
        if stale:
            raise ConflictError(*stale)
        for record in records:
            self.records[record.id] = record

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        self.calls.append("session_delete")
        live = self._live(session_id, now_ms) is not None
        self.records.pop(session_id, None)
        self.last_event_ids.pop(session_id, None)
        self.events = [e for e in self.events if e[1] != session_id]
        return live

    @hookimpl
    async def session_count(self, now_ms: int) -> int:
        self.calls.append("session_count")
        return sum(1 for i in self.records if self._live(i, now_ms) is not None)

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        self.calls.append("session_page")
        ids = sorted(
            i
            for i in self.records
            if (cursor is None or i > cursor) and self._live(i, now_ms) is not None
        )
        page = [self.records[i] for i in ids[:limit]]
        return page, (ids[limit - 1] if len(ids) > limit else None)

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        self.calls.append("session_purge_expired")
        expired = [i for i in self.records if self._live(i, now_ms) is None]
        for session_id in expired:
            del self.records[session_id]
        return len(expired)

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        self.calls.append("last_event_id_set")
        record = self._live(session_id, now_ms)
        if record is None:
            raise SessionNotFoundError(session_id)
        self.last_event_ids[session_id] = event_id
        self.records[session_id] = record._replace(deadline_ms=deadline_ms)

    @hookimpl
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        self.calls.append("last_event_id_get")
        if self._live(session_id, now_ms) is None:
            raise SessionNotFoundError(session_id)
        return self.last_event_ids.get(session_id)

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        self.calls.append("event_append")
        if self._live(session_id, now_ms) is None:
            raise SessionNotFoundError(session_id)
        event_id = f"e{len(self.events) + 1}"
        self.events.append((event_id, session_id, stream_id, data))
        return event_id

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        self.calls.append("event_replay")
        for index, (eid, sid, stream, _) in enumerate(self.events):
            if eid == event_id and session_id in (None, sid):
                later = self.events[index + 1 :]
                return stream, [Event(e, s, d) for e, o, s, d in later if (o, s) == (sid, stream)]
        raise EventNotFoundError(event_id)

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        self.calls.append("session_dump")
        record = self._live(session_id, now_ms)
        if record is None:
            return None
        streams: dict[str, list[bytes | None]] = {}
        for _, owner, stream, data in self.events:
            if owner == session_id:
                streams.setdefault(stream, []).append(data)
        return SessionDump(
            record,
            self.last_event_ids.get(session_id),
            tuple((stream, tuple(data)) for stream, data in streams.items()),
        )

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        self.calls.append("session_load")
        session_id = dump.record.id
        if self._live(session_id, now_ms) is not None:
            return False
        self.events = [e for e in self.events if e[1] != session_id]
        self.records[session_id] = dump.record
        self.last_event_ids.pop(session_id, None)
        if dump.last_event_id is not None:
            self.last_event_ids[session_id] = dump.last_event_id
        for stream, events in dump.streams:
            for data in events[-retention:]:
                self.events.append((f"e{len(self.events) + 1}", session_id, stream, data))
        return True

    @hookimpl
    async def store_clear(self) -> None:
        self.calls.append("store_clear")
        self.records.clear()
        self.last_event_ids.clear()
        self.events.clear()

    @hookimpl
    async def store_close(self) -> None:
        self.calls.append("store_close")
        self.closed += 1


def factory_of(backend: object) -> Callable[..., object]:
    """A backend factory (as ``open_store`` takes one) that returns ``backend``."""

    def factory(spec: str, *, namespace: str) -> object:
        return backend

    return factory


def store_built_directly() -> SessionStore:
    """A store constructed without :func:`~sessionstore.open_store` (over a ``DictBackend``):
    what ``sibling()``, and so the MCP layer, must refuse."""
    return SessionStore(
        DictBackend(),
        backend_name="dict",
        spec="dict",
        namespace="default",
        ttl_ms=None,
        clock=lambda: 0.0,
        event_retention=10,
        page_size=10,
        modify_attempts=3,
    )


InstallDistribution = Callable[..., Path]
"""The type of the ``install_distribution`` fixture."""


def unpack_any(payload: bytes) -> Any:
    """Decode a payload with no restriction (to look at what the codec wrote)."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
