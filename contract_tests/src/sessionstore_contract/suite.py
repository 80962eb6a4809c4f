"""The contract: every guarantee of sessionstore as a test any backend can run.

Subclass :class:`StoreContract` in a test module and provide the ``sessionstore_target`` fixture
(the plugin provides one from ``--sessionstore-backend`` / ``--sessionstore-factory``)::

    @pytest.fixture(scope="session")
    def sessionstore_target():
        return ContractTarget.from_spec("mybackend://localhost")

    class TestMyBackend(StoreContract):
        pass

A subclass may override a standard test only to mark it ``@pytest.mark.xfail(reason=...)``;
anything else is refused when the class is defined. Capabilities a backend declares missing skip
their tests with the declared reason.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from hypothesis import given

from sessionstore import (
    Capability,
    ConflictError,
    EventNotFoundError,
    InvalidSessionError,
    MetricsMiddleware,
    ResponseMode,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    SessionStatus,
    SessionStore,
    TransportType,
)

from .boundaries import BoundaryContract
from .common import CONTRACT_SETTINGS, assert_gone, new_session
from .concurrency import ConcurrencyContract
from .notifications import NotificationContract
from .processes import ProcessContract
from .promises import PromiseContract
from .stateful import run_state_machine
from .strategies import INVALID_IDS, STRANGE_IDS, sessions
from .target import ContractTarget, ManualClock

__all__ = ["ContractOverrideError", "StoreContract"]


class ContractOverrideError(TypeError):
    """A subclass replaced a standard contract test without marking it xfail with a reason."""


class StoreContract(
    PromiseContract, BoundaryContract, ConcurrencyContract, ProcessContract, NotificationContract
):
    """Every guarantee of DESIGN.md, as tests of the store the ``sessionstore_target`` opens."""

    standard_tests: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if name not in StoreContract.standard_tests:
                continue
            marks = getattr(value, "pytestmark", [])
            if not any(m.name == "xfail" and m.kwargs.get("reason") for m in marks):
                raise ContractOverrideError(
                    f"{cls.__qualname__}.{name} overrides a contract test; a backend may only "
                    f"mark it @pytest.mark.xfail(reason='why this backend cannot keep it')"
                )

    # -- 1. serialization ---------------------------------------------------------------------

    @given(session=sessions())
    @CONTRACT_SETTINGS
    def test_roundtrip_create_get(
        self, sessionstore_target: ContractTarget, session: Session
    ) -> None:
        """Every valid session comes back unchanged from get, batch get and listing."""

        async def scenario(store: SessionStore) -> None:
            stored = await store.create_session(session.model_copy(deep=True))
            assert stored.version == 1
            expected = session.model_copy(update={"version": 1}, deep=True)
            assert await store.get_session(session.id) == expected
            assert await store.get_sessions_batch([session.id]) == [expected]
            assert await store.list_sessions() == [expected]

        sessionstore_target.run(scenario)

    @given(first=sessions(), second=sessions())
    @CONTRACT_SETTINGS
    def test_roundtrip_update(
        self, sessionstore_target: ContractTarget, first: Session, second: Session
    ) -> None:
        """An update replaces every field; the stored session equals what was written."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(first)
            replacement = second.model_copy(update={"id": first.id, "version": 1}, deep=True)
            await store.update_session(replacement)
            assert replacement.version == 2
            assert await store.get_session(first.id) == replacement

        sessionstore_target.run(scenario)

    def test_every_enum_value_roundtrips(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            written = []
            for transport in TransportType:
                for mode in [None, *ResponseMode]:
                    for status in SessionStatus:
                        written.append(
                            await store.create_session(
                                Session(transport=transport, response_mode=mode, status=status)
                            )
                        )
            read = await store.get_sessions_batch([s.id for s in written])
            assert read == written

        sessionstore_target.run(scenario)

    def test_large_and_unicode_metadata_roundtrips(
        self, sessionstore_target: ContractTarget
    ) -> None:
        metadata = {
            "blob": "\u00e9\u4e2d\U0001f600" * 200_000,
            "nested": {"list": list(range(10_000)), "deep": [[[[{"x": None}]]]]},
            "": "empty key",
            "floats": [0.1, -0.0, 1e308, -1e-308],
            "ints": [-(2**63), 2**64 - 1, 0],
        }
        when = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)

        async def scenario(store: SessionStore) -> None:
            session = new_session(metadata=metadata, created_at=when, last_activity=when)
            await store.create_session(session)
            assert await store.get_session(session.id) == session
            assert (await store.get_session(session.id)).created_at.microsecond == 789012

        sessionstore_target.run(scenario)

    # -- 2. atomicity ---------------------------------------------------------------------------

    def test_create_existing_raises(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            first = await store.create_session(new_session("dup", metadata={"n": 1}))
            with pytest.raises(SessionExistsError):
                await store.create_session(new_session("dup", metadata={"n": 2}))
            assert await store.get_session("dup") == first

        sessionstore_target.run(scenario)

    def test_concurrent_creates_one_wins(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            results = await asyncio.gather(
                *(store.create_session(new_session("race", metadata={"n": n})) for n in range(20)),
                return_exceptions=True,
            )
            winners = [r for r in results if isinstance(r, Session)]
            assert len(winners) == 1
            assert all(isinstance(r, SessionExistsError) for r in results if r not in winners)
            assert await store.get_session("race") == winners[0]

        sessionstore_target.run(scenario)

    def test_stale_update_raises_conflict(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("cas"))
            reader_a = await store.get_session("cas")
            reader_b = await store.get_session("cas")
            reader_a.metadata = {"writer": "a"}
            reader_b.metadata = {"writer": "b"}
            await store.update_session(reader_a)
            with pytest.raises(ConflictError) as raised:
                await store.update_session(reader_b)
            assert raised.value.session_ids == ("cas",)
            assert reader_b.version == 1, "a refused update must not change the session object"
            stored = await store.get_session("cas")
            assert stored.metadata == {"writer": "a"}
            assert stored.version == 2

        sessionstore_target.run(scenario)

    def test_a_writer_of_a_deleted_session_cannot_overwrite_its_successor(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Versions restart at 1 when an id is created again; a writer still holding version 1 of
        the old session must get ConflictError, not replace the new one."""

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("reused", metadata={"owner": "first"}))
            stale = await store.get_session("reused")
            await store.delete_session("reused")
            successor = await store.create_session(new_session("reused", metadata={"owner": "new"}))
            stale.metadata = {"owner": "stale writer"}
            with pytest.raises(ConflictError):
                await store.update_session(stale)
            with pytest.raises(ConflictError):
                await store.update_sessions_batch([stale])
            assert await store.get_session("reused") == successor
            successor.metadata = {"owner": "new, updated"}
            await store.update_session(successor)
            assert (await store.get_session("reused")).version == 2

        sessionstore_target.run(scenario)

    def test_update_of_missing_session_raises_not_found(
        self, sessionstore_target: ContractTarget
    ) -> None:
        async def scenario(store: SessionStore) -> None:
            session = await store.create_session(new_session("gone"))
            assert await store.delete_session("gone") is True
            with pytest.raises(SessionNotFoundError):
                await store.update_session(session)
            with pytest.raises(SessionNotFoundError):
                await store.update_session(new_session("never-created"))
            assert await store.count_sessions() == 0

        sessionstore_target.run(scenario)

    def test_concurrent_modify_session_loses_no_increment(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """50 tasks x 4 increments through modify_session end at exactly 200."""

        async def increment(session: Session) -> None:
            count = session.metadata.get("count", 0)
            await asyncio.sleep(0)  # let other writers read the same version
            session.metadata = {"count": count + 1}

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("counter", metadata={"count": 0}))

            async def worker() -> None:
                for _ in range(4):
                    await store.modify_session("counter", increment)

            await asyncio.gather(*(worker() for _ in range(50)))
            final = await store.get_session("counter")
            assert final.metadata == {"count": 200}
            assert final.version == 201

        sessionstore_target.run(scenario, modify_attempts=1000)

    def test_concurrent_modify_across_handles(self, sessionstore_target: ContractTarget) -> None:
        """Two store handles on one namespace, as two proxy instances: no increment is lost."""
        sessionstore_target.require(Capability.SHARED_HANDLES)

        async def increment(session: Session) -> None:
            count = session.metadata["count"]
            await asyncio.sleep(0)
            session.metadata = {"count": count + 1}

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("shared", metadata={"count": 0}))
            async with sessionstore_target.open(
                namespace=store.namespace, modify_attempts=1000
            ) as other:

                async def worker(handle: SessionStore) -> None:
                    for _ in range(10):
                        await handle.modify_session("shared", increment)

                await asyncio.gather(*(worker(h) for h in [store, other] * 10))
                assert (await other.get_session("shared")).metadata == {"count": 200}

        sessionstore_target.run(scenario, modify_attempts=1000)

    def test_batch_update_writes_all(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            for name in "abc":
                await store.create_session(new_session(name))
            batch = await store.get_sessions_batch(["a", "b", "c"])
            for session in batch:
                session.metadata = {"batch": session.id}
            updated = await store.update_sessions_batch(batch)
            assert [s.version for s in updated] == [2, 2, 2]
            assert await store.get_sessions_batch(["a", "b", "c"]) == updated

        sessionstore_target.run(scenario)

    def test_batch_update_is_all_or_nothing(self, sessionstore_target: ContractTarget) -> None:
        """One stale session in a batch: ConflictError naming exactly it, nothing written."""
        sessionstore_target.require(Capability.ATOMIC_BATCH_UPDATE)

        async def scenario(store: SessionStore) -> None:
            for name in ["a", "b", "c", "d"]:
                await store.create_session(new_session(name, metadata={"v": 0}))
            batch = await store.get_sessions_batch(["a", "b", "c", "d"])
            for stale_id in ["b", "d"]:
                concurrent = await store.get_session(stale_id)
                concurrent.metadata = {"v": "concurrent"}
                await store.update_session(concurrent)
            for session in batch:
                session.metadata = {"v": "batch"}
            with pytest.raises(ConflictError) as raised:
                await store.update_sessions_batch(batch)
            assert sorted(raised.value.session_ids) == ["b", "d"]
            assert [s.version for s in batch] == [1, 1, 1, 1]
            after = {s.id: s.metadata["v"] for s in await store.list_sessions()}
            assert after == {"a": 0, "b": "concurrent", "c": 0, "d": "concurrent"}

            await store.delete_session("c")
            fresh = await store.get_sessions_batch(["a", "b", "d"])
            for session in fresh:
                session.metadata = {"v": "second batch"}
            ghost = new_session("c", version=1)
            with pytest.raises(SessionNotFoundError) as missing:
                await store.update_sessions_batch([*fresh, ghost])
            assert missing.value.session_ids == ("c",)
            after = {s.id: s.metadata["v"] for s in await store.list_sessions()}
            assert after == {"a": 0, "b": "concurrent", "d": "concurrent"}

        sessionstore_target.run(scenario)

    def test_last_event_id_and_update_never_undo_each_other(
        self, sessionstore_target: ContractTarget
    ) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("sse"))
            assert await store.get_last_event_id("sse") is None
            read_before = await store.get_session("sse")
            await store.store_last_event_id("sse", "event-1")
            read_before.response_mode = ResponseMode.SSE_STREAM
            await store.update_session(read_before)  # written from a read older than event-1
            assert await store.get_last_event_id("sse") == "event-1"
            await store.store_last_event_id("sse", "event-2")
            stored = await store.get_session("sse")
            assert stored.response_mode is ResponseMode.SSE_STREAM
            assert stored.version == 2, "storing a last event id must not change the version"
            assert await store.get_last_event_id("sse") == "event-2"
            with pytest.raises(SessionNotFoundError):
                await store.store_last_event_id("absent", "event-1")
            with pytest.raises(SessionNotFoundError):
                await store.get_last_event_id("absent")

        sessionstore_target.run(scenario)

    # -- 3. expiry ----------------------------------------------------------------------------

    def test_expired_session_is_gone_for_every_read(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """With the real clock: after the ttl, every read, count, list and batch misses it."""

        async def scenario(store: SessionStore) -> None:
            doomed = await store.create_session(new_session("doomed"))
            await store.store_last_event_id("doomed", "e1")
            event_id = await store.append_event("doomed", "stream", b"data")
            await asyncio.sleep(0.6)
            assert await store.count_sessions() == 0, "counted before any purge"
            await assert_gone(store, "doomed", doomed, event_id)
            assert await store.purge_expired() in (0, 1)
            assert await store.delete_session("doomed") is False
            assert await store.count_sessions() == 0
            assert await store.create_session(new_session("doomed"))  # the id is free again

        sessionstore_target.run(scenario, ttl=0.3)

    def test_expiry_follows_the_clock_to_the_millisecond(
        self, sessionstore_target: ContractTarget
    ) -> None:
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            kept = await store.create_session(new_session("kept"))
            doomed = await store.create_session(new_session("doomed"))
            event_id = await store.append_event("doomed", "s", b"x")
            clock.advance(8)
            await store.update_session(kept)  # writes move the deadline
            await store.get_session("doomed")  # reads do not
            await store.get_sessions_batch(["doomed"])
            clock.advance(1.999)
            assert await store.count_sessions() == 2
            clock.advance(0.001)
            await assert_gone(store, "doomed", doomed, event_id)
            assert await store.count_sessions() == 1
            assert [s.id for s in await store.list_sessions()] == ["kept"]
            assert await store.purge_expired() == 1
            assert await store.purge_expired() == 0
            clock.advance(7.5)
            await store.store_last_event_id("kept", "e")  # so does a last event id
            clock.advance(9.5)
            assert (await store.get_session("kept")).version == 2
            clock.advance(0.5)
            assert await store.count_sessions() == 0
            assert await store.purge_expired() == 1

        sessionstore_target.run(scenario, ttl=10, clock=clock)

    def test_count_expired_is_what_purge_then_removes(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """The optional ``session_count_expired`` hook (``purge --dry-run``): where offered, it
        counts exactly the sessions that ``purge_expired`` then removes, expired by the store's
        clock, and removes nothing; live sessions and another namespace's are not counted."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            if not store.offers_count_expired:
                pytest.skip(
                    "the backend does not offer the optional session_count_expired hook "
                    "(purge --dry-run)"
                )
            async with sessionstore_target.open(clock=clock, ttl=10) as other:
                try:
                    assert await store.count_expired() == 0
                    for number in range(3):
                        await store.create_session(new_session(f"old-{number}"))
                    await store.append_event("old-0", "s", b"x")
                    await other.create_session(new_session("old-other"))
                    clock.advance(5)
                    for number in range(2):
                        await store.create_session(new_session(f"live-{number}"))
                    clock.advance(4.999)
                    assert await store.count_expired() == 0, "counted a live session"
                    clock.advance(0.001)
                    assert await store.count_expired() == 3
                    assert await store.count_expired() == 3, "counting removed something"
                    assert await store.count_sessions() == 2
                    assert await other.count_expired() == 1
                    assert await store.purge_expired() == 3
                    assert await store.count_expired() == 0
                    assert await other.count_expired() == 1, "another namespace's purge"
                    assert await store.count_sessions() == 2
                    clock.advance(5)
                    assert await store.count_expired() == 2
                    assert await store.purge_expired() == 2
                finally:
                    await other.clear()

        sessionstore_target.run(scenario, ttl=10, clock=clock)

    def test_recreated_session_starts_clean(self, sessionstore_target: ContractTarget) -> None:
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("phoenix", metadata={"life": 1}))
            await store.store_last_event_id("phoenix", "old")
            old_event = await store.append_event("phoenix", "s", b"old")
            await store.append_event("phoenix", "s", b"old too")
            clock.advance(11)
            reborn = await store.create_session(new_session("phoenix", metadata={"life": 2}))
            assert reborn.version == 1
            assert await store.get_last_event_id("phoenix") is None
            with pytest.raises(EventNotFoundError):
                await store.replay_events_after(old_event)
            new_event = await store.append_event("phoenix", "s", b"new")
            assert new_event != old_event
            assert await store.replay_events_after(new_event) == ("s", [])

        sessionstore_target.run(scenario, ttl=10, clock=clock)

    # -- 4. isolation -------------------------------------------------------------------------

    def test_strange_ids_never_reach_each_other(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            for session_id in STRANGE_IDS:
                await store.create_session(new_session(session_id, metadata={"id": session_id}))
                await store.store_last_event_id(session_id, f"last-{session_id}"[:1000])
            assert await store.count_sessions() == len(STRANGE_IDS)
            for session_id in STRANGE_IDS:
                assert (await store.get_session(session_id)).metadata == {"id": session_id}
                assert await store.get_last_event_id(session_id) == f"last-{session_id}"[:1000]
            assert [s.id for s in await store.get_sessions_batch(STRANGE_IDS)] == list(STRANGE_IDS)
            assert await store.delete_session("*") is True
            assert await store.delete_session("[a-z]") is True
            remaining = sorted(s.id for s in await store.list_sessions())
            assert remaining == sorted(set(STRANGE_IDS) - {"*", "[a-z]"})
            for session_id in ["a", "b", "x", "{", "tag", "x" * 254]:
                if session_id not in STRANGE_IDS:
                    with pytest.raises(SessionNotFoundError):
                        await store.get_session(session_id)

        sessionstore_target.run(scenario)

    def test_namespaces_never_see_each_other(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            async with sessionstore_target.open() as other:
                try:
                    mine = await store.create_session(new_session("same-id", metadata={"ns": 1}))
                    await store.create_session(new_session("only-mine"))
                    event_id = await store.append_event("same-id", "s", b"mine")
                    assert await other.count_sessions() == 0
                    assert await other.list_sessions() == []
                    assert await other.get_sessions_batch(["same-id", "only-mine"]) == []
                    with pytest.raises(SessionNotFoundError):
                        await other.get_session("only-mine")
                    assert await other.delete_session("only-mine") is False
                    theirs = await other.create_session(new_session("same-id", metadata={"ns": 2}))
                    with pytest.raises(EventNotFoundError):
                        await other.replay_events_after(event_id, session_id="same-id")
                    await other.update_session(theirs)
                    await other.clear()
                    assert await store.get_session("same-id") == mine
                    assert await store.count_sessions() == 2
                    assert await store.replay_events_after(event_id) == ("s", [])
                finally:
                    await other.clear()

        sessionstore_target.run(scenario)

    def test_namespaces_that_prefix_each_other_stay_apart(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Namespaces "x", "x.b", "x-b", "x_b" with ids "b.secret", "secret", "b:secret"...: a
        backend that joins namespace and id into one key without a separator it escapes leaks."""

        async def scenario(store: SessionStore) -> None:
            base = store.namespace
            handles = [sessionstore_target.open(namespace=base + s) for s in (".b", "-b", "_b")]
            try:
                for handle in handles:
                    await handle.create_session(
                        new_session("secret", metadata={"ns": handle.namespace})
                    )
                    await handle.append_event("secret", "1", b"theirs")
                for session_id in ("b.secret", "b-secret", "b_secret", "b:secret", ".b.secret"):
                    with pytest.raises(SessionNotFoundError):
                        await store.get_session(session_id)
                    assert await store.delete_session(session_id) is False
                    with pytest.raises(SessionNotFoundError):
                        await store.append_event(session_id, "1", b"mine")
                assert await store.count_sessions() == 0
                assert await store.list_sessions() == []
                for handle in handles:
                    assert await handle.count_sessions() == 1
                    stored = await handle.get_session("secret")
                    assert stored.metadata == {"ns": handle.namespace}
            finally:
                for handle in handles:
                    await handle.clear()
                    await handle.aclose()

        sessionstore_target.run(scenario)

    def test_invalid_ids_refused_before_the_backend(
        self, sessionstore_target: ContractTarget
    ) -> None:
        metrics = MetricsMiddleware()

        async def scenario(store: SessionStore) -> None:
            for bad in INVALID_IDS:
                calls: list[tuple[Any, tuple[Any, ...]]] = [
                    (store.get_session, (bad,)),
                    (store.delete_session, (bad,)),
                    (store.get_last_event_id, (bad,)),
                    (store.store_last_event_id, (bad, "e")),
                    (store.append_event, (bad, "s", b"")),
                    (store.get_sessions_batch, (["ok", bad],)),
                ]
                for method, args in calls:
                    with pytest.raises(InvalidSessionError, match="id"):
                        await method(*args)
                with pytest.raises(ValueError, match="id"):
                    Session(id=bad, transport=TransportType.HTTP)
                if bad is not None:  # None means "any session" here
                    with pytest.raises(InvalidSessionError, match="session id"):
                        await store.replay_events_after("1-1", session_id=bad)  # type: ignore[arg-type]
            assert metrics.snapshot() == {}, "an invalid id reached the backend"

        sessionstore_target.run(scenario, middleware=[metrics])

    # -- 5. events ----------------------------------------------------------------------------

    def test_events_replay_in_order_within_one_stream(
        self, sessionstore_target: ContractTarget
    ) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s1"))
            ids: dict[str, list[str]] = {"a": [], "b": []}
            for n in range(5):
                for stream in ("a", "b"):
                    ids[stream].append(
                        await store.append_event("s1", stream, f"{stream}{n}".encode())
                    )
            stream, events = await store.replay_events_after(ids["a"][1])
            assert stream == "a"
            assert [(e.id, e.stream_id, e.data) for e in events] == [
                (ids["a"][n], "a", f"a{n}".encode()) for n in (2, 3, 4)
            ]
            stream, events = await store.replay_events_after(ids["b"][0], session_id="s1")
            assert stream == "b"
            assert [e.data for e in events] == [b"b1", b"b2", b"b3", b"b4"]
            assert await store.replay_events_after(ids["b"][4]) == ("b", [])

        sessionstore_target.run(scenario)

    def test_event_ids_unique_and_never_cross_sessions(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """The MCP SDK reuses stream ids across sessions: they must stay separate streams."""

        async def scenario(store: SessionStore) -> None:
            for session_id in ("s1", "s2"):
                await store.create_session(new_session(session_id))
            ids = []
            for n in range(4):
                for session_id in ("s1", "s2"):
                    for stream in ("_GET_stream", "1"):
                        data = f"{session_id}/{stream}/{n}".encode()
                        ids.append(await store.append_event(session_id, stream, data))
            assert len(set(ids)) == len(ids)
            first_of_s1 = ids[0]
            stream, events = await store.replay_events_after(first_of_s1, session_id="s1")
            assert stream == "_GET_stream"
            assert [e.data for e in events] == [f"s1/_GET_stream/{n}".encode() for n in (1, 2, 3)]
            with pytest.raises(EventNotFoundError) as raised:
                await store.replay_events_after(first_of_s1, session_id="s2")
            assert raised.value.evicted is False

        sessionstore_target.run(scenario)

    def test_evicted_cursor_is_reported(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            ids = [await store.append_event("s", "st", bytes([n])) for n in range(6)]
            with pytest.raises(EventNotFoundError) as raised:
                await store.replay_events_after(ids[0])
            assert raised.value.evicted is True
            with pytest.raises(EventNotFoundError) as raised:
                await store.replay_events_after(ids[2])
            assert raised.value.evicted is True
            stream, events = await store.replay_events_after(ids[3])
            assert (stream, [e.data for e in events]) == ("st", [bytes([4]), bytes([5])])

        sessionstore_target.run(scenario, event_retention=3)

    def test_priming_events_and_unknown_ids(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            priming = await store.append_event("s", "st", None)
            real = await store.append_event("s", "st", b"payload")
            empty = await store.append_event("s", "st", b"")
            _, events = await store.replay_events_after(priming)
            assert [(e.id, e.data) for e in events] == [(real, b"payload"), (empty, b"")]
            handle = priming.partition("-")[0]
            for unknown in (
                "nonsense",
                "0",
                "999999-999999",
                "1-0",
                priming + "0",
                "99999999999999999999-1",  # beyond a 64-bit integer
                f"0{handle}-1",  # other spellings of an existing id are not that id
                f"{handle}-\u00b2",
                "\u0661-\u0661",
            ):
                if unknown in (priming, real, empty):
                    continue
                with pytest.raises(EventNotFoundError) as raised:
                    await store.replay_events_after(unknown)
                assert raised.value.evicted is False

        sessionstore_target.run(scenario)

    def test_events_go_with_their_session(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            event_id = await store.append_event("s", "st", b"x")
            await store.delete_session("s")
            with pytest.raises(EventNotFoundError) as raised:
                await store.replay_events_after(event_id)
            assert raised.value.evicted is False
            with pytest.raises(SessionNotFoundError):
                await store.append_event("s", "st", b"y")
            await store.create_session(new_session("s"))
            with pytest.raises(EventNotFoundError):
                await store.replay_events_after(event_id)

        sessionstore_target.run(scenario)

    # -- listing and batches --------------------------------------------------------------------

    def test_iter_sessions_yields_each_once(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            created = {(await store.create_session(new_session(f"s{n:03}"))).id for n in range(53)}
            seen = [s.id async for s in store.iter_sessions()]
            assert sorted(seen) == sorted(created)
            assert await store.count_sessions() == 53
            await store.delete_session("s010")
            assert len(await store.list_sessions()) == 52

        sessionstore_target.run(scenario, page_size=7)

    def test_iter_sessions_while_the_store_changes(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Every session that stays live throughout is yielded exactly once, whatever is created
        or deleted before and after the cursor meanwhile."""

        async def scenario(store: SessionStore) -> None:
            for n in range(0, 40, 2):
                await store.create_session(new_session(f"s{n:02}"))
            doomed = {"s00", "s02", "s10", "s20", "s30"}  # two behind the cursor, three ahead
            seen: list[str] = []
            async for session in store.iter_sessions():
                seen.append(session.id)
                if len(seen) == 4:
                    for session_id in sorted(doomed):
                        await store.delete_session(session_id)
                    for n in (11, 21, 39):  # new sessions ahead of the cursor
                        await store.create_session(new_session(f"s{n:02}"))
            steady = {f"s{n:02}" for n in range(0, 40, 2)} - doomed
            assert sorted(i for i in seen if i in steady) == sorted(steady)
            assert len(seen) == len(set(seen)), "a session was yielded twice"

        sessionstore_target.run(scenario, page_size=3)

    def test_batch_get_keeps_request_order(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            for name in ["a", "b", "c"]:
                await store.create_session(new_session(name))
            got = await store.get_sessions_batch(["c", "missing", "a", "c", "b"])
            assert [s.id for s in got] == ["c", "a", "c", "b"]
            assert await store.get_sessions_batch([]) == []

        sessionstore_target.run(scenario)

    def test_delete_reports_whether_it_existed(self, sessionstore_target: ContractTarget) -> None:
        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("d"))
            assert await store.delete_session("d") is True
            assert await store.delete_session("d") is False
            with pytest.raises(SessionNotFoundError):
                await store.get_session("d")

        sessionstore_target.run(scenario)

    def test_raw_get_reads_what_get_session_reads(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """The optional ``raw_get`` hook (benchmarks only): where offered, it finds a stored
        session and finds nothing for an id never stored."""

        async def scenario(store: SessionStore) -> None:
            if not store.offers_raw_get:
                pytest.skip("the backend does not offer the optional raw_get hook (benchmarks)")
            await store.create_session(new_session("raw"))
            assert await store.raw_get("raw") is not None
            assert await store.raw_get("never-stored") is None

        sessionstore_target.run(scenario)

    # -- moving sessions between stores ----------------------------------------------------------

    def test_dump_and_load_copy_a_session_whole(self, sessionstore_target: ContractTarget) -> None:
        """A dumped session loads elsewhere as it was: record, last event id, every stream's events;
        compare-and-set goes on from the same version; a live session is never overwritten."""

        async def scenario(store: SessionStore) -> None:
            moved = await store.create_session(new_session("moved", metadata={"step": 1}))
            moved.metadata = {"step": 2}
            moved = await store.update_session(moved)
            await store.store_last_event_id("moved", "ev-9")
            for stream_id, data in (("a", b"1"), ("b", None), ("a", b"2"), ("c", b"3")):
                await store.append_event("moved", stream_id, data)
            await store.create_session(new_session("plain"))
            dump = await store.dump_session("moved")
            assert (dump.record.id, dump.record.version) == ("moved", 2)
            assert dump.last_event_id == "ev-9"
            assert dump.streams == (("a", (b"1", b"2")), ("b", (None,)), ("c", (b"3",)))
            assert (await store.dump_session("plain")).streams == ()
            target = sessionstore_target.open()
            try:
                assert await target.load_session(dump) is True
                assert await target.load_session(dump) is False  # live: nothing written
                assert await target.get_session("moved") == moved
                assert await target.get_last_event_id("moved") == "ev-9"
                assert await target.dump_session("moved") == dump
                assert await target.load_session(await store.dump_session("plain")) is True
                assert sorted([d.record.id async for d in target.iter_dumps()]) == [
                    "moved",
                    "plain",
                ]
                moved.metadata = {"step": 3}
                assert (await target.update_session(moved)).version == 3
                stale = await store.get_session("moved")  # version 2, in the source
                with pytest.raises(ConflictError):
                    await target.update_session(stale)
                new_id = await target.append_event("moved", "a", b"4")
                _, events = await target.replay_events_after(new_id)
                assert events == []
            finally:
                try:
                    await target.clear()
                finally:
                    await target.aclose()

        sessionstore_target.run(scenario)

    def test_load_keeps_the_deadline_and_skips_expired_dumps(
        self, sessionstore_target: ContractTarget
    ) -> None:
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("timed"))
            dump = await store.dump_session("timed")
            assert dump.record.deadline_ms == round(clock() * 1000) + 10_000
            target = sessionstore_target.open(clock=clock)  # no ttl of its own
            try:
                clock.advance(5)
                assert await target.load_session(dump) is True
                clock.advance(4.999)
                assert (await target.get_session("timed")).version == 1
                clock.advance(0.001)
                with pytest.raises(SessionNotFoundError):
                    await target.get_session("timed")
                assert await target.load_session(dump) is False  # its deadline has passed
                assert await target.count_sessions() == 0
            finally:
                try:
                    await target.clear()
                finally:
                    await target.aclose()

        sessionstore_target.run(scenario, ttl=10, clock=clock)

    # -- everything together ------------------------------------------------------------------

    def test_state_machine(self, sessionstore_target: ContractTarget) -> None:
        """Random sequences of every operation, checked against a plain model."""
        run_state_machine(sessionstore_target)


StoreContract.standard_tests = frozenset(
    name for name in dir(StoreContract) if name.startswith("test_")
)
