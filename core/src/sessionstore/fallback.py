"""A circuit breaker that serves sessions from a local fallback store while the primary is down.

Made by ``open_store(spec, fallback="memory")`` (see :func:`sessionstore.open_store`); the store
exposes it as :attr:`SessionStore.fallback <sessionstore.SessionStore.fallback>`. The lifecycle:

* **closed**: every operation goes to the primary. Consecutive
  :class:`~sessionstore.StoreUnavailableError` from the primary are counted (any other outcome
  resets the count; other errors propagate unchanged and never count). Meanwhile a bounded LRU copy
  of the records the primary returned or accepted is kept, so that a session in use can still be
  served once the primary is gone.
* **open**: after ``failures`` failures in a row. The call that hit the threshold and every later
  one are served from the fallback backend without contacting the primary. Namespace-wide
  operations (count, list, purge, clear) raise :class:`~sessionstore.StoreUnavailableError`: the
  fallback holds only the sessions used during the outage. A session neither in the fallback nor
  in the copy raises it too, naming the id, rather than claiming the session does not exist.
* **half-open**: the first operation ``probe_after`` seconds after opening is a probe. It first
  reconciles what was written during the outage onto the primary; if the primary answers, the
  circuit closes, the fallback is cleared and the operation runs on the primary. If it is still
  unavailable, the circuit opens again for another ``probe_after`` seconds and the operation is
  served from the fallback. Other operations wait for the probe.

Reconciliation never overwrites silently: a session is pushed only by compare-and-set from the
version the fallback started from; whatever another writer changed on the primary in the meantime
is kept, and the write that could not be applied is reported as a :class:`FallbackConflict`.

Everything here is per store instance, in this process: two instances each have their own
fallback, and neither sees what the other wrote during an outage until reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, Literal, NamedTuple

from .errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    EventNotFoundError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStoreError,
    StoreUnavailableError,
)
from .hookspecs import hookimpl
from .plugins import HookDispatch, bind_plugins
from .records import Event, SessionRecord
from .urls import redact_text

__all__ = ["FALLBACK_OPTIONS", "FallbackConflict", "FallbackMiddleware", "check_fallback_options"]

log = logging.getLogger("sessionstore.fallback")

CircuitState = Literal["closed", "open", "half-open"]

FALLBACK_OPTIONS = ("failures", "probe_after", "cache_size", "on_conflict", "clock")
"""The keys ``open_store(..., fallback_options=...)`` accepts."""

MAX_CONFLICTS_KEPT = 1000
"""How many of the most recent conflicts :attr:`FallbackMiddleware.conflicts` keeps."""

# Every event id the fallback issues starts with this, then "{instance token}-{outage}:": so the
# primary never sees such an id (it could name another session's stream there), and an id from an
# outage that is over is known to be gone.
_EVENT_MARK = "fallback-"

_Inner = Coroutine[Any, Any, Any]
_Learn = Callable[[tuple[Any, ...], Any], None]


@dataclass(frozen=True)
class FallbackConflict:
    """A write made during an outage that reconciliation did not apply to the primary.

    The primary's data was left as it was. ``record`` is what this instance held for the session
    at the end of the outage (``None`` if it had deleted it); decode it with
    :func:`sessionstore.decode_session` to recover or merge the lost change.
    """

    session_id: str
    what: Literal["create", "update", "delete", "last_event_id"]
    """Which write could not be applied."""
    reason: str
    record: SessionRecord | None


class _Known(NamedTuple):
    """The copy kept while closed: the primary's record and, if known, its last event id."""

    record: SessionRecord
    last_event_id: str | None
    last_event_id_known: bool


@dataclass
class _Held:
    """A session the fallback holds during the current outage (it answers for it alone)."""

    base: SessionRecord | None
    """The primary's record the fallback copy started from; ``None``: created in the fallback.
    After the session is reconciled, what the primary now holds."""
    last_event_id_known: bool
    """Whether the fallback's last event id for it is the true one."""
    last_event_id_written: bool = False
    """Set during the outage: to be written to the primary."""
    deleted: bool = False
    """Deleted during the outage (a copy that merely expired tells the primary nothing: another
    instance may have kept the session alive there)."""


class _Conflict(Exception):
    def __init__(self, what: Literal["create", "update", "delete", "last_event_id"], reason: str):
        super().__init__(reason)
        self.what = what
        self.reason = reason


def check_fallback_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``fallback_options`` and return them as keyword arguments of the middleware.

    Raises :class:`~sessionstore.ConfigurationError` naming an unknown key or a bad value.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"fallback_options must be a mapping, not {type(options).__name__}"
        )
    unknown = sorted(set(options) - set(FALLBACK_OPTIONS), key=str)
    if unknown:
        raise ConfigurationError(
            f"unknown fallback option(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(FALLBACK_OPTIONS)}"
        )
    failures = options.get("failures", 3)
    if type(failures) is not int or failures < 1:
        raise ConfigurationError(f"fallback option failures must be an int >= 1, not {failures!r}")
    probe_after = options.get("probe_after", 5.0)
    if (
        isinstance(probe_after, bool)
        or not isinstance(probe_after, int | float)
        or not 0 <= probe_after < math.inf
    ):
        raise ConfigurationError(
            f"fallback option probe_after must be a finite number of seconds >= 0, "
            f"not {probe_after!r}"
        )
    cache_size = options.get("cache_size", 10_000)
    if type(cache_size) is not int or cache_size < 0:
        raise ConfigurationError(
            f"fallback option cache_size must be an int >= 0, not {cache_size!r}"
        )
    on_conflict = options.get("on_conflict")
    if on_conflict is not None and not callable(on_conflict):
        raise ConfigurationError(
            "fallback option on_conflict must be a function taking a FallbackConflict, or None"
        )
    clock = options.get("clock", time.monotonic)
    if not callable(clock):
        raise ConfigurationError(
            "fallback option clock must be a function returning seconds (like time.monotonic)"
        )
    return {
        "failures": failures,
        "probe_after": float(probe_after),
        "cache_size": cache_size,
        "on_conflict": on_conflict,
        "clock": clock,
    }


class FallbackMiddleware:
    """Serve operations from ``fallback`` while ``primary`` is unreachable (see the module doc).

    ``primary`` and ``fallback`` are backends (what a backend factory returns) for the same
    namespace; the middleware calls the primary's hooks directly to reconcile and owns the
    fallback (it closes it with the store). The fallback must keep a record it is given by
    ``session_create`` as given, version and incarnation included, as the memory backend does:
    that is how a session the primary returned is copied into it.

    Options (also ``open_store(..., fallback_options={...})``):

    * ``failures`` (3): consecutive :class:`~sessionstore.StoreUnavailableError` that open the
      circuit.
    * ``probe_after`` (5.0): seconds the circuit stays open before an operation probes the primary.
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
        self._primary = HookDispatch(bind_plugins(primary, primary_name, []))
        self._fallback = HookDispatch(bind_plugins(fallback, fallback_name, []))
        self._primary_name = primary_name
        self._fallback_name = fallback_name
        self._threshold: int = settings["failures"]
        self._probe_after: float = settings["probe_after"]
        self._cache_size: int = settings["cache_size"]
        self._on_conflict: Callable[[FallbackConflict], object] | None = settings["on_conflict"]
        self._clock: Callable[[], float] = settings["clock"]
        self._state: CircuitState = "closed"
        self._failures_in_row = 0
        self._probe_at = 0.0
        # Held while the fallback is read or written and while reconciling: an operation served
        # from the fallback in the middle of a reconciliation could be lost when it is cleared.
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[str, _Known] = OrderedDict()
        self._held: dict[str, _Held] = {}
        self._token = secrets.token_hex(4)
        self._outages = 0
        self._event_prefix = ""
        self._conflicts: deque[FallbackConflict] = deque(maxlen=MAX_CONFLICTS_KEPT)

    def __repr__(self) -> str:
        return (
            f"<FallbackMiddleware primary={self._primary_name!r} "
            f"fallback={self._fallback_name!r} state={self._state!r}>"
        )

    # -- what applications and tests read ----------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """``"closed"`` (the primary serves), ``"open"`` (the fallback serves) or ``"half-open"``
        (a probe is reconciling with the primary)."""
        return self._state

    @property
    def conflicts(self) -> list[FallbackConflict]:
        """The conflicts of every reconciliation so far, oldest first (a copy; at most
        :data:`MAX_CONFLICTS_KEPT`, the most recent)."""
        return list(self._conflicts)

    @property
    def failures(self) -> int:
        """Consecutive unavailability errors that open the circuit."""
        return self._threshold

    @property
    def probe_after(self) -> float:
        """Seconds the circuit stays open before a probe."""
        return self._probe_after

    # -- the hooks ---------------------------------------------------------------------------

    @hookimpl(wrapper=True)
    def session_create(self, record: SessionRecord, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_create", inner, (record, now_ms), self._learn_create)

    @hookimpl(wrapper=True)
    def session_get(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_get", inner, (session_id, now_ms), self._learn_get)

    @hookimpl(wrapper=True)
    def session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_get_many", inner, (session_ids, now_ms), self._learn_get_many)

    @hookimpl(wrapper=True)
    def session_update(self, record: SessionRecord, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_update", inner, (record, now_ms), self._learn_update)

    @hookimpl(wrapper=True)
    def session_update_many(
        self, records: Sequence[SessionRecord], now_ms: int
    ) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_update_many", inner, (records, now_ms), self._learn_update_many)

    @hookimpl(wrapper=True)
    def session_delete(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("session_delete", inner, (session_id, now_ms), self._learn_delete)

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
        return self._run("last_event_id_set", inner, args, self._learn_last_event_id_set)

    @hookimpl(wrapper=True)
    def last_event_id_get(self, session_id: str, now_ms: int) -> Generator[None, Any, Any]:
        inner = yield
        args = (session_id, now_ms)
        return self._run("last_event_id_get", inner, args, self._learn_last_event_id_get)

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
    def store_clear(self) -> Generator[None, Any, Any]:
        inner = yield
        return self._run("store_clear", inner, (), self._learn_clear)

    @hookimpl(wrapper=True)
    def store_close(self) -> Generator[None, Any, Any]:
        inner = yield
        return self._close(inner)

    # -- the breaker -------------------------------------------------------------------------

    async def _run(
        self, op: str, inner: _Inner, args: tuple[Any, ...], learn: _Learn | None
    ) -> Any:
        """Run ``op`` on the primary (``inner``, not started yet) or serve it from the fallback."""
        if self._state == "closed":
            try:
                return await self._on_primary(inner, args, learn)
            except StoreUnavailableError as exc:
                if self._now_closed():
                    raise  # below the threshold: the caller sees the failure
                failure = exc
            # This failure, or one of a concurrent call, opened the circuit: serve this call too.
            async with self._lock:
                if self._now_closed():  # a probe closed it again meanwhile
                    raise failure
                return await self._serve(op, args)
        async with self._lock:
            # store_clear has no now_ms to reconcile with: it never probes.
            if self._state == "open" and args and self._clock() >= self._probe_at:
                self._state = "half-open"
                try:
                    if await self._reconcile(args[-1]):
                        await self._close_circuit()  # the primary answered
                    else:
                        # Nothing needed the primary: this operation itself is the probe.
                        try:
                            result = await self._on_primary(inner, args, learn)
                        except StoreUnavailableError as exc:
                            self._open_circuit(exc)
                        except Exception:
                            await self._close_circuit()  # it answered, with an error
                            raise
                        else:
                            await self._close_circuit()
                            return result
                except StoreUnavailableError as exc:
                    self._open_circuit(exc)
                finally:
                    if self._state == "half-open":  # cancelled, or the fallback failed
                        self._state = "open"  # probe_at passed: the next operation probes
            if self._state == "open":
                inner.close()  # never started: the primary is not contacted
                return await self._serve(op, args)
        return await self._on_primary(inner, args, learn)

    def _now_closed(self) -> bool:
        """The state after an ``await`` (a plain read would be narrowed from before it)."""
        return self._state == "closed"

    async def _on_primary(self, inner: _Inner, args: tuple[Any, ...], learn: _Learn | None) -> Any:
        try:
            result = await inner
        except StoreUnavailableError as exc:
            self._failures_in_row += 1
            if self._state == "closed" and self._failures_in_row >= self._threshold:
                self._open_circuit(exc)
            raise
        except Exception as exc:
            self._failures_in_row = 0
            if isinstance(exc, SessionNotFoundError):
                for session_id in exc.session_ids:
                    self._cache.pop(session_id, None)
            elif isinstance(exc, ConflictError):
                self._forget_stale(args, exc)
            raise
        self._failures_in_row = 0
        if learn is not None and self._cache_size:
            learn(args, result)
        return result

    def _open_circuit(self, exc: StoreUnavailableError) -> None:
        if self._state == "closed":
            self._outages += 1
            self._event_prefix = f"{_EVENT_MARK}{self._token}-{self._outages}:"
            log.warning(
                "primary store %r unavailable after %d failure(s) in a row (%s); serving "
                "sessions from fallback %r, probing again in %gs",
                self._primary_name,
                self._failures_in_row,
                redact_text(str(exc)),
                self._fallback_name,
                self._probe_after,
            )
        else:
            log.info(
                "primary store %r still unavailable (%s); probing again in %gs",
                self._primary_name,
                redact_text(str(exc)),
                self._probe_after,
            )
        self._state = "open"
        self._probe_at = self._clock() + self._probe_after

    async def _close_circuit(self) -> None:
        held = len(self._held)
        await self._fallback_call("store_clear")
        self._held.clear()
        self._state = "closed"
        self._failures_in_row = 0
        log.info(
            "primary store %r is back: %d session(s) served by the fallback reconciled; "
            "%d conflict(s) reported so far",
            self._primary_name,
            held,
            len(self._conflicts),
        )

    async def _close(self, inner: _Inner) -> None:
        try:
            await inner  # the primary is closed whatever the circuit's state
        finally:
            if self._held:
                log.warning(
                    "store closed while primary %r was unavailable: changes to %d session(s) "
                    "served by the fallback were not reconciled and are lost",
                    self._primary_name,
                    len(self._held),
                )
            self._held.clear()
            await self._fallback_call("store_close")

    # -- calling the backends directly -------------------------------------------------------

    async def _primary_call(self, hook: str, *args: Any) -> Any:
        return await _call(self._primary, self._primary_name, hook, args)

    async def _fallback_call(self, hook: str, *args: Any) -> Any:
        return await _call(self._fallback, self._fallback_name, hook, args)

    # -- the copy kept while closed ----------------------------------------------------------

    def _remember(self, record: SessionRecord, last_event_id: str | None, known: bool) -> None:
        cache = self._cache
        cache[record.id] = _Known(record, last_event_id, known)
        cache.move_to_end(record.id)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _remember_read(self, record: SessionRecord) -> None:
        old = self._cache.get(record.id)
        if old is not None and old.record.incarnation == record.incarnation:
            self._remember(record, old.last_event_id, old.last_event_id_known)
        else:
            self._remember(record, None, False)

    def _remember_written(self, record: SessionRecord) -> None:
        old = self._cache.get(record.id)
        if record.incarnation == 0:  # a writer that never read it: the primary kept its own
            if old is None:
                return  # the incarnation is unknown: a copy would refuse its readers' writes
            record = record._replace(incarnation=old.record.incarnation)
        self._remember_read(record)

    def _forget_stale(self, args: tuple[Any, ...], exc: ConflictError) -> None:
        """Drop the copies a refused compare-and-set proves stale: those it was based on.

        A writer that was behind the copy (say, another task of this instance) proves nothing.
        """
        first = args[0] if args else None
        records = [first] if isinstance(first, SessionRecord) else first
        if not isinstance(records, Sequence):
            return
        for record in records:
            known = self._cache.get(record.id)
            if (
                known is not None
                and record.id in exc.session_ids
                and known.record.version == record.version - 1
            ):
                del self._cache[record.id]

    def _learn_create(self, args: tuple[Any, ...], result: object) -> None:
        self._remember(args[0], None, True)  # a new session has no last event id

    def _learn_get(self, args: tuple[Any, ...], result: SessionRecord | None) -> None:
        if result is None:
            self._cache.pop(args[0], None)
        else:
            self._remember_read(result)

    def _learn_get_many(self, args: tuple[Any, ...], result: Mapping[str, SessionRecord]) -> None:
        for session_id in args[0]:
            self._learn_get((session_id,), result.get(session_id))

    def _learn_update(self, args: tuple[Any, ...], result: object) -> None:
        self._remember_written(args[0])

    def _learn_update_many(self, args: tuple[Any, ...], result: object) -> None:
        for record in args[0]:
            self._remember_written(record)

    def _learn_delete(self, args: tuple[Any, ...], result: object) -> None:
        self._cache.pop(args[0], None)

    def _learn_last_event_id_set(self, args: tuple[Any, ...], result: object) -> None:
        session_id, event_id, deadline_ms, _ = args
        old = self._cache.get(session_id)
        if old is not None:
            record = old.record._replace(deadline_ms=deadline_ms)
            self._remember(record, event_id, True)

    def _learn_last_event_id_get(self, args: tuple[Any, ...], result: str | None) -> None:
        old = self._cache.get(args[0])
        if old is not None:
            self._remember(old.record, result, True)

    def _learn_clear(self, args: tuple[Any, ...], result: object) -> None:
        self._cache.clear()

    # -- serving from the fallback (with the lock held) --------------------------------------

    def _unavailable(self, what: str) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"primary store {self._primary_name!r} is unavailable (circuit open) and {what}"
        )

    def _uncached(self, session_ids: Sequence[str]) -> StoreUnavailableError:
        noun = "session" if len(session_ids) == 1 else "sessions"
        ids = ", ".join(map(repr, session_ids))
        return self._unavailable(f"{noun} {ids} not cached by the fallback")

    def _claimable(self, session_id: str, now_ms: int) -> bool:
        if session_id in self._held:
            return True
        known = self._cache.get(session_id)
        # An expired copy proves nothing: another instance may have kept the session alive.
        deadline = None if known is None else known.record.deadline_ms
        return known is not None and (deadline is None or deadline > now_ms)

    async def _claim(self, session_id: str, now_ms: int) -> _Held:
        """Make the fallback answer for ``session_id``, copying the primary's last known record
        into it first. Raises StoreUnavailableError if there is none (call _claimable first)."""
        held = self._held.get(session_id)
        if held is not None:
            return held
        if not self._claimable(session_id, now_ms):
            raise self._uncached([session_id])
        known = self._cache[session_id]
        await self._fallback_call("session_create", known.record, now_ms)
        if known.last_event_id is not None:
            await self._fallback_call(
                "last_event_id_set",
                session_id,
                known.last_event_id,
                known.record.deadline_ms,
                now_ms,
            )
        held = self._held[session_id] = _Held(known.record, known.last_event_id_known)
        return held

    async def _claim_all(self, session_ids: Sequence[str], now_ms: int) -> None:
        missing = [i for i in session_ids if not self._claimable(i, now_ms)]
        if missing:
            raise self._uncached(missing)
        for session_id in session_ids:
            await self._claim(session_id, now_ms)

    async def _serve(self, op: str, args: tuple[Any, ...]) -> Any:
        if op in ("session_count", "session_page", "session_purge_expired", "store_clear"):
            raise self._unavailable(
                f"{op} is namespace-wide: the fallback holds only the sessions used during the "
                "outage"
            )
        serve: Callable[..., Coroutine[Any, Any, Any]] = getattr(self, f"_serve_{op}")
        return await serve(*args)

    async def _serve_session_create(self, record: SessionRecord, now_ms: int) -> None:
        held = self._held.get(record.id)
        if held is None and self._claimable(record.id, now_ms):
            held = await self._claim(record.id, now_ms)  # live on the primary: refused below
        await self._fallback_call("session_create", record, now_ms)
        if held is None:
            self._held[record.id] = _Held(None, True)
        else:  # it replaced an expired or deleted one, and starts without a last event id
            held.last_event_id_known = True
            held.last_event_id_written = False

    async def _serve_session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        await self._claim(session_id, now_ms)
        result: SessionRecord | None = await self._fallback_call("session_get", session_id, now_ms)
        return result

    async def _serve_session_get_many(
        self, session_ids: Sequence[str], now_ms: int
    ) -> Mapping[str, SessionRecord]:
        await self._claim_all(session_ids, now_ms)
        result: Mapping[str, SessionRecord] = await self._fallback_call(
            "session_get_many", session_ids, now_ms
        )
        return result

    async def _serve_session_update(self, record: SessionRecord, now_ms: int) -> None:
        await self._claim(record.id, now_ms)
        await self._fallback_call("session_update", record, now_ms)

    async def _serve_session_update_many(
        self, records: Sequence[SessionRecord], now_ms: int
    ) -> None:
        await self._claim_all([r.id for r in records], now_ms)
        await self._fallback_call("session_update_many", records, now_ms)

    async def _serve_session_delete(self, session_id: str, now_ms: int) -> bool:
        held = await self._claim(session_id, now_ms)
        existed = bool(await self._fallback_call("session_delete", session_id, now_ms))
        held.deleted = True
        return existed

    async def _serve_last_event_id_set(
        self, session_id: str, event_id: str, deadline_ms: int | None, now_ms: int
    ) -> None:
        held = await self._claim(session_id, now_ms)
        await self._fallback_call("last_event_id_set", session_id, event_id, deadline_ms, now_ms)
        held.last_event_id_known = held.last_event_id_written = True

    async def _serve_last_event_id_get(self, session_id: str, now_ms: int) -> str | None:
        held = await self._claim(session_id, now_ms)
        if not held.last_event_id_known:
            raise self._unavailable(f"the last event id of session {session_id!r} is not cached")
        result: str | None = await self._fallback_call("last_event_id_get", session_id, now_ms)
        return result

    async def _serve_event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        await self._claim(session_id, now_ms)
        event_id = await self._fallback_call(
            "event_append", session_id, stream_id, data, retention, now_ms
        )
        return f"{self._event_prefix}{event_id}"

    async def _serve_event_replay(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        # Ids the fallback issued never get here (event_replay routes them): this one is the
        # primary's, and so are its events.
        raise self._unavailable(f"event {event_id!r} is in the primary's event log")

    async def _replay_fallback_event(
        self, event_id: str, session_id: str | None, now_ms: int
    ) -> tuple[str, Sequence[Event]]:
        """Replay an id a fallback issued: only this outage's fallback still has its events."""
        if self._state != "closed":
            async with self._lock:
                prefix = self._event_prefix
                if self._state == "open" and event_id.startswith(prefix):
                    stream_id, events = await self._fallback_call(
                        "event_replay", event_id[len(prefix) :], session_id, now_ms
                    )
                    return stream_id, [
                        Event(f"{prefix}{e.id}", e.stream_id, e.data) for e in events
                    ]
        # An outage that is over (its fallback was cleared) or another instance's: gone.
        raise EventNotFoundError(event_id, evicted=True)

    # -- reconciliation (with the lock held, half-open) --------------------------------------

    async def _reconcile(self, now_ms: int) -> bool:
        """Apply what the fallback holds to the primary; return whether the primary was called.

        Raises StoreUnavailableError as soon as the primary is; sessions already reconciled then
        stay so (their base becomes what the primary holds) and are not written twice.
        """
        contacted = False
        for session_id, held in list(self._held.items()):
            final: SessionRecord | None = await self._fallback_call(
                "session_get", session_id, now_ms
            )
            base = held.base
            if (
                base is not None
                and final is not None
                and final[:2] == base[:2]  # id and version
                and final.incarnation == base.incarnation
                and not held.last_event_id_written
            ):
                continue  # only read during the outage
            if final is None and (base is None or not held.deleted):
                continue  # created and deleted again, or expired: nothing to tell the primary
            last_event_id = None
            if final is not None and held.last_event_id_known:
                last_event_id = await self._fallback_call("last_event_id_get", session_id, now_ms)
            contacted = True
            try:
                await self._push(session_id, held, final, last_event_id, now_ms)
            except StoreUnavailableError:
                raise
            except _Conflict as conflict:
                await self._give_up(session_id, conflict.what, conflict.reason, final, now_ms)
                continue
            except Exception as exc:  # the primary refused it otherwise: never lose it silently
                reason = f"the primary raised {type(exc).__name__}: {redact_text(str(exc))}"
                await self._give_up(session_id, _kind(held, final), reason, final, now_ms)
                continue
            held.base = final
            held.last_event_id_written = held.deleted = False
            if final is None:
                self._cache.pop(session_id, None)
            elif self._cache_size:
                self._remember(final, last_event_id, held.last_event_id_known)
        return contacted

    async def _push(
        self,
        session_id: str,
        held: _Held,
        final: SessionRecord | None,
        last_event_id: str | None,
        now_ms: int,
    ) -> None:
        """Make the primary hold ``final`` by compare-and-set from ``held.base``, or raise
        _Conflict and leave it as it is."""
        base = held.base
        if base is not None and (final is None or final.incarnation != base.incarnation):
            if held.deleted:
                await self._delete_if_unchanged(base, now_ms)
            base = None  # gone from the fallback (deleted or expired): any final is a new one
        if final is None:
            return
        wrote = False  # whether the primary now holds ``final`` from us
        if base is None:  # created during the outage
            try:
                await self._primary_call("session_create", final._replace(version=1), now_ms)
                version = 1
            except SessionExistsError:
                reached = await self._reached(final, now_ms)
                if reached is None:
                    raise _Conflict(
                        "create", "a session with this id was created on the primary meanwhile"
                    ) from None
                version = reached
            wrote = True
        else:
            version = base.version
        # Successive compare-and-sets up to the final version, so that the version every client
        # holds from the fallback is the primary's afterwards.
        while version < final.version:
            try:
                await self._primary_call(
                    "session_update", final._replace(version=version + 1), now_ms
                )
                version += 1
            except ConflictError:
                reached = await self._reached(final, now_ms)
                if reached is None or reached <= version:
                    raise _Conflict(
                        "update",
                        f"updated on the primary during the outage (expected version {version})",
                    ) from None
                version = reached
            except SessionNotFoundError:
                raise _Conflict("update", "deleted on the primary during the outage") from None
            wrote = True
        if held.last_event_id_written and last_event_id is not None:
            deadline = final.deadline_ms
            if not wrote:  # only the last event id changed: is it still the same session?
                current = await self._primary_call("session_get", session_id, now_ms)
                if current is None or current.incarnation != final.incarnation:
                    raise _Conflict(
                        "last_event_id", "deleted or created again on the primary during the outage"
                    )
                # Another writer may have updated it meanwhile: the last event id never undoes
                # an update, nor shortens the lifetime it gave.
                if deadline is not None and current.deadline_ms is not None:
                    deadline = max(deadline, current.deadline_ms)
                else:
                    deadline = None
            try:
                await self._primary_call(
                    "last_event_id_set", session_id, last_event_id, deadline, now_ms
                )
            except SessionNotFoundError:
                raise _Conflict("last_event_id", "deleted on the primary meanwhile") from None

    async def _delete_if_unchanged(self, base: SessionRecord, now_ms: int) -> None:
        """Delete the session on the primary if it is still at ``base``, else raise _Conflict.

        There is no compare-and-delete hook: another writer between this read and the delete
        would go unnoticed; the window is one round trip.
        """
        current = await self._primary_call("session_get", base.id, now_ms)
        if current is None:
            return  # gone there too
        if current.version != base.version or current.incarnation != base.incarnation:
            raise _Conflict(
                "delete",
                f"changed on the primary during the outage (version {base.version} there is "
                f"now {current.version}); not deleted",
            )
        await self._primary_call("session_delete", base.id, now_ms)

    async def _reached(self, final: SessionRecord, now_ms: int) -> int | None:
        """The version at which the primary already holds ``final``'s write, if it does.

        An earlier attempt may have got that far before the primary went away again, or a write
        whose answer was lost may have been applied: neither is a conflict.
        """
        current = await self._primary_call("session_get", final.id, now_ms)
        if (
            current is not None
            and current.version <= final.version
            and current.payload == final.payload
            and current.incarnation in (0, final.incarnation)
        ):
            version: int = current.version
            return version
        return None

    async def _give_up(
        self,
        session_id: str,
        what: Literal["create", "update", "delete", "last_event_id"],
        reason: str,
        record: SessionRecord | None,
        now_ms: int,
    ) -> None:
        """Report a conflict and drop the fallback's copy: the primary's data stands."""
        conflict = FallbackConflict(session_id, what, reason, record)
        self._conflicts.append(conflict)
        log.warning(
            "fallback reconciliation: %s of session %r not applied to primary %r: %s",
            what,
            session_id,
            self._primary_name,
            reason,
        )
        await self._fallback_call("session_delete", session_id, now_ms)
        self._held.pop(session_id, None)
        self._cache.pop(session_id, None)
        if self._on_conflict is not None:
            try:
                self._on_conflict(conflict)
            except Exception:
                log.exception("fallback on_conflict callback failed for session %r", session_id)


def _kind(held: _Held, final: SessionRecord | None) -> Literal["create", "update", "delete"]:
    """Which write a session's reconciliation stands for, to report it."""
    if final is None:
        return "delete"
    if held.base is None or final.incarnation != held.base.incarnation:
        return "create"
    return "update"


async def _call(hooks: HookDispatch, backend: str, hook: str, args: tuple[Any, ...]) -> Any:
    """Call a backend's hook as the store does: await a coroutine, wrap a foreign exception."""
    try:
        outcome = getattr(hooks, hook)(*args)
        return await outcome if type(outcome) is CoroutineType else outcome
    except SessionStoreError:
        raise
    except Exception as exc:
        raise BackendError(backend, hook, exc) from exc
