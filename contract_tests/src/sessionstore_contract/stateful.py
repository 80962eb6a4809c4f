"""A Hypothesis state machine driving a backend and a plain model side by side.

Every rule performs one store operation and checks its result against the model: creates (fresh
and existing ids), gets, updates (fresh, stale, missing), deletes, batch gets and updates, last
event ids, event append and replay (including evicted and foreign cursors), purges, listings and,
where the backend lets the clock be controlled, expiry.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sessionstore import (
    Capability,
    ConflictError,
    EventNotFoundError,
    ResponseMode,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    SessionStore,
)

from .common import CONTRACT_PHASES
from .strategies import json_values, sessions
from .target import ContractTarget, ManualClock

__all__ = ["run_state_machine"]

T = TypeVar("T")

ID_POOL = ("a", "*", "x" * 254 + "{")
STREAMS = ("1", "_GET_stream")
RETENTION = 2
TTL_SECONDS = 60

_ids = st.sampled_from(ID_POOL)
_event_ids = st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=20)


@dataclass
class _Stored:
    session: Session
    deadline_ms: int | None
    generation: int
    last_event_id: str | None = None


@dataclass
class _Model:
    sessions: dict[str, _Stored] = field(default_factory=dict)
    # (session id, generation, stream id) -> every event id appended, oldest first
    streams: dict[tuple[str, int, str], list[str]] = field(default_factory=dict)
    # event id -> (session id, generation, stream id, data)
    events: dict[str, tuple[str, int, str, bytes | None]] = field(default_factory=dict)


def run_state_machine(target: ContractTarget) -> None:
    """Run the state machine against ``target``; fails with a minimal failing sequence."""
    controllable = Capability.CONTROLLABLE_CLOCK not in target.capabilities
    atomic_batches = Capability.ATOMIC_BATCH_UPDATE not in target.capabilities

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.ttl_ms = TTL_SECONDS * 1000 if controllable else None
            self.store: SessionStore = target.open(
                clock=self.clock if controllable else None,
                ttl=TTL_SECONDS if controllable else None,
                event_retention=RETENTION,
            )
            self.model = _Model()
            self.generations = itertools.count(1)

        def teardown(self) -> None:
            try:
                self.run(self.store.clear())
                self.run(self.store.aclose())
            finally:
                self.loop.close()

        # -- helpers ---------------------------------------------------------------------

        def run(self, coroutine: Awaitable[T]) -> T:
            return self.loop.run_until_complete(coroutine)  # type: ignore[arg-type,unused-ignore]

        def now_ms(self) -> int:
            return int(self.clock() * 1000)

        def deadline(self) -> int | None:
            return None if self.ttl_ms is None else self.now_ms() + self.ttl_ms

        def live(self, session_id: str) -> _Stored | None:
            stored = self.model.sessions.get(session_id)
            if stored is None:
                return None
            if stored.deadline_ms is not None and stored.deadline_ms <= self.now_ms():
                return None
            return stored

        def forget(self, session_id: str) -> None:
            self.model.sessions.pop(session_id, None)

        def expect(self, error: type[Exception], coroutine: Awaitable[Any]) -> Any:
            with pytest.raises(error) as raised:
                self.run(coroutine)
            return raised.value

        # -- sessions --------------------------------------------------------------------

        @initialize(session=sessions(ids=_ids))
        def start_with_one(self, session: Session) -> None:
            self.create(session)

        @rule(session=sessions(ids=_ids))
        def create(self, session: Session) -> None:
            if self.live(session.id) is not None:
                self.expect(SessionExistsError, self.store.create_session(session.model_copy()))
                return
            stored = self.run(self.store.create_session(session.model_copy(deep=True)))
            assert stored.version == 1
            assert stored == session.model_copy(update={"version": 1})
            self.model.sessions[session.id] = _Stored(
                stored.model_copy(deep=True),  # as a client holds it: read from this creation
                self.deadline(),
                next(self.generations),
            )

        @rule(session_id=_ids)
        def get(self, session_id: str) -> None:
            stored = self.live(session_id)
            if stored is None:
                self.expect(SessionNotFoundError, self.store.get_session(session_id))
            else:
                assert self.run(self.store.get_session(session_id)) == stored.session

        @rule(session_id=_ids, metadata=st.dictionaries(st.text(max_size=4), json_values(4)))
        def update(self, session_id: str, metadata: dict[str, Any]) -> None:
            stored = self.live(session_id)
            if stored is None:
                ghost = Session(id=session_id, transport="http", version=1)
                self.expect(SessionNotFoundError, self.store.update_session(ghost))
                return
            changed = stored.session.model_copy(deep=True)
            changed.metadata = metadata
            changed.response_mode = ResponseMode.SSE_STREAM
            self.run(self.store.update_session(changed))
            assert changed.version == stored.session.version + 1
            stored.session = changed.model_copy(deep=True)
            stored.deadline_ms = self.deadline()
            # An update must leave the last event id alone.
            assert self.run(self.store.get_last_event_id(session_id)) == stored.last_event_id

        @rule(session_id=_ids, offset=st.integers(min_value=1, max_value=3))
        def update_stale(self, session_id: str, offset: int) -> None:
            stored = self.live(session_id)
            if stored is None:
                return
            version = stored.session.version
            wrong = version - offset if version - offset >= 0 else version + offset
            stale = stored.session.model_copy(update={"version": wrong}, deep=True)
            stale.metadata = {"stale": True}
            error = self.expect(ConflictError, self.store.update_session(stale))
            assert error.session_ids == (session_id,)

        @rule(session_id=_ids)
        def delete(self, session_id: str) -> None:
            was_live = self.live(session_id) is not None
            assert self.run(self.store.delete_session(session_id)) is was_live
            self.forget(session_id)

        @rule(session_ids=st.lists(_ids, max_size=6))
        def get_batch(self, session_ids: list[str]) -> None:
            expected = [s.session for i in session_ids if (s := self.live(i)) is not None]
            assert self.run(self.store.get_sessions_batch(session_ids)) == expected

        @rule(
            session_ids=st.lists(_ids, min_size=1, max_size=4, unique=True),
            make_stale=st.booleans(),
            tag=st.integers(min_value=0, max_value=1000),
        )
        def update_batch(self, session_ids: list[str], make_stale: bool, tag: int) -> None:
            missing = [i for i in session_ids if self.live(i) is None]
            if not atomic_batches and (missing or make_stale):
                return  # only all-or-nothing backends promise anything for a failing batch
            batch = []
            for session_id in session_ids:
                stored = self.live(session_id)
                if stored is None:
                    batch.append(Session(id=session_id, transport="http", version=1))
                    continue
                copy = stored.session.model_copy(deep=True)
                copy.metadata = {"batch": tag}
                batch.append(copy)
            live_ids = [s.id for s in batch if s.id not in missing]
            stale_ids = []
            if make_stale and live_ids:
                victim = next(s for s in batch if s.id == live_ids[0])
                victim.__dict__["version"] = victim.version + 1
                stale_ids = [victim.id]
            if missing:
                error = self.expect(SessionNotFoundError, self.store.update_sessions_batch(batch))
                assert sorted(error.session_ids) == sorted(missing)
            elif stale_ids:
                error = self.expect(ConflictError, self.store.update_sessions_batch(batch))
                assert sorted(error.session_ids) == stale_ids
            else:
                self.run(self.store.update_sessions_batch(batch))
                for session in batch:
                    stored = self.model.sessions[session.id]
                    assert session.version == stored.session.version + 1
                    stored.session = session.model_copy(deep=True)
                    stored.deadline_ms = self.deadline()

        # -- last event ids --------------------------------------------------------------

        @rule(session_id=_ids, event_id=_event_ids)
        def store_last_event_id(self, session_id: str, event_id: str) -> None:
            stored = self.live(session_id)
            if stored is None:
                self.expect(
                    SessionNotFoundError, self.store.store_last_event_id(session_id, event_id)
                )
                return
            self.run(self.store.store_last_event_id(session_id, event_id))
            stored.last_event_id = event_id
            stored.deadline_ms = self.deadline()
            # ...and a last event id must leave the session (and its version) alone.
            assert self.run(self.store.get_session(session_id)) == stored.session

        @rule(session_id=_ids)
        def get_last_event_id(self, session_id: str) -> None:
            stored = self.live(session_id)
            if stored is None:
                self.expect(SessionNotFoundError, self.store.get_last_event_id(session_id))
            else:
                assert self.run(self.store.get_last_event_id(session_id)) == stored.last_event_id

        # -- events ----------------------------------------------------------------------

        @rule(
            session_id=_ids,
            stream_id=st.sampled_from(STREAMS),
            data=st.none() | st.binary(max_size=16),
        )
        def append_event(self, session_id: str, stream_id: str, data: bytes | None) -> None:
            stored = self.live(session_id)
            if stored is None:
                self.expect(
                    SessionNotFoundError, self.store.append_event(session_id, stream_id, data)
                )
                return
            event_id = self.run(self.store.append_event(session_id, stream_id, data))
            assert event_id not in self.model.events, f"event id {event_id!r} issued twice"
            key = (session_id, stored.generation, stream_id)
            issued = self.model.streams.setdefault(key, [])
            issued.append(event_id)
            self.model.events[event_id] = (session_id, stored.generation, stream_id, data)
            if len(issued) > 1:  # the stream's previous event is followed by this one only
                self.check_replay(issued[-2], "own")
            if len(issued) > RETENTION:  # the event just pushed out must be reported as evicted
                self.check_replay(issued[-RETENTION - 1], "own")

        @precondition(lambda self: bool(self.model.events))
        @rule(data=st.data(), scope=st.sampled_from(["none", "own"]))
        def replay(self, data: st.DataObject, scope: str) -> None:
            self.check_replay(data.draw(st.sampled_from(sorted(self.model.events))), scope)

        @precondition(lambda self: bool(self.model.events))
        @rule(data=st.data())
        def replay_as_another_session(self, data: st.DataObject) -> None:
            """A client of one session must never replay another session's events."""
            self.check_replay(data.draw(st.sampled_from(sorted(self.model.events))), "other")

        def check_replay(self, event_id: str, scope: str) -> None:
            session_id, generation, stream_id, _ = self.model.events[event_id]
            asked = {"none": None, "own": session_id}.get(
                scope, next(i for i in ID_POOL if i != session_id)
            )
            call = self.store.replay_events_after(event_id, session_id=asked)
            stored = self.live(session_id)
            if stored is None or stored.generation != generation or scope == "other":
                error = self.expect(EventNotFoundError, call)
                assert error.evicted is False
                return
            issued = self.model.streams[(session_id, generation, stream_id)]
            retained = issued[-RETENTION:]
            if event_id not in retained:
                error = self.expect(EventNotFoundError, call)
                assert error.evicted is True
                return
            after = retained[retained.index(event_id) + 1 :]
            replayed_stream, events = self.run(call)
            assert replayed_stream == stream_id
            assert [(e.id, e.stream_id, e.data) for e in events] == [
                (i, stream_id, self.model.events[i][3]) for i in after
            ]

        # -- time and housekeeping -------------------------------------------------------

        @precondition(lambda self: controllable)
        @rule(half_seconds=st.integers(min_value=0, max_value=50))
        def advance_clock(self, half_seconds: int) -> None:
            self.clock.advance(half_seconds / 2)

        @rule()
        def purge_expired(self) -> None:
            expired = [i for i in self.model.sessions if self.live(i) is None]
            assert self.run(self.store.purge_expired()) == len(expired)
            for session_id in expired:
                self.forget(session_id)

        @rule()
        def list_sessions(self) -> None:
            listed = self.run(self.store.list_sessions())
            expected = [s.session for i in self.model.sessions if (s := self.live(i)) is not None]
            assert sorted(listed, key=lambda s: s.id) == sorted(expected, key=lambda s: s.id)

        @invariant()
        def count_matches(self) -> None:
            live = sum(1 for i in self.model.sessions if self.live(i) is not None)
            assert self.run(self.store.count_sessions()) == live

    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            deadline=None,
            phases=CONTRACT_PHASES,
            stateful_step_count=40,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
