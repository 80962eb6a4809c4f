"""The copy the fallback starts from: the last record each session was known to hold on the primary.

Kept while the circuit is closed, from what the primary returned or accepted, least recently used
dropped first. When a session is first needed during an outage, its copy is put into the fallback.

The copy never goes back past what this instance acknowledged. Replies are processed in any order
(a read's reply may be handled after the reply of an update that followed it), so a reply is taken
only when it is known to be newer:

* a reply of a call during which nothing else was learned about that session is newer than
  everything learned before (the call started after those had answered);
* otherwise it is taken only if it is a later version of the same incarnation (versions only grow
  within one creation of an id); anything else is ambiguous, and the copy is forgotten: a session
  without a copy cannot be served during an outage, which is safe, where an old copy is not.

Every call to the primary is tracked from start to answer (:meth:`LastKnown.begin` and
:meth:`LastKnown.end`) for that, and so that a session is copied into the fallback only once no
write of it to the primary is in flight (:meth:`LastKnown.writes_settled`): a write acknowledged
after the copy was made would leave the fallback behind it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..errors import ConflictError
from ..records import SessionRecord

__all__ = ["Known", "LastKnown", "Ticket"]


class Known(NamedTuple):
    """The copy of one session: the primary's record and, if known, its last event id."""

    record: SessionRecord
    last_event_id: str | None
    last_event_id_known: bool


class _Watch:
    """The calls to the primary in flight on one session."""

    __slots__ = ("calls", "changes", "idle", "writes")

    def __init__(self) -> None:
        self.calls = 0
        self.writes = 0
        self.changes = 0  # how often the copy of this session changed while watched
        self.idle: asyncio.Event | None = None  # set when ``writes`` drops to 0, if awaited


class Ticket:
    """One call to the primary, from :meth:`LastKnown.begin` to :meth:`LastKnown.end`."""

    __slots__ = ("starts", "write")

    def __init__(self, starts: dict[str, tuple[_Watch, int]], write: bool) -> None:
        self.starts = starts  # session id -> (its watch, its change count when the call began)
        self.write = write


class LastKnown:
    """The bounded copy of the primary's records (``size`` sessions; 0 keeps none).

    For the tasks of one event loop; no method but :meth:`writes_settled` awaits.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._copies: OrderedDict[str, Known] = OrderedDict()
        self._watches: dict[str, _Watch] = {}

    def __len__(self) -> int:
        return len(self._copies)

    # -- tracking calls to the primary ----------------------------------------------------------

    def begin(self, session_ids: Iterable[str], *, write: bool) -> Ticket:
        """Register a call to the primary on ``session_ids`` that is about to start.

        ``write``: whether it may change them. End it with :meth:`end` however it ends.
        """
        starts: dict[str, tuple[_Watch, int]] = {}
        watches = self._watches
        for session_id in session_ids:  # usually one
            watch = watches.get(session_id)
            if watch is None:
                watch = watches[session_id] = _Watch()
            watch.calls += 1
            if write:
                watch.writes += 1
            starts[session_id] = (watch, watch.changes)
        return Ticket(starts, write)

    def end(self, ticket: Ticket) -> None:
        """The call of ``ticket`` has answered (or failed); learn from it before this."""
        for session_id, (watch, _) in ticket.starts.items():
            watch.calls -= 1
            if ticket.write:
                watch.writes -= 1
                if watch.writes == 0 and watch.idle is not None:
                    watch.idle.set()
                    watch.idle = None
            if watch.calls == 0 and self._watches.get(session_id) is watch:
                del self._watches[session_id]

    async def writes_settled(self, session_id: str) -> None:
        """Return once no write of ``session_id`` to the primary is in flight.

        It waits for writes already started, each bounded by the primary's own timeout.
        """
        while True:
            watch = self._watches.get(session_id)
            if watch is None or watch.writes == 0:
                return
            if watch.idle is None:
                watch.idle = asyncio.Event()
            await watch.idle.wait()

    # -- reading the copy -------------------------------------------------------------------

    def get(self, session_id: str, now_ms: int) -> Known | None:
        """The copy of ``session_id``, or ``None`` if there is none or its deadline has passed
        (an expired copy proves nothing: another instance may have kept the session alive)."""
        known = self._copies.get(session_id)
        if known is None:
            return None
        deadline = known.record.deadline_ms
        return known if deadline is None or deadline > now_ms else None

    # -- learning from the primary's answers ------------------------------------------------

    def learn_read(self, ticket: Ticket, session_id: str, record: SessionRecord | None) -> None:
        """A read answered ``record`` (``None``: no live session)."""
        if record is None:
            self.forget(session_id)
        else:
            self._take(ticket, record, write=False)

    def learn_created(
        self, ticket: Ticket, record: SessionRecord, last_event_id: str | None = None
    ) -> None:
        """A create (or a load) of ``record`` succeeded; it has ``last_event_id``."""
        if self._overtaken(ticket, record.id):
            self.forget(record.id)  # a delete or create answered meanwhile: which came last?
        else:
            self._put(Known(record, last_event_id, True))
            self._changed(record.id)

    def learn_updated(self, ticket: Ticket, record: SessionRecord) -> None:
        """A compare-and-set of ``record`` succeeded."""
        if record.incarnation == 0:  # a writer that never read it: the primary kept its own
            current = self._copies.get(record.id)
            if (
                current is None
                or current.record.version != record.version - 1
                or self._overtaken(ticket, record.id)
            ):
                self.forget(record.id)  # its incarnation is unknown
                return
            record = record._replace(incarnation=current.record.incarnation)
        self._take(ticket, record, write=True)

    def learn_last_event_id_set(
        self, ticket: Ticket, session_id: str, event_id: str, deadline_ms: int | None
    ) -> None:
        """``last_event_id_set`` succeeded: the session's last event id and deadline changed."""
        current = self._copies.get(session_id)
        if current is not None:
            if self._overtaken(ticket, session_id):
                self._put(current._replace(last_event_id=None, last_event_id_known=False))
            else:
                record = current.record._replace(deadline_ms=deadline_ms)
                self._put(Known(record, event_id, True))
        self._changed(session_id)

    def learn_last_event_id(self, ticket: Ticket, session_id: str, event_id: str | None) -> None:
        """``last_event_id_get`` answered ``event_id``."""
        current = self._copies.get(session_id)
        if current is not None and not self._overtaken(ticket, session_id):
            self._put(current._replace(last_event_id=event_id, last_event_id_known=True))
            self._changed(session_id)

    def learn_unsure(self, ticket: Ticket) -> None:
        """A write failed without an answer: it may or may not have been applied.

        The copies stay (the fallback may serve the write again from them), but replies of
        concurrent calls no longer count as newer than them.
        """
        if ticket.write:
            for session_id in ticket.starts:
                self._changed(session_id)

    def learn_stale(self, records: Sequence[SessionRecord], exc: ConflictError) -> None:
        """A compare-and-set was refused: drop the copies that refusal proves stale, those it
        was based on (a writer behind the copy, say another task of this instance, proves
        nothing)."""
        for record in records:
            known = self._copies.get(record.id)
            if (
                known is not None
                and record.id in exc.session_ids
                and known.record.version == record.version - 1
            ):
                self.forget(record.id)

    # -- changing the copy directly ---------------------------------------------------------

    def set(self, record: SessionRecord, last_event_id: str | None, known: bool) -> None:
        """Make ``record`` the copy: what reconciliation left on the primary."""
        self._put(Known(record, last_event_id, known))
        self._changed(record.id)

    def forget(self, session_id: str) -> None:
        """Drop the copy of ``session_id`` (always safe: it only costs availability)."""
        self._copies.pop(session_id, None)
        self._changed(session_id)

    def clear(self) -> None:
        """Drop every copy (the namespace was cleared)."""
        self._copies.clear()
        for watch in self._watches.values():
            watch.changes += 1

    # -- internals --------------------------------------------------------------------------

    def _overtaken(self, ticket: Ticket, session_id: str) -> bool:
        start = ticket.starts.get(session_id)
        return start is None or start[0].changes != start[1]

    def _changed(self, session_id: str) -> None:
        watch = self._watches.get(session_id)
        if watch is not None:
            watch.changes += 1

    def _take(self, ticket: Ticket, record: SessionRecord, *, write: bool) -> None:
        session_id = record.id
        current = self._copies.get(session_id)
        same_creation = current is not None and current.record.incarnation == record.incarnation
        if self._overtaken(ticket, session_id) and not (
            same_creation and current is not None and record.version > current.record.version
        ):
            if same_creation and current is not None and record.version <= current.record.version:
                if write:
                    self._changed(session_id)
                return  # older than (or the same as) the copy: keep the copy
            self.forget(session_id)  # ambiguous
            return
        if same_creation and current is not None:
            known = Known(record, current.last_event_id, current.last_event_id_known)
        else:
            known = Known(record, None, False)
        self._put(known)
        self._changed(session_id)

    def _put(self, known: Known) -> None:
        if not self._size:
            return
        copies = self._copies
        copies[known.record.id] = known
        copies.move_to_end(known.record.id)
        if len(copies) > self._size:
            copies.popitem(last=False)
