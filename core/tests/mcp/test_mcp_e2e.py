"""End to end: several MCP server instances, one shared store, the SDK's own client (issue 6).

Two instances of ``mcp_server_app.py`` (separate processes, the official SDK 2.x or 1.x wrapped by
``sessionstore.mcp``) share a SQLite file, a real redis-server or, in part of the matrix, a real
PostgreSQL database. The SDK's own client
(``mcp_client.py``) reaches them through a switch (``switch.py``) that can cut connections, and
calls a tool that reports 10 progress notifications 0.2 s apart. After the 3rd notification the
producer, instance A, is

- ``cut``: its connections cut (A lives on): the client's SDK reconnects with ``Last-Event-ID``
  to B, which restores the session and tails A's events from the store: every notification
  exactly once, in order, then A's result;
- ``sigkill``: killed: the call ends with an explicit JSON-RPC error, promptly (within the
  heartbeat TTL, the client's retry delay and some slack), never a hang nor a 404; the session
  then works on B;
- ``sigterm``: stopped gracefully: A's SSE streams end at once (sse-starlette closes them when
  uvicorn shuts down) but the layer lets the running request finish before the SDK shuts down;
  the client resumes on B, which tails A's events from the store: every notification once, in
  order, then A's result; A exits, and the session then works on B.

Plus: a client of one session cannot replay another session's events, another principal cannot
use or restore someone's session (the same 404 as an unknown id), and the plain SDK without the
layer fails the same scenarios, so these tests have teeth.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from typing import Any

import httpx2
import pytest
from mcp_harness import CallOutcome, Cluster, ClusterFactory, McpClient, ServerInstance

HEARTBEAT_INTERVAL = 0.5  # the instances' heartbeat (McpSessions' heartbeat_interval)
HEARTBEAT_TTL = 2.0  # an instance silent this long is dead (McpSessions' heartbeat_ttl)
RETRY = 0.3  # the SSE `retry:` the instances send (mcp_server_app.RETRY_INTERVAL_MS), seconds
SLACK = 2.0  # for the machine: process scheduling, store round trips
STEPS = 10
DELAY = 0.2
ACT_AFTER = 3  # the producer fails after this many notifications
CALL_LIMIT = 15.0  # the client's read timeout of a call: a hang shows as a timeout error
GRACEFUL = 3.0  # uvicorn's timeout_graceful_shutdown in the instances
PLAIN_LIMIT = 5.0  # the read timeout without the layer (SDK 1.x's client would wait forever)
INSTANCE_OPTIONS = [
    f"--heartbeat-interval={HEARTBEAT_INTERVAL}",
    f"--heartbeat-ttl={HEARTBEAT_TTL}",
    f"--graceful={GRACEFUL}",
]

SDKS = ["sdk2", "sdk1"]
STORES = ["sqlite", "redis"]
SCENARIOS = ["sigkill", "cut", "sigterm"]
# PostgreSQL joins with SDK 2.x only, where the store does the work: B tailing A's events after a
# cut, and the replay check. Every other combination adds time to `make test` and little else.
PRODUCER_MATRIX = [
    (sdk, store, scenario) for sdk in SDKS for store in STORES for scenario in SCENARIOS
] + [("sdk2", "postgres", "cut")]
REPLAY_MATRIX = [(sdk, store) for sdk in SDKS for store in STORES] + [("sdk2", "postgres")]


def switch_url(cluster: Cluster) -> str:
    assert cluster.switch is not None
    return f"http://127.0.0.1:{cluster.switch.port}/mcp"


def start_first_call(
    cluster: Cluster, limit: float = CALL_LIMIT
) -> tuple[ServerInstance, ServerInstance, McpClient, CallOutcome]:
    """A and B up, the switch on A, a client with a session, a call past its 3rd notification."""
    a, b = cluster.start_instances("A", "B", options=INSTANCE_OPTIONS)
    cluster.start_switch(a)
    client = cluster.start_client(switch_url(cluster), "alice-token")
    client.call("first", steps=STEPS, delay=DELAY, limit=limit)
    first = client.follow(CallOutcome("first"), 15.0, until_progress=ACT_AFTER)
    assert first.end is None, f"the call ended before the failure: {first.end}"
    return a, b, client, first


def second_call_works_on_b(client: McpClient) -> None:
    """The same session serves a new call, on B."""
    client.call("second", steps=3, delay=0.05, limit=CALL_LIMIT)
    second = client.follow(CallOutcome("second"), CALL_LIMIT + 5)
    assert second.error is None, f"second call failed: {second.error}"
    assert second.result == "done 3 steps on B"
    assert second.progress == [1, 2, 3]


def assert_one_session(client: McpClient) -> None:
    """Every request after the handshake carried the session's id; no 404 ever came back."""
    assert client.session
    for event in client.http():
        if event["method"] != "POST" or event["session"] is not None:
            assert event["session"] == client.session, event.fields
        assert event["status"] != 404, event.fields


@pytest.mark.parametrize(("sdk", "store_kind", "scenario"), PRODUCER_MATRIX)
def test_producer_failure(
    make_cluster: ClusterFactory, sdk: str, store_kind: str, scenario: str
) -> None:
    from sessionstore.mcp import INTERRUPTED_ERROR_CODE

    cluster = make_cluster(sdk, store_kind)
    a, b, client, first = start_first_call(cluster)
    switch = cluster.switch
    assert switch is not None
    switch.set_target(b.port)  # new connections go to B from now on
    acted_at = time.monotonic()
    if scenario == "cut":
        assert switch.cut() >= 1
    elif scenario == "sigkill":
        a.kill()
    else:
        a.terminate()

    client.follow(first, CALL_LIMIT + 5)
    if scenario == "sigkill":
        error = first.error
        assert error is not None, f"expected an error, got {first.end}"
        waited = error.at - acted_at
        bound = HEARTBEAT_TTL + RETRY + SLACK
        print(f"{sdk} {store_kind}: the error came {waited:.2f} s after the kill")
        assert waited <= bound, f"the error took {waited:.2f} s (bound {bound} s): {error.fields}"
        assert "timed out" not in error["message"].lower(), error.fields
        assert error["code"] == INTERRUPTED_ERROR_CODE, error.fields
        assert first.progress == [1, 2, 3]  # nothing after the kill, nothing twice
        second_call_works_on_b(client)
    else:
        assert first.error is None, f"the call failed: {first.error}"
        assert first.progress == list(range(1, STEPS + 1)), "each notification once, in order"
        assert first.result == f"done {STEPS} steps on A"
        assert any(port == b.port and at >= acted_at for at, port in switch.connections), (
            "the client never reconnected (to B)"
        )
        if scenario == "cut":
            assert a.running
        else:
            # uvicorn re-raises the SIGTERM it handled once it has shut down
            assert a.wait(GRACEFUL + 5) in (0, -signal.SIGTERM)
            second_call_works_on_b(client)
    assert_one_session(client)


@pytest.mark.parametrize("scenario", ["cut", "sigkill"])
@pytest.mark.parametrize("sdk", SDKS)
def test_plain_sdk_fails_the_same_scenario(
    make_cluster: ClusterFactory, sdk: str, scenario: str
) -> None:
    """Without the layer (each instance with the SDK's in-memory event store), B does not know
    the session: the cut call never completes and the session is gone after a crash."""
    cluster = make_cluster(sdk, "sqlite", plain=True)
    a, b, client, first = start_first_call(cluster, limit=PLAIN_LIMIT)
    switch = cluster.switch
    assert switch is not None
    switch.set_target(b.port)
    if scenario == "cut":
        switch.cut()
        client.follow(first, PLAIN_LIMIT + 5)
        assert not (first.progress == list(range(1, STEPS + 1)) and first.result), (
            "the plain SDK resumed on another instance: the layer's tests prove nothing"
        )
    else:
        a.kill()
        client.follow(first, PLAIN_LIMIT + 5)
        assert first.result is None
        client.call("second", steps=3, delay=0.05, limit=PLAIN_LIMIT)
        second = client.follow(CallOutcome("second"), PLAIN_LIMIT + 5)
        assert second.result is None, "the plain SDK served the session on another instance"
    assert any(
        event["status"] == 404 and event["session"] == client.session for event in client.http()
    ), "B did not answer 404 for the session: the failure is not for want of shared state"


# -- raw HTTP: isolation between sessions and principals -----------------------------------------

HANDSHAKE_VERSION = "2025-06-18"


def _headers(token: str | None, session: str | None = None, **extra: str) -> dict[str, str]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": HANDSHAKE_VERSION,
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if session is not None:
        headers["mcp-session-id"] = session
    headers.update({key.replace("_", "-"): value for key, value in extra.items()})
    return headers


def _sse_events(lines: Any) -> list[tuple[str | None, str]]:
    """``(id, data)`` of each SSE event read from ``lines`` until they end or time out."""
    events: list[tuple[str | None, str]] = []
    event_id: str | None = None
    data: list[str] = []
    try:
        for line in lines:
            if line == "":
                if data or event_id is not None:
                    events.append((event_id, "\n".join(data)))
                event_id, data = None, []
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
    except httpx2.ReadTimeout:
        pass
    return events


class RawClient:
    """The wire protocol by hand, to send what the SDK's client never would."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.http = httpx2.Client(timeout=httpx2.Timeout(10.0, read=1.5))

    def close(self) -> None:
        self.http.close()

    def request(
        self, url: str, body: dict[str, Any], session: str | None = None, **headers: str
    ) -> tuple[httpx2.Response, list[tuple[str | None, str]], str]:
        """POST ``body``: the response, its SSE events (or []) and its text when not SSE."""
        with self.http.stream(
            "POST", url, json=body, headers=_headers(self.token, session, **headers)
        ) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return response, _sse_events(response.iter_lines()), ""
            return response, [], response.read().decode()

    def get(
        self, url: str, session: str, last_event_id: str
    ) -> tuple[int, list[tuple[str | None, str]], str]:
        """GET with ``Last-Event-ID``: the status, the events within a read timeout, the body."""
        headers = _headers(self.token, session, last_event_id=last_event_id)
        with self.http.stream("GET", url, headers=headers) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return response.status_code, _sse_events(response.iter_lines()), ""
            return response.status_code, [], response.read().decode()

    def open_session(self, url: str) -> str:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": HANDSHAKE_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
        response, events, _ = self.request(url, body)
        assert response.status_code == 200, events
        session = response.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response, _, _ = self.request(url, initialized, session)
        assert response.status_code == 202
        return session

    def call_progress(
        self, url: str, session: str, label: str, steps: int = 3
    ) -> list[tuple[str | None, str]]:
        body = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {
                "name": "progress",
                "arguments": {"steps": steps, "delay": 0.05, "label": label},
                "_meta": {"progressToken": f"token-{label}"},
            },
        }
        response, events, text = self.request(url, body, session)
        assert response.status_code == 200, text
        assert any(f"done {steps} steps" in data for _, data in events), events
        return events

    def list_tools(self, url: str, session: str) -> tuple[int, str]:
        """``tools/list`` in ``session``: the status and the body (the answer's data on SSE)."""
        body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
        response, events, text = self.request(url, body, session)
        return response.status_code, events[-1][1] if events else text


@pytest.fixture
def raw_clients() -> Any:
    clients: list[RawClient] = []

    def make(token: str | None) -> RawClient:
        client = RawClient(token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize(("sdk", "store_kind"), REPLAY_MATRIX)
def test_no_replay_across_sessions(
    make_cluster: ClusterFactory, raw_clients: Any, sdk: str, store_kind: str
) -> None:
    """Alice's session S1 presents, as its Last-Event-ID, an event id of her session S2: on the
    producing instance and on another, nothing of S2 comes back; S2 itself can replay it."""
    cluster = make_cluster(sdk, store_kind)
    a, b = cluster.start_instances("A", "B", options=INSTANCE_OPTIONS)
    alice = raw_clients("alice-token")
    s1 = alice.open_session(a.url)
    s2 = alice.open_session(a.url)
    events = alice.call_progress(a.url, s2, "secret-of-s2", steps=3)
    ids = [event_id for event_id, data in events if event_id and "progress" in data]
    assert len(ids) == 3, events

    for instance in (a, b):
        status, replayed, body = alice.get(instance.url, s1, ids[0])
        leaked = [data for _, data in replayed if "secret-of-s2" in data]
        assert not leaked, f"{instance.name} replayed S2's events to S1: {leaked}"
        assert status != 200 or not replayed, (status, replayed, body)

    # The control: S2 replays its own events after its first notification, on B too.
    status, replayed, body = alice.get(b.url, s2, ids[0])
    assert status == 200, body
    datas = [data for _, data in replayed]
    assert [json.loads(d)["params"]["progress"] for d in datas if "progress" in d] == [2, 3]


@pytest.mark.parametrize("store_kind", STORES)
@pytest.mark.parametrize("sdk", SDKS)
def test_other_principal_gets_not_found(
    make_cluster: ClusterFactory, raw_clients: Any, sdk: str, store_kind: str
) -> None:
    """Bob presents Alice's session id, on the instance that has it and on another: the same 404
    as an unknown id, and Alice's session still works (on B, restored there after Bob tried)."""
    cluster = make_cluster(sdk, store_kind)
    a, b = cluster.start_instances("A", "B", options=INSTANCE_OPTIONS)
    alice, bob, anonymous = raw_clients("alice-token"), raw_clients("bob-token"), raw_clients(None)
    session = alice.open_session(a.url)
    events = alice.call_progress(a.url, session, "alice-work", steps=2)
    first_id = next(event_id for event_id, data in events if event_id and "progress" in data)

    for instance in (b, a):
        unknown = bob.list_tools(instance.url, uuid.uuid4().hex)
        assert unknown[0] == 404, unknown
        for intruder in (bob, anonymous):  # the same 404, byte for byte
            assert intruder.list_tools(instance.url, session) == unknown, instance.name
            status, replayed, body = intruder.get(instance.url, session, first_id)
            assert (status, replayed) == (404, []), (instance.name, status, replayed, body)

    assert alice.list_tools(b.url, session)[0] == 200
    assert alice.list_tools(a.url, session)[0] == 200


@pytest.mark.parametrize("sdk", SDKS)
def test_plain_sdk_leaks_across_sessions_and_principals(
    make_cluster: ClusterFactory, raw_clients: Any, sdk: str
) -> None:
    """The teeth of the two tests above: on one instance of the plain SDK (one event store for
    every session, no principal check), S1 replays S2's events and Bob uses Alice's session."""
    cluster = make_cluster(sdk, "sqlite", plain=True)
    (a,) = cluster.start_instances("A")
    alice, bob = raw_clients("alice-token"), raw_clients("bob-token")
    s1 = alice.open_session(a.url)
    s2 = alice.open_session(a.url)
    events = alice.call_progress(a.url, s2, "secret-of-s2", steps=2)
    first_id = next(event_id for event_id, data in events if event_id and "progress" in data)
    _, replayed, _ = alice.get(a.url, s1, first_id)
    assert any("secret-of-s2" in data for _, data in replayed), replayed
    assert bob.list_tools(a.url, s1)[0] == 200
