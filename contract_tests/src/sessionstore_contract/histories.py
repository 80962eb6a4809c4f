"""Operation histories of a store, and the sequential model they are checked against.

:class:`RecordingClient` performs store operations and records each one as a
:class:`~sessionstore_contract.linearizability.Operation` (call, arguments, result, start and end on
``time.monotonic``, which every process of a host shares). :class:`StoreModel` is the contract as a
sequential specification: what each operation returns when it runs alone, so
:mod:`~sessionstore_contract.linearizability` can decide whether some order of a concurrent history
explains every result.

Sessions are told apart by a *tag* written in their metadata, and events by a tag in their data,
so a read says exactly which write it saw. Results are plain tuples (JSON-able once tuples become
lists), so histories recorded in other processes come back through the worker's JSON.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from sessionstore import (
    ConflictError,
    EventNotFoundError,
    Session,
    SessionNotFoundError,
    SessionStore,
    SessionStoreError,
    TransportType,
    decode_session,
)

from .linearizability import PENDING, Operation

__all__ = [
    "KeyState",
    "RecordingClient",
    "StoreModel",
    "from_json",
    "incarnation_of",
    "operation_key",
    "to_json",
]

T = TypeVar("T")

# One session as the model holds it: (incarnation, version, tag, last event id, streams), streams
# being ((stream id, ((event id or None, data tag), ...)), ...) in creation order. None: absent.
KeyState = tuple[
    int, int, str, str | None, tuple[tuple[str, tuple[tuple[str | None, str], ...]], ...]
]
# The whole model: ((session id, KeyState | None), ...) for the ids in play, and every event id
# issued so far (the namespace must never issue one twice).
State = tuple[tuple[tuple[str, KeyState | None], ...], frozenset[str]]


def incarnation_of(session: Session) -> int:
    """The incarnation the store drew when it created ``session`` (0 for one never read)."""
    private = session.__pydantic_private__ or {}
    return int(private.get("_incarnation", 0))


def _tag_of(session: Session) -> str:
    return str(session.metadata.get("tag", ""))


def _error(exc: SessionStoreError) -> tuple[Hashable, ...]:
    if isinstance(exc, EventNotFoundError):
        return ("error", "EventNotFoundError", exc.evicted)
    if isinstance(exc, ConflictError | SessionNotFoundError):
        return ("error", type(exc).__name__, tuple(sorted(exc.session_ids)))
    return ("error", type(exc).__name__)


class RecordingClient:
    """Store operations by one process (a task, a handle or an OS process), each recorded.

    Every method returns what the store returned (``None`` after an error from this library,
    which is recorded as the result); anything else propagates.
    """

    def __init__(
        self, store: SessionStore, process: str, history: list[Operation] | None = None
    ) -> None:
        self.store = store
        self.process = process
        self.history: list[Operation] = [] if history is None else history

    async def _record(
        self,
        call: str,
        args: tuple[Hashable, ...],
        action: Awaitable[T],
        describe: Callable[[T], Hashable],
    ) -> T | None:
        start = time.monotonic()
        try:
            value = await action
        except SessionStoreError as exc:
            self.history.append(
                Operation(self.process, call, args, _error(exc), start, time.monotonic())
            )
            return None
        end = time.monotonic()
        self.history.append(Operation(self.process, call, args, describe(value), start, end))
        return value

    async def create(self, session_id: str, tag: str) -> Session | None:
        session = Session(id=session_id, transport=TransportType.HTTP, metadata={"tag": tag})
        return await self._record(
            "create",
            (session_id, tag),
            self.store.create_session(session),
            lambda s: ("ok", incarnation_of(s)),
        )

    async def get(self, session_id: str) -> Session | None:
        return await self._record(
            "get",
            (session_id,),
            self.store.get_session(session_id),
            lambda s: ("ok", incarnation_of(s), s.version, _tag_of(s)),
        )

    async def update(self, session: Session, tag: str) -> Session | None:
        """Write ``session`` (as read) back with ``tag``."""
        changed = session.model_copy(deep=True)
        changed.metadata = {"tag": tag}
        args = (session.id, incarnation_of(session), session.version, tag)
        return await self._record(
            "update", args, self.store.update_session(changed), lambda s: ("ok", s.version)
        )

    async def update_batch(self, sessions: Sequence[Session], tag: str) -> list[Session] | None:
        changed = []
        for session in sessions:
            copy = session.model_copy(deep=True)
            copy.metadata = {"tag": tag}
            changed.append(copy)
        args = (tuple((s.id, incarnation_of(s), s.version) for s in sessions), tag)
        return await self._record(
            "update_batch",
            args,
            self.store.update_sessions_batch(changed),
            lambda written: ("ok", tuple(s.version for s in written)),
        )

    async def delete(self, session_id: str) -> bool | None:
        return await self._record(
            "delete", (session_id,), self.store.delete_session(session_id), lambda b: ("ok", b)
        )

    async def set_last(self, session_id: str, event_id: str) -> None:
        await self._record(
            "set_last",
            (session_id, event_id),
            self.store.store_last_event_id(session_id, event_id),
            lambda _: ("ok",),
        )

    async def get_last(self, session_id: str) -> str | None:
        return await self._record(
            "get_last",
            (session_id,),
            self.store.get_last_event_id(session_id),
            lambda value: ("ok", value),
        )

    async def append(self, session_id: str, stream_id: str, tag: str) -> str | None:
        return await self._record(
            "append",
            (session_id, stream_id, tag),
            self.store.append_event(session_id, stream_id, tag.encode()),
            lambda event_id: ("ok", event_id),
        )

    async def replay(self, session_id: str, event_id: str) -> Any:
        """Replay after ``event_id``, an event of ``session_id`` (asked with that session)."""
        return await self._record(
            "replay",
            (session_id, event_id),
            self.store.replay_events_after(event_id, session_id=session_id),
            lambda found: (
                "ok",
                found[0],
                tuple((e.id, (e.data or b"").decode()) for e in found[1]),
            ),
        )

    async def dump(self, session_id: str) -> Any:
        async def dump_or_none() -> Any:
            try:
                return await self.store.dump_session(session_id)
            except SessionNotFoundError:
                return None

        return await self._record("dump", (session_id,), dump_or_none(), _describe_dump)

    async def load(self, dump: Any) -> bool | None:
        return await self._record(
            "load", _describe_dump(dump)[1:], self.store.load_session(dump), lambda b: ("ok", b)
        )


def _describe_dump(dump: Any) -> tuple[Hashable, ...]:
    if dump is None:
        return ("ok", None)
    session = decode_session(dump.record)
    streams = tuple(
        (stream_id, tuple((data or b"").decode() for data in events))
        for stream_id, events in dump.streams
    )
    return (
        "ok",
        session.id,
        dump.record.incarnation,
        dump.record.version,
        _tag_of(session),
        dump.last_event_id,
        streams,
    )


def operation_key(op: Operation) -> Hashable:
    """The session an operation is about (every operation here names one first), for checking
    each session's sub-history on its own; batches are about several and must not be split."""
    if op.call == "update_batch":
        raise ValueError("a batch spans sessions: check its history whole, not by key")
    return op.args[0]


class StoreModel:
    """The contract as a sequential specification, over the sessions ``session_ids``.

    Event ids are the ones the store returned (the model only requires that none is issued twice);
    everything else is determined: versions, incarnations drawn at create (taken from the
    create's result), tags, last event ids, streams in creation order, replays strictly after.
    Retention is assumed larger than any stream in the history (nothing is evicted).
    """

    def __init__(self, session_ids: Sequence[str], initial: State | None = None) -> None:
        self.session_ids = tuple(session_ids)
        self._initial: State = initial or (tuple((i, None) for i in self.session_ids), frozenset())

    def initial(self) -> State:
        return self._initial

    def step(self, state: State, op: Operation, *, checked: bool = True) -> State | None:
        sessions = dict(state[0])
        issued = state[1]
        outcome = _apply(sessions, issued, op)
        if outcome is None:
            return None
        expected, sessions, issued = outcome
        if checked and expected != op.result:
            return None
        return tuple(sessions.items()), issued


def _apply(
    sessions: dict[str, Any], issued: frozenset[str], op: Operation
) -> tuple[Hashable, dict[str, Any], frozenset[str]] | None:
    """(the result the specification gives, the sessions after, the issued event ids after).

    ``sessions`` maps each id in play to its :data:`KeyState` or ``None`` (typed loosely: the
    operations' arguments arrive as plain hashables)."""
    args: Any = op.args
    call = op.call
    known: Any = op.result if op.result is not PENDING else None
    if call == "create":
        session_id, tag = args
        if sessions[session_id] is not None:
            return ("error", "SessionExistsError"), sessions, issued
        if not (isinstance(known, tuple) and known[0] == "ok"):
            return None  # it would succeed here, with an incarnation only its result tells
        sessions[session_id] = (known[1], 1, tag, None, ())
        return known, sessions, issued
    if call == "get":
        (session_id,) = args
        current = sessions[session_id]
        if current is None:
            return ("error", "SessionNotFoundError", (session_id,)), sessions, issued
        return ("ok", current[0], current[1], current[2]), sessions, issued
    if call == "update":
        session_id, incarnation, version, tag = args
        current = sessions[session_id]
        if current is None:
            return ("error", "SessionNotFoundError", (session_id,)), sessions, issued
        if current[1] != version or (incarnation != 0 and current[0] != incarnation):
            return ("error", "ConflictError", (session_id,)), sessions, issued
        sessions[session_id] = (current[0], version + 1, tag, current[3], current[4])
        return ("ok", version + 1), sessions, issued
    if call == "update_batch":
        entries, tag = args
        missing = tuple(sorted(i for i, _, _ in entries if sessions[i] is None))
        if missing:
            return ("error", "SessionNotFoundError", missing), sessions, issued
        stale = tuple(
            sorted(
                i
                for i, incarnation, version in entries
                if sessions[i][1] != version or (incarnation != 0 and sessions[i][0] != incarnation)
            )
        )
        if stale:
            return ("error", "ConflictError", stale), sessions, issued
        versions = []
        for session_id, _, version in entries:
            current = sessions[session_id]
            assert current is not None
            sessions[session_id] = (current[0], version + 1, tag, current[3], current[4])
            versions.append(version + 1)
        return ("ok", tuple(versions)), sessions, issued
    if call == "delete":
        (session_id,) = args
        existed = sessions[session_id] is not None
        sessions[session_id] = None
        return ("ok", existed), sessions, issued
    if call == "set_last":
        session_id, event_id = args
        current = sessions[session_id]
        if current is None:
            return ("error", "SessionNotFoundError", (session_id,)), sessions, issued
        sessions[session_id] = (current[0], current[1], current[2], event_id, current[4])
        return ("ok",), sessions, issued
    if call == "get_last":
        (session_id,) = args
        current = sessions[session_id]
        if current is None:
            return ("error", "SessionNotFoundError", (session_id,)), sessions, issued
        return ("ok", current[3]), sessions, issued
    if call == "append":
        session_id, stream_id, tag = args
        current = sessions[session_id]
        if current is None:
            return ("error", "SessionNotFoundError", (session_id,)), sessions, issued
        if not (isinstance(known, tuple) and known[0] == "ok"):
            return None  # it would succeed here, with an id only its result tells
        event_id = known[1]
        if event_id in issued:  # an id issued twice: no order explains it
            return None
        streams = dict(current[4])
        streams[stream_id] = (*streams.get(stream_id, ()), (event_id, tag))
        sessions[session_id] = (*current[:4], tuple(streams.items()))
        return known, sessions, issued | {event_id}
    if call == "replay":
        session_id, event_id = args
        current = sessions[session_id]
        not_found = ("error", "EventNotFoundError", False)
        if current is None:
            return not_found, sessions, issued
        for stream_id, events in current[4]:
            ids = [e for e, _ in events]
            if event_id in ids:
                after = events[ids.index(event_id) + 1 :]
                if any(e is None for e, _ in after):  # loaded events: ids never returned
                    return None
                return ("ok", stream_id, tuple(after)), sessions, issued
        return not_found, sessions, issued
    if call == "dump":
        (session_id,) = args
        current = sessions[session_id]
        if current is None:
            return ("ok", None), sessions, issued
        incarnation, version, tag, last, streams = current
        shown = tuple((s, tuple(t for _, t in events)) for s, events in streams)
        return ("ok", session_id, incarnation, version, tag, last, shown), sessions, issued
    if call == "load":
        session_id, incarnation, version, tag, last, streams = args
        if sessions[session_id] is not None:
            return ("ok", False), sessions, issued
        loaded = tuple((s, tuple((None, t) for t in tags)) for s, tags in streams)
        sessions[session_id] = (incarnation, version, tag, last, loaded)
        return ("ok", True), sessions, issued
    raise ValueError(f"the store model has no operation {call!r}")


def to_json(history: Sequence[Operation]) -> list[list[Any]]:
    """``history`` as JSON-able lists (the worker's way back from another process)."""
    return [
        [
            op.process,
            op.call,
            _listed(op.args),
            None if op.result is PENDING else _listed(op.result),
            op.start,
            op.end,
        ]
        for op in history
    ]


def from_json(rows: Sequence[Sequence[Any]]) -> list[Operation]:
    """The inverse of :func:`to_json`: lists become tuples again, so results stay hashable."""
    return [
        Operation(
            process, call, _tupled(args), PENDING if end is None else _tupled(result), start, end
        )
        for process, call, args, result, start, end in rows
    ]


def _listed(value: Any) -> Any:
    return [_listed(v) for v in value] if isinstance(value, tuple) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
