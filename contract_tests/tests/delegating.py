"""The wrapping every deliberately broken backend starts from: a real memory backend, unchanged.

Each ``broken_*.py`` module subclasses :class:`Delegating`, overrides the hooks it breaks, and
builds its factories with :func:`wrapping_factory`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sessionstore import Event, SessionDump, SessionRecord, hookimpl
from sessionstore_memory import MemoryBackend, create_backend

__all__ = ["Delegating", "wrapping_factory"]


class Delegating:
    """Every hook passed to a real memory backend unchanged."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        return self.inner.store_capabilities()

    @hookimpl
    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_create(record, now_ms)

    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        return self.inner.session_get(session_id, now_ms)

    @hookimpl
    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        return self.inner.session_get_many(session_ids, now_ms)

    @hookimpl
    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        self.inner.session_update(record, now_ms)

    @hookimpl
    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        self.inner.session_update_many(records, now_ms)

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        return self.inner.session_delete(session_id, now_ms)

    @hookimpl
    async def session_count(self, now_ms: int) -> int:
        return self.inner.session_count(now_ms)

    @hookimpl
    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        return self.inner.session_dump(session_id, now_ms)

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        return self.inner.session_load(dump, retention, now_ms)

    @hookimpl
    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        return self.inner.session_page(cursor, limit, now_ms)

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        return self.inner.session_purge_expired(now_ms)

    @hookimpl
    async def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        self.inner.last_event_id_set(session_id, event_id, deadline_ms, now_ms)

    @hookimpl
    async def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        return self.inner.last_event_id_get(session_id, now_ms)

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        return self.inner.event_append(session_id, stream_id, data, retention, now_ms)

    @hookimpl
    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        return self.inner.event_replay(event_id, session_id, now_ms)

    @hookimpl
    async def store_clear(self) -> None:
        self.inner.store_clear()

    @hookimpl
    async def store_close(self) -> None:
        self.inner.store_close()


def wrapping_factory(cls: type[Delegating], *, leak: bool = False) -> Callable[..., Delegating]:
    """A backend factory: ``cls`` around the shared memory store ``teeth-<cls>`` (around the
    namespace ``leaked`` for every store when ``leak``)."""

    def factory(spec: str, *, namespace: str) -> Delegating:
        name = f"memory://teeth-{cls.__name__}"
        inner = create_backend(name, namespace="leaked" if leak else namespace)
        return cls(inner)

    return factory
