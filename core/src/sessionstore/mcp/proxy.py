"""Helpers for an MCP proxy or gateway keeping its client sessions in a store.

A proxy holds two ids per session: its own (what its client sends in ``Mcp-Session-Id``) and the
upstream server's. It learns how the upstream answers from the ``Content-Type`` of its responses,
keeps idle sessions only until the store's ``ttl`` runs out (every write moves the deadline), and
forgets a session when its client ends it::

    sessions = ProxySessions(store)
    session = await sessions.open()                              # a client's initialize
    session = await sessions.record_upstream(session.id, upstream_session_id=upstream_id,
                                             content_type=response.headers["content-type"])
    ...
    await sessions.close(session.id)                             # the client's DELETE
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import SessionNotFoundError
from ..models import ResponseMode, Session, SessionStatus, TransportType
from ..store import SessionStore

__all__ = ["ProxySessions", "response_mode_for"]


def response_mode_for(content_type: str | None) -> ResponseMode:
    """The response mode an upstream's ``Content-Type`` shows.

    ``application/json`` -> ``json``; ``text/event-stream`` -> ``sse_stream``; anything else
    (or none) -> ``passthrough``. Parameters (``; charset=utf-8``) and case are ignored.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return ResponseMode.JSON
    if media_type == "text/event-stream":
        return ResponseMode.SSE_STREAM
    return ResponseMode.PASSTHROUGH


class ProxySessions:
    """A proxy's client sessions in a store: open, bind to the upstream, touch, close."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"<ProxySessions {self.store!r}>"

    async def open(
        self,
        *,
        session_id: str | None = None,
        upstream_session_id: str | None = None,
        transport: TransportType = TransportType.HTTP,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Create the proxy's session (a fresh CSPRNG id unless ``session_id`` is given)."""
        fields: dict[str, Any] = {
            "transport": transport,
            "upstream_session_id": upstream_session_id,
            "metadata": dict(metadata or {}),
        }
        if session_id is not None:
            fields["id"] = session_id
        return await self.store.create_session(Session(**fields))

    async def get(self, session_id: str) -> Session | None:
        """The live session, or ``None`` (never created, expired or closed)."""
        try:
            return await self.store.get_session(session_id)
        except SessionNotFoundError:
            return None

    async def record_upstream(
        self,
        session_id: str,
        *,
        content_type: str | None = None,
        upstream_session_id: str | None = None,
    ) -> Session:
        """Record what an upstream response showed: its response mode (from ``content_type``)
        and, when it sent one, its session id. Moves the deadline (the session is not idle).

        Raises :class:`~sessionstore.SessionNotFoundError` if the session is gone.
        """

        def change(session: Session) -> None:
            if content_type is not None:
                session.response_mode = response_mode_for(content_type)
            if upstream_session_id is not None:
                session.upstream_session_id = upstream_session_id

        return await self.store.modify_session(session_id, change)

    async def touch(self, session_id: str) -> Session:
        """Mark the session active now, moving its idle deadline (``ttl``) forward."""
        return await self.store.modify_session(session_id, _activate)

    async def close(self, session_id: str) -> bool:
        """The client ended the session: delete it. ``True`` if it existed."""
        return await self.store.delete_session(session_id)


def _activate(session: Session) -> None:
    session.status = SessionStatus.ACTIVE
    session.last_activity = datetime.now(UTC)
