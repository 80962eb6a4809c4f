"""Limits: every size, count and character the core accepts, and ids that came back.

Each test here works at one edge of what the core lets through to a backend (see the limits in
:mod:`sessionstore.hookspecs`): the largest payload, event data, id and batch; counters that gain
a digit; ids whose byte order is not their case-insensitive order, that differ only in case, or
that hold the characters a backend might join keys with; and ids whose session expired, or was
deleted, purged or cleared and then created again. Values sit exactly at the limit (the place a
column one byte too short or a ``<`` for ``<=`` shows) and one past it, which the core must
refuse before any hook runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from sessionstore import (
    MAX_BATCH_SIZE,
    MAX_EVENT_ID_LENGTH,
    MAX_RECORD_BYTES,
    MAX_STREAM_ID_LENGTH,
    Capability,
    ConflictError,
    Event,
    EventNotFoundError,
    InvalidSessionError,
    MetricsMiddleware,
    Session,
    SessionDump,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    SessionStore,
    encode_session,
)

from .common import new_session
from .target import ContractTarget, ManualClock

__all__ = [
    "CASE_VARIANTS",
    "LISTING_IDS",
    "LONG_TEXTS",
    "SEPARATORS",
    "BoundaryContract",
    "fill_to_size",
    "limit_data",
]

_WHEN = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)


def fill_to_size(session: Session, size: int, fill: str = "x") -> Session:
    """Set ``session.metadata`` so that ``encode_session(session)`` is exactly ``size`` bytes
    (at least 70,000); ``fill`` is one ASCII character. Returns ``session``."""
    probe = 1 << 16  # from here on msgpack's header is fixed: one byte more per character
    session.metadata = {"blob": fill * probe}
    overhead = len(encode_session(session)) - probe
    session.metadata = {"blob": fill * (size - overhead)}
    assert len(encode_session(session)) == size, "the payload did not land on the size asked"
    return session


def limit_data(size: int) -> bytes:
    """``size`` bytes where every byte depends on its position, so a cut or shift shows."""
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def _text_of(length: int, alphabet: str) -> str:
    return (alphabet * (length // len(alphabet) + 1))[:length]


LONG_TEXTS: dict[str, str] = {
    # Every printable ASCII character, the space and the separators included.
    "ascii": _text_of(MAX_STREAM_ID_LENGTH, "".join(map(chr, range(0x20, 0x7F)))),
    "cjk": _text_of(MAX_STREAM_ID_LENGTH, "\u4e2d\u6587\u5b57\u7b26\u4e32"),  # 3 UTF-8 bytes each
    "emoji": _text_of(MAX_STREAM_ID_LENGTH, "\U0001f600\U0001f680\U0001f9ea"),  # 4 bytes each
    # "e" then a combining acute accent: NFC would make each pair one character.
    "combining": _text_of(MAX_STREAM_ID_LENGTH, "e\u0301"),
}
"""Stream ids, event ids and last event ids of exactly the longest length the core accepts
(``MAX_STREAM_ID_LENGTH == MAX_EVENT_ID_LENGTH`` characters), ASCII and not."""
assert MAX_STREAM_ID_LENGTH == MAX_EVENT_ID_LENGTH
assert all(len(text) == MAX_STREAM_ID_LENGTH and text.isprintable() for text in LONG_TEXTS.values())

LISTING_IDS: tuple[str, ...] = (
    # Byte order puts every upper-case letter before every lower-case one, and "_", "`", "{",
    # "|", "}", "~" between or after them: unlike any case-insensitive or locale order.
    *("!", "0", "9", "A", "B", "Z", "[", "\\", "]", "^", "_", "`", "a", "b", "z"),
    *("{", "|", "}", "~", "A1", "a1", "a0", "a~", "a:", "a:b", "a-b", "a_b", "a.b"),
    # Prefixes of each other, and ids that differ only in case.
    *("ab", "abc", "ABC", "Abc", "aBc", "abcd", "ab~"),
    # The longest ids, sharing long prefixes.
    *("x" * 255, "x" * 254 + "y", "x" * 254 + "X", "x" * 254 + "~", "x" * 254, "x" * 200),
    "X" * 255,
)
"""Session ids for paging: byte order differs from case-insensitive and locale order."""
assert len(set(LISTING_IDS)) == len(LISTING_IDS)

CASE_VARIANTS: tuple[str, ...] = ("abc", "ABC", "Abc")
"""Three session ids that differ only in case: three sessions."""

SEPARATORS: tuple[str, ...] = (":", "/", "|", "-", "_", ".", "#", "{", "}", "\\", "%", "*")
"""Characters a backend might join a session id and a stream id (or other key parts) with."""


@asynccontextmanager
async def _scratch(target: ContractTarget) -> AsyncIterator[SessionStore]:
    """Another store in a fresh namespace, cleared and closed afterwards."""
    store = target.open()
    try:
        yield store
    finally:
        try:
            await store.clear()
        finally:
            await store.aclose()


async def _create_all(store: SessionStore, sessions: Sequence[Session]) -> None:
    """Create every session, 100 at a time: round trips overlap on a server, and the
    connections a client opens stay within its default pool (100 per node on Redis)."""
    for start in range(0, len(sessions), 100):
        await asyncio.gather(*(store.create_session(s) for s in sessions[start : start + 100]))


async def _listed_ids(store: SessionStore, bound: int) -> list[str]:
    """The ids ``iter_sessions`` yields, stopping after ``bound`` (a cursor that never moves on
    must fail the test, not hang it)."""
    seen: list[str] = []
    async for session in store.iter_sessions():
        seen.append(session.id)
        if len(seen) > bound:
            break
    return seen


async def _assert_event_unknown(
    store: SessionStore, event_id: str, session_id: str | None = None
) -> None:
    with pytest.raises(EventNotFoundError) as raised:
        await store.replay_events_after(event_id, session_id=session_id)
    assert raised.value.evicted is False, f"{event_id[:60]!r} reported evicted, not unknown"


def _digest(data: bytes) -> str:
    return f"{len(data)} bytes {hashlib.sha256(data).hexdigest()[:12]}"


def _assert_same_sessions(got: Sequence[Session], expected: Sequence[Session]) -> None:
    """``got == expected``, reported by id, version and payload digest rather than by pytest,
    which would print (and diff) 16 MiB values."""
    if list(got) != list(expected):
        shown = [
            [(s.id, s.version, _digest(encode_session(s))) for s in x] for x in (got, expected)
        ]
        raise AssertionError(f"sessions differ: got {shown[0]}, expected {shown[1]}")


def _assert_same_data(got: Sequence[bytes | None], expected: Sequence[bytes | None]) -> None:
    """``got == expected`` for event data, reported by length and digest."""
    if list(got) != list(expected):
        shown = [[None if d is None else _digest(d) for d in x] for x in (got, expected)]
        raise AssertionError(f"event data differ: got {shown[0]}, expected {shown[1]}")


def _refused_nothing(metrics: MetricsMiddleware) -> None:
    calls = metrics.snapshot()
    assert calls == {}, f"a value over the limit reached the backend: {sorted(calls)}"


class BoundaryContract:
    """Part of :class:`~sessionstore_contract.StoreContract`."""

    # -- sizes ----------------------------------------------------------------------------------

    def test_payload_at_the_size_limit_roundtrips(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """A session whose encoded payload is exactly ``MAX_RECORD_BYTES`` round-trips through
        create, get, batch get, update, listing and dump/load; one byte more is refused with a
        clear error before the backend, and the stored session stays as it was."""
        metrics = MetricsMiddleware()

        async def scenario(store: SessionStore) -> None:
            session = fill_to_size(
                new_session("big", created_at=_WHEN, last_activity=_WHEN), MAX_RECORD_BYTES
            )
            await store.create_session(session)
            _assert_same_sessions([await store.get_session("big")], [session])
            _assert_same_sessions(
                await store.get_sessions_batch(["big", "absent", "big"]), [session, session]
            )
            stored = await store.get_session("big")
            fill_to_size(stored, MAX_RECORD_BYTES, "y")  # the same size, other bytes
            updated = await store.update_session(stored)
            assert updated.version == 2
            _assert_same_sessions([await store.get_session("big")], [updated])
            _assert_same_sessions(await store.list_sessions(), [updated])
            dump = await store.dump_session("big")
            assert len(dump.record.payload) == MAX_RECORD_BYTES
            async with _scratch(sessionstore_target) as other:
                assert await other.load_session(dump) is True
                _assert_same_sessions([await other.get_session("big")], [updated])

            over = new_session("over", created_at=_WHEN, last_activity=_WHEN)
            fill_to_size(over, MAX_RECORD_BYTES)
            over.metadata = {"blob": over.metadata["blob"] + "x"}  # one byte over
            too_big = await store.get_session("big")
            too_big.metadata = {"blob": too_big.metadata["blob"] + "y"}
            metrics.reset()
            one_over = f"{MAX_RECORD_BYTES + 1} bytes"  # the message names the size and limit
            with pytest.raises(InvalidSessionError, match=one_over):
                await store.create_session(over)
            with pytest.raises(InvalidSessionError, match=one_over):
                await store.update_session(too_big)
            with pytest.raises(InvalidSessionError, match=one_over):
                await store.update_sessions_batch([too_big])
            _refused_nothing(metrics)
            assert too_big.version == 2, "a refused update must not change the session object"
            _assert_same_sessions([await store.get_session("big")], [updated])
            assert [s.id for s in await store.list_sessions()] == ["big"]

        sessionstore_target.run(scenario, middleware=[metrics])

    def test_event_data_at_the_size_limit_roundtrips(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Event data of exactly ``MAX_RECORD_BYTES``, of 0 bytes and of 1 byte, and priming
        events, round-trip through append/replay and dump/load, in order; one byte more is
        refused before the backend, from append and from load."""
        metrics = MetricsMiddleware()
        largest = limit_data(MAX_RECORD_BYTES)

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("events"))
            values: list[bytes | None] = [None, largest, b"", b"\x00", b"", None, b"\xff"]
            ids = [await store.append_event("events", "s", data) for data in values]
            assert len(set(ids)) == len(ids)
            for position, cursor in enumerate(ids):
                stream, events = await store.replay_events_after(cursor)
                assert stream == "s"
                assert [(e.id, e.stream_id) for e in events] == [
                    (i, "s") for i in ids[position + 1 :]
                ]
                _assert_same_data([e.data for e in events], values[position + 1 :])
            dump = await store.dump_session("events")
            assert [s for s, _ in dump.streams] == ["s"]
            _assert_same_data(dump.streams[0][1], values)
            async with _scratch(sessionstore_target) as other:
                assert await other.load_session(dump) is True
                loaded = (await other.dump_session("events")).streams
                assert [s for s, _ in loaded] == ["s"]
                _assert_same_data(loaded[0][1], values)
                first = await other.append_event("events", "s", b"after")
                assert await other.replay_events_after(first) == ("s", [])

            metrics.reset()
            oversized = largest + b"!"
            with pytest.raises(InvalidSessionError, match=str(MAX_RECORD_BYTES)):
                await store.append_event("events", "s", oversized)
            with pytest.raises(InvalidSessionError, match=str(MAX_RECORD_BYTES)):
                await store.append_event("events", "s", bytearray(oversized))  # type: ignore[arg-type]
            bad_dump = dump._replace(streams=(("s", (b"ok", largest + b"!")),))
            with pytest.raises(InvalidSessionError):
                await store.load_session(bad_dump)
            _refused_nothing(metrics)
            _assert_same_data((await store.dump_session("events")).streams[0][1], values)

        sessionstore_target.run(scenario, middleware=[metrics])

    def test_ids_at_the_length_limit(self, sessionstore_target: ContractTarget) -> None:
        """Stream ids and last event ids of exactly 1024 characters (ASCII with spaces, CJK,
        emoji, combining marks) come back exactly from append, replay, last event ids and
        dump/load; a 1024-character event id nobody issued, or an issued one padded to 1024, is
        unknown (``evicted`` false); 1025 characters are refused before the backend."""
        metrics = MetricsMiddleware()

        async def scenario(store: SessionStore) -> None:
            dumps = []
            for kind, text in LONG_TEXTS.items():
                session_id = f"len-{kind}"
                await store.create_session(new_session(session_id))
                first = await store.append_event(session_id, text, b"1")
                second = await store.append_event(session_id, text, b"2")
                elsewhere = await store.append_event(session_id, text[:-1], b"other stream")
                assert await store.replay_events_after(first) == (
                    text,
                    [Event(second, text, b"2")],
                ), f"{kind}: the stream id did not come back whole"
                assert await store.replay_events_after(elsewhere, session_id=session_id) == (
                    text[:-1],
                    [],
                )
                await store.store_last_event_id(session_id, text)
                assert await store.get_last_event_id(session_id) == text, (
                    f"{kind}: the last event id did not come back whole"
                )
                dump = await store.dump_session(session_id)
                assert dump.last_event_id == text
                assert dump.streams == ((text, (b"1", b"2")), (text[:-1], (b"other stream",)))
                dumps.append(dump)
                for unknown in (text, (first + text)[:MAX_EVENT_ID_LENGTH]):
                    assert len(unknown) == MAX_EVENT_ID_LENGTH
                    await _assert_event_unknown(store, unknown)
                    await _assert_event_unknown(store, unknown, session_id)
                padded = (first + "~" * MAX_EVENT_ID_LENGTH)[:MAX_EVENT_ID_LENGTH]
                await _assert_event_unknown(store, padded)
            async with _scratch(sessionstore_target) as other:
                for dump in dumps:
                    assert await other.load_session(dump) is True
                    copy = await other.dump_session(dump.record.id)
                    assert (copy.last_event_id, copy.streams) == (dump.last_event_id, dump.streams)

            metrics.reset()
            for text in LONG_TEXTS.values():
                longer = text + text[-1]
                with pytest.raises(InvalidSessionError, match="stream id"):
                    await store.append_event("len-ascii", longer, b"x")
                with pytest.raises(InvalidSessionError, match="event id"):
                    await store.store_last_event_id("len-ascii", longer)
                with pytest.raises(InvalidSessionError, match="event id"):
                    await store.replay_events_after(longer)
                with pytest.raises(InvalidSessionError):
                    await store.load_session(dumps[0]._replace(last_event_id=longer))
                with pytest.raises(InvalidSessionError):
                    await store.load_session(dumps[0]._replace(streams=((longer, (b"x",)),)))
            _refused_nothing(metrics)
            assert await store.get_last_event_id("len-ascii") == LONG_TEXTS["ascii"]

        sessionstore_target.run(scenario, middleware=[metrics])

    def test_versions_at_their_limit(self, sessionstore_target: ContractTarget) -> None:
        """A loaded session at the highest version an update may start from (``2**63 - 2``) and
        the highest incarnation (``2**63 - 1``) comes back exactly and takes one more update,
        to ``2**63 - 1``; the next update is refused before the backend, and a writer still
        holding the version before gets ConflictError."""
        metrics = MetricsMiddleware()
        top_version, top_incarnation = 2**63 - 2, 2**63 - 1

        async def scenario(store: SessionStore) -> None:
            session = new_session("old-timer", metadata={"step": 0})
            record = SessionRecord(
                session.id, top_version, None, encode_session(session), top_incarnation
            )
            assert await store.load_session(SessionDump(record, None, ())) is True
            assert (await store.dump_session("old-timer")).record == record
            stored = await store.get_session("old-timer")
            stale = await store.get_session("old-timer")
            assert stored.version == top_version
            stored.metadata = {"step": 1}
            assert (await store.update_session(stored)).version == top_version + 1
            dumped = (await store.dump_session("old-timer")).record
            assert (dumped.version, dumped.incarnation) == (top_version + 1, top_incarnation)
            assert await store.get_session("old-timer") == stored
            with pytest.raises(ConflictError):
                await store.update_session(stale)
            with pytest.raises(ConflictError):
                await store.update_sessions_batch([stale])
            metrics.reset()
            stored.metadata = {"step": 2}
            with pytest.raises(InvalidSessionError, match="version"):
                await store.update_session(stored)
            with pytest.raises(InvalidSessionError, match="version"):
                await store.update_sessions_batch([stored])
            _refused_nothing(metrics)
            assert (await store.get_session("old-timer")).metadata == {"step": 1}

        sessionstore_target.run(scenario, middleware=[metrics])

    # -- batches --------------------------------------------------------------------------------

    def test_batch_get_at_the_size_limit(self, sessionstore_target: ContractTarget) -> None:
        """``get_sessions_batch`` of ``MAX_BATCH_SIZE`` distinct ids (most missing, scrambled,
        with duplicates) is one hook call and returns every live one in request order; a longer
        request is split by the facade and still returns all of them."""
        metrics = MetricsMiddleware()
        total = MAX_BATCH_SIZE + MAX_BATCH_SIZE // 5
        names = [f"g{n:05}" for n in range(total)]
        existing = set(names[::4])
        shuffle = random.Random(13).shuffle

        async def scenario(store: SessionStore) -> None:
            await _create_all(
                store, [new_session(i, metadata={"n": i}) for i in names if i in existing]
            )
            request = names[:MAX_BATCH_SIZE]
            shuffle(request)
            request += request[::7]  # duplicates, after the ids they repeat
            shuffle(request)
            metrics.reset()
            got = await store.get_sessions_batch(request)
            assert metrics.snapshot()["session_get_many"].calls == 1
            assert [s.id for s in got] == [i for i in request if i in existing]
            assert all(s.metadata == {"n": s.id} and s.version == 1 for s in got)

            everything = list(names)
            shuffle(everything)
            metrics.reset()
            got = await store.get_sessions_batch(everything)
            assert metrics.snapshot()["session_get_many"].calls == 2
            assert [s.id for s in got] == [i for i in everything if i in existing]
            assert all(s.metadata == {"n": s.id} for s in got)

        sessionstore_target.run(scenario, middleware=[metrics])

    def test_batch_update_at_the_size_limit(self, sessionstore_target: ContractTarget) -> None:
        """``update_sessions_batch`` of ``MAX_BATCH_SIZE`` sessions writes every one (version +1);
        with one stale session at the very end it raises ConflictError naming just that one, and
        with one missing in the middle SessionNotFoundError naming just that one, and then (where
        the backend offers atomic batches) nothing was written; ``MAX_BATCH_SIZE + 1`` sessions
        are refused before the backend."""
        metrics = MetricsMiddleware()
        names = [f"u{n:05}" for n in range(MAX_BATCH_SIZE)]
        atomic = Capability.ATOMIC_BATCH_UPDATE not in sessionstore_target.capabilities

        async def state(store: SessionStore) -> list[tuple[str, int, Any]]:
            return [(s.id, s.version, s.metadata) for s in await store.get_sessions_batch(names)]

        async def scenario(store: SessionStore) -> None:
            await _create_all(store, [new_session(i) for i in names])
            batch = await store.get_sessions_batch(names)
            for session in batch:
                session.metadata = {"round": 1}
            updated = await store.update_sessions_batch(batch)
            assert [s.version for s in updated] == [2] * MAX_BATCH_SIZE
            assert await state(store) == [(i, 2, {"round": 1}) for i in names]

            batch = await store.get_sessions_batch(names)
            concurrent = await store.get_session(names[-1])
            concurrent.metadata = {"round": "concurrent"}
            await store.update_session(concurrent)
            for session in batch:
                session.metadata = {"round": 2}
            with pytest.raises(ConflictError) as stale:
                await store.update_sessions_batch(batch)
            assert stale.value.session_ids == (names[-1],)
            assert {s.version for s in batch} == {2}, "a refused batch changed session objects"
            before: list[tuple[str, int, Any]] = [(i, 2, {"round": 1}) for i in names[:-1]]
            before.append((names[-1], 3, {"round": "concurrent"}))
            if atomic:
                assert await state(store) == before, "a refused batch wrote some sessions"

            batch = await store.get_sessions_batch(names)
            middle = names[MAX_BATCH_SIZE // 2]
            assert await store.delete_session(middle) is True
            for session in batch:
                session.metadata = {"round": 3}
            with pytest.raises(SessionNotFoundError) as missing:
                await store.update_sessions_batch(batch)
            assert missing.value.session_ids == (middle,)
            if atomic:
                assert await state(store) == [e for e in before if e[0] != middle], (
                    "a refused batch wrote some sessions"
                )

            metrics.reset()
            with pytest.raises(InvalidSessionError, match="MAX_BATCH_SIZE"):
                await store.update_sessions_batch([*batch, new_session("one-more")])
            _refused_nothing(metrics)

        sessionstore_target.run(scenario, middleware=[metrics])

    # -- counters that gain a digit -------------------------------------------------------------

    def test_replay_across_counter_digit_boundaries(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """1,005 events in one stream (retention 2,000): a replay after any event around 9/10,
        99/100 and 999/1000 returns exactly the events after it, in order; a dozen streams of one
        namespace stay apart, whatever digits their handles gain."""
        count = 1005
        cursors = sorted({0, 1, 1003, 1004} | {b + d for b in (9, 99, 999) for d in range(-2, 3)})

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("counter"))
            ids = [await store.append_event("counter", "s", str(n).encode()) for n in range(count)]
            assert len(set(ids)) == count
            for k in cursors:  # k: 0-based position of the cursor event
                stream, events = await store.replay_events_after(ids[k])
                assert stream == "s"
                got = [(e.id, e.data) for e in events]
                expected = [(ids[n], str(n).encode()) for n in range(k + 1, count)]
                assert got == expected, f"replay after event {k + 1} of {count} is not the tail"

            firsts = {}
            for n in range(12):
                firsts[f"t{n}"] = await store.append_event("counter", f"t{n}", b"first")
            seconds = {s: await store.append_event("counter", s, s.encode()) for s in firsts}
            for stream_id, first in firsts.items():
                assert await store.replay_events_after(first) == (
                    stream_id,
                    [Event(seconds[stream_id], stream_id, stream_id.encode())],
                )

        sessionstore_target.run(scenario, event_retention=2000)

    def test_eviction_across_counter_digit_boundaries(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """With a retention of 3, after each append around 9/10, 99/100 and 999/1000 the event
        just dropped is reported evicted and the oldest kept one replays the two after it."""
        retention = 3
        checkpoints = {b + d for b in (10, 100, 1000) for d in range(-1, 4)}

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("evicting"))
            ids: list[str] = []
            for n in range(1, max(checkpoints) + 1):  # n: events appended so far
                ids.append(await store.append_event("evicting", "s", str(n).encode()))
                if n not in checkpoints:
                    continue
                dropped, oldest = ids[n - retention - 1], ids[n - retention]
                with pytest.raises(EventNotFoundError) as raised:
                    await store.replay_events_after(dropped)
                assert raised.value.evicted is True, (
                    f"after {n} events, event {n - retention} was not reported evicted"
                )
                _, events = await store.replay_events_after(oldest)
                assert [(e.id, e.data) for e in events] == [
                    (ids[m - 1], str(m).encode()) for m in (n - 1, n)
                ], f"after {n} events, the oldest kept one did not replay the two after it"
            with pytest.raises(EventNotFoundError) as raised:
                await store.replay_events_after(ids[0])
            assert raised.value.evicted is True

        sessionstore_target.run(scenario, event_retention=retention)

    # -- ids ------------------------------------------------------------------------------------

    @pytest.mark.parametrize("page_size", [1, 2, 3, 7])
    def test_listing_pages_through_ids_in_byte_order(
        self, sessionstore_target: ContractTarget, page_size: int
    ) -> None:
        """Listing in pages of 1, 2, 3 and 7 yields every session once, whatever its id: upper and
        lower case, punctuation between them, prefixes of each other, ids that differ only in
        case, 255-character ids; counts agree, and so do the dumps ``iter_dumps`` pages through."""

        async def scenario(store: SessionStore) -> None:
            await _create_all(store, [new_session(i) for i in LISTING_IDS])
            expected = sorted(LISTING_IDS)
            bound = 2 * len(expected)
            seen = await _listed_ids(store, bound)
            assert len(seen) == len(set(seen)), (
                f"ids yielded twice: {sorted({i for i in seen if seen.count(i) > 1})[:5]}"
            )
            assert sorted(seen) == expected, f"never yielded: {sorted(set(expected) - set(seen))}"
            assert await store.count_sessions() == len(expected)
            dumped = []
            async for dump in store.iter_dumps():
                dumped.append(dump.record.id)
                if len(dumped) > bound:
                    break
            assert sorted(dumped) == expected

        sessionstore_target.run(scenario, page_size=page_size)

    def test_ids_that_differ_only_in_case_are_distinct(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """``abc``, ``ABC`` and ``Abc`` are three sessions for every operation: create, get,
        update, last event ids, events (and stream ids ``s`` / ``S``), batches, dump, count,
        delete."""

        async def scenario(store: SessionStore) -> None:
            for session_id in CASE_VARIANTS:
                await store.create_session(new_session(session_id, metadata={"id": session_id}))
            for session_id in CASE_VARIANTS:
                with pytest.raises(SessionExistsError):
                    await store.create_session(new_session(session_id))
            assert await store.count_sessions() == len(CASE_VARIANTS)
            for rounds, session_id in enumerate(CASE_VARIANTS, start=1):
                for _ in range(rounds):
                    await store.modify_session(session_id, lambda s: None)
                await store.store_last_event_id(session_id, f"last-{session_id}")
            firsts = {}
            for session_id in CASE_VARIANTS:
                for stream_id in ("s", "S"):
                    data = f"{session_id}/{stream_id}".encode()
                    firsts[session_id, stream_id] = await store.append_event(
                        session_id, stream_id, data
                    )
                    await store.append_event(session_id, stream_id, data + b"/2")

            async def check(session_ids: Sequence[str]) -> None:
                batch = await store.get_sessions_batch(list(reversed(session_ids)))
                assert [(s.id, s.metadata) for s in batch] == [
                    (i, {"id": i}) for i in reversed(session_ids)
                ]
                for session_id in session_ids:
                    stored = await store.get_session(session_id)
                    assert stored.metadata == {"id": session_id}
                    assert stored.version == 1 + CASE_VARIANTS.index(session_id) + 1
                    assert await store.get_last_event_id(session_id) == f"last-{session_id}"
                    dump = await store.dump_session(session_id)
                    assert dump.streams == tuple(
                        (s, (f"{session_id}/{s}".encode(), f"{session_id}/{s}/2".encode()))
                        for s in ("s", "S")
                    )
                    for stream_id in ("s", "S"):
                        first = firsts[session_id, stream_id]
                        stream, events = await store.replay_events_after(
                            first, session_id=session_id
                        )
                        assert (stream, [e.data for e in events]) == (
                            stream_id,
                            [f"{session_id}/{stream_id}/2".encode()],
                        )
                        for other in CASE_VARIANTS:
                            if other != session_id:
                                await _assert_event_unknown(store, first, other)

            await check(CASE_VARIANTS)
            batch = await store.get_sessions_batch(CASE_VARIANTS)
            await store.modify_session("ABC", lambda s: None)  # the batch's "ABC" is now stale
            with pytest.raises(ConflictError) as raised:
                await store.update_sessions_batch(batch)
            assert raised.value.session_ids == ("ABC",)
            assert await store.delete_session("ABC") is True
            assert await store.delete_session("ABC") is False
            with pytest.raises(SessionNotFoundError):
                await store.get_session("ABC")
            with pytest.raises(SessionNotFoundError):
                await store.get_last_event_id("ABC")
            for stream_id in ("s", "S"):
                await _assert_event_unknown(store, firsts["ABC", stream_id])
            assert await store.count_sessions() == 2
            assert sorted(s.id for s in await store.list_sessions()) == ["Abc", "abc"]
            for session_id in ("abc", "Abc"):
                assert (await store.get_session(session_id)).metadata == {"id": session_id}
                assert await store.get_last_event_id(session_id) == f"last-{session_id}"
                dump = await store.dump_session(session_id)
                assert [s for s, _ in dump.streams] == ["s", "S"]
                for stream_id in ("s", "S"):
                    _, events = await store.replay_events_after(firsts[session_id, stream_id])
                    assert [e.data for e in events] == [f"{session_id}/{stream_id}/2".encode()]

        sessionstore_target.run(scenario)

    def test_separator_characters_never_join_keys(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """For every character a backend might join keys with (``:``, ``/``, ``|``, ``-``,
        ``.``, ``{``, ``\\``, ``%``...): session ``a:b`` stream ``c``, session ``a`` stream
        ``b:c`` (and ``a:b:c`` / ``d``, ``a:b`` / ``c:d``, ``a`` / ``b:c:d``) are different
        streams of different sessions: events, last event ids, records and dumps never mix."""

        async def scenario(store: SessionStore) -> None:
            pairs: list[tuple[str, str]] = []
            for sep in SEPARATORS:
                pairs += [
                    (f"a{sep}b", "c"),
                    ("a", f"b{sep}c"),
                    (f"a{sep}b{sep}c", "d"),
                    (f"a{sep}b", f"c{sep}d"),
                    ("a", f"b{sep}c{sep}d"),
                ]
            sessions = sorted({session_id for session_id, _ in pairs})
            await _create_all(store, [new_session(i, metadata={"id": i}) for i in sessions])
            for session_id in sessions:
                await store.store_last_event_id(session_id, f"last {session_id}")
            firsts: dict[tuple[str, str], str] = {}
            for round_ in (1, 2):
                for session_id, stream_id in pairs:
                    event_id = await store.append_event(
                        session_id, stream_id, f"{session_id} {stream_id} {round_}".encode()
                    )
                    firsts.setdefault((session_id, stream_id), event_id)
            assert len(set(firsts.values())) == len(firsts)

            for (session_id, stream_id), first in firsts.items():
                stream, events = await store.replay_events_after(first, session_id=session_id)
                assert (stream, [e.data for e in events]) == (
                    stream_id,
                    [f"{session_id} {stream_id} 2".encode()],
                ), f"session {session_id!r} stream {stream_id!r} mixed with another"
            for session_id in sessions:
                assert (await store.get_session(session_id)).metadata == {"id": session_id}
                assert await store.get_last_event_id(session_id) == f"last {session_id}"
                dump = await store.dump_session(session_id)
                assert dump.streams == tuple(
                    (stream_id, tuple(f"{session_id} {stream_id} {r}".encode() for r in (1, 2)))
                    for s, stream_id in pairs
                    if s == session_id
                )
            assert await store.count_sessions() == len(sessions)

            for sep in SEPARATORS:  # deleting "a:b" leaves "a" and its stream "b:c" alone
                assert await store.delete_session(f"a{sep}b") is True
            assert await store.count_sessions() == len(sessions) - len(SEPARATORS)
            for sep in SEPARATORS:
                stream_id = f"b{sep}c"
                _, events = await store.replay_events_after(firsts["a", stream_id])
                assert [e.data for e in events] == [f"a {stream_id} 2".encode()]
                await _assert_event_unknown(store, firsts[f"a{sep}b", "c"])
            assert await store.get_last_event_id("a") == "last a"

        sessionstore_target.run(scenario)

    # -- expired, deleted, purged and cleared ids -----------------------------------------------

    def test_every_operation_on_an_expired_unpurged_session(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """A session past its deadline, before any purge: get, batch get, update, batch update,
        last event ids, append, replay (``evicted`` false), dump and listing treat it as absent;
        delete returns False; count leaves it out; purge counts it; load and create replace it
        whole (its last event id and events do not carry over)."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            gone = ("gone-a", "gone-b", "gone-c", "gone-d")
            writers = {}
            events = {}
            for session_id in gone:
                writers[session_id] = await store.create_session(
                    new_session(session_id, metadata={"life": 1})
                )
                await store.store_last_event_id(session_id, f"old {session_id}")
                events[session_id] = await store.append_event(session_id, "s", b"old")
            dump_c = await store.dump_session("gone-c")
            await store.append_event("gone-c", "late", b"not in the dump")
            clock.advance(5)
            kept = await store.create_session(new_session("kept"))
            clock.advance(5)  # the gone-* sessions reach their deadline: expired, not purged

            assert await store.count_sessions() == 1
            assert [s.id for s in await store.list_sessions()] == ["kept"]
            assert [d.record.id async for d in store.iter_dumps()] == ["kept"]
            assert await store.get_sessions_batch([*gone, "kept"]) == [kept]
            for session_id in gone:
                with pytest.raises(SessionNotFoundError):
                    await store.get_session(session_id)
                with pytest.raises(SessionNotFoundError):
                    await store.dump_session(session_id)
                await _assert_event_unknown(store, events[session_id])
                await _assert_event_unknown(store, events[session_id], session_id)
            writer = writers["gone-a"]
            writer.metadata = {"life": "written after the deadline"}
            with pytest.raises(SessionNotFoundError):
                await store.update_session(writer)
            with pytest.raises(SessionNotFoundError) as missing:
                await store.update_sessions_batch([writer])
            assert missing.value.session_ids == ("gone-a",)
            with pytest.raises(SessionNotFoundError):
                await store.store_last_event_id("gone-a", "new")
            with pytest.raises(SessionNotFoundError):
                await store.get_last_event_id("gone-a")
            with pytest.raises(SessionNotFoundError):
                await store.append_event("gone-a", "s", b"new")
            assert await store.count_sessions() == 1, "a refused write revived a session"

            assert await store.delete_session("gone-b") is False

            fresh = dump_c._replace(
                record=dump_c.record._replace(deadline_ms=round(clock() * 1000) + 60_000),
                last_event_id=None,
            )
            assert await store.load_session(fresh) is True
            assert await store.get_last_event_id("gone-c") is None
            assert (await store.dump_session("gone-c")).streams == (("s", (b"old",)),)
            await _assert_event_unknown(store, events["gone-c"])

            reborn = await store.create_session(new_session("gone-d", metadata={"life": 2}))
            assert reborn.version == 1
            assert (await store.get_session("gone-d")).metadata == {"life": 2}
            assert await store.get_last_event_id("gone-d") is None
            assert (await store.dump_session("gone-d")).streams == ()
            await _assert_event_unknown(store, events["gone-d"])

            assert await store.count_sessions() == 3
            assert await store.purge_expired() == 1  # gone-a; gone-b was deleted
            assert await store.purge_expired() == 0
            assert sorted(s.id for s in await store.list_sessions()) == ["gone-c", "gone-d", "kept"]

        sessionstore_target.run(scenario, ttl=10, clock=clock)

    def test_id_created_again_after_delete_or_clear_starts_clean(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """An id deleted, or cleared with the whole namespace, and created again: version 1, no
        last event id, no old streams in its dump, old event ids unknown (``evicted`` false) and
        never issued again, and writers of the old session get ConflictError."""

        async def scenario(store: SessionStore) -> None:
            issued: list[str] = []
            await _check_reincarnation(
                store, "deleted", lambda: store.delete_session("deleted"), issued
            )
            await _check_reincarnation(store, "cleared", store.clear, issued)

        sessionstore_target.run(scenario)

    def test_id_created_again_after_purge_starts_clean(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """The same as after a delete, for an id whose session expired and was purged."""
        sessionstore_target.require(Capability.CONTROLLABLE_CLOCK)
        clock = ManualClock()

        async def scenario(store: SessionStore) -> None:
            async def expire_and_purge() -> None:
                clock.advance(10)
                assert await store.purge_expired() == 1

            await _check_reincarnation(store, "purged", expire_and_purge, [])

        sessionstore_target.run(scenario, ttl=10, clock=clock)


async def _check_reincarnation(
    store: SessionStore,
    session_id: str,
    remove: Callable[[], Awaitable[object]],
    issued: list[str],
) -> None:
    """Create ``session_id`` with a last event id and events, ``await remove()`` (which removes
    every session holding an event of ``issued``), create it again and check that nothing of
    before shows: no event id of ``issued`` is known or issued again. Adds the new ids to
    ``issued``."""
    first = await store.create_session(new_session(session_id, metadata={"life": 1}))
    writer = await store.get_session(session_id)  # holds version 1 of the first creation
    await store.store_last_event_id(session_id, "old")
    appends = 24  # two streams, each past a counter's first extra digit
    for n in range(appends):
        issued.append(await store.append_event(session_id, ("s", "t")[n % 2], f"{n}".encode()))
    assert first.version == 1
    await remove()

    reborn = await store.create_session(new_session(session_id, metadata={"life": 2}))
    assert reborn.version == 1
    assert await store.get_last_event_id(session_id) is None, "the old last event id came back"
    assert (await store.dump_session(session_id)).streams == (), "the old streams came back"
    for old in issued:
        await _assert_event_unknown(store, old)
        await _assert_event_unknown(store, old, session_id)
    new_ids = []
    for n in range(appends + 1):
        stream_id = ("s", "t")[n % 2]
        new_ids.append(await store.append_event(session_id, stream_id, f"new {n}".encode()))
    reused = set(new_ids) & set(issued)
    assert not reused, f"event ids issued again: {sorted(reused)[:3]}"
    stream, events = await store.replay_events_after(new_ids[-3])
    assert (stream, [e.data for e in events]) == ("s", [f"new {appends}".encode()])
    dump = await store.dump_session(session_id)
    assert [(s, len(data)) for s, data in dump.streams] == [
        ("s", appends // 2 + 1),
        ("t", appends // 2),
    ]
    issued.extend(new_ids)

    writer.metadata = {"life": "stale writer"}
    with pytest.raises(ConflictError):
        await store.update_session(writer)
    with pytest.raises(ConflictError):
        await store.update_sessions_batch([writer])
    assert await store.get_session(session_id) == reborn
    reborn.metadata = {"life": "2, updated"}
    assert (await store.update_session(reborn)).version == 2
