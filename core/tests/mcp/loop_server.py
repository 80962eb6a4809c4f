"""The part ``switch.py`` and ``balancer.py`` share: a TCP server on a free loopback port whose
asyncio loop runs in a daemon thread, so plain (synchronous) tests drive it with ordinary calls.

A subclass implements ``_handle`` (one accepted connection), ``_cut`` (abort every open
connection, return how many) and ``_count`` (how many are open); this class starts and stops the
loop, tracks the connection tasks, and cancels them on ``close()``. Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["LoopServer", "abort"]

T = TypeVar("T")


class LoopServer:
    def __init__(self, name: str, *, limit: int = 65536) -> None:
        """``name`` names the loop's thread; ``limit`` is the accepted streams' buffer limit
        (asyncio's default, 64 KiB, unless given)."""
        self._limit = limit
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- control (any thread) ----------------------------------------------------------------

    def cut(self) -> int:
        """Abort every open connection, both sides (an RST, not a graceful close); returns how
        many client connections were open."""
        return self._call(self._cut())

    def open_connections(self) -> int:
        """How many client connections are open."""
        return self._call(self._count())

    def start(self) -> Self:
        self._thread.start()
        self._server = self._call(
            asyncio.start_server(self._serve, "127.0.0.1", 0, reuse_address=True, limit=self._limit)
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

    # -- the loop's side ---------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _cut(self) -> int:
        raise NotImplementedError

    async def _count(self) -> int:
        raise NotImplementedError


def abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (no graceful close); never raises, also on a closed one."""
    with contextlib.suppress(Exception):
        writer.transport.abort()
