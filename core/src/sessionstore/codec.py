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

Bytes alone do not bound what a record costs: a 16 MiB payload of one-byte empty lists decodes
into 16 million Python objects (over a GiB). So a record also holds at most
:data:`MAX_RECORD_ITEMS` values in its lists and maps, counted while it is parsed, and nests them
at most :data:`MAX_RECORD_DEPTH` deep; encoding refuses what decoding would refuse.

Speed: a record as this release writes it (exactly its fields, each of its usual type) is parsed by
msgspec straight into typed fields, checked with the same checks pydantic's validation runs, and
the :class:`Session` built without validating twice: about a quarter of the cost of
``Session.model_validate``. Anything else, every refusal included, takes the general path through
``Session.model_validate``, so what is accepted and every error message are as they were; the
codec's tests compare the two paths on generated and mutated records.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import msgspec
from pydantic import BaseModel, ValidationError

from .errors import CorruptRecordError, InvalidSessionError
from .models import (
    MAX_METADATA_DEPTH,
    MAX_METADATA_ITEMS,
    ResponseMode,
    Session,
    SessionStatus,
    TransportType,
    check_json_value,
    validate_session_id,
)
from .records import SessionRecord

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_RECORD_BYTES",
    "MAX_RECORD_DEPTH",
    "MAX_RECORD_ITEMS",
    "decode_session",
    "encode_session",
]

ENVELOPE_VERSION = 1
"""The envelope layout this release writes, and the newest it reads."""

MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Largest payload written or read (16 MiB). Sessions are meant to be small."""

MAX_RECORD_ITEMS = 2 * MAX_METADATA_ITEMS
"""Most values a record's lists and maps hold, at every level, the envelope's own included: every
array item and every map entry counts once (200,000). Room for metadata at its own limit
(:data:`~sessionstore.models.MAX_METADATA_ITEMS`) and for the fields of a newer release. A record
over it is refused as soon as parsing passes the count, so decoding one costs at most a few
dozen MiB of memory and tens of milliseconds whatever it holds."""

MAX_RECORD_DEPTH = 64
"""Deepest nesting of lists and maps in a record, the envelope's array and its map of fields
counting as the first two levels. Metadata reaches at most
``2 + MAX_METADATA_DEPTH`` levels; the rest is room for the fields of a newer release."""

assert MAX_RECORD_DEPTH >= 2 + MAX_METADATA_DEPTH  # whatever encode writes, decode reads

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DATETIME_FIELDS = ("created_at", "last_activity")


class _Fields(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The map of fields this release writes, as msgspec parses it on the fast path.

    Every field is required and of the one type encode writes, so a record parses here only if
    it is exactly what this release writes; anything else takes the general path. msgspec checks
    the types (strictly: no bool for an int, no bin for a str) and the enums' values; the rest of
    what the model validates is checked by :func:`_decode_plain`.
    """

    id: str
    transport: TransportType
    response_mode: ResponseMode | None
    upstream_session_id: str | None
    status: SessionStatus
    created_at: int
    last_activity: int
    metadata: dict[str, Any]


_KNOWN_FIELDS = frozenset(_Fields.__struct_fields__)
# The fast path builds every field of the model but version, which comes from the record.
assert _KNOWN_FIELDS | {"version"} == set(Session.model_fields)
_ALL_FIELDS = set(Session.model_fields)
_parse_plain = msgspec.msgpack.Decoder(tuple[int, _Fields]).decode
_pack = msgspec.msgpack.Encoder().encode
_new_session = Session.__new__
# The slots' own setters: a third cheaper than object.__setattr__, which looks each one up first.
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def encode_session(session: Session) -> bytes:
    """Return the envelope of ``session`` (everything but ``version``).

    Raises :class:`~sessionstore.errors.InvalidSessionError` if a field holds what validation
    would have refused (``model_copy(update=...)`` and ``model_construct()`` do not validate),
    if ``metadata`` was mutated in place into something that is not JSON data, or if the result
    exceeds :data:`MAX_RECORD_BYTES`. Nothing is written when it raises.
    """
    if type(session) is not Session and not isinstance(session, Session):
        raise InvalidSessionError(f"expected a Session, not {type(session).__name__}")
    try:
        session_id = session.id
        upstream = session.upstream_session_id
        transport = session.transport
        mode = session.response_mode
        status = session.status
        metadata = session.metadata
        # Assignment validates ids, but model_copy(update=...) and model_construct() do not.
        validate_session_id(session_id)
        if upstream is not None:
            validate_session_id(upstream, what="upstream session id")
        if type(transport) is not TransportType:
            raise TypeError(f"transport is a {type(transport).__name__}, not a TransportType")
        if mode is not None and type(mode) is not ResponseMode:
            raise TypeError(f"response_mode is a {type(mode).__name__}, not a ResponseMode")
        if type(status) is not SessionStatus:
            raise TypeError(f"status is a {type(status).__name__}, not a SessionStatus")
        if type(metadata) is not dict:
            raise TypeError(f"metadata is a {type(metadata).__name__}, not a dict")
        if metadata:
            check_json_value(metadata)
        created_at = (session.created_at - _EPOCH) // _MICROSECOND
        last_activity = (session.last_activity - _EPOCH) // _MICROSECOND
        # Reading the private attribute the ordinary way costs ~3 us (pydantic's __getattr__).
        private = session.__pydantic_private__
        unknown = private.get("_unknown_fields") if private else None
        if not unknown:
            # msgspec writes a struct as the map of its fields in their declared order, and an
            # enum member as its value: the bytes msgpack writes for the same map, faster.
            payload = _pack(
                (
                    ENVELOPE_VERSION,
                    _Fields(
                        session_id,
                        transport,
                        mode,
                        upstream,
                        status,
                        created_at,
                        last_activity,
                        metadata,
                    ),
                )
            )
        else:
            fields = {
                **unknown,
                "id": session_id,
                "transport": transport.value,
                "response_mode": None if mode is None else mode.value,
                "upstream_session_id": upstream,
                "status": status.value,
                "created_at": created_at,
                "last_activity": last_activity,
                "metadata": metadata,
            }
            # Metadata alone stays within bounds (check_json_value); with a newer release's
            # fields beside it the record might not, and then no reader could decode it.
            problem = _shape_problem([ENVELOPE_VERSION, fields], MAX_RECORD_DEPTH)
            if problem is not None:
                raise InvalidSessionError(f"session {session_id!r} {problem}")
            # They were parsed by msgpack (the general path) and may hold its Timestamp, which
            # msgspec cannot write.
            payload = msgpack.packb([ENVELOPE_VERSION, fields], use_bin_type=True)
    except InvalidSessionError:
        raise
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        # Only reachable when validation was bypassed, e.g. model_copy(update=...) with raw values.
        raise InvalidSessionError(
            f"session {getattr(session, 'id', None)!r} has a field of the wrong type ({exc}); "
            "model_copy(update=...) does not validate, set fields by assignment instead"
        ) from None
    if len(payload) > MAX_RECORD_BYTES:
        raise InvalidSessionError(
            f"session {session_id!r} encodes to {len(payload)} bytes; "
            f"the limit is {MAX_RECORD_BYTES}"
        )
    return payload


def _refuse_ext(code: int, data: bytes) -> object:
    raise ValueError(f"msgpack extension type {code} is not part of the envelope")


class _TooManyValues(Exception):
    """Parsing went past :data:`MAX_RECORD_ITEMS` values."""


_TOO_MANY = f"holds more than {MAX_RECORD_ITEMS} values in lists and maps (MAX_RECORD_ITEMS)"
_TOO_DEEP = f"nests lists and maps deeper than {MAX_RECORD_DEPTH} levels (MAX_RECORD_DEPTH)"


def _unpack(payload: bytes) -> Any:
    """The envelope in ``payload``, parsed within :data:`MAX_RECORD_ITEMS`.

    Every value takes at least one byte, so a payload of at most ``MAX_RECORD_ITEMS`` bytes cannot
    hold more and parses as it is. A longer one is parsed with each array and map at most that
    long (msgpack allocates a container's slots from its header, before its contents arrive) and
    with every container's length counted as soon as it is built; :class:`_TooManyValues` stops
    the parse once the count passes the limit.
    """
    if len(payload) <= MAX_RECORD_ITEMS:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    budget = MAX_RECORD_ITEMS

    def counted(container: Any) -> Any:
        nonlocal budget
        budget -= len(container)
        if budget < 0:
            raise _TooManyValues
        return container

    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            max_array_len=MAX_RECORD_ITEMS,
            max_map_len=MAX_RECORD_ITEMS,
            list_hook=counted,
            object_hook=counted,
        )
    except ValueError as exc:
        # msgpack refuses a header over max_array_len or max_map_len with a ValueError saying so.
        if "max_array_len" in str(exc) or "max_map_len" in str(exc):
            raise _TooManyValues from None
        raise


def _shape_problem(value: object, levels: int, budget: list[int] | None = None) -> str | None:
    """Why ``value`` is out of the record's bounds, or ``None``.

    ``levels`` is how many levels of lists and maps it may still nest (the record's whole depth
    for the envelope itself); ``budget[0]`` how many more values it may hold, spent as the walk
    goes (:data:`MAX_RECORD_ITEMS` when not given). Stops at the first problem.
    """
    if budget is None:
        budget = [MAX_RECORD_ITEMS]
    children: Iterable[object]
    if type(value) is dict:
        children = value.values()
    elif type(value) is list:
        children = value
    else:
        return None
    if levels == 0:
        return _TOO_DEEP
    budget[0] -= len(value)
    if budget[0] < 0:
        return _TOO_MANY
    for child in children:
        problem = _shape_problem(child, levels - 1, budget)
        if problem is not None:
            return problem
    return None


def decode_session(record: SessionRecord) -> Session:
    """Return the :class:`Session` stored in ``record``, with ``version`` taken from the record.

    Raises :class:`~sessionstore.errors.CorruptRecordError` naming ``record.id`` for a payload that
    is truncated, oversized, of a newer envelope version, of another session, or otherwise invalid.
    """
    payload = record.payload
    if type(payload) is bytes and len(payload) <= MAX_RECORD_ITEMS:
        session = _decode_plain(record, payload)
        if session is not None:
            return session
    return _decode_general(record)


def _decode_plain(record: SessionRecord, payload: bytes) -> Session | None:
    """The session in a record exactly as this release writes it, or ``None`` for anything else.

    Takes only what ``Session.model_validate`` accepts unchanged: every field present, none
    unknown, each of the type encode writes (so pydantic's lax conversions never apply), the ids,
    metadata and version valid. It runs the model's checks itself and builds the session as
    ``model_validate`` would (every field set, private attributes at their defaults), without
    validating twice. ``payload`` is at most :data:`MAX_RECORD_ITEMS` bytes, so it holds no more
    values than that. ``None`` sends the record to :func:`_decode_general`, which accepts or
    refuses it with its own message: a refusal costs the two paths, a read never does.
    """
    try:
        envelope_version, fields = _parse_plain(payload)
    except Exception:  # malformed, of another shape, or nested past msgspec's recursion limit
        return None
    session_id = fields.id
    upstream = fields.upstream_session_id
    metadata = fields.metadata
    version = record.version
    if (
        envelope_version != ENVELOPE_VERSION
        or session_id != record.id
        or type(version) is not int
        or version < 0
    ):
        return None
    try:
        validate_session_id(session_id)
        if upstream is not None:
            validate_session_id(upstream)
        if metadata:
            check_json_value(metadata)
        created_at = _EPOCH + fields.created_at * _MICROSECOND
        last_activity = _EPOCH + fields.last_activity * _MICROSECOND
    except (InvalidSessionError, OverflowError):
        return None
    session = _new_session(Session)
    # What model_validate leaves in the four slots of a BaseModel: the fields in their declared
    # order, every one of them set (all were given), no extras, the private attributes.
    _set_dict(
        session,
        {
            "id": session_id,
            "transport": fields.transport,
            "response_mode": fields.response_mode,
            "upstream_session_id": upstream,
            "status": fields.status,
            "created_at": created_at,
            "last_activity": last_activity,
            "version": version,
            "metadata": metadata,
        },
    )
    _set_fields_set(session, _ALL_FIELDS.copy())
    _set_extra(session, None)
    _set_private(session, {"_unknown_fields": None, "_incarnation": record.incarnation})
    return session


def _decode_general(record: SessionRecord) -> Session:
    """:func:`decode_session` for any record: parsed by msgpack, validated by the model."""
    payload = record.payload
    session_id = record.id
    if type(payload) is not bytes:
        raise CorruptRecordError(session_id, f"payload is a {type(payload).__name__}, not bytes")
    if len(payload) > MAX_RECORD_BYTES:
        raise CorruptRecordError(
            session_id, f"payload of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}"
        )
    try:
        envelope = _unpack(payload)
    except _TooManyValues:
        raise CorruptRecordError(session_id, _TOO_MANY) from None
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise CorruptRecordError(session_id, _not_an_envelope(payload, exc)) from None
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
        # Nothing below validates a newer release's fields: bound their nesting here (the map
        # of them stands for the map of fields, the record's second level).
        problem = _shape_problem(unknown, MAX_RECORD_DEPTH - 1)
        if problem is not None:
            raise CorruptRecordError(session_id, problem)
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


# The first bytes of what EncryptionMiddleware and CompressionMiddleware store (0xC1 starts no
# msgpack value): a store opened without them says so rather than "not msgpack".
_SEALED_BY = {
    b"\xc1SSE": ("encrypted", "EncryptionMiddleware"),
    b"\xc1SSZ": ("compressed", "CompressionMiddleware"),
}


def _not_an_envelope(payload: bytes, exc: Exception) -> str:
    sealed = _SEALED_BY.get(payload[:4])
    if sealed is not None:
        return (
            f"the record looks {sealed[0]} (written through {sealed[1]}): open the store with "
            "the same middleware to read it"
        )
    return f"not a msgpack envelope ({exc})"


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
