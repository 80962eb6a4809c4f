"""The roaming layer on the real SDK (2.x) and real HTTP: two instances in this process, one
SQLite file. Raw HTTP, so the tests see exactly what a client sees (status, headers, bodies).

The two-process end-to-end matrix with the SDK's own client, SDK 1.x and 2.x, SQLite and Redis,
is in ``core/tests/mcp/``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

import httpx2
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from sessionstore import open_store
from sessionstore.mcp import INSTANCE_ID_PREFIX, MCP_METADATA_KEY, McpSessions, layer_namespace

VERSION = "2025-11-25"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": VERSION,
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


class Tokens(AuthenticationBackend):
    """``Authorization: Bearer <name>-token`` authenticates ``<name>``."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        token = conn.headers.get("authorization", "").removeprefix("Bearer ")
        if not token.endswith("-token"):
            return None
        return AuthCredentials(["mcp"]), SimpleUser(token.removesuffix("-token"))


def build_app(name: str, sessions: McpSessions) -> AuthenticationMiddleware:
    mcp = MCPServer(f"server {name}")

    @mcp.tool()
    async def whoami(ctx: Context) -> str:
        return name

    @mcp.tool()
    async def count(ctx: Context, steps: int = 3) -> str:
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps)
        return f"counted to {steps} on {name}"

    inner = mcp.streamable_http_app(event_store=sessions.event_store, retry_interval=100)
    # Authentication sits outside the layer, as it would in front of the SDK app.
    return AuthenticationMiddleware(sessions.wrap(inner), backend=Tokens())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


@asynccontextmanager
async def two_instances(
    tmp_path: Path, app: Callable[[str, McpSessions], Any] = build_app, **options: Any
) -> AsyncIterator[tuple[str, str, McpSessions, McpSessions]]:
    """Instances ``A`` and ``B`` of ``app`` on one SQLite file in ``tmp_path``, served over
    HTTP: their URLs and their layers. ``options`` go to both :class:`McpSessions` (fast
    heartbeats unless given)."""
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    options = {"heartbeat_interval": 0.2, "heartbeat_ttl": 1, **options}
    first = McpSessions(spec, instance_id="A", **options)
    second = McpSessions(spec, instance_id="B", **options)
    async with serving(app("A", first)) as a, serving(app("B", second)) as b:
        yield a, b, first, second


def events_of(text: str) -> list[dict[str, Any]]:
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith("id:"):
                event["id"] = line[3:].strip()
            elif line.startswith("data:") and line[5:].strip():
                event["data"] = json.loads(line[5:])
        if event:
            found.append(event)
    return found


class Client:
    """A raw MCP client over HTTP: one session, one principal."""

    def __init__(self, http: httpx2.AsyncClient, user: str | None) -> None:
        self.http = http
        self.auth = {"authorization": f"Bearer {user}-token"} if user else {}
        self.session_id: str | None = None
        self._ids = 1

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {**ACCEPT, **self.auth, "mcp-protocol-version": VERSION, **extra}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def initialize(self, url: str) -> str:
        response = await self.http.post(url, json=INITIALIZE, headers={**ACCEPT, **self.auth})
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        done = await self.http.post(
            url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self.headers(),
        )
        assert done.status_code == 202, done.text
        return self.session_id

    async def request(self, url: str, method: str, **params: Any) -> httpx2.Response:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        return await self.http.post(url, json=body, headers=self.headers())

    async def call(self, url: str, tool: str, **arguments: Any) -> dict[str, Any]:
        response = await self.request(
            url, "tools/call", name=tool, arguments=arguments, _meta={"progressToken": "p"}
        )
        assert response.status_code == 200, response.text
        return events_of(response.text)[-1]["data"]


async def test_a_session_opened_on_one_instance_is_served_by_the_other(tmp_path: Path) -> None:
    async with two_instances(tmp_path) as (a, b, _, second), httpx2.AsyncClient(timeout=20) as http:
        alice = Client(http, "alice")
        session_id = await alice.initialize(a)
        assert (await alice.call(a, "whoami"))["result"]["structuredContent"]["result"] == "A"
        answer = await alice.call(b, "whoami")
        assert answer["result"]["structuredContent"]["result"] == "B"
        response = await alice.request(b, "tools/list")
        # The client keeps seeing the id it was given, whichever instance answers.
        assert response.headers["mcp-session-id"] == session_id
        stored = await second.store.get_session(session_id)
        kept = stored.metadata[MCP_METADATA_KEY]
        # The initialize request is kept as the text the client sent, replayed byte for byte.
        assert isinstance(kept["initialize"], str)
        assert json.loads(kept["initialize"]) == INITIALIZE
        assert "alice" not in json.dumps(kept)  # only a digest of the principal is kept


async def test_a_stranger_gets_exactly_the_unknown_session_404(tmp_path: Path) -> None:
    async with two_instances(tmp_path) as (a, b, _, _), httpx2.AsyncClient(timeout=20) as http:
        alice = Client(http, "alice")
        session_id = await alice.initialize(a)
        nobody = Client(http, "alice")
        nobody.session_id = "no-such-session"
        unknown = await nobody.request(b, "tools/list")
        assert unknown.status_code == 404
        for user in ("mallory", None):
            for url in (a, b):  # where the session lives, and where it would be restored
                stranger = Client(http, user)
                stranger.session_id = session_id
                refused = await stranger.request(url, "tools/list")
                assert refused.status_code == 404
                assert refused.content == unknown.content
        # The owner still gets through on both.
        assert (await alice.request(b, "tools/list")).status_code == 200


async def test_ending_a_session_anywhere_ends_it_everywhere(tmp_path: Path) -> None:
    async with two_instances(tmp_path) as (a, b, first, _), httpx2.AsyncClient(timeout=20) as http:
        alice = Client(http, "alice")
        session_id = await alice.initialize(a)
        assert (await alice.request(b, "tools/list")).status_code == 200  # B restores it
        ended = await http.delete(a, headers=alice.headers())
        assert ended.status_code == 200
        assert not await first.store.delete_session(session_id)  # already gone from the store
        for url in (b, a):
            assert (await alice.request(url, "tools/list")).status_code == 404


async def test_the_sweep_forgets_sessions_that_ended_elsewhere(tmp_path: Path) -> None:
    async with (
        two_instances(tmp_path) as (a, b, _, second),
        httpx2.AsyncClient(timeout=20) as http,
    ):
        alice, bob = Client(http, "alice"), Client(http, "bob")
        ended, kept = await alice.initialize(a), await bob.initialize(a)
        for client in (alice, bob):
            assert (await client.request(b, "tools/list")).status_code == 200
        layer = second._app
        assert layer is not None
        assert set(layer.local_sessions) == {ended, kept}
        assert (await http.delete(a, headers=alice.headers())).status_code == 200
        assert await layer.forget_gone_sessions() == 1
        assert set(layer.local_sessions) == {kept}
        assert await layer.forget_gone_sessions() == 0


async def test_idle_sessions_expire_and_active_ones_do_not(tmp_path: Path) -> None:
    options = {"ttl": 1.0, "touch_interval": 0.2}
    async with (
        two_instances(tmp_path, **options) as (a, b, _, _),
        httpx2.AsyncClient(timeout=20) as http,
    ):
        idle, busy = Client(http, "alice"), Client(http, "alice")
        await idle.initialize(a)
        await busy.initialize(a)
        for turn in range(8):  # 2 s of activity, alternating instances
            await asyncio.sleep(0.25)
            response = await busy.request(b if turn % 2 else a, "tools/list")
            assert response.status_code == 200, f"turn {turn}: {response.text}"
        assert (await idle.request(b, "tools/list")).status_code == 404
        assert (await idle.request(a, "tools/list")).status_code == 404


async def test_a_resumed_stream_replays_from_the_store_on_the_other_instance(
    tmp_path: Path,
) -> None:
    async with two_instances(tmp_path) as (a, b, _, _), httpx2.AsyncClient(timeout=20) as http:
        alice = Client(http, "alice")
        await alice.initialize(a)
        response = await alice.request(
            a, "tools/call", name="count", arguments={"steps": 3}, _meta={"progressToken": "p"}
        )
        events = events_of(response.text)
        assert [e.get("data", {}).get("method") for e in events[1:4]] == [
            "notifications/progress"
        ] * 3
        resumed: list[dict[str, Any]] = []
        headers = alice.headers(**{"last-event-id": events[1]["id"]})
        async with http.stream("GET", b, headers=headers) as stream:
            assert stream.status_code == 200
            text = ""
            async for chunk in stream.aiter_text():
                text += chunk
                resumed = [e for e in events_of(text) if "data" in e]
                if resumed and "result" in resumed[-1]["data"]:
                    break
        assert [e["id"] for e in resumed] == [e["id"] for e in events[2:]]
        assert resumed[-1]["data"]["result"]["structuredContent"]["result"] == "counted to 3 on A"


async def test_heartbeats_come_and_go_with_the_instance(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    sessions = McpSessions(spec, instance_id="solo", heartbeat_interval=0.1, heartbeat_ttl=1)
    own = layer_namespace("default")
    async with serving(build_app("solo", sessions)), open_store(spec, namespace=own) as store:
        assert sessions.instance_id.startswith("solo-")  # a name, and this process's suffix
        beats = await store.get_session(INSTANCE_ID_PREFIX + sessions.instance_id)
        await asyncio.sleep(0.3)
        later = await store.get_session(INSTANCE_ID_PREFIX + sessions.instance_id)
        assert later.version > beats.version
    async with open_store(spec, namespace=own) as store:
        assert await store.count_sessions() == 0  # a clean stop leaves no heartbeat behind


def test_layer_options_are_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        McpSessions("memory", heartbeat_interval=5, heartbeat_ttl=1)
    with pytest.raises(TypeError, match="only when store is a spec"):
        McpSessions(open_store("memory"), ttl=5)
    sessions = McpSessions("memory")
    sessions.wrap(MCPServer("x").streamable_http_app(event_store=sessions.event_store))
    with pytest.raises(RuntimeError, match="one app"):
        sessions.wrap(MCPServer("y").streamable_http_app())
    with pytest.raises(RuntimeError, match="startup"):
        _ = sessions.store
