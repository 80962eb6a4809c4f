"""A TCP proxy between a test and a Redis server that holds the server's replies back on
demand (:class:`ReplyGate`), and :func:`until`, which waits for a condition while the event loop
(where the proxy runs) goes on."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable

BOUND = 10.0  # seconds: a generous upper bound on waiting for an event


async def until(what: str, check: Callable[[], bool]) -> None:
    """Wait (letting the loop run: the proxy lives in it) until ``check`` holds, up to BOUND."""
    deadline = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {BOUND} s")
        await asyncio.sleep(0.005)


class ReplyGate:
    """A TCP proxy to a Redis server: requests go through at once; while ``holding``, the
    server's replies are kept back until :meth:`let_through` (some bytes) or :meth:`open`
    (all); :meth:`inject` sends bytes the server never sent; :meth:`cut` closes the client's
    side, as a network failure would, and :meth:`reset` resets it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.holding = False
        self.held = bytearray()
        self._server: asyncio.Server | None = None
        self._clients: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ReplyGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._clients:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def let_through(self, count: int) -> None:
        """Pass the first ``count`` held bytes to the client (one connection at a time)."""
        (writer,) = [w for w in self._clients if not w.is_closing()]
        writer.write(bytes(self.held[:count]))
        del self.held[:count]

    def inject(self, data: bytes) -> None:
        """Send ``data`` to the client as if the server had sent it (one connection at a time)."""
        (writer,) = [w for w in self._clients if not w.is_closing()]
        writer.write(data)

    def open(self) -> None:
        self.holding = False
        if self.held:
            self.let_through(len(self.held))

    def reset(self) -> None:
        """Reset every client connection (a TCP RST, as a crashed peer or a load balancer
        sends), holding nothing back any more."""
        for writer in self._clients:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.cut()

    def cut(self) -> None:
        """Drop every client connection (and what was held for it); stop holding."""
        for writer in self._clients:
            writer.transport.abort()
        self.held.clear()
        self.holding = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def requests() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)

        async def replies() -> None:
            while data := await up_reader.read(65536):
                if self.holding:
                    self.held += data
                elif not writer.is_closing():
                    writer.write(data)

        for pump in (requests(), replies()):
            task = asyncio.get_running_loop().create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(lambda _: up_writer.close())
