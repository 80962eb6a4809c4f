"""Per-session state for tools (``sessionstore.mcp.current_session``): the API on a store, and the
layer on the real SDK (2.x) and real HTTP, two instances in this process on one SQLite file.

The two-process matrix with the SDK's own client (SDK 1.x and 2.x, SQLite and Redis) is
``core/tests/mcp/test_mcp_state_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

import httpx2
import mcp_types
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from starlette.middleware.authentication import AuthenticationMiddleware
from test_mcp_layer import Client, Tokens, serving

from sessionstore import (
    InvalidSessionError,
    Session,
    SessionNotFoundError,
    SessionStore,
    TransportType,
    hookimpl,
    open_store,
)
from sessionstore.mcp import (
    MAX_STATE_BYTES,
    MCP_METADATA_KEY,
    STATE_METADATA_KEY,
    McpSessions,
    NoSessionError,
    SessionEndedError,
    SessionHandle,
    SessionState,
    StateTooLargeError,
    current_session,
    session_scope,
)

# -- the API on a store --------------------------------------------------------------------------


@asynccontextmanager
async def a_session(**options: Any) -> AsyncIterator[tuple[SessionStore, SessionHandle]]:
    async with open_store("memory", **options) as store:
        kept = {"principal": "digest", "initialize": "{}"}
        session = Session(transport=TransportType.HTTP, metadata={MCP_METADATA_KEY: kept})
        session = await store.create_session(session)
        yield store, SessionHandle(store, session.id)


async def test_outside_a_session_the_error_says_what_to_do() -> None:
    with pytest.raises(NoSessionError, match=r"McpSessions\.wrap\(\)"):
        current_session()
    with session_scope("some-session"), pytest.raises(NoSessionError, match="store="):
        current_session()
    async with a_session() as (store, handle):
        with session_scope(handle.id, store=store):
            session = current_session()
        assert session.id == handle.id
        assert session.store is store
        assert handle.id not in repr(session)  # an id is half a credential: not in reprs
        assert await session.read() == SessionState({}, 0)


async def test_modify_changes_in_place_or_replaces_and_counts_versions() -> None:
    async with a_session() as (store, handle):
        assert await handle.modify(lambda state: state.update(note="hello")) == SessionState(
            {"note": "hello"}, 1
        )

        async def replace(state: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"notes": [state["note"], "again"]}

        assert await handle.modify(replace) == SessionState({"notes": ["hello", "again"]}, 2)
        assert await handle.state() == {"notes": ["hello", "again"]}
        before = await store.get_session(handle.id)

        def fails(state: dict[str, Any]) -> None:
            state["half"] = "done"
            raise RuntimeError("the tool's own error")

        with pytest.raises(RuntimeError, match="the tool's own error"):
            await handle.modify(fails)
        assert await store.get_session(handle.id) == before  # nothing written


async def test_compare_and_set_by_version_or_by_value() -> None:
    async with a_session() as (_, handle):
        assert await handle.compare_and_set({"n": 1}, expected_version=0)
        assert not await handle.compare_and_set({"n": 2}, expected_version=0)  # stale
        assert await handle.read() == SessionState({"n": 1}, 1)
        assert await handle.compare_and_set({"n": 2}, expected_version=1)
        # By value, compared as JSON: 2.0 and True are not 2.
        assert not await handle.compare_and_set({"n": 3}, expected_value={"n": 2.0})
        assert not await handle.compare_and_set({"n": 3}, expected_value={"n": True})
        assert await handle.compare_and_set({"n": 3}, expected_value={"n": 2})
        assert await handle.read() == SessionState({"n": 3}, 3)
        with pytest.raises(TypeError, match="exactly one"):
            await handle.compare_and_set({"n": 4})
        with pytest.raises(TypeError, match="exactly one"):
            await handle.compare_and_set({"n": 4}, expected_version=3, expected_value={"n": 3})
        with pytest.raises(InvalidSessionError, match="expected_version"):
            await handle.compare_and_set({"n": 4}, expected_version=-1)


async def test_state_is_json_data_and_bounded() -> None:
    async with a_session() as (store, handle):
        await handle.modify(lambda state: state.update(kept=True))
        before = await store.get_session(handle.id)
        with pytest.raises(InvalidSessionError, match=r"state\['a'\]\[1\] holds a set"):
            await handle.modify(lambda state: {"a": [1, {2}]})
        with pytest.raises(InvalidSessionError, match="state must be a dict"):
            await handle.modify(lambda state: ["not", "a", "dict"])  # type: ignore[arg-type,return-value]
        with pytest.raises(InvalidSessionError, match=r"state\['x'\] is nan"):
            await handle.compare_and_set({"x": float("nan")}, expected_version=1)
        with pytest.raises(InvalidSessionError, match="expected_value must be a dict"):
            await handle.compare_and_set({}, expected_value="kept")  # type: ignore[arg-type]
        # The bound: MAX_STATE_BYTES of compact JSON, exactly.
        room = MAX_STATE_BYTES - len('{"blob":""}')
        assert await handle.modify(lambda state: {"blob": "x" * room})
        with pytest.raises(StateTooLargeError, match=f"at most {MAX_STATE_BYTES}"):
            await handle.modify(lambda state: {"blob": "x" * (room + 1)})
        with pytest.raises(StateTooLargeError):
            await handle.compare_and_set({"blob": "é" * room}, expected_version=2)
        state = await handle.read()
        assert state.version == 2
        assert len(state.value["blob"]) == room
        assert before.version + 1 == (await store.get_session(handle.id)).version


async def test_the_layers_own_record_is_out_of_reach() -> None:
    async with a_session() as (store, handle):
        kept = (await store.get_session(handle.id)).metadata[MCP_METADATA_KEY]
        # Keys that look like the layer's land in the state, never next to the layer's record.
        state = {MCP_METADATA_KEY: {"principal": "someone else"}, STATE_METADATA_KEY: 1}
        await handle.modify(lambda _: state)
        stored = await store.get_session(handle.id)
        assert stored.metadata[MCP_METADATA_KEY] == kept
        assert set(stored.metadata) == {MCP_METADATA_KEY, STATE_METADATA_KEY}
        assert await handle.state() == state


async def test_concurrent_writers_lose_nothing() -> None:
    async with a_session() as (_, handle):

        async def increment(state: dict[str, Any]) -> None:
            count = state.get("count", 0)
            await asyncio.sleep(0)  # let the others read the same version
            state["count"] = count + 1

        await asyncio.gather(*(handle.modify(increment) for _ in range(20)))
        assert await handle.read() == SessionState({"count": 20}, 20)


async def test_an_ended_session_says_so() -> None:
    async with a_session() as (store, handle):
        await handle.modify(lambda state: state.update(note="hello"))
        assert await store.delete_session(handle.id)
        for call in (
            handle.read(),
            handle.modify(lambda state: None),
            handle.compare_and_set({}, expected_version=1),
        ):
            with pytest.raises(SessionEndedError, match="ended") as raised:
                await call
            assert isinstance(raised.value, SessionNotFoundError)
            assert raised.value.session_id == handle.id


async def test_a_state_this_release_did_not_write_is_refused() -> None:
    async with a_session() as (store, handle):
        await store.modify_session(
            handle.id, lambda s: s.metadata.update({STATE_METADATA_KEY: {"json": "[]"}})
        )
        with pytest.raises(Exception, match=STATE_METADATA_KEY) as raised:
            await handle.read()
        assert type(raised.value).__name__ == "CorruptRecordError"


# -- the layer, two instances --------------------------------------------------------------------


class Gate:
    """Where the ``recall_later`` tool waits for the test."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()


GATE = Gate()


def build_app(name: str, sessions: McpSessions) -> AuthenticationMiddleware:
    """An MCPServer whose tools keep a note in their session's state."""
    mcp = MCPServer(f"server {name}")

    @mcp.tool()
    async def remember(note: str) -> str:
        await current_session().modify(lambda state: state.update(note=note))
        return f"noted on {name}"

    @mcp.tool()
    async def recall() -> str:
        session = current_session()
        note = (await session.state()).get("note")
        return json.dumps({"note": note, "on": name, "session": session.id})

    @mcp.tool()
    async def recall_later() -> str:
        """Wait until the test opens the gate, then read the state."""
        GATE.entered.set()
        await GATE.opened.wait()
        try:
            return str((await current_session().state()).get("note"))
        except SessionEndedError as ended:  # the SDK shows a client only "Error executing tool"
            return f"SessionEndedError: {ended}"

    @mcp.tool()
    async def count() -> int:
        async def increment(state: dict[str, Any]) -> None:
            value = state.get("count", 0)
            await asyncio.sleep(0.01)  # widen the window between read and write
            state["count"] = value + 1

        return (await current_session().modify(increment)).value["count"]

    inner = mcp.streamable_http_app(event_store=sessions.event_store)
    return AuthenticationMiddleware(sessions.wrap(inner), backend=Tokens())


def build_lowlevel_app(name: str, sessions: McpSessions) -> AuthenticationMiddleware:
    """The same ``recall`` tool on the SDK's low-level ``Server``."""

    async def call_tool(ctx: Any, params: mcp_types.CallToolRequestParams) -> Any:
        session = current_session()
        note = (await session.state()).get("note")
        answer = json.dumps({"note": note, "on": name, "session": session.id})
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=answer)],
            structured_content={"result": answer},
        )

    server: Server[Any] = Server(f"low-level {name}", on_call_tool=call_tool)
    inner = server.streamable_http_app(event_store=sessions.event_store)
    return AuthenticationMiddleware(sessions.wrap(inner), backend=Tokens())


App = Callable[[str, McpSessions], AuthenticationMiddleware]


@asynccontextmanager
async def two_instances(
    spec: str, second_app: App = build_app, **options: Any
) -> AsyncIterator[tuple[str, str, McpSessions, McpSessions]]:
    first = McpSessions(spec, instance_id="A", heartbeat_interval=0.2, heartbeat_ttl=1, **options)
    second = McpSessions(spec, instance_id="B", heartbeat_interval=0.2, heartbeat_ttl=1, **options)
    async with serving(build_app("A", first)) as a, serving(second_app("B", second)) as b:
        yield a, b, first, second


def result(answer: dict[str, Any]) -> Any:
    assert "result" in answer, answer
    assert not answer["result"].get("isError"), answer
    return answer["result"]["structuredContent"]["result"]


def recalled(answer: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(result(answer))
    return value


async def test_a_note_kept_on_one_instance_is_read_on_the_other(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    async with two_instances(spec) as (a, b, _, second), httpx2.AsyncClient(timeout=20) as http:
        alice, again, bob = Client(http, "alice"), Client(http, "alice"), Client(http, "bob")
        session_id = await alice.initialize(a)
        await again.initialize(b)
        await bob.initialize(b)
        assert result(await alice.call(a, "remember", note="hello")) == "noted on A"
        for url, name in ((b, "B"), (a, "A")):
            answer = recalled(await alice.call(url, "recall"))
            # The layer's id on both instances (the SDK's local ids differ), and the same note.
            assert answer == {"note": "hello", "on": name, "session": session_id}
        # Per session: another session of the same user, and another user, have no note.
        assert recalled(await again.call(a, "recall"))["note"] is None
        assert recalled(await bob.call(a, "recall"))["note"] is None
        # It is in the session's record in the store.
        assert await SessionHandle(second.store, session_id).state() == {"note": "hello"}


async def test_the_low_level_server_reads_the_same_state(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    async with (
        two_instances(spec, build_lowlevel_app) as (a, b, _, _),
        httpx2.AsyncClient(timeout=20) as http,
    ):
        alice = Client(http, "alice")
        session_id = await alice.initialize(a)
        assert result(await alice.call(a, "remember", note="from MCPServer")) == "noted on A"
        answer = recalled(await alice.call(b, "recall"))
        assert answer == {"note": "from MCPServer", "on": "B", "session": session_id}


async def test_concurrent_tool_calls_on_both_instances_lose_no_update(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    async with two_instances(spec) as (a, b, _, _), httpx2.AsyncClient(timeout=30) as http:
        alice = Client(http, "alice")
        await alice.initialize(a)
        await alice.call(b, "recall")  # B holds the session too
        counts = await asyncio.gather(
            *(alice.call(a if turn % 2 else b, "count") for turn in range(12))
        )
        assert sorted(result(answer) for answer in counts) == list(range(1, 13))


class PauseUpdate:
    """A store middleware that holds the next update of one session until released."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    @hookimpl(wrapper=True)
    def session_update(self, record: Any, now_ms: int) -> Any:
        inner = yield
        if record.id != self.session_id:
            return inner
        self.session_id = None

        async def held() -> Any:
            self.held.set()
            await self.release.wait()
            return await inner

        return held()


async def test_the_layers_touch_never_undoes_a_tools_write(tmp_path: Path) -> None:
    """A request on A read the session and is about to push its deadline forward (``touch``)
    when a tool on B writes the state: A's write, from the older version, must not land."""
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    pause = PauseUpdate()
    async with (
        open_store(spec, ttl=60, middleware=[pause]) as paused_store,
        open_store(spec, ttl=60) as store,
    ):
        options: dict[str, Any] = {"heartbeat_interval": 0.2, "heartbeat_ttl": 1}
        first = McpSessions(paused_store, instance_id="A", touch_interval=0, **options)
        second = McpSessions(store, instance_id="B", touch_interval=0, **options)
        async with (
            serving(build_app("A", first)) as a,
            serving(build_app("B", second)) as b,
            httpx2.AsyncClient(timeout=20) as http,
        ):
            alice = Client(http, "alice")
            session_id = await alice.initialize(a)
            pause.session_id = session_id
            touching = asyncio.create_task(alice.call(a, "recall"))
            await asyncio.wait_for(pause.held.wait(), 10)  # A's touch read the old version
            assert result(await alice.call(b, "remember", note="hello")) == "noted on B"
            pause.release.set()
            assert recalled(await touching)["note"] == "hello"
            assert await SessionHandle(store, session_id).read() == SessionState(
                {"note": "hello"}, 1
            )


async def test_state_goes_with_the_session_deleted_or_expired(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    options = {"ttl": 1.0, "touch_interval": 0.2}
    async with (
        two_instances(spec, **options) as (a, b, first, _),
        httpx2.AsyncClient(timeout=20) as http,
    ):
        deleted, idle = Client(http, "alice"), Client(http, "alice")
        for client in (deleted, idle):
            await client.initialize(a)
            await client.call(b, "remember", note="hello")
        assert deleted.session_id is not None
        assert idle.session_id is not None
        gone = SessionHandle(first.store, deleted.session_id)
        assert await gone.state() == {"note": "hello"}
        assert (await http.delete(b, headers=deleted.headers())).status_code == 200
        with pytest.raises(SessionEndedError):
            await gone.state()

        expiring = SessionHandle(first.store, idle.session_id)
        deadline = time.monotonic() + 15
        while True:  # idle for the ttl: it expires, whether or not a sweep ran
            try:
                await expiring.state()
            except SessionEndedError:
                break
            assert time.monotonic() < deadline, "the idle session never expired"
            await asyncio.sleep(0.1)
        # A new session of the same user starts empty.
        fresh = Client(http, "alice")
        await fresh.initialize(b)
        assert recalled(await fresh.call(a, "recall"))["note"] is None


async def test_a_tool_whose_session_ended_meanwhile_gets_a_clear_error(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    global GATE
    GATE = Gate()
    async with two_instances(spec) as (a, b, _, _), httpx2.AsyncClient(timeout=20) as http:
        alice = Client(http, "alice")
        session_id = await alice.initialize(a)
        await alice.call(a, "remember", note="hello")
        waiting = asyncio.create_task(alice.call(a, "recall_later"))
        await asyncio.wait_for(GATE.entered.wait(), 10)
        # The client ends the session on the other instance while the tool runs.
        assert (await http.delete(b, headers=alice.headers())).status_code == 200
        GATE.opened.set()
        message = result(await waiting)
        assert message.startswith("SessionEndedError: MCP session")
        assert "ended" in message
        assert session_id not in message
