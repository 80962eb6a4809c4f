"""Hypothesis strategies for valid sessions, ids and metadata."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from sessionstore import ResponseMode, Session, SessionStatus, TransportType

__all__ = [
    "INVALID_IDS",
    "STRANGE_IDS",
    "aware_datetimes",
    "json_values",
    "metadata",
    "session_ids",
    "sessions",
]

STRANGE_IDS: tuple[str, ...] = (
    "*",
    "?",
    "[",
    "]",
    "{",
    "}",
    ":",
    "\\",
    "%",
    "*:*",
    "a*",
    "a?",
    "[a-z]",
    "{tag}",
    "{tag}x",
    "%s%n%x",
    "a:b:c",
    "..",
    "/",
    "'\"",
    "~",
    "x" * 255,
    "x" * 254 + "*",
)
"""Valid ids that a careless backend would treat as patterns, separators or escapes."""

INVALID_IDS: tuple[object, ...] = (
    "",
    " ",
    "a b",
    "tab\there",
    "new\nline",
    "nul\x00",
    "\x7f",
    "caf\u00e9",
    "\u2603",
    "x" * 256,
    None,
    42,
    b"bytes",
)
"""Ids that must be refused before any backend sees them."""

_visible_ascii = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def session_ids() -> st.SearchStrategy[str]:
    """Valid session ids: 1-255 visible ASCII characters, strange ones often."""
    return st.one_of(
        st.sampled_from(STRANGE_IDS),
        st.text(_visible_ascii, min_size=1, max_size=40),
        st.text(_visible_ascii, min_size=200, max_size=255),
    )


_int64_or_uint64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _int64_or_uint64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """JSON data as ``Session.metadata`` accepts it (finite floats, 64-bit integers)."""
    return st.recursive(
        _json_scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def metadata() -> st.SearchStrategy[dict[str, Any]]:
    """Metadata dicts: empty, small and nested, unicode keys, and now and then a large one."""
    return st.one_of(
        st.just({}),
        st.dictionaries(st.text(max_size=12), json_values(), max_size=6),
        st.builds(
            lambda n, blob: {"blob": blob * n, "items": list(range(n))},
            st.integers(min_value=1000, max_value=5000),
            st.text(min_size=1, max_size=30),
        ),
    )


def aware_datetimes() -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes to the microsecond, with fixed UTC offsets."""
    offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )
    return st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
    )


def sessions(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Session]:
    """Arbitrary valid, never-stored sessions (``version == 0``)."""
    return st.builds(
        Session,
        id=ids if ids is not None else session_ids(),
        transport=st.sampled_from(TransportType),
        response_mode=st.none() | st.sampled_from(ResponseMode),
        upstream_session_id=st.none() | session_ids(),
        status=st.sampled_from(SessionStatus),
        created_at=aware_datetimes(),
        last_activity=aware_datetimes(),
        metadata=metadata(),
    )
