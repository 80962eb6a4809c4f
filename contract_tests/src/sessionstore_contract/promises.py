"""Promises: one deterministic test per sentence of the hookspecs not covered elsewhere.

Each test states the promise it checks in its docstring, and fails when that promise alone is
broken; ``docs/contract-suite.md`` ("Promise -> tests") maps every sentence of the contract to
its tests. The tests that watch deadlines use :class:`~sessionstore_contract.ManualClock`, so a
deadline that moved by a single millisecond is seen, never guessed at with sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

import msgpack
import pytest

from sessionstore import (
    Capability,
    ConflictError,
    CorruptRecordError,
    EventNotFoundError,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    SessionStore,
    hookimpl,
)

from .common import new_session
from .target import ContractTarget, ManualClock

__all__ = ["PromiseContract"]

TTL = 10
"""Seconds: the lifetime the clock-driven tests give their sessions."""


async def _furnish(store: SessionStore, session_id: str) -> str:
    """Create ``session_id`` with everything a session holds: an update (version 2), a last event
    id, and events in two streams (``a``: ``a1``, ``a2``; ``b``: a priming event). Returns the id
    of its first event, so ``replay_events_after`` of it yields ``a2``."""
    session = await store.create_session(new_session(session_id, metadata={"step": 1}))
    session.metadata = {"step": 2}
    await store.update_session(session)
    await store.store_last_event_id(session_id, f"last-of-{session_id}")
    first = await store.append_event(session_id, "a", b"a1")
    await store.append_event(session_id, "b", None)
    await store.append_event(session_id, "a", b"a2")
    return first


async def _replayed(store: SessionStore, event_id: str) -> tuple[str, list[bytes | None]]:
    stream_id, events = await store.replay_events_after(event_id)
    return stream_id, [e.data for e in events]


async def _assert_unknown_event(
    store: SessionStore, event_id: str, *, session_id: str | None = None
) -> None:
    with pytest.raises(EventNotFoundError) as raised:
        await store.replay_events_after(event_id, session_id=session_id)
    assert raised.value.evicted is False, f"{event_id!r} reported as evicted, not as unknown"


async def _assert_starts_clean(store: SessionStore, session_id: str, old_events: list[str]) -> None:
    """``session_id`` was just created again: nothing of its predecessor is found."""
    assert await store.get_last_event_id(session_id) is None, "the last event id carried over"
    assert (await store.dump_session(session_id)).streams == (), "the event log carried over"
    for event_id in old_events:
        await _assert_unknown_event(store, event_id)


_Paged = SessionRecord | CorruptRecordError
"""What a page holds: records, and in its place each record the backend could not read."""


class _PageLog:
    """Middleware recording every ``session_page`` call: (cursor, limit, ids, next cursor)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int, list[str], str | None]] = []

    @hookimpl(wrapper=True)
    def session_page(
        self, cursor: str | None, limit: int
    ) -> Generator[None, Any, Awaitable[tuple[Sequence[_Paged], str | None]]]:
        inner = yield

        async def logged() -> tuple[Sequence[_Paged], str | None]:
            records, next_cursor = await inner
            ids = [r.id if isinstance(r, SessionRecord) else r.session_id for r in records]
            self.calls.append((cursor, limit, ids, next_cursor))
            if len(self.calls) > 1000:  # a cursor that never reaches None: stop, loudly
                raise AssertionError(f"paging did not end after 1000 pages: {self.calls[-3:]}")
            return records, next_cursor

        return logged()


async def _view(
    handle: SessionStore, session_ids: Sequence[str], event_ids: Sequence[str]
) -> dict[str, object]:
    """Everything ``handle`` reads of ``session_ids`` and ``event_ids``, through every read."""
    view: dict[str, object] = {}
    for session_id in session_ids:
        reads: dict[str, Callable[[str], Awaitable[object]]] = {
            "get": handle.get_session,
            "last event id": handle.get_last_event_id,
            "dump": handle.dump_session,
        }
        for name, read in reads.items():
            try:
                view[f"{name} {session_id}"] = await read(session_id)
            except SessionNotFoundError:
                view[f"{name} {session_id}"] = "not found"
    view["batch"] = await handle.get_sessions_batch(session_ids)
    view["count"] = await handle.count_sessions()
    view["list"] = sorted((s.id, s.version) for s in await handle.list_sessions())
    for event_id in event_ids:
        try:
            view[f"replay {event_id}"] = await _replayed(handle, event_id)
        except EventNotFoundError as exc:
            view[f"replay {event_id}"] = ("not found", exc.evicted)
    return view


class PromiseContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

    # -- refused writes, reads and appends change nothing ---------------------------------------

    def test_a_refused_create_changes_nothing(self, sessionstore_target: ContractTarget) -> None:
        """session_create: a create refused with SessionExistsError leaves the live session
        exactly as it was: payload, version, deadline, last event id, events."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            first = await _furnish(store, "taken")
            before = await store.dump_session("taken")
            clock.advance(TTL / 2)
            with pytest.raises(SessionExistsError):
                await store.create_session(new_session("taken", metadata={"step": "again"}))
            assert await store.dump_session("taken") == before
            assert await _replayed(store, first) == ("a", [b"a2"])
            clock.advance(TTL / 2 - 0.001)
            assert (await store.get_session("taken")).metadata == {"step": 2}
            clock.advance(0.001)  # the deadline it had before the refused create
            with pytest.raises(SessionNotFoundError):
                await store.get_session("taken")

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_refused_writes_change_nothing(self, sessionstore_target: ContractTarget) -> None:
        """A refused write (an error raised, or load_session returning False) changes nothing and
        moves no deadline: a stale update, a stale or incomplete batch (where batches are
        atomic), a load over a live session."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        atomic_batches = Capability.ATOMIC_BATCH_UPDATE not in sessionstore_target.capabilities
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            for session_id in ("kept", "other"):
                await _furnish(store, session_id)
            before = {i: await store.dump_session(i) for i in ("kept", "other")}
            clock.advance(TTL / 2)
            current = await store.get_session("kept")
            stale = current.model_copy(update={"version": 1})  # as read before the update
            by_hand = new_session("kept", version=1, metadata={"never": "read"})
            for refused in (stale, by_hand):
                with pytest.raises(ConflictError):
                    await store.update_session(refused)
            if atomic_batches:
                other = await store.get_session("other")
                with pytest.raises(ConflictError):
                    await store.update_sessions_batch([other, stale])
                ghost = new_session("never-created", version=1)
                with pytest.raises(SessionNotFoundError):
                    await store.update_sessions_batch([other, ghost])
            changed = before["kept"]._replace(
                record=before["kept"].record._replace(version=9, deadline_ms=None),
                last_event_id="from-the-load",
                streams=(("loaded", (b"x",)),),
            )
            assert await store.load_session(changed) is False
            for session_id, dump in before.items():
                assert await store.dump_session(session_id) == dump, session_id
            clock.advance(TTL / 2 - 0.001)
            assert await store.count_sessions() == 2
            clock.advance(0.001)
            assert await store.count_sessions() == 0, "a refused write moved a deadline"

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_reads_never_change_a_session(self, sessionstore_target: ContractTarget) -> None:
        """session_get "never changes anything", and no other read does either: get, batch get,
        count, list, last event id, replay, dump (and raw_get where offered) move no deadline and
        change no version, payload, last event id or event."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            first = await _furnish(store, "read")
            before = await store.dump_session("read")
            clock.advance(TTL - 0.001)
            for _ in range(2):
                await store.get_session("read")
                await store.get_sessions_batch(["read", "absent"])
                assert await store.count_sessions() == 1
                assert [s.id for s in await store.list_sessions()] == ["read"]
                assert await store.get_last_event_id("read") == "last-of-read"
                assert await _replayed(store, first) == ("a", [b"a2"])
                await store.replay_events_after(first, session_id="read")
                assert await store.dump_session("read") == before
                assert [d.record.id async for d in store.iter_dumps()] == ["read"]
                if store.offers_raw_get:
                    await store.raw_get("read")
            clock.advance(0.001)
            with pytest.raises(SessionNotFoundError):
                await store.get_session("read")
            assert await store.count_sessions() == 0, "a read moved the deadline"

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_an_append_moves_no_deadline(self, sessionstore_target: ContractTarget) -> None:
        """event_append "does not move the session's deadline, version or payload": a session
        that only receives events expires when its last write said."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("busy", metadata={"n": 1}))
            before = (await store.dump_session("busy")).record
            for step in range(4):
                clock.advance(TTL / 4 - (0.001 if step == 3 else 0))
                await store.append_event("busy", "st", bytes([step]))
                assert (await store.dump_session("busy")).record == before
            clock.advance(0.001)
            with pytest.raises(SessionNotFoundError):
                await store.append_event("busy", "st", b"late")
            assert await store.count_sessions() == 0, "an append moved the deadline"

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    # -- compare-and-set --------------------------------------------------------------------------

    def test_an_update_leaves_the_last_event_id_and_events_alone(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_update (and each record of session_update_many) "replaces the payload, version
        and deadline; leaves the last event id and the event log alone"."""

        async def scenario(store: SessionStore) -> None:
            first = await _furnish(store, "logged")
            before = await store.dump_session("logged")
            session = await store.get_session("logged")
            session.metadata = {"step": 3}
            await store.update_session(session)
            session.metadata = {"step": 4}
            await store.update_sessions_batch([session])
            after = await store.dump_session("logged")
            assert after.record.version == before.record.version + 2
            assert after.last_event_id == before.last_event_id == "last-of-logged"
            assert after.streams == before.streams == (("a", (b"a1", b"a2")), ("b", (None,)))
            assert await _replayed(store, first) == ("a", [b"a2"])
            assert (await store.get_session("logged")).metadata == {"step": 4}

        sessionstore_target.run(scenario)

    def test_an_update_keeps_the_stored_incarnation(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_update: a record with incarnation 0 (a session built by hand, never read) is
        compared by version only, and "the stored incarnation never changes on update"; so a
        writer who read the session after such an update still cannot overwrite the session
        created again under its id."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("inc", metadata={"by": "create"}))
            incarnation = (await store.dump_session("inc")).record.incarnation
            await store.update_session(new_session("inc", version=1, metadata={"by": "hand"}))
            assert (await store.dump_session("inc")).record.incarnation == incarnation
            await store.update_sessions_batch([new_session("inc", version=2)])
            assert (await store.dump_session("inc")).record.incarnation == incarnation
            holder = await store.get_session("inc")  # version 3, of this creation
            await store.delete_session("inc")
            successor = await store.create_session(new_session("inc", metadata={"by": "next"}))
            for _ in range(2):
                successor = await store.update_session(successor)
            assert successor.version == holder.version == 3
            holder.metadata = {"by": "a writer of the deleted session"}
            with pytest.raises(ConflictError):
                await store.update_session(holder)
            with pytest.raises(ConflictError):
                await store.update_sessions_batch([holder])
            assert await store.get_session("inc") == successor

        sessionstore_target.run(scenario)

    def test_a_batch_update_moves_every_deadline(self, sessionstore_target: ContractTarget) -> None:
        """session_update_many: each written record replaces payload, version "and deadline":
        every session of the batch gets the new deadline (now + ttl), to the millisecond."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            ids = ["b1", "b2", "b3"]
            for session_id in ids:
                await store.create_session(new_session(session_id))
            clock.advance(TTL / 2)
            batch = await store.get_sessions_batch(ids)
            for session in batch:
                session.metadata = {"batch": True}
            await store.update_sessions_batch(batch)
            deadline = round(clock() * 1000) + TTL * 1000
            for session_id in ids:
                assert (await store.dump_session(session_id)).record.deadline_ms == deadline
            clock.advance(TTL - 0.001)
            assert await store.count_sessions() == 3
            clock.advance(0.001)
            assert await store.count_sessions() == 0

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_not_found_comes_before_conflict_and_names_every_id(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_update raises SessionNotFoundError when no live session has the id, even for
        a stale version (an expired session); session_update_many names every missing id (expired
        ones included) before any conflict, and then every stale id."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        atomic_batches = Capability.ATOMIC_BATCH_UPDATE not in sessionstore_target.capabilities
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            old = await store.create_session(new_session("expired"))
            await store.update_session(await store.get_session("expired"))  # old is now stale
            clock.advance(TTL / 2)
            stale = {}
            for session_id in ("fine", "stale-1", "stale-2"):
                await store.create_session(new_session(session_id, metadata={"v": 0}))
                stale[session_id] = await store.get_session(session_id)
            for session_id in ("stale-1", "stale-2"):
                await store.update_session(await store.get_session(session_id))
            clock.advance(TTL / 2)  # "expired" is past its deadline, not purged
            with pytest.raises(SessionNotFoundError):
                await store.update_session(old)
            fine = await store.get_session("fine")
            fine.metadata = {"v": "batch"}
            batch = [fine, stale["stale-1"], old, stale["stale-2"], new_session("never", version=1)]
            with pytest.raises(SessionNotFoundError) as missing:
                await store.update_sessions_batch(batch)
            assert sorted(missing.value.session_ids) == ["expired", "never"]
            with pytest.raises(ConflictError) as conflict:
                await store.update_sessions_batch([fine, stale["stale-1"], stale["stale-2"]])
            assert sorted(conflict.value.session_ids) == ["stale-1", "stale-2"]
            if atomic_batches:
                assert (await store.get_session("fine")).metadata == {"v": 0}

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    # -- delete, purge, clear ---------------------------------------------------------------------

    def test_delete_of_an_expired_session_returns_false(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_delete returns "whether it was live": an expired session, not yet purged, was
        not."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            await _furnish(store, "late")
            clock.advance(TTL / 2)
            await store.create_session(new_session("fresh"))
            clock.advance(TTL / 2)  # "late" is past its deadline, not purged
            assert await store.delete_session("late") is False
            assert await store.delete_session("fresh") is True
            assert await store.delete_session("late") is False
            assert await store.count_sessions() == 0
            assert await store.purge_expired() == 0, "the expired session was not deleted"

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_delete_removes_the_last_event_id_and_events(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_delete removes "the session, its last event id and its event log": the id
        created again starts with none of them."""

        async def scenario(store: SessionStore) -> None:
            first = await _furnish(store, "gone")
            later = await store.append_event("gone", "a", b"a3")
            assert await store.delete_session("gone") is True
            await store.create_session(new_session("gone"))
            await _assert_starts_clean(store, "gone", [first, later])
            new = await store.append_event("gone", "a", b"new")
            assert await _replayed(store, new) == ("a", [])

        sessionstore_target.run(scenario)

    def test_purge_removes_exactly_the_expired_with_their_data(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_purge_expired removes every expired session "with its last event id and
        events" and returns how many; a session whose deadline is one millisecond later is live
        and untouched."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            events = {}
            for session_id in ("expired-1ms-ago", "expires-now", "one-ms-left"):
                events[session_id] = await _furnish(store, session_id)
                clock.advance(0.001)
            clock.advance(TTL - 0.002)
            assert await store.count_sessions() == 1
            assert await store.purge_expired() == 2
            assert await store.purge_expired() == 0
            assert await _replayed(store, events["one-ms-left"]) == ("a", [b"a2"])
            assert await store.get_last_event_id("one-ms-left") == "last-of-one-ms-left"
            for session_id in ("expired-1ms-ago", "expires-now"):
                await _assert_unknown_event(store, events[session_id])
                await store.create_session(new_session(session_id))
                await _assert_starts_clean(store, session_id, [events[session_id]])

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_purge_stays_within_its_namespace(self, sessionstore_target: ContractTarget) -> None:
        """session_purge_expired: "live sessions and other namespaces are untouched": an expired
        session of another namespace is neither counted nor removed."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            async with sessionstore_target.open(ttl=TTL, clock=clock) as other:
                try:
                    await store.create_session(new_session("shared-id"))
                    for session_id in ("shared-id", "theirs"):
                        await other.create_session(new_session(session_id))
                    clock.advance(TTL)
                    await other.create_session(new_session("their-live-one"))
                    assert await store.purge_expired() == 1
                    assert await other.count_sessions() == 1
                    assert await other.purge_expired() == 2
                    assert [s.id for s in await other.list_sessions()] == ["their-live-one"]
                finally:
                    await other.clear()

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_clear_removes_everything_of_its_namespace_and_nothing_else(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """store_clear removes "every session, last event id and event of this namespace, and
        nothing else"."""

        async def scenario(store: SessionStore) -> None:
            mine = await _furnish(store, "same-id")
            async with sessionstore_target.open() as other:
                try:
                    theirs = await _furnish(other, "same-id")
                    kept = await other.dump_session("same-id")
                    await store.clear()
                    assert await store.count_sessions() == 0
                    assert await store.list_sessions() == []
                    await _assert_unknown_event(store, mine)
                    await store.create_session(new_session("same-id"))
                    await _assert_starts_clean(store, "same-id", [mine])
                    assert await other.dump_session("same-id") == kept
                    assert await _replayed(other, theirs) == ("a", [b"a2"])
                finally:
                    await other.clear()

        sessionstore_target.run(scenario)

    # -- paging -----------------------------------------------------------------------------------

    def test_pages_hold_at_most_limit_records_and_end_with_none(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_page returns "up to limit live records after cursor and the cursor of the next
        page"; the cursor is None when there are no more pages (a backend may end with one empty
        page), and every session is on exactly one page."""
        ids = [f"p{n:02}" for n in range(11)]
        for page_size in (1, 4, 11, 12):
            log = _PageLog()

            async def scenario(store: SessionStore) -> list[str]:
                for session_id in ids:
                    await store.create_session(new_session(session_id))
                return [s.id async for s in store.iter_sessions()]

            seen = sessionstore_target.run(scenario, page_size=page_size, middleware=[log])
            assert sorted(seen) == ids, f"page_size={page_size}"
            assert log.calls[0][0] is None
            assert log.calls[-1][3] is None
            for before, after in zip(log.calls, log.calls[1:], strict=False):
                assert before[3] is not None
                assert after[0] == before[3]
            for cursor, limit, page, _ in log.calls:
                assert limit == page_size
                assert len(page) <= limit, f"a page of {len(page)} records after {cursor!r}"
            assert sorted(i for call in log.calls for i in call[2]) == ids

    # -- event ids and replays --------------------------------------------------------------------

    def test_event_ids_are_never_issued_twice_in_a_namespace(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """event_append: ids are unique in the namespace "and never issued twice there, even after
        their session was deleted, purged, expired or cleared and its id created again"; an old
        id never names an event of the new creation."""
        controllable = Capability.CONTROLLABLE_CLOCK not in sessionstore_target.capabilities
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            issued: list[str] = []

            async def expire() -> None:
                clock.advance(TTL)

            async def purge() -> None:
                clock.advance(TTL)
                assert await store.purge_expired() == 2

            async def delete() -> None:
                for session_id in ("s", "t"):
                    assert await store.delete_session(session_id) is True

            ends: list[Callable[[], Awaitable[object]]] = [delete, store.clear]
            if controllable:
                ends += [expire, purge]
            for end in [*ends, delete]:
                for session_id in ("s", "t"):
                    await store.create_session(new_session(session_id))
                life = [
                    await store.append_event(session_id, stream_id, b"x")
                    for session_id, stream_id in [("s", "1"), ("s", "1"), ("s", "2"), ("t", "1")]
                ]
                reissued = set(life) & set(issued)
                assert not reissued, f"event ids issued again after {end.__name__}: {reissued}"
                for event_id in issued:
                    await _assert_unknown_event(store, event_id)
                issued += life
                await end()

        options = {"ttl": TTL, "clock": clock} if controllable else {}
        sessionstore_target.run(scenario, **options)

    def test_replays_never_reach_another_namespace(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """event_replay finds only events of its own namespace, with or without a session id:
        "another namespace may issue the same ids: a replay only ever finds events of its own
        namespace"."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            mine = [await store.append_event("s", "st", bytes([n])) for n in range(3)]
            async with sessionstore_target.open() as other:
                try:
                    for event_id in mine:
                        await _assert_unknown_event(other, event_id)
                        await _assert_unknown_event(other, event_id, session_id="s")
                    await other.create_session(new_session("s"))
                    theirs = await other.append_event("s", "st", b"theirs")
                    for event_id in mine:
                        if event_id == theirs:  # the same id, issued in each namespace
                            assert await _replayed(other, event_id) == ("st", [])
                        else:
                            await _assert_unknown_event(other, event_id)
                    assert await _replayed(store, mine[0]) == ("st", [bytes([1]), bytes([2])])
                finally:
                    await other.clear()

        sessionstore_target.run(scenario)

    def test_an_evicted_cursor_is_reported_only_to_its_own_live_session(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """event_replay raises evicted=True only for an event its own live session dropped by
        retention; an evicted event asked for by another session, or whose session is gone, is
        unknown (evicted=False)."""

        async def scenario(store: SessionStore) -> None:
            for session_id in ("owner", "stranger"):
                await store.create_session(new_session(session_id))
            ids = [await store.append_event("owner", "st", bytes([n])) for n in range(4)]
            await store.append_event("stranger", "st", b"theirs")
            for evicted in ids[:2]:
                for scope in (None, "owner"):
                    with pytest.raises(EventNotFoundError) as raised:
                        await store.replay_events_after(evicted, session_id=scope)
                    assert raised.value.evicted is True
                await _assert_unknown_event(store, evicted, session_id="stranger")
            assert await _replayed(store, ids[2]) == ("st", [bytes([3])])
            await store.delete_session("owner")
            for event_id in ids:
                await _assert_unknown_event(store, event_id)

        sessionstore_target.run(scenario, event_retention=2)

    # -- dump and load ----------------------------------------------------------------------------

    def test_dump_lists_streams_in_creation_order_with_their_retained_events(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_dump: "streams in the order they were created, each with its events' data
        oldest first", only the events retention kept, priming events (None) included."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("d"))
            for stream_id, data in [
                ("zeta", b"z1"),
                ("alpha", None),
                ("zeta", b"z2"),
                ("mid", b"m1"),
                ("zeta", b"z3"),
                ("alpha", b"a2"),
            ]:
                await store.append_event("d", stream_id, data)
            dump = await store.dump_session("d")
            assert dump.streams == (
                ("zeta", (b"z2", b"z3")),
                ("alpha", (None, b"a2")),
                ("mid", (b"m1",)),
            )

        sessionstore_target.run(scenario, event_retention=2)

    def test_load_keeps_the_newest_events_of_each_stream(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_load appends each stream's events in order under new event ids, "at most
        retention per stream, the newest"."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("moved"))
            for n in range(5):
                await store.append_event("moved", "st", bytes([n]))
            await store.append_event("moved", "priming", None)
            dump = await store.dump_session("moved")
            async with sessionstore_target.open(event_retention=2) as target:
                try:
                    assert await target.load_session(dump) is True
                    loaded = await target.dump_session("moved")
                    assert loaded.streams == (
                        ("st", (bytes([3]), bytes([4]))),
                        ("priming", (None,)),
                    )
                    assert loaded.record == dump.record
                    new = await target.append_event("moved", "st", b"new")
                    assert await _replayed(target, new) == ("st", [])
                    assert (await target.dump_session("moved")).streams[0] == (
                        "st",
                        (bytes([4]), b"new"),
                    )
                finally:
                    await target.clear()

        sessionstore_target.run(scenario)

    def test_load_replaces_an_expired_session_whole(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """session_load: "an expired session with the id is replaced whole": its last event id
        and events do not carry over into the loaded one."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            old = await _furnish(store, "reused")
            clock.advance(TTL)
            async with sessionstore_target.open(ttl=TTL, clock=clock) as source:
                try:
                    await source.create_session(new_session("reused", metadata={"from": "src"}))
                    await source.append_event("reused", "b", b"new")
                    dump = await source.dump_session("reused")
                finally:
                    await source.clear()
            assert await store.load_session(dump) is True
            assert await store.dump_session("reused") == dump
            assert await store.get_last_event_id("reused") is None
            await _assert_unknown_event(store, old)

        sessionstore_target.run(scenario, ttl=TTL, clock=clock)

    def test_unknown_fields_survive_a_read_modify_write(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Payload bytes are returned unchanged: fields a newer release wrote, which this one does
        not know, come back byte for byte and survive an update and a batch update."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("future", metadata={"v": 1}))
            dump = await store.dump_session("future")
            envelope, fields = msgpack.unpackb(dump.record.payload)
            fields["from_a_newer_release"] = {"kept": [1, "two", None]}
            payload: bytes = msgpack.packb([envelope, fields])
            await store.delete_session("future")
            newer = dump._replace(record=dump.record._replace(payload=payload))
            assert await store.load_session(newer) is True
            assert (await store.dump_session("future")).record.payload == payload
            session = await store.get_session("future")
            session.metadata = {"v": 2}
            await store.update_session(session)
            session.metadata = {"v": 3}
            await store.update_sessions_batch([session])
            _, stored = msgpack.unpackb((await store.dump_session("future")).record.payload)
            assert stored["from_a_newer_release"] == {"kept": [1, "two", None]}
            assert await store.get_session("future") == session

        sessionstore_target.run(scenario)

    # -- handles ----------------------------------------------------------------------------------

    def test_a_read_through_one_handle_sees_every_write_of_another(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Every hook is linearizable across handles: "a read that starts after a write returned,
        through any handle, sees that write". After each kind of write through one handle,
        every kind of read through another returns what the writer's own reads return."""
        sessionstore_target.require(Capability.SHARED_HANDLES)
        controllable = Capability.CONTROLLABLE_CLOCK not in sessionstore_target.capabilities
        clock = ManualClock()
        options: dict[str, Any] = {"ttl": TTL, "clock": clock} if controllable else {}

        async def scenario(writer: SessionStore) -> None:
            ids = ("a", "b")
            cursors: list[str] = []
            async with sessionstore_target.open(namespace=writer.namespace, **options) as reader:

                async def check(after: str, count: int) -> None:
                    seen = await _view(writer, ids, cursors)
                    assert seen["count"] == count, f"after {after}, the writer's own count"
                    assert await _view(reader, ids, cursors) == seen, f"after {after}"

                await check("nothing", 0)
                await writer.create_session(new_session("a", metadata={"n": 1}))
                await check("create", 1)
                session = await writer.get_session("a")
                session.metadata = {"n": 2}
                await writer.update_session(session)
                await check("update", 1)
                await writer.store_last_event_id("a", "last-1")
                await check("store_last_event_id", 1)
                for data in (b"1", b"2", None):
                    cursors.append(await writer.append_event("a", "st", data))
                    await check("append_event", 1)
                await writer.create_session(new_session("b"))
                await check("create", 2)
                batch = await writer.get_sessions_batch(ids)
                for session in batch:
                    session.metadata = {"n": "batch"}
                await writer.update_sessions_batch(batch)
                await check("update_sessions_batch", 2)
                dump = await writer.dump_session("a")
                assert await writer.delete_session("a") is True
                await check("delete", 1)
                assert await writer.load_session(dump) is True
                await check("load_session", 2)
                if controllable:
                    clock.advance(TTL)
                    await check("expiry", 0)
                    await writer.create_session(new_session("b"))
                    assert await writer.purge_expired() == 1
                    await check("purge_expired", 1)
                await writer.clear()
                await check("clear", 0)

        sessionstore_target.run(scenario, **options)

    # -- capabilities -----------------------------------------------------------------------------

    def test_declared_capabilities_come_with_reasons(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """store_capabilities: each missing capability comes with the reason the suite skips its
        tests with; nothing is skipped silently."""

        for capability, reason in sessionstore_target.capabilities.items():
            assert reason.strip(), f"{capability.value} is declared missing without a reason"
