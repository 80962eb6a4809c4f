"""The outage journal: the sessions the fallback answers for, and what the outage wrote to each.

A session enters the journal the first time a call needs it from the fallback (its copy is put
into the fallback then) and leaves it when reconciliation has settled it with the primary, or
reported it as a conflict. While it is in the journal every call on it is served by the fallback,
so no call ever sees a version older than one the fallback acknowledged.

For each session the journal keeps what reconciliation needs to tell this instance's writes from
anyone else's: the primary's record the fallback copy started from (``base``) and the exact records
this instance sent to the primary without learning whether they were applied (``uncertain``: a
write whose reply was lost, then served again by the fallback, or a write of an interrupted
reconciliation). A primary found holding one of those holds this instance's write, however many
outage writes followed it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..records import SessionRecord

__all__ = ["HeldSession", "OutageJournal", "same_write"]


def same_write(stored: SessionRecord, sent: SessionRecord) -> bool:
    """Whether ``stored`` (read from the primary) is the record ``sent`` wrote: the same version,
    payload bytes and deadline, and the same incarnation unless ``sent`` left it to the primary
    (0)."""
    return (
        stored.version == sent.version
        and stored.payload == sent.payload
        and stored.deadline_ms == sent.deadline_ms
        and (sent.incarnation == 0 or stored.incarnation == sent.incarnation)
    )


@dataclass(eq=False)
class HeldSession:
    """One session the fallback answers for during an outage.

    Change it only with :attr:`lock` held; calls hold it while they use the fallback for this
    session, reconciliation while it reads or drops the fallback's copy (never while it waits for
    the primary).
    """

    session_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    filled: bool = False
    """Whether the fallback has been given this session (its copy, or a create)."""
    base: SessionRecord | None = None
    """The primary's record as this instance last knew it for sure; ``None``: none (created
    during the outage, or deleted by reconciliation)."""
    unknown_base: bool = False
    """Entered without a copy (a create during the outage): what the primary holds under this
    id was unknown, and a session there that is not this instance's makes that create a
    conflict."""
    last_event_id_known: bool = True
    """Whether the fallback's last event id for it is the true one."""
    uncertain: list[SessionRecord] = field(default_factory=list)
    """Records sent to the primary whose outcome is unknown, oldest first."""
    latest: SessionRecord | None = None
    """The last record the outage wrote (a create or an update), if any."""
    writes: int = 0
    """Writes acknowledged by the fallback so far: reconciliation compares it before and after
    writing to the primary, to know that nothing was written meanwhile."""
    deleted: bool = False
    """Deleted during the outage (a copy that merely expired tells the primary nothing: another
    instance may have kept the session alive there)."""
    last_event_id_written: bool = False
    """A last event id was set during the outage: to be written to the primary."""
    released: bool = False
    """Left the journal: calls waiting for :attr:`lock` must route again."""

    def wrote(self, record: SessionRecord | None = None, *, lost: bool = False) -> None:
        """The fallback acknowledged a write of this session (``record``: a create or an update).

        ``lost``: it had been sent to the primary first, and failed without an answer.
        """
        self.writes += 1
        if record is not None:
            self.latest = record
            if lost:
                self.may_hold(record)

    def may_hold(self, record: SessionRecord) -> bool:
        """``record`` was sent to the primary without an answer: it may be there. Return whether
        it was not known to be so already."""
        if record in self.uncertain:
            return False
        self.uncertain.append(record)
        return True

    def ours(self, stored: SessionRecord) -> bool:
        """Whether the primary's ``stored`` record is one this instance started from or wrote."""
        base = self.base
        if (
            base is not None
            and stored.version == base.version
            and stored.incarnation == base.incarnation
        ):
            return True
        return any(same_write(stored, sent) for sent in self.uncertain)


class OutageJournal:
    """The sessions the fallback answers for, by id."""

    def __init__(self) -> None:
        self._held: dict[str, HeldSession] = {}
        self.settled = 0
        """Sessions released since :meth:`begin_outage`, for the recovery log."""

    def __len__(self) -> int:
        return len(self._held)

    def get(self, session_id: str) -> HeldSession | None:
        return self._held.get(session_id)

    def hold(self, session_id: str) -> HeldSession:
        """Enter ``session_id`` (not in the journal); the caller fills it under its lock."""
        held = self._held[session_id] = HeldSession(session_id)
        return held

    def release(self, held: HeldSession) -> None:
        """Take ``held`` out of the journal: the primary answers for it again."""
        if self._held.get(held.session_id) is held:
            del self._held[held.session_id]
            if held.filled:
                self.settled += 1
        held.released = True

    def sessions(self) -> list[HeldSession]:
        """Every session in the journal, in the order they entered it."""
        return list(self._held.values())

    def begin_outage(self) -> None:
        self.settled = 0

    def clear(self) -> int:
        """Drop every session (the store is closing); return how many there were."""
        dropped = len(self._held)
        for held in self._held.values():
            held.released = True
        self._held.clear()
        return dropped
