"""The :class:`SessionStore` facade and :func:`open_store`.

The facade validates input, runs the codec, manages versions and deadlines, and calls the backend's
hooks. It is the only place where sessions become records and back.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import re
import secrets
import threading
import time
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager
from datetime import timedelta
from itertools import count
from math import floor, inf
from threading import get_ident
from types import CoroutineType, EllipsisType, TracebackType
from typing import Any

from .capabilities import Capability
from .codec import MAX_RECORD_BYTES, decode_session, encode_session
from .errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    CorruptRecordError,
    InvalidSessionError,
    SessionNotFoundError,
    SessionStoreError,
    StoreClosedError,
    WrongEventLoopError,
)
from .fallback import FallbackMiddleware, check_fallback_options
from .middleware import bound_middleware
from .models import Session, validate_session_id
from .plugins import (
    BackendFactory,
    bind_plugins,
    capabilities_of,
    load_backend_factory,
)
from .records import _RECORD_NEW, Event, SessionDump, SessionRecord, new_record
from .transforms import split_transforms, transformed_dispatch
from .urls import backend_name_of, redact_url
from .watching import EventWatch, PollingWatch

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_DEADLINE_MS",
    "MAX_TTL_SECONDS",
    "MAX_EVENT_ID_LENGTH",
    "MAX_STREAM_ID_LENGTH",
    "SessionStore",
    "open_store",
]

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
MAX_STREAM_ID_LENGTH = 1024
"""The longest stream id (printable characters) ``append_event`` takes."""
MAX_EVENT_ID_LENGTH = 1024
"""The longest event id (printable characters) ``store_last_event_id`` and
``replay_events_after`` take."""
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600
"""The longest ``ttl`` ``open_store`` takes: every deadline (now + ttl, in Unix milliseconds) then
stays far below 2**53, which every backend holds exactly (Redis scripts compare them as doubles)."""
MAX_DEADLINE_MS = 2**53 - 1
"""The latest deadline a dump given to ``load_session`` may carry."""
MAX_BATCH_SIZE = 10_000
"""The most sessions one ``update_sessions_batch`` writes, and the most ids one
``session_get_many`` hook call is given (the facade splits a longer ``get_sessions_batch``)."""

_binding = threading.Lock()
"""Taken only when a store binds to a loop, or refuses one (see SessionStore._bind)."""


class _Unbound:
    """The loop of a store not used yet: never running, so its first call binds it."""

    _thread_id = None  # as a stopped asyncio loop's: see SessionStore._running

    def is_running(self) -> bool:
        return False

    def is_closed(self) -> bool:
        return False


_UNBOUND = _Unbound()


class _RunningProbe:
    """SessionStore._running for a loop whose ``is_running()`` is not asyncio's own (uvloop, a
    subclass overriding it): its ``_thread_id`` cannot be trusted, so this one asks asyncio which
    loop runs in the calling thread: the caller's ident when it is the bound loop, else ``None``
    (a ``getpid()`` system call per call on Python 3.11: the price of such a loop)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def _thread_id(self) -> int | None:
        try:
            running = get_running_loop()
        except RuntimeError:
            return None
        return get_ident() if running is self._loop else None


def _running_of(loop: AbstractEventLoop) -> Any:
    """SessionStore._running for ``loop`` (see SessionStore._bind)."""
    if isinstance(loop, asyncio.BaseEventLoop) and (
        type(loop).is_running is asyncio.BaseEventLoop.is_running
    ):
        # ``_thread_id`` is the thread running it and None when it does not run (run_forever
        # sets both), and is_running() is ``_thread_id is not None``.
        return loop
    return _RunningProbe(loop)


_bound_stores: weakref.WeakSet[SessionStore] = weakref.WeakSet()
"""Every store bound to a loop (see _after_fork_in_child)."""


def _after_fork_in_child() -> None:
    # The child's thread has the parent's thread id and its copy of the parent's loop still looks
    # running, so the quick check would pass: send the next call of every inherited store through
    # SessionStore._bind, where get_running_loop() (which checks the process id) refuses it.
    for store in list(_bound_stores):
        store._running = _UNBOUND


os.register_at_fork(after_in_child=_after_fork_in_child)

ModifyFunction = Callable[[Session], "Awaitable[Session | None] | Session | None"]
CorruptHandler = Callable[[CorruptRecordError], object]
"""What ``on_corrupt`` of the listings takes: called with the error of each record that cannot be
decoded, after which the listing goes on."""


def open_store(
    spec: str | BackendFactory,
    *,
    namespace: str = "default",
    ttl: float | timedelta | None = None,
    clock: Callable[[], float] | None = None,
    event_retention: int = 1000,
    page_size: int = 500,
    modify_attempts: int = 50,
    middleware: Iterable[object] = (),
    fallback: str | BackendFactory | None = None,
    fallback_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> SessionStore:
    """Open a store on the backend that ``spec`` names, resolving the backend now.

    ``spec`` is a backend name (``"memory"``, ``"sqlite"``, ``"redis"``), a URL whose scheme names
    the backend (``"sqlite:///sessions.db"``, ``"redis://host:6379/0"``), or a backend factory
    (``factory(spec, *, namespace, **options)``) for a backend not installed through an entry
    point. Use the result as ``async with open_store(...) as store:`` or close it with
    ``await store.aclose()``.

    Options common to every backend:

    * ``namespace``: the tenant or application whose sessions this store sees (1-64 of
      ``A-Z a-z 0-9 _ . -``). Two namespaces never see each other's sessions.
    * ``ttl``: idle lifetime (seconds or ``timedelta``); every create, update and
      ``store_last_event_id`` moves the deadline to now + ``ttl``; ``None`` keeps sessions forever.
    * ``clock``: a ``time.time``-like function (seconds since the epoch) deciding expiry.
    * ``event_retention``: events kept per stream; older ones are evicted.
    * ``page_size``: sessions fetched per round by ``iter_sessions``.
    * ``modify_attempts``: how many times ``modify_session`` tries before giving up.
    * ``middleware``: plugins whose ``@hookimpl(wrapper=True)`` hooks wrap the backend's.
    * ``fallback``: a second spec (typically ``"memory"``), opened with the same namespace, that
      serves sessions while this backend is unreachable, behind a circuit breaker; see
      :mod:`sessionstore.fallback`. ``fallback_options`` tunes it: ``failures``, ``probe_after``,
      ``cache_size``, ``on_conflict``, ``clock``. The store exposes it as
      :attr:`SessionStore.fallback`.

    Any other keyword goes to the backend; one it does not accept raises
    :class:`~sessionstore.ConfigurationError` naming it. An unknown backend raises
    :class:`~sessionstore.UnknownBackendError` here, listing the installed ones.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} must be 1-64 characters of A-Z a-z 0-9 _ . - "
            "starting with a letter or digit"
        )
    ttl_ms = _ttl_ms(ttl)
    for option, value, lowest in (
        ("event_retention", event_retention, 1),
        ("page_size", page_size, 1),
        ("modify_attempts", modify_attempts, 1),
    ):
        if type(value) is not int or value < lowest:
            raise ConfigurationError(f"{option} must be an int >= {lowest}, not {value!r}")
    if clock is not None and not callable(clock):
        raise ConfigurationError("clock must be a function returning seconds since the epoch")
    if fallback is None and fallback_options is not None:
        raise ConfigurationError("fallback_options given without fallback")
    fallback_settings = check_fallback_options(fallback_options)
    middleware = tuple(middleware)  # an iterable: read once, used here and by sibling()
    factory, name, spec_text = _resolve(spec)
    fallback_middleware = None
    if fallback is not None:
        # Opened first (usually in-process): if it fails, no connection of the primary leaks.
        fallback_factory, fallback_name, fallback_text = _resolve(fallback, "fallback spec")
        fallback_backend = _build_backend(
            fallback_factory, fallback_name, fallback_text, namespace, {}
        )
    backend = _build_backend(factory, name, spec_text, namespace, options)
    if fallback is not None:
        fallback_middleware = FallbackMiddleware(
            backend,
            fallback_backend,
            primary_name=name,
            fallback_name=fallback_name,
            **fallback_settings,
        )
    store = SessionStore(
        backend,
        backend_name=name,
        spec=spec_text,
        namespace=namespace,
        ttl_ms=ttl_ms,
        clock=clock or time.time,
        event_retention=event_retention,
        page_size=page_size,
        modify_attempts=modify_attempts,
        middleware=middleware,
        fallback=fallback_middleware,
    )

    def reopen(
        namespace: str, ttl: float | timedelta | None, middleware: tuple[object, ...]
    ) -> SessionStore:
        return open_store(
            spec,
            namespace=namespace,
            ttl=ttl,
            clock=clock,
            event_retention=event_retention,
            page_size=page_size,
            modify_attempts=modify_attempts,
            middleware=middleware,
            fallback=fallback,
            fallback_options=fallback_options,
            **options,
        )

    store._reopen = reopen
    return store


def _resolve(spec: object, what: str = "store spec") -> tuple[BackendFactory, str, str]:
    """Return the factory, the backend name and a description of a spec (a name, URL or
    factory), importing only that backend."""
    if isinstance(spec, str):
        name = backend_name_of(spec)
        return load_backend_factory(name), name, spec
    if callable(spec):
        name = getattr(spec, "__qualname__", type(spec).__name__)
        return spec, name, f"{getattr(spec, '__module__', '?')}:{name}"
    raise ConfigurationError(f"a {what} must be a str, not {type(spec).__name__}")


def _ttl_ms(ttl: float | timedelta | None) -> int | None:
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < inf:
        raise ConfigurationError(
            f"ttl must be a positive number of seconds or a timedelta, not {ttl!r}"
        )
    if seconds > MAX_TTL_SECONDS:
        raise ConfigurationError(
            f"ttl of {seconds:g} s exceeds MAX_TTL_SECONDS ({MAX_TTL_SECONDS}, 100 years); "
            "use ttl=None for sessions that never expire"
        )
    return max(1, round(seconds * 1000))


def _build_backend(
    factory: BackendFactory, name: str, spec: str, namespace: str, options: dict[str, Any]
) -> object:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(spec, namespace=namespace, **options)
        except TypeError:
            accepted = [
                p.name
                for p in list(signature.parameters.values())[1:]
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "namespace"
            ]
            unknown = sorted(set(options) - set(accepted))
            raise ConfigurationError(
                f"backend {name!r} does not accept option(s) {', '.join(map(repr, unknown)) or '?'}"
                f"; it accepts: {', '.join(accepted) or 'no options'}"
            ) from None
    try:
        return factory(spec, namespace=namespace, **options)
    except SessionStoreError:
        raise
    except Exception as exc:
        if redact_url(spec) == spec:  # no userinfo: nothing to hide
            raise BackendError(name, "factory", exc) from exc
        # The factory had the raw spec, and its message may quote any piece of the password
        # (urlsplit's do: "Port could not be cast to integer value as 'Zq9x'"), so neither the
        # message nor the exception (a traceback would print it) goes on.
        raise BackendError(
            name, "factory", exc, detail="message withheld: it may quote the URL's password"
        ) from None


class SessionStore:
    """Sessions in one namespace of one backend. Made by :func:`open_store`.

    Every method validates its arguments before the backend sees them and raises only
    :mod:`sessionstore.errors` classes (plus ``ValueError`` from a :class:`Session` field).

    Safe to share between the tasks of one event loop, and bound to it: the first call binds the
    store to the running event loop, and a call from any other loop (another thread's, or a
    second ``asyncio.run()``) raises :class:`WrongEventLoopError` before the backend sees it.
    Open one store per thread or event loop. Once its loop is closed, a store can still be
    closed from another loop (``aclose()`` only), to release what it holds.
    """

    def __init__(
        self,
        backend: object,
        *,
        backend_name: str,
        spec: str,
        namespace: str,
        ttl_ms: int | None,
        clock: Callable[[], float],
        event_retention: int,
        page_size: int,
        modify_attempts: int,
        middleware: tuple[object, ...] = (),
        fallback: FallbackMiddleware | None = None,
    ) -> None:
        self._given_middleware = middleware  # as given, for sibling() to bind anew
        middleware = bound_middleware(
            middleware, backend_name=backend_name, namespace=namespace, fallback=fallback
        )
        # Payload transforms (encryption, compression) run around the hooks, not in pluggy.
        self._transforms, middleware = split_transforms(middleware)
        if fallback is not None:  # innermost: other middleware see what the caller sees
            middleware = (fallback, *middleware)
        self._pm = bind_plugins(backend, backend_name, middleware)
        self._backend = backend
        self._middleware = middleware
        self._hooks = transformed_dispatch(self._pm, self._transforms)
        self._backend_name = backend_name
        self._spec = redact_url(spec)
        self._namespace = namespace
        self._ttl_ms = ttl_ms
        self._clock = clock
        self._event_retention = event_retention
        self._page_size = page_size
        self._modify_attempts = modify_attempts
        self._fallback = fallback
        self._closed = False
        # open_store's arguments, to open sibling() stores; None for a store made otherwise.
        self._reopen: (
            Callable[[str, float | timedelta | None, tuple[object, ...]], SessionStore] | None
        ) = None
        # The event loop the store is bound to, and the thread running it: see _bind.
        self._loop: AbstractEventLoop | _Unbound = _UNBOUND
        # The hot paths' check (see _bind): the bound loop, or what stands in for it, whose
        # ``_thread_id`` is the ident of the thread running it, None while it does not run.
        self._running: Any = _UNBOUND
        self._loop_thread = ""
        self._loop_pid = 0
        self._incarnations = _incarnations()  # drawn again when the store binds: see _bind

    # -- description -------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<SessionStore {self._spec} namespace={self._namespace!r}{state}>"

    @property
    def backend_name(self) -> str:
        """The name of the backend (the entry point name)."""
        return self._backend_name

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def ttl(self) -> timedelta | None:
        """The idle lifetime of sessions, or ``None``."""
        return None if self._ttl_ms is None else timedelta(milliseconds=self._ttl_ms)

    @property
    def fallback(self) -> FallbackMiddleware | None:
        """The fallback's circuit breaker (``state``, ``conflicts``...), or ``None`` when the
        store was opened without ``fallback``."""
        return self._fallback

    @property
    def capabilities(self) -> dict[Capability, str]:
        """The capabilities this backend declares it lacks, with the reason for each."""
        return capabilities_of(self._pm, self._backend_name)

    def sibling(
        self, namespace: str, *, ttl: float | timedelta | EllipsisType | None = ...
    ) -> SessionStore:
        """A new store on the same backend as this one, in another ``namespace``.

        It is opened as :func:`open_store` opened this store (the same spec, backend options,
        clock, event retention, page size, middleware and fallback) with ``namespace``, and with
        ``ttl`` when given (``None``: records that never expire), else this store's ttl. It sees
        the data that a second ``open_store`` call with the same spec would see: the same
        database, Redis server or named ``memory://`` store (a private ``"memory"`` store shares
        nothing, so its sibling is a new, empty one). It has its own connections: close it on
        its own (``async with store.sibling(...) as other:``); closing either leaves the other
        open.

        Raises :class:`~sessionstore.ConfigurationError` for an invalid namespace, or for a
        store that :func:`open_store` did not make, and :class:`StoreClosedError` once this
        store is closed.
        """
        if self._closed:
            raise StoreClosedError(f"store {self._spec} is closed")
        if self._reopen is None:
            raise ConfigurationError(
                "sibling() needs a store made by open_store(): this one was constructed directly"
            )
        if ttl is ...:
            ttl = self.ttl
        # As given (the fallback, opened again by open_store, is not among them): each is
        # bound to the sibling's namespace there.
        return self._reopen(namespace, ttl, self._given_middleware)

    def add_middleware(self, plugin: object) -> None:
        """Wrap this store's hooks with ``plugin`` (see :mod:`sessionstore.middleware`)."""
        if self._closed:
            raise StoreClosedError(f"store {self._spec} is closed")
        bound = bound_middleware(
            (plugin,),
            backend_name=self._backend_name,
            namespace=self._namespace,
            fallback=self._fallback,
        )
        transforms, wrappers = split_transforms(bound)
        middleware = (*self._middleware, *wrappers)
        self._pm = bind_plugins(self._backend, self._backend_name, middleware)
        self._middleware = middleware
        self._transforms = (*self._transforms, *transforms)
        self._given_middleware = (*self._given_middleware, plugin)
        self._hooks = transformed_dispatch(self._pm, self._transforms)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend. Idempotent; any later call raises :class:`StoreClosedError`.

        Raises :class:`WrongEventLoopError` (and leaves the store open) from another event loop
        than the store's while that loop is not closed yet.
        """
        if self._closed:
            return
        loop = self._loop
        # Once its loop is closed, only closing is left to do, from anywhere.
        if self._running._thread_id != get_ident() and not loop.is_closed():  # see _bind
            self._bind()
        self._closed = True
        hooks, self._hooks = self._hooks, _ClosedHooks(self._spec)  # type: ignore[assignment]
        try:
            outcome = hooks.store_close()
            if type(outcome) is CoroutineType:
                await outcome
        except SessionStoreError:
            raise
        except Exception as exc:
            raise self._failure("store_close", exc) from exc

    async def _call(self, hook: str, *args: Any) -> Any:
        """Run backend hook ``hook``; wrap an exception not from this library in BackendError.

        The hot operations (create, get, update) inline this: it costs a coroutine.
        """
        if self._running._thread_id != get_ident():  # see _bind
            self._bind()
        try:
            outcome = getattr(self._hooks, hook)(*args)
            return await outcome if type(outcome) is CoroutineType else outcome
        except SessionStoreError:
            raise
        except Exception as exc:
            raise self._failure(hook, exc) from exc

    def _bind(self) -> None:
        """Bind the store to the running event loop on its first call; refuse any other loop.

        Threads cannot share one store: its backend's connection, transactions and (on Redis)
        sockets belong to one loop, and sharing them lost acknowledged writes silently.

        Every call first runs ``self._running._thread_id != get_ident()`` and comes here only
        when it is true: on the first call, from another thread, or once the bound loop stopped.
        ``_running`` is the bound asyncio loop, whose ``_thread_id`` is the ident of the thread
        running it and None while it does not run: equal to ``get_ident()`` exactly when the loop
        runs in the calling thread (a thread runs one loop at a time), so the call is in that
        loop. That costs a fraction of ``get_running_loop() is not self._loop``, which makes a
        ``getpid()`` system call on Python 3.11; here, where it is rare, ``get_running_loop()``
        decides. For a loop with an ``is_running()`` of its own, a :class:`_RunningProbe` asks
        ``get_running_loop()`` on every call.
        """
        if self._closed:  # whichever loop it comes from, that is what the caller must know
            raise StoreClosedError(f"store {self._spec} is closed")
        loop = get_running_loop()
        with _binding:  # two threads making a first call at once: one of them binds
            bound = self._loop
            if bound is _UNBOUND or bound is loop:  # first call, or the loop changed threads
                self._loop = loop
                self._running = _running_of(loop)
                self._loop_thread = threading.current_thread().name
                self._loop_pid = os.getpid()
                if bound is _UNBOUND:
                    # In the process that will use it: a store opened before a fork and first
                    # used after it draws a start of its own in each process. A loop that moved
                    # threads keeps the counter, so no incarnation of this store repeats.
                    self._incarnations = _incarnations()
                _bound_stores.add(self)
                return
        here = threading.current_thread().name
        if os.getpid() != self._loop_pid:
            where = f" in process {os.getpid()}, forked from process {self._loop_pid}"
        else:
            where = "" if here == self._loop_thread else f" in thread {here!r}"
        closed = " (that loop is closed now)" if bound.is_closed() else ""
        raise WrongEventLoopError(
            f"store {self._spec} (namespace {self._namespace!r}) is bound to the event loop of "
            f"its first call, in thread {self._loop_thread!r}{closed}, and was used from another "
            f"event loop{where}. A store and its connections belong to one event loop: open one "
            "store per thread or event loop (asyncio.run() starts a new loop each time)"
        )

    def _checked_count(self, hook: str, value: object) -> int:
        if type(value) is int and value >= 0:
            return value
        problem = TypeError(f"returned {value!r:.60} where a count (an int >= 0) was due")
        raise self._failure(hook, problem) from problem

    def _failure(self, hook: str, exc: Exception) -> BackendError:
        return BackendError(self._backend_name, hook, exc)

    def _now_ms(self) -> int:
        return floor(self._clock() * 1000)  # int() for times >= 0, a third cheaper

    def _deadline(self, now_ms: int) -> int | None:
        ttl = self._ttl_ms
        return None if ttl is None else now_ms + ttl

    # -- sessions ----------------------------------------------------------------------------

    async def create_session(self, session: Session) -> Session:
        """Store a new session; return it with ``version == 1``.

        Raises :class:`SessionExistsError` if a live session has its id. ``session`` itself is
        updated (its ``version``) and returned.
        """
        if self._running._thread_id != get_ident():  # see _bind
            self._bind()
        payload = encode_session(session)  # first: it also checks that this is a Session
        now = floor(self._clock() * 1000)  # _now_ms and _deadline inlined: every write runs this
        ttl = self._ttl_ms
        incarnation = next(self._incarnations)
        record = _RECORD_NEW(
            SessionRecord, (session.id, 1, None if ttl is None else now + ttl, payload, incarnation)
        )
        try:
            outcome = self._hooks.session_create(record, now)
            # None: a plain-def hook already ran (checked first: it is the memory backend's answer)
            if outcome is not None and type(outcome) is CoroutineType:
                await outcome
        except SessionStoreError:
            raise
        except Exception as exc:
            raise self._failure("session_create", exc) from exc
        session.__dict__["version"] = 1  # a known-valid int: skip assignment validation
        private = session.__pydantic_private__
        if private is None:
            private = _private(session)
        private["_incarnation"] = incarnation
        return session

    async def get_session(self, session_id: str) -> Session:
        """Return the live session ``session_id``; a new object each call.

        Raises :class:`SessionNotFoundError` if it does not exist or has expired, and
        :class:`CorruptRecordError` if its stored record cannot be decoded.
        """
        if self._running._thread_id != get_ident():  # see _bind
            self._bind()
        validate_session_id(session_id)
        try:
            record = self._hooks.session_get(session_id, floor(self._clock() * 1000))
            if type(record) is CoroutineType:  # else a plain-def hook returned the record
                record = await record
        except SessionStoreError:
            raise
        except Exception as exc:
            raise self._failure("session_get", exc) from exc
        if record is None:
            raise SessionNotFoundError(session_id)
        return decode_session(record)

    async def update_session(self, session: Session) -> Session:
        """Compare-and-set: store ``session`` iff its ``version`` is the stored one.

        Returns it with ``version + 1`` and the deadline moved forward. Raises
        :class:`ConflictError` if another writer got there first (re-read and retry, or use
        :meth:`modify_session`) and :class:`SessionNotFoundError` if it no longer exists.
        """
        if self._running._thread_id != get_ident():  # see _bind
            self._bind()
        payload = encode_session(session)  # first: it also checks that this is a Session
        now = floor(self._clock() * 1000)
        ttl = self._ttl_ms
        version = session.version
        if type(version) is not int or not 0 <= version <= _MAX_VERSION:
            _next_version(session)  # raises, naming the problem
        version += 1
        private = session.__pydantic_private__
        incarnation = 0 if private is None else private.get("_incarnation", 0)
        record = _RECORD_NEW(
            SessionRecord,
            (session.id, version, None if ttl is None else now + ttl, payload, incarnation),
        )
        try:
            outcome = self._hooks.session_update(record, now)
            # None: a plain-def hook already ran (checked first: it is the memory backend's answer)
            if outcome is not None and type(outcome) is CoroutineType:
                await outcome
        except SessionStoreError:
            raise
        except Exception as exc:
            raise self._failure("session_update", exc) from exc
        session.__dict__["version"] = version
        return session

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session with its last event id and events; return whether it was live."""
        validate_session_id(session_id)
        existed = await self._call("session_delete", session_id, self._now_ms())
        return bool(existed)

    async def count_sessions(self) -> int:
        """Return how many live sessions the namespace holds (expired ones never count)."""
        return self._checked_count(
            "session_count", await self._call("session_count", self._now_ms())
        )

    async def iter_sessions(
        self, *, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[Session]:
        """Yield every live session once, fetching ``page_size`` at a time (bounded memory).

        Sessions created or deleted during the iteration may or may not be seen.

        A stored record that cannot be decoded raises :class:`CorruptRecordError` naming it, which
        ends the iteration. To go on past such records, pass ``on_corrupt``: it is called with the
        :class:`CorruptRecordError` of each one (``.session_id``, ``.reason``) and the iteration
        continues with the next record; ``on_corrupt=skipped.append`` collects them. To stop after
        all, raise from it.
        """
        # aclosing: a caller that stops early closes the pages' generator now, not at collection.
        async with aclosing(self.iter_sessions_with_deadlines(on_corrupt=on_corrupt)) as pages:
            async for session, _ in pages:
                yield session

    async def iter_sessions_with_deadlines(
        self, *, on_corrupt: CorruptHandler | None = None
    ) -> AsyncGenerator[tuple[Session, int | None]]:
        """As :meth:`iter_sessions`, with each session's deadline: when it expires, Unix time in
        milliseconds, or ``None`` for never (what ``sessionstore ls`` shows)."""
        cursor: str | None = None
        while True:
            records, cursor = await self._call(
                "session_page", cursor, self._page_size, self._now_ms()
            )
            for record in records:
                try:
                    if isinstance(record, CorruptRecordError):  # see the session_page hookspec
                        raise record
                    session = decode_session(record)
                except CorruptRecordError as error:
                    if on_corrupt is None:
                        raise
                    on_corrupt(error)
                    continue
                yield session, record.deadline_ms
            if cursor is None:
                return

    async def list_sessions(self, *, on_corrupt: CorruptHandler | None = None) -> list[Session]:
        """Return every live session (see :meth:`iter_sessions` for large stores, and for
        ``on_corrupt``, which goes on past records that cannot be decoded)."""
        return [session async for session in self.iter_sessions(on_corrupt=on_corrupt)]

    async def get_sessions_batch(self, session_ids: Sequence[str]) -> list[Session]:
        """Return the live sessions among ``session_ids``, in request order, missing ones skipped.

        One backend call per :data:`MAX_BATCH_SIZE` distinct ids. Reading is not atomic across
        the ids: each session is as some moment during the call saw it.
        """
        ids = _check_ids(session_ids)
        if not ids:
            return []
        distinct = list(dict.fromkeys(ids))
        now = self._now_ms()
        found: dict[str, Any] = {}
        for start in range(0, len(distinct), MAX_BATCH_SIZE):
            part = distinct[start : start + MAX_BATCH_SIZE]
            found.update(await self._call("session_get_many", part, now))
        return [decode_session(found[i]) for i in ids if i in found]

    async def update_sessions_batch(self, sessions: Sequence[Session]) -> list[Session]:
        """Compare-and-set every session at once, all or nothing; return them, versions bumped.

        Raises :class:`ConflictError` naming every stale id (or :class:`SessionNotFoundError`
        naming every missing one); then nothing was written. Ids must be distinct, and at most
        :data:`MAX_BATCH_SIZE` sessions go in one batch (:class:`InvalidSessionError` beyond).
        Every session of the batch gets the same new deadline (now + ``ttl``).
        """
        sessions = list(sessions)
        if len(sessions) > MAX_BATCH_SIZE:
            raise InvalidSessionError(
                f"a batch of {len(sessions)} sessions exceeds MAX_BATCH_SIZE ({MAX_BATCH_SIZE}); "
                "split it (each batch is atomic on its own)"
            )
        for session in sessions:
            _check_session(session)
        seen: set[str] = set()
        for session in sessions:
            if session.id in seen:
                raise InvalidSessionError(f"session {session.id!r} appears twice in the batch")
            seen.add(session.id)
        if not sessions:
            return []
        now = self._now_ms()
        deadline = self._deadline(now)
        records = [
            new_record(
                (
                    s.id,
                    _next_version(s),
                    deadline,
                    encode_session(s),
                    _private(s).get("_incarnation", 0),
                )
            )
            for s in sessions
        ]
        await self._call("session_update_many", records, now)
        for session, record in zip(sessions, records, strict=True):
            session.__dict__["version"] = record.version
        return sessions

    async def modify_session(self, session_id: str, fn: ModifyFunction) -> Session:
        """Read, change and compare-and-set a session, retrying on conflict; return the result.

        ``fn`` gets a fresh copy and either changes it in place (returning ``None``) or returns a
        replacement with the same id; it may be ``async``. It may run several times, so it should
        have no other side effects. After ``modify_attempts`` conflicts in a row it raises
        :class:`ConflictError`; exceptions from ``fn`` propagate and nothing is written.
        """
        validate_session_id(session_id)
        for attempt in range(self._modify_attempts):
            current = await self.get_session(session_id)
            result = fn(current)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                result = current
            if not isinstance(result, Session) or result.id != session_id:
                raise InvalidSessionError(
                    f"modify_session: fn must change the session in place or return a Session "
                    f"with id {session_id!r}, not {result!r:.80}"
                )
            result.__dict__["version"] = current.version
            _private(result)["_incarnation"] = _private(current).get("_incarnation", 0)
            try:
                return await self.update_session(result)
            except ConflictError:
                # Full jitter keeps contending writers from retrying in lockstep.
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
        raise ConflictError(
            session_id, detail=f"modify_session gave up after {self._modify_attempts} attempts"
        )

    async def purge_expired(self) -> int:
        """Remove expired sessions (with their event ids and events); return how many.

        Expired sessions are already invisible to every read; this reclaims their space.
        """
        purged = await self._call("session_purge_expired", self._now_ms())
        return self._checked_count("session_purge_expired", purged)

    @property
    def offers_count_expired(self) -> bool:
        """Whether the backend implements the optional ``session_count_expired`` hook (see
        :meth:`count_expired`)."""
        return bool(self._pm.hook.session_count_expired.get_hookimpls())

    async def count_expired(self) -> int:
        """Return how many sessions :meth:`purge_expired` would remove now, removing nothing.

        The backend counts exactly what its purge would remove at this instant of the store's
        clock (a session that expires between the count and a later purge makes them differ).
        Raises :class:`ConfigurationError`, naming the backend, if it does not offer the optional
        ``session_count_expired`` hook (:attr:`offers_count_expired`).
        """
        if not self.offers_count_expired:
            raise ConfigurationError(
                f"backend {self._backend_name} cannot count expired sessions "
                "(it does not offer the optional session_count_expired hook)"
            )
        counted = await self._call("session_count_expired", self._now_ms())
        return self._checked_count("session_count_expired", counted)

    async def clear(self) -> None:
        """Remove every session and event of this namespace; other namespaces are untouched."""
        await self._call("store_clear")

    # -- last event id -----------------------------------------------------------------------

    async def store_last_event_id(self, session_id: str, event_id: str) -> None:
        """Remember the last SSE event id sent on the session; moves its deadline, not its version.

        Raises :class:`SessionNotFoundError` if the session is not live.
        """
        validate_session_id(session_id)
        _check_event_id(event_id)
        now = self._now_ms()
        await self._call("last_event_id_set", session_id, event_id, self._deadline(now), now)

    async def get_last_event_id(self, session_id: str) -> str | None:
        """Return the session's last event id, ``None`` if never stored.

        Raises :class:`SessionNotFoundError` if the session is not live.
        """
        validate_session_id(session_id)
        result: str | None = await self._call("last_event_id_get", session_id, self._now_ms())
        return result

    # -- event log ---------------------------------------------------------------------------

    async def append_event(self, session_id: str, stream_id: str, data: bytes | None) -> str:
        """Append an event to a stream of the session; return its id (unique in the store).

        ``data`` is ``bytes``, or ``None`` for a priming event. Each stream keeps its newest
        ``event_retention`` events. Raises :class:`SessionNotFoundError` if the session is not live.
        """
        validate_session_id(session_id)
        _check_stream_id(stream_id)
        if data is not None and type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise InvalidSessionError(
                    f"event data must be bytes or None, not {type(data).__name__}"
                )
            data = bytes(data)
        if data is not None and len(data) > MAX_RECORD_BYTES:
            raise InvalidSessionError(f"event data of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
        event_id: str = await self._call(
            "event_append", session_id, stream_id, data, self._event_retention, self._now_ms()
        )
        return event_id

    async def replay_events_after(
        self, event_id: str, *, session_id: str | None = None
    ) -> tuple[str, list[Event]]:
        """Return ``(stream_id, events)``: the events after ``event_id`` in its stream, in order.

        With ``session_id``, an event of any other session is treated as unknown. Raises
        :class:`EventNotFoundError` for an unknown or foreign id, or one evicted by retention
        (``.evicted`` is then true).
        """
        _check_event_id(event_id)
        if session_id is not None:
            validate_session_id(session_id)
        stream_id, events = await self._call("event_replay", event_id, session_id, self._now_ms())
        return stream_id, list(events)

    @property
    def offers_event_watch(self) -> bool:
        """Whether the backend pushes event changes: it has the optional ``event_watch`` hook and
        does not declare ``Capability.EVENT_NOTIFICATIONS`` missing. Otherwise
        :meth:`watch_events` polls."""
        return bool(self._pm.hook.event_watch.get_hookimpls()) and (
            Capability.EVENT_NOTIFICATIONS not in self.capabilities
        )

    @property
    def watched_sessions(self) -> int | None:
        """How many sessions this store's listener is subscribed to now (``None`` for a backend
        without notifications, or one that does not count them)."""
        if self._closed or not self._pm.hook.event_watch_count.get_hookimpls():
            return None
        count = self._pm.hook.event_watch_count()
        return self._checked_count("event_watch_count", count)

    @asynccontextmanager
    async def watch_events(
        self, session_id: str, *, poll_interval: float = 0.05
    ) -> AsyncIterator[EventWatch]:
        """Watch the session's events: ``async with store.watch_events(id) as watch:``.

        ``await watch.wait(timeout)`` returns ``True`` when the session's events may have
        changed (appended, loaded, or the session deleted) through any handle, ``False`` after
        ``timeout`` seconds without a sign. The watch is subscribed when the ``async with``
        body starts, so read after entering it: a change that commits after that is never
        missed (the next ``wait`` returns at once), though a wake-up may be spurious. A backend
        that pushes changes (``Capability.EVENT_NOTIFICATIONS``) wakes the waiter within its
        notification delay; for any other the watch wakes every ``poll_interval`` seconds, so
        the caller reads that often. Notifications are at most once: keep a slow safety re-read
        (a ``timeout`` of about a second). The session need not exist. Raises
        :class:`StoreUnavailableError` if the backend cannot subscribe.
        """
        validate_session_id(session_id)
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
            raise ConfigurationError(f"poll_interval must be seconds, not {poll_interval!r}")
        if not 0 < poll_interval < inf:
            raise ConfigurationError(f"poll_interval must be > 0 seconds, not {poll_interval!r}")
        if not self.offers_event_watch:
            yield PollingWatch(poll_interval)
            return
        watch: EventWatch = await self._call("event_watch", session_id)
        try:
            yield watch
        finally:
            try:
                await watch.aclose()
            except SessionStoreError:
                raise
            except Exception as exc:
                raise self._failure("event_watch", exc) from exc

    # -- benchmarks ----------------------------------------------------------------------------

    @property
    def offers_raw_get(self) -> bool:
        """Whether the backend implements the optional ``raw_get`` hook (see :meth:`raw_get`)."""
        return bool(self._pm.hook.raw_get.get_hookimpls())

    async def raw_get(self, session_id: str) -> object:
        """Do with the backend's driver alone the read :meth:`get_session` does, for benchmarks.

        Returns what the driver returned (nothing is decoded or checked). Raises
        :class:`ConfigurationError` if the backend offers no such read (:attr:`offers_raw_get`).
        """
        validate_session_id(session_id)
        if not self.offers_raw_get:
            raise ConfigurationError(f"backend {self._backend_name} offers no raw driver read")
        return await self._call("raw_get", session_id)

    # -- moving sessions between stores ------------------------------------------------------

    async def dump_session(self, session_id: str) -> SessionDump:
        """Return everything the store holds of the live session: record (version, deadline,
        incarnation, payload), last event id, and the retained events of each stream.

        Raises :class:`SessionNotFoundError` if it is not live. Pass the result to
        :meth:`load_session` of this or another store (another backend) to copy the session.
        """
        validate_session_id(session_id)
        dump = await self._call("session_dump", session_id, self._now_ms())
        if dump is None:
            raise SessionNotFoundError(session_id)
        return _checked_dump(dump)

    async def iter_dumps(
        self, *, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[SessionDump]:
        """Yield the dump of every live session once, ``page_size`` at a time (bounded memory).

        The order is the backend's paging order (by id within each backend's pages). A session
        deleted or expired between its page and its dump is skipped.

        Every dump's payload is checked to decode, so that what is yielded can be loaded again:
        one that does not raises :class:`CorruptRecordError`, unless ``on_corrupt`` is given, which
        then gets the error and the iteration goes on (see :meth:`iter_sessions`).
        """
        cursor: str | None = None
        while True:
            records, cursor = await self._call(
                "session_page", cursor, self._page_size, self._now_ms()
            )
            for record in records:
                try:
                    if isinstance(record, CorruptRecordError):  # see the session_page hookspec
                        raise record
                    found = await self._call("session_dump", record.id, self._now_ms())
                    if found is None:
                        continue
                    dump = _checked_dump(found)
                    decode_session(dump.record)
                except CorruptRecordError as error:
                    if on_corrupt is None:
                        raise
                    on_corrupt(error)
                    continue
                yield dump
            if cursor is None:
                return

    async def load_session(self, dump: SessionDump) -> bool:
        """Write a dumped session exactly as it was, if no live session has its id.

        Version, deadline (kept as it is: this store's ``ttl`` does not apply), incarnation,
        payload and last event id are kept, so a writer holding the session can go on with
        compare-and-set; each stream's events are appended in order under new event ids (this
        store's ``event_retention`` applies). Returns whether it was written: ``False`` if a live
        session has the id or the dump's deadline has passed, and then nothing was written. All or
        nothing. Raises :class:`CorruptRecordError` if the payload does not decode and
        :class:`InvalidSessionError` for a malformed dump, before the backend sees it.
        """
        dump = _checked_dump(dump, strict=True)
        decode_session(dump.record)  # refuses a payload no reader could decode
        now = self._now_ms()
        deadline = dump.record.deadline_ms
        if deadline is not None and deadline <= now:
            return False
        return bool(await self._call("session_load", dump, self._event_retention, now))


class _ClosedHooks:
    def __init__(self, spec: str) -> None:
        self._spec = spec

    def __getattr__(self, name: str) -> Callable[..., Any]:
        raise StoreClosedError(f"store {self._spec} is closed")


def _checked_dump(dump: object, *, strict: bool = False) -> SessionDump:
    """``dump`` as a :class:`SessionDump` of the right types, or InvalidSessionError saying why.

    ``strict`` (a dump from outside, e.g. a file) also checks ids and sizes."""
    parts: Any = dump
    try:
        record, last_event_id, raw_streams = parts
        session_id, version, deadline, payload, incarnation = record
        streams = tuple((stream, tuple(events)) for stream, events in raw_streams)
    except (TypeError, ValueError):
        raise InvalidSessionError(
            f"a session dump is (record, last event id, streams), not {dump!r:.80}"
        ) from None
    if strict:
        validate_session_id(session_id)
        problems = [
            what
            for what, bad in (
                ("version", type(version) is not int or not 1 <= version <= _MAX_VERSION + 1),
                (
                    "deadline_ms",
                    deadline is not None
                    and (type(deadline) is not int or not 0 <= deadline <= MAX_DEADLINE_MS),
                ),
                ("payload", type(payload) is not bytes),
                ("incarnation", type(incarnation) is not int or not 0 <= incarnation < 2**63),
            )
            if bad
        ]
        if problems:
            raise InvalidSessionError(
                f"session dump {session_id!r} has a bad {', '.join(problems)}"
            )
        if last_event_id is not None:
            _check_event_id(last_event_id)
        for stream, events in streams:
            _check_stream_id(stream)
            for data in events:
                if data is not None and (type(data) is not bytes or len(data) > MAX_RECORD_BYTES):
                    raise InvalidSessionError(
                        f"session dump {session_id!r}: an event of stream {stream[:40]!r} is "
                        "not bytes (or None) within the size limit"
                    )
    return SessionDump(
        new_record((session_id, version, deadline, payload, incarnation)), last_event_id, streams
    )


def _incarnations() -> Iterator[int]:
    """The incarnations one store gives the sessions it creates: odd numbers counting up by 2 from
    a start drawn from the OS's CSPRNG.

    Within a store none repeats. Across stores (processes, hosts), the incarnation one store gives
    is as unlikely to equal a given incarnation of another store as one drawn at random for each
    create: the starts are independent and uniform over 2**60 odd numbers, so for any pair the
    chance is 2**-60. Every value stays below 2**62 for 2**60 creates (centuries at millions a
    second), as with ``getrandbits(62)``: every backend stores it exactly.
    """
    return count(secrets.randbits(61) | 1, 2)


def _private(session: Session) -> dict[str, Any]:
    private = session.__pydantic_private__
    if private is None:  # a model built without __init__
        private = session.__pydantic_private__ = {}
    return private


_MAX_VERSION = 2**63 - 2  # one more must still fit every backend's 64-bit integer


def _next_version(session: Session) -> int:
    version = session.version
    if type(version) is not int or not 0 <= version <= _MAX_VERSION:
        raise InvalidSessionError(
            f"session {session.id!r} has version {version!r}; versions are store-managed ints "
            "(model_copy(update=...) does not validate)"
        )
    return version + 1


def _check_session(session: object) -> None:
    if not isinstance(session, Session):
        raise InvalidSessionError(f"expected a Session, not {type(session).__name__}")


def _check_ids(session_ids: object) -> list[str]:
    if isinstance(session_ids, str | bytes):
        raise InvalidSessionError("session_ids must be a sequence of ids, not a single str")
    return [validate_session_id(i) for i in session_ids]  # type: ignore[attr-defined]


def _check_text(value: object, what: str, limit: int) -> None:
    if type(value) is not str or not 0 < len(value) <= limit:
        raise InvalidSessionError(f"{what} must be a non-empty str of at most {limit} characters")
    if not value.isprintable():
        raise InvalidSessionError(f"{what} {value[:40]!r} contains control characters")


def _check_event_id(event_id: object) -> None:
    _check_text(event_id, "event id", MAX_EVENT_ID_LENGTH)


def _check_stream_id(stream_id: object) -> None:
    _check_text(stream_id, "stream id", MAX_STREAM_ID_LENGTH)
