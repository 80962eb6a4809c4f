"""The codec's properties, generated: round trips, the bytes encode writes, and the fast decode
path against the general one (``Session.model_validate``) on valid, lax and hostile records.

``decode_session`` takes a fast path (msgspec, then the session built without a second
validation) for records exactly as this release writes them and the general path for everything
else. The fast path is safe when whatever it returns is what the general path returns for the
same record, slot for slot, and it must be taken for ordinary records or it buys nothing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionstore import (
    CorruptRecordError,
    InvalidSessionError,
    ResponseMode,
    Session,
    SessionRecord,
    SessionStatus,
    TransportType,
    decode_session,
    encode_session,
)
from sessionstore.codec import _decode_general, _decode_plain
from sessionstore.models import _json_problem, check_json_value

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
moments = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, None]).map(lambda tz: tz or UTC),
)
sessions = st.builds(
    Session,
    id=ids,
    transport=st.sampled_from(TransportType),
    response_mode=st.none() | st.sampled_from(ResponseMode),
    upstream_session_id=st.none() | ids,
    status=st.sampled_from(SessionStatus),
    created_at=moments,
    last_activity=moments,
    metadata=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
)


def reference_envelope(session: Session) -> bytes:
    """The envelope as the codec wrote it before msgspec: msgpack.packb of the fields map."""
    fields = {
        "id": session.id,
        "transport": session.transport.value,
        "response_mode": None if session.response_mode is None else session.response_mode.value,
        "upstream_session_id": session.upstream_session_id,
        "status": session.status.value,
        "created_at": (session.created_at - EPOCH) // timedelta(microseconds=1),
        "last_activity": (session.last_activity - EPOCH) // timedelta(microseconds=1),
        "metadata": session.metadata,
    }
    payload: bytes = msgpack.packb([1, fields], use_bin_type=True)
    return payload


def slots(session: Session) -> tuple[Any, ...]:
    """Everything a model holds, with the type of every field value and the fields' order."""
    return (
        list(session.__dict__.items()),
        [type(value) for value in session.__dict__.values()],
        session.__pydantic_fields_set__,
        session.__pydantic_extra__,
        repr(session.__pydantic_private__),  # a newer release's fields may hold a NaN
        session.created_at.tzinfo,
        session.last_activity.tzinfo,
    )


def outcome(decode: Any, record: SessionRecord) -> tuple[str, Any]:
    try:
        return "ok", slots(decode(record))
    except CorruptRecordError as exc:
        # Without an id in the payload, the model draws a fresh random one: name it alike.
        if exc.reason.startswith("payload belongs to session "):
            return "corrupt", "payload belongs to session ..."
        return "corrupt", exc.reason


def assert_same_as_general(record: SessionRecord) -> None:
    """The fast path returns what the general path returns, or declines; the public decode
    gives the general path's outcome, and refuses only with CorruptRecordError."""
    general = outcome(_decode_general, record)
    if type(record.payload) is bytes:
        fast = _decode_plain(record, record.payload)
        if fast is not None:
            assert general == ("ok", slots(fast))
    assert outcome(decode_session, record) == general


# -- round trips and the bytes written ------------------------------------------------------


@PROFILE
@given(sessions, st.integers(0, 2**63))
def test_round_trip_takes_the_fast_path_and_equals_the_session(
    session: Session, version: int
) -> None:
    payload = encode_session(session)
    assert payload == reference_envelope(session)  # the format did not change
    record = SessionRecord(session.id, version, None, payload, 7)
    fast = _decode_plain(record, payload)
    assert fast is not None, "an ordinary record must take the fast path"
    assert fast == session.model_copy(update={"version": version})
    assert slots(fast) == slots(_decode_general(record))
    assert fast.__pydantic_private__ == {"_unknown_fields": None, "_incarnation": 7}


@PROFILE
@given(sessions)
def test_decoded_sessions_stay_validated_on_assignment(session: Session) -> None:
    decoded = decode_session(SessionRecord(session.id, 1, None, encode_session(session)))
    with pytest.raises(ValueError, match="transport"):
        decoded.transport = "pigeon"  # type: ignore[assignment]
    decoded.status = "closed"  # type: ignore[assignment]
    assert decoded.status is SessionStatus.CLOSED
    assert "status" in decoded.model_fields_set


# -- the fast path against the general one ----------------------------------------------------

known = {
    "id": "sid-1",
    "transport": "http",
    "response_mode": "sse_stream",
    "upstream_session_id": "up-1",
    "status": "active",
    "created_at": 1_700_000_000_000_000,
    "last_activity": 1_700_000_000_123_456,
    "metadata": {"k": "v", "n": 1},
}
hostile_values = (
    json_values
    | st.binary(max_size=8)
    | st.integers(-(2**64), 2**64 + 5).filter(lambda i: -(2**63) <= i < 2**64)
    | st.floats()
    | st.sampled_from(
        [
            msgpack.ExtType(5, b"x"),
            msgpack.Timestamp(1, 0),
            "HTTP",
            "sse",
            "json",
            "closed",
            "",
            "a b",
            "x" * 256,
            b"sid-1",
            b"http",
            True,
            1.0,
            2**62,
            -(2**63),
            [[[[]]]],
            {b"k": 1},
            {"k": float("nan")},
            {"k": b"bytes"},
            {"k": {1: 2}},
        ]
    )
)


@st.composite
def mutated_fields(draw: st.DrawFn) -> dict[Any, Any]:
    """The reference fields with some replaced, removed, renamed or added."""
    fields: dict[Any, Any] = dict(known)
    for name in draw(st.lists(st.sampled_from(sorted(known)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["replace", "remove", "as bytes key"]))
        value = fields.pop(name)
        if action == "replace":
            fields[name] = draw(hostile_values)
        elif action == "as bytes key":
            fields[name.encode()] = value
    if draw(st.booleans()):
        fields[draw(st.text(max_size=6))] = draw(hostile_values)
    return fields


@PROFILE
@given(
    mutated_fields(), st.sampled_from([0, 1, 2, "1", True]), st.sampled_from([0, 1, 5, -1, True])
)
def test_fast_and_general_paths_agree_on_mutated_fields(
    fields: dict[Any, Any], envelope_version: object, version: object
) -> None:
    payload = msgpack.packb([envelope_version, fields], use_bin_type=True, strict_types=False)
    assert_same_as_general(SessionRecord("sid-1", version, None, payload))  # type: ignore[arg-type]


valid_payload = msgpack.packb([1, known], use_bin_type=True)


@PROFILE
@given(st.data())
def test_fast_and_general_paths_agree_on_mutated_bytes(data: st.DataObject) -> None:
    payload = bytearray(valid_payload)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(payload)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and where < len(payload):
            payload[where] = data.draw(st.integers(0, 255))
        elif action == "insert":
            payload[where:where] = data.draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del payload[where : where + data.draw(st.integers(1, 4))]
        else:
            del payload[where:]
    assert_same_as_general(SessionRecord("sid-1", 1, None, bytes(payload)))


_SHALLOW = msgpack.packb([1, {**known, "metadata": {"d": None}}])
DEEP_METADATA = _SHALLOW[:-1] + b"\x91" * 5000 + b"\xc0"  # the None made 5,000 lists deep


@pytest.mark.parametrize(
    "payload",
    [
        # A key twice: msgpack and msgspec both keep the last.
        b"\x92\x01\x89" + valid_payload[3:] + b"\xa2id\xa5sid-2",
        msgpack.packb([1, {**known, "metadata": {"k": "v"}}])[:-1] + b"\x92\x01\x02",
        DEEP_METADATA,  # nested past msgspec's recursion limit
        msgpack.packb([1, {**known, "metadata": {"d": [[[[[[[[[[]]]]]]]]]]}}]),
        msgpack.packb([1, {**known, "metadata": {"k": 2**64 - 1, "f": -0.0}}]),
        msgpack.packb([1, {**known, "metadata": {"k": float("nan")}}]),
        msgpack.packb([1, {**known, "metadata": {"k": b"bytes"}}]),
        msgpack.packb([1, {**known, "metadata": {"k": [[[[[[[[[[]] * 4] * 4] * 4]]]]]]}}]),
        msgpack.packb([1, {**known, "metadata": {"k": msgpack.ExtType(3, b"")}}]),
        msgpack.packb([1, {**known, "upstream_session_id": "up 1"}]),
        msgpack.packb([1, {**known, "created_at": -(2**63)}]),
    ],
)
def test_fast_and_general_paths_agree_on_edge_payloads(payload: bytes) -> None:
    assert_same_as_general(SessionRecord("sid-1", 1, None, payload))


@PROFILE
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_or_agree(payload: bytes) -> None:
    assert_same_as_general(SessionRecord("sid-1", 1, None, payload))


# -- encode refuses what validation would have refused ----------------------------------------


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"transport": "http"}, "transport is a str, not a TransportType"),
        ({"response_mode": ResponseMode.JSON.value}, "response_mode is a str"),
        ({"status": TransportType.HTTP}, "status is a TransportType, not a SessionStatus"),
        ({"metadata": None}, "metadata is a NoneType, not a dict"),
        ({"metadata": {"x": {1, 2}}}, "holds a set"),
        ({"created_at": datetime(2024, 1, 1)}, "wrong type"),  # naive
        ({"id": "a b"}, "visible ASCII"),
        ({"upstream_session_id": ""}, "must not be empty"),
    ],
)
def test_encode_refuses_fields_set_without_validation(update: dict[str, Any], message: str) -> None:
    session = Session(id="sid-1", transport="http").model_copy(update=update)
    with pytest.raises(InvalidSessionError, match=message):
        encode_session(session)


# -- the metadata check's shortcut for flat objects ---------------------------------------------

flat_values = (
    scalars
    | st.floats()
    | st.integers(-(2**65), 2**65)
    | st.binary(max_size=2)
    | st.sampled_from([[], {}, (), {1}])
)


@PROFILE
@given(st.dictionaries(st.text(max_size=3) | st.integers(0, 3), flat_values, max_size=5))
def test_flat_metadata_shortcut_agrees_with_the_walk(metadata: dict[Any, Any]) -> None:
    walk = _json_problem(metadata, 0, [100_000])
    try:
        check_json_value(metadata)
    except InvalidSessionError:
        assert walk is not None
    else:
        assert walk is None
        assert all(not isinstance(v, float) or math.isfinite(v) for v in metadata.values())
