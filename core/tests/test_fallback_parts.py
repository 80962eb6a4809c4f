"""The parts of the fallback on their own: the breaker, the copy kept while closed (which never
goes back), and the outage journal's recognition of this instance's writes."""

from __future__ import annotations

import asyncio

from fallback_testkit import WAIT, FakeClock

from sessionstore import ConflictError, StoreUnavailableError
from sessionstore.fallback.breaker import CircuitBreaker
from sessionstore.fallback.journal import HeldSession, OutageJournal, same_write
from sessionstore.fallback.last_known import LastKnown
from sessionstore.records import SessionRecord

DOWN = StoreUnavailableError("connection refused")


def record(
    version: int, incarnation: int = 7, payload: bytes = b"p", deadline: int | None = None
) -> SessionRecord:
    """A record of session "s" whose payload differs with each version."""
    return SessionRecord("s", version, deadline, payload + bytes([version]), incarnation)


# -- the breaker ----------------------------------------------------------------------------


def new_breaker(clock: FakeClock, failures: int = 2) -> CircuitBreaker:
    return CircuitBreaker(
        failures=failures, probe_after=5.0, clock=clock, primary_name="p", fallback_name="f"
    )


def test_the_breaker_opens_at_the_threshold_and_numbers_outages() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    breaker.failed(DOWN)
    breaker.succeeded()  # resets the count
    breaker.failed(DOWN)
    assert (breaker.state, breaker.outage) == ("closed", 0)
    breaker.failed(DOWN)
    assert (breaker.state, breaker.outage) == ("open", 1)
    breaker.failed(DOWN)  # a call that started before it opened: nothing changes
    assert (breaker.state, breaker.outage) == ("open", 1)


def test_half_open_reopens_at_the_first_failure_and_closes_only_when_told() -> None:
    clock = FakeClock()
    breaker = new_breaker(clock)
    breaker.failed(DOWN)
    breaker.failed(DOWN)
    assert not breaker.probe_due()
    clock.now += 5.0
    assert breaker.probe_due()
    breaker.begin_probe()
    assert (breaker.state, breaker.answered) == ("half-open", False)
    breaker.failed(DOWN)  # one failure is enough
    assert breaker.state == "open"
    assert not breaker.probe_due()  # another probe_after from now
    clock.now += 5.0
    breaker.begin_probe()
    breaker.succeeded()
    assert (breaker.state, breaker.answered) == ("half-open", True)  # it answered: not closed yet
    breaker.close()
    assert (breaker.state, breaker.outage) == ("closed", 1)


# -- the copy kept while closed -------------------------------------------------------------


def test_a_reply_with_nothing_learned_meanwhile_is_taken() -> None:
    known = LastKnown(10)
    first = known.begin(["s"], write=False)
    known.learn_read(first, "s", record(3))
    known.end(first)
    later = known.begin(["s"], write=False)  # started after: whatever it returns is newer
    known.learn_read(later, "s", record(1, incarnation=8))  # even another creation
    known.end(later)
    copy = known.get("s", 0)
    assert copy is not None
    assert (copy.record.version, copy.record.incarnation) == (1, 8)


def test_a_late_reply_never_takes_the_copy_back() -> None:
    known = LastKnown(10)
    read = known.begin(["s"], write=False)  # started first, answered last
    update = known.begin(["s"], write=True)
    known.learn_updated(update, record(2))
    known.end(update)
    known.learn_read(read, "s", record(1))  # older, same creation: ignored
    known.end(read)
    copy = known.get("s", 0)
    assert copy is not None
    assert copy.record.version == 2


def test_a_late_reply_of_a_later_version_is_taken_and_an_ambiguous_one_drops_the_copy() -> None:
    known = LastKnown(10)
    read = known.begin(["s"], write=False)
    update = known.begin(["s"], write=True)
    known.learn_updated(update, record(2))
    known.end(update)
    known.learn_read(read, "s", record(3))  # later version of the same creation: newer
    copy = known.get("s", 0)
    assert copy is not None
    assert copy.record.version == 3
    other = known.begin(["s"], write=False)
    create = known.begin(["s"], write=True)
    known.learn_created(create, record(1, incarnation=9))
    known.end(create)
    known.learn_read(other, "s", record(5, incarnation=7))  # another creation: which is newer?
    known.end(other)
    known.end(read)
    assert known.get("s", 0) is None  # forgotten: unavailable in an outage, never stale


def test_a_read_that_found_nothing_forgets_and_a_delete_forgets() -> None:
    known = LastKnown(10)
    ticket = known.begin(["s"], write=True)
    known.learn_created(ticket, record(1))
    known.end(ticket)
    known.forget("s")
    assert known.get("s", 0) is None


def test_an_update_that_never_read_takes_the_incarnation_of_the_copy_before_it() -> None:
    known = LastKnown(10)
    for learn in (
        lambda ticket: known.learn_created(ticket, record(1)),
        lambda ticket: known.learn_updated(ticket, record(2, incarnation=0)),
    ):
        ticket = known.begin(["s"], write=True)
        learn(ticket)
        known.end(ticket)
    copy = known.get("s", 0)
    assert copy is not None
    assert (copy.record.version, copy.record.incarnation) == (2, 7)
    ticket = known.begin(["s"], write=True)
    known.learn_updated(ticket, record(4, incarnation=0))  # not right after the copy: unknown
    known.end(ticket)
    assert known.get("s", 0) is None


def test_a_refused_write_drops_only_the_copy_it_proves_stale() -> None:
    known = LastKnown(10)
    ticket = known.begin(["s"], write=True)
    known.learn_created(ticket, record(1))
    known.learn_updated(ticket, record(2))
    known.end(ticket)
    known.learn_stale([record(2)], ConflictError("s"))  # behind the copy: proves nothing
    assert known.get("s", 0) is not None
    known.learn_stale([record(3)], ConflictError("s"))  # based on the copy: it was stale
    assert known.get("s", 0) is None


def test_an_expired_copy_is_none_and_the_copy_is_bounded() -> None:
    known = LastKnown(1)
    ticket = known.begin(["s", "t"], write=True)
    known.learn_created(ticket, record(1, deadline=100))
    assert known.get("s", 99) is not None
    assert known.get("s", 100) is None
    known.learn_created(ticket, SessionRecord("t", 1, None, b"t", 3))
    known.end(ticket)
    assert known.get("s", 0) is None  # the least recently used went
    assert len(known) == 1


async def test_a_claim_waits_for_the_writes_in_flight_and_only_for_them() -> None:
    known = LastKnown(10)
    read = known.begin(["s"], write=False)
    await asyncio.wait_for(known.writes_settled("s"), WAIT)  # a read is not waited for
    write = known.begin(["s"], write=True)
    waiter = asyncio.create_task(known.writes_settled("s"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()
    known.end(write)
    await asyncio.wait_for(waiter, WAIT)
    known.end(read)


def test_an_unanswered_write_makes_concurrent_replies_count_as_overtaken() -> None:
    known = LastKnown(10)
    ticket = known.begin(["s"], write=True)
    known.learn_created(ticket, record(1))
    known.end(ticket)
    read = known.begin(["s"], write=False)
    write = known.begin(["s"], write=True)
    known.learn_unsure(write)  # it may have been applied: the read may be older than it
    known.end(write)
    known.learn_read(read, "s", record(1, incarnation=8))
    known.end(read)
    assert known.get("s", 0) is None


# -- the outage journal ---------------------------------------------------------------------


def test_a_write_is_recognised_by_its_exact_record_only() -> None:
    sent = record(2, deadline=5000)
    assert same_write(sent, sent)
    assert not same_write(sent._replace(deadline_ms=5001), sent)  # moved by another writer
    assert not same_write(sent._replace(payload=b"other"), sent)
    assert not same_write(sent._replace(incarnation=8), sent)
    assert same_write(sent, sent._replace(incarnation=0))  # the writer left it to the primary


def test_the_journal_knows_what_the_primary_may_hold_from_this_instance() -> None:
    held = HeldSession("s", base=record(1))
    lost = record(2)
    held.wrote(lost, lost=True)
    held.wrote(record(3))
    assert (held.writes, held.latest) == (2, record(3))
    assert held.ours(record(1)._replace(deadline_ms=99))  # the base, whatever its deadline
    assert held.ours(lost)
    assert not held.ours(record(3))  # acknowledged by the fallback only: never sent
    assert not held.may_hold(lost)  # already known


def test_release_counts_settled_sessions_and_marks_them() -> None:
    journal = OutageJournal()
    held = journal.hold("s")
    held.filled = True
    empty = journal.hold("t")  # never filled: not counted as settled
    journal.release(held)
    journal.release(empty)
    assert (len(journal), journal.settled, held.released, empty.released) == (0, 1, True, True)
    assert journal.get("s") is None
    journal.hold("u")
    assert journal.clear() == 1


def test_a_copy_of_size_zero_keeps_nothing() -> None:
    known = LastKnown(0)
    ticket = known.begin(["s"], write=True)
    known.learn_created(ticket, record(1))
    known.end(ticket)
    assert known.get("s", 0) is None
