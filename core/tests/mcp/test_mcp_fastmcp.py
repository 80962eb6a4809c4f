"""End to end: FastMCP (``fastmcp`` 4.x) servers behind the roaming layer, two instances behind a
round-robin balancer, driven by the official SDK 2.x client (issue 15, item 8).

Each module-scoped fleet is two processes of ``fastmcp_server_app.py`` (``FastMCP`` with its own
bearer auth, ``mcp.http_app(event_store=sessions.event_store)`` wrapped by ``McpSessions``) on one
store, a shared SQLite file or a throwaway ``redis-server``, behind ``balancer.py``; the tests set
which instances the balancer sends the next requests to. The client is the SDK's own
(``Client(..., mode="legacy")`` over its Streamable HTTP transport, with its reconnection), run in
this process.

- A session opened on one instance is served by the other; a tool sees the layer's session id,
  the same on both (FastMCP's ``ctx.session_id`` is the local SDK's, different on each).
- A stream cut while instance A runs a tool resumes on B: every remaining progress notification
  exactly once, live (the tool finishes only once the client has seen the last one), then A's
  result. FastMCP wraps each transport's event store in an adapter with a random prefix per
  transport; without the layer undoing it, B replays nothing and the call never ends.
- Per-session state (``sessionstore.mcp.current_session()``) written on one instance is read and
  changed on the other, and racing modifications from both instances all count.
- FastMCP's own auth: another user presenting a session's id gets the 404 of an unknown id on
  both instances, and no token gets FastMCP's 401.
- Lifespan: FastMCP's server lifespan runs under the layer, and a wrapped app mounted in a parent
  Starlette app (as FastMCP's docs mount ``http_app()``) starts the layer through
  ``sessions.lifespan``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from balancer import Balancer
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_harness import Cluster, ServerInstance, free_port

from sessionstore import open_store
from sessionstore_contract import skip_or_fail

HERE = Path(__file__).resolve().parent
FASTMCP_SCRIPT = HERE / "fastmcp_server_app.py"
CALL_LIMIT = 20.0  # the client's read timeout of a call: a hang shows as a timeout error
WAIT = 20.0  # generous bound for anything the tests wait for
HANDSHAKE_VERSION = "2025-11-25"


class FastMcpInstance(ServerInstance):
    """One process of ``fastmcp_server_app.py`` (the harness's instance, another script)."""

    def __init__(self, *args: Any, path: str = "/mcp", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command[1] = str(FASTMCP_SCRIPT)
        self.path = path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@dataclass
class Fleet:
    """Two FastMCP instances on one store behind a round-robin balancer."""

    cluster: Cluster
    balancer: Balancer
    a: FastMcpInstance
    b: FastMcpInstance
    store: str
    namespace: str
    gates: Path
    ports: dict[int, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.balancer.url}/mcp"

    def route(self, *instances: FastMcpInstance) -> None:
        """Send the next requests to these instances, in turn."""
        self.balancer.set_upstreams([instance.port for instance in instances])


def start_instances(
    cluster: Cluster, names: tuple[str, ...], options: list[str], path: str = "/mcp"
) -> list[FastMcpInstance]:
    started = []
    for name in names:
        instance = FastMcpInstance(
            cluster.python,
            name,
            free_port(),
            store=cluster.store,
            namespace=cluster.namespace,
            log_dir=cluster.log_dir,
            options=options,
            path=path,
        )
        cluster.instances[name] = instance
        started.append(instance.start())
    for instance in started:
        instance.wait_ready()
    return started


def store_spec(request: pytest.FixtureRequest, store_kind: str, directory: Path) -> str:
    if store_kind == "sqlite":
        return f"sqlite:///{directory / 'sessions.db'}"
    url: str = request.getfixturevalue("mcp_redis_url")
    return url


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp(f"fastmcp-{request.param}")
    store = store_spec(request, request.param, directory)
    namespace = f"fastmcp-{uuid.uuid4().hex[:12]}"
    cluster = Cluster(sys.executable, store=store, namespace=namespace, log_dir=directory)
    balancer: Balancer | None = None
    try:
        a, b = start_instances(cluster, ("A", "B"), ["--auth", "fastmcp"])
        balancer = Balancer([a.port, b.port]).start()
        gates = directory / "gates"
        gates.mkdir()
        yield Fleet(cluster, balancer, a, b, store, namespace, gates, {a.port: "A", b.port: "B"})
    finally:
        if balancer is not None:
            balancer.close()
        cluster.close()


@pytest.fixture(autouse=True)
def _fastmcp_installed() -> None:
    """A missing FastMCP skips these tests loudly (fails them under CI=true)."""
    if importlib.util.find_spec("fastmcp") is None:
        skip_or_fail(
            "fastmcp is not installed: requirements/dev.txt pins it (make .venv/.installed)"
        )


@pytest.fixture(autouse=True)
def _fleet_logs(request: pytest.FixtureRequest) -> None:
    """A failed test's report carries its fleet's logs (conftest's report hook reads them)."""
    if "fleet" in request.fixturenames:
        request.node.mcp_clusters = [request.getfixturevalue("fleet").cluster]


# -- the SDK's client ----------------------------------------------------------------------------


@dataclass
class Connection:
    """A client session of the SDK's own client, with what its HTTP exchanges showed."""

    client: Client
    sessions: list[str]  # every Mcp-Session-Id a server handed out
    statuses: list[tuple[str, int, str | None]]  # (method, status, Last-Event-ID sent)

    @property
    def session(self) -> str:
        assert self.sessions, "no session was opened"
        return self.sessions[-1]

    async def text(self, tool: str, **arguments: Any) -> str:
        result = await self.client.call_tool(tool, arguments, read_timeout_seconds=CALL_LIMIT)
        assert not result.is_error, result
        return " ".join(getattr(block, "text", "") for block in result.content)

    async def json(self, tool: str, **arguments: Any) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(await self.text(tool, **arguments))
        return value


@asynccontextmanager
async def connect(url: str, token: str = "alice-token") -> AsyncIterator[Connection]:
    sessions: list[str] = []
    statuses: list[tuple[str, int, str | None]] = []

    async def on_response(response: Any) -> None:
        given = response.headers.get("mcp-session-id")
        if given and given not in sessions:
            sessions.append(given)
        request = response.request
        statuses.append(
            (request.method, response.status_code, request.headers.get("last-event-id"))
        )

    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [on_response]},
    ) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
        async with Client(transport, mode="legacy", cache=None) as client:
            yield Connection(client, sessions, statuses)


def run(scenario: Any) -> Any:
    """Run an async scenario with a bound: a hang fails the test instead of stalling the run."""

    async def bounded() -> Any:
        return await asyncio.wait_for(scenario, 90.0)

    return asyncio.run(bounded())


# -- roaming -------------------------------------------------------------------------------------


def test_a_session_opened_on_one_instance_is_served_by_the_other(fleet: Fleet) -> None:
    async def scenario() -> None:
        fleet.route(fleet.a)
        async with connect(fleet.url) as mcp:
            on_a = await mcp.json("whoami")
            fleet.route(fleet.b)
            on_b = await mcp.json("whoami")
            fleet.route(fleet.a, fleet.b)
            both = {(await mcp.json("whoami"))["instance"] for _ in range(4)}
        assert (on_a["instance"], on_b["instance"]) == ("A", "B")
        # A tool sees the layer's session id, the client's, on every instance...
        assert on_a["layer_session"] == on_b["layer_session"] == mcp.session
        assert on_a["handle"] == on_b["handle"] == mcp.session  # current_session().id
        # ...while FastMCP's ctx.session_id is the local SDK's, different on each.
        assert on_a["fastmcp_session"] != on_b["fastmcp_session"]
        # FastMCP's server lifespan ran on both, under the layer.
        assert (on_a["lifespan"], on_b["lifespan"]) == ("lifespan of A", "lifespan of B")
        assert both == {"A", "B"}
        assert len(mcp.sessions) == 1
        assert all(status != 404 for _, status, _ in mcp.statuses), mcp.statuses

    run(scenario())


def test_a_cut_stream_resumes_on_the_other_instance(fleet: Fleet) -> None:
    """A runs the tool; after its 3rd notification the balancer sends everything to B and cuts
    every connection. The SDK client resumes with Last-Event-ID on B, which tails A's events from
    the store. The tool returns only once the client has seen its last notification (a gate
    file the test writes then), so the notifications must flow live through B."""
    steps = 6
    gate = fleet.gates / uuid.uuid4().hex

    async def scenario() -> tuple[list[float], str, float]:
        fleet.route(fleet.a)
        seen: list[float] = []
        cut_at = 0.0
        async with connect(fleet.url) as mcp:

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                nonlocal cut_at
                seen.append(progress)
                if progress == 3:
                    fleet.route(fleet.b)
                    cut_at = time.monotonic()
                    assert fleet.balancer.cut() >= 1
                if progress == steps:
                    gate.write_text("open")

            result = await mcp.client.call_tool(
                "progress",
                {"steps": steps, "delay": 0.15, "label": "cut", "gate": str(gate)},
                read_timeout_seconds=CALL_LIMIT,
                progress_callback=on_progress,
            )
            assert not result.is_error, result
            text = " ".join(getattr(block, "text", "") for block in result.content)
            resumed = [s for s in mcp.statuses if s[0] == "GET" and s[2] is not None]
            assert resumed, mcp.statuses
            assert all(status == 200 for _, status, _ in resumed), mcp.statuses
        return seen, text, cut_at

    seen, text, cut_at = run(scenario())
    assert seen == [float(step) for step in range(1, steps + 1)], "each notification once, in order"
    assert text == f"done {steps} steps on A"
    after = {fleet.ports[r.port] for r in fleet.balancer.requests if r.at >= cut_at}
    assert after == {"B"}, f"after the cut, requests went to {after}"


# -- per-session state ---------------------------------------------------------------------------


def test_session_state_is_shared_by_both_instances(fleet: Fleet) -> None:
    """A FastMCP tool's ``current_session()``: set on A, read and changed on B (by a modify
    function and by compare-and-set on a version read on A), read back on A; another session's
    state stays apart; modifications racing on both instances all count."""

    async def scenario() -> None:
        fleet.route(fleet.a)
        async with connect(fleet.url) as mcp, connect(fleet.url) as other:
            assert (await mcp.json("recall"))["note"] is None
            assert await mcp.text("remember", text="hello") == "A"
            fleet.route(fleet.b)
            assert (await mcp.json("recall"))["note"] == "hello"
            assert await mcp.text("append", text=" world") == "B"
            fleet.route(fleet.a)
            read_on_a = await mcp.json("recall")
            assert (read_on_a["instance"], read_on_a["note"]) == ("A", "hello world")
            fleet.route(fleet.b)
            version = read_on_a["version"]
            assert await mcp.text("replace", text="swapped", version=version) == "stored"
            assert await mcp.text("replace", text="late", version=version) == "stale"
            fleet.route(fleet.a)
            assert (await mcp.json("recall"))["note"] == "swapped"
            # Another session of the same user has a state of its own.
            assert (await other.json("recall"))["note"] is None
            # Modifications racing on both instances: none is lost.
            fleet.route(fleet.a, fleet.b)
            await mcp.text("remember", text="")
            served = await asyncio.gather(*(mcp.text("append", text="x") for _ in range(8)))
            assert set(served) == {"A", "B"}, served
            assert (await mcp.json("recall"))["note"] == "x" * 8

    run(scenario())


# -- FastMCP's own auth --------------------------------------------------------------------------


def _post(
    http: httpx2.Client, url: str, body: dict[str, Any], token: str | None, session: str | None
) -> httpx2.Response:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": HANDSHAKE_VERSION,
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if session is not None:
        headers["mcp-session-id"] = session
    return http.post(url, json=body, headers=headers)


def test_fastmcp_auth_keeps_sessions_to_their_user(fleet: Fleet) -> None:
    """Alice opens a session on A. Bob, with his own valid token and Alice's session id, gets on
    both instances the 404 an unknown id gets (before and after the session was restored on B);
    without a token, FastMCP's 401. Alice's session works on both."""
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

    async def open_alices() -> str:
        fleet.route(fleet.a)
        async with connect(fleet.url) as alice:
            await alice.json("whoami")
            return alice.session

    session = run(open_alices())
    with httpx2.Client(timeout=httpx2.Timeout(10.0)) as http:
        unknown = _post(http, fleet.b.url, listing, "bob-token", uuid.uuid4().hex)
        assert unknown.status_code == 404, unknown.text
        for instance in (fleet.b, fleet.a):
            bobs = _post(http, instance.url, listing, "bob-token", session)
            assert (bobs.status_code, bobs.text) == (404, unknown.text), instance.name
            anonymous = _post(http, instance.url, listing, None, session)
            assert anonymous.status_code == 401, (instance.name, anonymous.text)
        for instance in (fleet.b, fleet.a, fleet.b):
            alices = _post(http, instance.url, listing, "alice-token", session)
            assert alices.status_code == 200, (instance.name, alices.text)
            assert "whoami" in alices.text
            bobs = _post(http, instance.url, listing, "bob-token", session)
            assert (bobs.status_code, bobs.text) == (404, unknown.text), instance.name


# -- lifespan ------------------------------------------------------------------------------------


def test_a_mounted_app_starts_the_layer_through_its_lifespan(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``Starlette(routes=[Mount("/api", app=wrapped)], lifespan=sessions.lifespan)``: FastMCP's
    own lifespan and the layer's start run, sessions land in the store, and SIGTERM stops both."""
    store = store_spec(request, "sqlite", tmp_path)
    namespace = f"fastmcp-{uuid.uuid4().hex[:12]}"
    cluster = Cluster(sys.executable, store=store, namespace=namespace, log_dir=tmp_path)
    request.node.mcp_clusters = [cluster]
    try:
        (mounted,) = start_instances(
            cluster, ("M",), ["--auth", "fastmcp", "--mount"], path="/api/mcp"
        )

        async def scenario() -> tuple[dict[str, Any], str, int]:
            async with connect(mounted.url) as mcp:
                info = await mcp.json("whoami")
                async with open_store(store, namespace=namespace) as opened:
                    count = await opened.count_sessions()
            return info, mcp.session, count

        info, session, count = run(scenario())
        assert info["layer_session"] == session, "the layer did not handle the mounted app"
        assert info["lifespan"] == "lifespan of M"
        assert count == 1
        mounted.terminate()
        assert mounted.wait(WAIT) in (0, -15)
        log = mounted.log_text()
        assert "FastMCP lifespan left" in log, log
        assert "Traceback" not in log, log
    finally:
        cluster.close()


# -- in process: what the layer does to FastMCP's session managers -------------------------------


def test_only_the_managers_of_the_layers_event_store_are_unscoped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FastMCP's manager of ``sessions.event_store`` hands its transports that store itself once
    the layer started; a FastMCP app with another event store keeps FastMCP's per-transport
    adapter (and its layer says, once, that resumption across instances cannot work)."""
    from fastmcp import FastMCP
    from fastmcp.server.event_store import EventStore as FastMcpEventStore
    from fastmcp.server.session_scoped_event_store import SessionScopedEventStore

    from sessionstore.mcp import McpSessions
    from sessionstore.mcp._fastmcp import _holders

    ours = McpSessions("memory")
    ours_app = ours.wrap(FastMCP("ours").http_app(event_store=ours.event_store))
    other = McpSessions("memory")
    their_store = FastMcpEventStore()
    other_app = other.wrap(FastMCP("theirs").http_app(event_store=their_store))

    def manager(app: Any) -> Any:
        (holder,) = _holders(app)
        return holder.session_manager

    async def scenario() -> tuple[Any, Any]:
        async with ours.lifespan(None), other.lifespan(None):
            return manager(ours_app).event_store, manager(other_app).event_store

    with caplog.at_level("WARNING", logger="sessionstore.mcp"):
        mine, theirs = run(scenario())
    assert mine is ours.event_store
    assert isinstance(theirs, SessionScopedEventStore)
    assert theirs._event_store is their_store
    warned = [r.getMessage() for r in caplog.records if "FastMCP app" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "event_store=sessions.event_store" in warned[0]


def test_stream_ids_under_fastmcps_adapter_are_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Should FastMCP's adapter still wrap the event store (an app the layer could not reach),
    the event store says so, once, as an error naming the fix; the events are still stored."""
    from sessionstore import Session, TransportType
    from sessionstore.mcp import SessionEventStore, session_scope

    async def scenario() -> None:
        async with open_store("memory") as store:
            session = await store.create_session(Session(transport=TransportType.HTTP))
            events = SessionEventStore(store)
            with session_scope(session.id):
                for stream in ("_GET_stream", "1", "2"):
                    await events.store_event(f"32:{uuid.uuid4().hex}:{stream}", None)
                await events.store_event("1", None)

    with caplog.at_level("ERROR", logger="sessionstore.mcp"):
        run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "FastMCP's per-transport prefix" in errors[0]
    assert "McpSessions.wrap()" in errors[0]
