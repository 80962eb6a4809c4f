"""The tests' round-robin balancer (``balancer.py``) in front of two real uvicorn/Starlette
servers, driven by the standard library's HTTP client: requests (not connections) alternate, a
kept-alive connection stays one connection, bodies go through in both framings, Server-Sent
Events flow one at a time, ``cut()`` and a client leaving end the upstream stream, refusing
upstreams are skipped."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from balancer import Balancer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

WAIT = 10.0  # generous bound for anything the tests wait on


async def upload(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``started`` at once, then reads the whole body, then ends with ``got <body>``."""
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-upload", b"1")]}
    await send(start)
    await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b"got " + body})


class Upstream:
    """One uvicorn server in a thread of its own: ``/port`` answers its port, ``/echo`` its
    request body, ``/upload`` answers while reading the body, ``/events`` streams one event,
    then a second one only when ``release`` is set; ``stream_ended`` is set when that stream's
    generator ends (done or the client gone)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stream_ended = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/port", self.whoami),
                Route("/echo", self.echo, methods=["POST"]),
                Mount("/upload", app=upload),
                Route("/events", self.events),
            ]
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    async def whoami(self, request: Request) -> Response:
        return PlainTextResponse(str(self.port))

    async def echo(self, request: Request) -> Response:
        return Response(f"{self.port}:".encode() + await request.body())

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            try:
                yield f"data: first from {self.port}\n\n".encode()
                # longer than the client waits: a balancer that buffers until the end fails
                if await asyncio.to_thread(self.release.wait, 3 * WAIT):
                    yield b"data: second\n\n"
            finally:
                self.stream_ended.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    def start(self) -> Upstream:
        self.thread.start()
        for _ in range(int(WAIT / 0.01)):
            if self.server.started:
                return self
            threading.Event().wait(0.01)  # polling uvicorn's own flag; no other signal exists
        raise TimeoutError("uvicorn did not start")

    def stop(self) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(WAIT)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = Upstream().start(), Upstream().start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def pair(upstreams: tuple[Upstream, Upstream]) -> tuple[Upstream, Upstream]:
    for upstream in upstreams:
        upstream.release.clear()
        upstream.stream_ended.clear()
    return upstreams


@pytest.fixture
def balancer(pair: tuple[Upstream, Upstream]) -> Iterator[Balancer]:
    with Balancer([pair[0].port, pair[1].port]) as balancer:
        yield balancer


def connect(balancer: Balancer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", balancer.port, timeout=WAIT)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_requests_alternate_over_one_kept_alive_connection(
    balancer: Balancer, pair: tuple[Upstream, Upstream]
) -> None:
    a, b = pair
    connection = connect(balancer)
    answered: list[int] = []
    for _ in range(6):
        connection.request("GET", "/port")
        response = connection.getresponse()
        assert response.status == 200
        port = int(response.read())
        assert response.getheader("x-balancer-upstream") == str(port)
        assert response.getheader("connection") == "keep-alive"
        answered.append(port)
    connection.close()
    assert answered == [a.port, b.port] * 3
    assert balancer.accepted == 1, "the client's connection was not kept alive"
    assert balancer.ports() == answered
    assert [(r.method, r.path) for r in balancer.requests] == [("GET", "/port")] * 6


def test_request_bodies_in_both_framings(
    balancer: Balancer, pair: tuple[Upstream, Upstream]
) -> None:
    a, b = pair
    connection = connect(balancer)
    body = b"x" * 200_000  # more than one read's worth
    connection.request("POST", "/echo", body=body)  # with content-length
    assert connection.getresponse().read() == f"{a.port}:".encode() + body
    connection.request("POST", "/echo", body=iter([b"one,", b"two"]), encode_chunked=True)
    assert connection.getresponse().read() == f"{b.port}:one,two".encode()
    connection.request("GET", "/port")  # the same connection still frames requests right
    assert connection.getresponse().read() == str(a.port).encode()
    connection.close()


def test_the_answer_flows_while_the_body_is_still_coming(
    balancer: Balancer, pair: tuple[Upstream, Upstream]
) -> None:
    """An upstream may answer before it has the whole body (its head, a first chunk): the
    client sees that while it still sends, and the connection then carries the next request."""
    a, b = pair
    with socket.create_connection(("127.0.0.1", balancer.port), timeout=WAIT) as client:
        client.sendall(b"POST /upload/ HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\n12345")
        seen = read_until(client, b"started\n", b"")  # a balancer waiting for the body times out
        assert seen.startswith(b"HTTP/1.1 200"), seen
        client.sendall(b"67890")
        seen = read_until(client, b"\r\n0\r\n\r\n", seen)
        assert b"got 12345678" in seen, seen
        assert seen.endswith(b"90\r\n0\r\n\r\n"), seen
        client.sendall(b"GET /port HTTP/1.1\r\nhost: test\r\n\r\n")
        assert read_until(client, str(b.port).encode(), b"").startswith(b"HTTP/1.1 200")
    assert balancer.ports() == [a.port, b.port]


def read_until(sock: socket.socket, marker: bytes, seen: bytes) -> bytes:
    """What ``sock`` sent, after ``seen``, up to and including ``marker`` (socket timeout:
    ``WAIT``)."""
    while marker not in seen:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before {marker!r}; got {seen!r}")
        seen += data
    return seen


def test_events_flow_one_at_a_time(balancer: Balancer, pair: tuple[Upstream, Upstream]) -> None:
    a, _ = pair
    connection = connect(balancer)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.getheader("content-type", "").startswith("text/event-stream")
    # The second event is only produced once the first has reached the client: a balancer that
    # buffered the stream would time out here.
    assert response.readline() == f"data: first from {a.port}\n".encode()
    assert response.readline() == b"\n"
    a.release.set()
    assert response.read() == b"data: second\n\n"
    assert a.stream_ended.wait(WAIT)
    connection.close()


def test_cut_aborts_open_streams_on_both_sides(
    balancer: Balancer, pair: tuple[Upstream, Upstream]
) -> None:
    a, _ = pair
    connection = connect(balancer)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.readline().startswith(b"data: first")
    assert balancer.open_connections() == 1
    assert balancer.cut() == 1
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        response.read()
    assert a.stream_ended.wait(WAIT), "the upstream stream outlived the cut"
    assert not a.release.is_set()  # ended by the cut, not by running to completion
    connection.close()


def test_a_client_leaving_ends_the_upstream_stream(
    balancer: Balancer, pair: tuple[Upstream, Upstream]
) -> None:
    a, _ = pair
    connection = connect(balancer)
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.readline().startswith(b"data: first")
    response.close()  # the response holds the socket open until it is closed too
    connection.close()
    assert a.stream_ended.wait(WAIT), "the upstream stream outlived its client"


def test_refusing_upstreams_are_skipped_then_502(
    balancer: Balancer, pair: tuple[Upstream, Upstream]
) -> None:
    a, b = pair
    dead = free_port()
    balancer.set_upstreams([a.port, dead, b.port])
    connection = connect(balancer)
    answered = []
    for _ in range(4):
        connection.request("GET", "/port")
        answered.append(int(connection.getresponse().read()))
    assert answered == [a.port, b.port, a.port, b.port]
    balancer.set_upstreams([dead])
    connection.request("GET", "/port")
    response = connection.getresponse()
    assert response.status == 502
    response.read()
    connection.close()
    with pytest.raises(ValueError, match="upstreams"):
        balancer.set_upstreams([])
