"""Reconciliation: writing what the outage journal holds onto the primary, in the background.

It runs while the circuit is half-open, next to the calls: it never holds a session's lock while it
waits for the primary, so calls are served throughout (from the fallback for the sessions still in
the journal, from the primary for the others). Each session is settled on its own:

1. under the session's lock, read what the fallback holds for it (a snapshot);
2. without the lock, make the primary hold it, by compare-and-set from what the primary is known
   to hold (``base``); a primary that holds something else holds another writer's data, which is
   kept, and the session is reported as a :class:`FallbackConflict`;
3. under the lock again: if no call wrote the session meanwhile, take it out of the journal (the
   primary answers for it from then on) and out of the fallback; else start again from 1.

A write that may or may not have reached the primary is recognised by its exact record (see
:mod:`sessionstore.fallback.journal`). Several sessions are settled at once
(:data:`RECONCILE_CONCURRENCY`); the first unavailability stops them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import (
    ConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStoreError,
    StoreUnavailableError,
)
from ..records import SessionRecord
from ..urls import redact_text
from .backends import BackendHooks
from .breaker import CircuitBreaker
from .journal import HeldSession, OutageJournal, same_write
from .last_known import LastKnown

__all__ = ["MAX_CONFLICTS_KEPT", "RECONCILE_CONCURRENCY", "FallbackConflict", "Reconciler"]

log = logging.getLogger("sessionstore.fallback")

MAX_CONFLICTS_KEPT = 1000
"""How many of the most recent conflicts :attr:`FallbackMiddleware.conflicts` keeps."""

RECONCILE_CONCURRENCY = 8
"""How many sessions reconciliation settles at once (each costs one connection of the primary)."""

ConflictKind = Literal["create", "update", "delete", "last_event_id"]


@dataclass(frozen=True)
class FallbackConflict:
    """A write made during an outage that reconciliation did not apply to the primary.

    The primary's data was left as it was. ``record`` is what this instance held for the session
    when it gave up (``None`` if it had deleted it); decode it with
    :func:`sessionstore.decode_session` to recover or merge the lost change.
    """

    session_id: str
    what: ConflictKind
    """Which write could not be applied."""
    reason: str
    record: SessionRecord | None


_CREATED_OVER = (
    "a session with this id is live on the primary: the one this instance created during the "
    "outage (without a copy to tell it existed) was not applied"
)


class _Conflict(Exception):
    def __init__(self, what: ConflictKind, reason: str) -> None:
        super().__init__(reason)
        self.what = what
        self.reason = reason


class Reconciler:
    """Settles the sessions of ``journal`` with the primary while ``breaker`` is half-open.

    ``now_ms`` gives the store's time for the hooks; ``report`` receives each conflict (after
    the fallback's copy of that session was dropped); ``reconciled`` is called for each session
    settled without one.
    """

    def __init__(
        self,
        *,
        primary: BackendHooks,
        fallback: BackendHooks,
        journal: OutageJournal,
        known: LastKnown,
        breaker: CircuitBreaker,
        now_ms: Callable[[], int],
        report: Callable[[FallbackConflict], None],
        reconciled: Callable[[], None] = lambda: None,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._journal = journal
        self._known = known
        self._breaker = breaker
        self._now_ms = now_ms
        self._report = report
        self._reconciled = reconciled

    async def run(self) -> None:
        """Settle sessions until the journal is empty or the circuit is no longer half-open.

        The primary's unavailability opens the circuit (and ends the run); sessions settled
        before stay settled, the others stay in the journal for the next probe. Other errors
        propagate once every worker has stopped.
        """
        busy: set[str] = set()
        queue: deque[HeldSession] = deque()

        def next_session() -> HeldSession | None:
            if not queue:
                queue.extend(h for h in self._journal.sessions() if h.session_id not in busy)
            while queue:
                held = queue.popleft()
                if not held.released and held.session_id not in busy:
                    return held
            return None

        async def worker() -> None:
            while self._breaker.state == "half-open":
                held = next_session()
                if held is None:
                    return
                busy.add(held.session_id)
                try:
                    await self.settle(held)
                except StoreUnavailableError as exc:
                    self._breaker.failed(exc)
                    return
                finally:
                    busy.discard(held.session_id)

        outcomes = await asyncio.gather(
            *(worker() for _ in range(RECONCILE_CONCURRENCY)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def settle(self, held: HeldSession) -> None:
        """Make the primary hold what the fallback holds for one session, then release it from
        the journal; or report a conflict. Raises StoreUnavailableError, leaving it held."""
        session_id = held.session_id
        while True:
            now_ms = self._now_ms()
            async with held.lock:
                if held.released:
                    return
                if not held.filled:  # its claim failed: the fallback never served it
                    self._journal.release(held)
                    return
                final: SessionRecord | None = await self._fallback.call(
                    "session_get", session_id, now_ms
                )
                last_event_id = None
                if final is not None and held.last_event_id_known:
                    last_event_id = await self._fallback.call(
                        "last_event_id_get", session_id, now_ms
                    )
                writes = held.writes
                if _nothing_to_write(held, final):
                    await self._release(held, final, last_event_id, now_ms)
                    return
            try:
                await self._push(held, final, last_event_id, now_ms)
            except _Conflict as conflict:
                await self._give_up(held, conflict.what, conflict.reason, now_ms)
                return
            except StoreUnavailableError:
                raise
            except SessionStoreError as exc:  # refused otherwise: never lost silently
                reason = f"the primary raised {type(exc).__name__}: {redact_text(str(exc))}"
                await self._give_up(held, _kind(held, final), reason, now_ms)
                return
            async with held.lock:
                if _left(held):  # given up or closed while the primary answered
                    return
                if held.writes == writes:
                    await self._release(held, final, last_event_id, now_ms)
                    return
            # Written during the push: once more, from what the primary holds now.

    # -- one session ------------------------------------------------------------------------

    async def _push(
        self,
        held: HeldSession,
        final: SessionRecord | None,
        last_event_id: str | None,
        now_ms: int,
    ) -> None:
        """Make the primary hold ``final`` (and the last event id), or raise _Conflict."""
        if final is None:
            await self._push_absence(held, now_ms)
            return
        base = held.base
        if base is not None and base.incarnation == final.incarnation:
            version = base.version
        else:  # created during the outage (after deleting the copy, or expiring it here)
            if held.deleted:
                await self._delete_if_ours(held, now_ms)
            version = await self._create(held, final, now_ms)
        # Successive compare-and-sets up to the final version, so that the version every client
        # holds from the fallback is the primary's afterwards.
        while version < final.version:
            record = final._replace(version=version + 1)
            try:
                await self._send(held, "session_update", record, now_ms)
            except ConflictError:
                current = await self._call("session_get", held.session_id, now_ms)
                if not (
                    current is not None
                    and current.incarnation == final.incarnation
                    and version < current.version <= final.version
                    and held.ours(current)
                ):
                    raise _Conflict(
                        "update",
                        f"updated on the primary during the outage (expected version {version})",
                    ) from None
                held.base = current  # a write of ours whose answer was lost: go on from it
                version = current.version
            except SessionNotFoundError:
                raise _Conflict("update", "deleted on the primary during the outage") from None
            else:
                held.base = record
                version += 1
        if held.last_event_id_written and last_event_id is not None:
            await self._push_last_event_id(held, final, last_event_id, now_ms)

    async def _create(self, held: HeldSession, final: SessionRecord, now_ms: int) -> int:
        """Create ``final`` at version 1 on the primary; return the version it is at (an earlier
        create of ours may have got further)."""
        record = final._replace(version=1)
        try:
            await self._send(held, "session_create", record, now_ms)
        except SessionExistsError:
            current = await self._call("session_get", held.session_id, now_ms)
            if (
                current is None
                or current.incarnation != final.incarnation
                or current.version > final.version
                or not held.ours(current)
            ):
                raise _Conflict(
                    "create", "a session with this id was created on the primary meanwhile"
                ) from None
            held.base = current
            version: int = current.version
            return version
        held.base = record
        return 1

    async def _push_last_event_id(
        self, held: HeldSession, final: SessionRecord, last_event_id: str, now_ms: int
    ) -> None:
        deadline = final.deadline_ms
        current = await self._call("session_get", held.session_id, now_ms)
        if current is None or current.incarnation != final.incarnation:
            raise _Conflict(
                "last_event_id", "deleted or created again on the primary during the outage"
            )
        # Another writer may have moved its deadline meanwhile: the last event id never
        # shortens the lifetime it gave.
        if deadline is not None and current.deadline_ms is not None:
            deadline = max(deadline, current.deadline_ms)
        else:
            deadline = None
        try:
            await self._call("last_event_id_set", held.session_id, last_event_id, deadline, now_ms)
        except SessionNotFoundError:
            raise _Conflict("last_event_id", "deleted on the primary meanwhile") from None

    async def _push_absence(self, held: HeldSession, now_ms: int) -> None:
        """The fallback holds nothing for the session: deleted, or expired here."""
        if held.deleted:
            current = await self._delete_if_ours(held, now_ms)
            if current is not None and held.unknown_base:
                raise _Conflict("create", _CREATED_OVER)
            return
        latest = held.latest
        if latest is None:
            return  # only read, then expired here: nothing to tell the primary
        current = await self._call("session_get", held.session_id, now_ms)
        if current is None or same_write(current, latest):
            return
        if held.unknown_base:
            raise _Conflict("create", _CREATED_OVER)
        creations = {latest.incarnation, 0 if held.base is None else held.base.incarnation}
        if current.incarnation in creations:
            raise _Conflict(
                "update",
                "expired in this instance's fallback before it was reconciled, while another "
                "writer kept it alive on the primary",
            )

    async def _delete_if_ours(self, held: HeldSession, now_ms: int) -> SessionRecord | None:
        """Carry a delete of the outage over: delete the session on the primary if it holds
        what this instance knew or wrote there. If it holds something else, the delete is a
        conflict when the deleted session came from the primary (``base``); a session created
        during the outage (perhaps on the primary too, by a create whose reply was lost) was
        never anyone else's to keep. Returns the record left on the primary that is not this
        instance's (``None``: none).

        There is no compare-and-delete hook: another writer between this read and the delete
        would go unnoticed; the window is one round trip.
        """
        base = held.base
        if base is None and not held.uncertain and not held.unknown_base:
            return None  # created and deleted during the outage: the primary never had it
        current: SessionRecord | None = await self._call("session_get", held.session_id, now_ms)
        if current is not None:
            if held.ours(current):
                await self._call("session_delete", held.session_id, now_ms)
                current = None
            elif base is not None:
                raise _Conflict(
                    "delete",
                    f"changed on the primary during the outage (version {base.version} there is "
                    f"now {current.version}); not deleted",
                )
        held.base = None
        held.uncertain.clear()  # nothing of ours is left there
        return current

    # -- ending a session's reconciliation (with its lock held) ------------------------------

    async def _release(
        self,
        held: HeldSession,
        final: SessionRecord | None,
        last_event_id: str | None,
        now_ms: int,
    ) -> None:
        self._journal.release(held)
        self._reconciled()  # the primary answers for it from now on
        if final is None:
            self._known.forget(held.session_id)
        else:
            self._known.set(final, last_event_id, held.last_event_id_known)
        await self._fallback.call("session_delete", held.session_id, now_ms)

    async def _give_up(
        self, held: HeldSession, what: ConflictKind, reason: str, now_ms: int
    ) -> None:
        """Report a conflict and drop the fallback's copy: the primary's data stands."""
        async with held.lock:
            if held.released:
                return
            # What this instance holds now: calls may have written it since the snapshot.
            record: SessionRecord | None = await self._fallback.call(
                "session_get", held.session_id, now_ms
            )
            if record is None and not held.deleted:
                record = held.latest  # expired here: the last write is all there is
            self._journal.release(held)
            self._known.forget(held.session_id)
            await self._fallback.call("session_delete", held.session_id, now_ms)
        conflict = FallbackConflict(held.session_id, what, reason, record)
        log.warning(
            "fallback reconciliation: %s of session %r not applied to primary %r: %s",
            what,
            held.session_id,
            self._primary.name,
            reason,
        )
        self._report(conflict)

    async def _send(self, held: HeldSession, hook: str, record: SessionRecord, now_ms: int) -> None:
        """Write ``record`` to the primary with ``hook``. Until the primary answers, it may hold
        it: if this attempt is cut off (unavailable, cancelled), a later one recognises it."""
        added = held.may_hold(record)
        try:
            await self._call(hook, record, now_ms)
        except StoreUnavailableError:
            raise
        except SessionStoreError:
            if added:  # refused: this attempt wrote nothing
                held.uncertain.remove(record)
            raise
        if added:  # applied: it becomes the base
            held.uncertain.remove(record)

    async def _call(self, hook: str, *args: Any) -> Any:
        """Call the primary; an answer of any kind but unavailability tells the breaker it is
        back."""
        try:
            result = await self._primary.call(hook, *args)
        except StoreUnavailableError:
            raise
        except SessionStoreError:
            self._breaker.succeeded()
            raise
        self._breaker.succeeded()
        return result


def _left(held: HeldSession) -> bool:
    """Whether ``held`` left the journal (read after an ``await``: a plain attribute read would
    be narrowed by the type checker from before it)."""
    return held.released


def _nothing_to_write(held: HeldSession, final: SessionRecord | None) -> bool:
    """Whether the outage left nothing for the primary (the session was only read)."""
    if final is None:
        if held.deleted:
            return held.base is None and not held.uncertain and not held.unknown_base
        return held.latest is None
    if held.last_event_id_written:
        return False
    base = held.base
    return (
        base is not None and final.version == base.version and final.incarnation == base.incarnation
    )


def _kind(held: HeldSession, final: SessionRecord | None) -> ConflictKind:
    """Which write a session's reconciliation stands for, to report it."""
    if final is None:
        return "delete" if held.deleted else "update"
    if held.base is None or final.incarnation != held.base.incarnation:
        return "create"
    return "update"
