"""Answers to server-to-client requests, delivered to the instance that asked.

A tool running on instance A may send the client a request of its own (elicitation
``elicitation/create``, sampling ``sampling/createMessage``, ``roots/list``, ``ping``) on its
stream. The client POSTs its answer (a JSON-RPC response: an ``id`` and a ``result`` or an
``error``, no ``method``) to the balancer, which may route it to instance B, whose SDK does not
know that request and drops the answer: the tool on A would wait in vain. :class:`ReplyRelay`
makes such answers reach the instance that asked, through the shared store, so a fleet needs no
sticky routing:

- **Ids that name their instance.** Each instance's SDK numbers its own requests, so two
  instances holding one (restored) session can both have a request ``1`` outstanding. As the
  event store records a request the SDK sends, the relay rewrites its id on the wire (live and
  stored alike) to ``<instance id>:i<the SDK's id>`` (``:s`` before a string id), and the
  ``notifications/cancelled`` the SDK may send for it likewise: an answer names whose request it
  answers, whichever instance it reaches.
- **Asks in the store.** Before the request leaves, the relay notes its rewritten id with a
  deadline (``timeout`` seconds on) in the session's record, metadata key
  :data:`ASKS_METADATA_KEY` (at most :data:`MAX_ASKS` per session; the oldest give way).
- **An answer on the instance that asked** gets the SDK's id back and goes to the local SDK, as
  it would without the relay (also after the deadline: the SDK may still wait for it).
- **An answer on another instance** whose id is noted, not expired, and whose asker is alive is
  *claimed*: removed from the record by compare-and-set, so at most one answer per request ever
  crosses. It is appended to the session's reply stream of the asking instance
  (:func:`reply_stream_id`) and answered ``202``, as the SDK answers a response. When that
  append fails, the ask is put back and the client is answered ``503``: it may send the answer
  again, on any instance (the asker takes the first answer to a request). Any other
  answer (an id never asked, expired, already answered, or an asker that died: its request is
  gone with it, and the client learns so on the request's own stream) is answered ``202`` and
  dropped, as the SDK drops an answer to a request it does not know. A flood of them costs a
  read each (the one every request of a session costs) and no write; the store holds at most
  one relayed answer per asked request (two should an append reported failed have been
  written after all).
- **The asker follows** its reply stream in each session with a request outstanding (where the
  backend pushes event changes, ``Capability.EVENT_NOTIFICATIONS``, when the store says the
  session's events changed, subscribed before the request leaves, and at least every
  ``max_poll_interval``; else every ``poll_interval`` while answers come, backing off to
  ``max_poll_interval``, one second by default; several sessions at once, so one slow to
  deliver holds up no other) and hands each
  answer to its local SDK under the local session's id, with the headers of the session's
  latest request on this instance (so the SDK's own authentication passes). After the deadline
  it stops following that request.

Everything stays within its session: the roaming layer checks the principal before a POST
reaches the relay, an answer only ever claims an ask of the session it was posted to, and the
reply streams are the session's (they expire and go with it).

Not covered: a progress notification the client may send for a server's request carries the
progress token the SDK chose (its own request id), which is not rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._tasks import cancel_and_wait
from ..errors import EventNotFoundError, SessionNotFoundError, SessionStoreError
from ..models import Session
from ..store import SessionStore
from ._asgi import Scope, Send
from ._clock import now_ms
from ._ids import INSTANCE_ID_PATTERN, INTEGER
from ._log import shown, shown_id
from ._sdk import ANSWER_KINDS, dump_message
from ._sdk import parse_any as _parse_any
from ._sdk import sdk_types as _types
from ._sdk import wire as _wire

__all__ = [
    "ASKS_METADATA_KEY",
    "DEFAULT_REPLY_TIMEOUT",
    "MAX_ASKS",
    "Reply",
    "ReplyRelay",
    "reply_stream_id",
]

logger = logging.getLogger("sessionstore.mcp")

Post = Callable[[str, Scope, bytes], Awaitable["int | None"]]
"""``post(session_id, scope, body)``: POST ``body`` to the local SDK session of ``session_id``
with the headers of ``scope``; the SDK's HTTP status, ``None`` when the session is not here."""
Liveness = Callable[[str], Awaitable[bool]]

ASKS_METADATA_KEY = "mcp_asks"
"""The key of a session's metadata where the relay notes the requests awaiting an answer:
``{rewritten request id: deadline in epoch milliseconds}``."""

MAX_ASKS = 64
"""The most requests awaiting an answer the relay notes per session (the oldest give way)."""

DEFAULT_REPLY_TIMEOUT = 300.0
"""Seconds an answer to a server-to-client request can still cross to the instance that asked
(``McpSessions(reply_timeout=...)``): elicitation waits for a person."""

_STREAM_PREFIX = "_replies."
_SEPARATOR = b"\n"
_LONGEST_LOCAL = 160  # the longest string request id of the SDK's the relay rewrites
_LONGEST_ID = 80 + 2 + _LONGEST_LOCAL  # the longest rewritten id
_WIRE_ID = re.compile(rf"({INSTANCE_ID_PATTERN}):([is])(.{{1,160}})", re.DOTALL)  # _LONGEST_LOCAL
_CANCELLED = "notifications/cancelled"
_CONCURRENT_POLLS = 8  # sessions the follower polls (and delivers answers in) at once


def reply_stream_id(instance_id: str) -> str:
    """The stream of a session where answers for ``instance_id``'s requests are relayed."""
    return _STREAM_PREFIX + instance_id


def wire_id(instance_id: str, local_id: int | str) -> str:
    """The id a request of ``instance_id``'s SDK numbered ``local_id`` carries on the wire."""
    if isinstance(local_id, int):
        return f"{instance_id}:i{local_id}"
    return f"{instance_id}:s{local_id}"


def _local_id(marker: str, rest: str) -> int | str | None:
    if marker == "s":
        return rest
    return int(rest) if INTEGER.fullmatch(rest) else None


@dataclass(frozen=True)
class Reply:
    """A client's answer to a rewritten request id: whose request it answers, and the answer."""

    id: str
    """The rewritten id, as the client echoed it."""
    instance: str
    """The instance whose SDK sent the request."""
    local_id: int | str
    """The id that instance's SDK gave the request."""
    message: dict[str, Any]
    """The answer, parsed."""
    stored: bytes
    """The answer as the event store keeps an SDK message (see :func:`._sdk.dump_message`)."""

    def for_sdk(self) -> bytes:
        """The answer with the SDK's own id back, for the asking instance's SDK."""
        message = dict(self.message, id=self.local_id)
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def parse_reply(body: bytes) -> Reply | None:
    """The answer ``body`` is when it answers a request with a rewritten id, else ``None``
    (requests, notifications, batches, other ids, anything the SDK would refuse: the SDK's
    business, and its own answer)."""
    head = body[:64].lstrip()
    if not head.startswith(b"{") or (b'"result"' not in body and b'"error"' not in body):
        return None  # no JSON-RPC answer: spare the parse
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(message, dict)
        or "method" in message
        or ("result" in message) == ("error" in message)
    ):
        return None
    request_id = message.get("id")
    if not isinstance(request_id, str) or len(request_id) > _LONGEST_ID:
        return None
    matched = _WIRE_ID.fullmatch(request_id)
    if matched is None:
        return None
    instance, marker, rest = matched.groups()
    local = _local_id(marker, rest)
    if local is None:
        return None
    try:
        stored = dump_message(_parse_any(body))  # the SDK's own validation
    except (ValueError, RecursionError):
        return None
    return Reply(request_id, instance, local, message, stored)


@dataclass
class _Asking:
    """What this instance awaits in one session: its requests, its place on the reply stream."""

    asked: dict[str, float] = field(default_factory=dict)  # rewritten id -> monotonic deadline
    answered: set[str] = field(default_factory=set)  # answered here: to strike from the record
    cursor: str | None = None  # the last event read on this instance's reply stream
    interval: float = 0.0
    next_poll: float = 0.0  # time.monotonic() when the reply stream is read next
    stalled_until: float = 0.0  # the store failed: no strike of ``answered`` before then
    watcher: asyncio.Task[None] | None = None  # wakes the follower when the session's events change


def _due_at(state: _Asking) -> float:
    """When the follower polls a session next: its next read, or at once for answers to strike
    from the record (unless the store just failed)."""
    if state.answered:
        return min(state.next_poll, state.stalled_until)
    return state.next_poll


class _NotAsked(Exception):
    """The ask to claim is not (or no longer) in the session's record."""


class ReplyRelay:
    """Deliver the client's answers to server-to-client requests to the instance that asked.

    :class:`~sessionstore.mcp.McpSessions` makes one per instance and wires it: the event store
    calls :meth:`outgoing` for every message the SDK sends, the layer calls :meth:`saw` for every
    request of a session it serves, :meth:`route` for every answer with a rewritten id, and
    :meth:`forget` when a session ends here.
    """

    def __init__(
        self,
        instance_id: str,
        *,
        timeout: float = DEFAULT_REPLY_TIMEOUT,
        poll_interval: float = 0.05,
        max_poll_interval: float | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"reply_timeout must be positive, not {timeout!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
        if max_poll_interval is None:
            max_poll_interval = max(1.0, poll_interval)
        if not max_poll_interval >= poll_interval:
            raise ValueError(
                f"max_poll_interval ({max_poll_interval}) must be at least poll_interval "
                f"({poll_interval})"
            )
        self.instance_id = instance_id
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self._store: SessionStore | None = None
        self._post: Post | None = None
        self._liveness: Liveness | None = None
        self._sessions: dict[str, _Asking] = {}
        self._scopes: dict[str, Scope] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ReplyRelay instance={self.instance_id} awaiting={self.awaiting}>"

    @property
    def awaiting(self) -> int:
        """How many requests this instance sent that await an answer through the relay."""
        return sum(len(state.asked) for state in self._sessions.values())

    def start(self, store: SessionStore, *, post: Post, liveness: Liveness | None) -> None:
        """Attach the store and the local SDK, and start following the reply streams."""
        self._store = store
        self._post = post
        self._liveness = liveness
        if self._task is None:
            self._wake = asyncio.Event()  # of this event loop
            self._task = asyncio.create_task(self._follow(), name="sessionstore.mcp replies")

    async def stop(self) -> None:
        """Stop following; forget every request (their answers can no longer be delivered)."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        await cancel_and_wait([s.watcher for s in self._sessions.values() if s.watcher])
        self._sessions.clear()
        self._scopes.clear()
        self._store = None

    # -- the layer ---------------------------------------------------------------------------

    def saw(self, session_id: str, scope: Scope) -> None:
        """Note the latest request of a session served here (its principal checked): an answer
        relayed to this instance reaches the local SDK with its headers."""
        self._scopes[session_id] = scope

    def forget(self, session_id: str) -> None:
        """The session ended here: its requests get no answer any more."""
        self._scopes.pop(session_id, None)
        state = self._sessions.pop(session_id, None)
        if state is not None and state.watcher is not None:
            state.watcher.cancel()

    def retain(self, session_ids: set[str]) -> None:
        """Forget every session but these (the ones this instance still holds)."""
        for session_id in [s for s in self._scopes if s not in session_ids]:
            self.forget(session_id)
        for session_id in [s for s in self._sessions if s not in session_ids]:
            self.forget(session_id)

    async def route(self, session: Session, reply: Reply, send: Send) -> bytes | None:
        """Take a client's answer POSTed for ``session`` (its principal checked).

        Returns the body to hand the local SDK (this instance asked), or ``None`` when the
        answer was dealt with here and the request answered (202; 503 when the store failed).
        """
        if reply.instance == self.instance_id:
            state = self._sessions.get(session.id)
            if state is not None and state.asked.pop(reply.id, None) is not None:
                state.answered.add(reply.id)  # struck from the record by the follower
                self._wake.set()
            return reply.for_sdk()
        status = await self._relay(session, reply)
        await _respond(send, status, session.id)
        return None

    # -- the event store ---------------------------------------------------------------------

    async def outgoing(self, session_id: str, message: Any) -> None:
        """See a message the SDK sends in ``session_id`` before it is stored and sent: give a
        request an id naming this instance, and note it in the store; rewrite the request id of
        a ``notifications/cancelled`` likewise. Store failures are logged, never raised: the
        request then still goes out, and an answer reaching this instance still arrives."""
        if self._store is None or message is None:
            return
        wire = _wire(message)
        if isinstance(wire, _types.JSONRPCRequest):
            local = _rewritable(wire.id)
            if local is not None:
                wire.id = wire_id(self.instance_id, local)
                await self._ask(session_id, wire.id)
        elif isinstance(wire, _types.JSONRPCNotification) and wire.method == _CANCELLED:
            params = wire.params
            local = _rewritable(params.get("requestId")) if isinstance(params, dict) else None
            if local is not None:
                assert isinstance(params, dict)
                params["requestId"] = rewritten = wire_id(self.instance_id, local)
                state = self._sessions.get(session_id)
                if state is not None and state.asked.pop(rewritten, None) is not None:
                    state.answered.add(rewritten)
                    self._wake.set()

    async def _ask(self, session_id: str, request_id: str) -> None:
        store = self._store
        assert store is not None
        state = self._sessions.setdefault(session_id, _Asking())
        state.asked[request_id] = time.monotonic() + self.timeout
        while len(state.asked) > MAX_ASKS:
            del state.asked[min(state.asked, key=state.asked.__getitem__)]
        state.interval = self.poll_interval
        state.next_poll = 0.0
        try:
            if state.watcher is None and store.offers_event_watch:
                await self._watch(session_id, state, store)
            if state.cursor is None:
                # A place on the reply stream before the request leaves: every answer relayed
                # for it comes after.
                state.cursor = await store.append_event(
                    session_id, reply_stream_id(self.instance_id), None
                )
            deadline = now_ms() + int(self.timeout * 1000)
            await store.modify_session(session_id, _noting(request_id, deadline, state.answered))
            state.answered.clear()
        except SessionNotFoundError:
            self._sessions.pop(session_id, None)
        except SessionStoreError as exc:
            logger.warning(
                "session %s: request %s can be answered only on this instance: %s",
                shown_id(session_id),
                shown(request_id),
                shown(exc, 300),
            )
        self._wake.set()

    async def _watch(self, session_id: str, state: _Asking, store: SessionStore) -> None:
        """Subscribe to the session's events (before the request leaves, so no answer is
        missed) and wake the follower at each change; the reply stream is then read when told,
        and otherwise every ``max_poll_interval`` (notifications are at most once). Without a
        subscription (the store failed) the follower polls as before."""
        subscribed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        state.watcher = asyncio.create_task(
            self._watching(session_id, state, store, subscribed),
            name="sessionstore.mcp replies watch",
        )
        await asyncio.shield(subscribed)

    async def _watching(
        self,
        session_id: str,
        state: _Asking,
        store: SessionStore,
        subscribed: asyncio.Future[bool],
    ) -> None:
        try:
            async with store.watch_events(session_id) as watch:
                subscribed.set_result(True)
                while self._sessions.get(session_id) is state:
                    if await watch.wait(self.max_poll_interval) and state.asked:
                        state.next_poll = 0.0
                        self._wake.set()
        except SessionStoreError as exc:
            logger.info(
                "session %s: answers polled: no notifications (%s)",
                shown_id(session_id),
                shown(exc, 300),
            )
        finally:
            if not subscribed.done():
                subscribed.set_result(False)
            if state.watcher is asyncio.current_task():
                state.watcher = None

    # -- another instance asked --------------------------------------------------------------

    async def _relay(self, session: Session, reply: Reply) -> int:
        """Relay an answer to the instance that asked; the HTTP status to answer."""
        store = self._store
        if store is None:
            return 503
        asks = _asks_of(session)
        deadline = asks.get(reply.id)
        if deadline is None or deadline <= now_ms():
            logger.debug(
                "session %s: answer to %s dropped: no such request awaits an answer",
                shown_id(session.id),
                shown(reply.id),
            )
            return 202
        if self._liveness is not None and not await self._liveness(reply.instance):
            logger.debug(
                "session %s: answer to %s dropped: instance %s is gone",
                shown_id(session.id),
                shown(reply.id),
                shown(reply.instance),
            )
            return 202
        try:
            await store.modify_session(session.id, _claiming(reply.id))
        except _NotAsked:
            logger.debug(
                "session %s: answer to %s dropped: already answered",
                shown_id(session.id),
                shown(reply.id),
            )
            return 202
        except SessionNotFoundError:
            return 202  # ended meanwhile: its requests with it
        except SessionStoreError as exc:
            logger.warning(
                "session %s: answer not relayed: %s", shown_id(session.id), shown(exc, 300)
            )
            return 503
        try:
            await store.append_event(
                session.id,
                reply_stream_id(reply.instance),
                self.instance_id.encode() + _SEPARATOR + reply.stored,
            )
        except SessionNotFoundError:
            return 202
        except SessionStoreError as exc:
            logger.warning(
                "session %s: answer not relayed: %s", shown_id(session.id), shown(exc, 300)
            )
            await self._unclaim(store, session.id, reply.id, deadline)
            return 503
        return 202

    async def _unclaim(
        self, store: SessionStore, session_id: str, request_id: str, deadline: int
    ) -> None:
        """Put back an ask claimed for an answer that could not be relayed, so the client's
        retry of the 503 (on any instance) can claim it again rather than be dropped. (Should
        the failed append have reached the store after all, the asker takes the first of the
        two answers and ignores the other.)"""
        try:
            await store.modify_session(session_id, _noting(request_id, deadline, set()))
        except SessionNotFoundError:
            pass  # ended meanwhile: its requests with it
        except SessionStoreError as exc:
            logger.warning(
                "session %s: request %s can no longer be answered on another instance: %s",
                shown_id(session_id),
                shown(request_id),
                shown(exc, 300),
            )

    # -- this instance asked -----------------------------------------------------------------

    async def _follow(self) -> None:
        """Poll the reply streams of the sessions with a request outstanding, for ever.

        Each session is polled when its own back-off says (the follower sleeps until the
        earliest of them, or until woken by a new request or answer), at most
        :data:`_CONCURRENT_POLLS` at once and never one session twice at once: a slow store read
        or a slow local SDK (a delivery may wait for a restore) in one session does not hold up
        the answers of the others.
        """
        polling: dict[str, asyncio.Task[None]] = {}
        limit = asyncio.Semaphore(_CONCURRENT_POLLS)

        def polled(session_id: str, task: asyncio.Task[None]) -> None:
            if polling.get(session_id) is task:
                del polling[session_id]
            self._wake.set()  # its next poll is due at a new time

        try:
            while True:
                self._wake.clear()
                now = time.monotonic()
                earliest: float | None = None
                for session_id, state in self._sessions.items():
                    if session_id in polling:
                        continue  # woken again once that poll is over
                    due = _due_at(state)
                    if due <= now:
                        task = asyncio.create_task(self._polling(session_id, state, limit))
                        polling[session_id] = task
                        task.add_done_callback(functools.partial(polled, session_id))
                    elif earliest is None or due < earliest:
                        earliest = due
                timeout = None if earliest is None else max(0.0, earliest - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            await cancel_and_wait(polling.values())

    async def _polling(self, session_id: str, state: _Asking, limit: asyncio.Semaphore) -> None:
        async with limit:
            try:
                await self._poll(session_id, state)
            except Exception:  # the follower must outlive any one session's trouble
                logger.exception("session %s: answers not followed", shown_id(session_id))
                if self._sessions.get(session_id) is state:
                    del self._sessions[session_id]

    async def _poll(self, session_id: str, state: _Asking) -> None:
        store = self._store
        if store is None:
            return
        now = time.monotonic()
        for request_id in [r for r, deadline in state.asked.items() if deadline <= now]:
            del state.asked[request_id]  # its entry in the record expires by itself
        try:
            if state.asked and state.cursor is not None and state.next_poll <= now:
                await self._read(session_id, state, store)
            if state.answered:
                struck = set(state.answered)
                await store.modify_session(session_id, _noting(None, 0, struck))
                state.answered -= struck
        except (SessionNotFoundError, EventNotFoundError):
            # The session ended (or, unlikely, the place fell out of the stream's retention:
            # nothing can be found after it any more).
            if self._sessions.get(session_id) is state:
                del self._sessions[session_id]
            return
        except SessionStoreError as exc:
            logger.warning(
                "session %s: answers not read: %s", shown_id(session_id), shown(exc, 300)
            )
            state.stalled_until = self._backed_off(state)  # the strike too: no tight retry loop
        if state.next_poll <= now:  # not read (no place on the stream yet, or the read failed)
            self._backed_off(state)
        if not state.asked and not state.answered and self._sessions.get(session_id) is state:
            del self._sessions[session_id]

    def _backed_off(self, state: _Asking) -> float:
        """Put the session's next poll further off (told of changes, as far as it goes); when
        it is."""
        if state.watcher is not None:
            state.interval = self.max_poll_interval
        else:
            state.interval = min(state.interval * 1.5 or self.poll_interval, self.max_poll_interval)
        state.next_poll = time.monotonic() + state.interval
        return state.next_poll

    async def _read(self, session_id: str, state: _Asking, store: SessionStore) -> None:
        assert state.cursor is not None
        _, events = await store.replay_events_after(state.cursor, session_id=session_id)
        for event in events:
            state.cursor = event.id
            _, _, payload = (event.data or b"").partition(_SEPARATOR)
            if not payload or payload[0] not in ANSWER_KINDS:
                continue
            reply = parse_reply(payload[1:])
            if reply is None or state.asked.pop(reply.id, None) is None:
                continue
            await self._deliver(session_id, reply)
        if events:
            state.interval = self.poll_interval
            state.next_poll = time.monotonic() + state.interval
        else:
            self._backed_off(state)

    async def _deliver(self, session_id: str, reply: Reply) -> None:
        scope = self._scopes.get(session_id)
        status = None
        if scope is not None and self._post is not None:
            status = await self._post(session_id, scope, reply.for_sdk())
        if status == 202:
            logger.info(
                "session %s: answer to %s relayed here", shown_id(session_id), shown(reply.id)
            )
        else:
            logger.warning(
                "session %s: answer to %s not delivered (the local SDK answered %s)",
                shown_id(session_id),
                shown(reply.id),
                status,
            )


def _rewritable(value: object) -> int | str | None:
    """``value`` if it is a request id the relay can rewrite (and recognise once rewritten)."""
    if isinstance(value, str) and 0 < len(value) <= _LONGEST_LOCAL:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and INTEGER.fullmatch(str(value)):
        return value
    return None


def _asks_of(session: Session) -> dict[str, int]:
    """The session's noted requests (malformed entries skipped)."""
    asks = session.metadata.get(ASKS_METADATA_KEY)
    if not isinstance(asks, dict):
        return {}
    return {k: v for k, v in asks.items() if isinstance(k, str) and type(v) is int}


def _noting(request_id: str | None, deadline: int, struck: set[str]) -> Callable[[Session], None]:
    """A modify function: note ``request_id`` until ``deadline``, strike ``struck`` and the
    expired, keep the newest :data:`MAX_ASKS`."""

    def note(session: Session) -> None:
        now = now_ms()
        asks = {k: v for k, v in _asks_of(session).items() if v > now and k not in struck}
        if request_id is not None:
            asks[request_id] = deadline
        while len(asks) > MAX_ASKS:
            del asks[min(asks, key=asks.__getitem__)]
        if asks:
            session.metadata[ASKS_METADATA_KEY] = asks
        else:
            session.metadata.pop(ASKS_METADATA_KEY, None)

    return note


def _claiming(request_id: str) -> Callable[[Session], None]:
    """A modify function: strike ``request_id`` from the record, or raise :class:`_NotAsked`."""

    def claim(session: Session) -> None:
        asks = _asks_of(session)
        deadline = asks.pop(request_id, None)
        if deadline is None or deadline <= now_ms():
            raise _NotAsked(request_id)
        if asks:
            session.metadata[ASKS_METADATA_KEY] = asks
        else:
            session.metadata.pop(ASKS_METADATA_KEY, None)

    return claim


async def _respond(send: Send, status: int, session_id: str) -> None:
    """Answer as the SDK answers a POSTed response (202, no body), or 503 as the layer answers
    whenever the store fails (the one error body of the layer, per SDK version)."""
    if status == 202:
        headers = [
            (b"content-length", b"0"),
            (b"content-type", b"application/json"),
            (b"mcp-session-id", session_id.encode("latin-1")),
        ]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    # Imported here: roaming imports this module at its top.
    from .roaming import _json_error

    await _json_error(send, status, "Session store unavailable")
