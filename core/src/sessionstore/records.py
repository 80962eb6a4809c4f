"""What backends store and return: encoded session records and events.

Backends never see a :class:`~sessionstore.Session`: the core encodes once on the way in and
decodes once on the way out, so every backend keeps exactly the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

__all__ = ["Event", "SessionRecord", "new_record"]


class SessionRecord(NamedTuple):
    """One session as a backend stores it.

    ``version`` is the compare-and-set counter (1 after create). ``deadline_ms`` is the Unix time
    in milliseconds at which the session expires (``None``: never); a record whose deadline is at
    or before the ``now_ms`` of a call is expired and must be treated as absent. ``payload`` is
    the codec's envelope: opaque bytes the backend must return unchanged.
    """

    id: str
    version: int
    deadline_ms: int | None
    payload: bytes


new_record: Callable[[tuple[str, int, int | None, bytes]], SessionRecord] = partial(
    tuple.__new__, SessionRecord
)
"""``new_record((id, version, deadline_ms, payload))``: a :class:`SessionRecord`, built without the
generated ``__new__`` (a third of the cost, on the path of every write)."""


class Event(NamedTuple):
    """One event of a session's event log.

    ``id`` is unique in the store and opaque; ``stream_id`` names the stream it belongs to;
    ``data`` is the event's bytes, or ``None`` for a priming event (one that only marks a
    position in the stream).
    """

    id: str
    stream_id: str
    data: bytes | None
