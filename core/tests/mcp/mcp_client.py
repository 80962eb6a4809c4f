"""The official SDK's own MCP client, driven by a line protocol, for the end-to-end tests.

Run with the python of the SDK under test (``.venv`` for 2.x, ``.venv-mcp1`` for 1.x)::

    python mcp_client.py --url http://127.0.0.1:P/mcp --token alice-token

It connects with the initialize handshake (SDK 2.x: ``Client(..., mode="legacy")``, since sessions
exist only in the handshake era; SDK 1.x: ``ClientSession``), over the SDK's Streamable HTTP
transport with its own reconnection (``Last-Event-ID``, ``retry:``), lists the tools, then reads
one JSON command a line on stdin:

- ``{"op": "call", "label": "first", "steps": 10, "delay": 0.2, "timeout": 20}`` calls the
  ``progress`` tool with a progress callback, ``timeout`` seconds at most;
- ``{"op": "ask", "label": "q", "kind": "elicitation", "timeout": 20, "gate": false}`` calls
  the ``ask`` tool, whose server asks this client (``kind``: ``elicitation`` or ``sampling``);
  the client's callbacks answer ``yes-<label>`` / ``sampled-<label>``, with ``gate`` only once
  a ``{"op": "let"}`` line came;
- ``{"op": "quit"}`` (or end of input) leaves without deleting the session.

It writes one JSON object a line on stdout, flushed, each with ``t`` (``time.time()``):
``ready`` (with ``session``), ``http`` (every HTTP response: ``method``, ``status``, ``session``
sent, ``last_event_id`` sent), ``progress`` (``call``, ``progress``, ``total``, ``message``),
``result`` (``call``, ``text``, ``is_error``), ``error`` (``call``, ``type``, ``code``,
``message``), ``asked`` (``method``, ``message``: the server asked) and ``bye``. The SDK's
transport logs at DEBUG on stderr.
"""

import argparse
import asyncio
import importlib
import json
import logging
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from typing import Any

SDK_MAJOR = int(version("mcp").split(".")[0])

types: Any = importlib.import_module("mcp_types" if SDK_MAJOR >= 2 else "mcp.types")

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


STDIN = asyncio.Lock()  # one reader of stdin at a time: the command loop, or a gated answer


async def next_command() -> dict[str, Any]:
    async with STDIN:
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line.strip():
        return {"op": "quit"}
    command: dict[str, Any] = json.loads(line)
    return command


GATE = [False]  # whether answers to the server's requests wait for a "let" command


async def let_through() -> None:
    """With the current ``ask`` command's ``gate``, wait for a ``{"op": "let"}`` line (the call
    may end first, with an error: the line may then come after the command loop's next read)."""
    while GATE[0]:
        command = await next_command()
        if command["op"] in ("let", "quit"):
            return


async def on_elicitation(context: Any, params: Any) -> Any:
    """Answer an elicitation: accept, with ``answer`` = ``yes-<the question without ?>``."""
    question = str(params.message).rstrip("?")
    emit("asked", method="elicitation/create", message=question)
    await let_through()
    return types.ElicitResult(action="accept", content={"answer": f"yes-{question}"})


async def on_sampling(context: Any, params: Any) -> Any:
    """Answer a sampling request: ``sampled-<the first message's text>``."""
    text = str(getattr(params.messages[0].content, "text", ""))
    emit("asked", method="sampling/createMessage", message=text)
    await let_through()
    content = types.TextContent(type="text", text=f"sampled-{text}")
    return types.CreateMessageResult(role="assistant", content=content, model="e2e")


async def call(caller: Any, command: dict[str, Any]) -> None:
    """Run one call through ``caller(tool, arguments, limit, callback)``; report it. ``call``:
    the ``progress`` tool; ``ask``: the ``ask`` tool (the server asks this client something,
    answered once the command's ``gate`` file exists, if it names one)."""
    label = command.get("label", "call")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        emit("progress", call=label, progress=progress, total=total, message=message)

    if command["op"] == "ask":
        tool, arguments = "ask", {"kind": command.get("kind", "elicitation"), "label": label}
        GATE[0] = bool(command.get("gate"))
    else:
        tool = "progress"
        arguments = {
            "steps": command.get("steps", 10),
            "delay": command.get("delay", 0.2),
            "label": label,
        }
    try:
        result = await caller(tool, arguments, float(command.get("timeout", 20.0)), on_progress)
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
        if command["op"] in ("call", "ask"):
            await call(caller, command)
        elif command["op"] == "let":
            pass  # for a gated answer whose call ended first: see let_through
        else:
            emit("error", call=None, type="ProtocolError", code=None, message=repr(command))


async def run_sdk2(url: str, token: str) -> None:
    async with http_client(token) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
        async with Client(
            transport,
            mode="legacy",
            cache=None,
            elicitation_callback=on_elicitation,
            sampling_callback=on_sampling,
        ) as client:
            await client.list_tools()
            emit("ready", session=SESSION_IDS[-1], sdk=version("mcp"))

            async def caller(
                tool: str, arguments: dict[str, Any], limit: float, callback: Any
            ) -> Any:
                return await client.call_tool(
                    tool, arguments, read_timeout_seconds=limit, progress_callback=callback
                )

            await serve_commands(caller)


async def run_sdk1(url: str, token: str) -> None:
    async with (
        http_client(token) as http,
        streamable_http_client(url, http_client=http, terminate_on_close=False) as streams,
        ClientSession(
            streams[0],
            streams[1],
            elicitation_callback=on_elicitation,
            sampling_callback=on_sampling,
        ) as session,
    ):
        await session.initialize()
        await session.list_tools()  # 1.x lists them after a call otherwise, to validate results
        emit("ready", session=streams[2](), sdk=version("mcp"))

        async def caller(tool: str, arguments: dict[str, Any], limit: float, callback: Any) -> Any:
            return await session.call_tool(
                tool,
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
