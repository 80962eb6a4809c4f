"""The roaming layer in the app's lifespan: the layer starts once the SDK's app started (its
session manager must run first), waits for its running requests before the SDK's app stops (see
:meth:`~sessionstore.mcp.McpSessions.drain`) and stops after it stopped (its sessions store
events while they wind down); served on its own (ASGI lifespan messages) or mounted in a parent
app (a lifespan context for the parent's ``lifespan=``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ._asgi import ASGIApp, Message, Receive, Scope, Send, router_of
from ._fastmcp import ScopedAdapters
from ._log import shown_error

if TYPE_CHECKING:
    from .roaming import McpSessions

__all__ = ["mounted_lifespan", "serve_lifespan"]

logger = logging.getLogger("sessionstore.mcp")


def mounted_lifespan(
    app: ASGIApp, sessions: McpSessions, adapters: ScopedAdapters
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]:
    """``app``'s own lifespan with the layer's start, drain and stop in it, for a parent app.

    ``app``'s lifespan is found on it (FastMCP's app has a ``lifespan``) or on the Starlette
    router it, or the app its middleware (``.app``) lead to, has; without one,
    ``RuntimeError``: the SDK's session manager would never run."""
    inner = getattr(app, "lifespan", None)  # FastMCP's app has one
    if not callable(inner):  # any Starlette app, the SDK's included, behind middleware too
        router = router_of(app)
        if router is None:
            raise RuntimeError(
                "McpSessions.lifespan: the wrapped app is no Starlette app (nor middleware "
                f"around one) whose lifespan could run: {type(app).__name__}; run "
                "its lifespan yourself and enter sessions.run() inside it"
            )
        inner = router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(parent: Any) -> AsyncIterator[Any]:
        started = False
        try:
            async with inner(parent) as state:
                if not sessions.running:
                    adapters.unscope()
                    await sessions.start()
                    started = True
                    adapters.check_started()
                try:
                    yield state
                finally:
                    if started:
                        await sessions.drain()
        finally:
            if started:
                await sessions.stop()

    return lifespan


async def serve_lifespan(
    app: ASGIApp,
    sessions: McpSessions,
    adapters: ScopedAdapters,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Run ``app``'s ASGI lifespan with the layer's start after its startup completes and its
    stop after its shutdown completes (the drain runs when the shutdown begins)."""
    started_here: list[bool] = []

    async def receive_before() -> Message:
        message = await receive()
        if message["type"] == "lifespan.shutdown" and started_here:
            # The server closed its streams (sse-starlette ends them at shutdown); the
            # requests behind them still run: let them finish before the SDK cancels them.
            await sessions.drain()
        return message

    async def send_after(message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete" and not sessions.running:
            started_here.append(True)
            try:
                adapters.unscope()
                await sessions.start()
                adapters.check_started()
            except Exception as exc:
                logger.exception("MCP sessions did not start")
                message = {"type": "lifespan.startup.failed", "message": shown_error(exc)}
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and started_here:
            await sessions.stop()
        await send(message)

    await app(scope, receive_before, send_after)
