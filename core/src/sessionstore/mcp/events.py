"""The MCP SDK's ``EventStore`` over a sessionstore store, scoped by MCP session.

The SDK reuses stream ids across sessions (a POST's stream id is its JSON-RPC request id, the
standalone GET stream is ``"_GET_stream"``), so an event store shared by every session must know
which session an event belongs to. The SDK's interface does not pass it; it comes from the
:func:`session_scope` the roaming layer (:class:`~sessionstore.mcp.McpSessions`) enters around each
request, which the SDK's per-session tasks inherit.

Each stored event is ``<producer instance id> "\\n" <kind byte> <the message's JSON>`` (nothing
after the newline for a priming event; the kind byte names the message's class), and each event
id the SDK hands to a client is ``<producer instance id>.<the store's event id>``. So an instance
that resumes a stream knows which instance produces it, from the client's ``Last-Event-ID`` alone
when nothing came after it, and can tell a live producer from a dead one.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio

from ..errors import EventNotFoundError, InvalidSessionError, SessionStoreError
from ..records import Event
from ..store import SessionStore
from ..watching import EventWatch, PollingWatch
from ._fastmcp import looks_scoped
from ._ids import INSTANCE_ID, INTEGER
from ._log import shown, shown_id
from ._sdk import (
    ANSWER_KINDS,
    EventMessage,
    EventStore,
    dump_message,
    error_message,
    is_answer,
    load_message,
)

__all__ = [
    "GET_STREAM_ID",
    "INTERRUPTED_ERROR_CODE",
    "SessionEventStore",
    "SessionScope",
    "current_session_scope",
    "session_scope",
]

logger = logging.getLogger("sessionstore.mcp")

GET_STREAM_ID = "_GET_stream"
"""The stream id the SDK gives a session's standalone GET stream."""

INTERRUPTED_ERROR_CODE = -32603
"""The JSON-RPC error code sent when the instance running a request died (an internal error)."""

_SEPARATOR = b"\n"


def check_instance_id(instance_id: str, *, longest: int = 80) -> str:
    """Return ``instance_id`` if it can name an instance (1 to ``longest`` of
    ``A-Z a-z 0-9 _ -``), else raise ``ValueError``."""
    if (
        not isinstance(instance_id, str)
        or not INSTANCE_ID.fullmatch(instance_id)
        or len(instance_id) > longest
    ):
        raise ValueError(f"instance_id must be 1-{longest} of A-Z a-z 0-9 _ -, not {instance_id!r}")
    return instance_id


def _client_event_id(producer: str, store_event_id: str) -> str:
    return f"{producer}.{store_event_id}"


def _parse_client_event_id(event_id: str) -> tuple[str, str] | None:
    """``(producer, store event id)`` of an id :class:`SessionEventStore` handed out, else None."""
    producer, dot, store_event_id = event_id.partition(".")
    if not dot or not store_event_id or not INSTANCE_ID.fullmatch(producer):
        return None
    return producer, store_event_id


class SessionScope:
    """The MCP session the current request (and the SDK tasks it starts) belongs to.

    ``recording`` is false while the roaming layer restores a session: the replayed initialize
    request's own events never reach a client, so they are not stored. The layer turns it on
    once the session is restored; the SDK's session task, which shares this object, then
    records.

    ``store`` is the store holding the session (set by the layer), through which a tool reaches
    its session's state (:func:`sessionstore.mcp.current_session`); ``None`` when not given.
    """

    __slots__ = ("recording", "replayed", "session_id", "store")

    def __init__(
        self, session_id: str, *, recording: bool = True, store: SessionStore | None = None
    ) -> None:
        self.session_id = session_id
        self.recording = recording
        self.store = store
        self.replayed: str | None = None  # the stream a resuming request replayed

    def __repr__(self) -> str:
        return f"<SessionScope {shown_id(self.session_id)} recording={self.recording}>"


_current: contextvars.ContextVar[SessionScope | None] = contextvars.ContextVar(
    "sessionstore_mcp_session", default=None
)


@contextmanager
def session_scope(
    session_id: str, *, recording: bool = True, store: SessionStore | None = None
) -> Iterator[SessionScope]:
    """Make ``session_id`` the MCP session of the code inside, and of the tasks it starts.

    The roaming layer does this for every request; call it yourself only when driving a
    :class:`SessionEventStore` without the layer (a benchmark, a custom transport). Give
    ``store`` (the store holding the session) to let the code inside use
    :func:`~sessionstore.mcp.current_session`.
    """
    scope = SessionScope(session_id, recording=recording, store=store)
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def current_session_scope() -> SessionScope | None:
    """The :class:`SessionScope` in effect, or ``None`` outside any."""
    return _current.get()


Liveness = Callable[[str], Awaitable[bool]]


class SessionEventStore(EventStore):
    """The SDK's ``EventStore`` on a sessionstore store: events live and expire with their session.

    - ``store_event`` appends to the session's event log (priming events included); ``None`` is
      never stored as such, so the producer of every event is known.
    - ``replay_events_after`` replays the events after an id of the *current* session, skipping
      priming events; an id that is unknown, evicted by retention or another session's replays
      nothing.
    - With ``follow`` (what the roaming layer sets), a replayed request stream that has no answer
      yet is followed in the store until its answer arrives, whichever instance produces it. If
      that instance stops sending heartbeats, the request is answered with a JSON-RPC error
      (code :data:`INTERRUPTED_ERROR_CODE`): the work may or may not have completed.

    Create it unbound (``SessionEventStore()``) to hand it to the SDK before the store is
    open; :class:`~sessionstore.mcp.McpSessions` binds it at startup.

    ``outgoing`` (set by :class:`~sessionstore.mcp.McpSessions` to its reply relay's) sees each
    message before it is stored and may change it in place (see :meth:`store_event`): what
    the client receives is the changed message.
    """

    def __init__(
        self,
        store: SessionStore | None = None,
        *,
        instance_id: str | None = None,
        poll_interval: float = 0.05,
        reread_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval
        # With notifications (Capability.EVENT_NOTIFICATIONS), a followed stream is read when
        # the store says it changed, and at least this often: pub/sub is at most once.
        self._reread_interval = reread_interval
        self._liveness: Liveness | None = None
        self._liveness_interval = 0.5
        # The request streams this instance produces that have no answer yet: a stopping
        # instance waits for them (see wait_for_answers).
        self._unanswered: set[tuple[str, str]] = set()
        self._all_answered: anyio.Event | None = None
        self._warned_scoped = False
        # Sees each message the SDK sends before it is stored and sent (McpSessions sets the
        # reply relay's, which gives server-to-client requests ids naming this instance).
        self.outgoing: Callable[[str, Any], Awaitable[None]] | None = None
        self.instance_id = check_instance_id(
            secrets.token_hex(8) if instance_id is None else instance_id
        )

    def __repr__(self) -> str:
        return f"<SessionEventStore instance={self.instance_id} store={self._store!r}>"

    def bind(
        self,
        store: SessionStore,
        *,
        instance_id: str | None = None,
        liveness: Liveness | None = None,
        liveness_interval: float = 0.5,
    ) -> None:
        """Attach the store (and, to follow other instances' streams, a liveness check)."""
        self._store = store
        if instance_id is not None:
            self.instance_id = check_instance_id(instance_id)
        self._liveness = liveness
        self._liveness_interval = liveness_interval

    @property
    def store(self) -> SessionStore:
        """The bound store; ``RuntimeError`` before :meth:`bind`."""
        if self._store is None:
            raise RuntimeError(
                "SessionEventStore is not bound to a store yet: wrap the MCP app with "
                "McpSessions.wrap() (it binds at startup), or pass a store"
            )
        return self._store

    # -- the SDK's interface -----------------------------------------------------------------

    async def store_event(self, stream_id: str, message: Any) -> str:
        """Store one event of the current session's stream ``stream_id``; return its id.

        ``message`` is first handed to :attr:`outgoing` (when set), which may change it in
        place: under :class:`~sessionstore.mcp.McpSessions` a request to the client gets an id
        naming this instance, and a ``notifications/cancelled`` the rewritten id it cancels.
        The SDK then sends the changed message, as stored, to the client."""
        scope = _current.get()
        if scope is None:
            raise RuntimeError(
                "SessionEventStore.store_event outside an MCP session scope: the MCP app must be "
                "wrapped with McpSessions.wrap() (or the call made inside session_scope())"
            )
        if not scope.recording:
            return f"unrecorded-{secrets.token_hex(8)}"
        if not self._warned_scoped and looks_scoped(stream_id):
            self._warned_scoped = True
            logger.error(
                "MCP session %s: stream ids carry FastMCP's per-transport prefix, so its "
                "streams cannot resume on another instance: serve mcp.http_app() through "
                "McpSessions.wrap(), which keeps FastMCP from wrapping this event store",
                shown_id(scope.session_id),
            )
        if self.outgoing is not None and message is not None:
            await self.outgoing(scope.session_id, message)
        request = (scope.session_id, stream_id)
        answers = False
        if stream_id != GET_STREAM_ID and not (message is None and stream_id == scope.replayed):
            # (The SDK primes a stream again once it is replayed: that is no new request.)
            answers = is_answer(message)
            if not answers:
                self._unanswered.add(request)
        try:
            stored = await self.store.append_event(
                scope.session_id, stream_id, self._envelope(message)
            )
        except SessionStoreError as exc:
            # Raising would stop the SDK's message router and with it the session: the event
            # still goes out live, it just cannot be replayed.
            logger.warning(
                "event of session %s stream %s not stored: %s",
                shown_id(scope.session_id),
                shown(stream_id),
                shown(exc, 300),
            )
            return f"unstored-{secrets.token_hex(8)}"
        finally:
            if answers:  # only now: a stopping instance waits until its answers are stored
                self.forget_requests({request})
        return _client_event_id(self.instance_id, stored)

    async def replay_events_after(
        self, last_event_id: str, send_callback: Callable[[Any], Awaitable[None]]
    ) -> str | None:
        """Send the current session's events after ``last_event_id``; return their stream id.

        Returns ``None`` (nothing sent) for an unknown, evicted or foreign id.
        """
        scope = _current.get()
        if scope is None:
            logger.warning(
                "replay of %s outside an MCP session scope: nothing replayed",
                shown(last_event_id),
            )
            return None
        session_id = scope.session_id
        parsed = _parse_client_event_id(last_event_id)
        if parsed is None:
            logger.info(
                "replay of %s for session %s: not an id of ours",
                shown(last_event_id),
                shown_id(session_id),
            )
            return None
        producer, cursor = parsed
        try:
            stream_id, events = await self.store.replay_events_after(cursor, session_id=session_id)
        except (EventNotFoundError, InvalidSessionError) as exc:  # unknown, or no id at all
            logger.info(
                "replay of %s for session %s: %s",
                shown(last_event_id),
                shown_id(session_id),
                shown(exc, 300),
            )
            return None
        scope.replayed = stream_id
        replay = _Replay(stream_id, cursor, producer)
        await replay.deliver(events, send_callback)
        if replay.answered or self._liveness is None:
            return stream_id
        await self._follow(session_id, replay, send_callback)
        return stream_id

    @property
    def unanswered(self) -> int:
        """How many requests this instance is producing a stream for that have no answer yet."""
        return len(self._unanswered)

    def forget_requests(self, requests: set[tuple[str, str]] | None = None) -> None:
        """Stop waiting for these ``(session id, stream id)`` requests (all, without an argument):
        they were answered, or their session ended."""
        if requests is None:
            self._unanswered.clear()
        else:
            self._unanswered -= requests
        if not self._unanswered and self._all_answered is not None:
            self._all_answered.set()

    def requests(self) -> set[tuple[str, str]]:
        """The ``(session id, stream id)`` of the requests this instance still produces."""
        return set(self._unanswered)

    def unanswered_sessions(self) -> set[str]:
        """The sessions of the requests this instance still produces."""
        return {session_id for session_id, _ in self._unanswered}

    async def wait_for_answers(self) -> None:
        """Return once every request stream this instance produces is answered. A stopping
        instance waits on it (with a time limit), so that its clients, resuming elsewhere, get
        their results from the store."""
        while self._unanswered:
            self._all_answered = anyio.Event()
            await self._all_answered.wait()

    # -- helpers -----------------------------------------------------------------------------

    def _envelope(self, message: Any) -> bytes:
        head = self.instance_id.encode() + _SEPARATOR
        return head if message is None else head + dump_message(message)

    async def _follow(
        self, session_id: str, replay: _Replay, send_callback: Callable[[Any], Awaitable[None]]
    ) -> None:
        """Deliver the stream's new events from the store until its answer, or its producer dies.

        The standalone GET stream has no answer: it is followed while another instance produces
        it and the client is connected; when this instance produces it, the SDK serves it live.
        """
        on_get_stream = replay.stream_id == GET_STREAM_ID
        if on_get_stream and replay.producer == self.instance_id:
            return
        async with contextlib.AsyncExitStack() as stack:
            watch = await self._watch(stack, session_id)
            await self._follow_watched(session_id, replay, send_callback, watch)

    async def _watch(self, stack: contextlib.AsyncExitStack, session_id: str) -> EventWatch:
        """A watch of the session's events (subscribed before the first read of the follow);
        a polling one when the store cannot subscribe now."""
        try:
            return await stack.enter_async_context(
                self.store.watch_events(session_id, poll_interval=self._poll_interval)
            )
        except SessionStoreError as exc:
            logger.warning(
                "following session %s: no notifications (%s); polling",
                shown_id(session_id),
                shown(exc, 300),
            )
            return PollingWatch(self._poll_interval)

    async def _follow_watched(
        self,
        session_id: str,
        replay: _Replay,
        send_callback: Callable[[Any], Awaitable[None]],
        watch: EventWatch,
    ) -> None:
        """The loop of :meth:`_follow`: read when woken (a notification, or each poll of a
        polling watch) or every ``reread_interval``; check the producer's liveness every
        ``liveness_interval`` while nothing comes."""
        checked_at = read_at = time.monotonic()
        woken = True  # read once at once: a change between the replay and the watch's start
        while True:
            if woken or time.monotonic() - read_at >= self._reread_interval:
                read_at = time.monotonic()
                try:
                    _, events = await self.store.replay_events_after(
                        replay.cursor, session_id=session_id
                    )
                except EventNotFoundError:
                    return  # the session ended or the cursor fell out of retention
                except SessionStoreError as exc:
                    logger.warning(
                        "following session %s: %s", shown_id(session_id), shown(exc, 300)
                    )
                    events = []
                if events:
                    await replay.deliver(events, send_callback)
                    if replay.answered:
                        return
                    checked_at = time.monotonic()  # the producer is writing: it is alive
            if time.monotonic() - checked_at >= self._liveness_interval:
                checked_at = time.monotonic()
                producer = replay.producer
                assert self._liveness is not None
                if producer != self.instance_id and not await self._liveness(producer):
                    await self._producer_lost(session_id, replay, producer, send_callback)
                    return
            now = time.monotonic()
            timeout = min(
                read_at + self._reread_interval - now, checked_at + self._liveness_interval - now
            )
            woken = await watch.wait(max(timeout, 0.001))

    async def _producer_lost(
        self,
        session_id: str,
        replay: _Replay,
        producer: str,
        send_callback: Callable[[Any], Awaitable[None]],
    ) -> None:
        """The producer is dead: deliver what it stored since the last look (its answer, maybe),
        else answer the request with an error."""
        try:
            _, events = await self.store.replay_events_after(replay.cursor, session_id=session_id)
        except SessionStoreError:
            events = []
        if events:
            await replay.deliver(events, send_callback)
        if replay.stream_id != GET_STREAM_ID and not replay.answered:
            await self._answer_interrupted(session_id, replay, producer, send_callback)

    async def _answer_interrupted(
        self,
        session_id: str,
        replay: _Replay,
        producer: str,
        send_callback: Callable[[Any], Awaitable[None]],
    ) -> None:
        """Answer the stream's request with an error, stored first so every resumer sees it."""
        stream_id = replay.stream_id
        request_id: str | int = int(stream_id) if INTEGER.fullmatch(stream_id) else stream_id
        message = error_message(
            request_id,
            INTERRUPTED_ERROR_CODE,
            f"request interrupted: server instance {producer} stopped while handling it; "
            "it may or may not have completed",
            {"reason": "instance-lost", "instance": producer},
        )
        try:
            stored = await self.store.append_event(session_id, stream_id, self._envelope(message))
            event_id = _client_event_id(self.instance_id, stored)
        except SessionStoreError:
            event_id = f"unstored-{secrets.token_hex(8)}"
        logger.warning(
            "session %s: request %s interrupted (instance %s stopped)",
            shown_id(session_id),
            shown(stream_id),
            shown(producer),
        )
        await send_callback(EventMessage(message, event_id))


class _Replay:
    """Where a replay of one stream stands: its cursor, its producer, whether it was answered."""

    __slots__ = ("answered", "cursor", "producer", "stream_id")

    def __init__(self, stream_id: str, cursor: str, producer: str) -> None:
        self.stream_id = stream_id
        self.cursor = cursor
        self.producer = producer
        self.answered = False

    async def deliver(
        self, events: Sequence[Event], send_callback: Callable[[Any], Awaitable[None]]
    ) -> None:
        last_payload = b""
        for event in events:
            producer, _, payload = (event.data or b"").partition(_SEPARATOR)
            self.cursor = event.id
            if producer:
                self.producer = producer.decode("ascii", "replace")
            if not payload:
                continue  # a priming event marks a position; it carries no message
            client_id = _client_event_id(self.producer, event.id)
            await send_callback(EventMessage(load_message(payload), client_id))
            last_payload = payload
        if last_payload and self.stream_id != GET_STREAM_ID:
            self.answered = last_payload[0] in ANSWER_KINDS
