"""A round-robin HTTP/1.1 load balancer the tests control: it listens on a free loopback port and
sends each HTTP *request* (not each connection) to the next of N upstream ports in turn.

What a fleet behind a real balancer without sticky sessions sees: one client connection kept alive
across requests still has its requests spread over every instance. Responses are relayed as they
arrive, chunk by chunk (a Server-Sent Events stream flows event by event, never buffered to its
end). Each request gets a fresh upstream connection that ends with its response; the client side
is kept alive (``Connection: keep-alive`` semantics of HTTP/1.1) unless the client or the response
asks otherwise.

Like ``switch.py`` it runs its own asyncio loop in a daemon thread (``loop_server.py``), so plain
(synchronous) tests drive it with ordinary calls:

- ``accepted`` counts the client connections accepted so far.
- ``requests`` records every routed request as a :class:`Routed` ``(at, port, method, path)``
  (``at`` is ``time.monotonic()``); ``ports()`` lists just the ports.
- ``set_upstreams(ports)`` changes the ports the next requests go to (open streams stay where they
  are); ``cut()`` aborts every open client and upstream connection (an RST, not a graceful close)
  and returns how many client connections it cut; ``open_connections()`` counts them.
- An upstream that refuses the connection (a killed instance) is skipped for the next one in
  turn, as a balancer's passive health check does (nginx ``proxy_next_upstream error``); when
  every upstream refuses, the client gets ``502 Bad Gateway``. An upstream that dies in the middle
  of a response has its client connection aborted.

Every response carries ``x-balancer-upstream: <port>``. Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from loop_server import LoopServer, abort

__all__ = ["Balancer", "Routed"]

CHUNK = 65536
LINGER = 5.0  # seconds a closing connection takes the client's input (see _linger)
MAX_HEAD = 65536  # bytes of a request or response head (request line/status line and headers)
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
RESPONSE_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection"})


class Routed(NamedTuple):
    """One request as the balancer routed it."""

    at: float  # time.monotonic() when it was sent upstream
    port: int
    method: str
    path: str


class _Head(NamedTuple):
    first_line: bytes
    headers: list[tuple[bytes, bytes]]  # names lower-cased, values as sent

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: bytes) -> set[bytes]:
        found: set[bytes] = set()
        for key, value in self.headers:
            if key == name:
                found.update(t.strip().lower() for t in value.split(b","))
        return found


class _BadRequest(ValueError):
    pass


class Balancer(LoopServer):
    def __init__(self, upstreams: Sequence[int]) -> None:
        super().__init__("balancer", limit=MAX_HEAD)
        self._upstreams: tuple[int, ...] = _check_ports(upstreams)
        self._turn = itertools.count()
        self._clients: set[asyncio.StreamWriter] = set()
        self._upstream_writers: set[asyncio.StreamWriter] = set()
        self.requests: list[Routed] = []
        self.accepted = 0  # client connections accepted so far

    # -- control (any thread) ----------------------------------------------------------------

    @property
    def upstreams(self) -> tuple[int, ...]:
        return self._upstreams

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a path."""
        return f"http://127.0.0.1:{self.port}"

    def set_upstreams(self, ports: Iterable[int]) -> None:
        """Send the requests from now on to ``ports``, in turn (one port: all of them there)."""
        self._upstreams = _check_ports(ports)

    def ports(self) -> list[int]:
        """The upstream port of every request routed so far, in order."""
        return [routed.port for routed in list(self.requests)]

    def __repr__(self) -> str:
        return f"<Balancer 127.0.0.1:{self.port} -> {list(self._upstreams)}>"

    # -- the loop's side ---------------------------------------------------------------------

    async def _count(self) -> int:
        return len(self._clients)

    async def _cut(self) -> int:
        clients = list(self._clients)
        for writer in clients + list(self._upstream_writers):
            abort(writer)
        return len(clients)

    async def _handle(self, raw_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self._clients.add(client)
        self.accepted += 1
        # The client's bytes are pumped into a reader of our own, so that the end of the client's
        # connection is seen at once even while a response streams (a client that drops an SSE
        # stream must drop the upstream connection too, as it would without a balancer).
        reader = asyncio.StreamReader(limit=MAX_HEAD)
        client_gone = asyncio.Event()
        pump = asyncio.create_task(_pump(raw_reader, reader, client_gone))
        try:
            while True:
                try:
                    head = await _read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed between requests (or mid-head)
                except (asyncio.LimitOverrunError, ValueError):
                    await _respond(client, 400, b"bad request")
                    return
                if not await self._relay(head, reader, client, client_gone):
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            abort(client)  # a broken connection or message on either side: end the client's
        finally:
            if not client.transport.is_closing():
                await _linger(client, reader)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            self._clients.discard(client)
            client.close()

    async def _relay(
        self,
        head: _Head,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        client_gone: asyncio.Event,
    ) -> bool:
        """Relay one request and its response; True when the client connection stays open."""
        parts = head.first_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise _BadRequest
        method, target, http_version = parts
        client_keeps = http_version == b"HTTP/1.1" and b"close" not in head.tokens(b"connection")

        connected = await self._connect()
        if connected is None:
            await _drain_body(head, reader, None)
            await _respond(client, 502, b"no upstream accepts connections")
            return client_keeps
        port, upstream_reader, upstream = connected
        self._upstream_writers.add(upstream)
        try:
            self.requests.append(
                Routed(time.monotonic(), port, method.decode("latin-1"), target.decode("latin-1"))
            )
            headers = [(k, v) for k, v in head.headers if k not in HOP_BY_HOP]
            headers.append((b"connection", b"close"))
            upstream.write(_encode_head(head.first_line, headers))
            # The body goes up while the answer comes down: an upstream may answer (413) before
            # it took the whole body, and must not wait on us for it.
            body = asyncio.create_task(_send_body(head, reader, upstream))
            relay = asyncio.create_task(
                self._relay_response(method, port, upstream_reader, client, client_keeps, body)
            )
            gone = asyncio.create_task(client_gone.wait())
            try:
                while True:
                    waiting = {relay, gone} if body.done() else {relay, gone, body}
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if body in done and (failure := body.exception()) is not None:
                        raise failure  # the client's body broke off or is malformed
                    if relay in done:
                        break
                    if gone in done:  # the client left while its response was streaming
                        abort(upstream)
                        return False
                return relay.result()
            finally:
                for task in (body, relay, gone):
                    task.cancel()
                await asyncio.gather(body, relay, gone, return_exceptions=True)
        finally:
            self._upstream_writers.discard(upstream)
            upstream.close()

    async def _relay_response(
        self,
        method: bytes,
        port: int,
        upstream_reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        client_keeps: bool,
        body: asyncio.Task[bool],
    ) -> bool:
        while True:
            try:
                head = await _read_head(upstream_reader)
            except (
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ConnectionError,
                ValueError,
            ):
                abort(client)  # the upstream died before its answer: the client sees it fail
                return False
            status = _status(head)
            if 100 <= status < 200 and status != 101:
                client.write(_encode_head(head.first_line, head.headers))
                await client.drain()
                continue  # an interim response; the final one follows
            break
        no_body = method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        chunked = b"chunked" in head.tokens(b"transfer-encoding")
        length = head.get(b"content-length")
        until_close = not no_body and not chunked and length is None
        # The upstream's own Connection header is about the upstream connection (we asked it to
        # close); the client's connection stays open unless the client or the framing says so.
        keep = client_keeps and not until_close
        headers = [(k, v) for k, v in head.headers if k not in RESPONSE_HOP_BY_HOP]
        headers.append((b"x-balancer-upstream", str(port).encode()))
        if not keep:
            headers.append((b"connection", b"close"))
        elif _sent(body):
            headers.append((b"connection", b"keep-alive"))
        # else: said at the end (a body still coming may yet be left half sent)
        client.write(_encode_head(head.first_line, headers))
        await client.drain()
        try:
            if no_body:
                pass
            elif chunked:
                await _copy_chunked(upstream_reader, client)
            elif length is not None:
                await _copy_exactly(upstream_reader, client, int(length))
            else:
                while data := await upstream_reader.read(CHUNK):
                    client.write(data)
                    await client.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            abort(client)  # the upstream died mid-response: so does the client's connection
            return False
        # Unless the whole body went up, what is left of it is still in the client's stream:
        # that connection cannot carry another request.
        return keep and _sent(body)

    async def _connect(
        self,
    ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next upstream in turn that accepts a connection, skipping refusing ones."""
        upstreams = self._upstreams
        first = next(self._turn)
        for offset in range(len(upstreams)):
            port = upstreams[(first + offset) % len(upstreams)]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_HEAD)
            except OSError:
                continue
            if offset:  # the refusing ones were skipped: the next request goes after this one
                for _ in range(offset):
                    next(self._turn)
            return port, reader, writer
        return None


async def _linger(client: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
    """Close as HTTP servers do: end our side, then take (and drop) what the client still sends
    until it closes too, for at most LINGER seconds. Closing a socket with unread input resets
    the connection, and the client could lose the answer it was sent (a 413 while it still sends
    its body)."""
    with contextlib.suppress(OSError, RuntimeError):
        if client.can_write_eof():
            client.write_eof()
    with contextlib.suppress(TimeoutError, OSError, asyncio.LimitOverrunError, ValueError):
        async with asyncio.timeout(LINGER):
            while await reader.read(CHUNK):
                pass


def _check_ports(ports: Iterable[int]) -> tuple[int, ...]:
    checked = tuple(ports)
    if not checked or not all(isinstance(p, int) and 0 < p < 65536 for p in checked):
        raise ValueError(f"upstreams must be one or more TCP ports, got {checked!r}")
    return checked


async def _pump(
    source: asyncio.StreamReader, target: asyncio.StreamReader, gone: asyncio.Event
) -> None:
    try:
        while data := await source.read(CHUNK):
            target.feed_data(data)
    except OSError:
        pass
    finally:
        target.feed_eof()
        gone.set()


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _BadRequest
        headers.append((name.lower(), value.strip()))
    return _Head(lines[0], headers)


def _status(head: _Head) -> int:
    parts = head.first_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise _BadRequest
    return int(parts[1])


def _encode_head(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"\r\n".join([first_line, *(k + b": " + v for k, v in headers)]) + b"\r\n\r\n"


def _sent(body: asyncio.Task[bool]) -> bool:
    """Whether the request body went up whole (so far)."""
    return body.done() and not body.cancelled() and body.exception() is None and body.result()


async def _send_body(
    head: _Head, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter
) -> bool:
    """Copy a request's body up; whether all of it went. An upstream that stops taking it ends
    the copy quietly (its answer, or its failure, is what the client gets)."""
    try:
        await _drain_body(head, reader, upstream)
        await upstream.drain()
    except ConnectionError:
        return False
    return True


async def _drain_body(
    head: _Head, reader: asyncio.StreamReader, target: asyncio.StreamWriter | None
) -> None:
    """Copy (or, with no target, skip) a request's body, framing as it came."""
    if b"chunked" in head.tokens(b"transfer-encoding"):
        await _copy_chunked(reader, target)
    elif (length := head.get(b"content-length")) is not None:
        await _copy_exactly(reader, target, int(length))


async def _copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, length: int
) -> None:
    if length < 0:
        raise ValueError("negative content-length")
    while length:
        data = await reader.read(min(length, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(data)
        if writer is not None:
            writer.write(data)
            await writer.drain()


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    """Copy a chunked body as it was framed, each chunk passed on as soon as it is read."""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if writer is not None:
            writer.write(size_line)
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                if writer is not None:
                    writer.write(trailer)
            if writer is not None:
                writer.write(b"\r\n")
                await writer.drain()
            return
        await _copy_exactly(reader, writer, size)
        crlf = await reader.readexactly(2)
        if crlf != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        if writer is not None:
            writer.write(crlf)
            await writer.drain()


async def _respond(writer: asyncio.StreamWriter, status: int, text: bytes) -> None:
    reason = {400: b"Bad Request", 502: b"Bad Gateway"}[status]
    writer.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
        % (status, reason, len(text), text)
    )
    with contextlib.suppress(OSError):
        await writer.drain()
