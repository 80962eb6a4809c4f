"""The in-process backend: dictionaries guarded by a lock.

``memory`` opens a private store (nothing shared with any other ``open_store`` call);
``memory://NAME`` opens the store called NAME, shared by every ``open_store("memory://NAME")`` in
this process, the way several handles share one server. Either way each namespace is separate.
Every hook is a plain ``def`` (the core calls it without a coroutine) and completes without
yielding, so each operation is atomic for the tasks of a loop; a lock makes it atomic for threads
too. ``event_watch`` is the exception (a watch is awaited); appends, loads and deletes wake the
watches of every handle of the namespace, in any thread, once the lock is released.

A private store (``memory``) belongs to the one store ``open_store`` built it for, and that store
is bound to one event loop (a call from any other raises ``WrongEventLoopError`` before a hook
runs): its hooks only ever run in that loop's thread, one at a time. So the common cases of
``session_create`` (a new id) and ``session_update`` (a live session at the expected version and
incarnation) skip the lock there; every other case takes the locked path, which decides it
anew. A named store (``memory://NAME``) is shared by stores in any thread: it always locks.
"""

from __future__ import annotations

import heapq
import threading
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sessionstore import (
    Capability,
    ConfigurationError,
    ConflictError,
    Event,
    EventNotFoundError,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    StoreFullError,
    WatchHub,
    hookimpl,
    redact_url,
)
from sessionstore.records import parse_event_id
from sessionstore.urls import StoreURL, parse_url
from sessionstore.watching import EventWatch

__all__ = ["MemoryBackend", "create_backend"]


@dataclass
class _Stream:
    session_id: str
    stream_id: str
    events: deque[tuple[int, bytes | None]] = field(default_factory=deque)
    next_seq: int = 1


@dataclass
class _Space:
    """One namespace of one memory store."""

    records: dict[str, SessionRecord] = field(default_factory=dict)
    last_event_ids: dict[str, str] = field(default_factory=dict)
    streams: dict[int, _Stream] = field(default_factory=dict)
    stream_handles: dict[tuple[str, str], int] = field(default_factory=dict)
    session_streams: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    next_handle: int = 1
    # The watch hubs of the handles that watch this namespace (each handle's, once it watched):
    # weak, so a handle dropped without closing is forgotten.
    hubs: weakref.WeakSet[WatchHub] = field(default_factory=weakref.WeakSet)


_shared_lock = threading.Lock()
_shared: dict[str, tuple[threading.Lock, dict[str, _Space]]] = {}


def create_backend(spec: str, *, namespace: str, max_sessions: int | None = None) -> MemoryBackend:
    """The entry point: ``memory`` (private) or ``memory://NAME`` (shared within the process).

    ``max_sessions`` bounds the live sessions of the namespace: a create beyond it raises
    :class:`~sessionstore.StoreFullError`; live sessions are never dropped to make room.
    """
    if max_sessions is not None and (type(max_sessions) is not int or max_sessions < 1):
        raise ConfigurationError(f"max_sessions must be an int >= 1, not {max_sessions!r}")
    if spec.strip().lower() == "memory":
        return MemoryBackend(threading.Lock(), _Space(), max_sessions=max_sessions, shared=False)
    try:
        url: StoreURL | None = parse_url(spec, what="memory store spec")
    except ConfigurationError:
        url = None
    name = "" if url is None else url.host + url.path
    if (
        url is None
        or url.scheme != "memory"
        or url.username is not None  # a memory store takes no user or password
        or not name
        or url.query is not None
        or url.fragment is not None
    ):
        raise ConfigurationError(
            f"memory store spec {redact_url(spec)!r} must be 'memory' or 'memory://NAME'"
        )
    with _shared_lock:
        lock, spaces = _shared.setdefault(name, (threading.Lock(), {}))
        space = spaces.setdefault(namespace, _Space())
    return MemoryBackend(lock, space, max_sessions=max_sessions, shared=True)


def _stale(stored: SessionRecord, write: SessionRecord) -> bool:
    """Whether compare-and-set refuses ``write`` (see the session_update hookspec)."""
    return stored.version != write.version - 1 or (
        write.incarnation != 0 and stored.incarnation != write.incarnation
    )


def _push(stream: _Stream, data: bytes | None, retention: int) -> int:
    """Append an event, evict beyond ``retention``; return its sequence number."""
    seq = stream.next_seq
    stream.next_seq += 1
    stream.events.append((seq, data))
    while len(stream.events) > retention:
        stream.events.popleft()
    return seq


def _expired(record: SessionRecord, now_ms: int) -> bool:
    deadline = record.deadline_ms
    return deadline is not None and deadline <= now_ms


class MemoryBackend:
    """The hooks of one namespace of a memory store."""

    def __init__(
        self, lock: threading.Lock, space: _Space, *, max_sessions: int | None, shared: bool
    ) -> None:
        self._lock = lock
        self._space = space
        self._records = space.records  # the hot paths' dict, one attribute away
        self._max_sessions = max_sessions
        self._shared = shared
        # The lock-free fast paths of a private store (see the module docstring); a create that
        # may have to make room takes the locked path.
        self._update_unlocked = not shared
        self._create_unlocked = not shared and max_sessions is None
        self._hub = WatchHub(self._no_io, self._no_io)

    # -- helpers (call with the lock held) ----------------------------------------------------

    def _live(self, session_id: str, now_ms: int) -> SessionRecord | None:
        record = self._space.records.get(session_id)
        if record is None or _expired(record, now_ms):
            return None
        return record

    def _drop(self, session_id: str) -> None:
        space = self._space
        del space.records[session_id]
        space.last_event_ids.pop(session_id, None)
        for key in space.session_streams.pop(session_id, ()):
            del space.streams[space.stream_handles.pop(key)]

    def _make_room(self, now_ms: int) -> None:
        limit = self._max_sessions
        if limit is not None and len(self._records) >= limit:
            self._purge(now_ms)  # expired sessions may go; live ones never do
            if len(self._records) >= limit:
                raise StoreFullError(
                    f"memory store is full: {len(self._records)} live sessions, "
                    f"max_sessions={limit}; delete sessions or raise max_sessions"
                )

    def _stream(self, session_id: str, stream_id: str) -> tuple[int, _Stream]:
        """The handle and stream ``stream_id`` of the session, created if new."""
        space = self._space
        handle = space.stream_handles.get((session_id, stream_id))
        if handle is None:
            handle = space.next_handle
            space.next_handle += 1
            space.stream_handles[(session_id, stream_id)] = handle
            space.session_streams.setdefault(session_id, []).append((session_id, stream_id))
            space.streams[handle] = _Stream(session_id, stream_id)
        return handle, space.streams[handle]

    def _changed(self, session_id: str) -> None:
        """Wake the watches of ``session_id`` in every handle (call after the lock is released:
        the change is visible by then)."""
        for hub in list(self._space.hubs):
            hub.notify(session_id)

    @staticmethod
    async def _no_io(session_id: str) -> None:
        """Subscribing is registering the hub with the namespace (see event_watch)."""

    def _purge(self, now_ms: int) -> int:
        expired = [i for i, r in self._space.records.items() if _expired(r, now_ms)]
        for session_id in expired:
            self._drop(session_id)
        return len(expired)

    # -- hooks --------------------------------------------------------------------------------

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        missing: dict[str, str] = {
            Capability.SHARED_PROCESSES: "a memory store lives in one process's memory; "
            "use sqlite or redis to share sessions between processes",
            Capability.DURABLE: (
                "a memory store keeps nothing once its process exits"
                if self._shared
                else "a private memory store is gone when its handle closes"
            ),
        }
        if not self._shared:
            missing[Capability.SHARED_HANDLES] = (
                "each open_store('memory') is a private store; "
                "use 'memory://NAME' to share one within the process"
            )
        return missing

    @hookimpl
    def session_create(self, record: SessionRecord, now_ms: int) -> None:
        session_id = record[0]  # record.id: an index is cheaper than a named field on this path
        records = self._records
        if self._create_unlocked and session_id not in records:
            records[session_id] = record  # private: no other hook runs meanwhile
            return
        lock = self._lock
        lock.acquire()  # not ``with``: on the hot paths it costs twice acquire/release here
        try:
            existing = records.get(session_id)
            if existing is not None:
                if not _expired(existing, now_ms):
                    raise SessionExistsError(session_id)
                self._drop(session_id)
            if self._max_sessions is not None:
                self._make_room(now_ms)
            records[session_id] = record
        finally:
            lock.release()

    @hookimpl
    def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        record = self._records.get(session_id)  # one dict read: atomic without the lock
        if record is None or _expired(record, now_ms):
            return None
        return record

    @hookimpl
    def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        with self._lock:
            found = {}
            for session_id in session_ids:
                record = self._live(session_id, now_ms)
                if record is not None:
                    found[session_id] = record
            return found

    @hookimpl
    def session_update(self, record: SessionRecord, now_ms: int) -> None:
        # Unpacked once: each named-field read of a record costs as much as the dict write.
        session_id, version, _, _, incarnation = record
        records = self._records
        if self._update_unlocked:  # private: no other hook runs meanwhile
            current = records.get(session_id)
            if current is not None:
                _, stored_version, deadline_ms, _, stored_incarnation = current
                if (
                    stored_version == version - 1
                    and incarnation == stored_incarnation
                    and (deadline_ms is None or deadline_ms > now_ms)
                ):
                    records[session_id] = record
                    return
            # Anything else (missing, expired, stale, incarnation 0): decided below.
        lock = self._lock
        lock.acquire()  # as in session_create
        try:
            current = records.get(session_id)
            if current is None:
                raise SessionNotFoundError(session_id)
            _, stored_version, deadline_ms, _, stored_incarnation = current
            if deadline_ms is not None and deadline_ms <= now_ms:
                raise SessionNotFoundError(session_id)
            if stored_version != version - 1 or (  # _stale, inlined on the hot path
                incarnation != 0 and incarnation != stored_incarnation
            ):
                raise ConflictError(session_id)
            if incarnation != stored_incarnation:  # 0: a writer that never read it
                record = record._replace(incarnation=stored_incarnation)
            records[session_id] = record
        finally:
            lock.release()

    @hookimpl
    def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        with self._lock:
            current = [self._live(r.id, now_ms) for r in records]
            missing = [r.id for r, c in zip(records, current, strict=True) if c is None]
            if missing:
                raise SessionNotFoundError(*missing)
            stale = [
                r.id
                for r, c in zip(records, current, strict=True)
                if c is not None and _stale(c, r)
            ]
            if stale:
                raise ConflictError(*stale)
            for record, stored in zip(records, current, strict=True):
                if stored is not None:
                    self._space.records[record.id] = record._replace(incarnation=stored.incarnation)

    @hookimpl
    def session_delete(self, session_id: str, now_ms: int) -> bool:
        with self._lock:
            record = self._space.records.get(session_id)
            if record is None:
                return False
            self._drop(session_id)
        self._changed(session_id)
        return not _expired(record, now_ms)

    @hookimpl
    def session_count(self, now_ms: int) -> int:
        with self._lock:
            return sum(1 for r in self._space.records.values() if not _expired(r, now_ms))

    @hookimpl
    def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[Sequence[SessionRecord], str | None]:
        with self._lock:
            records = self._space.records
            # Keyset paging by id: O(n log limit) per page, fine for an in-process store.
            ids = heapq.nsmallest(
                limit + 1,
                (
                    i
                    for i, r in records.items()
                    if (cursor is None or i > cursor) and not _expired(r, now_ms)
                ),
            )
            page = [records[i] for i in ids[:limit]]
        next_cursor = ids[limit - 1] if len(ids) > limit else None
        return page, next_cursor

    @hookimpl
    def session_purge_expired(self, now_ms: int) -> int:
        with self._lock:
            return self._purge(now_ms)

    @hookimpl
    def session_count_expired(self, now_ms: int) -> int:
        with self._lock:
            return sum(1 for r in self._space.records.values() if _expired(r, now_ms))

    @hookimpl
    def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        with self._lock:
            record = self._live(session_id, now_ms)
            if record is None:
                raise SessionNotFoundError(session_id)
            self._space.last_event_ids[session_id] = event_id
            if record.deadline_ms != deadline_ms:
                self._space.records[session_id] = record._replace(deadline_ms=deadline_ms)

    @hookimpl
    def last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        with self._lock:
            if self._live(session_id, now_ms) is None:
                raise SessionNotFoundError(session_id)
            return self._space.last_event_ids.get(session_id)

    @hookimpl
    def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        with self._lock:
            if self._live(session_id, now_ms) is None:
                raise SessionNotFoundError(session_id)
            handle, stream = self._stream(session_id, stream_id)
            seq = _push(stream, data, retention)
        if self._space.hubs:
            self._changed(session_id)
        return f"{handle}-{seq}"

    @hookimpl
    def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        parsed = parse_event_id(event_id)
        if parsed is None:
            raise EventNotFoundError(event_id)
        handle, seq = parsed
        with self._lock:
            stream = self._space.streams.get(handle)
            if (
                stream is None
                or (session_id is not None and stream.session_id != session_id)
                or self._live(stream.session_id, now_ms) is None
                or not 1 <= seq < stream.next_seq
            ):
                raise EventNotFoundError(event_id)
            if not stream.events or seq < stream.events[0][0]:
                raise EventNotFoundError(event_id, evicted=True)
            events = [
                Event(f"{handle}-{s}", stream.stream_id, data)
                for s, data in stream.events
                if s > seq
            ]
            return stream.stream_id, events

    @hookimpl
    def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        with self._lock:
            record = self._live(session_id, now_ms)
            if record is None:
                return None
            space = self._space
            streams = []
            for key in space.session_streams.get(session_id, ()):
                stream = space.streams[space.stream_handles[key]]
                streams.append((stream.stream_id, tuple(data for _, data in stream.events)))
            return SessionDump(record, space.last_event_ids.get(session_id), tuple(streams))

    @hookimpl
    def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        record = dump.record
        with self._lock:
            existing = self._records.get(record.id)
            if existing is not None:
                if not _expired(existing, now_ms):
                    return False
                self._drop(record.id)
            self._make_room(now_ms)
            self._records[record.id] = record
            if dump.last_event_id is not None:
                self._space.last_event_ids[record.id] = dump.last_event_id
            for stream_id, events in dump.streams:
                _, stream = self._stream(record.id, stream_id)
                for data in events:
                    _push(stream, data, retention)
        self._changed(record.id)
        return True

    @hookimpl
    async def event_watch(self, session_id: str) -> EventWatch:
        with self._lock:
            self._space.hubs.add(self._hub)
        return await self._hub.watch(session_id)

    @hookimpl
    def event_watch_count(self) -> int:
        return self._hub.subscriptions

    @hookimpl
    def store_clear(self) -> None:
        with self._lock:
            space = self._space
            space.records.clear()
            space.last_event_ids.clear()
            space.streams.clear()
            space.stream_handles.clear()
            space.session_streams.clear()

    @hookimpl
    def store_close(self) -> None:
        with self._lock:
            self._space.hubs.discard(self._hub)
        self._hub.wake_all()
