"""Principals on the real SDK 2.x over real HTTP: every way an application authenticates, with two
users, on the instance holding a session and on the other (issue 15, item 1).

Each setup runs twice, wrapped (two instances, one SQLite file) and plain (the SDK alone, with
the same authentication): a second user presenting the first user's session id must get exactly
the plain SDK's 404, on both instances and whatever the method, and must never get a copy of the
session restored for them; the first user keeps working on both instances.

The setups:

- ``outer``: Starlette's ``AuthenticationMiddleware`` outside the layer (simple users);
- ``sdk``: the SDK's own auth, ``MCPServer(token_verifier=..., auth=AuthSettings(...))``;
- ``inner``: ``AuthenticationMiddleware`` around the SDK's app, inside the layer;
- ``principal``: no authentication, ``principal=`` reads a header;
- ``coarse``: the SDK's own auth, and a ``principal=`` that takes both users for one (a team):
  the SDK's own check (client id, issuer, subject) still holds.

SDK 1.x (FastMCP's auth) is covered end to end in ``core/tests/mcp/test_mcp_e2e.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

import httpx2
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Mount
from test_mcp_layer import ACCEPT, INITIALIZE, VERSION, Tokens, serving

from sessionstore import open_store
from sessionstore.mcp import McpSessions

SETUPS = ["outer", "sdk", "inner", "principal", "coarse"]


class Verifier:
    """The SDK's ``TokenVerifier``: ``<name>-token`` is client ``<name>-app``, subject
    ``<name>``."""

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token.endswith("-token"):
            return None
        name = token.removesuffix("-token")
        return AccessToken(token=token, client_id=f"{name}-app", subject=name, scopes=["mcp"])


def user_header(scope: Any) -> str | None:
    """``principal=`` of the ``principal`` setup: the ``x-user`` header names the principal."""
    for key, value in scope["headers"]:
        if key == b"x-user":
            return str(value.decode("latin-1"))
    return None


def team(scope: Any) -> str:
    """``principal=`` of the ``coarse`` setup: everyone is one principal."""
    return "team"


def credentials(setup: str, user: str | None) -> dict[str, str]:
    if user is None:
        return {}
    if setup == "principal":
        return {"x-user": user}
    return {"authorization": f"Bearer {user}-token"}


def sdk_app(name: str, setup: str, sessions: McpSessions | None) -> Any:
    """The SDK's Streamable HTTP app of the setup (with the SDK's own auth where it has it)."""
    if setup in ("sdk", "coarse"):
        mcp = MCPServer(
            f"server {name}",
            token_verifier=Verifier(),
            auth=AuthSettings(
                issuer_url="https://auth.example.com",
                resource_server_url="http://127.0.0.1/mcp",
                validate_token_resource=False,
                required_scopes=["mcp"],
            ),
        )
    else:
        mcp = MCPServer(f"server {name}")

    @mcp.tool()
    async def whoami(ctx: Context) -> str:
        return name

    event_store = None if sessions is None else sessions.event_store
    return mcp.streamable_http_app(event_store=event_store, retry_interval=100)


def build(name: str, setup: str, sessions: McpSessions | None) -> Any:
    """The app an instance serves: the setup's authentication, the layer when ``sessions``."""
    app = sdk_app(name, setup, sessions)
    if setup == "inner":
        app = AuthenticationMiddleware(app, backend=Tokens())
    if sessions is not None:
        app = sessions.wrap(app)
    if setup == "outer":
        app = AuthenticationMiddleware(app, backend=Tokens())
    return app


def layer(spec: str, setup: str, name: str) -> McpSessions:
    principal = {"principal": user_header, "coarse": team}.get(setup)
    options: dict[str, Any] = {} if principal is None else {"principal": principal}
    return McpSessions(spec, instance_id=name, heartbeat_interval=0.2, heartbeat_ttl=1, **options)


@asynccontextmanager
async def fleet(
    tmp_path: Path, setup: str
) -> AsyncIterator[tuple[str, str, str, McpSessions, McpSessions]]:
    """Wrapped instances A and B on one SQLite file, and a plain SDK instance P."""
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    first, second = layer(spec, setup, "A"), layer(spec, setup, "B")
    async with (
        serving(build("A", setup, first)) as a,
        serving(build("B", setup, second)) as b,
        serving(build("P", setup, None)) as plain,
    ):
        yield a, b, plain, first, second


class User:
    """One user's raw requests: exactly what a client sends and sees."""

    def __init__(self, http: httpx2.AsyncClient, setup: str, name: str | None) -> None:
        self.http = http
        self.auth = credentials(setup, name)
        self.ids = 1

    def headers(self, session: str | None, **extra: str) -> dict[str, str]:
        headers = {**ACCEPT, **self.auth, "mcp-protocol-version": VERSION, **extra}
        if session is not None:
            headers["mcp-session-id"] = session
        return headers

    async def open(self, url: str) -> str:
        response = await self.http.post(url, json=INITIALIZE, headers={**ACCEPT, **self.auth})
        assert response.status_code == 200, response.text
        session = response.headers["mcp-session-id"]
        done = await self.http.post(
            url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self.headers(session),
        )
        assert done.status_code == 202, done.text
        return session

    async def attempts(self, url: str, session: str) -> list[httpx2.Response]:
        """A POST, a resuming GET and a DELETE in ``session``."""
        self.ids += 1
        body = {"jsonrpc": "2.0", "id": self.ids, "method": "tools/list"}
        post = await self.http.post(url, json=body, headers=self.headers(session))
        get = await self.http.get(
            url, headers=self.headers(session, **{"last-event-id": "A-x.0-1"})
        )
        delete = await self.http.delete(url, headers=self.headers(session))
        return [post, get, delete]

    async def whoami(self, url: str, session: str) -> str:
        self.ids += 1
        body = {
            "jsonrpc": "2.0",
            "id": self.ids,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }
        response = await self.http.post(url, json=body, headers=self.headers(session))
        assert response.status_code == 200, response.text
        assert '"isError":false' in response.text.replace(" ", ""), response.text
        return response.text


@pytest.mark.parametrize("setup", SETUPS)
async def test_another_principal_gets_exactly_the_plain_sdk_404(tmp_path: Path, setup: str) -> None:
    async with (
        fleet(tmp_path, setup) as (a, b, plain, first, second),
        httpx2.AsyncClient(timeout=20) as http,
    ):
        alice, bob = User(http, setup, "alice"), User(http, setup, "bob")
        # The plain SDK's 404: an unknown id, and (under its own auth) someone else's session.
        unknown = (await bob.attempts(plain, "no-such-session"))[0]
        assert unknown.status_code == 404
        if setup in ("sdk", "coarse"):
            theirs = await alice.open(plain)
            for refused in await bob.attempts(plain, theirs):
                assert (refused.status_code, refused.content) == (404, unknown.content)

        session = await alice.open(a)
        # B first (no copy there: none must be made for bob), then A (which holds it).
        for url, layer_of in ((b, second), (a, first)):
            for refused in await bob.attempts(url, session):
                assert refused.status_code == 404, (url, refused.request.method, refused.text)
                assert refused.content == unknown.content, (url, refused.request.method)
                assert refused.headers["content-type"] == unknown.headers["content-type"]
            if layer_of is second:
                assert second._app is not None
                assert session not in second._app.local_sessions, "restored for bob"

        # Without credentials: what the plain SDK answers (401 under its own auth).
        nobody = User(http, setup, None)
        plain_anonymous = (await nobody.attempts(plain, session))[0]
        for url in (a, b):
            anonymous = (await nobody.attempts(url, session))[0]
            assert anonymous.status_code == plain_anonymous.status_code
            if anonymous.status_code == 404:
                assert anonymous.content == unknown.content

        # Alice's session was neither taken nor ended: it works on both instances.
        assert "server B" not in await alice.whoami(a, session)
        await alice.whoami(b, session)
        assert "server A" not in await alice.whoami(b, session)
        async with open_store(f"sqlite:///{tmp_path / 'mcp.db'}") as store:
            assert (await store.get_session(session)).id == session


async def test_sdk_auth_runs_before_the_layer(tmp_path: Path) -> None:
    """Under the SDK's own auth the layer sits inside the SDK's route: a request without a valid
    token gets the SDK's 401 (with its WWW-Authenticate) and never reaches the store."""
    async with (
        fleet(tmp_path, "sdk") as (a, _, plain, first, _),
        httpx2.AsyncClient(timeout=20) as http,
    ):
        assert first._app is not None
        assert first._app.inside is not None  # found the SDK's route
        forged = {**ACCEPT, "authorization": "Bearer forged"}
        expected = await http.post(plain, json=INITIALIZE, headers=forged)
        refused = await http.post(a, json=INITIALIZE, headers=forged)
        assert refused.status_code == expected.status_code == 401
        assert refused.headers["www-authenticate"] == expected.headers["www-authenticate"]
        assert await first.store.count_sessions() == 0


async def test_an_app_that_hides_its_authentication_fails_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ASGI app the layer cannot see into, authenticating inside: the layer cannot tell users
    apart, so it refuses (500, an error in the log) rather than take everyone for anonymous."""
    inner = AuthenticationMiddleware(sdk_app("A", "outer", None), backend=Tokens())

    async def opaque(scope: Any, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)

    sessions = McpSessions(f"sqlite:///{tmp_path / 'mcp.db'}", heartbeat_interval=0.2)
    # (The SDK app above has no event store of the layer: nothing here gets that far.)
    async with serving(sessions.wrap(opaque)) as url, httpx2.AsyncClient(timeout=20) as http:
        assert sessions._app is not None
        assert sessions._app.inside is None
        with caplog.at_level(logging.ERROR, logger="sessionstore.mcp"):
            response = await http.post(
                url, json=INITIALIZE, headers={**ACCEPT, **credentials("outer", "alice")}
            )
        assert response.status_code == 500
        assert "mcp-session-id" not in response.headers
        assert any("authenticates requests" in r.getMessage() for r in caplog.records)
        assert await sessions.store.count_sessions() == 0
        # Anonymous requests, which the inner authentication leaves anonymous, still work.
        assert (await http.post(url, json=INITIALIZE, headers=ACCEPT)).status_code == 200


def test_a_starlette_app_authenticating_without_a_visible_route_is_refused() -> None:
    async def opaque(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    app = Starlette(
        routes=[Mount("/elsewhere", app=opaque)],
        middleware=[Middleware(AuthenticationMiddleware, backend=Tokens())],
    )
    with pytest.raises(ValueError, match="authenticates requests"):
        McpSessions("memory").wrap(app)


def test_a_route_is_wrapped_once() -> None:
    app = sdk_app("A", "sdk", None)
    McpSessions("memory").wrap(app)
    with pytest.raises(RuntimeError, match="already wrapped"):
        McpSessions("memory").wrap(app)
