"""The channel a namespace's change notifications go to (``pg_notify`` / ``LISTEN``).

The backend emits ``pg_notify(pg_notify_channel(namespace), session_id)`` inside the transaction
of every ``event_append``, ``session_load`` and ``session_delete`` (PostgreSQL delivers it when
that transaction commits, and never if it rolls back); the listener (:mod:`.listen`) listens on
the same channel.
"""

from __future__ import annotations

import hashlib

__all__ = ["CHANNEL_PREFIX", "pg_notify_channel"]

CHANNEL_PREFIX = "sessionstore_"


def pg_notify_channel(namespace: str) -> str:
    """The channel of ``namespace``: ``sessionstore_`` and 32 hex digits of its SHA-256.

    Always a valid lower-case identifier of 45 bytes (PostgreSQL truncates names at 63), so it
    needs no quoting in ``LISTEN``; two namespaces share a channel only if their hashes' first
    128 bits collide, which costs spurious wake-ups, never a missed one.
    """
    digest = hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:32]
    return CHANNEL_PREFIX + digest
