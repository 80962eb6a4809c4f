"""The SDK's answer to a request the roaming layer makes itself (replaying a session's initialize
request to restore it): its status, headers, first JSON-RPC answer and a bounded copy of its
body, to pass a refusal on to the client as the SDK gave it."""

from __future__ import annotations

import json
from typing import Any

import anyio

from ._asgi import Send, header_of

__all__ = ["KEPT_ANSWER", "Captured", "RestoreFailed"]

KEPT_ANSWER = 64 * 1024  # the most of an SDK answer to the layer's own request it keeps


class Captured:
    """What the SDK answered to a request the layer made itself (restoring a session)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.answer: dict[str, Any] | None = None
        self.body = b""  # the first KEPT_ANSWER bytes, to pass a refusal on as it was
        self._buffer = b""
        self.complete = anyio.Event()

    def header(self, name: bytes) -> str | None:
        return header_of(self.headers, name)

    async def send_to(self, send: Send) -> None:
        """Answer a client exactly as the SDK answered the layer (a refusal: a short body)."""
        headers = [(k, v) for k, v in self.headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    def feed(self, chunk: bytes) -> None:
        """Take body bytes (a JSON body or an SSE stream); note the first JSON-RPC answer."""
        if len(self.body) < KEPT_ANSWER:
            self.body += chunk[: KEPT_ANSWER - len(self.body)]
        self._buffer += chunk.replace(b"\r\n", b"\n")
        if "event-stream" not in (self.header(b"content-type") or ""):
            return
        while b"\n\n" in self._buffer:
            event, _, self._buffer = self._buffer.partition(b"\n\n")
            data = b"\n".join(
                line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")
            )
            self._note(data)

    def finish(self) -> None:
        if "json" in (self.header(b"content-type") or ""):
            self._note(self._buffer)
        self.complete.set()

    def _note(self, data: bytes) -> None:
        if self.answer is not None or not data:
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and ("result" in message or "error" in message):
            self.answer = message
            self.complete.set()


class RestoreFailed(Exception):
    """A session could not be restored here; ``answer``: the SDK's, when it refused."""

    def __init__(self, message: str, answer: Captured | None = None) -> None:
        super().__init__(message)
        self.answer = answer
