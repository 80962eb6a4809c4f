"""Bounds of the roaming layer on the real SDK 2.x over real HTTP, two instances in this process,
on a SQLite file, on a throwaway redis-server and on a fresh PostgreSQL database (issue 15, items
3, 4 and 6):

- the kept initialize request is bounded in size (413 past ``max_initialize_bytes``);
- ``max_sessions_per_principal`` and ``max_sessions`` (the fleet's) are counted in the store,
  across instances, and answered as the SDK's own ``max_sessions`` is (503, byte for byte); a
  race of openings on both instances never overshoots; a session ended or expired frees its
  place;
- an instance whose SDK refuses to restore a session (its ``max_sessions``) gives the client
  exactly that refusal;
- client-chosen values (an 8 KiB ``Last-Event-ID``, an 8 KiB session id) never make a long log
  line;
- the layer's own records (heartbeats, ledgers) stay out of the application's namespace, a
  64-character one included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

import httpx2
from mcp.server.mcpserver import Context, MCPServer
from test_mcp_layer import ACCEPT, INITIALIZE, VERSION, serving

from sessionstore import open_store
from sessionstore.mcp import (
    INSTANCE_ID_PREFIX,
    MCP_METADATA_KEY,
    McpSessions,
    layer_namespace,
)
from sessionstore.mcp import limits as limits_module
from sessionstore.mcp.limits import LEDGER_PREFIX

STORES = ["sqlite", "redis", "postgres"]
LOG_BOUND = 1000  # characters: the longest log line a client may cause


@pytest.fixture
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(spec, namespace)``: a fresh SQLite file, or the module's Redis or PostgreSQL database
    with a new namespace."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mcp.db'}", "default"
    else:
        url = request.getfixturevalue(f"mcp_{request.param}_url")
        yield url, f"bounds-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def no_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance that found the fleet full asks the store again at the next opening."""
    monkeypatch.setattr(limits_module, "FULL_HOLD", 0.0)


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Places of sessions gone from the store are freed 0.5 s after their reservation (not 10):
    for tests that open one session at a time (a reservation's record is created at once)."""
    monkeypatch.setattr(limits_module, "RESERVATION_GRACE", 0.5)


def sdk_app(name: str, sessions: McpSessions | None, **options: Any) -> Any:
    mcp = MCPServer(f"server {name}")

    @mcp.tool()
    async def whoami(ctx: Context) -> str:
        return name

    event_store = None if sessions is None else sessions.event_store
    return mcp.streamable_http_app(event_store=event_store, retry_interval=100, **options)


def user_header(scope: Any) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-user":
            return str(value.decode("latin-1"))
    return None


@asynccontextmanager
async def two_instances(
    spec: str, namespace: str, *, sdk_options_b: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[tuple[str, str, McpSessions, McpSessions]]:
    made = [
        McpSessions(
            spec,
            namespace=namespace,
            instance_id=name,
            heartbeat_interval=0.2,
            heartbeat_ttl=1,
            principal=user_header,
            **options,
        )
        for name in ("A", "B")
    ]
    first, second = made
    async with (
        serving(first.wrap(sdk_app("A", first))) as a,
        serving(second.wrap(sdk_app("B", second, **(sdk_options_b or {})))) as b,
    ):
        yield a, b, first, second


def headers(user: str | None, session: str | None = None, **extra: str) -> dict[str, str]:
    found = {**ACCEPT, "mcp-protocol-version": VERSION, **extra}
    if user is not None:
        found["x-user"] = user
    if session is not None:
        found["mcp-session-id"] = session
    return found


async def initialize(http: httpx2.AsyncClient, url: str, user: str | None) -> httpx2.Response:
    response = await http.post(url, json=INITIALIZE, headers={**ACCEPT, **headers(user)})
    if response.status_code == 200:
        done = await http.post(
            url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=headers(user, response.headers["mcp-session-id"]),
        )
        assert done.status_code == 202, done.text
    return response


async def tools_list(
    http: httpx2.AsyncClient, url: str, user: str | None, session: str
) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    return await http.post(url, json=body, headers=headers(user, session))


async def sdk_refusal(http: httpx2.AsyncClient) -> httpx2.Response:
    """What the SDK alone answers at its ``max_sessions``."""
    async with serving(sdk_app("P", None, max_sessions=1)) as plain:
        assert (await initialize(http, plain, None)).status_code == 200
        refused = await http.post(plain, json=INITIALIZE, headers=ACCEPT)
    assert refused.status_code == 503
    return refused


def assert_refused_as_the_sdk(response: httpx2.Response, sdk: httpx2.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.content == sdk.content
    assert response.headers["content-type"] == sdk.headers["content-type"]
    assert "mcp-session-id" not in response.headers


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
async def test_sessions_per_principal_are_limited_across_the_fleet(
    store_spec: tuple[str, str], no_hold: None
) -> None:
    spec, namespace = store_spec
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        two_instances(spec, namespace, max_sessions_per_principal=2) as (a, b, first, _),
    ):
        sdk = await sdk_refusal(http)
        one = await initialize(http, a, "alice")
        two = await initialize(http, b, "alice")
        assert (one.status_code, two.status_code) == (200, 200)
        for url in (a, b):
            assert_refused_as_the_sdk(await initialize(http, url, "alice"), sdk)
        assert (await initialize(http, a, "bob")).status_code == 200  # a budget of his own
        assert (await initialize(http, b, None)).status_code == 200  # anonymous: one more
        # Ending a session frees its place, on any instance.
        session = one.headers["mcp-session-id"]
        assert (await http.delete(b, headers=headers("alice", session))).status_code == 200
        assert (await initialize(http, a, "alice")).status_code == 200
        assert_refused_as_the_sdk(await initialize(http, b, "alice"), sdk)
        # The application's namespace holds sessions only: alice 2, bob 1, anonymous 1.
        assert await first.store.count_sessions() == 4


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
async def test_the_fleet_limit_counts_every_instance_and_expiry_frees_places(
    store_spec: tuple[str, str], no_hold: None, short_grace: None
) -> None:
    spec, namespace = store_spec
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        two_instances(spec, namespace, max_sessions=3, ttl=1.0, touch_interval=0.1) as (
            a,
            b,
            _,
            _,
        ),
    ):
        sdk = await sdk_refusal(http)
        opened = [
            await initialize(http, url, user) for url, user in ((a, "u1"), (b, "u2"), (a, None))
        ]
        assert [r.status_code for r in opened] == [200, 200, 200]
        for url in (a, b):
            assert_refused_as_the_sdk(await initialize(http, url, "u4"), sdk)
        # Keep one session busy; the other two expire (ttl 1 s) and their places come back.
        busy = opened[0].headers["mcp-session-id"]
        admitted = None
        for _ in range(100):  # up to 10 s
            assert (await tools_list(http, b, "u1", busy)).status_code == 200
            response = await initialize(http, b, "u4")
            if response.status_code == 200:
                admitted = response
                break
            assert_refused_as_the_sdk(response, sdk)
            await asyncio.sleep(0.1)
        assert admitted is not None, "the places of expired sessions never came back"
        assert (await tools_list(http, a, "u1", busy)).status_code == 200


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
async def test_racing_openings_never_overshoot_a_limit(
    store_spec: tuple[str, str], no_hold: None
) -> None:
    """24 openings at once, half on each instance, one principal: exactly the limit gets in,
    per principal and for the fleet (compare-and-set on the ledgers)."""
    spec, namespace = store_spec
    async with (
        httpx2.AsyncClient(timeout=60) as http,
        two_instances(spec, namespace, max_sessions=7, max_sessions_per_principal=5) as (
            a,
            b,
            first,
            _,
        ),
    ):

        async def attempt(url: str, user: str) -> int:
            response = await http.post(url, json=INITIALIZE, headers={**ACCEPT, **headers(user)})
            return response.status_code

        alice = await asyncio.gather(*(attempt(a if n % 2 else b, "alice") for n in range(24)))
        assert sorted(alice) == [200] * 5 + [503] * 19
        others = await asyncio.gather(*(attempt(a if n % 2 else b, f"user{n}") for n in range(12)))
        assert sorted(others) == [200] * 2 + [503] * 10
        assert await first.store.count_sessions() == 7


async def test_an_instance_whose_sdk_refuses_a_restore_answers_with_that_refusal(
    tmp_path: Path,
) -> None:
    """B's SDK holds at most one session: restoring a second there gets the SDK's own 503."""
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        two_instances(spec, "default", sdk_options_b={"max_sessions": 1}) as (a, b, _, _),
    ):
        sdk = await sdk_refusal(http)
        assert (await initialize(http, b, "bob")).status_code == 200  # B's one session
        opened = await initialize(http, a, "alice")
        session = opened.headers["mcp-session-id"]
        refused = await tools_list(http, b, "alice", session)
        assert_refused_as_the_sdk(refused, sdk)
        assert (await tools_list(http, a, "alice", session)).status_code == 200


async def test_the_kept_initialize_request_is_bounded(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        two_instances(spec, "default", max_initialize_bytes=4096) as (a, b, first, _),
    ):

        def padded(size: int) -> bytes:
            body = json.loads(json.dumps(INITIALIZE))
            body["params"]["capabilities"]["experimental"] = {"pad": {"x": ""}}
            text = json.dumps(body, separators=(",", ":"))
            return text.replace('"x":""', '"x":"' + "p" * (size - len(text)) + '"').encode()

        fits, over = padded(4096), padded(4097)
        assert (len(fits), len(over)) == (4096, 4097)
        refused = await http.post(a, content=over, headers=headers(None))
        assert refused.status_code == 413
        assert refused.json()["error"]["message"] == (
            "Initialize request too large: 4097 bytes (at most 4096)"
        )
        assert await first.store.count_sessions() == 0
        opened = await http.post(a, content=fits, headers=headers(None))
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        stored = await first.store.get_session(session)
        assert stored.metadata[MCP_METADATA_KEY]["initialize"].encode() == fits  # as sent
        # B restores it from those very bytes.
        assert (await tools_list(http, b, None, session)).status_code == 200


async def test_client_chosen_values_never_make_long_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = f"sqlite:///{tmp_path / 'mcp.db'}"
    huge = "x" * 8192
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        two_instances(spec, "default") as (a, b, _, _),
    ):
        session = (await initialize(http, a, "alice")).headers["mcp-session-id"]
        with caplog.at_level(logging.DEBUG):
            for url in (a, b):
                for event_id in (huge, f"A-1.{huge}", "A-1.0-1", f"{huge}.{huge}"):
                    await http.get(
                        url, headers=headers("alice", session, **{"last-event-id": event_id})
                    )
                await tools_list(http, url, "alice", huge)
                await tools_list(http, url, "alice", "\x7f" + huge)
                body = {"jsonrpc": "2.0", "id": huge, "method": "tools/list"}
                await http.post(url, json=body, headers=headers("alice", session))
        # The server's log lines: ours at every level, the SDK's and uvicorn's from INFO (the
        # SDK's debug lines quote whole stream ids; the client library's quote what it sent).
        records = [
            r
            for r in caplog.records
            if r.name.startswith("sessionstore")
            or (r.levelno >= logging.INFO and not r.name.startswith(("httpx2", "httpcore2")))
        ]
        assert any("replay of" in r.getMessage() for r in records), "the test proves nothing"
        assert not [r for r in records if r.levelno >= logging.ERROR], "an id broke something"
        for record in records:
            message = record.getMessage()
            assert len(message) <= LOG_BOUND, (record.name, message[:200], len(message))
            assert "xxxxxxxxxx" * 20 not in message


@pytest.mark.parametrize("store_spec", STORES, indirect=True)
async def test_the_application_namespace_holds_only_sessions(
    store_spec: tuple[str, str],
) -> None:
    spec, _ = store_spec
    namespace = ("n" * 48 + uuid.uuid4().hex)[:64]  # the longest there is
    own = layer_namespace(namespace)
    assert own != namespace
    assert len(own) <= 64
    async with (
        httpx2.AsyncClient(timeout=20) as http,
        two_instances(spec, namespace, max_sessions=10, max_sessions_per_principal=5) as (
            a,
            b,
            first,
            second,
        ),
    ):
        opened = [
            (await initialize(http, url, "alice")).headers["mcp-session-id"] for url in (a, b)
        ]
        assert (await tools_list(http, b, "alice", opened[0])).status_code == 200
        listed = await first.store.list_sessions()
        assert sorted(s.id for s in listed) == sorted(opened)
        assert all(MCP_METADATA_KEY in s.metadata for s in listed)
        assert await first.store.count_sessions() == 2
        async with open_store(spec, namespace=own) as layer_store:
            records = {s.id for s in await layer_store.list_sessions()}
        beats = {INSTANCE_ID_PREFIX + m.instance_id for m in (first, second)}
        assert beats <= records
        assert records - beats
        assert all(r.startswith(LEDGER_PREFIX) for r in records - beats)
        # Every session of alice ended (on either instance): no ledger of hers is left behind,
        # so the layer keeps no record per principal ever seen.
        for url, session in zip((b, a), opened, strict=True):
            ended = await http.delete(url, headers=headers("alice", session))
            assert ended.status_code == 200
        async with open_store(spec, namespace=own) as layer_store:
            records = {s.id for s in await layer_store.list_sessions()}
        assert not {r for r in records if r.startswith(LEDGER_PREFIX + "principal.")}
        assert LEDGER_PREFIX + "all.0" in records  # the fleet's shards stay
    async with open_store(spec, namespace=own) as layer_store:
        # A clean stop takes the heartbeats away; the ledgers stay (they count live sessions).
        left = {s.id for s in await layer_store.list_sessions()}
        assert left
        assert all(r.startswith(LEDGER_PREFIX) for r in left)
        await layer_store.clear()
