"""The codec: a :class:`~sessionstore.Session` to and from a versioned msgpack envelope.

The envelope is a two-element msgpack array ``[ENVELOPE_VERSION, fields]``: ``fields`` is a map
from field name to value (enums as their string values, datetimes as integer microseconds since
the Unix epoch, UTC). ``version`` is not in the payload: it lives in the record, where
compare-and-set reads it.

Compatibility rules, so a fleet can be upgraded one instance at a time:

* A field this release does not know is kept on the decoded session and written back unchanged by
  the next encode, so a read-modify-write through an older instance never drops it.
* A newer *envelope* version means an incompatible layout; it is refused with
  :class:`~sessionstore.errors.CorruptRecordError` saying which release is needed, never guessed at.

Decoding is defensive: payloads longer than :data:`MAX_RECORD_BYTES` are refused before parsing,
msgpack's own limits bound every string, array and map by the payload's length, extension types are
refused (except msgpack's own timestamp, which a newer release's unknown field may hold and which
is written back unchanged), and anything malformed raises ``CorruptRecordError`` naming the id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
from pydantic import ValidationError

from .errors import CorruptRecordError, InvalidSessionError
from .models import Session, check_json_value, validate_session_id
from .records import SessionRecord

__all__ = ["ENVELOPE_VERSION", "MAX_RECORD_BYTES", "decode_session", "encode_session"]

ENVELOPE_VERSION = 1
"""The envelope layout this release writes, and the newest it reads."""

MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Largest payload written or read (16 MiB). Sessions are meant to be small."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DATETIME_FIELDS = ("created_at", "last_activity")
_KNOWN_FIELDS = frozenset(
    (
        "id",
        "transport",
        "response_mode",
        "upstream_session_id",
        "status",
        "created_at",
        "last_activity",
        "metadata",
    )
)


def encode_session(session: Session) -> bytes:
    """Return the envelope of ``session`` (everything but ``version``).

    Raises :class:`~sessionstore.errors.InvalidSessionError` if ``metadata`` was mutated in place
    into something that is not JSON data, or if the result exceeds :data:`MAX_RECORD_BYTES`.
    Nothing is written when it raises.
    """
    if type(session) is not Session and not isinstance(session, Session):
        raise InvalidSessionError(f"expected a Session, not {type(session).__name__}")
    # Assignment validates ids, but model_copy(update=...) and model_construct() do not.
    validate_session_id(session.id)
    if session.upstream_session_id is not None:
        validate_session_id(session.upstream_session_id, what="upstream session id")
    metadata = session.metadata
    if metadata:
        check_json_value(metadata)
    try:
        mode = session.response_mode
        fields: dict[str, Any] = {
            "id": session.id,
            "transport": session.transport.value,
            "response_mode": None if mode is None else mode.value,
            "upstream_session_id": session.upstream_session_id,
            "status": session.status.value,
            "created_at": (session.created_at - _EPOCH) // _MICROSECOND,
            "last_activity": (session.last_activity - _EPOCH) // _MICROSECOND,
            "metadata": metadata,
        }
        # Reading the private attribute the ordinary way costs ~3 us (pydantic's __getattr__).
        unknown = (session.__pydantic_private__ or {}).get("_unknown_fields")
        if unknown:
            fields = {**unknown, **fields}
        payload: bytes = msgpack.packb([ENVELOPE_VERSION, fields], use_bin_type=True)
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        # Only reachable when validation was bypassed, e.g. model_copy(update=...) with raw values.
        raise InvalidSessionError(
            f"session {session.id!r} has a field of the wrong type ({exc}); "
            "model_copy(update=...) does not validate, set fields by assignment instead"
        ) from None
    if len(payload) > MAX_RECORD_BYTES:
        raise InvalidSessionError(
            f"session {session.id!r} encodes to {len(payload)} bytes; "
            f"the limit is {MAX_RECORD_BYTES}"
        )
    return payload


def _refuse_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack extension type {code} is not part of the envelope")


def decode_session(record: SessionRecord) -> Session:
    """Return the :class:`Session` stored in ``record``, with ``version`` taken from the record.

    Raises :class:`~sessionstore.errors.CorruptRecordError` naming ``record.id`` for a payload that
    is truncated, oversized, of a newer envelope version, of another session, or otherwise invalid.
    """
    payload = record.payload
    session_id = record.id
    if type(payload) is not bytes:
        raise CorruptRecordError(session_id, f"payload is a {type(payload).__name__}, not bytes")
    if len(payload) > MAX_RECORD_BYTES:
        raise CorruptRecordError(
            session_id, f"payload of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}"
        )
    try:
        envelope = msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise CorruptRecordError(session_id, f"not a msgpack envelope ({exc})") from None
    if type(envelope) is not list or len(envelope) != 2:
        raise CorruptRecordError(session_id, "not a [version, fields] envelope")
    envelope_version, fields = envelope
    if type(envelope_version) is not int or envelope_version != ENVELOPE_VERSION:
        raise CorruptRecordError(session_id, _version_message(envelope_version))
    if type(fields) is not dict:
        raise CorruptRecordError(session_id, "envelope fields are not a map")
    try:
        for name in _DATETIME_FIELDS:
            micros = fields[name]
            if type(micros) is not int:
                raise ValueError(f"{name} is not an integer timestamp")
            fields[name] = _EPOCH + micros * _MICROSECOND
    except (KeyError, ValueError, OverflowError) as exc:
        raise CorruptRecordError(session_id, f"bad timestamp ({exc})") from None
    unknown = None
    if len(fields) > len(_KNOWN_FIELDS) or not _KNOWN_FIELDS.issuperset(fields):
        unknown = {k: fields.pop(k) for k in list(fields) if k not in _KNOWN_FIELDS}
    fields["version"] = record.version
    try:
        session = Session.model_validate(fields)
    except (ValidationError, ValueError, RecursionError) as exc:
        raise CorruptRecordError(session_id, f"invalid session fields ({_short(exc)})") from None
    if session.id != session_id:
        raise CorruptRecordError(session_id, f"payload belongs to session {session.id!r}")
    private = session.__pydantic_private__
    if private is not None:  # set directly: the attribute protocol costs microseconds here
        private["_incarnation"] = record.incarnation
        if unknown:
            private["_unknown_fields"] = unknown
    return session


def _version_message(envelope_version: object) -> str:
    if type(envelope_version) is int and envelope_version > ENVELOPE_VERSION:
        return (
            f"written with envelope version {envelope_version} by a newer sessionstore; this "
            f"release reads up to version {ENVELOPE_VERSION}: upgrade sessionstore"
        )
    return f"unknown envelope version {envelope_version!r}"


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", "; ")
    return text if len(text) <= 300 else text[:300] + "..."
