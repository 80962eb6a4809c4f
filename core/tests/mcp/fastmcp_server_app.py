"""One FastMCP server instance of the end-to-end tests (``fastmcp`` 4.x on the SDK 2.x of .venv).

Run with the python of ``.venv``::

    python fastmcp_server_app.py --port P --store URL --instance NAME [--namespace NS]
        [--auth fastmcp|none] [--mount]

Built as a FastMCP user builds one: ``FastMCP(...)``, ``@mcp.tool`` functions, ``mcp.http_app(
event_store=..., retry_interval=300)``, wrapped by ``sessionstore.mcp.McpSessions`` on the shared
store ``--store``, served by uvicorn on ``http://127.0.0.1:P/mcp``. The tools:

- ``progress(steps=10, delay=0.2, label="", gate="")`` reports ``steps`` progress notifications
  ``delay`` seconds apart, then (with ``gate``, a file path) waits until that file exists, at
  most ``GATE_LIMIT`` seconds, and returns ``"done <steps> steps on <instance>"``;
- ``whoami()`` returns JSON: this instance, the layer's session id as a tool sees it
  (``current_session_scope()`` and ``current_session().id``), FastMCP's ``ctx.session_id`` and
  what FastMCP's server lifespan put in ``ctx.lifespan_context``;
- ``remember(text)``, ``append(text)``, ``recall()`` and ``replace(text, version)`` keep a note
  in the session's state in the store (``sessionstore.mcp.current_session()``): set it, add to
  it by a modify function (one read-modify-write however many instances race), read it back
  (``null`` when unset) with the state's version, set it by compare-and-set on that version.

``--auth fastmcp`` (the default) is FastMCP's own bearer auth
(``FastMCP(auth=StaticTokenVerifier(...))``, inside FastMCP's app): ``alice-token`` and
``bob-token`` are the users ``alice`` and ``bob``, any other request is refused with 401;
``--auth none`` has no auth. ``--mount`` serves the wrapped app mounted at ``/api`` (so on
``/api/mcp``) inside a parent Starlette app whose lifespan is ``sessions.lifespan``, as FastMCP's
docs mount ``mcp.http_app()``. Prints ``READY <port>`` once listening, one line per tool step on
stderr.
"""

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import anyio
import uvicorn
from fastmcp import Context, FastMCP
from fastmcp.server.auth.providers.jwt import StaticTokenVerifier
from starlette.applications import Starlette
from starlette.routing import Mount

from sessionstore.mcp import McpSessions, current_session, current_session_scope

RETRY_INTERVAL_MS = 300
GATE_LIMIT = 60.0  # seconds a gated progress call waits for its gate file at most
USERS = ("alice", "bob")
INSTANCE = "?"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def wait_for_file(path: str, limit: float) -> bool:
    """Whether the file ``path`` (which the test writes) exists within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await anyio.Path(path).exists():
            return True
        await asyncio.sleep(0.05)
    return False


def build_server(args: argparse.Namespace) -> FastMCP:
    instance = args.instance

    @asynccontextmanager
    async def lifespan(server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        log(f"[{instance}] FastMCP lifespan entered")
        yield {"started": f"lifespan of {instance}"}
        log(f"[{instance}] FastMCP lifespan left")

    auth = None
    if args.auth == "fastmcp":
        auth = StaticTokenVerifier(
            {f"{user}-token": {"client_id": user, "sub": user, "scopes": []} for user in USERS}
        )
    mcp = FastMCP("sessionstore-fastmcp-e2e", auth=auth, lifespan=lifespan)

    @mcp.tool
    async def progress(
        ctx: Context, steps: int = 10, delay: float = 0.2, label: str = "", gate: str = ""
    ) -> str:
        """Report ``steps`` progress notifications ``delay`` seconds apart."""
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            log(f"[{instance}] {label} step {step}/{steps}")
            await ctx.report_progress(step, steps, f"{label} step {step}")
        if gate:
            opened = await wait_for_file(gate, GATE_LIMIT)
            log(f"[{instance}] {label} gate {'open' if opened else 'timed out'}")
        log(f"[{instance}] {label} done")
        return f"done {steps} steps on {instance}"

    @mcp.tool
    async def whoami(ctx: Context) -> str:
        """Who serves this call, and the session ids it sees."""
        scope = current_session_scope()
        return json.dumps(
            {
                "instance": instance,
                "layer_session": None if scope is None else scope.session_id,
                "handle": current_session().id,
                "fastmcp_session": ctx.session_id,
                "lifespan": ctx.lifespan_context.get("started"),
            }
        )

    @mcp.tool
    async def remember(text: str) -> str:
        """Set the session's note."""
        await current_session().modify(lambda state: state.update(note=text))
        return instance

    @mcp.tool
    async def append(text: str) -> str:
        """Add ``text`` to the session's note, in one read-modify-write."""
        await current_session().modify(
            lambda state: {**state, "note": (state.get("note") or "") + text}
        )
        return instance

    @mcp.tool
    async def recall() -> str:
        """The session's note (``null`` when unset) and the state's version, and who read it."""
        state = await current_session().read()
        return json.dumps(
            {"instance": instance, "note": state.value.get("note"), "version": state.version}
        )

    @mcp.tool
    async def replace(text: str, version: int) -> str:
        """Set the note iff the state is still at ``version``: ``"stored"`` or ``"stale"``."""
        session = current_session()
        state = await session.read()
        stored = await session.compare_and_set(
            {**state.value, "note": text}, expected_version=version
        )
        return "stored" if stored else "stale"

    return mcp


def build_app(args: argparse.Namespace) -> Any:
    global INSTANCE
    INSTANCE = args.instance
    sessions = McpSessions(
        args.store,
        namespace=args.namespace,
        ttl=1800,
        instance_id=args.instance,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_ttl=args.heartbeat_ttl,
    )
    mcp = build_server(args)
    app: Any = sessions.wrap(
        mcp.http_app(event_store=sessions.event_store, retry_interval=RETRY_INTERVAL_MS)
    )
    if args.mount:
        # FastMCP's documented way into a parent app: mount it, and hand its lifespan over.
        app = Starlette(routes=[Mount("/api", app=app)], lifespan=sessions.lifespan)
    return app


class Server(uvicorn.Server):
    """uvicorn's server, saying ``READY <port>`` on stdout once it listens."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"READY {self.config.port}", flush=True)
            log(
                f"[{INSTANCE}] fastmcp {version('fastmcp')} mcp {version('mcp')} "
                f"listening on {self.config.port}"
            )


async def serve(args: argparse.Namespace) -> None:
    config = uvicorn.Config(
        build_app(args),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=args.graceful,
    )
    await Server(config).serve()
    log(f"[{args.instance}] exited")


def main() -> None:
    # The layer's restores and replays on stderr, for the report of a failed test.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s %(message)s")
    logging.getLogger("sessionstore.mcp").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", default="memory")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--namespace", default="mcp")
    parser.add_argument("--auth", choices=["fastmcp", "none"], default="fastmcp")
    parser.add_argument("--mount", action="store_true")
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--heartbeat-ttl", type=float, default=2.0)
    parser.add_argument("--graceful", type=float, default=5.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
