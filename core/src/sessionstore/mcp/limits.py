"""Session limits of an MCP server fleet, counted in the store by compare-and-set.

:class:`SessionLimits` keeps ledgers, records of the layer's own namespace (never the
application's): one per principal (``mcp-limit.principal.<digest>``) and, for the fleet-wide
limit, shards of at most :data:`SHARD_SIZE` places (``mcp-limit.all.<n>``). A ledger maps the id
of each session holding a place to the wall-clock millisecond it was reserved. A place is taken
by a compare-and-set write of the ledger, so instances racing for the last place cannot both get
it: a limit is never overshot.

A place is given back when the session ends through the layer (``DELETE``, or an opening the
SDK refused). A session that expires or is deleted some other way keeps its place until a
ledger found full is *pruned*: the places of sessions the application's store no longer has are
dropped, except those reserved in the last :data:`RESERVATION_GRACE` seconds (a session is
reserved just before its record is created). An instance prunes one ledger at most once per
:data:`FULL_HOLD` while it stays full, so a client knocking on a full ledger costs one record
read, not a batch read of every session in it.

A ledger whose last place is given back is deleted, so a principal seen once leaves no record
behind (a reservation racing with the deletion creates it afresh).
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStoreError,
)
from ..models import Session, TransportType
from ..store import SessionStore
from ._clock import now_ms
from ._log import shown

__all__ = [
    "LEDGER_PREFIX",
    "MAX_PER_PRINCIPAL",
    "MAX_SESSIONS",
    "RESERVATION_GRACE",
    "SHARD_SIZE",
    "Admission",
    "SessionLimits",
    "check_limit",
]

logger = logging.getLogger("sessionstore.mcp")

LEDGER_PREFIX = "mcp-limit."
"""The id prefix of the ledgers in the layer's namespace."""

SHARD_SIZE = 1000
"""The most places one ledger record holds (each costs about 45 bytes of the record)."""

MAX_PER_PRINCIPAL = SHARD_SIZE
"""The highest ``max_sessions_per_principal`` (one ledger per principal)."""

MAX_SESSIONS = 1000 * SHARD_SIZE
"""The highest fleet-wide ``max_sessions``."""

RESERVATION_GRACE = 10.0
"""Seconds a place stays taken after its reservation even if its session record is not found
(it is created just after): a prune never frees a place an opening is still using."""

FULL_HOLD = 1.0
"""Seconds an instance that found every shard full answers 503 without reading them again, so a
client knocking on a full fleet costs the store nothing. A session ended on this instance ends
the hold at once; one ended elsewhere is seen once the hold is over. Also the least time
between two prunes of one ledger on one instance while it stays full (a place given back
through the layer is seen at once: only the places of sessions gone some other way wait)."""

_ATTEMPTS = 30  # compare-and-set rounds before a ledger counts as unavailable
_MAX_HOLDS = 4096  # ledgers whose last prune this instance remembers (one per full principal)
_HELD = "held"  # the ledger's metadata key: {session id: reserved at, Unix ms}


def check_limit(name: str, value: object, highest: int) -> int | None:
    """``value`` if it is ``None`` or an int in 1..``highest``, else ``ValueError`` naming it."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= highest:
        raise ValueError(f"{name} must be None or an int from 1 to {highest}, not {value!r}")
    return value


@dataclass(frozen=True)
class Admission:
    """The outcome of :meth:`SessionLimits.admit`: ``admitted``, the fleet shard that holds
    the session's place (``None`` without a fleet-wide limit), and when (``time.monotonic()``)."""

    admitted: bool
    shard: int | None = None
    at: float = field(default_factory=time.monotonic)


class SessionLimits:
    """Per-principal and fleet-wide session limits over ``ledgers`` (the layer's namespace).

    ``sessions`` is the application's store: a pruned ledger keeps the places of the sessions it
    still has. Either limit may be ``None`` (no limit).
    """

    def __init__(
        self,
        ledgers: SessionStore,
        sessions: SessionStore,
        *,
        max_sessions: int | None,
        max_sessions_per_principal: int | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledgers = ledgers
        self._sessions = sessions
        self.max_sessions = check_limit("max_sessions", max_sessions, MAX_SESSIONS)
        self.max_sessions_per_principal = check_limit(
            "max_sessions_per_principal", max_sessions_per_principal, MAX_PER_PRINCIPAL
        )
        self._clock = clock
        self._full_until = 0.0  # time.monotonic() until which the fleet counts as full here
        # ledger id -> time.monotonic() before which it is not pruned again (found full)
        self._prune_after: dict[str, float] = {}
        if self.max_sessions is None:
            self._caps: list[int] = []
        else:
            shards = math.ceil(self.max_sessions / SHARD_SIZE)
            share, extra = divmod(self.max_sessions, shards)
            self._caps = [share + (1 if n < extra else 0) for n in range(shards)]

    def __repr__(self) -> str:
        return (
            f"<SessionLimits max_sessions={self.max_sessions} "
            f"max_sessions_per_principal={self.max_sessions_per_principal}>"
        )

    async def admit(self, session_id: str, principal: str) -> Admission:
        """Take a place for ``session_id`` of ``principal`` (a digest) under every limit, or
        none: ``Admission(False)`` when a limit is reached.

        Raises :class:`~sessionstore.SessionStoreError` when the ledgers cannot be read or
        written (then no place is held).
        """
        if self.max_sessions_per_principal is not None and not await self._reserve(
            _principal_ledger(principal), self.max_sessions_per_principal, session_id
        ):
            return Admission(False)
        if not self._caps:
            return Admission(True)
        try:
            shard = await self._reserve_in_fleet(session_id)
        except SessionStoreError:
            await self.release(session_id, principal, None)
            raise
        if shard is None:
            await self.release(session_id, principal, None)
            return Admission(False)
        return Admission(True, shard)

    async def confirm(self, admission: Admission, session_id: str, principal: str) -> bool:
        """Once the session's record exists: whether its places still stand.

        A prune keeps a place whose record it does not find for :data:`RESERVATION_GRACE`
        seconds only, so a creation slower than half that may have lost one: then each place is
        taken again (where it still stands, that changes nothing), and ``False`` means a limit
        was reached meanwhile (the caller ends the session and releases the rest). The
        principal's place is checked whatever the time (one read): the principal's ledger is
        deleted when its last place is given back, and a place reserved just before that delete
        reached the store went with it. Raises :class:`~sessionstore.SessionStoreError` as
        :meth:`admit` does.
        """
        if self.max_sessions_per_principal is not None and not await self._reserve(
            _principal_ledger(principal), self.max_sessions_per_principal, session_id
        ):
            return False
        if time.monotonic() - admission.at < RESERVATION_GRACE / 2:
            return True
        shard = admission.shard
        if shard is not None and 0 <= shard < len(self._caps):
            return await self._reserve(_shard_ledger(shard), self._caps[shard], session_id)
        return True

    async def release(self, session_id: str, principal: str, shard: int | None) -> None:
        """Give back the places of ``session_id`` (best effort: a place not given back is
        freed by the next prune once the session's record is gone)."""
        ledgers = []  # (ledger id, deleted once empty): the shards are few, principals are not
        if self.max_sessions_per_principal is not None:
            ledgers.append((_principal_ledger(principal), True))
        if shard is not None and 0 <= shard < len(self._caps):
            ledgers.append((_shard_ledger(shard), False))
            self._full_until = 0.0
        for ledger_id, delete_empty in ledgers:
            self._prune_after.pop(ledger_id, None)
            try:
                await self._drop(ledger_id, session_id, delete_empty=delete_empty)
            except SessionStoreError as exc:
                logger.warning(
                    "place of a session not given back in %s: %s", ledger_id, shown(exc, 300)
                )

    # -- ledgers -----------------------------------------------------------------------------

    async def _reserve_in_fleet(self, session_id: str) -> int | None:
        if time.monotonic() < self._full_until:
            return None
        shards = len(self._caps)
        first = secrets.randbelow(shards)  # spread the openings over the shards
        for step in range(shards):
            shard = (first + step) % shards
            if await self._reserve(_shard_ledger(shard), self._caps[shard], session_id):
                return shard
        self._full_until = time.monotonic() + FULL_HOLD
        return None

    async def _reserve(self, ledger_id: str, cap: int, session_id: str) -> bool:
        """Add ``session_id`` to the ledger unless it holds ``cap`` places (after a prune)."""
        for _ in range(_ATTEMPTS):
            now = self._now_ms()
            try:
                ledger = await self._ledgers.get_session(ledger_id)
            except SessionNotFoundError:
                fresh = Session(
                    id=ledger_id,
                    transport=TransportType.HTTP,
                    metadata={_HELD: {session_id: now}},
                )
                try:
                    await self._ledgers.create_session(fresh)
                except SessionExistsError:
                    continue
                return True
            held = _held_of(ledger)
            if session_id in held:
                return True
            if len(held) >= cap:
                if time.monotonic() < self._prune_after.get(ledger_id, 0.0):
                    return False  # pruned a moment ago and still full: spare the batch read
                pruned = await self._pruned(held, now)
                if len(pruned) >= cap:
                    self._hold(ledger_id)
                    if len(pruned) < len(held):  # keep what the prune found, if no one wrote
                        ledger.metadata[_HELD] = pruned
                        with contextlib.suppress(ConflictError, SessionNotFoundError):
                            await self._ledgers.update_session(ledger)
                    return False
                self._prune_after.pop(ledger_id, None)
                held = pruned
            held[session_id] = now
            ledger.metadata[_HELD] = held
            try:
                await self._ledgers.update_session(ledger)
            except (ConflictError, SessionNotFoundError):
                continue
            return True
        raise ConflictError(ledger_id, detail=f"ledger still contended after {_ATTEMPTS} attempts")

    async def _drop(self, ledger_id: str, session_id: str, *, delete_empty: bool) -> None:
        for _ in range(_ATTEMPTS):
            try:
                ledger = await self._ledgers.get_session(ledger_id)
            except SessionNotFoundError:
                return
            held = _held_of(ledger)
            if held.pop(session_id, None) is None:
                return
            try:
                if held or not delete_empty:
                    ledger.metadata[_HELD] = held
                    await self._ledgers.update_session(ledger)
                else:
                    # The last place of a principal: no record left behind per principal ever
                    # seen. The store has no compare-and-set delete: a reservation written
                    # between the read above and this delete loses its place, which confirm()
                    # takes again once that session's record exists. Only a delete delayed in
                    # flight past that confirmation (longer than an opening takes) could let the
                    # principal hold one session over its limit, until one of them ends.
                    await self._ledgers.delete_session(ledger_id)
            except SessionNotFoundError:
                return
            except ConflictError:
                continue
            return
        raise ConflictError(ledger_id, detail=f"ledger still contended after {_ATTEMPTS} attempts")

    def _hold(self, ledger_id: str) -> None:
        """Prune ``ledger_id`` (found full after a prune) again only after :data:`FULL_HOLD`."""
        now = time.monotonic()
        holds = self._prune_after
        holds.pop(ledger_id, None)  # re-inserted last: the dict stays in order of expiry
        if len(holds) >= _MAX_HOLDS:  # bounded: the expired go first, then the oldest
            for key in [k for k, until in holds.items() if until <= now]:
                del holds[key]
            while len(holds) >= _MAX_HOLDS:
                del holds[next(iter(holds))]
        holds[ledger_id] = now + FULL_HOLD

    async def _pruned(self, held: dict[str, int], now: int) -> dict[str, int]:
        """``held`` without the sessions the application's store no longer has (reserved more
        than :data:`RESERVATION_GRACE` ago)."""
        live = {session.id for session in await self._sessions.get_sessions_batch(list(held))}
        grace = RESERVATION_GRACE * 1000
        return {
            session_id: reserved
            for session_id, reserved in held.items()
            if session_id in live or now - reserved < grace
        }

    def _now_ms(self) -> int:
        return now_ms(self._clock)


def _principal_ledger(principal: str) -> str:
    return f"{LEDGER_PREFIX}principal.{principal}"


def _shard_ledger(shard: int) -> str:
    return f"{LEDGER_PREFIX}all.{shard}"


def _held_of(ledger: Session) -> dict[str, int]:
    """The places a ledger holds (a record of another shape holds none: it is rewritten)."""
    held: Any = ledger.metadata.get(_HELD)
    if not isinstance(held, dict):
        return {}
    return {
        key: value for key, value in held.items() if isinstance(key, str) and type(value) is int
    }
