"""The official SDK's own client running a plan of tool calls, each sent to a chosen instance, for
the per-session state tests.

Run with the python of the SDK under test (``.venv`` for 2.x, ``.venv-mcp1`` for 1.x)::

    python state_client.py --token alice-token --instances '{"A": PORT, "B": PORT}' --plan PLAN

``PLAN`` is JSON: a list of sessions, each ``{"end": bool, "calls": [[instance, tool, arguments],
...]}``. Each session is a new connection of the SDK's client (SDK 2.x: ``Client(...,
mode="legacy")``; SDK 1.x: ``ClientSession``) over its Streamable HTTP transport to
``http://127.0.0.1:<port>/mcp``. Its requests go to the instance of the call being made (the
first call's for the handshake): a round-robin balancer with a schedule, so a test knows which
instance ran what. At the end of a session the client sends ``DELETE`` when ``end`` is true,
else leaves the session to expire.

It writes one JSON object a line on stdout: ``session`` (``index``, ``id``), ``result`` (``index``,
``call``, ``text``, ``is_error``) per call, then ``bye``; ``fatal`` if it crashed.
"""

import argparse
import asyncio
import json
import sys
from importlib.metadata import version
from typing import Any

SDK_MAJOR = int(version("mcp").split(".")[0])

if SDK_MAJOR >= 2:
    import httpx2 as httpx
    from mcp.client.client import Client
    from mcp.client.streamable_http import streamable_http_client
else:
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Scheduled(httpx.AsyncBaseTransport):
    """Sends each request to the port of the instance in ``target``."""

    def __init__(self, ports: dict[str, int], first: str) -> None:
        self.ports = ports
        self.target = first
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: Any) -> Any:
        request.url = request.url.copy_with(port=self.ports[self.target])
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def run_session(index: int, plan: dict[str, Any], token: str, ports: dict[str, int]) -> None:
    calls = plan["calls"]
    routing = Scheduled(ports, calls[0][0])
    given: list[str] = []

    async def on_response(response: Any) -> None:
        session = response.headers.get("mcp-session-id")
        if session and session not in given:
            given.append(session)

    http = httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=60.0),
        transport=routing,
        event_hooks={"response": [on_response]},
    )
    url = f"http://127.0.0.1:{ports[calls[0][0]]}/mcp"
    async with http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=plan["end"])
        if SDK_MAJOR >= 2:
            async with Client(transport, mode="legacy", cache=None) as client:
                emit("session", index=index, id=given[-1])
                await run_calls(index, calls, routing, client.call_tool)
        else:
            async with transport as streams, ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                emit("session", index=index, id=streams[2]())
                await run_calls(index, calls, routing, session.call_tool)


async def run_calls(index: int, calls: list[Any], routing: Scheduled, call_tool: Any) -> None:
    for number, (instance, tool, arguments) in enumerate(calls):
        routing.target = instance
        result = await call_tool(tool, arguments)
        text = " ".join(getattr(block, "text", "") for block in result.content)
        is_error = result.is_error if SDK_MAJOR >= 2 else result.isError
        emit("result", index=index, call=number, text=text, is_error=bool(is_error))


async def run(token: str, ports: dict[str, int], plan: list[dict[str, Any]]) -> None:
    for index, session in enumerate(plan):
        await run_session(index, session, token, ports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--instances", required=True, type=json.loads)
    parser.add_argument("--plan", required=True, type=json.loads)
    args = parser.parse_args()
    try:
        asyncio.run(run(args.token, args.instances, args.plan))
    except BaseException as exc:
        emit("fatal", type=type(exc).__name__, message=repr(exc))
        print(repr(exc), file=sys.stderr)
        raise
    emit("bye")


if __name__ == "__main__":
    main()
