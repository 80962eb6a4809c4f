"""The session model: :class:`Session`, its enums, and the validation of ids and metadata.

Everything here is checked when a value is built or assigned, so a backend never sees an invalid id
or field: the store refuses them first with a :class:`ValueError` (pydantic's ``ValidationError``
for fields of a :class:`Session`, :class:`~sessionstore.errors.InvalidSessionError` for arguments).
"""

from __future__ import annotations

import math
import secrets
import string
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
)

from .errors import InvalidSessionError

__all__ = [
    "MAX_METADATA_DEPTH",
    "MAX_METADATA_ITEMS",
    "MAX_SESSION_ID_LENGTH",
    "ResponseMode",
    "Session",
    "SessionStatus",
    "TransportType",
    "check_json_value",
    "new_session_id",
    "validate_session_id",
]

MAX_SESSION_ID_LENGTH = 255
"""Longest accepted session id, in characters."""

MAX_METADATA_DEPTH = 32
"""Deepest nesting of lists and objects accepted in ``Session.metadata``."""

MAX_METADATA_ITEMS = 100_000
"""Most values accepted in ``Session.metadata``: every list item and every object entry, at every
level, counts once (``{"a": [1, 2]}`` holds 3). With :data:`MAX_METADATA_DEPTH` it bounds what a
session costs in memory and time to validate, encode and decode, whatever its size in bytes."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1  # msgpack's integer range: what every backend can store exactly


class TransportType(StrEnum):
    """How the client reaches the MCP server."""

    STDIO = "stdio"
    """Standard input and output of a local process."""
    HTTP = "http"
    """Streamable HTTP."""
    SSE = "sse"
    """The older HTTP+SSE transport."""


class ResponseMode(StrEnum):
    """How the upstream answers, as learnt from its ``Content-Type``."""

    JSON = "json"
    """One JSON response per request (``application/json``)."""
    SSE_STREAM = "sse_stream"
    """A stream of server-sent events (``text/event-stream``), resumable by event id."""
    PASSTHROUGH = "passthrough"
    """Anything else, relayed as it comes."""


class SessionStatus(StrEnum):
    """Where a session is in its life."""

    ACTIVE = "active"
    """In use: the default of a new session."""
    CLOSING = "closing"
    """Being shut down: the application set it and is ending the session."""
    CLOSED = "closed"
    """Ended; the store keeps it until it expires or is deleted."""
    FAILED = "failed"
    """Ended by an error."""


_FIRST_ID_CHARACTERS = string.ascii_letters + string.digits + "_"


def new_session_id() -> str:
    """Return a fresh id from the OS CSPRNG: 33 URL-safe characters, 197 bits.

    The first character is a letter, digit or ``_``, never ``-``: an id that starts with ``-``
    reads as an option on a command line (``sessionstore show -abc``). The 32 after it are
    ``secrets.token_urlsafe(24)``: 192 bits, as the ids of earlier releases had in all.
    """
    return secrets.choice(_FIRST_ID_CHARACTERS) + secrets.token_urlsafe(24)


def validate_session_id(value: object, *, what: str = "session id") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidSessionError`.

    A valid id is a ``str`` of 1 to 255 visible ASCII characters (0x21-0x7E): what the MCP
    specification allows in ``Mcp-Session-Id``. Anything else is refused with a message naming
    what is wrong; the id is shown with ``repr`` so control characters stay visible.
    """
    if (
        type(value) is str
        and 0 < len(value) <= MAX_SESSION_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    ):
        return value
    raise InvalidSessionError(_why_invalid(value, what))


def _why_invalid(value: object, what: str) -> str:
    if not isinstance(value, str):
        return f"{what} must be a str, not {type(value).__name__}"
    if not value:
        return f"{what} must not be empty"
    shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if len(value) > MAX_SESSION_ID_LENGTH:
        return (
            f"{what} {shown} is {len(value)} characters long; the limit is {MAX_SESSION_ID_LENGTH}"
        )
    return f"{what} {shown} may only contain visible ASCII characters (0x21-0x7E)"


def check_json_value(value: object, *, where: str = "metadata") -> None:
    """Raise :class:`InvalidSessionError` unless ``value`` is plain JSON data every backend keeps.

    Accepted: ``None``, ``bool``, ``int`` in [-2**63, 2**64-1], finite ``float``, ``str``,
    ``list`` and ``dict`` with ``str`` keys, nested at most :data:`MAX_METADATA_DEPTH` deep and
    holding at most :data:`MAX_METADATA_ITEMS` values in all. ``where`` names the place in the
    message (``metadata['a'][0]``). A value over the count is refused as soon as the count is
    passed, without walking the rest.
    """
    if type(value) is dict and len(value) <= MAX_METADATA_ITEMS:
        # Most metadata is one object of scalars: accepted here without the walk's bookkeeping,
        # which costs more than the checks (this runs on every encode and decode). Anything
        # else, a nested value or a problem, goes to the walk.
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or not (
                kind is str
                or kind is bool
                or item is None
                or (kind is int and _INT_MIN <= item <= _INT_MAX)
                or (kind is float and math.isfinite(item))
            ):
                break
        else:
            return
    try:
        problem = _json_problem(value, 0, [MAX_METADATA_ITEMS])
    except _TooManyValues:
        raise InvalidSessionError(
            f"{where} holds more than {MAX_METADATA_ITEMS} values in lists and objects "
            "(MAX_METADATA_ITEMS)"
        ) from None
    if problem is not None:
        steps, message = problem
        raise InvalidSessionError(f"{where}{''.join(reversed(steps))} {message}")


_Problem = tuple[list[str], str]


class _TooManyValues(Exception):
    """The walk of :func:`_json_problem` went past its budget of values."""


def _json_problem(value: object, depth: int, budget: list[int]) -> _Problem | None:
    """The first non-JSON part of ``value``: (path steps, innermost first; what is wrong).

    ``budget[0]`` is how many more list items and object entries may be met; each container
    takes its length from it before its contents are looked at, and :class:`_TooManyValues` is
    raised once it is spent. The path is built only on the way out of a failure: this runs on
    every write.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return None
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            return None
        return [], "is an integer outside [-2**63, 2**64-1]"
    if kind is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return None
        return [], f"is {value!r}; only finite numbers are JSON"
    if depth >= MAX_METADATA_DEPTH:
        return [], f"nests deeper than {MAX_METADATA_DEPTH} levels"
    if kind is dict or kind is list:
        budget[0] -= len(value)  # type: ignore[arg-type]
        if budget[0] < 0:
            raise _TooManyValues
        pairs = value.items() if kind is dict else enumerate(value)  # type: ignore[attr-defined,arg-type]
        for key, item in pairs:
            if kind is dict and type(key) is not str:
                return [], f"has a key {key!r} that is not a str"
            if type(item) is not str:
                problem = _json_problem(item, depth + 1, budget)
                if problem is not None:
                    problem[0].append(f"[{key!r}]")
                    return problem
        return None
    return [], f"holds a {kind.__name__}; only JSON data (dict, list, str, int, float, bool, None)"


def _session_id_field(value: str) -> str:
    return validate_session_id(value)


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


def _metadata_field(value: dict[str, Any]) -> dict[str, Any]:
    check_json_value(value)
    return value


def _utcnow() -> datetime:
    return datetime.now(UTC)


SessionId = Annotated[StrictStr, AfterValidator(_session_id_field)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata_field)]


class Session(BaseModel):
    """One MCP session as the store keeps it.

    Assignments are validated (``session.response_mode = "bogus"`` raises at once). Datetimes
    must be timezone-aware and are kept in UTC to the microsecond. ``version`` is managed by the
    store: 0 for a session never stored, then 1 on create and one more on every update; it is what
    compare-and-set compares. The last SSE event id is not a field: it is kept beside the session
    (``store_last_event_id``) so that an update and a new event id never undo each other.
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid", use_enum_values=False)

    id: SessionId = Field(default_factory=new_session_id)
    """The proxy's (or server's) session id: 1-255 visible ASCII characters."""
    transport: TransportType
    """How the client reaches the server; required (a string such as ``"http"`` is accepted)."""
    response_mode: ResponseMode | None = None
    """How the upstream answers; ``None`` until it first did."""
    upstream_session_id: SessionId | None = None
    """The upstream server's own session id, when this session is proxied."""
    status: SessionStatus = SessionStatus.ACTIVE
    """Where the session is in its life."""
    created_at: UtcDatetime = Field(default_factory=_utcnow)
    """When the session was made (UTC, timezone-aware); never changed by the store."""
    last_activity: UtcDatetime = Field(default_factory=_utcnow)
    """When the session was last used (UTC, timezone-aware); :meth:`touch` sets it to now. The
    idle lifetime (``ttl``) counts from each write, not from this field."""
    version: int = Field(default=0, ge=0)
    """Managed by the store: 0 for a session never stored, 1 once created, one more per update.
    An update succeeds only when it carries the stored version (compare-and-set)."""
    metadata: Metadata = Field(default_factory=dict)
    """JSON-compatible extras (see :func:`check_json_value`)."""

    # Fields written by a newer release that this one does not know: kept so that a
    # read-modify-write through an older instance does not drop them (a rolling upgrade).
    _unknown_fields: dict[str, Any] | None = PrivateAttr(default=None)
    # Which creation of this id the session was read from (see SessionRecord.incarnation).
    _incarnation: int = PrivateAttr(default=0)

    def __eq__(self, other: object) -> bool:
        """Equal when every field and every kept unknown field are; store bookkeeping aside."""
        if not isinstance(other, Session):
            return NotImplemented
        mine, theirs = self.__pydantic_private__ or {}, other.__pydantic_private__ or {}
        return self.__dict__ == other.__dict__ and (mine.get("_unknown_fields") or None) == (
            theirs.get("_unknown_fields") or None
        )

    __hash__ = None  # type: ignore[assignment]

    def touch(self) -> None:
        """Set ``last_activity`` to now (UTC). Call it before an update that marks activity."""
        self.last_activity = _utcnow()
