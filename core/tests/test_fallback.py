"""The fallback middleware: circuit breaker, serving from memory, reconciliation, conflicts.

The primary is a real backend whose storage can be switched off (``FlakyBackend.down``, see
fallback_testkit); the fallback is the real memory backend (or a DictBackend where a test needs
to look inside it). The four invariants of issue 14 have their own tests in
test_fallback_invariants.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import Any

import pytest
from core_testkit import DictBackend, factory_of
from fallback_testkit import (
    PASSWORD,
    FakeClock,
    FlakyBackend,
    breaker,
    new,
    recover,
    settled,
    with_fallback,
)

from sessionstore import (
    ConfigurationError,
    ConflictError,
    Event,
    EventNotFoundError,
    FallbackConflict,
    MetricsMiddleware,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    StoreUnavailableError,
    UnknownBackendError,
    decode_session,
    hookimpl,
    open_store,
)

# -- the breaker ----------------------------------------------------------------------------


async def test_the_breaker_opens_after_exactly_n_failures_and_serves_that_call() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=3) as store:
        assert breaker(store).state == "closed"
        await store.create_session(new("s", n=1))
        primary.down = True
        for _ in range(2):
            with pytest.raises(StoreUnavailableError, match="connection refused"):
                await store.get_session("s")
            assert breaker(store).state == "closed"
        served = await store.get_session("s")  # the third failure opens it: served from memory
        assert (served.version, served.metadata) == (1, {"n": 1})
        assert breaker(store).state == "open"
        assert primary.refused == ["session_get"] * 3
        await store.get_session("s")
        await store.update_session(served)
        assert primary.refused == ["session_get"] * 3  # never contacted while open
        primary.down = False


async def test_other_errors_do_not_count_and_reset_the_count() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=2) as store:
        session = await store.create_session(new("s"))
        stale = await store.get_session("s")
        await store.update_session(session)
        primary.down = True
        with pytest.raises(StoreUnavailableError):
            await store.get_session("s")
        primary.down = False
        with pytest.raises(SessionNotFoundError):  # propagates unchanged; the primary answered
            await store.get_session("missing")
        with pytest.raises(ConflictError):
            await store.update_session(stale)
        primary.down = True
        with pytest.raises(StoreUnavailableError):
            await store.get_session("s")
        assert breaker(store).state == "closed"  # one failure in a row, not three
        assert (await store.get_session("s")).version == 2
        assert breaker(store).state == "open"
        primary.down = False


async def test_probes_follow_the_clock() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1, probe_after=5.0) as store:
        await store.create_session(new("s"))
        await store.create_session(new("t"))
        primary.down = True
        await store.get_session("s")
        assert breaker(store).state == "open"
        assert len(primary.refused) == 1
        clock.now += 4.999
        await store.get_session("s")
        assert len(primary.refused) == 1  # too early: no probe
        clock.now += 0.001
        # Half-open: "t" is not held by the fallback, so the primary is tried; it fails, the
        # circuit opens again at once, and the call is served from memory.
        assert (await store.get_session("t")).id == "t"
        assert len(primary.refused) == 2
        assert breaker(store).state == "open"
        clock.now += 4.999  # open again for another probe_after, counted from the failed probe
        await store.get_session("t")
        assert len(primary.refused) == 2
        clock.now += 0.001
        primary.down = False
        calls = len(primary.calls)
        await store.get_session("t")  # held: served from memory; reconciliation starts
        await settled(store)  # both were only read: released without a word to the primary
        assert breaker(store).state == "half-open"  # the primary has not answered yet
        assert primary.calls[calls:] == []
        await store.get_session("t")  # the primary answers: closed, and this call was the probe
        assert breaker(store).state == "closed"
        assert primary.calls[calls:] == ["session_get"]


async def test_a_failure_after_recovery_is_counted_afresh() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=2) as store:
        await store.create_session(new("s"))
        primary.down = True
        with pytest.raises(StoreUnavailableError):
            await store.get_session("s")
        await store.get_session("s")
        assert breaker(store).state == "open"
        await recover(store, primary, clock)
        primary.down = True
        with pytest.raises(StoreUnavailableError):
            await store.get_session("s")
        assert breaker(store).state == "closed"
        primary.down = False


# -- serving from memory while open ---------------------------------------------------------


async def test_session_operations_are_served_from_memory_while_open() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a"))
        await store.create_session(new("b"))
        await store.store_last_event_id("a", "ev-1")
        calls = len(primary.calls)
        primary.down = True

        a.metadata["k"] = 1
        stale = a.model_copy(deep=True)
        a = await store.update_session(a)  # trips the breaker; served against version 1
        assert a.version == 2
        assert (await store.get_session("a")).metadata == {"k": 1}
        with pytest.raises(ConflictError):  # compare-and-set holds in the fallback too
            await store.update_session(stale)
        c = await store.create_session(new("c"))
        assert c.version == 1
        with pytest.raises(SessionExistsError):  # live on the primary, as far as we know
            await store.create_session(new("b"))
        batch = await store.get_sessions_batch(["a", "b", "c"])
        assert [s.id for s in batch] == ["a", "b", "c"]
        batch = await store.update_sessions_batch(batch)
        assert [s.version for s in batch] == [3, 2, 2]
        assert await store.get_last_event_id("a") == "ev-1"  # copied with the session
        assert await store.get_last_event_id("c") is None
        await store.store_last_event_id("c", "ev-2")
        assert await store.get_last_event_id("c") == "ev-2"
        first = await store.append_event("c", "stream", b"x")
        second = await store.append_event("c", "stream", b"y")
        assert await store.replay_events_after(first, session_id="c") == (
            "stream",
            [Event(second, "stream", b"y")],
        )
        modified = await store.modify_session("c", lambda s: s.metadata.update(m=True))
        assert (modified.version, modified.metadata) == (3, {"m": True})
        assert await store.delete_session("b") is True
        with pytest.raises(SessionNotFoundError):  # deleted here: the fallback knows it is gone
            await store.get_session("b")
        assert await store.delete_session("b") is False

        assert primary.calls[calls:] == []
        assert primary.refused == ["session_update"]
        primary.down = False


@pytest.mark.parametrize(
    "operation",
    ["count_sessions", "list_sessions", "purge_expired", "clear"],
)
async def test_namespace_wide_operations_raise_while_open(operation: str) -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        await store.create_session(new("s"))
        primary.down = True
        await store.get_session("s")
        with pytest.raises(StoreUnavailableError, match=r"namespace-wide.*only the sessions"):
            await getattr(store, operation)()
        assert primary.refused == ["session_get"]
        assert breaker(store).state == "open"
        primary.down = False


async def test_a_session_the_fallback_does_not_hold_is_unavailable_not_missing() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))  # another instance created it: never seen here
    x = await other.create_session(new("x"))
    event = await other.append_event("x", "st", b"1")
    async with with_fallback(primary, clock, failures=1) as store:
        primary.down = True
        attempts = [
            store.get_session("x"),
            store.get_sessions_batch(["x"]),
            store.update_session(x),
            store.update_sessions_batch([x]),
            store.delete_session("x"),
            store.get_last_event_id("x"),
            store.store_last_event_id("x", "e"),
            store.append_event("x", "st", b"2"),
            store.modify_session("x", lambda s: None),
        ]
        for attempt in attempts:
            with pytest.raises(StoreUnavailableError, match="session 'x' not cached") as info:
                await attempt
            assert not isinstance(info.value, SessionNotFoundError)
        with pytest.raises(StoreUnavailableError, match="primary's event log"):
            await store.replay_events_after(event)
        assert breaker(store).state == "open"
        primary.down = False


async def test_a_batch_names_every_uncached_id() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        await store.create_session(new("known"))
        primary.down = True
        with pytest.raises(StoreUnavailableError, match="sessions 'u1', 'u2' not cached"):
            await store.get_sessions_batch(["u1", "known", "u2"])
        primary.down = False


async def test_an_expired_copy_is_unavailable_not_missing() -> None:
    primary, breaker_clock = FlakyBackend(), FakeClock()
    wall = [1_000_000.0]
    store = open_store(
        factory_of(primary),
        ttl=10,
        clock=lambda: wall[0],
        fallback="memory",
        fallback_options={"clock": breaker_clock, "failures": 1},
    )
    await store.create_session(new("s"))
    wall[0] += 11  # expired as far as this instance saw; another may have kept it alive
    primary.down = True
    with pytest.raises(StoreUnavailableError, match="session 's' not cached"):
        await store.get_session("s")
    primary.down = False
    await store.aclose()


async def test_a_last_event_id_never_seen_is_unavailable() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))
    await other.create_session(new("s"))
    await other.store_last_event_id("s", "theirs")
    async with with_fallback(primary, clock, failures=1) as store:
        await store.get_session("s")  # cached, but not its last event id
        primary.down = True
        assert (await store.get_session("s")).id == "s"
        with pytest.raises(StoreUnavailableError, match="last event id of session 's'"):
            await store.get_last_event_id("s")
        await store.store_last_event_id("s", "mine")  # known from now on
        assert await store.get_last_event_id("s") == "mine"
        primary.down = False


@pytest.mark.parametrize(("cache_size", "served"), [(2, ["s2", "s3"]), (0, [])])
async def test_the_copy_is_bounded(cache_size: int, served: list[str]) -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1, cache_size=cache_size) as store:
        for name in ("s1", "s2", "s3"):
            await store.create_session(new(name))
        primary.down = True
        with pytest.raises(StoreUnavailableError):
            await store.get_session("s1")  # the least recently used: dropped
        for name in ("s1", "s2", "s3"):
            if name in served:
                assert (await store.get_session(name)).id == name
            else:
                with pytest.raises(StoreUnavailableError, match="not cached"):
                    await store.get_session(name)
        assert (await store.create_session(new("fresh"))).version == 1  # creates always work
        primary.down = False


async def test_a_conflict_drops_the_copy_only_when_it_proves_it_stale() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a"))
        behind = await store.get_session("a")
        a = await store.update_session(a)  # the copy: version 2
        with pytest.raises(ConflictError):
            await store.update_session(behind)  # behind the copy: it stays
        await other.modify_session("a", lambda s: s.metadata.update(theirs=1))
        with pytest.raises(ConflictError):
            await store.update_session(a)  # based on the copy: it was stale, dropped
        b = await store.create_session(new("b"))
        with pytest.raises(ConflictError):
            await store.update_session(b.model_copy(update={"version": 0}))
        primary.down = True
        with pytest.raises(StoreUnavailableError, match="session 'a' not cached"):
            await store.get_session("a")
        assert (await store.get_session("b")).version == 1
        primary.down = False


async def test_a_session_the_primary_reported_missing_is_not_served() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))
    async with with_fallback(primary, clock, failures=1) as store:
        await store.create_session(new("s"))
        await other.delete_session("s")
        with pytest.raises(SessionNotFoundError):
            await store.get_session("s")  # the copy is dropped with this answer
        primary.down = True
        with pytest.raises(StoreUnavailableError, match="not cached"):
            await store.get_session("s")
        primary.down = False


# -- reconciliation -------------------------------------------------------------------------


async def test_reconciliation_applies_creates_updates_deletes_and_last_event_ids() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a"))
        await store.create_session(new("b"))
        await store.create_session(new("c"))
        await store.create_session(new("d"))
        a = await store.update_session(a)  # version 2 on the primary
        b_before = primary.records["b"]
        primary.down = True

        a.metadata["outage"] = 1
        a = await store.update_session(a)  # trips: served, version 3
        a.metadata["outage"] = 2
        a = await store.update_session(a)  # version 4
        n = await store.create_session(new("n"))
        n.metadata["x"] = "y"
        n = await store.update_session(n)  # version 2, created during the outage
        await store.create_session(new("t"))
        await store.delete_session("t")  # created and deleted: the primary never hears of it
        assert await store.delete_session("c")
        await store.store_last_event_id("d", "ev-9")
        await store.get_session("b")  # read only: nothing to write back
        assert breaker(store).state == "open"

        calls = len(primary.calls)
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []

        reconciled = primary.calls[calls:]
        assert reconciled.count("session_update") == 2 + 1  # a: 2 -> 3 -> 4; n: 1 -> 2
        assert decode_session(primary.records["a"]).model_dump() == a.model_dump()
        assert primary.records["a"].version == a.version == 4
        assert decode_session(primary.records["n"]).model_dump() == n.model_dump()
        assert primary.records["n"].version == n.version == 2
        assert "c" not in primary.records
        assert "t" not in primary.records
        assert primary.last_event_ids["d"] == "ev-9"
        assert primary.records["d"].version == 1
        assert primary.records["b"] is b_before

        # What clients hold from the outage is valid on the primary.
        a.metadata["after"] = True
        assert (await store.update_session(a)).version == 5
        assert (await store.update_session(n)).version == 3
        assert await store.get_last_event_id("d") == "ev-9"
        assert await store.count_sessions() == 4  # a, b, d, n: namespace-wide works again


async def test_reconciled_sessions_keep_their_deadline() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    wall = [1_000_000.0]
    store = open_store(
        factory_of(primary),
        ttl=60,
        clock=lambda: wall[0],
        fallback="memory",
        fallback_options={"clock": clock, "failures": 1},
    )
    a = await store.create_session(new("a"))
    primary.down = True
    wall[0] += 30
    await store.update_session(a)  # deadline: now + 60 in the fallback
    await recover(store, primary, clock)
    assert primary.records["a"].deadline_ms == (1_000_000 + 30 + 60) * 1000
    await store.aclose()


async def test_an_expiry_during_the_outage_is_not_a_delete() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    wall = [1_000_000.0]
    store = open_store(
        factory_of(primary),
        ttl=60,
        clock=lambda: wall[0],
        fallback="memory",
        fallback_options={"clock": clock, "failures": 1},
    )
    other = open_store(factory_of(primary), ttl=600, clock=lambda: wall[0])
    await store.create_session(new("s"))
    primary.down = True
    await store.get_session("s")  # copied into the fallback, deadline in 60 s
    primary.down = False
    await other.store_last_event_id("s", "e")  # another instance keeps it alive for 600 s
    wall[0] += 61
    with pytest.raises(SessionNotFoundError):
        await store.get_session("s")  # expired in this instance's fallback
    await recover(store, primary, clock)
    assert breaker(store).conflicts == []
    assert (await store.get_session("s")).version == 1  # still there on the primary
    await store.aclose()


async def test_deleted_and_created_again_during_the_outage() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        old = await store.create_session(new("s", generation=1))
        old = await store.update_session(old)
        primary.down = True
        assert await store.delete_session("s")
        fresh = await store.create_session(new("s", generation=2))
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert decode_session(primary.records["s"]).metadata == {"generation": 2}
        assert primary.records["s"].version == 1
        with pytest.raises(ConflictError):  # the old incarnation cannot overwrite its successor
            await store.update_session(old)
        assert (await store.update_session(fresh)).version == 2


async def test_conflicts_are_reported_and_the_primary_keeps_its_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sessionstore.fallback")
    primary, clock = FlakyBackend(), FakeClock()
    reported: list[FallbackConflict] = []
    other = open_store(factory_of(primary))  # another instance, which can still reach it
    async with with_fallback(primary, clock, failures=1, on_conflict=reported.append) as store:
        a = await store.create_session(new("a"))
        await store.create_session(new("c"))
        await store.create_session(new("e"))
        await store.store_last_event_id("e", "old")
        primary.down = True
        a.metadata["mine"] = 1
        await store.update_session(a)  # trips: served
        await store.delete_session("c")
        await store.create_session(new("n", mine=True))
        await store.store_last_event_id("e", "mine")

        primary.down = False  # the other instance writes; this one is still open
        theirs = await other.get_session("a")
        theirs.metadata["theirs"] = 1
        await other.update_session(theirs)
        await other.update_session(await other.get_session("c"))
        await other.create_session(new("n", theirs=True))
        await other.delete_session("e")
        snapshot = dict(primary.records)

        await recover(store, primary, clock)
        assert primary.records == snapshot  # nothing overwritten
        assert (await store.get_session("a")).metadata == {"theirs": 1}
        conflicts = sorted(breaker(store).conflicts, key=lambda c: c.session_id)
        assert [(c.session_id, c.what) for c in conflicts] == [
            ("a", "update"),
            ("c", "delete"),
            ("e", "last_event_id"),
            ("n", "create"),
        ]
        a_conflict, c_conflict, _, n_conflict = conflicts
        assert "expected version 1" in a_conflict.reason
        assert a_conflict.record is not None
        assert decode_session(a_conflict.record).metadata == {"mine": 1}  # nothing is lost
        assert c_conflict.record is None
        assert n_conflict.record is not None
        assert decode_session(n_conflict.record).metadata == {"mine": True}
        assert sorted(reported, key=lambda c: c.session_id) == conflicts

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unavailable after 1 failure" in r.getMessage() for r in warnings)
    assert sum("not applied" in r.getMessage() for r in warnings) == 4
    assert PASSWORD not in caplog.text
    assert "app:***@db" in caplog.text


async def test_deleted_on_both_sides_is_not_a_conflict() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))
    async with with_fallback(primary, clock, failures=1) as store:
        await store.create_session(new("c"))
        primary.down = True
        assert await store.delete_session("c")
        primary.down = False
        await other.delete_session("c")
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert "c" not in primary.records


async def test_a_failing_conflict_callback_does_not_stop_reconciliation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(conflict: FallbackConflict) -> None:
        raise RuntimeError("callback bug")

    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))
    async with with_fallback(primary, clock, failures=1, on_conflict=broken) as store:
        a = await store.create_session(new("a"))
        b = await store.create_session(new("b"))
        primary.down = True
        await store.update_session(a)
        await store.update_session(b)
        primary.down = False
        await other.modify_session("a", lambda s: s.metadata.update(theirs=1))
        await recover(store, primary, clock)
        assert [c.session_id for c in breaker(store).conflicts] == ["a"]
        assert primary.records["b"].version == 2
    assert "callback bug" in caplog.text


async def test_a_write_whose_answer_was_lost_is_not_a_conflict() -> None:
    class LostAnswers(FlakyBackend):
        lose_answers = False

        @hookimpl
        async def session_update(self, record: SessionRecord, now_ms: int) -> None:
            await FlakyBackend.session_update(self, record, now_ms)
            if self.lose_answers:
                raise StoreUnavailableError("timed out waiting for the reply")

    primary, clock = LostAnswers(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a"))
        primary.lose_answers = True
        a = await store.update_session(a)  # applied on the primary, then served again in memory
        primary.lose_answers = False
        assert breaker(store).state == "open"
        assert primary.records["a"].version == a.version == 2
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert primary.records["a"].version == 2


async def test_an_interrupted_reconciliation_resumes_without_writing_twice() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1, probe_after=5.0) as store:
        a = await store.create_session(new("a"))
        b = await store.create_session(new("b"))
        primary.down = True
        a = await store.update_session(a)
        a.metadata["twice"] = True
        a = await store.update_session(a)
        b = await store.update_session(b)
        primary.down, primary.down_after = False, 1  # one write gets through, then down again
        clock.now += 5
        assert (await store.get_session("b")).version == 2  # served; reconciliation starts
        await settled(store)
        assert breaker(store).state == "open"
        versions = (primary.records["a"].version, primary.records["b"].version)
        assert versions in ((2, 1), (1, 2))  # one of the two got one write further
        clock.now += 4.9
        refused = len(primary.refused)
        await store.get_session("a")
        assert len(primary.refused) == refused  # open for another probe_after
        b = await store.update_session(b)  # still served, version 3
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert primary.records["a"].version == a.version == 3
        assert decode_session(primary.records["a"]).metadata == {"twice": True}
        assert primary.records["b"].version == b.version == 3


async def test_calls_during_reconciliation_are_served_and_their_writes_reconciled() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a"))
        await store.create_session(new("other"))
        primary.down = True
        a = await store.update_session(a)
        primary.down = False
        clock.now += breaker(store).probe_after
        gate = primary.hook_gates["session_update"] = asyncio.Event()  # writes hang
        assert (await store.get_session("a")).version == 2  # starts reconciliation, served
        assert breaker(store).state == "half-open"
        for _ in range(5):
            await asyncio.sleep(0)  # reconciliation is now waiting for the primary's answer
        a.metadata["during"] = True
        assert (await store.update_session(a)).version == 3  # the fallback still answers for it
        assert (await store.get_session("other")).version == 1  # the primary answers the rest
        assert breaker(store).state == "half-open"
        gate.set()
        assert await breaker(store).wait_reconciled() == "closed"
        assert primary.records["a"].version == 3  # pushed again with the write made meanwhile
        assert decode_session(primary.records["a"]).metadata == {"during": True}
        assert breaker(store).conflicts == []
        assert breaker(store).unreconciled == 0
        assert (await store.get_session("a")).version == 3  # from the primary now


# -- events ---------------------------------------------------------------------------------


async def test_events_of_an_outage_are_not_carried_over() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        await store.create_session(new("s"))
        before = await store.append_event("s", "st", b"0")
        primary.down = True
        during = await store.append_event("s", "st", b"1")
        later = await store.append_event("s", "st", b"2")
        assert during.startswith("fallback-")
        assert await store.replay_events_after(during) == ("st", [Event(later, "st", b"2")])
        with pytest.raises(StoreUnavailableError, match="primary's event log"):
            await store.replay_events_after(before)
        await store.store_last_event_id("s", during)
        await recover(store, primary, clock)

        assert [e[3] for e in primary.events] == [b"0"]
        assert primary.last_event_ids["s"] == during
        calls = len(primary.calls)
        with pytest.raises(EventNotFoundError) as info:
            await store.replay_events_after(during, session_id="s")
        assert info.value.evicted  # the client learns that events it never saw may be gone
        assert primary.calls[calls:] == []  # a fallback's id is never shown to the primary
        assert (await store.replay_events_after(before))[1] == []


# -- lifecycle, composition, configuration --------------------------------------------------


async def test_close_closes_both_and_warns_about_unreconciled_sessions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary, clock, spare = FlakyBackend(), FakeClock(), DictBackend()
    store = with_fallback(primary, clock, fallback=factory_of(spare), failures=1)
    await store.create_session(new("s"))
    primary.down = True
    await store.create_session(new("n"))
    assert [r.id for r in spare.records.values()] == ["n"]  # any backend can be the fallback
    with pytest.raises(StoreUnavailableError):
        await store.aclose()  # the primary's close fails: the fallback is closed all the same
    assert spare.closed == 1
    assert "changes to 1 session(s) served by the fallback were not reconciled" in caplog.text


async def test_other_middleware_see_every_call_whoever_served_it() -> None:
    primary, clock, metrics = FlakyBackend(), FakeClock(), MetricsMiddleware()
    store = open_store(
        factory_of(primary),
        middleware=[metrics],
        fallback="memory",
        fallback_options={"clock": clock, "failures": 1},
    )
    async with store:
        await store.create_session(new("s"))
        primary.down = True
        await store.get_session("s")
        await store.get_session("s")
        primary.down = False
    stats = metrics.snapshot()["session_get"]
    assert (stats.calls, stats.failures) == (2, {})


async def test_a_store_on_memory_with_a_memory_fallback_works_as_usual() -> None:
    async with open_store("memory", fallback="memory") as store:
        session = await store.create_session(new("s"))
        await store.update_session(session)
        assert await store.count_sessions() == 1
        assert [s.version for s in await store.list_sessions()] == [2]
        assert repr(store.fallback) == (
            "<FallbackMiddleware primary='memory' fallback='memory' state='closed'>"
        )
        await store.clear()
        assert await store.count_sessions() == 0


def test_without_fallback_there_is_no_breaker() -> None:
    assert open_store("memory").fallback is None


def test_defaults() -> None:
    fallback = open_store("memory", fallback="memory").fallback
    assert fallback is not None
    assert (fallback.failures, fallback.probe_after, fallback.state) == (3, 5.0, "closed")
    assert fallback.conflicts == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failures": 0}, "failures must be an int >= 1, not 0"),
        ({"failures": True}, "failures must be an int >= 1, not True"),
        ({"failures": 2.0}, "failures must be an int >= 1, not 2.0"),
        ({"probe_after": -1}, "probe_after must be a finite number of seconds >= 0, not -1"),
        ({"probe_after": math.inf}, "probe_after must be a finite number of seconds >= 0"),
        ({"probe_after": math.nan}, "probe_after must be a finite number of seconds >= 0"),
        ({"probe_after": True}, "probe_after must be a finite number of seconds >= 0"),
        ({"probe_after": "5"}, "probe_after must be a finite number of seconds >= 0"),
        ({"cache_size": -1}, "cache_size must be an int >= 0, not -1"),
        ({"on_conflict": 3}, "on_conflict must be a function taking a FallbackConflict"),
        ({"clock": 3}, "clock must be a function returning seconds"),
        (
            {"failure": 3, "probe": 1},
            "unknown fallback option(s) 'failure', 'probe'; accepted: failures, probe_after, "
            "cache_size, on_conflict, clock",
        ),
    ],
)
def test_bad_fallback_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        open_store("memory", fallback="memory", fallback_options=options)


def test_bad_fallback_specs_are_refused_before_anything_is_opened() -> None:
    built: list[str] = []

    def primary(spec: str, *, namespace: str) -> object:
        built.append(namespace)
        return DictBackend()

    with pytest.raises(UnknownBackendError, match="no sessionstore backend named 'nosuch'"):
        open_store(primary, fallback="nosuch")
    with pytest.raises(ConfigurationError, match="a fallback spec must be a str, not int"):
        open_store(primary, fallback=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fallback_options given without fallback"):
        open_store(primary, fallback_options={"failures": 2})
    with pytest.raises(ConfigurationError, match="fallback_options must be a mapping, not str"):
        open_store(primary, fallback="memory", fallback_options="failures=2")  # type: ignore[arg-type]
    assert built == []


def test_the_fallback_is_opened_in_the_same_namespace() -> None:
    namespaces: list[str] = []

    def spare(spec: str, *, namespace: str) -> object:
        namespaces.append(namespace)
        return DictBackend()

    open_store("memory", namespace="tenant-7", fallback=spare)
    assert namespaces == ["tenant-7"]
