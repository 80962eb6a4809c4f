"""The SessionStore facade: semantics of every operation, validation, expiry and closing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from core_testkit import DictBackend, factory_of

from sessionstore import (
    MAX_BATCH_SIZE,
    MAX_DEADLINE_MS,
    MAX_RECORD_BYTES,
    BackendError,
    ConflictError,
    EventNotFoundError,
    InvalidSessionError,
    OperationMiddleware,
    ResponseMode,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    SessionStatus,
    SessionStore,
    StoreClosedError,
    TransportType,
    hookimpl,
    open_store,
)
from sessionstore.store import MAX_EVENT_ID_LENGTH, MAX_STREAM_ID_LENGTH


def new(session_id: str, **fields: Any) -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, **fields)


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- create / get / update / delete ---------------------------------------------------------


async def test_create_returns_the_same_object_at_version_1(store: SessionStore) -> None:
    session = new("s1", metadata={"a": 1})
    created = await store.create_session(session)
    assert created is session
    assert created.version == 1
    fetched = await store.get_session("s1")
    assert fetched is not session
    assert fetched == session


async def test_create_stores_version_1_whatever_the_object_says(store: SessionStore) -> None:
    session = new("s1", version=41)
    assert (await store.create_session(session)).version == 1
    assert (await store.get_session("s1")).version == 1


async def test_create_existing_id_raises_and_keeps_the_first(store: SessionStore) -> None:
    await store.create_session(new("dup", metadata={"first": True}))
    second = new("dup", metadata={"first": False})
    with pytest.raises(SessionExistsError) as info:
        await store.create_session(second)
    assert info.value.session_id == "dup"
    assert second.version == 0
    assert (await store.get_session("dup")).metadata == {"first": True}


async def test_get_returns_a_fresh_copy_each_time(store: SessionStore) -> None:
    await store.create_session(new("s"))
    first, second = await store.get_session("s"), await store.get_session("s")
    first.metadata["changed"] = True
    assert second.metadata == {}
    assert (await store.get_session("s")).metadata == {}


async def test_get_missing_raises_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError) as info:
        await store.get_session("nobody")
    assert info.value.session_id == "nobody"


async def test_update_bumps_the_version_of_the_same_object(store: SessionStore) -> None:
    session = await store.create_session(new("s"))
    session.response_mode = ResponseMode.SSE_STREAM
    session.metadata["step"] = 1
    updated = await store.update_session(session)
    assert updated is session
    assert updated.version == 2
    again = await store.update_session(session)
    assert again.version == 3
    stored = await store.get_session("s")
    assert stored.version == 3
    assert stored.response_mode is ResponseMode.SSE_STREAM
    assert stored.metadata == {"step": 1}


async def test_two_writers_of_the_same_version_cannot_both_win(store: SessionStore) -> None:
    await store.create_session(new("s"))
    first, second = await store.get_session("s"), await store.get_session("s")
    first.metadata["who"] = "first"
    second.metadata["who"] = "second"
    await store.update_session(first)
    with pytest.raises(ConflictError) as info:
        await store.update_session(second)
    assert info.value.session_ids == ("s",)
    assert second.version == 1  # not bumped: nothing was written
    stored = await store.get_session("s")
    assert (stored.version, stored.metadata) == (2, {"who": "first"})


async def test_update_of_missing_or_never_stored_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.update_session(new("ghost"))
    await store.create_session(new("s"))
    with pytest.raises(ConflictError):
        await store.update_session(new("s"))  # version 0: never read from the store


async def test_delete(store: SessionStore) -> None:
    await store.create_session(new("s"))
    await store.store_last_event_id("s", "ev-1")
    assert await store.delete_session("s") is True
    assert await store.delete_session("s") is False
    with pytest.raises(SessionNotFoundError):
        await store.get_session("s")
    with pytest.raises(SessionNotFoundError):
        await store.get_last_event_id("s")
    recreated = await store.create_session(new("s"))
    assert recreated.version == 1
    assert await store.get_last_event_id("s") is None


@pytest.mark.parametrize(
    "session_id", ["*", "?", "[", "{", "}", ":", "\\", "%", "a" * 255, "user:{1}*[x]"]
)
async def test_strange_ids_reach_only_their_own_session(
    store: SessionStore, session_id: str
) -> None:
    await store.create_session(new("a", metadata={"who": "a"}))
    await store.create_session(new(session_id, metadata={"who": session_id}))
    assert (await store.get_session(session_id)).metadata == {"who": session_id}
    assert (await store.get_session("a")).metadata == {"who": "a"}
    assert await store.delete_session(session_id)
    assert await store.count_sessions() == 1


# -- listing --------------------------------------------------------------------------------


async def test_count_list_and_iter(store: SessionStore) -> None:
    assert await store.count_sessions() == 0
    assert await store.list_sessions() == []
    ids = {f"s{i}" for i in range(7)}
    for session_id in ids:
        await store.create_session(new(session_id))
    assert await store.count_sessions() == 7
    assert {s.id for s in await store.list_sessions()} == ids
    seen = [s.id async for s in store.iter_sessions()]
    assert sorted(seen) == sorted(ids)


async def test_iter_sessions_pages_with_page_size(dict_backend: DictBackend) -> None:
    async with open_store(factory_of(dict_backend), page_size=3) as store:
        for i in range(7):
            await store.create_session(new(f"s{i}"))
        dict_backend.calls.clear()
        listed = [s.id async for s in store.iter_sessions()]
    assert listed == [f"s{i}" for i in range(7)]
    assert dict_backend.calls.count("session_page") == 3


async def test_namespaces_are_isolated() -> None:
    spec = f"memory://ns-{uuid.uuid4().hex}"
    async with open_store(spec, namespace="one") as one, open_store(spec, namespace="two") as two:
        await one.create_session(new("same-id", metadata={"ns": 1}))
        await two.create_session(new("same-id", metadata={"ns": 2}))
        await two.create_session(new("only-two"))
        assert (await one.get_session("same-id")).metadata == {"ns": 1}
        assert await one.count_sessions() == 1
        assert await two.count_sessions() == 2
        await one.clear()
        assert await one.count_sessions() == 0
        assert await two.count_sessions() == 2
    async with open_store(spec, namespace="two") as again:
        assert (await again.get_session("same-id")).metadata == {"ns": 2}


# -- batches --------------------------------------------------------------------------------


async def test_get_sessions_batch_keeps_request_order_and_skips_missing(
    dict_backend: DictBackend,
) -> None:
    async with open_store(factory_of(dict_backend)) as store:
        for session_id in ("a", "b", "c"):
            await store.create_session(new(session_id))
        dict_backend.calls.clear()
        batch = await store.get_sessions_batch(["c", "missing", "a", "c"])
        assert [s.id for s in batch] == ["c", "a", "c"]
        assert dict_backend.calls == ["session_get_many"]  # one round trip
        assert await store.get_sessions_batch([]) == []
        assert dict_backend.calls == ["session_get_many"]
        assert await store.get_sessions_batch(("zz",)) == []


@pytest.mark.parametrize("bad", ["abc", b"abc", ["ok", "not ok"], ["ok", 3]])
async def test_get_sessions_batch_refuses_bad_ids(store: SessionStore, bad: Any) -> None:
    with pytest.raises(InvalidSessionError):
        await store.get_sessions_batch(bad)


async def test_update_sessions_batch(store: SessionStore) -> None:
    a = await store.create_session(new("a"))
    b = await store.create_session(new("b"))
    a.status = SessionStatus.CLOSING
    b.metadata["x"] = 1
    result = await store.update_sessions_batch([b, a])
    assert [s.id for s in result] == ["b", "a"]
    assert result[0] is b
    assert result[1] is a
    assert (a.version, b.version) == (2, 2)
    assert (await store.get_session("a")).status is SessionStatus.CLOSING
    assert (await store.get_session("b")).metadata == {"x": 1}
    assert await store.update_sessions_batch([]) == []


async def test_update_sessions_batch_names_every_stale_id_and_writes_nothing(
    store: SessionStore,
) -> None:
    for session_id in ("a", "b", "c"):
        await store.create_session(new(session_id))
    stale_a, stale_c = await store.get_session("a"), await store.get_session("c")
    await store.update_session(await store.get_session("a"))
    await store.update_session(await store.get_session("c"))
    fresh_b = await store.get_session("b")
    fresh_b.metadata["lost"] = True
    with pytest.raises(ConflictError) as info:
        await store.update_sessions_batch([stale_a, fresh_b, stale_c])
    assert set(info.value.session_ids) == {"a", "c"}
    assert fresh_b.version == 1
    stored_b = await store.get_session("b")
    assert (stored_b.version, stored_b.metadata) == (1, {})


async def test_update_sessions_batch_names_every_missing_id(store: SessionStore) -> None:
    present = await store.create_session(new("here"))
    with pytest.raises(SessionNotFoundError) as info:
        await store.update_sessions_batch([new("gone1"), present, new("gone2")])
    assert info.value.session_ids == ("gone1", "gone2")
    assert (await store.get_session("here")).version == 1


async def test_update_sessions_batch_refuses_duplicate_ids(store: SessionStore) -> None:
    session = await store.create_session(new("twice"))
    copy = await store.get_session("twice")
    copy.metadata["copy"] = True
    with pytest.raises(InvalidSessionError, match="'twice' appears twice"):
        await store.update_sessions_batch([session, copy])
    assert (await store.get_session("twice")).version == 1
    with pytest.raises(InvalidSessionError, match="expected a Session"):
        await store.update_sessions_batch([session, {"id": "x"}])  # type: ignore[list-item]


async def test_batches_beyond_max_batch_size(dict_backend: DictBackend) -> None:
    """An update batch over MAX_BATCH_SIZE is refused before the backend; a longer read batch is
    split into hook calls of at most MAX_BATCH_SIZE distinct ids."""
    calls: list[int] = []

    class Counting(OperationMiddleware):
        @hookimpl(wrapper=True)
        def session_get_many(self, session_ids: Any, now_ms: int) -> Any:
            calls.append(len(session_ids))
            return (yield)

    async with open_store(factory_of(dict_backend), middleware=[Counting()]) as store:
        await store.create_session(new("last"))
        too_many = [new(f"s{n}", version=1) for n in range(MAX_BATCH_SIZE + 1)]
        with pytest.raises(InvalidSessionError, match="MAX_BATCH_SIZE"):
            await store.update_sessions_batch(too_many)
        assert "session_update_many" not in dict_backend.calls
        ids = [f"s{n}" for n in range(MAX_BATCH_SIZE + 5)] + ["s0", "last"]
        found = await store.get_sessions_batch(ids)
        assert [s.id for s in found] == ["last"]
        assert calls == [MAX_BATCH_SIZE, 6]


async def test_load_refuses_a_deadline_beyond_max_deadline_ms(store: SessionStore) -> None:
    await store.create_session(new("moved"))
    dump = await store.dump_session("moved")
    await store.delete_session("moved")
    for deadline in (MAX_DEADLINE_MS + 1, -1):
        bad = dump._replace(record=dump.record._replace(deadline_ms=deadline))
        with pytest.raises(InvalidSessionError, match="deadline_ms"):
            await store.load_session(bad)
    latest = dump._replace(record=dump.record._replace(deadline_ms=MAX_DEADLINE_MS))
    assert await store.load_session(latest) is True


# -- modify_session -------------------------------------------------------------------------


async def test_modify_session_in_place(store: SessionStore) -> None:
    await store.create_session(new("m", metadata={"n": 0}))

    def bump(session: Session) -> None:
        session.metadata["n"] += 1

    first = await store.modify_session("m", bump)
    second = await store.modify_session("m", bump)
    assert (first.version, second.version) == (2, 3)
    assert (await store.get_session("m")).metadata == {"n": 2}


async def test_modify_session_with_a_replacement(store: SessionStore) -> None:
    await store.create_session(new("m"))
    result = await store.modify_session(
        "m", lambda s: Session(id="m", transport=TransportType.STDIO, metadata={"new": 1})
    )
    assert result.version == 2
    stored = await store.get_session("m")
    assert stored.transport is TransportType.STDIO
    assert stored.metadata == {"new": 1}


async def test_modify_session_with_an_async_function(store: SessionStore) -> None:
    await store.create_session(new("m"))

    async def close(session: Session) -> Session:
        session.status = SessionStatus.CLOSED
        return session

    assert (await store.modify_session("m", close)).status is SessionStatus.CLOSED
    assert (await store.get_session("m")).status is SessionStatus.CLOSED


@pytest.mark.parametrize(
    "fn",
    [
        lambda s: Session(id="other", transport="http"),
        lambda s: setattr(s, "id", "other"),  # changes the id in place
        lambda s: 42,
        lambda s: {"id": "m"},
    ],
    ids=["other-id", "id-changed-in-place", "int", "dict"],
)
async def test_modify_session_refuses_anything_but_the_same_session(
    store: SessionStore, fn: Any
) -> None:
    await store.create_session(new("m", metadata={"v": 1}))
    await store.create_session(new("other", metadata={"v": "other"}))
    with pytest.raises(InvalidSessionError, match="'m'"):
        await store.modify_session("m", fn)
    assert (await store.get_session("m")).version == 1
    other = await store.get_session("other")
    assert (other.version, other.metadata) == (1, {"v": "other"})


async def test_modify_session_propagates_errors_of_fn_and_writes_nothing(
    store: SessionStore,
) -> None:
    await store.create_session(new("m"))

    def explode(session: Session) -> None:
        session.metadata["half"] = "done"
        raise LookupError("no quota")

    with pytest.raises(LookupError, match="no quota"):
        await store.modify_session("m", explode)
    stored = await store.get_session("m")
    assert (stored.version, stored.metadata) == (1, {})


async def test_modify_missing_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.modify_session("nobody", lambda s: None)
    with pytest.raises(InvalidSessionError):
        await store.modify_session("bad id", lambda s: None)


async def test_modify_session_retries_after_conflicts() -> None:
    async with open_store("memory") as store:
        await store.create_session(new("m", metadata={"mine": 0}))
        calls = 0

        async def contended(session: Session) -> None:
            nonlocal calls
            calls += 1
            if calls <= 2:  # another writer wins the first two rounds
                rival = await store.get_session("m")
                rival.metadata["rival"] = calls
                await store.update_session(rival)
            session.metadata["mine"] += 1

        result = await store.modify_session("m", contended)
    assert calls == 3
    assert result.version == 4
    assert result.metadata == {"mine": 1, "rival": 2}  # built on the rival's last write


async def test_modify_session_gives_up_after_modify_attempts() -> None:
    async with open_store("memory", modify_attempts=4) as store:
        await store.create_session(new("m"))
        calls = 0

        async def always_beaten(session: Session) -> None:
            nonlocal calls
            calls += 1
            rival = await store.get_session("m")
            await store.update_session(rival)
            session.metadata["mine"] = True

        with pytest.raises(ConflictError, match="gave up after 4 attempts") as info:
            await store.modify_session("m", always_beaten)
        assert info.value.session_id == "m"
        assert calls == 4
        stored = await store.get_session("m")
        assert stored.version == 1 + 4  # only the rival's writes
        assert "mine" not in stored.metadata


# -- last event id --------------------------------------------------------------------------


async def test_last_event_id_leaves_the_version_alone(store: SessionStore) -> None:
    session = await store.create_session(new("s"))
    assert await store.get_last_event_id("s") is None
    await store.store_last_event_id("s", "ev-1")
    assert await store.get_last_event_id("s") == "ev-1"
    assert (await store.get_session("s")).version == 1
    await store.update_session(session)  # an update does not undo the event id ...
    assert await store.get_last_event_id("s") == "ev-1"
    await store.store_last_event_id("s", "ev-2")  # ... nor the event id the update
    assert (await store.get_session("s")).version == 2
    assert await store.get_last_event_id("s") == "ev-2"
    with pytest.raises(SessionNotFoundError):
        await store.store_last_event_id("missing", "ev-1")


# -- events ---------------------------------------------------------------------------------


async def test_append_and_replay(store: SessionStore) -> None:
    await store.create_session(new("s"))
    first = await store.append_event("s", "stream-1", None)  # a priming event
    second = await store.append_event("s", "stream-1", bytearray(b"two"))
    await store.append_event("s", "other stream", b"elsewhere")
    third = await store.append_event("s", "stream-1", memoryview(b"three"))
    assert len({first, second, third}) == 3
    stream, events = await store.replay_events_after(first, session_id="s")
    assert stream == "stream-1"
    assert [(e.id, e.data) for e in events] == [(second, b"two"), (third, b"three")]
    assert all(type(e.data) is bytes for e in events)
    assert all(e.stream_id == "stream-1" for e in events)
    assert (await store.replay_events_after(third))[1] == []


async def test_replay_of_unknown_or_foreign_event(store: SessionStore) -> None:
    await store.create_session(new("a"))
    await store.create_session(new("b"))
    event = await store.append_event("a", "s", b"x")
    with pytest.raises(EventNotFoundError) as info:
        await store.replay_events_after(event, session_id="b")
    assert not info.value.evicted
    with pytest.raises(EventNotFoundError):
        await store.replay_events_after("999-999")


async def test_replay_of_an_evicted_event() -> None:
    async with open_store("memory", event_retention=2) as store:
        await store.create_session(new("s"))
        ids = [await store.append_event("s", "st", b"%d" % i) for i in range(4)]
        with pytest.raises(EventNotFoundError) as info:
            await store.replay_events_after(ids[0])
        assert info.value.evicted
        assert [e.data for e in (await store.replay_events_after(ids[2]))[1]] == [b"3"]


async def test_append_to_missing_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.append_event("ghost", "s", b"x")


@pytest.mark.parametrize("data", ["text", 5, [1, 2], object()])
async def test_append_event_refuses_non_bytes(store: SessionStore, data: Any) -> None:
    await store.create_session(new("s"))
    with pytest.raises(InvalidSessionError, match=f"bytes or None, not {type(data).__name__}"):
        await store.append_event("s", "st", data)


async def test_append_event_refuses_oversized_data(dict_backend: DictBackend) -> None:
    async with open_store(factory_of(dict_backend)) as store:
        await store.create_session(new("s"))
        with pytest.raises(InvalidSessionError, match="exceeds"):
            await store.append_event("s", "st", bytes(MAX_RECORD_BYTES + 1))
    assert dict_backend.events == []


BAD_TEXT_IDS = ["", "line\nbreak", "nul\x00", "x" * (MAX_STREAM_ID_LENGTH + 1), 5, None, b"b"]


@pytest.mark.parametrize("stream_id", BAD_TEXT_IDS)
async def test_stream_id_validation(dict_backend: DictBackend, stream_id: Any) -> None:
    async with open_store(factory_of(dict_backend)) as store:
        with pytest.raises(InvalidSessionError, match="stream id"):
            await store.append_event("s", stream_id, b"x")
    assert dict_backend.calls == ["store_close"]  # refused before the backend saw it


@pytest.mark.parametrize("event_id", BAD_TEXT_IDS)
async def test_event_id_validation(dict_backend: DictBackend, event_id: Any) -> None:
    assert MAX_EVENT_ID_LENGTH == MAX_STREAM_ID_LENGTH
    async with open_store(factory_of(dict_backend)) as store:
        with pytest.raises(InvalidSessionError, match="event id"):
            await store.replay_events_after(event_id)
        with pytest.raises(InvalidSessionError, match="event id"):
            await store.store_last_event_id("s", event_id)
    assert dict_backend.calls == ["store_close"]


async def test_long_and_unusual_stream_and_event_ids_are_accepted(store: SessionStore) -> None:
    await store.create_session(new("s"))
    stream = "s" * MAX_STREAM_ID_LENGTH
    event = await store.append_event("s", stream, b"x")
    await store.append_event("s", "stream with spaces · ünï", b"y")
    assert (await store.replay_events_after(event))[0] == stream
    await store.store_last_event_id("s", "e" * MAX_EVENT_ID_LENGTH)
    assert await store.get_last_event_id("s") == "e" * MAX_EVENT_ID_LENGTH


# -- validation before the backend ----------------------------------------------------------


async def test_invalid_arguments_never_reach_the_backend(dict_backend: DictBackend) -> None:
    store = open_store(factory_of(dict_backend))
    calls = [
        lambda: store.get_session("bad id"),
        lambda: store.get_session(""),
        lambda: store.delete_session("x" * 256),
        lambda: store.store_last_event_id("tab\tid", "e"),
        lambda: store.get_last_event_id(b"bytes"),
        lambda: store.append_event("ünï", "st", b"x"),
        lambda: store.replay_events_after("e1", session_id="bad id"),
        lambda: store.modify_session(7, lambda s: None),
        lambda: store.create_session({"id": "x"}),
        lambda: store.update_session("x"),
    ]
    for call in calls:
        with pytest.raises(InvalidSessionError):
            await call()
    assert dict_backend.calls == []
    await store.aclose()


# -- expiry ---------------------------------------------------------------------------------


async def test_ttl_expiry_follows_the_clock() -> None:
    clock = Clock()  # moved by binary fractions only, so milliseconds come out exact
    async with open_store("memory", ttl=timedelta(seconds=10), clock=clock) as store:
        assert store.ttl == timedelta(seconds=10)
        session = await store.create_session(new("s"))
        await store.create_session(new("idle"))
        clock.now += 9.5
        await store.get_session("idle")  # a read does not push the deadline
        assert await store.count_sessions() == 2
        await store.update_session(session)  # an update does
        clock.now += 0.5  # "idle" reaches its deadline exactly
        with pytest.raises(SessionNotFoundError):
            await store.get_session("idle")
        assert await store.count_sessions() == 1
        assert [s.id for s in await store.list_sessions()] == ["s"]
        assert [s.id for s in await store.get_sessions_batch(["idle", "s"])] == ["s"]
        with pytest.raises(SessionNotFoundError):
            await store.store_last_event_id("idle", "ev")
        clock.now += 9.0
        await store.store_last_event_id("s", "ev")  # pushes the deadline too
        clock.now += 9.0
        assert (await store.get_session("s")).version == 2
        assert await store.purge_expired() == 1
        assert await store.purge_expired() == 0
        clock.now += 1.0
        with pytest.raises(SessionNotFoundError):
            await store.update_session(session)
        assert await store.count_sessions() == 0


async def test_expired_id_can_be_created_again() -> None:
    clock = Clock()
    async with open_store("memory", ttl=1.5, clock=clock) as store:
        await store.create_session(new("s", metadata={"gen": 1}))
        clock.now += 1.5
        again = await store.create_session(new("s", metadata={"gen": 2}))
        assert again.version == 1
        assert (await store.get_session("s")).metadata == {"gen": 2}


# -- lifecycle ------------------------------------------------------------------------------


async def test_closed_store_refuses_every_operation(dict_backend: DictBackend) -> None:
    store = open_store(factory_of(dict_backend))
    await store.create_session(new("s"))
    await store.aclose()
    await store.aclose()  # idempotent
    assert dict_backend.closed == 1
    assert repr(store).endswith(" closed>")
    operations = [
        store.create_session(new("t")),
        store.get_session("s"),
        store.update_session(new("s")),
        store.delete_session("s"),
        store.count_sessions(),
        store.list_sessions(),
        store.get_sessions_batch(["s"]),
        store.update_sessions_batch([new("s")]),
        store.modify_session("s", lambda s: None),
        store.purge_expired(),
        store.clear(),
        store.store_last_event_id("s", "e"),
        store.get_last_event_id("s"),
        store.append_event("s", "st", b"x"),
        store.replay_events_after("e"),
    ]
    for operation in operations:
        with pytest.raises(StoreClosedError, match="closed"):
            await operation
    with pytest.raises(StoreClosedError):
        store.add_middleware(OperationMiddleware())
    with pytest.raises(StoreClosedError):
        await store.count_sessions()
    assert dict_backend.calls == ["session_create", "store_close"]


async def test_async_with_closes_the_store(dict_backend: DictBackend) -> None:
    async with open_store(factory_of(dict_backend)) as store:
        assert "closed" not in repr(store)
    assert dict_backend.closed == 1
    with pytest.raises(StoreClosedError):
        await store.get_session("s")


async def test_async_with_closes_the_store_on_error(dict_backend: DictBackend) -> None:
    with pytest.raises(RuntimeError, match="inside"):
        async with open_store(factory_of(dict_backend)):
            raise RuntimeError("inside")
    assert dict_backend.closed == 1


def test_repr() -> None:
    store = open_store("memory", namespace="tenant.a")
    assert repr(store) == "<SessionStore memory namespace='tenant.a'>"
    assert store.backend_name == "memory"


@pytest.mark.parametrize("version", ["1", 2**63, -1, 1.0])
async def test_versions_that_bypassed_validation_are_refused(
    store: SessionStore, version: Any
) -> None:
    stored = await store.create_session(Session(id="v", transport="http"))
    forged = stored.model_copy(update={"version": version})
    with pytest.raises(InvalidSessionError, match="version"):
        await store.update_session(forged)
    with pytest.raises(InvalidSessionError, match="version"):
        await store.update_sessions_batch([forged])
    assert (await store.get_session("v")).version == 1


@pytest.mark.parametrize("field", ["id", "upstream_session_id"])
async def test_ids_that_bypassed_validation_never_reach_the_backend(
    store: SessionStore, field: str
) -> None:
    forged = Session(transport="http").model_copy(update={field: "has space\n"})
    with pytest.raises(InvalidSessionError, match="visible ASCII"):
        await store.create_session(forged)
    assert await store.count_sessions() == 0
    assert await store.list_sessions() == []


async def test_backend_errors_never_repeat_a_password() -> None:
    class Leaky(DictBackend):
        @hookimpl
        async def session_count(self, now_ms: int) -> int:
            raise OSError("cannot reach redis://admin:hunter2@db.internal:6379/0 (refused)")

    async with open_store(factory_of(Leaky())) as store:
        with pytest.raises(BackendError) as raised:
            await store.count_sessions()
    assert "hunter2" not in str(raised.value)
    assert "redis://admin:***@db.internal:6379/0" in str(raised.value)
