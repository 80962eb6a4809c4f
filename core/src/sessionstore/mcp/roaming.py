"""Roaming: any instance of an MCP server serves any session, through the SDK's public ASGI app.

:class:`McpSessions` puts an ASGI layer in front of the SDK's Streamable HTTP app. The layer

- gives each new session an id of its own (the SDK's id stays on the instance that made it) and
  keeps, in the store, the session's initialize request and a digest of its principal;
- on a request for a session this instance does not know but the store does (and for the same
  principal), replays the kept initialize request (and the ``initialized`` notification) to the
  local SDK app, then serves the request as if the session had started here;
- answers 404, as the SDK does for an unknown id, when the store does not have the session
  (never created, expired, deleted elsewhere) or the principal differs;
- deletes the session from the store when the client ends it (``DELETE``);
- runs the instance's heartbeat and binds the :class:`SessionEventStore`, whose replays follow a
  stream another instance produces (see :mod:`sessionstore.mcp.events`).

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
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import anyio

from .._tasks import cancel_and_wait
from ..errors import (
    ConflictError,
    InvalidSessionError,
    SessionNotFoundError,
    SessionStoreError,
)
from ..models import Session, TransportType, new_session_id
from ..store import SessionStore, open_store
from .events import SessionEventStore, check_instance_id, session_scope
from .instances import Heartbeat

__all__ = ["MCP_METADATA_KEY", "McpSessions", "default_principal"]

logger = logging.getLogger("sessionstore.mcp")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Principal = Callable[[Scope], "str | None"]

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
_MAX_BODY = 4 * 1024 * 1024  # the SDK's own default limit


def default_principal(scope: Scope) -> str | None:
    """Who makes the request: the authenticated user Starlette's ``AuthenticationMiddleware``
    put in ``scope["user"]`` (the SDK's bearer auth included), or ``None`` when anonymous."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    token = getattr(user, "access_token", None)  # the SDK's AuthenticatedUser
    if token is not None:
        parts = (getattr(token, name, None) for name in ("client_id", "issuer", "subject"))
        return "\x1f".join("" if part is None else str(part) for part in parts)
    name = getattr(user, "display_name", None) or getattr(user, "username", None)
    return None if name is None else str(name)


class McpSessions:
    """Sessions of an MCP server fleet kept in a sessionstore store.

    ``store`` is a spec for :func:`~sessionstore.open_store` (opened at startup with
    ``store_options``, closed at shutdown) or an open :class:`~sessionstore.SessionStore` (left
    open). Hand :attr:`event_store` to the SDK and serve :meth:`wrap` of the SDK's app::

        sessions = McpSessions("redis://cache:6379/0", ttl=1800)
        mcp = FastMCP("demo", event_store=sessions.event_store)      # SDK 1.x
        app = sessions.wrap(mcp.streamable_http_app())

    ``heartbeat_ttl`` bounds how long a client waits to learn that the instance running its
    request died; ``principal`` names who makes a request (see :func:`default_principal`).
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
        **store_options: Any,
    ) -> None:
        if not 0 < heartbeat_interval < heartbeat_ttl:
            raise ValueError(
                f"heartbeat_interval ({heartbeat_interval}) must be positive and under "
                f"heartbeat_ttl ({heartbeat_ttl})"
            )
        if isinstance(store, SessionStore) and store_options:
            raise TypeError(
                f"store options {sorted(store_options)} apply only when store is a spec"
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
        self.sweep_interval = sweep_interval
        self.drain_timeout = drain_timeout
        self._heartbeat: Heartbeat | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._app: _RoamingApp | None = None

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
            raise RuntimeError("McpSessions: the store opens at the app's startup (lifespan)")
        return self._store

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The ASGI app to serve: ``app`` (the SDK's Streamable HTTP app) behind the layer."""
        if self._app is not None:
            raise RuntimeError("McpSessions.wrap: one McpSessions serves one app")
        self._app = _RoamingApp(app, self)
        return self._app

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
        heartbeat = Heartbeat(
            self._store,
            self.instance_id,
            interval=self.heartbeat_interval,
            ttl=self.heartbeat_ttl,
        )
        try:
            await heartbeat.start()
        except BaseException:
            if isinstance(self._spec, str):  # opened here: closed here
                store, self._store = self._store, None
                await store.aclose()
            raise
        self._heartbeat = heartbeat
        self._sweeper = asyncio.create_task(self._sweep(), name="sessionstore.mcp sweeper")
        self.event_store.bind(
            self._store,
            instance_id=self.instance_id,
            liveness=self._heartbeat.alive,
            liveness_interval=min(self.heartbeat_interval, 0.5),
        )
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
        if self._sweeper is not None:
            await cancel_and_wait([self._sweeper])
            self._sweeper = None
        if self._heartbeat is not None:
            await self._heartbeat.stop()
            self._heartbeat = None
        if isinstance(self._spec, str) and self._store is not None:
            await self._store.aclose()
            self._store = None

    async def _sweep(self) -> None:
        """Now and then, forget the local ids of sessions that expired or ended elsewhere (the
        SDK's own ``session_idle_timeout`` ends the local sessions themselves)."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            if self._app is not None:
                try:
                    await self._app.forget_gone_sessions()
                except SessionStoreError as exc:
                    logger.warning("sweep of local sessions failed: %s", exc)


class _Captured:
    """What the SDK answered to a request the layer made itself (restoring a session)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.answer: dict[str, Any] | None = None
        self._buffer = b""
        self.complete = anyio.Event()

    def header(self, name: bytes) -> str | None:
        return _header_of(self.headers, name)

    def feed(self, chunk: bytes) -> None:
        """Take body bytes (a JSON body or an SSE stream); note the first JSON-RPC answer."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        if "event-stream" not in (self.header(b"content-type") or ""):
            return
        while b"\n\n" in self._buffer:
            event, _, self._buffer = self._buffer.partition(b"\n\n")
            data = b"\n".join(
                line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")
            )
            self._note(data)

    def finish(self) -> None:
        if "json" in (self.header(b"content-type") or ""):
            self._note(self._buffer)
        self.complete.set()

    def _note(self, data: bytes) -> None:
        if self.answer is not None or not data:
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and ("result" in message or "error" in message):
            self.answer = message
            self.complete.set()


class _RoamingApp:
    """The ASGI layer :meth:`McpSessions.wrap` returns."""

    def __init__(self, app: ASGIApp, sessions: McpSessions) -> None:
        self.app = app
        self.sessions = sessions
        self._local: dict[str, str] = {}  # our session id -> the local SDK's session id
        self._restoring: dict[str, asyncio.Lock] = {}
        self._touched: dict[str, float] = {}

    async def forget_gone_sessions(self) -> int:
        """Drop the local ids of sessions the store no longer has; return how many."""
        known = list(self._local)
        live = {s.id for s in await self.sessions.store.get_sessions_batch(known)}
        gone = [session_id for session_id in known if session_id not in live]
        for session_id in gone:
            self._local.pop(session_id, None)
            self._touched.pop(session_id, None)
        return len(gone)

    @property
    def local_sessions(self) -> dict[str, str]:
        """Our session id -> the local SDK's id, for each session this instance holds."""
        return dict(self._local)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] == "http" and _under(scope["path"], self.sessions.path):
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- lifespan ----------------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start after the SDK started (its manager must run first) and stop after it stopped
        (its sessions store events while they wind down)."""

        started_here: list[bool] = []

        async def receive_before() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and started_here:
                # The server closed its streams (sse-starlette ends them at shutdown); the
                # requests behind them still run: let them finish before the SDK cancels them.
                await self.sessions.drain()
            return message

        async def send_after(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete" and not self.sessions.running:
                started_here.append(True)
                try:
                    await self.sessions.start()
                except Exception as exc:
                    logger.exception("MCP sessions did not start")
                    message = {"type": "lifespan.startup.failed", "message": _safe(exc)}
            elif (
                kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and started_here
            ):
                await self.sessions.stop()
            await send(message)

        await self.app(scope, receive_before, send_after)

    # -- requests ----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = _header(scope, _SESSION_HEADER)
        if session_id is not None:
            await self._serve(session_id, scope, receive, send)
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, receive = await _buffered(receive)
        if body is None:
            await _json_error(send, 413, "Request body too large")
            return
        if _is_initialize(body):
            await self._open(scope, body, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _open(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """A new session: store it with its initialize request, then let the SDK open it."""
        store = self.sessions.store
        session_id = new_session_id()
        kept = {
            "initialize": json.loads(body),
            "principal": _digest(self.sessions.principal(scope)),
            "opened_by": self.sessions.instance_id,
        }
        session = Session(
            id=session_id, transport=TransportType.HTTP, metadata={MCP_METADATA_KEY: kept}
        )
        try:
            await store.create_session(session)
        except SessionStoreError as exc:
            logger.warning("new MCP session refused: %s", exc)
            await _json_error(send, 503, "Session store unavailable")
            return
        status = await self._forward(session_id, None, scope, receive, send)
        if status is None or status >= 400 or session_id not in self._local:
            self._local.pop(session_id, None)
            await _quietly(store.delete_session(session_id))

    async def _serve(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        store = self.sessions.store
        try:
            session = await store.get_session(session_id)
        except (SessionNotFoundError, InvalidSessionError):
            await self._forget(session_id, scope)
            await _json_error(send, 404, "Session not found")
            return
        except SessionStoreError as exc:
            logger.warning("session %s: %s", session_id, exc)
            await _json_error(send, 503, "Session store unavailable")
            return
        kept = session.metadata.get(MCP_METADATA_KEY)
        if not isinstance(kept, dict) or kept.get("principal") != _digest(
            self.sessions.principal(scope)
        ):
            # Exactly the answer an unknown id gets: a stranger learns nothing.
            logger.warning("session %s: request from another principal refused", session_id)
            await _json_error(send, 404, "Session not found")
            return
        body: bytes | None = None
        if scope["method"] == "POST":
            body, receive = await _buffered(receive)
            if body is None:
                await _json_error(send, 413, "Request body too large")
                return
        ending = scope["method"] == "DELETE"
        if not ending:
            await self._touch(session)
        for attempt in range(2):
            if attempt and body is not None:
                receive = _replaying(body, receive)
            local = self._local.get(session_id)
            if local is None:
                local = await self._restore(session_id, kept, scope)
                if local is None:
                    await _json_error(send, 503, "Session could not be restored")
                    return
            if ending and attempt == 0:
                # Gone from the store before the client hears so: its next request, wherever
                # it lands, finds no session.
                self._touched.pop(session_id, None)
                await _quietly(store.delete_session(session_id))
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
            scope["headers"] = _with_header(scope["headers"], _SESSION_HEADER, local)
        status: int | None = None
        held = False

        async def send_ours(message: Message) -> None:
            nonlocal status, held
            if message["type"] == "http.response.start":
                status = message["status"]
                if hold_not_found and status == 404:
                    held = True
                    return
                given = _header_of(message.get("headers", []), _SESSION_HEADER)
                if given is not None:
                    if local is None:
                        self._local[session_id] = given
                    message = dict(message)
                    message["headers"] = _with_header(
                        message["headers"], _SESSION_HEADER, session_id
                    )
            elif held:
                return
            await send(message)

        with session_scope(session_id):
            await self.app(scope, receive, send_ours)
        return _GONE if held else status

    async def _restore(self, session_id: str, kept: dict[str, Any], scope: Scope) -> str | None:
        """Open the session in the local SDK from its kept initialize request; its local id."""
        lock = self._restoring.setdefault(session_id, asyncio.Lock())
        async with lock:
            if session_id in self._local:
                return self._local[session_id]
            try:
                with anyio.fail_after(self.sessions.restore_timeout):
                    local = await self._replay_initialize(session_id, kept, scope)
            except (TimeoutError, _RestoreFailed) as exc:
                # The lock stays: a request still waiting on it must not race a newcomer's.
                logger.warning("session %s not restored: %s", session_id, exc)
                return None
            self._local[session_id] = local
            self._restoring.pop(session_id, None)  # waiters find the session in _local
            logger.info("session %s restored here (local id %s)", session_id, local)
            return local

    async def _replay_initialize(self, session_id: str, kept: dict[str, Any], scope: Scope) -> str:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _REPLAYED_HEADERS]
        headers += [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ]
        request = dict(scope, method="POST", headers=headers, query_string=b"")
        with session_scope(session_id, recording=False) as restoring:
            answer = await self._call(request, json.dumps(kept.get("initialize")).encode())
            local = answer.header(_SESSION_HEADER)
            result = (answer.answer or {}).get("result")
            if answer.status != 200 or local is None or not isinstance(result, dict):
                raise _RestoreFailed(f"initialize replay answered {answer.status}: {answer.answer}")
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
                raise _RestoreFailed(f"initialized notification answered {done.status}")
        # The SDK's session task shares this scope: what it produces from now on is stored.
        restoring.recording = True
        return local

    async def _call(self, scope: Scope, body: bytes) -> _Captured:
        """Send a request of our own to the SDK app; return its answer once it is complete."""
        captured = _Captured()
        scope = dict(scope)
        scope["headers"] = _with_header(scope["headers"], b"content-length", str(len(body)))
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
                await self.app(scope, receive, send)
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
            logger.warning("local session %s of %s did not end", local, session_id)

    async def _touch(self, session: Session) -> None:
        """Push the session's deadline forward, at most once per ``touch_interval`` here."""
        interval = self.sessions.touch_interval
        if interval is None:
            return
        now = time.monotonic()
        if now - self._touched.get(session.id, -interval) < interval:
            return
        self._touched[session.id] = now
        session.last_activity = datetime.now(UTC)
        try:
            await self.sessions.store.update_session(session)
        except (ConflictError, SessionNotFoundError):
            pass  # another instance wrote it: its deadline moved anyway
        except SessionStoreError as exc:
            logger.warning("session %s not touched: %s", session.id, exc)


_GONE = -404


class _RestoreFailed(Exception):
    pass


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _header(scope: Scope, name: bytes) -> str | None:
    return _header_of(scope["headers"], name)


def _header_of(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _with_header(headers: Any, name: bytes, value: str) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != name]
    kept.append((name, value.encode("latin-1")))
    return kept


def _digest(principal: str | None) -> str:
    """What is kept of a principal: a digest, so the store holds no user names."""
    if principal is None:
        return "anonymous"
    return hashlib.sha256(principal.encode()).hexdigest()


def _is_initialize(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "initialize" and "id" in message


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole request body; return it (``None`` when over the limit) and a ``receive``
    that hands it out again, then waits on the client as the original does."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None, receive
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replaying(body, receive)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then waits on the client as ``receive`` does."""
    replayed = False

    async def receive_again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


async def _json_error(send: Send, status: int, message: str) -> None:
    """A JSON-RPC error with no id, as the SDK answers an unknown session."""
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
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
        logger.warning("session store: %s", exc)


def _safe(exc: BaseException) -> str:
    """An exception's message for a startup failure (sessionstore's messages are redacted)."""
    return f"{type(exc).__name__}: {exc}"
