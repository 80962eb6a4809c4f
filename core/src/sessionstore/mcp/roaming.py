"""Roaming: any instance of an MCP server serves any session, through the SDK's public ASGI app.

:class:`McpSessions` puts an ASGI layer in front of the SDK's Streamable HTTP app. The layer

- gives each new session an id of its own (the SDK's id stays on the instance that made it) and
  keeps, in the store, the session's initialize request (its exact text, bounded in size) and a
  digest of its principal;
- on a request for a session this instance does not know but the store does (and for the same
  principal), replays the kept initialize request (and the ``initialized`` notification) to the
  local SDK app, then serves the request as if the session had started here;
- answers 404, as the SDK does for an unknown id, when the store does not have the session
  (never created, expired, deleted elsewhere) or the principal differs;
- deletes the session from the store when the client ends it (``DELETE``);
- runs the instance's heartbeat and binds the :class:`SessionEventStore`, whose replays follow a
  stream another instance produces (see :mod:`sessionstore.mcp.events`);
- optionally limits the sessions of each principal and of the fleet (:mod:`.limits`).

Where the SDK's app is a Starlette app with a route for ``path`` (what the SDK's
``streamable_http_app()`` returns), the per-request handling goes inside that route, behind the
SDK's own authentication middleware, so the layer sees the user the SDK authenticated. The
layer's own records (instance heartbeats, limit ledgers) live in a namespace of their own
(:func:`layer_namespace`), never among the application's sessions.

Requests outside ``path``, and requests of the 2026 stateless protocol (no session), pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware

from .._tasks import cancel_and_wait
from ..errors import (
    ConflictError,
    InvalidSessionError,
    SessionNotFoundError,
    SessionStoreError,
)
from ..models import Session, TransportType, new_session_id
from ..store import SessionStore, open_store
from ._asgi import (
    MAX_BODY,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    buffered,
    find_route,
    has_authentication,
    header,
    header_of,
    replaying,
    too_large,
    under,
    with_header,
)
from ._capture import Captured, RestoreFailed
from ._fastmcp import ScopedAdapters
from ._initialize import (
    Unparsable,
    initialize_body,
    is_initialize,
    kept_initialize,
    parse_as_the_sdk_does,
)
from ._lifespan import mounted_lifespan, serve_lifespan
from ._log import shown, shown_id
from ._principals import (
    Principal,
    default_principal,
    owner_digest,
    principal_digest,
    request_identity,
)
from ._sdk import SDK_MAJOR
from .events import SessionEventStore, check_instance_id, session_scope
from .instances import Heartbeat
from .limits import MAX_PER_PRINCIPAL, MAX_SESSIONS, SessionLimits, check_limit
from .replies import DEFAULT_REPLY_TIMEOUT, ReplyRelay, parse_reply

__all__ = [
    "DEFAULT_MAX_INITIALIZE_BYTES",
    "MCP_METADATA_KEY",
    "McpSessions",
    "default_principal",
    "layer_namespace",
]

logger = logging.getLogger("sessionstore.mcp")

MCP_METADATA_KEY = "mcp"
"""The key of a session's metadata where the layer keeps its initialize request and principal."""

_SESSION_HEADER = b"mcp-session-id"
_VERSION_HEADER = b"mcp-protocol-version"
_REPLAYED_HEADERS = {
    _SESSION_HEADER,
    _VERSION_HEADER,
    b"last-event-id",
    b"content-length",
    b"content-type",
    b"accept",
}
DEFAULT_MAX_INITIALIZE_BYTES = 64 * 1024
"""The default of ``McpSessions(max_initialize_bytes=...)``: the largest initialize request the
layer keeps for a session (a client's is typically well under 1 KiB)."""
_LAYER_SUFFIX = ".mcp-layer"
_HEARTBEAT_RECORD_TTL = 60.0  # at least; a killed instance's record goes away on its own


def layer_namespace(namespace: str) -> str:
    """The namespace of the layer's own records for the application namespace ``namespace``:
    ``<namespace>.mcp-layer``, or, when that is over 64 characters, the namespace's first 37
    characters, a digest of the whole and the suffix (still distinct per namespace)."""
    name = namespace + _LAYER_SUFFIX
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:16]
    return f"{namespace[: 64 - len(_LAYER_SUFFIX) - 17]}.{digest}{_LAYER_SUFFIX}"


class McpSessions:
    """Sessions of an MCP server fleet kept in a sessionstore store.

    ``store`` is a spec for :func:`~sessionstore.open_store` (opened at startup with
    ``store_options``, closed at shutdown) or an open :class:`~sessionstore.SessionStore` made
    by :func:`~sessionstore.open_store` (left open; one constructed directly is refused with
    ``TypeError``: the layer opens its own namespace beside it with
    :meth:`~sessionstore.SessionStore.sibling`). A relative SQLite path is resolved against
    the working directory of the layer's startup: give an absolute one.

    Hand :attr:`event_store` to the SDK and serve :meth:`wrap` of the SDK's app::

        sessions = McpSessions("redis://cache:6379/0", ttl=1800)
        mcp = FastMCP("demo", event_store=sessions.event_store)      # SDK 1.x
        app = sessions.wrap(mcp.streamable_http_app())

    ``heartbeat_ttl`` bounds how long a client waits to learn that the instance running its
    request died; ``principal`` names who makes a request (see :func:`default_principal`).
    ``reply_timeout`` bounds how long the client's answer to a request a tool sent it
    (elicitation, sampling, roots, ping) still reaches this instance when the balancer hands it
    to another one (see :mod:`sessionstore.mcp.replies`).

    Bounds: ``max_initialize_bytes`` is the largest initialize request kept for a session (a
    larger one is refused with 413); ``max_sessions`` (the fleet's) and
    ``max_sessions_per_principal`` limit the live sessions, counted in the store and answered
    as the SDK's own ``max_sessions`` is (503 "Too many open sessions"); ``None``: no limit.
    Every instance of a fleet must be given the same limits.
    """

    def __init__(
        self,
        store: str | SessionStore,
        *,
        path: str = "/mcp",
        principal: Principal = default_principal,
        instance_id: str | None = None,
        heartbeat_interval: float = 1.0,
        heartbeat_ttl: float = 5.0,
        poll_interval: float = 0.05,
        touch_interval: float | None = None,
        restore_timeout: float = 10.0,
        sweep_interval: float = 60.0,
        drain_timeout: float = 25.0,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        max_initialize_bytes: int = DEFAULT_MAX_INITIALIZE_BYTES,
        max_sessions: int | None = None,
        max_sessions_per_principal: int | None = None,
        **store_options: Any,
    ) -> None:
        if type(max_initialize_bytes) is not int or not 256 <= max_initialize_bytes <= MAX_BODY:
            raise ValueError(
                f"max_initialize_bytes must be an int from 256 to {MAX_BODY}, "
                f"not {max_initialize_bytes!r}"
            )
        self.max_initialize_bytes = max_initialize_bytes
        self.max_sessions = check_limit("max_sessions", max_sessions, MAX_SESSIONS)
        self.max_sessions_per_principal = check_limit(
            "max_sessions_per_principal", max_sessions_per_principal, MAX_PER_PRINCIPAL
        )
        if not 0 < heartbeat_interval < heartbeat_ttl:
            raise ValueError(
                f"heartbeat_interval ({heartbeat_interval}) must be positive and under "
                f"heartbeat_ttl ({heartbeat_ttl})"
            )
        if isinstance(store, SessionStore) and store_options:
            raise TypeError(
                f"store options {sorted(store_options)} apply only when store is a spec"
            )
        if isinstance(store, SessionStore) and store._reopen is None:
            # The layer's own records go to a sibling store on the same backend, which only a
            # store made by open_store() knows how to open.
            raise TypeError(
                "McpSessions: store must be a spec or a store made by open_store(); this "
                "SessionStore was constructed directly, so the layer cannot open its own "
                "namespace (heartbeats, limits) on the same backend (store.sibling())"
            )
        self._spec = store
        self._store_options = store_options
        self._store: SessionStore | None = store if isinstance(store, SessionStore) else None
        self.path = path.rstrip("/") or "/"
        self.principal = principal
        # A random suffix per process: a crashed instance restarted under the same name is a
        # new producer, so the requests the old process left unanswered are seen as orphaned.
        name = "mcp" if instance_id is None else check_instance_id(instance_id, longest=64)
        self.instance_id = f"{name}-{secrets.token_hex(6)}"
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = heartbeat_ttl
        self.touch_interval = touch_interval
        self.restore_timeout = restore_timeout
        self.event_store = SessionEventStore(
            instance_id=self.instance_id, poll_interval=poll_interval
        )
        self.replies = ReplyRelay(
            self.instance_id, timeout=reply_timeout, poll_interval=poll_interval
        )
        self.event_store.outgoing = self.replies.outgoing
        self.sweep_interval = sweep_interval
        self.drain_timeout = drain_timeout
        self._heartbeat: Heartbeat | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._app: _RoamingApp | None = None
        # The layer's own records, in layer_namespace(): heartbeats (expiring on their own) and,
        # with a limit, the ledgers (never expiring: they count sessions that live on).
        self._own_stores: list[SessionStore] = []
        self._limits: SessionLimits | None = None

    def __repr__(self) -> str:
        return f"<McpSessions instance={self.instance_id} store={self._store or '(not open)'}>"

    @property
    def running(self) -> bool:
        """Whether :meth:`start` ran (and :meth:`stop` did not since)."""
        return self._heartbeat is not None

    @property
    def store(self) -> SessionStore:
        """The store (``RuntimeError`` before startup when given a spec)."""
        if self._store is None:
            raise RuntimeError(
                "McpSessions: the store opens at the app's startup (lifespan); a parent app "
                "that mounts the wrapped app must run lifespan=sessions.lifespan (or enter "
                "sessions.run())"
            )
        return self._store

    @property
    def limits(self) -> SessionLimits | None:
        """The session limits in force once started (``None`` without any)."""
        return self._limits

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The ASGI app to serve: ``app`` (the SDK's Streamable HTTP app) behind the layer.

        When ``app`` is (or, through middleware's ``.app``, leads to) a Starlette app with a
        route for ``path``, the layer's per-request handling replaces that route's endpoint
        (inside the SDK's ``RequireAuthMiddleware`` when there is one), so it runs after every
        authentication of the app, the SDK's own included. Otherwise it runs in front of
        ``app``: a Starlette app with an ``AuthenticationMiddleware`` but no such route is
        refused here (``ValueError``). Either way, a request that an authentication after the
        layer (inside ``app``, or between the route and the SDK's endpoint) shows to be someone
        the layer did not see is answered 500 and logged as an error, once ``app`` ran it.
        """
        if self._app is not None:
            raise RuntimeError("McpSessions.wrap: one McpSessions serves one app")
        self._app = _RoamingApp(app, self)
        return self._app

    @property
    def lifespan(self) -> Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]:
        """The wrapped app's lifespan with the layer's start and stop in it, for a parent app
        that mounts the wrapped app (FastMCP's docs mount ``mcp.http_app()`` so)::

            mcp_app = sessions.wrap(mcp.http_app(event_store=sessions.event_store))
            app = Starlette(routes=[Mount("/api", app=mcp_app)], lifespan=sessions.lifespan)

        ``RuntimeError`` before :meth:`wrap`."""
        if self._app is None:
            raise RuntimeError("McpSessions.lifespan: wrap() the app first")
        return self._app.lifespan

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[McpSessions]:
        """Start and stop around the block, for an app whose lifespan does not reach the layer
        (one mounted inside another Starlette app; run the SDK's ``session_manager.run()``
        there too). The layer's own lifespan handling then does nothing."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        """Open the store, start the heartbeat, bind the event store (the layer's startup).

        Does nothing if already started."""
        if self._heartbeat is not None:
            return
        if self._store is None:
            assert isinstance(self._spec, str)
            self._store = open_store(self._spec, **self._store_options)
        if self.touch_interval is None and self._store.ttl is not None:
            self.touch_interval = self._store.ttl.total_seconds() / 4
        try:
            own = layer_namespace(self._store.namespace)
            beats = self._store.sibling(
                own, ttl=max(_HEARTBEAT_RECORD_TTL, 10 * self.heartbeat_ttl)
            )
            self._own_stores.append(beats)
            if self.max_sessions is not None or self.max_sessions_per_principal is not None:
                ledgers = self._store.sibling(own, ttl=None)
                self._own_stores.append(ledgers)
                self._limits = SessionLimits(
                    ledgers,
                    self._store,
                    max_sessions=self.max_sessions,
                    max_sessions_per_principal=self.max_sessions_per_principal,
                )
            heartbeat = Heartbeat(
                beats,
                self.instance_id,
                interval=self.heartbeat_interval,
                ttl=self.heartbeat_ttl,
                legacy=self._store,  # instances of earlier releases (see .instances)
            )
            await heartbeat.start()
        except BaseException:
            await self._close_stores()
            raise
        self._heartbeat = heartbeat
        self._sweeper = asyncio.create_task(self._sweep(), name="sessionstore.mcp sweeper")
        self.event_store.bind(
            self._store,
            instance_id=self.instance_id,
            liveness=self._heartbeat.alive,
            liveness_interval=min(self.heartbeat_interval, 0.5),
        )
        if self._app is not None:
            self.replies.start(self._store, post=self._app.post_reply, liveness=heartbeat.alive)
        logger.info("MCP sessions of instance %s on %s", self.instance_id, self._store)

    async def drain(self) -> bool:
        """Wait (up to ``drain_timeout``) until the requests this instance runs are answered;
        return whether they all were. The heartbeat goes on meanwhile, so another instance
        that a client resumed on keeps delivering their events and results from the store."""
        sessions = self.event_store.unanswered_sessions()
        if sessions and self._store is not None:
            # A request of a session that ended (deleted, expired) is never answered: skip it.
            try:
                live = {s.id for s in await self._store.get_sessions_batch(sorted(sessions))}
            except SessionStoreError:
                live = sessions
            self.event_store.forget_requests(
                {r for r in self.event_store.requests() if r[0] not in live}
            )
        running = self.event_store.unanswered
        if not running:
            return True
        logger.info("instance %s stopping: waiting for %d request(s)", self.instance_id, running)
        with anyio.move_on_after(self.drain_timeout) as waiting:
            await self.event_store.wait_for_answers()
        done = not waiting.cancelled_caught
        if not done:
            logger.warning(
                "instance %s stopping with %d request(s) unanswered after %s s",
                self.instance_id,
                self.event_store.unanswered,
                self.drain_timeout,
            )
        return done

    async def stop(self) -> None:
        """Stop the heartbeat (deleting its record) and close a store opened from a spec."""
        await self.replies.stop()
        if self._sweeper is not None:
            await cancel_and_wait([self._sweeper])
            self._sweeper = None
        if self._heartbeat is not None:
            await self._heartbeat.stop()
            self._heartbeat = None
        await self._close_stores()

    async def _close_stores(self) -> None:
        """Close the layer's own stores, and the application's when opened from a spec."""
        self._limits = None
        own, self._own_stores = self._own_stores, []
        for store in own:
            with contextlib.suppress(SessionStoreError):
                await store.aclose()
        if isinstance(self._spec, str) and self._store is not None:
            store, self._store = self._store, None
            await store.aclose()

    async def _sweep(self) -> None:
        """Now and then, forget the local ids of sessions that expired or ended elsewhere (the
        SDK's own ``session_idle_timeout`` ends the local sessions themselves)."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            if self._app is not None:
                try:
                    await self._app.forget_gone_sessions()
                except SessionStoreError as exc:
                    logger.warning("sweep of local sessions failed: %s", shown(exc, 300))


class _RoamingApp:
    """The ASGI layer :meth:`McpSessions.wrap` returns."""

    def __init__(self, app: ASGIApp, sessions: McpSessions) -> None:
        self.app = app
        self.sessions = sessions
        self._local: dict[str, str] = {}  # our session id -> the local SDK's session id
        self._restoring: dict[str, asyncio.Lock] = {}
        self._touched: dict[str, float] = {}
        # Where the layer's requests go: the SDK route's endpoint when the handling is inside the
        # route (see _install_in_route), else the whole app. Watched for hidden authentication
        # either way: inside the route, middleware of the route itself (Route(middleware=...))
        # or an authenticating wrapper of the endpoint still runs after the layer.
        self.inside = _install_in_route(app, sessions.path, self)
        self._target: ASGIApp = self.inside if self.inside is not None else app
        # FastMCP's app wraps the event store per transport, which defeats a fleet: undone.
        self._adapters = ScopedAdapters(app, sessions.event_store)

    async def forget_gone_sessions(self) -> int:
        """Drop the local ids of sessions the store no longer has; return how many.

        Also drops what the layer noted of sessions this instance does not hold: their last
        touch (a relayed answer, a failed restore touch sessions held elsewhere) and their
        restore locks no request waits on (a failed restore leaves its lock), so neither grows
        with every session the instance ever saw."""
        known = list(self._local)
        live = {s.id for s in await self.sessions.store.get_sessions_batch(known)}
        gone = [session_id for session_id in known if session_id not in live]
        for session_id in gone:
            self._local.pop(session_id, None)
        for session_id in [s for s in self._touched if s not in self._local]:
            del self._touched[session_id]
        self._drop_idle_locks()
        self.sessions.replies.retain(set(self._local))
        return len(gone)

    def _drop_idle_locks(self, *session_ids: str) -> None:
        """Drop the restore locks (of ``session_ids``, or of all) that no request holds or
        waits on and whose session this instance does not hold."""
        for session_id in session_ids or list(self._restoring):
            lock = self._restoring.get(session_id)
            if lock is not None and not lock.locked() and session_id not in self._local:
                del self._restoring[session_id]

    @property
    def local_sessions(self) -> dict[str, str]:
        """Our session id -> the local SDK's id, for each session this instance holds."""
        return dict(self._local)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif (
            self.inside is None
            and scope["type"] == "http"
            and under(scope["path"], self.sessions.path)
        ):
            await self._http(scope, receive, send)
        else:  # inside the route, _Endpoint hands the requests of path to _http
            await self.app(scope, receive, send)

    async def _sdk(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK's app (or its route's endpoint), watched: a request that an authentication
        the layer does not see (inside the app, or between the route and the SDK's endpoint)
        shows to be another principal than the layer saw is refused (500), loudly.

        The refusal comes only once the app has run the request (the check is on its answer's
        start): it keeps the client from getting that answer, not the app from having acted on
        it. Such a setup is a misconfiguration to fix, which the error log names."""
        seen = request_identity(self.sessions.principal, scope)
        hidden = False

        async def send_checked(message: Message) -> None:
            nonlocal hidden
            if message["type"] == "http.response.start" and (
                request_identity(self.sessions.principal, scope) != seen
            ):
                hidden = True
                logger.error(
                    "McpSessions: the app authenticates requests where the layer cannot see it, "
                    "so it would take every user for the same principal; request refused. Wrap "
                    "the SDK's Starlette app itself (McpSessions.wrap(mcp.streamable_http_app()))"
                    ", put the authentication middleware outside the layer, or pass principal="
                )
            if not hidden:
                await send(message)

        await self._target(scope, receive, send_checked)
        if hidden:
            await _json_error(send, 500, "Internal Server Error", code=-32603)

    # -- lifespan ----------------------------------------------------------------------------

    @property
    def lifespan(self) -> Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]:
        """The wrapped app's lifespan with the layer's start and stop in it, for a parent app
        that mounts this one (whose lifespan does not run there), as FastMCP's docs mount
        ``mcp.http_app()``::

            app = Starlette(routes=[Mount("/api", app=wrapped)], lifespan=wrapped.lifespan)

        The layer starts once the wrapped app started (the SDK's session manager runs first),
        waits for its running requests before the wrapped app stops (see
        :meth:`McpSessions.drain`) and stops after it stopped, as when served on its own.
        ``RuntimeError`` when the wrapped app's own lifespan cannot be found (see
        ``_lifespan.mounted_lifespan``)."""
        return mounted_lifespan(self.app, self.sessions, self._adapters)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_lifespan(self.app, self.sessions, self._adapters, scope, receive, send)

    # -- requests ----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._adapters.unscope()  # a FastMCP manager made after startup (see lifespan)
        session_id = header(scope, _SESSION_HEADER)
        if session_id is not None:
            await self._serve(session_id, scope, receive, send)
            return
        if scope["method"] != "POST":
            await self._sdk(scope, receive, send)
            return
        body, receive = await buffered(receive)
        if body is None:
            await too_large(send)
            return
        try:
            opening = is_initialize(parse_as_the_sdk_does(body))
        except Unparsable as exc:
            # What SDK 1.x answers 500 to (deep nesting, invalid UTF-8): SDK 2.x's answer.
            await _json_error(send, 400, f"Parse error: {exc}", code=-32700)
            return
        if opening:
            await self._open(scope, body, receive, send)
        else:
            await self._sdk(scope, receive, send)

    async def _open(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """A new session: store it with its initialize request, then let the SDK open it."""
        limit = self.sessions.max_initialize_bytes
        if len(body) > limit:
            await _json_error(
                send, 413, f"Initialize request too large: {len(body)} bytes (at most {limit})"
            )
            return
        store = self.sessions.store
        session_id = new_session_id()
        principal = principal_digest(self.sessions.principal(scope))
        kept: dict[str, Any] = {
            **kept_initialize(body),
            "principal": principal,
            "opened_by": self.sessions.instance_id,
        }
        owner = owner_digest(scope)
        if owner is not None:
            kept["owner"] = owner
        limits = self.sessions.limits
        admission = None
        if limits is not None:
            try:
                admission = await limits.admit(session_id, principal)
            except SessionStoreError as exc:
                logger.warning("new MCP session refused: %s", shown(exc, 300))
                await _json_error(send, 503, "Session store unavailable")
                return
            if not admission.admitted:
                # The SDK's own answer at its max_sessions, byte for byte.
                await _json_error(send, 503, "Too many open sessions", code=-32603)
                return
            if admission.shard is not None:
                kept["shard"] = admission.shard
        session = Session(
            id=session_id, transport=TransportType.HTTP, metadata={MCP_METADATA_KEY: kept}
        )
        try:
            await store.create_session(session)
            confirmed = (
                limits is None
                or admission is None
                or await limits.confirm(admission, session_id, principal)
            )
        except SessionStoreError as exc:
            logger.warning("new MCP session refused: %s", shown(exc, 300))
            await _quietly(store.delete_session(session_id))
            await self._release(session_id, kept)
            await _json_error(send, 503, "Session store unavailable")
            return
        if not confirmed:  # a slow creation lost its place, and the limit is reached now
            await _quietly(store.delete_session(session_id))
            await self._release(session_id, kept)
            await _json_error(send, 503, "Too many open sessions", code=-32603)
            return
        opened = False
        try:
            status = await self._forward(session_id, None, scope, receive, send)
            opened = status is not None and status < 400 and session_id in self._local
        finally:
            if not opened:
                # Also when the SDK raised or the request was cancelled: the record and the
                # places it holds under the limits would otherwise stay (with no store ttl,
                # for good, locking the principal out at its limit).
                self._local.pop(session_id, None)
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT):
                    await _quietly(store.delete_session(session_id))
                    await self._release(session_id, kept)

    async def _release(self, session_id: str, kept: dict[str, Any]) -> None:
        """Give back the places the session held under the limits (it ended here)."""
        limits = self.sessions.limits
        principal = kept.get("principal")
        if limits is not None and isinstance(principal, str):
            shard = kept.get("shard")
            await limits.release(session_id, principal, shard if type(shard) is int else None)

    async def _serve(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        store = self.sessions.store
        try:
            session = await store.get_session(session_id)
        except (SessionNotFoundError, InvalidSessionError):
            await self._forget(session_id, scope)
            await _json_error(send, 404, "Session not found")
            return
        except SessionStoreError as exc:
            logger.warning("session %s: %s", shown_id(session_id), shown(exc, 300))
            await _json_error(send, 503, "Session store unavailable")
            return
        kept = session.metadata.get(MCP_METADATA_KEY)
        if not isinstance(kept, dict) or not self._may_use(kept, scope):
            # Exactly the answer an unknown id gets: a stranger learns nothing.
            logger.warning(
                "session %s: request from another principal refused", shown_id(session_id)
            )
            await _json_error(send, 404, "Session not found")
            return
        body: bytes | None = None
        client_receive = receive
        if scope["method"] == "POST":
            body, receive = await buffered(receive)
            if body is None:
                await too_large(send)
                return
        ending = scope["method"] == "DELETE"
        if not ending:
            await self._touch(session)
            self.sessions.replies.saw(session_id, scope)
        reply = None if body is None else parse_reply(body)
        if reply is not None:
            # The client's answer to a request a tool sent: for the instance that asked.
            routed = await self.sessions.replies.route(session, reply, send)
            if routed is None:
                return  # relayed (or dropped) and answered
            body, receive = routed, replaying(routed, client_receive)
            length = str(len(routed))
            scope = dict(scope, headers=with_header(scope["headers"], b"content-length", length))
        for attempt in range(2):
            if attempt and body is not None:
                receive = replaying(body, receive)
            local = self._local.get(session_id)
            if local is None:
                restored = await self._restore(session_id, kept, scope)
                if isinstance(restored, Captured):  # the SDK's refusal (its max_sessions)
                    await restored.send_to(send)
                    return
                if restored is None:
                    await _json_error(send, 503, "Session could not be restored")
                    return
                local = restored
            if ending and attempt == 0:
                # Gone from the store before the client hears so: its next request, wherever
                # it lands, finds no session.
                self._touched.pop(session_id, None)
                await _quietly(store.delete_session(session_id))
                await self._release(session_id, kept)
            status = await self._forward(
                session_id, local, scope, receive, send, hold_not_found=attempt == 0
            )
            if status != _GONE:
                break
            # The local SDK session ended (its idle timeout) while the store still has it.
            if self._local.get(session_id) == local:
                del self._local[session_id]
        if ending:
            self._local.pop(session_id, None)
            self.sessions.replies.forget(session_id)

    async def _forward(
        self,
        session_id: str,
        local: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        hold_not_found: bool = False,
    ) -> int | None:
        """Pass the request to the SDK under the local session id; show the client ours.

        With ``hold_not_found``, a 404 is not sent on: :data:`_GONE` is returned instead, so the
        caller can restore the session and try again.
        """
        if local is not None:
            scope = dict(scope)
            scope["headers"] = with_header(scope["headers"], _SESSION_HEADER, local)
        status: int | None = None
        held = False

        async def send_ours(message: Message) -> None:
            nonlocal status, held
            if message["type"] == "http.response.start":
                status = message["status"]
                if hold_not_found and status == 404:
                    held = True
                    return
                given = header_of(message.get("headers", []), _SESSION_HEADER)
                if given is not None:
                    if local is None:
                        self._local[session_id] = given
                    message = dict(message)
                    message["headers"] = with_header(
                        message["headers"], _SESSION_HEADER, session_id
                    )
            elif held:
                return
            await send(message)

        # The store in the scope is how a tool reaches its session's state (see .state).
        with session_scope(session_id, store=self.sessions.store):
            await self._sdk(scope, receive, send_ours)
        return _GONE if held else status

    def _may_use(self, kept: dict[str, Any], scope: Scope) -> bool:
        """Whether the request's principal is the one that opened the session: the layer's
        (``principal``) and, under the SDK's own auth, the SDK's (client id, issuer, subject)."""
        principal, owner = request_identity(self.sessions.principal, scope)
        return kept.get("principal") == principal and kept.get("owner") == owner

    async def _restore(
        self, session_id: str, kept: dict[str, Any], scope: Scope
    ) -> str | Captured | None:
        """Open the session in the local SDK from its kept initialize request; its local id,
        or the SDK's refusal to pass on (503: its ``max_sessions``), or ``None`` on failure.

        Whoever calls, a session is only ever restored for the principal that opened it: the
        SDK then holds it for that principal's credential."""
        if not self._may_use(kept, scope):
            logger.error("session %s: restore for another principal refused", shown_id(session_id))
            return None
        lock = self._restoring.setdefault(session_id, asyncio.Lock())
        async with lock:
            if session_id in self._local:
                return self._local[session_id]
            try:
                with anyio.fail_after(self.sessions.restore_timeout):
                    local = await self._replay_initialize(session_id, kept, scope)
            except (TimeoutError, RestoreFailed) as exc:
                # The lock stays: a request still waiting on it must not race a newcomer's.
                logger.warning("session %s not restored: %s", shown_id(session_id), shown(exc, 300))
                refusal = exc.answer if isinstance(exc, RestoreFailed) else None
                return refusal if refusal is not None and refusal.status == 503 else None
            self._local[session_id] = local
            self._restoring.pop(session_id, None)  # waiters find the session in _local
            logger.info(
                "session %s restored here (local id %s)", shown_id(session_id), shown_id(local)
            )
            return local

    async def _replay_initialize(self, session_id: str, kept: dict[str, Any], scope: Scope) -> str:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _REPLAYED_HEADERS]
        headers += [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ]
        request = dict(scope, method="POST", headers=headers, query_string=b"")
        store = self.sessions.store
        with session_scope(session_id, recording=False, store=store) as restoring:
            answer = await self._call(request, initialize_body(kept))
            local = answer.header(_SESSION_HEADER)
            result = (answer.answer or {}).get("result")
            if answer.status != 200 or local is None or not isinstance(result, dict):
                raise RestoreFailed(
                    f"initialize replay answered {answer.status}: {answer.answer}", answer
                )
            version = str(result.get("protocolVersion", ""))
            notify = dict(
                request,
                headers=[
                    *headers,
                    (_SESSION_HEADER, local.encode()),
                    (_VERSION_HEADER, version.encode()),
                ],
            )
            done = await self._call(
                notify, b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
            )
            if done.status is None or done.status >= 400:
                raise RestoreFailed(f"initialized notification answered {done.status}")
        # The SDK's session task shares this scope: what it produces from now on is stored.
        restoring.recording = True
        return local

    async def _call(self, scope: Scope, body: bytes) -> Captured:
        """Send a request of our own to the SDK app; return its answer once it is complete."""
        captured = Captured()
        scope = dict(scope)
        scope["headers"] = with_header(scope["headers"], b"content-length", str(len(body)))
        sent = False
        disconnect = anyio.Event()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    captured.finish()

        async def run() -> None:
            try:
                await self._sdk(scope, receive, send)
            finally:
                captured.finish()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run)
            await captured.complete.wait()
            disconnect.set()
        return captured

    async def _forget(self, session_id: str, scope: Scope) -> None:
        """The store no longer has the session: end its local SDK session, if any."""
        local = self._local.pop(session_id, None)
        self._touched.pop(session_id, None)
        self._drop_idle_locks(session_id)
        self.sessions.replies.forget(session_id)
        if local is None:
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != _SESSION_HEADER]
        request = dict(
            scope, method="DELETE", headers=[*headers, (_SESSION_HEADER, local.encode())]
        )
        try:
            with anyio.fail_after(self.sessions.restore_timeout), session_scope(session_id):
                await self._call(request, b"")
        except TimeoutError:
            logger.warning(
                "local session %s of %s did not end", shown_id(local), shown_id(session_id)
            )

    async def post_reply(self, session_id: str, scope: Scope, body: bytes) -> int | None:
        """POST a client's answer that another instance relayed (see :mod:`.replies`) to the
        local SDK session, with the headers of ``scope`` (the session's latest request here);
        the SDK's status, or ``None`` when this instance no longer holds the session."""
        local = self._local.get(session_id)
        if local is None:
            return None
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"last-event-id"]
        headers = with_header(headers, _SESSION_HEADER, local)
        headers = with_header(headers, b"content-type", "application/json")
        headers = with_header(headers, b"accept", "application/json, text/event-stream")
        request = dict(scope, method="POST", headers=headers, query_string=b"")
        try:
            with anyio.fail_after(self.sessions.restore_timeout), session_scope(session_id):
                return (await self._call(request, body)).status
        except TimeoutError:
            return None

    async def _touch(self, session: Session) -> None:
        """Push the session's deadline forward, at most once per ``touch_interval`` here."""
        interval = self.sessions.touch_interval
        if interval is None:
            return
        now = time.monotonic()
        if now - self._touched.get(session.id, -interval) < interval:
            return
        if len(self._touched) >= _MAX_TOUCHED:
            # A touch older than the interval holds nothing back: forgetting it changes nothing.
            # Still full (that many sessions touched within one interval): start over, at the
            # cost of a few early touches, rather than grow.
            for stale in [s for s, at in self._touched.items() if now - at >= interval]:
                del self._touched[stale]
            if len(self._touched) >= _MAX_TOUCHED:
                self._touched.clear()
        self._touched[session.id] = now
        session.last_activity = datetime.now(UTC)
        try:
            await self.sessions.store.update_session(session)
        except (ConflictError, SessionNotFoundError):
            pass  # another instance wrote it: its deadline moved anyway
        except SessionStoreError as exc:
            logger.warning("session %s not touched: %s", shown_id(session.id), shown(exc, 300))


_GONE = -404
_CLEANUP_TIMEOUT = 10.0  # how long a cancelled request may still spend giving its places back
_MAX_TOUCHED = 100_000  # the most sessions whose last touch an instance remembers


class _Endpoint:
    """The layer's per-request handling in place of the endpoint of the SDK's route for
    ``path``: requests reach it after every middleware of the app (authentication included)."""

    def __init__(self, layer: _RoamingApp, endpoint: ASGIApp) -> None:
        self.layer = layer
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.layer._http(scope, receive, send)
        else:
            await self.endpoint(scope, receive, send)


def _install_in_route(app: ASGIApp, path: str, layer: _RoamingApp) -> ASGIApp | None:
    """Put the layer's handling in place of the endpoint of ``app``'s route for ``path``; return
    the endpoint it now calls (``None`` when no such route is found: the layer then stays in
    front of ``app``). The SDK's ``RequireAuthMiddleware`` stays in front of the layer, so a
    request without valid credentials gets the SDK's 401 as it would without the layer."""
    route = find_route(app, path)
    if route is None:
        if has_authentication(app):
            raise ValueError(
                f"McpSessions.wrap: the app authenticates requests (AuthenticationMiddleware) "
                f"but has no route for {path!r} where the layer could see who makes them; wrap "
                "the SDK's app itself, or give McpSessions the path= of its MCP route"
            )
        return None
    holder: Any = route
    if isinstance(route.app, RequireAuthMiddleware):
        holder = route.app
    endpoint = holder.app
    if isinstance(endpoint, _Endpoint):
        raise RuntimeError("McpSessions.wrap: this app is already wrapped by another McpSessions")
    holder.app = _Endpoint(layer, endpoint)
    return endpoint  # type: ignore[no-any-return]


# The id of the SDK's errors that answer no request: SDK 1.x says "server-error".
_NO_ID = None if SDK_MAJOR >= 2 else "server-error"


async def _json_error(send: Send, status: int, message: str, *, code: int = -32600) -> None:
    """A JSON-RPC error answering no request, as the SDK in use answers an unknown session
    (-32600, invalid request) or refuses one at its ``max_sessions`` (-32603, internal error)."""
    error = {"jsonrpc": "2.0", "id": _NO_ID, "error": {"code": code, "message": message}}
    body = json.dumps(error, separators=(",", ":")).encode()  # byte for byte the SDK's
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _quietly(operation: Awaitable[object]) -> None:
    try:
        await operation
    except SessionStoreError as exc:
        logger.warning("session store: %s", shown(exc, 300))
