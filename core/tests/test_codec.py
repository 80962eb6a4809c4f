"""The codec: round trips, fields of a newer release, and hostile or corrupt payloads."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from core_testkit import DictBackend, factory_of, unpack_any

from sessionstore import (
    ENVELOPE_VERSION,
    MAX_RECORD_BYTES,
    MAX_RECORD_DEPTH,
    MAX_RECORD_ITEMS,
    CorruptRecordError,
    InvalidSessionError,
    ResponseMode,
    Session,
    SessionRecord,
    SessionStatus,
    TransportType,
    decode_session,
    encode_session,
    open_store,
)
from sessionstore.models import MAX_METADATA_ITEMS
from sessionstore_memory import create_backend

SID = "sid-1"


def known_fields(session_id: str = SID, **changes: Any) -> dict[str, Any]:
    """The fields this release writes, as they appear in an envelope."""
    fields: dict[str, Any] = {
        "id": session_id,
        "transport": "http",
        "response_mode": None,
        "upstream_session_id": None,
        "status": "active",
        "created_at": 1_700_000_000_000_000,
        "last_activity": 1_700_000_000_123_456,
        "metadata": {"k": "v"},
    }
    fields.update(changes)
    return fields


def envelope(fields: object, version: object = ENVELOPE_VERSION) -> bytes:
    payload: bytes = msgpack.packb([version, fields], use_bin_type=True)
    return payload


def record(payload: object, session_id: str = SID, version: int = 1) -> SessionRecord:
    return SessionRecord(session_id, version, None, payload)  # type: ignore[arg-type]


# -- round trips ----------------------------------------------------------------------------


def test_round_trip_of_every_enum_combination() -> None:
    combos = itertools.product(TransportType, [None, *ResponseMode], SessionStatus)
    for transport, mode, status in combos:
        session = Session(transport=transport, response_mode=mode, status=status)
        decoded = decode_session(record(encode_session(session), session.id, version=7))
        assert decoded.model_dump() == {**session.model_dump(), "version": 7}
        assert decoded.transport is transport
        assert decoded.status is status


def test_round_trip_keeps_unicode_metadata_and_microseconds() -> None:
    moment = datetime(1969, 7, 20, 20, 17, 40, 999999, tzinfo=timezone(timedelta(hours=-4)))
    session = Session(
        id="{weird}:*\\%",
        transport="stdio",
        upstream_session_id="up-\u0021~",
        created_at=moment,
        last_activity=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        metadata={
            "ünï": "🚀 çødé",
            "big": 2**64 - 1,
            "small": -(2**63),
            "pi": 3.141592653589793,
            "nested": {"l": [None, True, False, 0.0, "", {}, []]},
            "": "",
        },
    )
    decoded = decode_session(record(encode_session(session), session.id, version=3))
    assert decoded == session.model_copy(update={"version": 3})
    assert decoded.created_at == moment
    assert decoded.created_at.microsecond == 999999
    assert decoded.created_at.tzinfo is UTC
    assert type(decoded.metadata["big"]) is int


def test_round_trip_of_empty_and_large_metadata() -> None:
    empty = Session(transport="http")
    assert decode_session(record(encode_session(empty), empty.id)).metadata == {}
    large = Session(transport="http", metadata={f"k{i}": "v" * 100 for i in range(5000)})
    assert decode_session(record(encode_session(large), large.id)).metadata == large.metadata


def test_envelope_layout() -> None:
    session = Session(id=SID, transport="sse", response_mode="json", version=5)
    version, fields = unpack_any(encode_session(session))
    assert version == ENVELOPE_VERSION == 1
    assert "version" not in fields  # it lives in the record
    assert fields["transport"] == "sse"
    assert fields["response_mode"] == "json"
    micros = (session.created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert fields["created_at"] == micros


def test_version_comes_from_the_record() -> None:
    payload = encode_session(Session(id=SID, transport="http", version=9))
    assert decode_session(record(payload, version=2)).version == 2


# -- fields written by a newer release ------------------------------------------------------


def newer_release_payload() -> bytes:
    return envelope(known_fields(tenant="acme", quota={"max": 3, "raw": b"\x00\xff"}))


def test_unknown_fields_survive_decode_modify_encode() -> None:
    session = decode_session(record(newer_release_payload()))
    assert session.metadata == {"k": "v"}
    assert not hasattr(session, "tenant")
    session.metadata["seen"] = True
    session.status = SessionStatus.CLOSING
    _, fields = unpack_any(encode_session(session))
    assert fields["tenant"] == "acme"
    assert fields["quota"] == {"max": 3, "raw": b"\x00\xff"}
    assert fields["metadata"] == {"k": "v", "seen": True}
    assert fields["status"] == "closing"


def test_unknown_fields_are_not_shared_between_decoded_copies() -> None:
    with_extra = decode_session(record(newer_release_payload()))
    plain = decode_session(record(envelope(known_fields())))
    assert "tenant" in unpack_any(encode_session(with_extra))[1]
    assert "tenant" not in unpack_any(encode_session(plain))[1]
    fresh = Session(transport="http")
    assert set(unpack_any(encode_session(fresh))[1]) == set(known_fields())


async def test_unknown_fields_survive_modify_session_on_a_dict_backend(
    dict_backend: DictBackend,
) -> None:
    dict_backend.records[SID] = SessionRecord(SID, 1, None, newer_release_payload())
    async with open_store(factory_of(dict_backend)) as store:

        def change(session: Session) -> None:
            session.metadata["touched"] = 1

        result = await store.modify_session(SID, change)
    assert result.version == 2
    stored = dict_backend.records[SID]
    assert stored.version == 2
    _, fields = unpack_any(stored.payload)
    assert fields["tenant"] == "acme"
    assert fields["metadata"] == {"k": "v", "touched": 1}


async def test_unknown_fields_survive_modify_session_on_the_memory_backend() -> None:
    spec = f"memory://codec-{uuid.uuid4().hex}"
    backend = create_backend(spec, namespace="default")  # another handle on the same store
    now_ms = int(time.time() * 1000)
    backend.session_create(
        record=SessionRecord(SID, 1, None, newer_release_payload()), now_ms=now_ms
    )
    async with open_store(spec) as store:
        updated = await store.modify_session(
            SID, lambda s: s.model_copy(update={"status": SessionStatus.CLOSED})
        )
        assert updated.status is SessionStatus.CLOSED
        assert (await store.get_session(SID)).version == 2
    raw = backend.session_get(session_id=SID, now_ms=now_ms)
    assert raw is not None
    assert raw.version == 2
    _, fields = unpack_any(raw.payload)
    assert fields["tenant"] == "acme"
    assert fields["status"] == "closed"


# -- corrupt and hostile payloads -----------------------------------------------------------


def oversized_but_valid_envelope(size: int) -> bytes:
    """A well-formed envelope of exactly ``size`` bytes (padding in a metadata string)."""
    base = len(envelope(known_fields(metadata={"pad": ""})))
    padding = size - base - 4  # the str32 header of a long string is 4 bytes longer than fixstr
    payload = envelope(known_fields(metadata={"pad": "x" * padding}))
    assert len(payload) == size
    return payload


def test_payload_over_the_limit_is_refused_before_parsing() -> None:
    at_limit = oversized_but_valid_envelope(MAX_RECORD_BYTES)
    assert len(decode_session(record(at_limit)).metadata["pad"]) > MAX_RECORD_BYTES - 200
    over = oversized_but_valid_envelope(MAX_RECORD_BYTES + 1)
    with pytest.raises(CorruptRecordError, match=f"exceeds {MAX_RECORD_BYTES}") as info:
        decode_session(record(over))
    assert info.value.session_id == SID
    assert "msgpack" not in str(info.value)


def test_garbage_over_the_limit_is_refused_by_size() -> None:
    with pytest.raises(CorruptRecordError, match="exceeds"):
        decode_session(record(b"\xc1" * (MAX_RECORD_BYTES + 1)))


VALID = envelope(known_fields())

CORRUPT_PAYLOADS: dict[str, tuple[object, str]] = {
    "truncated": (VALID[:-7], "not a msgpack envelope"),
    "empty": (b"", "not a msgpack envelope"),
    "random bytes": (random.Random(20240501).randbytes(64), "not a msgpack envelope"),
    "trailing data": (VALID + b"\x00", "not a msgpack envelope"),
    "never-used byte": (b"\xc1", "not a msgpack envelope"),
    "bytearray": (bytearray(VALID), "payload is a bytearray, not bytes"),
    "memoryview": (memoryview(VALID), "payload is a memoryview, not bytes"),
    "str": (VALID.decode("latin-1"), "payload is a str, not bytes"),
    "none": (None, "payload is a NoneType, not bytes"),
    "ext type": (
        envelope(known_fields(metadata={"x": msgpack.ExtType(5, b"abc")})),
        "extension type 5",
    ),
    "ext type as unknown field": (
        envelope(known_fields(extra=msgpack.ExtType(42, b""))),
        "extension type 42",
    ),
    "timestamp ext in metadata": (
        envelope(known_fields(metadata={"t": msgpack.Timestamp(1, 0)})),
        "invalid session fields",
    ),
    "deep nesting": (b"\x91" * 100_000 + b"\xc0", "not a msgpack envelope"),
    "str32 of 4 GiB declared": (b"\xdb\xff\xff\xff\xff", "not a msgpack envelope"),
    "array32 of 4G items declared": (b"\xdd\xff\xff\xff\xff", "not a msgpack envelope"),
    "map32 of 4G items declared": (b"\xdf\xff\xff\xff\xff", "not a msgpack envelope"),
    "bin32 of 4 GiB declared": (b"\xc6\xff\xff\xff\xff" + b"x" * 10, "not a msgpack envelope"),
    "integer map key": (envelope({1: 2}), "not a msgpack envelope"),
    "not an array": (msgpack.packb({"id": SID}), "not a [version, fields] envelope"),
    "three elements": (msgpack.packb([1, known_fields(), 3]), "not a [version, fields] envelope"),
    "fields not a map": (envelope([1, 2]), "envelope fields are not a map"),
    "version 0": (envelope(known_fields(), version=0), "unknown envelope version 0"),
    "version as text": (envelope(known_fields(), version="1"), "unknown envelope version '1'"),
    "missing timestamp": (
        envelope({k: v for k, v in known_fields().items() if k != "created_at"}),
        "bad timestamp",
    ),
    "text timestamp": (envelope(known_fields(created_at="2024-01-01")), "bad timestamp"),
    "float timestamp": (envelope(known_fields(last_activity=1.5)), "bad timestamp"),
    "timestamp past year 9999": (envelope(known_fields(created_at=2**62)), "bad timestamp"),
    "unknown transport": (envelope(known_fields(transport="pigeon")), "invalid session fields"),
    "invalid metadata": (envelope(known_fields(metadata={"a": float("nan")})), "invalid session"),
    "metadata not a map": (envelope(known_fields(metadata=[1])), "invalid session fields"),
    "invalid id in payload": (envelope(known_fields(session_id="a b")), "invalid session fields"),
    "binary id": (envelope(known_fields(session_id=SID.encode())), "invalid session fields"),
    "another session's payload": (
        envelope(known_fields(session_id="someone-else")),
        "payload belongs to session 'someone-else'",
    ),
}


@pytest.mark.parametrize(
    ("payload", "reason"), CORRUPT_PAYLOADS.values(), ids=list(CORRUPT_PAYLOADS)
)
def test_corrupt_payloads_raise_corrupt_record_error_naming_the_id(
    payload: object, reason: str
) -> None:
    with pytest.raises(CorruptRecordError) as info:
        decode_session(record(payload))
    assert info.value.session_id == SID
    assert f"session {SID!r}" in str(info.value)
    assert reason in info.value.reason
    assert info.value.__cause__ is None  # the message says it; no parser internals chained


def test_newer_envelope_version_says_to_upgrade() -> None:
    with pytest.raises(CorruptRecordError) as info:
        decode_session(record(envelope(known_fields(), version=ENVELOPE_VERSION + 1)))
    assert "envelope version 2" in str(info.value)
    assert "upgrade sessionstore" in str(info.value)


def test_valid_reference_payload_decodes() -> None:
    # The corrupt cases above are variations of this payload: it must itself be fine.
    session = decode_session(record(VALID))
    assert session.id == SID
    assert session.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert session.last_activity.microsecond == 123456


async def test_store_reports_corrupt_records_by_id(dict_backend: DictBackend) -> None:
    dict_backend.records["bad"] = SessionRecord("bad", 1, None, b"\x93garbage")
    async with open_store(factory_of(dict_backend)) as store:
        good = await store.create_session(Session(id="good", transport="http"))
        assert good.version == 1
        for read in (
            store.get_session("bad"),
            store.get_sessions_batch(["good", "bad"]),
            store.list_sessions(),
            store.modify_session("bad", lambda s: None),
        ):
            with pytest.raises(CorruptRecordError, match="'bad'"):
                await read
        assert (await store.get_session("good")).id == "good"
    assert dict_backend.records["bad"].payload == b"\x93garbage"  # nothing rewrote it


# -- encoding refusals ----------------------------------------------------------------------


def test_encode_refuses_metadata_mutated_into_non_json() -> None:
    session = Session(id=SID, transport="http", metadata={"ok": [1]})
    session.metadata["ok"].append(float("nan"))
    with pytest.raises(InvalidSessionError, match=r"metadata\['ok'\]\[1\] is nan"):
        encode_session(session)
    session.metadata["ok"] = [{1, 2}]
    with pytest.raises(InvalidSessionError, match="holds a set"):
        encode_session(session)


def test_encode_refuses_sessions_over_the_limit() -> None:
    session = Session(id=SID, transport="http", metadata={"blob": "x" * MAX_RECORD_BYTES})
    with pytest.raises(InvalidSessionError, match=f"the limit is {MAX_RECORD_BYTES}") as info:
        encode_session(session)
    assert repr(SID) in str(info.value)


async def test_store_writes_nothing_when_encoding_fails() -> None:
    async with open_store("memory") as store:
        bad = Session(id="bad", transport="http")
        bad.metadata["x"] = {b"bytes"}
        with pytest.raises(InvalidSessionError):
            await store.create_session(bad)
        assert bad.version == 0
        assert await store.count_sessions() == 0

        big = Session(id="big", transport="http", metadata={"b": "x" * (MAX_RECORD_BYTES + 1)})
        with pytest.raises(InvalidSessionError, match="limit"):
            await store.create_session(big)
        assert await store.count_sessions() == 0

        stored = await store.create_session(Session(id="s", transport="http", metadata={"n": 1}))
        stored.metadata["n"] = float("inf")
        with pytest.raises(InvalidSessionError, match=r"metadata\['n'\] is inf"):
            await store.update_session(stored)
        assert stored.version == 1
        again = await store.get_session("s")
        assert (again.version, again.metadata) == (1, {"n": 1})
        other = await store.create_session(Session(id="t", transport="http"))
        other.metadata["bad"] = float("nan")
        with pytest.raises(InvalidSessionError, match=r"metadata\['bad'\] is nan"):
            await store.update_sessions_batch([again, other])
        assert (again.version, other.version) == (1, 1)
        assert [s.version for s in await store.get_sessions_batch(["s", "t"])] == [1, 1]


# -- bounds on values and nesting, not only bytes (issue 14, item 8) -----------------------

ENVELOPE_ITEMS = 2 + len(known_fields()) + 1 + 1
"""Values in lists and maps of ``envelope(known_fields(extra=[]))``: the envelope's two, the
fields, the extra field, and the one entry of the reference metadata."""


def with_extra(extra: object) -> bytes:
    return envelope(known_fields(extra=extra))


def nested(depth: int) -> object:
    """``depth`` levels of lists: ``nested(1) == []``, ``nested(2) == [[]]``."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_values_up_to_the_record_limit_decode_and_encode_back() -> None:
    payload = with_extra([0] * (MAX_RECORD_ITEMS - ENVELOPE_ITEMS))
    session = decode_session(record(payload))
    assert unpack_any(encode_session(session)) == unpack_any(payload)


def test_one_value_over_the_record_limit_is_refused() -> None:
    payload = with_extra([0] * (MAX_RECORD_ITEMS - ENVELOPE_ITEMS + 1))
    with pytest.raises(CorruptRecordError, match=f"more than {MAX_RECORD_ITEMS} values"):
        decode_session(record(payload))


def test_nesting_up_to_the_record_limit_decodes_and_encodes_back() -> None:
    payload = with_extra(nested(MAX_RECORD_DEPTH - 2))  # inside the envelope and its fields
    session = decode_session(record(payload))
    assert unpack_any(encode_session(session)) == unpack_any(payload)


def test_one_level_over_the_record_depth_is_refused() -> None:
    with pytest.raises(CorruptRecordError, match=f"deeper than {MAX_RECORD_DEPTH} levels"):
        decode_session(record(with_extra(nested(MAX_RECORD_DEPTH - 1))))
    with pytest.raises(CorruptRecordError, match=f"deeper than {MAX_RECORD_DEPTH} levels"):
        decode_session(record(with_extra({"a": nested(MAX_RECORD_DEPTH - 2)})))


def test_metadata_up_to_its_limit_round_trips_and_one_more_value_is_refused() -> None:
    values = {f"k{i}": [0] for i in range(MAX_METADATA_ITEMS // 2)}  # an entry and an item each
    session = Session(id=SID, transport="http", metadata=values)
    assert decode_session(record(encode_session(session))).metadata == values
    with pytest.raises(ValueError, match=f"more than {MAX_METADATA_ITEMS} values"):
        Session(id=SID, transport="http", metadata={**values, "one": 1})
    session.metadata["one"] = 1  # mutated in place: no validation until it is encoded
    with pytest.raises(InvalidSessionError, match=f"more than {MAX_METADATA_ITEMS} values"):
        encode_session(session)


def test_encode_refuses_what_decode_would_refuse() -> None:
    at_limit = decode_session(record(with_extra([0] * (MAX_RECORD_ITEMS - ENVELOPE_ITEMS))))
    at_limit.metadata["one more"] = 1
    with pytest.raises(InvalidSessionError, match=f"more than {MAX_RECORD_ITEMS} values"):
        encode_session(at_limit)


def test_encode_refuses_two_million_metadata_keys_quickly() -> None:
    session = Session(id=SID, transport="http")
    session.metadata.update((f"{i:x}", 0) for i in range(2_000_000))  # no validation here
    started = time.perf_counter()
    with pytest.raises(InvalidSessionError, match=f"more than {MAX_METADATA_ITEMS} values"):
        encode_session(session)
    assert time.perf_counter() - started < 2.0  # before the bound: written, 14 MB, in 0.4 s


# What a hostile 16 MiB record costs to decode, measured in a fresh process: peak RSS is per
# process, and the figure must not include what the test runner already holds.
_MEASURE = """
import json, resource, sys, time
import msgpack
from sessionstore import CorruptRecordError, MAX_RECORD_BYTES, SessionRecord, decode_session

kind = sys.argv[1]
fields = {"id": "sid-1", "transport": "http", "response_mode": None,
          "upstream_session_id": None, "status": "active", "created_at": 0,
          "last_activity": 0, "metadata": {}}
if kind == "million-keys":  # a valid envelope of 2 million distinct metadata keys
    keys = b"".join(b"\\xa6%06x\\x00" % i for i in range(2_000_000))  # fixstr(6), then 0
    base = msgpack.packb([1, fields])
    assert base.endswith(b"\\x80")
    payload = base[:-1] + b"\\xdf" + (2_000_000).to_bytes(4, "big") + keys
else:
    base = msgpack.packb([1, {**fields, "x": []}])
    assert base.endswith(b"\\x90")
    room = MAX_RECORD_BYTES - len(base) - 5
    if kind == "flat":  # one array of 16 million empty arrays
        body = b"\\xdd" + room.to_bytes(4, "big") + b"\\x90" * room
    elif kind == "chunked":  # arrays of 65,535 empty maps, each under any per-array limit
        chunk = b"\\xdc\\xff\\xff" + b"\\x80" * 65535
        count = room // len(chunk)
        body = b"\\xdd" + count.to_bytes(4, "big") + chunk * count
    else:  # maps of 32,767 entries of tiny keys holding empty arrays
        keys = [msgpack.packb(f"{i:x}") for i in range(32767)]
        chunk = b"\\xde\\x7f\\xff" + b"".join(key + b"\\x90" for key in keys)
        count = room // len(chunk)
        body = b"\\xdd" + count.to_bytes(4, "big") + chunk * count
    payload = base[:-1] + body
assert len(payload) <= MAX_RECORD_BYTES, len(payload)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    decode_session(SessionRecord("sid-1", 1, None, payload))
    outcome = "decoded"
except CorruptRecordError as exc:
    outcome = "refused: " + exc.reason
seconds = time.perf_counter() - started
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"outcome": outcome, "seconds": seconds, "mib": grown}))
"""


@pytest.mark.parametrize("kind", ["flat", "chunked", "maps", "million-keys"])
def test_a_hostile_record_is_refused_quickly_without_amplifying_memory(kind: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _MEASURE, kind],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    measured = json.loads(ran.stdout)
    assert measured["outcome"].startswith("refused: "), measured
    assert "values" in measured["outcome"], measured
    assert measured["seconds"] < 2.0, measured  # 12.6 s for "flat" before the bounds
    assert measured["mib"] < 64, measured  # 1,155 MiB for "flat" before the bounds
