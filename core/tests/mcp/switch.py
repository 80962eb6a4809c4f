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
import time

from loop_server import LoopServer, abort

__all__ = ["Switch"]

CHUNK = 65536


class Switch(LoopServer):
    def __init__(self, target_port: int) -> None:
        super().__init__("switch")
        self._target = target_port
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self.connections: list[tuple[float, int]] = []

    # -- control (any thread) ----------------------------------------------------------------

    @property
    def target(self) -> int:
        return self._target

    def set_target(self, port: int) -> None:
        """Send the connections opened from now on to ``port``."""
        self._target = port

    def __repr__(self) -> str:
        return f"<Switch 127.0.0.1:{self.port} -> {self._target}>"

    # -- the loop's side ---------------------------------------------------------------------

    async def _count(self) -> int:
        return len(self._pairs)

    async def _cut(self) -> int:
        pairs = list(self._pairs)
        for client, upstream in pairs:
            abort(client)
            if upstream is not None:
                abort(upstream)
        return len(pairs)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        port = self._target
        self.connections.append((time.monotonic(), port))
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (client, None)
        self._pairs.add(pair)
        try:
            try:
                upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                abort(client)  # nobody listens there: refuse, as a balancer with no backend does
                return
            self._pairs.discard(pair)
            pair = (client, upstream)
            self._pairs.add(pair)
            try:
                await asyncio.gather(_pipe(client_reader, upstream), _pipe(upstream_reader, client))
            except OSError:  # one side failed: the other side learns it at once, as with a reset
                abort(client)
                abort(upstream)
        finally:
            self._pairs.discard(pair)
            for writer in pair:
                if writer is not None:
                    writer.close()  # flushes what is buffered; a no-op after an abort


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
        abort(writer)
        raise
