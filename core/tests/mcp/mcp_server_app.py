"""One MCP server instance of the end-to-end tests, under the official SDK 2.x or 1.x.

Run with the python of the SDK under test (``.venv`` for 2.x, ``.venv-mcp1`` for 1.x)::

    python mcp_server_app.py --port P --store URL --instance NAME [--namespace NS] [--plain]

It serves the tool ``progress(steps=10, delay=0.2, label="")``, which reports ``steps`` progress
notifications ``delay`` seconds apart and then returns ``"done <steps> steps on <instance>"``, and
``ask(kind="elicitation", label="")``, which asks the client (elicitation, or ``kind="sampling"``)
and returns ``"<instance> heard <the answer>"``, and ``remember(note)`` / ``recall()``, which
keep a note in the session's state (``sessionstore.mcp.current_session``; ``recall`` returns
JSON: the note, the instance, the session id the tool sees), on
``http://127.0.0.1:P/mcp`` (Streamable HTTP, SSE responses, resumable: ``retry:`` 300 ms).
A bearer token ``<name>-token`` authenticates as ``<name>``; requests without one are anonymous.
Where that is checked is ``--auth``: ``outer`` (the default), Starlette's
``AuthenticationMiddleware`` outside everything else; ``sdk``, the SDK's own auth
(``token_verifier=`` and ``auth=AuthSettings(...)``: client ``<name>-app``, subject ``<name>``;
no token is a 401); ``principal``, no authentication at all and ``McpSessions(principal=...)``
reading the token from the header.

Without ``--plain`` the SDK's app is wrapped by ``sessionstore.mcp`` on the shared store
``--store``; with ``--plain`` it is the SDK alone with an in-memory event store of its own:
resumable within this process, sharing nothing with another instance. Prints ``READY <port>``
once listening, and one line per tool step on stderr. SIGTERM is uvicorn's graceful shutdown
(``--graceful`` seconds).
"""

import argparse
import asyncio
import importlib
import json
import sys
import uuid
from importlib.metadata import version
from typing import Any

import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.streamable_http import EventMessage, EventStore
from pydantic import BaseModel
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

SDK_MAJOR = int(version("mcp").split(".")[0])

if SDK_MAJOR >= 2:
    from mcp.server.mcpserver import Context, MCPServer
else:
    from mcp.server.fastmcp import Context, FastMCP

RETRY_INTERVAL_MS = 300
INSTANCE = "?"  # this instance's name (--instance), for the log lines
types: Any = importlib.import_module("mcp_types" if SDK_MAJOR >= 2 else "mcp.types")


class Answer(BaseModel):
    """What the ``ask`` tool elicits."""

    answer: str


class BearerTokens(AuthenticationBackend):
    """``Authorization: Bearer alice-token`` is the user ``alice``; no header is anonymous."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.endswith("-token"):
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(token.removesuffix("-token"))


class Verifier:
    """The SDK's ``TokenVerifier`` of ``--auth sdk``: ``<name>-token`` is client ``<name>-app``,
    subject ``<name>``."""

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token.endswith("-token"):
            return None
        name = token.removesuffix("-token")
        return AccessToken(token=token, client_id=f"{name}-app", subject=name, scopes=["mcp"])


def bearer_principal(scope: Any) -> str | None:
    """``McpSessions(principal=...)`` of ``--auth principal``: the bearer token's name."""
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.endswith("-token"):
                return token.removesuffix("-token")
    return None


class MemoryEventStore(EventStore):
    """The SDK's resumability on its own: every event of this process, in memory.

    What the SDK's examples ship (``InMemoryEventStore``), so that ``--plain`` fails the
    cross-instance scenarios for want of shared state only, not for want of resumability.
    """

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []  # (event id, stream id, message or None)

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = uuid.uuid4().hex
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        for index, (event_id, stream_id, _) in enumerate(self._events):
            if event_id == last_event_id:
                for later_id, later_stream, message in self._events[index + 1 :]:
                    if later_stream == stream_id and message is not None:
                        await send_callback(EventMessage(message, later_id))
                return stream_id
        return None


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build_app(args: argparse.Namespace) -> Any:
    global INSTANCE
    INSTANCE = instance = args.instance

    async def progress(ctx: Context, steps: int = 10, delay: float = 0.2, label: str = "") -> str:
        """Report ``steps`` progress notifications ``delay`` seconds apart."""
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            log(f"[{instance}] {label} step {step}/{steps}")
            await ctx.report_progress(step, steps, f"{label} step {step}")
        log(f"[{instance}] {label} done")
        return f"done {steps} steps on {instance}"

    async def ask(ctx: Context, kind: str = "elicitation", label: str = "") -> str:
        """Ask the client (``kind``: ``elicitation`` or ``sampling``) on this call's stream;
        return ``"<instance> heard <its answer>"``."""
        log(f"[{instance}] {label} asks by {kind}")
        if kind == "elicitation":
            elicited = await ctx.elicit(f"{label}?", schema=Answer)
            data = elicited.data
            heard = data.answer if isinstance(data, Answer) else elicited.action
        else:
            message = types.SamplingMessage(
                role="user", content=types.TextContent(type="text", text=label)
            )
            sampled = await ctx.session.create_message(
                messages=[message], max_tokens=16, related_request_id=ctx.request_id
            )
            heard = sampled.content.text
        log(f"[{instance}] {label} heard {heard}")
        return f"{instance} heard {heard}"

    async def remember(note: str) -> str:
        """Keep ``note`` in this session's state."""
        from sessionstore.mcp import current_session

        await current_session().modify(lambda state: state.update(note=note))
        return f"noted on {instance}"

    async def recall() -> str:
        """The note of this session (``null`` before any), with who answers, as JSON."""
        from sessionstore.mcp import current_session

        session = current_session()
        note = (await session.state()).get("note")
        return json.dumps({"note": note, "instance": instance, "session": session.id})

    sessions = None
    if args.plain:
        event_store: EventStore = MemoryEventStore()
    else:
        from sessionstore.mcp import McpSessions

        sessions = McpSessions(
            args.store,
            namespace=args.namespace,
            ttl=args.ttl,
            heartbeat_interval=args.heartbeat_interval,
            heartbeat_ttl=args.heartbeat_ttl,
            **({"principal": bearer_principal} if args.auth == "principal" else {}),
        )
        event_store = sessions.event_store

    sdk_auth: dict[str, Any] = {}
    if args.auth == "sdk":
        sdk_auth = {
            "token_verifier": Verifier(),
            "auth": AuthSettings(
                issuer_url="https://auth.example.com",
                resource_server_url=f"http://127.0.0.1:{args.port}/mcp",
                validate_token_resource=False,
                required_scopes=["mcp"],
            ),
        }
    if SDK_MAJOR >= 2:
        server = MCPServer("sessionstore-e2e", **sdk_auth)
        server.tool()(progress)
        server.tool()(ask)
        server.tool()(remember)
        server.tool()(recall)
        inner = server.streamable_http_app(
            event_store=event_store, retry_interval=RETRY_INTERVAL_MS
        )
    else:
        server = FastMCP(
            "sessionstore-e2e",
            event_store=event_store,
            retry_interval=RETRY_INTERVAL_MS,
            **sdk_auth,
        )
        server.tool()(progress)
        server.tool()(ask)
        server.tool()(remember)
        server.tool()(recall)
        inner = server.streamable_http_app()
    app = inner if sessions is None else sessions.wrap(inner)
    if args.auth != "outer":
        return app
    return AuthenticationMiddleware(app, backend=BearerTokens())


class Server(uvicorn.Server):
    """uvicorn's server, saying ``READY <port>`` on stdout once it listens."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"READY {self.config.port}", flush=True)
            log(f"[{INSTANCE}] mcp {version('mcp')} listening on {self.config.port}")


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", default="memory")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--namespace", default="mcp")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--heartbeat-ttl", type=float, default=2.0)
    parser.add_argument("--graceful", type=float, default=5.0)
    parser.add_argument("--ttl", type=float, default=1800.0, help="the sessions' idle lifetime")
    parser.add_argument("--auth", choices=["outer", "sdk", "principal"], default="outer")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
