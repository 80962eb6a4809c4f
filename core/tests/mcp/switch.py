"""A load balancer the tests control: a TCP proxy on a free loopback port that forwards each new
connection to the current target port, and can cut every open connection at once.

It runs its own asyncio loop in a daemon thread, so plain (synchronous) tests drive it with
ordinary calls: ``set_target(port)`` only changes where the next connections go (open ones stay
where they are, as behind a real balancer), ``cut()`` aborts every open client and upstream
connection (an RST, not a graceful close: what a failing network or balancer does) and returns
how many pairs it cut. ``connections`` records every connection as ``(time.monotonic(), port)``.
Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["Switch"]

CHUNK = 65536
T = TypeVar("T")


class Switch:
    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="switch", daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: list[tuple[float, int]] = []
        self.port = 0

    # -- control (any thread) ----------------------------------------------------------------

    @property
    def target(self) -> int:
        return self._target

    def set_target(self, port: int) -> None:
        """Send the connections opened from now on to ``port``."""
        self._target = port

    def cut(self) -> int:
        """Abort every open connection, both sides; returns how many were open."""
        return self._call(self._cut())

    def open_connections(self) -> int:
        return self._call(self._count())

    def start(self) -> Self:
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._handle, "127.0.0.1", 0, reuse_address=True)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Stop listening, abort every connection and stop the loop. Safe to call twice."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Switch 127.0.0.1:{self.port} -> {self._target}>"

    # -- the loop's side ---------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _count(self) -> int:
        return len(self._pairs)

    async def _cut(self) -> int:
        pairs = list(self._pairs)
        for client, upstream in pairs:
            _abort(client)
            if upstream is not None:
                _abort(upstream)
        return len(pairs)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        port = self._target
        self.connections.append((time.monotonic(), port))
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (client, None)
        self._pairs.add(pair)
        try:
            try:
                upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                _abort(client)  # nobody listens there: refuse, as a balancer with no backend does
                return
            self._pairs.discard(pair)
            pair = (client, upstream)
            self._pairs.add(pair)
            try:
                await asyncio.gather(_pipe(client_reader, upstream), _pipe(upstream_reader, client))
            except OSError:  # one side failed: the other side learns it at once, as with a reset
                _abort(client)
                _abort(upstream)
        finally:
            self._pairs.discard(pair)
            for writer in pair:
                if writer is not None:
                    writer.close()  # flushes what is buffered; a no-op after an abort
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of input, then pass the end on (half-close); a failure aborts both."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except OSError:
        _abort(writer)
        raise


def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()
