"""The Session model: defaults, id rules, assignment validation, datetimes and metadata."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sessionstore import (
    InvalidSessionError,
    ResponseMode,
    Session,
    SessionStatus,
    TransportType,
    new_session_id,
    validate_session_id,
)
from sessionstore.models import MAX_METADATA_DEPTH, MAX_SESSION_ID_LENGTH, check_json_value

VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def nested_lists(levels: int) -> object:
    """``levels`` lists, each inside the previous one: 1 -> [], 2 -> [[]]."""
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


# -- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    before = datetime.now(UTC)
    session = Session(transport=TransportType.HTTP)
    after = datetime.now(UTC)
    assert session.version == 0
    assert session.status is SessionStatus.ACTIVE
    assert session.response_mode is None
    assert session.upstream_session_id is None
    assert session.metadata == {}
    assert before <= session.created_at <= after
    assert before <= session.last_activity <= after
    assert session.created_at.tzinfo is UTC


def test_generated_id_is_33_url_safe_characters() -> None:
    session_id = Session(transport="stdio").id
    assert len(session_id) == 33
    assert set(session_id) <= set(string.ascii_letters + string.digits + "-_")
    assert validate_session_id(session_id) == session_id


def test_generated_ids_never_start_with_a_dash_and_keep_192_bits() -> None:
    """An id starting with ``-`` reads as an option on a command line; about 1 in 64 of the old
    ids did, so 20,000 of them all but surely held one (chance of none: (63/64)**20000)."""
    ids = [new_session_id() for _ in range(20_000)]
    assert not [i for i in ids if i.startswith("-")]
    # Every character after the first is drawn from all 64 (6 bits each, 32 of them: 192 bits),
    # and the first from the 63 others: each shows up among 20,000 draws.
    url_safe = set(string.ascii_letters + string.digits + "-_")
    assert {i[0] for i in ids} == url_safe - {"-"}
    for position in (1, 16, 32):
        assert {i[position] for i in ids} == url_safe
    assert {len(i) for i in ids} == {33}


def test_generated_ids_are_unique() -> None:
    ids = {Session(transport=TransportType.SSE).id for _ in range(1000)}
    ids |= {new_session_id() for _ in range(1000)}
    assert len(ids) == 2000


def test_metadata_default_is_not_shared() -> None:
    first, second = Session(transport="http"), Session(transport="http")
    first.metadata["k"] = 1
    assert second.metadata == {}


def test_enums_are_parsed_from_their_values() -> None:
    session = Session(transport="sse", response_mode="sse_stream", status="closing")
    assert session.transport is TransportType.SSE
    assert session.response_mode is ResponseMode.SSE_STREAM
    assert session.status is SessionStatus.CLOSING


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="tenant"):
        Session(transport="http", tenant="x")  # type: ignore[call-arg]


def test_version_cannot_be_negative() -> None:
    with pytest.raises(ValidationError, match="version"):
        Session(transport="http", version=-1)


# -- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_id", "problem"),
    [
        ("", "must not be empty"),
        ("has space", "visible ASCII"),
        (" ", "visible ASCII"),
        ("tab\there", "visible ASCII"),
        ("nul\x00", "visible ASCII"),
        ("newline\n", "visible ASCII"),
        ("del\x7f", "visible ASCII"),
        ("caf\u00e9", "visible ASCII"),
        ("\u00a0nbsp", "visible ASCII"),
        ("x" * 256, "256 characters long; the limit is 255"),
        (b"bytes-id", "must be a str, not bytes"),
        (12345, "must be a str, not int"),
        (["list"], "must be a str, not list"),
    ],
)
def test_invalid_ids_are_refused_naming_the_problem(bad_id: object, problem: str) -> None:
    with pytest.raises(InvalidSessionError, match=re.escape(problem)) as info:
        validate_session_id(bad_id)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match=r"\bid\b"):
        Session(id=bad_id, transport="http")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upstream_session_id"):
        Session(transport="http", upstream_session_id=bad_id)  # type: ignore[arg-type]


def test_invalid_id_message_shows_control_characters_and_the_role() -> None:
    with pytest.raises(InvalidSessionError) as info:
        validate_session_id("a\x00b", what="upstream id")
    assert "'a\\x00b'" in str(info.value)
    assert str(info.value).startswith("upstream id ")


def test_long_invalid_id_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidSessionError) as info:
        validate_session_id("y" * 1000)
    assert len(str(info.value)) < 200
    assert "1000 characters" in str(info.value)


@pytest.mark.parametrize(
    "good_id",
    [
        "*",
        "{",
        "}",
        "\\",
        "?",
        "[",
        ":",
        "%",
        "a" * MAX_SESSION_ID_LENGTH,
        VISIBLE_ASCII,
        (VISIBLE_ASCII * 3)[:255],
        "{user}:*",
    ],
)
def test_strange_but_valid_ids_are_accepted(good_id: str) -> None:
    assert validate_session_id(good_id) == good_id
    assert Session(id=good_id, transport="http").id == good_id
    assert Session(transport="http", upstream_session_id=good_id).upstream_session_id == good_id


def test_id_is_validated_on_assignment() -> None:
    session = Session(id="good", transport="http")
    with pytest.raises(ValueError, match="visible ASCII"):
        session.id = "not good"
    assert session.id == "good"


# -- assignment -----------------------------------------------------------------------------


def test_bad_response_mode_assignment_raises_and_keeps_the_old_value() -> None:
    session = Session(transport="http", response_mode=ResponseMode.JSON)
    with pytest.raises(ValidationError, match="response_mode"):
        session.response_mode = "bogus"  # type: ignore[assignment]
    assert session.response_mode is ResponseMode.JSON
    session.response_mode = "passthrough"  # type: ignore[assignment]
    assert session.response_mode is ResponseMode.PASSTHROUGH


def test_bad_status_and_transport_assignments_raise() -> None:
    session = Session(transport="http")
    with pytest.raises(ValidationError):
        session.status = "sleeping"  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        session.transport = "carrier-pigeon"  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        session.version = -5
    assert session.status is SessionStatus.ACTIVE
    assert session.version == 0


# -- datetimes ------------------------------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2024, 5, 1, 12, 0)
    with pytest.raises(ValidationError, match="created_at"):
        Session(transport="http", created_at=naive)
    session = Session(transport="http")
    with pytest.raises(ValidationError, match="last_activity"):
        session.last_activity = naive


def test_aware_datetimes_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=plus_two)
    session = Session(transport="http", created_at=local, last_activity=local)
    assert session.created_at == local
    assert session.created_at.tzinfo is UTC
    assert (session.created_at.hour, session.created_at.microsecond) == (10, 123456)
    session.last_activity = datetime(2024, 5, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert session.last_activity.tzinfo is UTC
    assert (session.last_activity.day, session.last_activity.hour) == (2, 4)


def test_datetime_out_of_range_in_utc_is_refused() -> None:
    edge = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValueError, match="out of range"):
        Session(transport="http", created_at=edge)


def test_touch_moves_last_activity_only() -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    session = Session(transport="http", created_at=old, last_activity=old)
    before = datetime.now(UTC)
    session.touch()
    assert before <= session.last_activity <= datetime.now(UTC)
    assert session.last_activity.tzinfo is UTC
    assert session.created_at == old


# -- metadata -------------------------------------------------------------------------------


def test_json_metadata_is_accepted() -> None:
    metadata = {
        "s": "ünïcødé ✓",
        "i": 2**64 - 1,
        "neg": -(2**63),
        "f": 1.5,
        "b": True,
        "n": None,
        "l": [1, "x", {"k": [None]}],
        "": {},
    }
    assert Session(transport="http", metadata=metadata).metadata == metadata


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"a": float("nan")}, "metadata['a'] is nan"),
        ({"a": [float("inf")]}, "metadata['a'][0] is inf"),
        ({"a": {"b": -float("inf")}}, "metadata['a']['b'] is -inf"),
        ({"a": 2**64}, "metadata['a'] is an integer outside [-2**63, 2**64-1]"),
        ({"a": [0, -(2**63) - 1]}, "metadata['a'][1] is an integer outside"),
        ({"a": {1: "x"}}, "metadata['a'] has a key 1 that is not a str"),
        ({"a": [{"b": {None: 1}}]}, "metadata['a'][0]['b'] has a key None"),
        ({"a": {1, 2}}, "metadata['a'] holds a set"),
        ({"a": [b"raw"]}, "metadata['a'][0] holds a bytes"),
        ({"a": {"b": object()}}, "metadata['a']['b'] holds a object"),
        ({"a": (1, 2)}, "metadata['a'] holds a tuple"),
        ({"a": datetime(2024, 1, 1, tzinfo=UTC)}, "metadata['a'] holds a datetime"),
    ],
)
def test_non_json_metadata_is_refused_naming_the_path(metadata: object, message: str) -> None:
    with pytest.raises(InvalidSessionError, match=re.escape(message)):
        check_json_value(metadata)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Session(transport="http", metadata=metadata)  # type: ignore[arg-type]
    session = Session(transport="http", metadata={"ok": 1})
    with pytest.raises(ValidationError, match=re.escape(message)):
        session.metadata = metadata  # type: ignore[assignment]
    assert session.metadata == {"ok": 1}


def test_top_level_non_string_key_is_refused() -> None:
    with pytest.raises(ValueError, match="metadata"):
        Session(transport="http", metadata={1: "x"})  # type: ignore[dict-item]


def test_metadata_nesting_limit() -> None:
    # metadata itself is the first level, so MAX_METADATA_DEPTH - 1 more lists fit.
    deepest = {"a": nested_lists(MAX_METADATA_DEPTH - 1)}
    assert Session(transport="http", metadata=deepest).metadata == deepest
    too_deep = {"a": nested_lists(MAX_METADATA_DEPTH)}
    with pytest.raises(ValidationError, match=f"nests deeper than {MAX_METADATA_DEPTH} levels"):
        Session(transport="http", metadata=too_deep)


def test_self_referencing_metadata_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidSessionError, match="nests deeper"):
        check_json_value({"loop": loop})


def test_check_json_value_names_the_place() -> None:
    with pytest.raises(InvalidSessionError, match=r"^payload\[2\] is nan"):
        check_json_value([1, 2, float("nan")], where="payload")
