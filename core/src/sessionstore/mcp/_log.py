"""What the MCP layer writes into log lines and messages: one policy for every module.

- A value a client chose (an event id, a stream id, a message, an exception's text) is shown
  by :func:`shown`: its ``repr`` (control characters cannot forge lines), cut to a bound.
- A session id is shown by :func:`shown_id`: its first 8 characters only. With anonymous use the
  id is the only credential of a session, so a log line must never carry a whole one.
- An exception is shown by :func:`shown_error`: its class and bounded message (sessionstore's
  own messages are already redacted of secrets).
"""

from __future__ import annotations

__all__ = ["LOGGED_LENGTH", "SHOWN_ID_LENGTH", "shown", "shown_error", "shown_id"]

LOGGED_LENGTH = 80
"""The most characters of a client-chosen value (event id, stream id, message) a log line shows:
a client must not choose the size of the server's log lines."""

SHOWN_ID_LENGTH = 8
"""The characters of a session id a log line or an error message shows."""


def shown(value: object, limit: int = LOGGED_LENGTH) -> str:
    """``value`` for a log line: its ``repr`` (so control characters cannot forge lines), cut
    to ``limit`` characters with a note of the whole length when longer."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def shown_id(session_id: object) -> str:
    """A session id for a log line or a message: the ``repr`` of its first
    :data:`SHOWN_ID_LENGTH` characters, ``...`` marking a longer id. Enough to tell sessions
    apart in a log, never enough to use one."""
    text = session_id if isinstance(session_id, str) else str(session_id)
    if len(text) <= SHOWN_ID_LENGTH:
        return repr(text)
    return repr(text[:SHOWN_ID_LENGTH] + "...")


def shown_error(exc: BaseException, limit: int = 300) -> str:
    """An exception for a log line or a startup failure: its class name and bounded message."""
    return f"{type(exc).__name__}: {shown(exc, limit)}"
