"""FastMCP's HTTP app (``fastmcp`` 4.x, ``mcp.http_app(event_store=...)``) behind the roaming layer.

FastMCP's session manager (``FastMCPStreamableHTTPSessionManager``, which ``http_app``'s lifespan
creates anew each time it starts) does not hand each new transport the event store it was given:
its ``event_store`` property wraps it, per transport, in a ``SessionScopedEventStore`` that

- prefixes every stream id with a random id of that transport (``"32:<uuid4 hex>:<stream id>"``),
  so stream ids of different sessions do not collide in a store shared by all of them, and
- on a replay, asks the wrapped store for the events, *buffers them all* and sends them only once
  the wrapped store has returned, and only if the stream id it returned carries *this*
  transport's prefix (else it logs "does not belong to this session-scoped event store" and
  replays nothing).

Behind the layer both defeat a fleet. A session restored on another instance has another
transport, so another prefix: a client's ``Last-Event-ID`` from the instance that opened it
replays nothing there, and the request it resumes never gets its result. And the live tail of a
stream another instance produces (:class:`~sessionstore.mcp.SessionEventStore` follows it until
its answer) reaches the client only once it is complete, or never for the standalone GET stream.
The prefixed stream ids also hide the SDK's own ones (``"_GET_stream"``, a request's id) from the
event store, which needs them to know a request's answer and to answer an interrupted request.

:class:`~sessionstore.mcp.SessionEventStore` already keeps each session's events apart, under
the layer's session id, which is the same on every instance, so the adapter adds nothing it
needs. :func:`unscope` makes the FastMCP session managers behind an app whose event store is ours
hand it to their transports as it is: their class is swapped for a subclass whose
``event_store`` is the store itself (FastMCP's other behaviour stays). Managers of other event
stores, and the SDK's own manager, are left alone.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ._asgi import holders as _holders

if TYPE_CHECKING:
    from .events import SessionEventStore

__all__ = ["ScopedAdapters", "looks_scoped"]

logger = logging.getLogger("sessionstore.mcp")

# What FastMCP's SessionScopedEventStore makes of a stream id: "<len>:<transport id>:<stream id>".
_SCOPED_STREAM_ID = re.compile(r"[0-9]{1,3}:[0-9a-f]{32}:")
_UNSCOPED_CLASSES: dict[type, type] = {}


def looks_scoped(stream_id: str) -> bool:
    """Whether ``stream_id`` carries the random per-transport prefix of FastMCP's adapter."""
    return _SCOPED_STREAM_ID.match(stream_id) is not None


def _unscoped_class(cls: type) -> type:
    """``cls`` (FastMCP's session manager class) with an ``event_store`` that hands out the
    store it was given, unwrapped."""
    unscoped = _UNSCOPED_CLASSES.get(cls)
    if unscoped is None:

        def get(manager: Any) -> Any:
            return manager._shared_event_store

        def set_(manager: Any, event_store: Any) -> None:
            manager._shared_event_store = event_store

        unscoped = type(
            f"SessionStore{cls.__name__}",
            (cls,),
            {
                "__module__": __name__,
                "__doc__": f"{cls.__qualname__} handing its transports the sessionstore event "
                "store itself (see sessionstore.mcp._fastmcp).",
                "event_store": property(get, set_),
            },
        )
        _UNSCOPED_CLASSES[cls] = unscoped
        _UNSCOPED_CLASSES[unscoped] = unscoped
    return unscoped


class ScopedAdapters:
    """Keeps the FastMCP session managers behind ``app`` from wrapping ``event_store``.

    :meth:`unscope` is cheap once the app was walked (the walk happens once): the layer calls it
    at startup and before each request, since FastMCP makes a new manager each time its
    lifespan starts, which may be after the layer started (an app mounted elsewhere).
    """

    def __init__(self, app: object, event_store: SessionEventStore) -> None:
        self._app = app
        self._event_store = event_store
        self._holders: list[Any] | None = None
        self._fastmcp_app = getattr(getattr(app, "state", None), "fastmcp_server", None) is not None
        self._warned = False

    def unscope(self) -> int:
        """Unwrap the event store of every manager not yet done; return how many were done now."""
        if self._holders is None:
            self._holders = _holders(self._app)
        done = 0
        for holder in self._holders:
            manager = getattr(holder, "session_manager", None)
            cls = type(manager)
            if manager is None or _UNSCOPED_CLASSES.get(cls) is cls:
                continue
            if getattr(manager, "_shared_event_store", None) is not self._event_store:
                continue  # the SDK's own manager, or FastMCP's with another event store
            if not isinstance(getattr(cls, "event_store", None), property):
                continue  # not a manager that wraps its event store per transport
            manager.__class__ = _unscoped_class(cls)
            done += 1
            logger.debug("FastMCP session manager %s: event store unscoped", cls.__qualname__)
        return done

    def check_started(self) -> None:
        """At startup: say so, once, if this is FastMCP's app and no manager of ours was found
        (a FastMCP release that keeps it elsewhere): resumption across instances would fail."""
        if self._warned or not self._fastmcp_app or self._holders is None:
            return
        managers = [getattr(holder, "session_manager", None) for holder in self._holders]
        if not any(
            _UNSCOPED_CLASSES.get(type(manager)) is type(manager)
            or getattr(manager, "event_store", None) is self._event_store
            for manager in managers
            if manager is not None
        ):
            self._warned = True
            logger.warning(
                "FastMCP app: no session manager using McpSessions.event_store was found; pass "
                "event_store=sessions.event_store to mcp.http_app(). Without it, or if this "
                "FastMCP release keeps its manager elsewhere, streams cannot resume on another "
                "instance"
            )
