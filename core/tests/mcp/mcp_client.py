"""The official SDK's own MCP client, driven by a line protocol, for the end-to-end tests.

Run with the python of the SDK under test (``.venv`` for 2.x, ``.venv-mcp1`` for 1.x)::

    python mcp_client.py --url http://127.0.0.1:P/mcp --token alice-token

It connects with the initialize handshake (SDK 2.x: ``Client(..., mode="legacy")``, since sessions
exist only in the handshake era; SDK 1.x: ``ClientSession``), over the SDK's Streamable HTTP
transport with its own reconnection (``Last-Event-ID``, ``retry:``), lists the tools, then reads
one JSON command a line on stdin:

- ``{"op": "call", "label": "first", "steps": 10, "delay": 0.2, "timeout": 20}`` calls the
  ``progress`` tool with a progress callback, ``timeout`` seconds at most;
- ``{"op": "quit"}`` (or end of input) leaves without deleting the session.

It writes one JSON object a line on stdout, flushed, each with ``t`` (``time.time()``):
``ready`` (with ``session``), ``http`` (every HTTP response: ``method``, ``status``, ``session``
sent, ``last_event_id`` sent), ``progress`` (``call``, ``progress``, ``total``, ``message``),
``result`` (``call``, ``text``, ``is_error``), ``error`` (``call``, ``type``, ``code``,
``message``) and ``bye``. The SDK's transport logs at DEBUG on stderr.
"""

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import timedelta
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
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


SESSION_IDS: list[str] = []  # every session id a server handed out, in order


async def on_response(response: Any) -> None:
    request = response.request
    given = response.headers.get("mcp-session-id")
    if given and given not in SESSION_IDS:
        SESSION_IDS.append(given)
    emit(
        "http",
        method=request.method,
        status=response.status_code,
        session=request.headers.get("mcp-session-id"),
        last_event_id=request.headers.get("last-event-id"),
        content_type=response.headers.get("content-type"),
    )


def http_client(token: str) -> Any:
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=300.0),
        event_hooks={"response": [on_response]},
    )


async def next_command() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line.strip():
        return {"op": "quit"}
    command: dict[str, Any] = json.loads(line)
    return command


async def call(caller: Any, command: dict[str, Any]) -> None:
    """Run one ``progress`` call through ``caller(arguments, limit, callback)``; report it."""
    label = command.get("label", "call")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        emit("progress", call=label, progress=progress, total=total, message=message)

    arguments = {
        "steps": command.get("steps", 10),
        "delay": command.get("delay", 0.2),
        "label": label,
    }
    try:
        result = await caller(arguments, float(command.get("timeout", 20.0)), on_progress)
    except Exception as exc:
        error = getattr(exc, "error", None)
        emit(
            "error",
            call=label,
            type=type(exc).__name__,
            code=getattr(error, "code", None),
            message=str(getattr(error, "message", exc)),
        )
        return
    text = " ".join(getattr(block, "text", "") for block in result.content)
    is_error = result.is_error if SDK_MAJOR >= 2 else result.isError
    emit("result", call=label, text=text, is_error=bool(is_error))


async def serve_commands(caller: Any) -> None:
    while True:
        command = await next_command()
        if command["op"] == "quit":
            return
        if command["op"] == "call":
            await call(caller, command)
        else:
            emit("error", call=None, type="ProtocolError", code=None, message=repr(command))


async def run_sdk2(url: str, token: str) -> None:
    async with http_client(token) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
        async with Client(transport, mode="legacy", cache=None) as client:
            await client.list_tools()
            emit("ready", session=SESSION_IDS[-1], sdk=version("mcp"))

            async def caller(arguments: dict[str, Any], limit: float, callback: Any) -> Any:
                return await client.call_tool(
                    "progress", arguments, read_timeout_seconds=limit, progress_callback=callback
                )

            await serve_commands(caller)


async def run_sdk1(url: str, token: str) -> None:
    async with (
        http_client(token) as http,
        streamable_http_client(url, http_client=http, terminate_on_close=False) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        await session.list_tools()  # 1.x lists them after a call otherwise, to validate results
        emit("ready", session=streams[2](), sdk=version("mcp"))

        async def caller(arguments: dict[str, Any], limit: float, callback: Any) -> Any:
            return await session.call_tool(
                "progress",
                arguments,
                read_timeout_seconds=timedelta(seconds=limit),
                progress_callback=callback,
            )

        await serve_commands(caller)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("mcp.client.streamable_http").setLevel(logging.DEBUG)
    run = run_sdk2 if SDK_MAJOR >= 2 else run_sdk1
    try:
        asyncio.run(run(args.url, args.token))
    except BaseException as exc:
        emit("fatal", type=type(exc).__name__, message=repr(exc))
        raise
    emit("bye")


if __name__ == "__main__":
    main()
