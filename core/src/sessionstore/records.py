"""What backends store and return: encoded session records and events.

Backends never see a :class:`~sessionstore.Session`: the core encodes once on the way in and
decodes once on the way out, so every backend keeps exactly the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

__all__ = ["Event", "SessionDump", "SessionRecord", "new_record", "parse_event_id"]


class SessionRecord(NamedTuple):
    """One session as a backend stores it.

    ``version`` is the compare-and-set counter (1 after create). ``deadline_ms`` is the Unix time
    in milliseconds at which the session expires (``None``: never); a record whose deadline is at
    or before the ``now_ms`` of a call is expired and must be treated as absent. ``payload`` is
    the codec's envelope: opaque bytes the backend must return unchanged. ``incarnation`` is a
    random number drawn at create: versions restart at 1 when an id is created again, so
    compare-and-set compares the incarnation too, or a writer holding version 1 of a deleted
    session would overwrite its successor. A write with incarnation 0 comes from a session that was
    never read from the store: compare its version only and keep the stored incarnation.
    """

    id: str
    version: int
    deadline_ms: int | None
    payload: bytes
    incarnation: int = 0


_RECORD_NEW: Callable[
    [type[SessionRecord], tuple[str, int, int | None, bytes, int]], SessionRecord
] = tuple.__new__
"""``_RECORD_NEW(SessionRecord, fields)``: what :func:`new_record` calls, without the partial's
indirection, for the core's create and update paths."""

new_record: Callable[[tuple[str, int, int | None, bytes, int]], SessionRecord] = partial(
    _RECORD_NEW, SessionRecord
)
"""``new_record((id, version, deadline_ms, payload, incarnation))``: a :class:`SessionRecord`,
built without the generated ``__new__`` (a third of the cost, on the path of every write)."""


_EVENT_ID = re.compile(r"([1-9][0-9]{0,17})-([1-9][0-9]{0,17})\Z")


def parse_event_id(event_id: str) -> tuple[int, int] | None:
    """Split an id of the usual ``"{stream handle}-{sequence}"`` form into its two numbers.

    Returns ``None`` for anything else: other spellings of the same numbers (``"01-1"``, non-ASCII
    digits) and numbers too large for a 64-bit integer, so each event has exactly one id.
    """
    match = _EVENT_ID.match(event_id)
    return None if match is None else (int(match[1]), int(match[2]))


class Event(NamedTuple):
    """One event of a session's event log.

    ``id`` is unique in the store and opaque; ``stream_id`` names the stream it belongs to;
    ``data`` is the event's bytes, or ``None`` for a priming event (one that only marks a
    position in the stream).
    """

    id: str
    stream_id: str
    data: bytes | None


class SessionDump(NamedTuple):
    """Everything a store holds of one session, as ``dump_session`` reads it and ``load_session``
    writes it back (in this store or another): moving sessions between backends keeps them whole.

    ``streams`` lists each event stream of the session, in the order they were created, with the
    data of its retained events, oldest first (``None`` for a priming event). Event ids are not
    kept: a backend hands out its own when the events are loaded.
    """

    record: SessionRecord
    last_event_id: str | None
    streams: tuple[tuple[str, tuple[bytes | None, ...]], ...]
