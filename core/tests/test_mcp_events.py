"""SessionEventStore: the SDK's EventStore scoped by MCP session, on a real store and SDK types.

The end-to-end tests with two server processes are in ``core/tests/mcp/``; these pin the event
store's own contract: scoping, priming events, foreign and evicted ids, following a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

from mcp_types import JSONRPCNotification, JSONRPCResponse

from sessionstore import Session, SessionStore, TransportType, open_store
from sessionstore.mcp import (
    GET_STREAM_ID,
    INTERRUPTED_ERROR_CODE,
    McpSessions,
    SessionEventStore,
    session_scope,
)


def progress(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(
        jsonrpc="2.0",
        method="notifications/progress",
        params={"progressToken": "t", "progress": n},
    )


def answer(request_id: int) -> JSONRPCResponse:
    return JSONRPCResponse(jsonrpc="2.0", id=request_id, result={"content": []})


async def new_session(store: SessionStore) -> str:
    return (await store.create_session(Session(transport=TransportType.HTTP))).id


class Collected:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def __call__(self, event: Any) -> None:
        self.events.append(event)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [e.message.model_dump(by_alias=True, exclude_unset=True) for e in self.events]


def resuming_instance(
    store: SessionStore, liveness: Callable[[str], Awaitable[bool]]
) -> SessionEventStore:
    """Another instance resuming streams: it polls often and asks ``liveness`` about producers."""
    resumer = SessionEventStore(store, instance_id="resumer", poll_interval=0.01)
    resumer.bind(store, liveness=liveness, liveness_interval=0.01)
    return resumer


class DeadProducers:
    """A liveness check that finds every producer dead, and remembers whom it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, instance_id: str) -> bool:
        self.asked.append(instance_id)
        return False


def sqlite_store(tmp_path: Path, **options: Any) -> SessionStore:
    return open_store(f"sqlite:///{tmp_path / 'events.db'}", **options)


async def test_store_event_needs_a_session_scope(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        with pytest.raises(RuntimeError, match=r"McpSessions\.wrap"):
            await events.store_event("1", progress(1))
        collected = Collected()
        assert await events.replay_events_after("1-1", collected) is None


async def test_unbound_event_store_says_how_to_bind() -> None:
    events = SessionEventStore()
    with session_scope("s1"), pytest.raises(RuntimeError, match="not bound"):
        await events.store_event("1", progress(1))


async def test_replay_skips_priming_events_and_keeps_order(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        session_id = await new_session(store)
        with session_scope(session_id):
            priming = await events.store_event("7", None)
            ids = [await events.store_event("7", progress(n)) for n in range(1, 4)]
            ids.append(await events.store_event("7", answer(7)))
            collected = Collected()
            stream = await events.replay_events_after(priming, collected)
        assert stream == "7"
        assert [e.event_id for e in collected.events] == ids
        assert [m.get("params", {}).get("progress") for m in collected.messages[:3]] == [1, 2, 3]
        assert collected.messages[-1]["result"] == {"content": []}
        # A priming event is stored: its id is a valid cursor, and it is never sent.
        with session_scope(session_id):
            again = Collected()
            await events.replay_events_after(ids[1], again)
        assert [e.event_id for e in again.events] == ids[2:]


async def test_same_stream_ids_in_two_sessions_never_mix(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        first, second = await new_session(store), await new_session(store)
        cursors = {}
        for session_id, base in ((first, 100), (second, 200)):
            with session_scope(session_id):
                cursors[session_id] = await events.store_event(GET_STREAM_ID, None)
                for n in range(3):
                    await events.store_event(GET_STREAM_ID, progress(base + n))
        for session_id, base in ((first, 100), (second, 200)):
            with session_scope(session_id):
                collected = Collected()
                assert await events.replay_events_after(cursors[session_id], collected) == (
                    GET_STREAM_ID
                )
            assert [m["params"]["progress"] for m in collected.messages] == [
                base,
                base + 1,
                base + 2,
            ]


async def test_another_sessions_cursor_replays_nothing(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        victim, attacker = await new_session(store), await new_session(store)
        with session_scope(victim):
            cursor = await events.store_event("1", None)
            await events.store_event("1", progress(1))
        with session_scope(attacker):
            collected = Collected()
            assert await events.replay_events_after(cursor, collected) is None
        assert collected.events == []


async def test_unknown_and_evicted_cursors_replay_nothing(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path, event_retention=3) as store:
        events = SessionEventStore(store)
        session_id = await new_session(store)
        with session_scope(session_id):
            oldest = await events.store_event("1", progress(0))
            for n in range(1, 6):
                await events.store_event("1", progress(n))
            collected = Collected()
            assert await events.replay_events_after(oldest, collected) is None
            assert await events.replay_events_after("no-such-event", collected) is None
        assert collected.events == []


async def test_events_go_with_their_session(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        session_id = await new_session(store)
        with session_scope(session_id):
            cursor = await events.store_event("1", None)
            await events.store_event("1", progress(1))
        await store.delete_session(session_id)
        with session_scope(session_id):
            collected = Collected()
            assert await events.replay_events_after(cursor, collected) is None
            # Storing into a session that is gone does not stop the SDK's message router.
            event_id = await events.store_event("1", progress(2))
        assert event_id.startswith("unstored-")


async def test_a_replay_follows_a_stream_another_instance_produces(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        producer = SessionEventStore(store, instance_id="producer")

        async def alive(instance_id: str) -> bool:
            return True

        resumer = resuming_instance(store, alive)
        session_id = await new_session(store)
        with session_scope(session_id):
            cursor = await producer.store_event("5", None)
            await producer.store_event("5", progress(1))

            async def produce_the_rest() -> None:
                for n in range(2, 5):
                    await asyncio.sleep(0.03)
                    await producer.store_event("5", progress(n))
                await producer.store_event("5", answer(5))

            collected = Collected()
            production = asyncio.create_task(produce_the_rest())
            stream = await asyncio.wait_for(resumer.replay_events_after(cursor, collected), 10)
            await production
        assert stream == "5"
        assert [m.get("params", {}).get("progress") for m in collected.messages[:4]] == [1, 2, 3, 4]
        assert collected.messages[-1]["id"] == 5
        assert "result" in collected.messages[-1]
        assert len(collected.events) == 5


async def test_a_dead_producer_gets_its_request_answered_with_an_error(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        producer = SessionEventStore(store, instance_id="gone")
        dead = DeadProducers()
        resumer = resuming_instance(store, dead)
        session_id = await new_session(store)
        with session_scope(session_id):
            cursor = await producer.store_event("9", None)
            await producer.store_event("9", progress(1))
            collected = Collected()
            assert await asyncio.wait_for(resumer.replay_events_after(cursor, collected), 10) == "9"
            # The error is stored: a later resumer sees the request answered, and stops there.
            later = Collected()
            await asyncio.wait_for(resumer.replay_events_after(cursor, later), 10)
        assert dead.asked
        assert set(dead.asked) == {"gone"}
        error = collected.messages[-1]
        assert error["id"] == 9
        assert error["error"]["code"] == INTERRUPTED_ERROR_CODE
        assert "may or may not have completed" in error["error"]["message"]
        assert later.messages == collected.messages


async def test_a_producer_that_died_right_after_the_cursor_is_found_from_the_id(
    tmp_path: Path,
) -> None:
    """The usual crash: the client's Last-Event-ID is the last event the dead instance wrote, so
    no stored event after it names the producer; the id itself does."""
    async with sqlite_store(tmp_path) as store:
        producer = SessionEventStore(store, instance_id="crashed")
        dead = DeadProducers()
        resumer = resuming_instance(store, dead)
        session_id = await new_session(store)
        with session_scope(session_id):
            await producer.store_event("4", None)
            last = await producer.store_event("4", progress(1))
            assert last.startswith("crashed.")
            collected = Collected()
            assert await asyncio.wait_for(resumer.replay_events_after(last, collected), 10) == "4"
        assert set(dead.asked) == {"crashed"}
        assert [m["error"]["code"] for m in collected.messages] == [INTERRUPTED_ERROR_CODE]
        assert collected.events[0].event_id.startswith("resumer.")


def test_instance_ids_are_checked() -> None:
    for bad in ("", "a.b", "a b", "x" * 81, "é"):
        with pytest.raises(ValueError, match="instance_id"):
            SessionEventStore(instance_id=bad)


async def test_without_liveness_a_replay_returns_what_is_stored(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        session_id = await new_session(store)
        with session_scope(session_id):
            cursor = await events.store_event("3", None)
            await events.store_event("3", progress(1))
            collected = Collected()
            assert await asyncio.wait_for(events.replay_events_after(cursor, collected), 5) == "3"
        assert len(collected.events) == 1


async def test_a_stopping_instance_knows_which_requests_still_run(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path) as store:
        events = SessionEventStore(store)
        session_id = await new_session(store)
        with session_scope(session_id):
            await events.store_event("1", None)
            await events.store_event("2", None)
            await events.store_event(GET_STREAM_ID, progress(0))  # never awaited: no answer
            assert events.unanswered == 2
            await events.store_event("1", answer(1))
            assert events.unanswered == 1
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(events.wait_for_answers(), 0.2)

            async def answer_later() -> None:
                await asyncio.sleep(0.05)
                await events.store_event("2", answer(2))

            later = asyncio.create_task(answer_later())
            await asyncio.wait_for(events.wait_for_answers(), 5)
            await later
            assert events.unanswered == 0


async def test_a_producer_found_dead_is_read_once_more_before_the_error(tmp_path: Path) -> None:
    """The producer stored its answer, then died, between two looks: the answer is delivered,
    not an interruption error."""
    async with sqlite_store(tmp_path) as store:
        producer = SessionEventStore(store, instance_id="finisher")
        session_id = await new_session(store)

        async def answered_then_died(instance_id: str) -> bool:
            with session_scope(session_id):
                await producer.store_event("6", answer(6))
            return False

        resumer = resuming_instance(store, answered_then_died)
        with session_scope(session_id):
            cursor = await producer.store_event("6", None)
            collected = Collected()
            await asyncio.wait_for(resumer.replay_events_after(cursor, collected), 10)
        assert [m.get("result") for m in collected.messages] == [{"content": []}]


async def test_a_stopping_instance_does_not_wait_for_requests_of_ended_sessions(
    tmp_path: Path,
) -> None:
    async with sqlite_store(tmp_path) as store:
        sessions = McpSessions(store, drain_timeout=30)
        await sessions.start()
        try:
            gone, live = await new_session(store), await new_session(store)
            with session_scope(gone):
                await sessions.event_store.store_event("1", None)
            with session_scope(live):
                await sessions.event_store.store_event("1", None)
            await store.delete_session(gone)
            assert sessions.event_store.unanswered == 2

            async def answer_live() -> None:
                await asyncio.sleep(0.1)
                with session_scope(live):
                    await sessions.event_store.store_event("1", answer(1))

            answering = asyncio.create_task(answer_live())
            assert await asyncio.wait_for(sessions.drain(), 5) is True
            await answering
        finally:
            await sessions.stop()


def test_each_process_is_a_new_producer_even_under_the_same_name() -> None:
    first, restarted = (
        McpSessions("memory", instance_id="A"),
        McpSessions("memory", instance_id="A"),
    )
    assert first.instance_id.startswith("A-")
    assert first.instance_id != restarted.instance_id
    with pytest.raises(ValueError, match="instance_id"):
        McpSessions("memory", instance_id="x" * 65)
