"""Grouped appends of the PostgreSQL backend (``event_append``), against a real server:
appends made while a batch is in flight go out together as one statement, and each caller still
gets what an append of its own would have given it: per-stream order, retention, its own
``SessionNotFoundError``.

Each test checks that its appends were really grouped (the sizes of the batches sent), so that
it tests the batch statement and not only the lone one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sessionstore import EventNotFoundError, SessionNotFoundError
from sessionstore.records import new_record
from sessionstore_postgres.backend import PostgresBackend, create_backend


@pytest.fixture
def backend(postgres_url: str, request: pytest.FixtureRequest) -> PostgresBackend:
    """A backend in a namespace of this test alone (each test clears and closes it)."""
    return create_backend(postgres_url, namespace=f"appends-{request.node.name}")


def _count_batches(backend: PostgresBackend) -> list[int]:
    """Record the size of every batch the backend sends (its own method, wrapped)."""
    sizes: list[int] = []
    send = backend._append_batch

    async def counted(batch: list[tuple[Any, ...]]) -> list[str | None]:
        sizes.append(len(batch))
        return await send(batch)

    backend._append_batch = counted  # type: ignore[method-assign]
    return sizes


def _now() -> int:
    return int(time.time() * 1000)


async def _create(backend: PostgresBackend, *session_ids: str) -> None:
    for session_id in session_ids:
        await backend.session_create(new_record((session_id, 1, None, b"{}", 0)), _now())


def _seq(event_id: str) -> tuple[int, int]:
    handle, _, seq = event_id.partition("-")
    return int(handle), int(seq)


async def test_concurrent_appends_keep_per_stream_order_and_retention(
    backend: PostgresBackend,
) -> None:
    sessions = [f"s{i}" for i in range(8)]
    streams = ("a", "b")
    retention = 5
    rounds = 12
    try:
        await _create(backend, *sessions)
        sizes = _count_batches(backend)
        # Every (session, stream) appended to `rounds` times, all at once, interleaved.
        calls = [
            (session_id, stream_id, f"{session_id}/{stream_id}/{n}".encode())
            for n in range(rounds)
            for session_id in sessions
            for stream_id in streams
        ]
        now = _now()
        ids = await asyncio.gather(
            *(backend.event_append(s, st, data, retention, now) for s, st, data in calls)
        )
        assert max(sizes) > 1, f"no appends were grouped: batches of {sizes}"
        assert sum(sizes) == len(calls)
        by_stream: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        for (session_id, stream_id, data), event_id in zip(calls, ids, strict=True):
            by_stream.setdefault((session_id, stream_id), []).append((event_id, data))
        handles = set()
        for appended in by_stream.values():
            # One stream: one handle, and sequence numbers 1, 2, ... in the order of the calls.
            assert {_seq(event_id)[0] for event_id, _ in appended} == {_seq(appended[0][0])[0]}
            assert [_seq(event_id)[1] for event_id, _ in appended] == list(range(1, rounds + 1))
            handles.add(_seq(appended[0][0])[0])
            # Retention: the last `retention` events are kept, in order (a replay from the
            # oldest returns the ones after it); the one before them is gone.
            oldest = appended[-retention][0]
            _, events = await backend.event_replay(oldest, None, _now())
            kept = appended[-retention + 1 :]
            assert [(e.id, e.data) for e in events] == kept
            with pytest.raises(EventNotFoundError, match="evicted"):
                await backend.event_replay(appended[-retention - 1][0], None, _now())
        assert len(handles) == len(by_stream)
    finally:
        await backend.store_clear()
        await backend.store_close()


async def test_a_missing_session_fails_only_its_own_append(backend: PostgresBackend) -> None:
    try:
        await _create(backend, "here", "there")
        await backend.session_create(new_record(("expired", 1, _now() + 60_000, b"{}", 0)), _now())
        sizes = _count_batches(backend)
        later = _now() + 120_000  # "expired" is past its deadline by then
        targets = ["here", "missing", "there", "expired", "here"]
        results = await asyncio.gather(
            *(backend.event_append(s, "st", s.encode(), 100, later) for s in targets),
            return_exceptions=True,
        )
        assert max(sizes) > 1, f"no appends were grouped: batches of {sizes}"
        for session_id, result in zip(targets, results, strict=True):
            if session_id in ("missing", "expired"):
                assert isinstance(result, SessionNotFoundError), result
                assert session_id in str(result)
            else:
                assert isinstance(result, str), result
        # The appends that succeeded are stored: "here" twice, in order, "there" once.
        assert [_seq(str(r))[1] for r in (results[0], results[4], results[2])] == [1, 2, 1]
        _, events = await backend.event_replay(str(results[0]), "here", later)
        assert [e.data for e in events] == [b"here"]
    finally:
        await backend.store_clear()
        await backend.store_close()


async def test_a_caller_cancelled_before_its_batch_is_dropped(backend: PostgresBackend) -> None:
    try:
        await _create(backend, "s")
        sizes = _count_batches(backend)
        now = _now()
        first = asyncio.ensure_future(backend.event_append("s", "st", b"1", 100, now))
        await asyncio.sleep(0)  # the first batch (a lone append) is on its way
        dropped = asyncio.ensure_future(backend.event_append("s", "st", b"2", 100, now))
        kept = asyncio.ensure_future(backend.event_append("s", "st", b"3", 100, now))
        await asyncio.sleep(0)
        dropped.cancel()
        assert _seq(await first)[1] == 1
        assert _seq(await kept)[1] == 2
        assert dropped.cancelled()
        assert sizes == [1, 1]
        _, events = await backend.event_replay(await first, "s", _now())
        assert [e.data for e in events] == [b"3"]
    finally:
        await backend.store_clear()
        await backend.store_close()
