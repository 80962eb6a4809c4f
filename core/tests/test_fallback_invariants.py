"""The fallback's four invariants (issue 14, items 1 to 3), each shown by deterministic tests, then
all of them at once by a seeded randomized run against a model.

1. Never serve or write from a copy older than a version this instance acknowledged.
2. Never drop an acknowledged write without a FallbackConflict naming it.
3. Every call stays bounded by its timeout while reconciliation runs.
4. A write whose reply was lost is recognised however many outage writes followed it.

Replies are reordered, held back and lost with events (``FlakyBackend.park`` / ``lose``), never
with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from core_testkit import factory_of
from fallback_testkit import (
    WAIT,
    FakeClock,
    FlakyBackend,
    breaker,
    new,
    recover,
    settled,
    with_fallback,
)

from sessionstore import (
    ConflictError,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    StoreUnavailableError,
    decode_session,
    encode_session,
    open_store,
)


def increment(session: Session) -> None:
    session.metadata["n"] = session.metadata.get("n", 0) + 1


# -- 1. never serve or write from a copy older than an acknowledged version -----------------


async def test_a_read_answered_after_a_later_update_never_rolls_the_copy_back() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        s = await store.create_session(new("s", n=0))
        parked = primary.park("session_get")
        reader = asyncio.create_task(store.get_session("s"))
        await parked.wait_reached()  # it read version 1; its reply is on the way
        s.metadata["n"] = 1
        s = await store.update_session(s)  # acknowledged: version 2
        parked.release.set()
        assert (await reader).version == 1  # concurrent with the update: either is right
        primary.down = True
        served = await store.get_session("s")  # trips the breaker: served from the copy
        assert breaker(store).state == "open"
        assert (served.version, served.metadata) == (2, {"n": 1})
        primary.down = False


async def test_two_acknowledged_increments_survive_an_outage_after_a_late_read() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        await store.create_session(new("s", n=0))
        parked = primary.park("session_get")
        reader = asyncio.create_task(store.get_session("s"))
        await parked.wait_reached()
        await store.modify_session("s", increment)  # acknowledged: n == 1, version 2
        parked.release.set()
        await reader
        primary.down = True
        await store.modify_session("s", increment)  # served during the outage: acknowledged
        await recover(store, primary, clock)
        conflicts = [c.session_id for c in breaker(store).conflicts]
        stored = decode_session(primary.records["s"])
        assert (stored.metadata["n"], stored.version) == (2, 3) or "s" in conflicts, (
            f"two acknowledged increments, the primary holds {stored.metadata}, conflicts "
            f"{conflicts}"
        )


async def test_a_write_acknowledged_as_the_circuit_opens_is_what_the_fallback_serves() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        s = await store.create_session(new("s", n=0))
        await store.create_session(new("t"))
        parked = primary.park("session_update")
        s.metadata["n"] = 1
        writer = asyncio.create_task(store.update_session(s))
        await parked.wait_reached()  # applied on the primary; the reply is on its way
        primary.down = True
        await store.get_session("t")  # another call fails: the circuit opens
        assert breaker(store).state == "open"
        reader = asyncio.create_task(store.get_session("s"))  # concurrent with the write
        for _ in range(5):
            await asyncio.sleep(0)
        parked.release.set()
        acknowledged = await writer
        assert acknowledged.version == 2
        await reader
        served = await store.get_session("s")  # after the acknowledgement
        assert (served.version, served.metadata) == (2, {"n": 1})
        acknowledged.metadata["n"] = 2
        assert (await store.update_session(acknowledged)).version == 3  # from what it holds
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert decode_session(primary.records["s"]).metadata == {"n": 2}


async def test_a_write_cancelled_in_flight_does_not_hold_up_the_outage() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        s = await store.create_session(new("s", n=0))
        parked = primary.park("session_update")
        writer = asyncio.create_task(store.update_session(s))
        await parked.wait_reached()  # applied on the primary, no answer yet
        writer.cancel()  # as asyncio.wait_for does when the caller's own deadline passes
        with pytest.raises(asyncio.CancelledError):
            await writer
        primary.down = True
        served = await asyncio.wait_for(store.get_session("s"), WAIT)  # trips, then served
        assert breaker(store).state == "open"
        assert served.version == 1  # the cancelled write was never acknowledged
        primary.down = False


# -- 2. never drop an acknowledged write without a conflict naming it -----------------------


async def test_the_same_bytes_written_by_another_instance_are_a_conflict() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a", n=0))
        primary.down = True
        await store.get_session("a")  # trips the breaker
        a.metadata["n"] = 1
        a = await store.update_session(a)  # never sent to the primary: acknowledged from memory
        primary.down = False
        theirs = await other.get_session("a")
        theirs.metadata["n"] = 1
        await other.update_session(theirs)  # also acknowledged, to the other instance
        assert primary.records["a"].payload == encode_session(a)  # byte for byte the same
        await recover(store, primary, clock)
        assert [(c.session_id, c.what) for c in breaker(store).conflicts] == [("a", "update")]


async def test_a_create_whose_reply_was_lost_then_deleted_is_deleted_on_the_primary() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        primary.lose("session_create")
        await store.create_session(new("c"))  # applied on the primary, then served again
        assert breaker(store).state == "open"
        assert "c" in primary.records
        assert await store.delete_session("c") is True  # acknowledged
        await recover(store, primary, clock)
        conflicts = [c.session_id for c in breaker(store).conflicts]
        assert "c" not in primary.records or "c" in conflicts


# -- 4. a write whose reply was lost is recognised ------------------------------------------


@pytest.mark.parametrize("later", [0, 1, 3, 8])
async def test_a_lost_reply_is_recognised_however_many_outage_writes_followed(later: int) -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a", n=0))
        primary.lose("session_update")
        a.metadata["n"] = 1
        a = await store.update_session(a)  # applied on the primary, reply lost, served again
        assert breaker(store).state == "open"
        assert primary.records["a"].version == a.version == 2
        for n in range(2, 2 + later):
            a.metadata["n"] = n
            a = await store.update_session(a)
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert primary.records["a"].version == a.version == 2 + later
        assert decode_session(primary.records["a"]).metadata == {"n": 1 + later}


async def test_a_lost_create_followed_by_updates_is_recognised() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        primary.lose("session_create")
        c = await store.create_session(new("c", n=0))
        for n in (1, 2):
            c.metadata["n"] = n
            c = await store.update_session(c)
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert primary.records["c"].version == c.version == 3
        assert decode_session(primary.records["c"]).metadata == {"n": 2}


async def test_a_reconciliation_write_whose_reply_was_lost_is_recognised() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        a = await store.create_session(new("a", n=0))
        primary.down = True
        for n in (1, 2, 3):
            a.metadata["n"] = n
            a = await store.update_session(a)
        primary.lose("session_update")  # the first write of reconciliation: applied, reply lost
        primary.down = False
        clock.now += breaker(store).probe_after
        with contextlib.suppress(StoreUnavailableError):  # the probe may fail at once
            await store.get_sessions_batch(["nobody"])
        await settled(store)
        assert breaker(store).state == "open"
        assert primary.records["a"].version == 2  # the first of three writes got through
        await recover(store, primary, clock)
        assert breaker(store).conflicts == []
        assert primary.records["a"].version == a.version == 4


# -- 3. every call stays bounded while reconciliation runs ----------------------------------


BOUND = 2.0
"""Seconds a call may take while reconciliation is held up: far above what it needs."""


async def test_calls_stay_bounded_while_reconciliation_is_held_up() -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        sessions = [await store.create_session(new(f"s{i}", n=0)) for i in range(40)]
        await store.create_session(new("untouched"))
        primary.down = True
        for _ in range(2):
            for index, session in enumerate(sessions):
                increment(session)
                sessions[index] = await store.update_session(session)
        primary.down = False
        # The primary is back, but its writes hang: reconciliation cannot make progress.
        gate = primary.hook_gates["session_update"] = asyncio.Event()
        clock.now += breaker(store).probe_after
        try:
            trigger = asyncio.create_task(store.get_session("s0"))
            calls = {
                "the call that starts the probe": trigger,
                "a read of a session written in the outage": store.get_session("s5"),
                "a write of one": store.modify_session("s7", increment),
                "a read of a session the outage never touched": store.get_session("untouched"),
                "a create": store.create_session(new("fresh")),
            }
            for what, call in calls.items():
                started = time.monotonic()
                try:
                    await asyncio.wait_for(call, BOUND)
                except TimeoutError:
                    pytest.fail(f"{what} waited more than {BOUND}s for reconciliation")
                assert time.monotonic() - started < BOUND
            assert breaker(store).state == "half-open"
        finally:
            gate.set()
        await settled(store)
        assert breaker(store).state == "closed"
        assert breaker(store).conflicts == []
        for i in range(40):
            stored = decode_session(primary.records[f"s{i}"])
            assert (stored.version, stored.metadata["n"]) == ((4, 3) if i == 7 else (3, 2))


# -- all of them at once: a seeded randomized run against a model ---------------------------


@dataclass
class Model:
    """What one session must be, from the acknowledgements this (only) writer received.

    ``acked`` is the last acknowledged state: ``("live", w)`` (``w`` the write's unique mark) or
    ``("gone", 0)``; ``maybe`` the states of writes after it whose outcome the caller never
    learned (they raised StoreUnavailableError: applied or not). ``versions`` maps each mark to
    the version it was written at. Once a conflict names the session, the primary kept data the
    model does not follow: anything goes until the next acknowledgement.
    """

    acked: tuple[str, int] = ("gone", 0)
    maybe: set[tuple[str, int]] = field(default_factory=set)
    versions: dict[int, int] = field(default_factory=dict)
    conflicts: int = 0  # conflicts naming the session when it was last acknowledged

    def allowed(self) -> set[tuple[str, int]]:
        return {self.acked, *self.maybe}


def state_of(session: Session | None) -> tuple[str, int]:
    return ("gone", 0) if session is None else ("live", session.metadata["w"])


class Run:
    """One randomized run: a single instance, outages, lost replies and late reads."""

    IDS = ("a", "b", "c")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.primary, self.clock = FlakyBackend(), FakeClock()
        self.store = with_fallback(self.primary, self.clock, failures=1, probe_after=1.0)
        self.model = {i: Model() for i in self.IDS}
        self.holding: dict[str, Session] = {}  # the client's last copy of each session
        self.mark = 0
        self.late: list[tuple[asyncio.Task[Any], Any, str, set[tuple[str, int]]]] = []
        self.log: list[str] = []

    def conflicts(self, session_id: str) -> int:
        return sum(c.session_id == session_id for c in breaker(self.store).conflicts)

    def check_read(self, session_id: str, result: Session | None, allowed: set[Any]) -> None:
        if self.conflicts(session_id) > self.model[session_id].conflicts:
            return
        state = state_of(result)
        assert state in allowed, (
            f"read of {session_id!r} returned {state} (version "
            f"{None if result is None else result.version}); allowed {allowed}\n"
            + "\n".join(self.log[-25:])
        )
        if result is not None:
            assert result.version == self.model[session_id].versions[state[1]]

    def acknowledge(self, session_id: str, state: tuple[str, int]) -> None:
        model = self.model[session_id]
        model.acked, model.maybe = state, set()
        model.conflicts = self.conflicts(session_id)
        for _, _, late_id, allowed in self.late:
            if late_id == session_id:
                allowed.add(state)

    def unsure(self, session_id: str, state: tuple[str, int]) -> None:
        self.model[session_id].maybe.add(state)
        for _, _, late_id, allowed in self.late:
            if late_id == session_id:
                allowed.add(state)

    async def step(self) -> None:
        rng, primary = self.rng, self.primary
        roll = rng.random()
        session_id = rng.choice(self.IDS)
        if roll < 0.08:
            primary.down = not primary.down
            self.log.append(f"primary down={primary.down}")
        elif roll < 0.16:
            self.clock.now += 1.0
            self.log.append("clock +1")
        elif roll < 0.24:
            hook = rng.choice(["session_create", "session_update", "session_delete"])
            primary.lose(hook)
            self.log.append(f"lose the next {hook} reply")
        elif roll < 0.32 and breaker(self.store).state == "closed" and not self.late:
            await self.start_late_read(session_id)
        elif roll < 0.36:
            for _ in range(rng.randint(1, 20)):
                await asyncio.sleep(0)  # let reconciliation run
        elif roll < 0.50:  # two sessions at once: their replies interleave
            first, second = rng.sample(self.IDS, 2)
            await asyncio.gather(self.operation(first), self.operation(second))
        else:
            await self.operation(session_id)
        if self.late and rng.random() < 0.3:
            await self.finish_late_read()

    async def start_late_read(self, session_id: str) -> None:
        parked = self.primary.park("session_get")
        task = asyncio.create_task(self.store.get_session(session_id))
        reached = asyncio.create_task(parked.reached.wait())
        await asyncio.wait({task, reached}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if not parked.reached.is_set():  # answered without reaching the primary's storage
            reached.cancel()
            self.primary.parked.pop("session_get", None)
            await self.settle_read(task, session_id, self.model[session_id].allowed())
            return
        self.log.append(f"late read of {session_id} parked")
        self.late.append((task, parked, session_id, self.model[session_id].allowed()))

    async def finish_late_read(self) -> None:
        task, parked, session_id, allowed = self.late.pop()
        parked.release.set()
        self.log.append(f"late read of {session_id} released")
        await self.settle_read(task, session_id, allowed)

    async def settle_read(self, task: asyncio.Task[Any], session_id: str, allowed: Any) -> None:
        try:
            result = await asyncio.wait_for(task, WAIT)
        except SessionNotFoundError:
            result = None
        except StoreUnavailableError:
            return
        self.check_read(session_id, result, allowed)
        if result is not None:
            self.holding[session_id] = result

    async def operation(self, session_id: str) -> None:
        store, model = self.store, self.model[session_id]
        kind = self.rng.choice(["create", "update", "update", "delete", "get", "get"])
        self.mark += 1
        mark = self.mark
        self.log.append(f"{kind} {session_id} (w={mark}) state={breaker(store).state}")
        try:
            if kind == "get":
                allowed = model.allowed()
                try:
                    result: Session | None = await store.get_session(session_id)
                except SessionNotFoundError:
                    result = None
                self.check_read(session_id, result, allowed)
                if result is not None:
                    self.holding[session_id] = result
            elif kind == "create":
                model.versions[mark] = 1
                try:
                    created = await store.create_session(new(session_id, w=mark))
                except StoreUnavailableError:
                    self.unsure(session_id, ("live", mark))
                    raise
                self.acknowledge(session_id, ("live", mark))
                self.holding[session_id] = created
            elif kind == "update":
                session = self.holding.get(session_id)
                if session is None:
                    return
                session = session.model_copy(deep=True)
                session.metadata["w"] = mark
                model.versions[mark] = session.version + 1
                try:
                    updated = await store.update_session(session)
                except StoreUnavailableError:
                    self.unsure(session_id, ("live", mark))
                    raise
                self.acknowledge(session_id, ("live", mark))
                self.holding[session_id] = updated
            else:
                try:
                    await store.delete_session(session_id)
                except StoreUnavailableError:
                    self.unsure(session_id, ("gone", 0))
                    raise
                self.acknowledge(session_id, ("gone", 0))
        except (StoreUnavailableError, ConflictError, SessionNotFoundError, SessionExistsError):
            self.log.append("  refused")

    async def finish(self) -> None:
        while self.late:
            await self.finish_late_read()
        self.primary.down = False
        self.primary.losing.clear()
        await recover(self.store, self.primary, self.clock)
        for session_id, model in self.model.items():
            record = self.primary.records.get(session_id)
            stored = None if record is None else decode_session(record)
            if self.conflicts(session_id) > model.conflicts:
                continue  # the primary kept its own data: the conflict holds this instance's
            assert state_of(stored) in model.allowed(), (
                f"session {session_id!r}: the primary holds {state_of(stored)}, acknowledged "
                f"{model.acked} (or one of {model.maybe}), and no conflict names it\n"
                + "\n".join(self.log[-40:])
            )
        await self.store.aclose()


@pytest.mark.parametrize("seed", range(12))
async def test_randomized_outages_lost_replies_and_late_reads_keep_every_invariant(
    seed: int,
) -> None:
    run = Run(seed)
    for _ in range(250):
        await run.step()
    await run.finish()
