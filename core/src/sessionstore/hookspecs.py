"""The backend contract: one pluggy hook per store operation.

A backend is an object whose methods are marked with :data:`hookimpl` and named after these hooks;
its factory (the entry point in group ``sessionstore.backends``) returns it, already bound to one
namespace. Every hook is called with keyword arguments and at most one backend per store, so the
first (only) result is the answer. The core checks, when the store is opened, that every required
hook exists.

The operation hooks are awaited by the core. Implement each as an ``async def``, or, for a backend
that never waits (it keeps everything in this process, as the memory backend does), as a plain
``def`` returning its result: the core then calls it without creating a coroutine, which on
such a backend is a large share of the framework's cost per operation. Never block the event loop
in a plain ``def``; middleware see a coroutine either way.

Conventions shared by every hook:

* Backends take and return :class:`~sessionstore.SessionRecord` (id, version, deadline, payload
  bytes), never sessions: the codec runs once, in the core. Payload bytes are returned unchanged.
* ``now_ms`` is the current Unix time in milliseconds, from the store's clock. A record whose
  ``deadline_ms`` is not ``None`` and ``<= now_ms`` is expired: every hook treats it as absent
  (reads, counts, pages, updates, last event ids, events), whether or not a purge ran.
* Session ids, stream ids and event ids arrive validated; they may contain any visible ASCII
  (``*``, ``?``, ``[``, ``:``, ``\\``, ``%``...) and must never be interpreted as patterns. Ids
  that differ only in case are different ids.
* Limits the core enforces before any hook runs, and that every backend must accept up to:
  session ids of 1 to :data:`~sessionstore.MAX_SESSION_ID_LENGTH` (255) visible ASCII
  characters; stream ids, event ids and last event ids of 1 to
  :data:`~sessionstore.MAX_STREAM_ID_LENGTH` / :data:`~sessionstore.MAX_EVENT_ID_LENGTH` (1024)
  printable characters, any Unicode; payloads and event data of up to
  :data:`~sessionstore.MAX_RECORD_BYTES` (16 MiB); up to :data:`~sessionstore.MAX_BATCH_SIZE`
  (10,000) ids or records in one ``session_get_many`` or ``session_update_many``.
* A hook sees and changes only its own namespace: counts, pages, purges, clears and event ids
  included.
* Deadlines move only with ``session_create``, ``session_update``, ``session_update_many``
  (every record of the batch) and ``last_event_id_set``; reads, ``event_append`` and refused
  writes never move one. A refused write (an error raised) changes nothing.
* Every hook is linearizable: it takes effect at one instant between its call and its return,
  for every task, thread and handle (and, where the backend offers
  ``Capability.SHARED_PROCESSES``, every process) using the same storage and namespace. So a
  read that starts after a write returned, through any handle, sees that write. Where the
  backend offers ``Capability.DURABLE``, what a hook acknowledged is still there after every
  handle was closed and a new one opened.
* Failures are raised as :mod:`sessionstore.errors` classes; a backend that cannot reach its
  storage raises :class:`~sessionstore.StoreUnavailableError`. Anything else is wrapped by the core
  in :class:`~sessionstore.BackendError` naming the backend and the hook.
* Middleware wrap these same hooks with ``@hookimpl(wrapper=True)``: the wrapper receives the inner
  coroutine from ``yield`` and returns a coroutine that awaits it (see
  :mod:`sessionstore.middleware`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence

import pluggy

from .errors import CorruptRecordError
from .records import Event, SessionDump, SessionRecord
from .watching import EventWatch

__all__ = ["OPTIONAL_HOOKS", "PROJECT_NAME", "SYNC_HOOKS", "hookimpl", "hookspec"]

PROJECT_NAME = "sessionstore"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a hook specification (used only here)."""
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a backend's or a middleware's implementation of a hook."""

OPTIONAL_HOOKS = frozenset(
    {"store_capabilities", "raw_get", "session_count_expired", "event_watch", "event_watch_count"}
)
"""Hooks a backend may leave out; every other hook is required. Middleware never wrap them."""
SYNC_HOOKS = frozenset({"store_capabilities", "event_watch_count"})
"""Hooks that must be plain functions; every other hook is awaited (an ``async def`` or, for a
backend that never waits, a plain ``def``)."""


@hookspec(firstresult=True)
def store_capabilities() -> Mapping[str, str]:  # type: ignore[empty-body]
    """Return the capabilities this backend lacks, as ``{name: reason}``.

    Names come from :class:`~sessionstore.Capability`. The contract suite skips the tests of a
    missing capability with the reason given here. Optional: a backend without this hook claims
    every capability.
    """


@hookspec(firstresult=True)
def session_create(record: SessionRecord, now_ms: int) -> Awaitable[None]:  # type: ignore[empty-body]
    """Store a new session (``record.version == 1``).

    Raise :class:`~sessionstore.SessionExistsError` if a live session has ``record.id``; the live
    session is then left exactly as it was (payload, version, deadline, last event id, events).
    An expired one is replaced whole: its last event id and event log do not carry over.
    """


@hookspec(firstresult=True)
def session_get(session_id: str, now_ms: int) -> Awaitable[SessionRecord | None]:  # type: ignore[empty-body]
    """Return the live record of ``session_id``, or ``None``. Never changes anything."""


@hookspec(firstresult=True)
def session_get_many(  # type: ignore[empty-body]
    session_ids: Sequence[str], now_ms: int
) -> Awaitable[Mapping[str, SessionRecord]]:
    """Return ``{id: record}`` for the live sessions among ``session_ids`` (distinct ids).

    Missing or expired ids are simply absent from the mapping. One round trip where the storage
    allows it.
    """


@hookspec(firstresult=True)
def session_update(record: SessionRecord, now_ms: int) -> Awaitable[None]:  # type: ignore[empty-body]
    """Compare-and-set: replace live session ``record.id`` iff it is at ``record.version - 1``
    and, unless ``record.incarnation`` is 0, its incarnation is ``record.incarnation`` (the same
    creation of that id). The stored incarnation never changes on update.

    Atomically with respect to every other writer (tasks, threads, processes, hosts). Replaces the
    payload, version and deadline; leaves the last event id and the event log alone. Raise
    :class:`~sessionstore.SessionNotFoundError` if no live session has the id, else
    :class:`~sessionstore.ConflictError` if the stored version differs.
    """


@hookspec(firstresult=True)
def session_update_many(records: Sequence[SessionRecord], now_ms: int) -> Awaitable[None]:  # type: ignore[empty-body]
    """Compare-and-set every record at once, all or nothing (distinct ids); each written record
    replaces payload, version and deadline as ``session_update`` does.

    If any id has no live session raise :class:`~sessionstore.SessionNotFoundError` naming every
    missing id; else if any stored version is not ``record.version - 1`` or its incarnation differs
    from a non-zero ``record.incarnation``, raise :class:`~sessionstore.ConflictError` naming every
    stale id.
    When it raises nothing was written.
    A backend that cannot do this atomically declares ``Capability.ATOMIC_BATCH_UPDATE`` missing.
    """


@hookspec(firstresult=True)
def session_delete(session_id: str, now_ms: int) -> Awaitable[bool]:  # type: ignore[empty-body]
    """Remove the session, its last event id and its event log; return whether it was live."""


@hookspec(firstresult=True)
def session_count(now_ms: int) -> Awaitable[int]:  # type: ignore[empty-body]
    """Return the number of live sessions in this namespace."""


@hookspec(firstresult=True)
def session_page(  # type: ignore[empty-body]
    cursor: str | None, limit: int, now_ms: int
) -> Awaitable[tuple[Sequence[SessionRecord | CorruptRecordError], str | None]]:
    """Return up to ``limit`` live records after ``cursor`` and the cursor of the next page.

    ``cursor`` is ``None`` for the first page and otherwise a value this hook returned; the next
    cursor is ``None`` once there are no more pages (a backend that cannot tell whether a full
    page was the last may return a cursor there, and then an empty page with ``None``). Paging
    through from ``None`` to the end yields every session that stayed live throughout exactly
    once, in bounded memory (ordering by id is the usual way).

    A record whose stored form the backend cannot read (a damaged or foreign value, so that not
    even its version or deadline is known) goes in the page, in its place, as a
    :class:`~sessionstore.CorruptRecordError` naming its id: raised, it would end every listing
    there, and the caller could not page past it. The core raises it, or hands it to the
    listing's ``on_corrupt``. A record whose payload alone is damaged is returned as it is: the
    core finds that out when it decodes it.
    """


@hookspec(firstresult=True)
def session_purge_expired(now_ms: int) -> Awaitable[int]:  # type: ignore[empty-body]
    """Remove every expired session of this namespace with its last event id and events; return
    how many. Live sessions and other namespaces are untouched."""


@hookspec(firstresult=True)
def session_count_expired(now_ms: int) -> Awaitable[int]:  # type: ignore[empty-body]
    """Optional: return how many sessions ``session_purge_expired(now_ms)`` would remove now,
    removing and changing nothing.

    Exactly the number that purge would return at ``now_ms`` (count what purge counts: a backend
    that purges index entries of records already gone counts those too). Only this namespace.
    ``sessionstore purge --dry-run`` reports it; a backend without it makes the dry run say it
    cannot count.
    """


@hookspec(firstresult=True)
def last_event_id_set(  # type: ignore[empty-body]
    session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
) -> Awaitable[None]:
    """Record ``event_id`` as the session's last event id and move its deadline to ``deadline_ms``.

    Leaves the payload and version alone, so it never undoes an update nor is undone by one. Raise
    :class:`~sessionstore.SessionNotFoundError` if no live session has the id.
    """


@hookspec(firstresult=True)
def last_event_id_get(session_id: str, now_ms: int) -> Awaitable[str | None]:  # type: ignore[empty-body]
    """Return the session's last event id (``None`` if never set).

    Raise :class:`~sessionstore.SessionNotFoundError` if no live session has the id.
    """


@hookspec(firstresult=True)
def event_append(  # type: ignore[empty-body]
    session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
) -> Awaitable[str]:
    """Append an event to stream ``stream_id`` of the session and return its new id.

    Ids are unique in the namespace and never issued twice there, even after their session was
    deleted, purged, expired or cleared and its id created again (another namespace may issue
    the same ids: a replay only ever finds events of its own namespace). A stream id reused by
    another session, or by a new creation of the same session id, is another stream. Keep at
    most ``retention`` newest events per stream, evicting the oldest. Does not move the
    session's deadline, version or payload. Raise :class:`~sessionstore.SessionNotFoundError` if
    no live session has the id.
    """


@hookspec(firstresult=True)
def event_replay(  # type: ignore[empty-body]
    event_id: str, session_id: str | None, now_ms: int
) -> Awaitable[tuple[str, Sequence[Event]]]:
    """Return ``(stream_id, events)``: the events of ``event_id``'s stream after it, oldest first.

    Never events of another stream or session. Raise :class:`~sessionstore.EventNotFoundError`
    with ``evicted=True`` if the event was dropped by retention, ``evicted=False`` if the id is
    unknown, its session is gone, or ``session_id`` is given and the event belongs to another.
    """


@hookspec(firstresult=True)
def session_dump(session_id: str, now_ms: int) -> Awaitable[SessionDump | None]:  # type: ignore[empty-body]
    """Return the live session's record, last event id and every stream's retained events.

    ``None`` if no live session has the id. Streams in the order they were created, each with its
    events' data oldest first. One consistent view: no write lands between its parts.
    """


@hookspec(firstresult=True)
def session_load(dump: SessionDump, retention: int, now_ms: int) -> Awaitable[bool]:  # type: ignore[empty-body]
    """Store ``dump`` as it is, iff no live session has its id; return whether it did.

    The record is kept exactly (version, deadline, incarnation, payload bytes), with its last event
    id; each stream's events are appended in order under new event ids (at most ``retention`` per
    stream, the newest). An expired session with the id is replaced whole. All or nothing: a
    reader sees the whole session or none of it. The core never passes an expired dump.
    """


@hookspec(firstresult=True)
def raw_get(session_id: str) -> Awaitable[object]:  # type: ignore[empty-body]
    """Optional, for benchmarks: do with the driver alone the read ``session_get`` does for
    ``session_id`` (the same command or statement; no decoding, no checks) and return what the
    driver returned.

    ``sessionstore bench`` times it next to ``get_session`` to show what the framework costs over
    the bare driver. Never used to serve data. A backend without a driver (memory) leaves it out.
    """


@hookspec(firstresult=True)
def event_watch(session_id: str) -> Awaitable[EventWatch]:  # type: ignore[empty-body]
    """Optional: start watching the events of ``session_id`` in this namespace and return the
    watch (an :class:`~sessionstore.EventWatch`), subscribed before this returns.

    Its ``wait(timeout)`` returns ``True`` when the session's events may have changed: after
    every ``event_append``, ``session_load`` and ``session_delete`` of the session through any
    handle (and, where the backend offers ``Capability.SHARED_PROCESSES``, any process) that
    took effect after the watch was started, once that write is visible to a read, and when
    notifications may have been lost (the listener's connection dropped). Spurious wake-ups
    are allowed; a missed change is not. Never woken by another namespace's writes, except
    spuriously. One listener connection per handle, shared by every watch (see
    :class:`~sessionstore.WatchHub`); a watch closed is forgotten. A backend without
    it declares ``Capability.EVENT_NOTIFICATIONS`` missing (the core does when it is absent),
    and the core polls instead.
    """


@hookspec(firstresult=True)
def event_watch_count() -> int:  # type: ignore[empty-body]
    """Optional, with ``event_watch``: how many sessions this handle holds a subscription for
    now (many watches of one session count once; a session whose last watch closed no longer
    counts). A plain ``def``. For tests and monitoring."""


@hookspec(firstresult=True)
def store_clear() -> Awaitable[None]:  # type: ignore[empty-body]
    """Remove every session, last event id and event of this namespace, and nothing else."""


@hookspec(firstresult=True)
def store_close() -> Awaitable[None]:  # type: ignore[empty-body]
    """Release connections and files. Called once; no other hook is called afterwards."""
