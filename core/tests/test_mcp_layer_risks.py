"""The roaming layer's review findings (issue 15), each on the real SDK (2.x) and a real SQLite
file: what the layer remembers stays bounded, a failed opening gives its places back, hidden
authentication is caught inside the route too, the lifespan is found behind middleware,
instances of an earlier release count as alive, a store the layer cannot use is refused at once,
and no log line carries a whole session id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

import httpx2
from core_testkit import store_built_directly
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from test_mcp_layer import ACCEPT, INITIALIZE, Client, Tokens, build_app, serving, two_instances

from sessionstore import Session, TransportType, open_store
from sessionstore.mcp import MCP_METADATA_KEY, McpSessions, layer_namespace
from sessionstore.mcp.instances import Heartbeat
from sessionstore.models import new_session_id

ALICE = hashlib.sha256(b"alice").hexdigest()  # the layer's digest of the principal "alice"


async def test_failed_restores_and_touches_of_sessions_held_elsewhere_are_forgotten(
    tmp_path: Path,
) -> None:
    """A session the store has but this instance cannot restore (its kept initialize request is
    refused by the SDK) leaves a touch and a restore lock behind; the sweep drops both."""
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    sessions = McpSessions(spec, heartbeat_interval=0.2, heartbeat_ttl=1, touch_interval=60)
    async with serving(build_app("A", sessions)) as url, httpx2.AsyncClient(timeout=20) as http:
        broken = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        ids = []
        for _ in range(3):
            session_id = new_session_id()
            kept = {"initialize": json.dumps(broken), "principal": ALICE, "opened_by": "X"}
            await sessions.store.create_session(
                Session(
                    id=session_id,
                    transport=TransportType.HTTP,
                    metadata={MCP_METADATA_KEY: kept},
                )
            )
            alice = Client(http, "alice")
            alice.session_id = session_id
            response = await alice.request(url, "tools/list")
            assert response.status_code == 503, response.text
            ids.append(session_id)
        layer = sessions._app
        assert layer is not None
        assert set(layer._touched) == set(ids)
        assert set(layer._restoring) == set(ids)
        # None of them ended: the sweep still drops what this instance noted of them.
        assert await layer.forget_gone_sessions() == 0
        assert layer._touched == {}
        assert layer._restoring == {}


class _Failing:
    """An ASGI app (no Starlette: the layer stays in front) that fails an initialize request,
    by raising or by hanging until cancelled."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.entered = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered.set()
        if self.how == "raise":
            raise RuntimeError("the SDK failed")
        await asyncio.Event().wait()


def _asgi_initialize() -> tuple[dict[str, Any], Any]:
    body = json.dumps(INITIALIZE).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
        "http_version": "1.1",
        "headers": [(k.encode(), v.encode()) for k, v in ACCEPT.items()],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return scope, receive


@pytest.mark.parametrize("how", ["raise", "cancel"])
async def test_an_opening_the_sdk_fails_gives_its_record_and_place_back(
    tmp_path: Path, how: str
) -> None:
    """When the SDK raises on an initialize request, or the request is cancelled, the session's
    record and its place under the limits go (the store has no ttl: they would stay for good,
    and the principal at its limit would be locked out)."""
    sessions = McpSessions(
        f"sqlite:///{tmp_path / 'mcp.db'}", heartbeat_interval=0.2, max_sessions_per_principal=1
    )
    app = _Failing(how)
    wrapped = sessions.wrap(app)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with sessions.run():
        assert sessions.store.ttl is None
        scope, receive = _asgi_initialize()
        request = asyncio.create_task(wrapped(scope, receive, send))
        await asyncio.wait_for(app.entered.wait(), 20)
        if how == "raise":
            with pytest.raises(RuntimeError, match="the SDK failed"):
                await asyncio.wait_for(request, 20)
        else:
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(request, 20)
        assert await sessions.store.count_sessions() == 0
        limits = sessions.limits
        assert limits is not None
        assert (await limits.admit(new_session_id(), "anonymous")).admitted


async def test_authentication_between_the_route_and_the_sdk_is_caught(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An authenticating wrapper around the SDK's endpoint (inside its route, after the layer):
    the layer takes every user for anonymous there, so it refuses (500, an error logged) rather
    than open a session another user could then restore as their own."""
    sessions = McpSessions(f"sqlite:///{tmp_path / 'mcp.db'}", heartbeat_interval=0.2)
    app = MCPServer("A").streamable_http_app(event_store=sessions.event_store)
    (route,) = [r for r in app.router.routes if isinstance(r, Route) and r.path == "/mcp"]
    route.app = AuthenticationMiddleware(route.app, backend=Tokens())
    async with serving(sessions.wrap(app)) as url, httpx2.AsyncClient(timeout=20) as http:
        assert sessions._app is not None
        assert sessions._app.inside is not None  # the layer is inside the route
        with caplog.at_level(logging.ERROR, logger="sessionstore.mcp"):
            response = await http.post(
                url, json=INITIALIZE, headers={**ACCEPT, "authorization": "Bearer alice-token"}
            )
        assert response.status_code == 500, response.text
        assert "mcp-session-id" not in response.headers
        assert any("authenticates requests" in r.getMessage() for r in caplog.records)
        assert await sessions.store.count_sessions() == 0
        # Anonymous requests, which that authentication leaves anonymous, still work.
        assert (await http.post(url, json=INITIALIZE, headers=ACCEPT)).status_code == 200


async def test_the_lifespan_is_found_behind_middleware(tmp_path: Path) -> None:
    """``CORSMiddleware(sdk_app)`` mounted in a parent app with ``lifespan=sessions.lifespan``:
    the SDK's session manager runs (else every request is a 500)."""
    sessions = McpSessions(f"sqlite:///{tmp_path / 'mcp.db'}", heartbeat_interval=0.2)
    sdk = MCPServer("A").streamable_http_app(event_store=sessions.event_store)
    wrapped = sessions.wrap(CORSMiddleware(sdk, allow_origins=["*"]))
    parent = Starlette(routes=[Mount("/api", app=wrapped)], lifespan=sessions.lifespan)
    async with serving(parent) as url, httpx2.AsyncClient(timeout=20) as http:
        api = url.replace("/mcp", "/api/mcp")
        response = await http.post(api, json=INITIALIZE, headers=ACCEPT)
        assert response.status_code == 200, response.text
        assert await sessions.store.count_sessions() == 1


def test_a_lifespan_that_cannot_be_found_is_refused() -> None:
    async def opaque(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    sessions = McpSessions("memory")
    sessions.wrap(opaque)
    with pytest.raises(RuntimeError, match="no Starlette app"):
        _ = sessions.lifespan


async def test_an_instance_of_an_earlier_release_counts_as_alive(tmp_path: Path) -> None:
    """Rolling upgrade: an earlier release keeps its heartbeat record in the application's
    namespace; an instance of this release reads it there too."""
    app = open_store(f"sqlite:///{tmp_path / 'mcp.db'}")
    beats = app.sibling(layer_namespace(app.namespace), ttl=60)
    try:
        for name, beat in (("old-fresh", time.time()), ("old-stale", time.time() - 60)):
            record = Session(id=Heartbeat.record_id(name), transport=TransportType.HTTP)
            record.metadata["mcp_instance_beat"] = beat
            await app.create_session(record)
        heartbeat = Heartbeat(beats, "new", interval=0.2, ttl=1, legacy=app)
        assert await heartbeat.alive("old-fresh")
        assert not await heartbeat.alive("old-stale")
        assert not await heartbeat.alive("never-seen")
        assert not await Heartbeat(beats, "new", interval=0.2, ttl=1).alive("old-fresh")
    finally:
        await beats.aclose()
        await app.aclose()


def test_a_store_the_layer_cannot_open_its_namespace_beside_is_refused_at_once() -> None:
    store = store_built_directly()
    with pytest.raises(TypeError, match="open_store"):
        McpSessions(store)


async def test_no_log_line_carries_a_whole_session_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With anonymous use a session id is the session's only credential: log lines show its
    first 8 characters (restores, refusals, failures)."""
    async with two_instances(tmp_path) as (a, b, _, second), httpx2.AsyncClient(timeout=20) as http:
        with caplog.at_level(logging.DEBUG, logger="sessionstore"):
            anonymous = Client(http, None)
            session_id = await anonymous.initialize(a)
            assert (await anonymous.request(b, "tools/list")).status_code == 200  # restored
            stranger = Client(http, "mallory")
            stranger.session_id = session_id
            assert (await stranger.request(b, "tools/list")).status_code == 404
        messages = [r.getMessage() for r in caplog.records]
        assert any("restored here" in m and session_id[:8] in m for m in messages), messages
        assert any("another principal" in m and session_id[:8] in m for m in messages)
        assert not [m for m in messages if session_id in m]
        local = second._app.local_sessions[session_id] if second._app else ""
        assert local
        assert not [m for m in messages if local in m]
