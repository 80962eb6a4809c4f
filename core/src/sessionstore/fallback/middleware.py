"""The fallback middleware: each operation to the primary or to the fallback, and serving it there.

The parts it puts together, each in its own module:

* :mod:`~sessionstore.fallback.breaker`: whether the primary is called;
* :mod:`~sessionstore.fallback.last_known`: the copy of the primary's records a session starts
  from in the fallback;
* :mod:`~sessionstore.fallback.journal`: the sessions the fallback answers for, and what the
  outage wrote to each;
* :mod:`~sessionstore.fallback.reconcile`: writing the journal onto the primary, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from typing import Any, Literal

from .._tasks import cancel_and_wait
from ..errors import (
    ConflictError,
    EventNotFoundError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ..hookspecs import hookimpl
from ..records import Event, SessionDump, SessionRecord
from ..urls import redact_text
from .backends import BackendHooks
from .breaker import CircuitBreaker, CircuitState
from .journal import HeldSession, OutageJournal
from .last_known import LastKnown, Ticket
from .options import check_fallback_options
from .reconcile import MAX_CONFLICTS_KEPT, FallbackConflict, Reconciler

__all__ = ["FallbackMiddleware", "ReconcileOutcome"]

log = logging.getLogger("sessionstore.fallback")

# Every event id the fallback issues starts with this, then "{instance token}-{outage}:": so the
# primary never sees such an id (it could name another session's stream there), and an id from an
# outage that is over is known to be gone.
_EVENT_MARK = "fallback-"

_WRITES = frozenset(
    {
        "session_create",
        "session_update",
        "session_update_many",
        "session_delete",
        "last_event_id_set",
        "session_load",
    }
)
_NAMESPACE_WIDE = frozenset(
    {"session_count", "session_page", "session_purge_expired", "store_clear"}
)
_PRIMARY_ONLY = {
    "session_dump": "dump_session needs the primary",
    "session_load": "load_session needs the primary",
}

ReconcileOutcome = Literal["reconciled", "conflict"]
"""How the reconciliation of one session ended, as :meth:`FallbackMiddleware.add_observer`
observers are told."""

_Inner = Coroutine[Any, Any, Any]
_Learn = Callable[[LastKnown, Ticket, tuple[Any, ...], Any], None]


class _Released(Exception):
    """A session left the journal while a call waited for it: route the call again."""


class FallbackMiddleware:
    """Serve operations from ``fallback`` while ``primary`` is unreachable (see
    :mod:`sessionstore.fallback`).

    ``primary`` and ``fallback`` are backends (what a backend factory returns) for the same
    namespace; the middleware calls the primary's hooks directly to reconcile and owns the
    fallback (it closes it with the store). The fallback must keep a record it is given by
    ``session_create`` as given, version and incarnation included, as the memory backend does:
    that is how a session the primary returned is copied into it.

    Options (also ``open_store(..., fallback_options={...})``):

    * ``failures`` (3): consecutive :class:`~sessionstore.StoreUnavailableError` that open the
      circuit.
    * ``probe_after`` (5.0): seconds the circuit stays open before an operation starts a probe
      (reconciliation, in the background).
    * ``cache_size`` (10_000): how many sessions' last known records to keep while closed, least
      recently used dropped first; 0 keeps none (then only sessions created during an outage can
      be served).
    * ``on_conflict``: called with each :class:`FallbackConflict`, during reconciliation; its
      exceptions are logged and ignored.
    * ``clock`` (``time.monotonic``): seconds, for the breaker's timing only; expiry still follows
      the store's clock.

    Safe to share between the tasks of one event loop. Use one instance per store.
    """

    def __init__(
        self,
        primary: object,
        fallback: object,
        *,
        primary_name: str = "primary",
        fallback_name: str = "fallback",
        failures: int = 3,
        probe_after: float = 5.0,
        cache_size: int = 10_000,
        on_conflict: Callable[[FallbackConflict], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = check_fallback_options(
            {
                "failures": failures,
                "probe_after": probe_after,
                "cache_size": cache_size,
                "on_conflict": on_conflict,
                "clock": clock,
            }
        )
        self._primary = BackendHooks(primary, primary_name)
        self._fallback = BackendHooks(fallback, fallback_name)
        self._breaker = CircuitBreaker(
            failures=settings["failures"],
            probe_after=settings["probe_after"],
            clock=settings["clock"],
            primary_name=primary_name,
            fallback_name=fallback_name,
        )
        self._known = LastKnown(settings["cache_size"])
        self._journal = OutageJournal()
        self._on_conflict: Callable[[FallbackConflict], object] | None = settings["on_conflict"]
        self._conflicts: deque[FallbackConflict] = deque(maxlen=MAX_CONFLICTS_KEPT)
        self._observers: list[Callable[[ReconcileOutcome], object]] = []
        # The store's time, for reconciliation, which has no call of its own to take it from:
        # the latest ``now_ms`` any call brought.
        self._now_ms = 0
        self._reconciler = Reconciler(
            primary=self._primary,
            fallback=self._fallback,
            journal=self._journal,
            known=self._known,
            breaker=self._breaker,
            now_ms=lambda: self._now_ms,
            report=self._report,
            reconciled=lambda: self._tell("reconciled"),
        )
        # One background task runs reconciliation, woken by each probe; it lives from the first
        # probe of an outage until the circuit closes.
        self._reconciling: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._token = secrets.token_hex(4)
        self._event_prefix = ""
        self._outage_seen = 0

    def __repr__(self) -> str:
        return (
            f"<FallbackMiddleware primary={self._primary.name!r} "
            f"fallback={self._fallback.name!r} state={self.state!r}>"
        )

    # -- what applications and tests read ----------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """``"closed"`` (the primary serves), ``"open"`` (the fallback serves) or ``"half-open"``
        (reconciliation runs in the background; the primary serves the sessions the fallback
        does not hold)."""
        return self._breaker.state

    @property
    def conflicts(self) -> list[FallbackConflict]:
        """The conflicts of every reconciliation so far, oldest first (a copy; at most
        :data:`MAX_CONFLICTS_KEPT`, the most recent)."""
        return list(self._conflicts)

    @property
    def failures(self) -> int:
        """Consecutive unavailability errors that open the circuit."""
        return self._breaker.threshold

    @property
    def probe_after(self) -> float:
        """Seconds the circuit stays open before a probe."""
        return self._breaker.probe_after

    @property
    def unreconciled(self) -> int:
        """How many sessions the fallback answers for, waiting for reconciliation."""
        return len(self._journal)

    def add_observer(self, observer: Callable[[ReconcileOutcome], object]) -> None:
        """Call ``observer`` with the outcome of each session's reconciliation from now on:
        ``"reconciled"`` (the primary answers for it again, holding what the fallback served) or
        ``"conflict"`` (reported as a :class:`FallbackConflict` too). For telemetry
        (:mod:`sessionstore.otel` counts them): it is called on the event loop, during
        reconciliation, so it must return at once; its exceptions are logged and ignored."""
        self._observers.append(observer)

    def remove_observer(self, observer: Callable[[ReconcileOutcome], object]) -> None:
        """Stop calling ``observer`` (given to :meth:`add_observer`); no error if it was not."""
        if observer in self._observers:
            self._observers.remove(observer)

    async def wait_reconciled(self) -> CircuitState:
        """Wait until the reconciliation running in the background (if any) has stopped, and
        return the state then: ``"closed"`` if it finished, ``"open"`` if the primary failed
        again, ``"half-open"`` if nothing has answered yet. Cancelling the wait does not cancel
        the reconciliation."""
        if self._reconciling is not None and not self._reconciling.done():
            await self._idle.wait()
        return self._breaker.state

    # -- the hooks ---------------------------------------------------------------------------

    @hookimpl(wrapper=True)
    def session_create(self, record: SessionRecord, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_create", inner, (record, now_ms), _learn_create)

    @hookimpl(wrapper=True)
    def session_get(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_get", inner, (session_id, now_ms), _learn_get)

    @hookimpl(wrapper=True)
    def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_get_many", inner, (session_ids, now_ms), _learn_get_many)

    @hookimpl(wrapper=True)
    def session_update(self, record: SessionRecord, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_update", inner, (record, now_ms), _learn_update)

    @hookimpl(wrapper=True)
    def session_update_many(
        self, records: Sequence[SessionRecord], now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_update_many", inner, (records, now_ms), _learn_update_many)

    @hookimpl(wrapper=True)
    def session_delete(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_delete", inner, (session_id, now_ms), _learn_delete)

    @hookimpl(wrapper=True)
    def session_count(self, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_count", inner, (now_ms,), None)

    @hookimpl(wrapper=True)
    def session_page(
        self, cursor: str | None, limit: int, now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_page", inner, (cursor, limit, now_ms), None)

    @hookimpl(wrapper=True)
    def session_purge_expired(self, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_purge_expired", inner, (now_ms,), None)

    @hookimpl(wrapper=True)
    def last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        args = (session_id, event_id, deadline_ms, now_ms)
        return self._run("last_event_id_set", inner, args, _learn_last_event_id_set)

    @hookimpl(wrapper=True)
    def last_event_id_get(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        args = (session_id, now_ms)
        return self._run("last_event_id_get", inner, args, _learn_last_event_id_get)

    @hookimpl(wrapper=True)
    def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        args = (session_id, stream_id, data, retention, now_ms)
        return self._run("event_append", inner, args, None)

    @hookimpl(wrapper=True)
    def event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        if event_id.startswith(_EVENT_MARK):
            inner.close()  # the primary never issued it
            return self._replay_fallback_event(event_id, session_id, now_ms)
        return self._run("event_replay", inner, (event_id, session_id, now_ms), None)

    @hookimpl(wrapper=True)
    def session_dump(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_dump", inner, (session_id, now_ms), _learn_dump)

    @hookimpl(wrapper=True)
    def session_load(
        self, dump: SessionDump, retention: int, now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_load", inner, (dump, retention, now_ms), _learn_load)

    @hookimpl(wrapper=True)
    def store_clear(self) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("store_clear", inner, (), _learn_clear)

    @hookimpl(wrapper=True)
    def store_close(self) -> Generator[None, Any, Any]:
        inner = yield
        return self._close(inner)

    # -- routing -----------------------------------------------------------------------------

    async def _run(
        self, op: str, inner: _Inner, args: tuple[Any, ...], learn: _Learn | None
    ) -> Any:
        """Run ``op`` on the primary (``inner``, not started yet) or serve it from the fallback."""
        started = False
        try:
            if args and args[-1] > self._now_ms:
                self._now_ms = args[-1]
            session_ids = _session_ids(op, args)
            while True:
                if self._to_primary(op, session_ids):
                    started = True
                    return await self._on_primary(op, inner, args, session_ids, learn)
                try:
                    return await self._serve(op, args, lost=False)
                except _Released:
                    continue  # reconciled meanwhile: the primary may answer for it now
        finally:
            if not started:
                inner.close()  # never started: the primary is not contacted

    def _to_primary(self, op: str, session_ids: Sequence[str]) -> bool:
        """Whether ``op`` goes to the primary; starts the probe when it is due. No ``await``
        between this decision and the call it routes, so no session enters the journal between
        them unseen."""
        breaker = self._breaker
        if breaker.state == "closed":
            return True
        if breaker.state == "open":
            # store_clear has no now_ms to reconcile with: it never probes.
            if op == "store_clear" or not breaker.probe_due():
                return False
            breaker.begin_probe()
            log.info(
                "probing primary store %r: %d session(s) to reconcile in the background",
                self._primary.name,
                len(self._journal),
            )
            self._wake_reconciliation()
        # Half-open: the primary answers for everything but the sessions still in the journal.
        if op in _NAMESPACE_WIDE:
            return not self._journal
        journal = self._journal
        return not any(journal.get(i) is not None for i in session_ids)

    async def _on_primary(
        self,
        op: str,
        inner: _Inner,
        args: tuple[Any, ...],
        session_ids: Sequence[str],
        learn: _Learn | None,
    ) -> Any:
        known = self._known
        failure: StoreUnavailableError | None = None
        ticket = known.begin(session_ids, write=op in _WRITES)
        try:  # the ticket ends however the call ends, before a claim of its sessions waits on it
            try:
                result = await inner
            except StoreUnavailableError as exc:
                known.learn_unsure(ticket)
                failure = exc
            except Exception as exc:
                self._breaker.succeeded()
                if isinstance(exc, SessionNotFoundError):
                    for session_id in exc.session_ids:
                        known.forget(session_id)
                elif isinstance(exc, ConflictError) and op == "session_update":
                    known.learn_stale([args[0]], exc)
                elif isinstance(exc, ConflictError) and op == "session_update_many":
                    known.learn_stale(args[0], exc)
                raise
            except BaseException:  # cancelled: a write may have been applied all the same
                known.learn_unsure(ticket)
                raise
            else:
                self._breaker.succeeded()
                if learn is not None:
                    learn(known, ticket, args, result)
        finally:
            known.end(ticket)
        if failure is None:
            if self._breaker.state == "half-open":
                self._close_if_settled()
            return result
        self._breaker.failed(failure)
        if self._breaker.state == "closed":
            raise failure  # below the threshold: the caller sees the failure
        if self._breaker.outage != self._outage_seen:  # this failure began an outage
            self._outage_seen = self._breaker.outage
            self._event_prefix = f"{_EVENT_MARK}{self._token}-{self._outage_seen}:"
            self._journal.begin_outage()
        # The circuit is open (this failure or a concurrent one opened it): serve this call too.
        # A write may have been applied before its answer was lost: the journal remembers it.
        while True:
            try:
                return await self._serve(op, args, lost=op in _WRITES, failure=failure)
            except _Released:
                continue

    def _wake_reconciliation(self) -> None:
        """Have the background task reconcile the journal (half-open only), starting it if
        needed."""
        if self._breaker.state != "half-open" or not self._journal:
            return
        self._idle.clear()
        self._wake.set()
        if self._reconciling is None or self._reconciling.done():
            self._reconciling = asyncio.get_running_loop().create_task(
                self._reconcile(), name="sessionstore fallback reconciliation"
            )

    async def _reconcile(self) -> None:
        """The background task: each time it is woken, run the reconciler until the journal is
        empty or the circuit leaves half-open, then close the circuit if it may. Ends when the
        circuit is closed."""
        try:
            while self._breaker.state != "closed":
                await self._wake.wait()
                self._wake.clear()
                try:
                    while self._breaker.state == "half-open" and self._journal:
                        before = self._journal.settled, len(self._journal)
                        await self._reconciler.run()
                        if (self._journal.settled, len(self._journal)) == before:
                            break  # no progress: the next session to enter wakes it again
                except Exception as exc:  # the fallback failed: try again at the next probe
                    log.exception(
                        "fallback reconciliation with primary %r failed", self._primary.name
                    )
                    if self._breaker.state == "half-open":
                        reason = redact_text(f"{type(exc).__name__}: {exc}")
                        self._breaker.failed(
                            StoreUnavailableError(f"reconciliation failed: {reason}")
                        )
                self._close_if_settled()
                if not self._wake.is_set():
                    self._idle.set()
        finally:
            self._idle.set()

    def _close_if_settled(self) -> None:
        breaker = self._breaker
        if breaker.state == "half-open" and breaker.answered and not self._journal:
            breaker.close()
            log.info(
                "primary store %r is back: %d session(s) served by the fallback reconciled; "
                "%d conflict(s) reported so far",
                self._primary.name,
                self._journal.settled,
                len(self._conflicts),
            )

    def _report(self, conflict: FallbackConflict) -> None:
        self._conflicts.append(conflict)
        self._tell("conflict")
        if self._on_conflict is not None:
            try:
                self._on_conflict(conflict)
            except Exception:
                log.exception(
                    "fallback on_conflict callback failed for session %r", conflict.session_id
                )

    def _tell(self, outcome: ReconcileOutcome) -> None:
        for observer in list(self._observers):
            try:
                observer(outcome)
            except Exception:
                log.exception("fallback observer %r failed", observer)

    async def _close(self, inner: _Inner) -> None:
        if self._reconciling is not None:
            await cancel_and_wait([self._reconciling])
        try:
            await inner  # the primary is closed whatever the circuit's state
        finally:
            held = self._journal.clear()
            if held:
                log.warning(
                    "store closed while primary %r was unavailable: changes to %d session(s) "
                    "served by the fallback were not reconciled and are lost",
                    self._primary.name,
                    held,
                )
            await self._fallback.call("store_close")

    # -- serving from the fallback -----------------------------------------------------------

    def _unavailable(self, what: str) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"primary store {self._primary.name!r} is unavailable (circuit "
            f"{self._breaker.state}) and {what}"
        )

    def _uncached(self, session_ids: Sequence[str]) -> StoreUnavailableError:
        noun = "session" if len(session_ids) == 1 else "sessions"
        ids = ", ".join(map(repr, session_ids))
        return self._unavailable(f"{noun} {ids} not cached by the fallback")

    async def _serve(
        self,
        op: str,
        args: tuple[Any, ...],
        *,
        lost: bool,
        failure: StoreUnavailableError | None = None,
    ) -> Any:
        if op in _NAMESPACE_WIDE:
            if self._breaker.state == "half-open":
                raise self._unavailable(
                    f"{op} is namespace-wide: {len(self._journal)} session(s) the fallback "
                    "served are still being reconciled"
                )
            raise self._unavailable(
                f"{op} is namespace-wide: the fallback holds only the sessions used during the "
                "outage"
            )
        if op in _PRIMARY_ONLY:
            if failure is not None:
                raise failure
            raise self._unavailable(_PRIMARY_ONLY[op])
        if op == "event_replay":
            # Ids the fallback issued never get here (event_replay routes them): this one is
            # the primary's, and so are its events.
            raise self._unavailable(f"event {args[0]!r} is in the primary's event log")
        serve: Callable[..., Coroutine[Any, Any, Any]] = getattr(self, f"_serve_{op}")
        return await serve(*args, lost=lost)

    async def _hold(
        self, session_ids: Sequence[str], now_ms: int, *, creating: bool = False
    ) -> list[HeldSession]:
        """Return the journal entries of ``session_ids`` (distinct ids) with their locks held,
        entering and filling those not in the journal yet.

        A session is filled from its copy once no write of it to the primary is in flight
        (a write acknowledged later would leave the fallback behind it). Raises
        StoreUnavailableError naming every id without a copy (unless ``creating``: then it is a
        new session), and _Released if a session left the journal while this waited for it.
        Release the locks with :func:`_unlock`.
        """
        journal = self._journal
        entries = [journal.get(i) or journal.hold(i) for i in session_ids]
        self._wake_reconciliation()  # half-open: a session entered that it must settle too
        distinct = {held.session_id: held for held in entries}
        locked: list[HeldSession] = []
        try:
            for _, held in sorted(distinct.items()):  # one order for every call: no deadlock
                await held.lock.acquire()
                locked.append(held)
            if any(held.released for held in locked):
                raise _Released
            empty = [held for held in locked if not held.filled]
            for held in empty:
                await self._known.writes_settled(held.session_id)
            missing = [h.session_id for h in empty if self._known.get(h.session_id, now_ms) is None]
            if missing and not creating:
                for held in empty:
                    journal.release(held)
                raise self._uncached(missing)
            for held in empty:
                await self._fill(held, now_ms)
            return entries
        except BaseException:
            _unlock(locked)
            raise

    async def _fill(self, held: HeldSession, now_ms: int) -> None:
        """Put the session's copy into the fallback (or nothing: a session created now)."""
        session_id = held.session_id
        known = self._known.get(session_id, now_ms)
        await self._fallback.call("session_delete", session_id, now_ms)  # leftovers, if any
        if known is not None:
            await self._fallback.call("session_create", known.record, now_ms)
            if known.last_event_id is not None:
                await self._fallback.call(
                    "last_event_id_set",
                    session_id,
                    known.last_event_id,
                    known.record.deadline_ms,
                    now_ms,
                )
            held.base = known.record
            held.last_event_id_known = known.last_event_id_known
        else:
            held.unknown_base = True
        held.filled = True

    async def _serve_session_create(
        self, record: SessionRecord, now_ms: int, *, lost: bool
    ) -> None:
        [held] = await self._hold([record.id], now_ms, creating=True)
        try:
            # Refused with SessionExistsError if the copy says it is live on the primary.
            await self._fallback.call("session_create", record, now_ms)
            held.wrote(record, lost=lost)
            held.last_event_id_known = True  # a new session starts without one
        finally:
            held.lock.release()

    async def _serve_session_get(
        self, session_id: str, now_ms: int, *, lost: bool
    ) -> SessionRecord | None:
        [held] = await self._hold([session_id], now_ms)
        try:
            result: SessionRecord | None = await self._fallback.call(
                "session_get", session_id, now_ms
            )
            return result
        finally:
            held.lock.release()

    async def _serve_session_get_many(
        self, session_ids: Sequence[str], now_ms: int, *, lost: bool
    ) -> Mapping[str, SessionRecord]:
        entries = await self._hold(session_ids, now_ms)
        try:
            result: Mapping[str, SessionRecord] = await self._fallback.call(
                "session_get_many", session_ids, now_ms
            )
            return result
        finally:
            _unlock(entries)

    async def _serve_session_update(
        self, record: SessionRecord, now_ms: int, *, lost: bool
    ) -> None:
        [held] = await self._hold([record.id], now_ms)
        try:
            await self._fallback.call("session_update", record, now_ms)
            held.wrote(_resolved(record, held))
            if lost:
                held.may_hold(record)  # exactly as the primary was sent it
        finally:
            held.lock.release()

    async def _serve_session_update_many(
        self, records: Sequence[SessionRecord], now_ms: int, *, lost: bool
    ) -> None:
        entries = await self._hold([r.id for r in records], now_ms)
        try:
            await self._fallback.call("session_update_many", records, now_ms)
            for held, record in zip(entries, records, strict=True):
                held.wrote(_resolved(record, held))
                if lost:
                    held.may_hold(record)
        finally:
            _unlock(entries)

    async def _serve_session_delete(self, session_id: str, now_ms: int, *, lost: bool) -> bool:
        [held] = await self._hold([session_id], now_ms)
        try:
            existed = bool(await self._fallback.call("session_delete", session_id, now_ms))
            held.deleted = True
            held.wrote()
            return existed
        finally:
            held.lock.release()

    async def _serve_last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int, *, lost: bool
    ) -> None:
        [held] = await self._hold([session_id], now_ms)
        try:
            await self._fallback.call(
                "last_event_id_set", session_id, event_id, deadline_ms, now_ms
            )
            held.last_event_id_known = held.last_event_id_written = True
            held.wrote()
        finally:
            held.lock.release()

    async def _serve_last_event_id_get(
        self, session_id: str, now_ms: int, *, lost: bool
    ) -> str | None:
        [held] = await self._hold([session_id], now_ms)
        try:
            if not held.last_event_id_known:
                raise self._unavailable(
                    f"the last event id of session {session_id!r} is not cached"
                )
            result: str | None = await self._fallback.call("last_event_id_get", session_id, now_ms)
            return result
        finally:
            held.lock.release()

    async def _serve_event_append(
        self,
        session_id: str,
        stream_id: str,
        data: bytes | None,
        retention: int,
        now_ms: int,
        *,
        lost: bool,
    ) -> str:
        [held] = await self._hold([session_id], now_ms)
        try:
            event_id = await self._fallback.call(
                "event_append", session_id, stream_id, data, retention, now_ms
            )
        finally:
            held.lock.release()
        return f"{self._event_prefix}{event_id}"

    async def _replay_fallback_event(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        """Replay an id a fallback issued: only this outage's fallback still has its events,
        until their session is reconciled."""
        prefix = self._event_prefix
        if self._breaker.state != "closed" and prefix and event_id.startswith(prefix):
            try:
                stream_id, events = await self._fallback.call(
                    "event_replay", event_id[len(prefix) :], session_id, now_ms
                )
            except EventNotFoundError:
                pass  # its session was reconciled (or it never existed): gone either way
            else:
                return stream_id, [Event(f"{prefix}{e.id}", e.stream_id, e.data) for e in events]
        # An outage that is over (its fallback was cleared) or another instance's: gone.
        raise EventNotFoundError(event_id, evicted=True)


def _unlock(entries: Sequence[HeldSession]) -> None:
    for held in {h.session_id: h for h in entries}.values():
        held.lock.release()


def _resolved(record: SessionRecord, held: HeldSession) -> SessionRecord:
    """``record`` with the incarnation the fallback kept for it (a writer that never read the
    session sends 0)."""
    if record.incarnation == 0 and held.base is not None:
        return record._replace(incarnation=held.base.incarnation)
    return record


def _session_ids(op: str, args: tuple[Any, ...]) -> Sequence[str]:
    """The sessions operation ``op`` with arguments ``args`` reads or writes."""
    if op in ("session_create", "session_update"):
        return (args[0].id,)
    if op == "session_update_many":
        return [r.id for r in args[0]]
    if op == "session_get_many":
        return list(args[0])
    if op == "session_load":
        return (args[0].record.id,)
    if op in _NAMESPACE_WIDE or op == "event_replay":
        return ()
    return (args[0],)


# -- learning from the primary's answers while closed ----------------------------------------


def _learn_create(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: object) -> None:
    known.learn_created(ticket, args[0])


def _learn_get(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: Any) -> None:
    known.learn_read(ticket, args[0], result)


def _learn_get_many(
    known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: Mapping[str, SessionRecord]
) -> None:
    for session_id in args[0]:
        known.learn_read(ticket, session_id, result.get(session_id))


def _learn_update(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: object) -> None:
    known.learn_updated(ticket, args[0])


def _learn_update_many(
    known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: object
) -> None:
    for record in args[0]:
        known.learn_updated(ticket, record)


def _learn_delete(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: object) -> None:
    known.forget(args[0])


def _learn_last_event_id_set(
    known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: object
) -> None:
    session_id, event_id, deadline_ms, _ = args
    known.learn_last_event_id_set(ticket, session_id, event_id, deadline_ms)


def _learn_last_event_id_get(
    known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: Any
) -> None:
    known.learn_last_event_id(ticket, args[0], result)


def _learn_dump(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: Any) -> None:
    known.learn_read(ticket, args[0], None if result is None else result.record)


def _learn_load(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: Any) -> None:
    dump: SessionDump = args[0]
    if result:
        known.learn_created(ticket, dump.record, dump.last_event_id)


def _learn_clear(known: LastKnown, ticket: Ticket, args: tuple[Any, ...], result: object) -> None:
    known.clear()
