"""Answers to server-to-client requests across instances (``sessionstore.mcp.replies``), on the
real SDK (2.x) and real HTTP: two instances in this process, one SQLite file, raw HTTP, so the
tests see exactly what a client sees.

A tool on one instance asks the client (elicitation, sampling, roots, ping); the client answers
on the other instance; the answer must reach the tool. Also: colliding request ids of two
instances, unknown and expired ids, another principal, a dead asker, a flood of bogus answers.
The two-process version with the SDK's own client behind a round-robin balancer, SDK 1.x and
2.x, SQLite and Redis, is in ``core/tests/mcp/test_mcp_replies_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

import httpx2
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel
from starlette.middleware.authentication import AuthenticationMiddleware
from test_mcp_layer import ACCEPT, VERSION, Tokens, two_instances

from sessionstore import Session, TransportType, open_store
from sessionstore.errors import StoreUnavailableError
from sessionstore.mcp import McpSessions, ReplyRelay
from sessionstore.mcp import roaming as roaming_module
from sessionstore.mcp.replies import (
    ASKS_METADATA_KEY,
    MAX_ASKS,
    _noting,
    parse_reply,
    reply_stream_id,
)

pytestmark = pytest.mark.filterwarnings("ignore:The (sampling|roots) capability is deprecated")

CAPABILITIES = {"elicitation": {"form": {}}, "sampling": {}, "roots": {"listChanged": False}}
WAIT = 20.0  # seconds: a generous bound on anything the tests wait for


class Answer(BaseModel):
    answer: str


def build_app(name: str, sessions: McpSessions) -> AuthenticationMiddleware:
    mcp = MCPServer(f"server {name}")

    @mcp.tool()
    async def ask(ctx: Context, kind: str = "elicitation") -> str:
        """Ask the client something; say what it answered, and which instance heard it."""
        session: Any = ctx.session
        if kind == "elicitation":
            elicited = await ctx.elicit("what?", schema=Answer)
            data = elicited.data
            heard = data.answer if isinstance(data, Answer) else elicited.action
        elif kind == "sampling":
            message = types.SamplingMessage(
                role="user", content=types.TextContent(type="text", text="hi")
            )
            sampled = await session.create_message(
                [message], max_tokens=5, related_request_id=ctx.request_id
            )
            heard = sampled.content.text
        elif kind == "roots":  # the SDK sends it on the GET stream
            heard = ",".join(str(root.uri) for root in (await session.list_roots()).roots)
        elif kind == "ping":  # likewise
            await session.send_ping()
            heard = "pong"
        else:
            raise ValueError(kind)
        return f"{name} heard {heard}"

    inner = mcp.streamable_http_app(event_store=sessions.event_store, retry_interval=100)
    return AuthenticationMiddleware(sessions.wrap(inner), backend=Tokens())


class Stream:
    """An SSE response read message by message as it comes."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> dict[str, Any]:
        """The next JSON-RPC message (priming events skipped)."""
        data: list[str] = []
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data and "".join(data):
                    message: dict[str, Any] = json.loads("".join(data))
                    return message
                elif not line:
                    data = []
        raise AssertionError("the stream ended")


class Client:
    """A raw MCP client over HTTP: one session, one principal."""

    def __init__(self, http: httpx2.AsyncClient, user: str | None, stack: AsyncExitStack) -> None:
        self.http = http
        self.auth = {"authorization": f"Bearer {user}-token"} if user else {}
        self.session_id: str | None = None
        self.stack = stack
        self._ids = 1

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {**ACCEPT, **self.auth, "mcp-protocol-version": VERSION, **extra}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def initialize(self, url: str) -> str:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": VERSION,
                "capabilities": CAPABILITIES,
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
        response = await self.http.post(url, json=body, headers={**ACCEPT, **self.auth})
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        done = await self.post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status_code == 202, done.text
        return self.session_id

    async def post(self, url: str, message: Any) -> httpx2.Response:
        return await self.http.post(url, content=json.dumps(message), headers=self.headers())

    async def answer(self, url: str, request: dict[str, Any], result: Any) -> httpx2.Response:
        """POST the answer to a request the server sent."""
        return await self.post(url, {"jsonrpc": "2.0", "id": request["id"], "result": result})

    async def call(self, url: str, kind: str = "elicitation") -> Stream:
        """Start a call of the ``ask`` tool; its stream, open."""
        self._ids += 1
        body = {
            "jsonrpc": "2.0",
            "id": self._ids,
            "method": "tools/call",
            "params": {"name": "ask", "arguments": {"kind": kind}},
        }
        request = self.http.build_request(
            "POST", url, content=json.dumps(body), headers=self.headers()
        )
        response = await self.http.send(request, stream=True)
        self.stack.push_async_callback(response.aclose)
        assert response.status_code == 200, await response.aread()
        return Stream(response)

    async def listen(self, url: str) -> Stream:
        """Open the session's GET stream (where the SDK sends requests tied to no call)."""
        request = self.http.build_request("GET", url, headers=self.headers())
        response = await self.http.send(request, stream=True)
        self.stack.push_async_callback(response.aclose)
        assert response.status_code == 200, await response.aread()
        return Stream(response)


ANSWERS: dict[str, Any] = {
    "elicitation/create": {"action": "accept", "content": {"answer": "yes"}},
    "sampling/createMessage": {
        "role": "assistant",
        "content": {"type": "text", "text": "sampled"},
        "model": "test-model",
    },
    "roots/list": {"roots": [{"uri": "file:///srv/data", "name": "data"}]},
    "ping": {},
}
HEARD = {
    "elicitation": "yes",
    "sampling": "sampled",
    "roots": "file:///srv/data",
    "ping": "pong",
}
METHOD = {
    "elicitation": "elicitation/create",
    "sampling": "sampling/createMessage",
    "roots": "roots/list",
    "ping": "ping",
}


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Return once ``check()`` is true; fail after :data:`WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        done = check()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.02)


def text_of(result: dict[str, Any]) -> str:
    assert "result" in result, result
    return str(result["result"]["content"][0]["text"])


@asynccontextmanager
async def clients(tmp_path: Path, **options: Any) -> AsyncIterator[Any]:
    options = {"drain_timeout": 1, **options}
    async with (
        two_instances(tmp_path, build_app, **options) as (a, b, first, second),
        httpx2.AsyncClient(timeout=WAIT) as http,
        AsyncExitStack() as stack,
    ):
        yield a, b, first, second, lambda user: Client(http, user, stack)


async def relayed_events(sessions: McpSessions, session_id: str, cursor: str) -> list[Any]:
    """The answers relayed on the session's reply stream of ``sessions``' instance since
    ``cursor``."""
    _, events = await sessions.store.replay_events_after(cursor, session_id=session_id)
    return [event for event in events if event.data is not None]  # no places (priming events)


async def place_on_reply_stream(sessions: McpSessions, session_id: str) -> str:
    """A cursor on the reply stream of ``sessions``' instance, to see what gets relayed."""
    return await sessions.store.append_event(
        session_id, reply_stream_id(sessions.instance_id), None
    )


@pytest.mark.parametrize("kind", ["elicitation", "sampling", "roots", "ping"])
async def test_an_answer_reaching_the_other_instance_reaches_the_tool(
    tmp_path: Path, kind: str
) -> None:
    async with clients(tmp_path) as (a, b, first, second, client_of):
        alice = client_of("alice")
        await alice.initialize(a)
        listening = await alice.listen(a) if kind in ("roots", "ping") else None
        call = await alice.call(a, kind)
        request = await (listening or call).next()
        assert request["method"] == METHOD[kind]
        # The id names the instance that asked.
        assert request["id"].startswith(first.instance_id + ":")
        answered = await alice.answer(b, request, ANSWERS[request["method"]])
        assert answered.status_code == 202, answered.text
        assert answered.content == b""
        assert answered.headers["mcp-session-id"] == alice.session_id
        assert text_of(await call.next()) == f"A heard {HEARD[kind]}"
        # Claimed: nothing is left in the session's record.
        stored = await second.store.get_session(alice.session_id)
        assert not stored.metadata.get(ASKS_METADATA_KEY)


async def test_an_answer_on_the_instance_that_asked_goes_straight_to_its_sdk(
    tmp_path: Path,
) -> None:
    async with clients(tmp_path) as (a, b, _, second, client_of):
        alice = client_of("alice")
        session_id = await alice.initialize(a)
        cursor = await place_on_reply_stream(second, session_id)
        call = await alice.call(b, "sampling")  # B restores the session and asks
        request = await call.next()
        assert request["id"] == f"{second.instance_id}:i1"
        answered = await alice.answer(b, request, ANSWERS[request["method"]])
        assert answered.status_code == 202
        assert text_of(await call.next()) == "B heard sampled"
        assert await relayed_events(second, session_id, cursor) == []


async def test_two_instances_asking_with_the_same_sdk_id_get_their_own_answers(
    tmp_path: Path,
) -> None:
    """Each instance's SDK numbers its requests from 1: without ids naming the instance, the
    answer to A's request 1 would reach B's request 1."""
    async with clients(tmp_path) as (a, b, first, second, client_of):
        alice = client_of("alice")
        await alice.initialize(a)
        on_a = await alice.call(a)
        on_b = await alice.call(b)  # B restores the session: its SDK starts numbering afresh
        asked_by_a, asked_by_b = await on_a.next(), await on_b.next()
        assert asked_by_a["id"] == f"{first.instance_id}:i1"
        assert asked_by_b["id"] == f"{second.instance_id}:i1"
        # Each answer lands on the instance that did not ask.
        to_a = {"action": "accept", "content": {"answer": "for-A"}}
        to_b = {"action": "accept", "content": {"answer": "for-B"}}
        assert (await alice.answer(b, asked_by_a, to_a)).status_code == 202
        assert (await alice.answer(a, asked_by_b, to_b)).status_code == 202
        assert text_of(await on_a.next()) == "A heard for-A"
        assert text_of(await on_b.next()) == "B heard for-B"


async def test_answers_to_unknown_expired_or_answered_requests_are_dropped(
    tmp_path: Path,
) -> None:
    async with clients(tmp_path, reply_timeout=1.0) as (a, b, first, second, client_of):
        alice = client_of("alice")
        session_id = await alice.initialize(a)
        cursor = await place_on_reply_stream(first, session_id)
        call = await alice.call(a)
        request = await call.next()
        result = ANSWERS[request["method"]]
        unknown = dict(request, id=f"{first.instance_id}:i999")
        assert (await alice.answer(b, unknown, result)).status_code == 202
        never = dict(request, id="nobody-1:i1")  # an instance that never asked
        assert (await alice.answer(b, never, result)).status_code == 202
        # Expired: the answer no longer crosses...
        stored = await second.store.get_session(session_id)
        deadline = stored.metadata[ASKS_METADATA_KEY][request["id"]]
        await eventually(lambda: time.time() * 1000 > deadline, "the deadline passed")
        late = {"action": "accept", "content": {"answer": "late"}}
        assert (await alice.answer(b, request, late)).status_code == 202
        assert await relayed_events(first, session_id, cursor) == []
        # ... but on the instance that asked it still reaches the SDK, which still waits.
        assert (await alice.answer(a, request, late)).status_code == 202
        assert text_of(await call.next()) == "A heard late"
        # Answered: another answer goes nowhere.
        again = await alice.answer(b, request, late)
        assert again.status_code == 202
        assert await relayed_events(first, session_id, cursor) == []


async def test_another_principal_cannot_answer(tmp_path: Path) -> None:
    async with clients(tmp_path) as (a, b, first, _, client_of):
        alice, mallory = client_of("alice"), client_of("mallory")
        session_id = await alice.initialize(a)
        cursor = await place_on_reply_stream(first, session_id)
        call = await alice.call(a)
        request = await call.next()
        mallory.session_id = session_id
        forged = {"action": "accept", "content": {"answer": "forged"}}
        for url in (b, a):
            refused = await mallory.answer(url, request, forged)
            assert refused.status_code == 404
        # Mallory's own session does not reach it either.
        await mallory.initialize(b)
        assert (await mallory.answer(b, request, forged)).status_code == 202
        assert await relayed_events(first, session_id, cursor) == []
        assert (await alice.answer(b, request, ANSWERS[request["method"]])).status_code == 202
        assert text_of(await call.next()) == "A heard yes"


async def test_an_answer_for_a_gone_instance_is_dropped(tmp_path: Path) -> None:
    async with clients(tmp_path) as (a, b, first, second, client_of):
        alice = client_of("alice")
        session_id = await alice.initialize(a)
        cursor = await place_on_reply_stream(first, session_id)
        call = await alice.call(a)
        request = await call.next()
        # The instance that asked stops beating (its record goes, as at a stop, or a death).
        heartbeat = first._heartbeat
        assert heartbeat is not None
        await heartbeat.stop()
        answered = await alice.answer(b, request, ANSWERS["elicitation/create"])
        assert answered.status_code == 202
        assert await relayed_events(first, session_id, cursor) == []
        # Not claimed: the ask stays noted until its deadline.
        stored = await second.store.get_session(session_id)
        assert request["id"] in stored.metadata[ASKS_METADATA_KEY]
        # (This one is not dead after all: straight to it, the answer still arrives.)
        assert (await alice.answer(a, request, ANSWERS["elicitation/create"])).status_code == 202
        assert text_of(await call.next()) == "A heard yes"


async def test_a_flood_of_bogus_answers_stores_nothing(tmp_path: Path) -> None:
    async with clients(tmp_path) as (a, b, first, second, client_of):
        alice = client_of("alice")
        session_id = await alice.initialize(a)
        cursor = await place_on_reply_stream(first, session_id)
        call = await alice.call(a)
        request = await call.next()
        before = await second.store.get_session(session_id)
        big = {"action": "accept", "content": {"answer": "x" * 1_000_000}}
        bogus: list[Any] = [
            *(dict(request, id=f"{first.instance_id}:i{n}") for n in range(2, 150)),
            *(dict(request, id=f"{second.instance_id}:i{n}") for n in range(1, 50)),
            dict(request, id=f"{first.instance_id}:s{'z' * 160}"),
        ]
        for message in bogus:
            assert (await alice.answer(b, message, {"action": "decline"})).status_code == 202
        for _ in range(3):
            assert (await alice.answer(b, dict(request, id="ghost-0:i1"), big)).status_code == 202
        assert await relayed_events(first, session_id, cursor) == []
        # Not one write: the session's record is as it was.
        assert (await second.store.get_session(session_id)).version == before.version
        # The real answer, several times: it crosses once.
        for _ in range(5):
            sent = await alice.answer(b, request, ANSWERS[request["method"]])
            assert sent.status_code == 202
        assert text_of(await call.next()) == "A heard yes"
        assert len(await relayed_events(first, session_id, cursor)) == 1


def test_the_record_keeps_at_most_max_asks() -> None:
    session = Session(transport=TransportType.HTTP)
    far = int(time.time() * 1000) + 60_000
    for n in range(MAX_ASKS + 10):
        _noting(f"A-1:i{n}", far + n, set())(session)
    asks = session.metadata[ASKS_METADATA_KEY]
    assert len(asks) == MAX_ASKS
    assert "A-1:i0" not in asks  # the oldest give way
    assert f"A-1:i{MAX_ASKS + 9}" in asks
    _noting(None, 0, set(asks))(session)
    assert ASKS_METADATA_KEY not in session.metadata


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        (b'{"jsonrpc":"2.0","id":"A-1:i7","result":{}}', ("A-1", 7)),
        (b'{"jsonrpc":"2.0","id":"A-1:sx:y","result":{}}', ("A-1", "x:y")),
        (b'{"jsonrpc":"2.0","id":"A-1:i7","error":{"code":1,"message":"no"}}', ("A-1", 7)),
        (b'{"jsonrpc":"2.0","id":7,"result":{}}', None),  # the SDK's own id: the SDK's business
        (b'{"jsonrpc":"2.0","id":"A-1:i7","method":"ping"}', None),  # a request
        (b'{"jsonrpc":"2.0","id":"A-1:i7","method":"ping","result":{}}', None),
        (b'{"jsonrpc":"2.0","id":"A-1:i7","result":{},"error":{}}', None),
        (b'{"jsonrpc":"2.0","id":"A-1:ix","result":{}}', None),
        (b'{"jsonrpc":"2.0","id":"A 1:i7","result":{}}', None),
        (b'{"jsonrpc":"1.0","id":"A-1:i7","result":{}}', None),  # the SDK refuses it
        (b'[{"jsonrpc":"2.0","id":"A-1:i7","result":{}}]', None),  # a batch: the SDK refuses
        (b'{"result":' * 100_000, None),
        (b"\xff\xfe", None),
    ],
)
def test_what_counts_as_an_answer_to_relay(body: bytes, wanted: tuple[str, Any] | None) -> None:
    reply = parse_reply(body)
    assert (None if reply is None else (reply.instance, reply.local_id)) == wanted


async def test_requests_and_their_cancellations_carry_ids_naming_the_instance() -> None:
    """What the event store hands the relay: the SDK's own message objects, changed in place."""
    async with open_store("memory") as store:
        session = await store.create_session(Session(transport=TransportType.HTTP))
        relay = ReplyRelay("A-1", timeout=60)

        async def post(session_id: str, scope: Any, body: bytes) -> int:
            raise AssertionError("nothing to deliver")

        relay.start(store, post=post, liveness=None)
        try:
            request = types.JSONRPCRequest(jsonrpc="2.0", id=3, method="ping")
            await relay.outgoing(session.id, request)
            assert request.id == "A-1:i3"
            noted = (await store.get_session(session.id)).metadata[ASKS_METADATA_KEY]
            assert list(noted) == ["A-1:i3"]
            assert relay.awaiting == 1
            cancel = types.JSONRPCNotification(
                jsonrpc="2.0", method="notifications/cancelled", params={"requestId": 3}
            )
            await relay.outgoing(session.id, cancel)
            assert cancel.params == {"requestId": "A-1:i3"}
            assert relay.awaiting == 0

            # The follower strikes the cancelled request from the record.
            async def struck() -> bool:
                return ASKS_METADATA_KEY not in (await store.get_session(session.id)).metadata

            await eventually(struck, "the cancelled request struck from the record")
            # Anything else passes untouched.
            note = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/progress")
            answer = types.JSONRPCResponse(jsonrpc="2.0", id=4, result={})
            for message in (note, answer):
                before = message.model_dump()
                await relay.outgoing(session.id, message)
                assert message.model_dump() == before
        finally:
            await relay.stop()


def test_relay_options_are_checked() -> None:
    with pytest.raises(ValueError, match="reply_timeout"):
        McpSessions("memory", reply_timeout=0)
    with pytest.raises(ValueError, match="poll_interval"):
        ReplyRelay("A-1", poll_interval=0)
    with pytest.raises(ValueError, match="max_poll_interval"):
        ReplyRelay("A-1", poll_interval=0.5, max_poll_interval=0.1)
    assert ReplyRelay("A-1", poll_interval=2).max_poll_interval == 2


def ping_answer(request_id: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": {}}).encode()


class Sent:
    """An ASGI ``send`` that keeps the response: its status and body."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.body = b""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


async def test_an_answer_the_store_failed_to_relay_can_be_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim of an ask succeeds but the answer cannot be appended: the client is answered
    503 (the layer's one error body, as roaming answers a store failure), the ask is put back,
    and the client's retry crosses (on a retry landing on any instance: the ask is in the
    store)."""
    monkeypatch.setattr(roaming_module, "_NO_ID", "server-error")  # as on SDK 1.x
    async with open_store("memory") as store:
        session = await store.create_session(Session(transport=TransportType.HTTP))
        asker, other = ReplyRelay("A-1", timeout=60), ReplyRelay("B-1", timeout=60)
        delivered: list[bytes] = []

        async def post_to_asker(session_id: str, scope: Any, body: bytes) -> int:
            delivered.append(body)
            return 202

        async def post_to_other(session_id: str, scope: Any, body: bytes) -> int:
            raise AssertionError("B asked nothing")

        asker.start(store, post=post_to_asker, liveness=None)
        other.start(store, post=post_to_other, liveness=None)
        try:
            asker.saw(session.id, {"type": "http", "headers": []})
            request = types.JSONRPCRequest(jsonrpc="2.0", id=3, method="ping")
            await asker.outgoing(session.id, request)
            reply = parse_reply(ping_answer("A-1:i3"))
            assert reply is not None
            append = store.append_event

            async def failing(*args: Any) -> str:
                raise StoreUnavailableError("the store is down")

            monkeypatch.setattr(store, "append_event", failing)
            sent = Sent()
            assert await other.route(await store.get_session(session.id), reply, sent) is None
            assert sent.status == 503
            expected = Sent()
            await roaming_module._json_error(expected, 503, "Session store unavailable")
            assert sent.body == expected.body
            assert json.loads(sent.body)["id"] == "server-error"
            noted = (await store.get_session(session.id)).metadata[ASKS_METADATA_KEY]
            assert list(noted) == ["A-1:i3"]  # put back: a retry can claim it

            monkeypatch.setattr(store, "append_event", append)
            again = Sent()
            assert await other.route(await store.get_session(session.id), reply, again) is None
            assert again.status == 202
            await eventually(lambda: bool(delivered), "the retried answer reaching the asker")
            assert json.loads(delivered[0]) == {"jsonrpc": "2.0", "id": 3, "result": {}}
        finally:
            await other.stop()
            await asker.stop()


async def test_a_slow_delivery_in_one_session_does_not_hold_up_the_others() -> None:
    """The local SDK is slow to take an answer in one session (a delivery may wait for a
    restore): answers relayed in other sessions reach it meanwhile."""
    async with open_store("memory") as store:
        first = await store.create_session(Session(transport=TransportType.HTTP))
        second = await store.create_session(Session(transport=TransportType.HTTP))
        asker, other = ReplyRelay("A-1", timeout=60), ReplyRelay("B-1", timeout=60)
        slow_started, release, second_delivered = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def post_to_asker(session_id: str, scope: Any, body: bytes) -> int:
            if session_id == first.id:
                slow_started.set()
                await release.wait()
            else:
                second_delivered.set()
            return 202

        async def post_to_other(session_id: str, scope: Any, body: bytes) -> int:
            raise AssertionError("B asked nothing")

        asker.start(store, post=post_to_asker, liveness=None)
        other.start(store, post=post_to_other, liveness=None)
        try:
            for session in (first, second):
                asker.saw(session.id, {"type": "http", "headers": []})
                request = types.JSONRPCRequest(jsonrpc="2.0", id=1, method="ping")
                await asker.outgoing(session.id, request)
            reply = parse_reply(ping_answer("A-1:i1"))
            assert reply is not None
            sent = Sent()
            await other.route(await store.get_session(first.id), reply, sent)
            assert sent.status == 202
            await asyncio.wait_for(slow_started.wait(), WAIT)
            await other.route(await store.get_session(second.id), reply, sent)
            assert sent.status == 202
            await asyncio.wait_for(second_delivered.wait(), WAIT)
        finally:
            release.set()
            await other.stop()
            await asker.stop()


async def test_on_a_store_that_pushes_changes_an_answer_is_read_when_told() -> None:
    """Where the backend pushes event changes (memory here), the asker reads its reply stream
    when told: an answer relayed while its next poll is a minute away reaches the SDK long
    before that poll."""
    async with open_store("memory") as store:
        assert store.offers_event_watch
        session = await store.create_session(Session(transport=TransportType.HTTP))
        asker = ReplyRelay("A-1", timeout=120, poll_interval=60, max_poll_interval=60)
        other = ReplyRelay("B-1", timeout=120)
        delivered = asyncio.Event()

        async def post_to_asker(session_id: str, scope: Any, body: bytes) -> int:
            delivered.set()
            return 202

        async def post_to_other(session_id: str, scope: Any, body: bytes) -> int:
            raise AssertionError("B asked nothing")

        asker.start(store, post=post_to_asker, liveness=None)
        other.start(store, post=post_to_other, liveness=None)
        try:
            asker.saw(session.id, {"type": "http", "headers": []})
            await asker.outgoing(
                session.id, types.JSONRPCRequest(jsonrpc="2.0", id=1, method="ping")
            )
            state = asker._sessions[session.id]
            # The first read (at once) is over: the next poll is a minute away.
            await eventually(lambda: state.next_poll > time.monotonic() + 30, "the first read")
            reply = parse_reply(ping_answer("A-1:i1"))
            assert reply is not None
            sent = Sent()
            await other.route(await store.get_session(session.id), reply, sent)
            assert sent.status == 202
            await asyncio.wait_for(delivered.wait(), WAIT)  # WAIT is well under the minute
        finally:
            await other.stop()
            await asker.stop()
