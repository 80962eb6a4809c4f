"""Payload transforms: middleware that rewrite the bytes a backend stores (encryption, compression).

A hook wrapper (:mod:`sessionstore.middleware`) sees a hook's arguments and replaces its result,
but cannot change the arguments: pluggy hands every implementation the caller's own, and a
backend whose hooks are plain functions has already run when a wrapper gets control back. So a
middleware that must change what reaches the backend subclasses :class:`PayloadTransform`
instead, and the store runs it around the hooks that carry payload or event bytes:

* on the way in, :meth:`~PayloadTransform.seal_payload` for every record written
  (``session_create``, ``session_update``, ``session_update_many``, ``session_load``) and
  :meth:`~PayloadTransform.seal_event` for every event's data (``event_append``,
  ``session_load``);
* on the way out, :meth:`~PayloadTransform.open_payload` and :meth:`~PayloadTransform.open_event`
  for everything read (``session_get``, ``session_get_many``, ``session_page``, ``session_dump``,
  ``event_replay``).

Priming events (``None``) pass through untouched. Transforms run outside every hook wrapper,
whatever their place among the middleware (so the fallback, metrics and tracing see the sealed
bytes); among themselves the last one given is the outermost: it seals first and opens last.
That is why compression goes after encryption in the list (``middleware=[encryption,
compression]``): it compresses the plain bytes, and encryption seals the compressed ones
(ciphertext does not compress).

A transform is bound to one store's namespace through ``bind_store`` (see
:func:`~sessionstore.middleware.bound_middleware`), so one object can serve several stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import CoroutineType
from typing import Any

import pluggy

from .errors import CorruptRecordError
from .plugins import HookDispatch
from .records import Event, SessionDump, SessionRecord, new_record

__all__ = ["PayloadTransform", "TransformedHooks", "split_transforms", "transformed_dispatch"]


class PayloadTransform:
    """Base of middleware that rewrite payload and event bytes (see the module docstring).

    Every method here passes the bytes through unchanged; a subclass overrides what it rewrites.
    ``open_*`` raise :class:`~sessionstore.CorruptRecordError` (or a subclass) naming the session
    for bytes they cannot read back, never another exception. ``session_id`` of
    :meth:`open_event` is ``None`` when a replay was asked for without one.

    A transform is not registered with pluggy: hook implementations on it are not called (make
    a separate hook wrapper for those).
    """

    def bind_store(self, *, backend_name: str, namespace: str) -> PayloadTransform:
        """This transform for one store (the default: itself, for a transform that does not
        depend on the store)."""
        return self

    def seal_payload(self, session_id: str, payload: bytes) -> bytes:
        return payload

    def open_payload(self, session_id: str, payload: bytes) -> bytes:
        return payload

    def seal_event(self, session_id: str, stream_id: str, data: bytes) -> bytes:
        return data

    def open_event(self, session_id: str | None, stream_id: str, data: bytes) -> bytes:
        return data


def transformed_dispatch(
    pm: pluggy.PluginManager, transforms: Sequence[PayloadTransform]
) -> HookDispatch:
    """The hooks of ``pm`` as a store calls them: through ``transforms`` when there are any."""
    hooks = HookDispatch(pm)
    return TransformedHooks(hooks, transforms) if transforms else hooks


def split_transforms(
    middleware: tuple[object, ...],
) -> tuple[tuple[PayloadTransform, ...], tuple[object, ...]]:
    """``middleware`` split into the payload transforms and the hook wrappers, each in order."""
    transforms = tuple(m for m in middleware if isinstance(m, PayloadTransform))
    wrappers = tuple(m for m in middleware if not isinstance(m, PayloadTransform))
    return transforms, wrappers


def _with_payload(record: SessionRecord, payload: bytes) -> SessionRecord:
    return new_record((record.id, record.version, record.deadline_ms, payload, record.incarnation))


async def _outcome(value: Any) -> Any:
    return await value if type(value) is CoroutineType else value


class TransformedHooks(HookDispatch):
    """A store's hooks (a :class:`~sessionstore.plugins.HookDispatch`) with ``transforms`` run
    around those that carry payload or event bytes; every other hook is the inner one itself.

    A call returns a coroutine, as the inner dispatch's calls may.
    """

    def __init__(self, hooks: HookDispatch, transforms: Sequence[PayloadTransform]) -> None:
        # Not HookDispatch.__init__: the hooks are the inner dispatch's, already built.
        for name, call in vars(hooks).items():
            if not hasattr(TransformedHooks, name):  # the hooks without bytes: the inner ones
                setattr(self, name, call)
        self._inner: Any = hooks
        self._sealing = tuple(reversed(transforms))  # the outermost seals first
        self._opening = tuple(transforms)  # and opens last

    # -- bytes -------------------------------------------------------------------------------

    def _seal_record(self, record: SessionRecord) -> SessionRecord:
        payload = record.payload
        for transform in self._sealing:
            payload = transform.seal_payload(record.id, payload)
        return _with_payload(record, payload)

    def _open_record(self, record: SessionRecord) -> SessionRecord:
        payload = record.payload
        for transform in self._opening:
            payload = transform.open_payload(record.id, payload)
        return _with_payload(record, payload)

    def _seal_event(self, session_id: str, stream_id: str, data: bytes | None) -> bytes | None:
        if data is not None:
            for transform in self._sealing:
                data = transform.seal_event(session_id, stream_id, data)
        return data

    def _open_event(
        self, session_id: str | None, stream_id: str, data: bytes | None
    ) -> bytes | None:
        if data is not None:
            for transform in self._opening:
                data = transform.open_event(session_id, stream_id, data)
        return data

    def _dump(
        self, dump: SessionDump, change: Callable[..., Any], record: SessionRecord
    ) -> SessionDump:
        session_id = dump.record.id
        streams = tuple(
            (stream_id, tuple(change(session_id, stream_id, data) for data in events))
            for stream_id, events in dump.streams
        )
        return SessionDump(record, dump.last_event_id, streams)

    # -- the hooks that carry bytes -----------------------------------------------------------

    async def session_create(self, record: SessionRecord, now_ms: int) -> None:
        await _outcome(self._inner.session_create(self._seal_record(record), now_ms))

    async def session_update(self, record: SessionRecord, now_ms: int) -> None:
        await _outcome(self._inner.session_update(self._seal_record(record), now_ms))

    async def session_update_many(self, records: Sequence[SessionRecord], now_ms: int) -> None:
        sealed = [self._seal_record(record) for record in records]
        await _outcome(self._inner.session_update_many(sealed, now_ms))

    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        record = await _outcome(self._inner.session_get(session_id, now_ms))
        return None if record is None else self._open_record(record)

    async def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        # As without middleware (the store decodes the batch in request order and the first
        # corrupt record raises): a record that cannot be opened fails the whole batch with its
        # CorruptRecordError (a DecryptionError under a retired key), the first in request
        # order. Skipping it instead would make it look deleted; iter_sessions(on_corrupt=) is
        # the call that goes on past such records.
        found = await _outcome(self._inner.session_get_many(session_ids, now_ms))
        return {
            key: self._open_record(found[key]) for key in dict.fromkeys(session_ids) if key in found
        }

    async def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[list[SessionRecord | CorruptRecordError], str | None]:
        records, next_cursor = await _outcome(self._inner.session_page(cursor, limit, now_ms))
        opened: list[SessionRecord | CorruptRecordError] = []
        for record in records:
            if not isinstance(record, CorruptRecordError):
                try:
                    record = self._open_record(record)
                except CorruptRecordError as error:  # in its place: the listing goes on
                    record = error
            opened.append(record)
        return opened, next_cursor

    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        sealed = self._seal_event(session_id, stream_id, data)
        event_id: str = await _outcome(
            self._inner.event_append(session_id, stream_id, sealed, retention, now_ms)
        )
        return event_id

    async def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, list[Event]]:
        stream_id, events = await _outcome(self._inner.event_replay(event_id, session_id, now_ms))
        return stream_id, [
            Event(
                event.id, event.stream_id, self._open_event(session_id, event.stream_id, event.data)
            )
            for event in events
        ]

    async def session_dump(self, session_id: str, now_ms: int) -> SessionDump | None:
        dump = await _outcome(self._inner.session_dump(session_id, now_ms))
        if dump is None:
            return None
        return self._dump(dump, self._open_event, self._open_record(dump.record))

    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        sealed = self._dump(dump, self._seal_event, self._seal_record(dump.record))
        return bool(await _outcome(self._inner.session_load(sealed, retention, now_ms)))
