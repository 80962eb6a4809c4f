"""The server the official MCP conformance harness tests (``test_mcp_conformance.py``), SDK 2.x.

Run with ``.venv``'s python::

    python conformance_server.py --port P --instance NAME [--store URL --namespace NS] [--plain]

It implements what the harness's server scenarios at the 2025-11-25 wire ask for, under the
names they call (tools ``test_*``, resources ``test://...``, prompts ``test_*``, logging,
subscriptions, completion), modelled on the SDK's reference server
(``examples/servers/everything-server`` of modelcontextprotocol/python-sdk), on
``http://127.0.0.1:P/mcp``: Streamable HTTP, SSE responses, resumable (``retry:`` 100 ms).

With ``--plain`` it is the SDK alone with an in-memory event store of its own; without, the SDK's
app is wrapped by ``sessionstore.mcp`` (``McpSessions(...).wrap(...)``) on the shared store
``--store``, so several instances behind a balancer serve one fleet. Prints ``READY <port>`` once
listening; its log goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from typing import Any

import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.types import (
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

RETRY_INTERVAL_MS = 100  # what the reference server sends (the SSE polling scenario waits on it)
IMAGE = (  # a 1x1 PNG, as the reference server sends
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
AUDIO = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

logger = logging.getLogger("conformance_server")


class MemoryEventStore(EventStore):
    """The plain instance's resumability: every event of this process, in memory (what the
    reference server ships), so the plain SDK passes the resumption scenarios on its own."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []  # (event id, stream id, message or None)

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = str(len(self._events) + 1)
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        if not last_event_id.isdigit() or not 0 < int(last_event_id) <= len(self._events):
            return None
        _, stream_id, _ = self._events[int(last_event_id) - 1]
        for event_id, later_stream, message in self._events[int(last_event_id) :]:
            if later_stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class UserResponse(BaseModel):
    response: str = Field(description="User's response")


class Sep1034Defaults(BaseModel):
    """Elicitation with a default for every primitive type (SEP-1034)."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active",
        description="User status",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    verified: bool = Field(default=True, description="Verification status")


class Sep1330Enums(BaseModel):
    """Elicitation with every enum schema variation (SEP-1330)."""

    untitledSingle: str = Field(  # the scenario's field names
        description="Simple enum without titles",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra={
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ]
        },
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            }
        },
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    )


# The tool whose inputSchema carries the JSON Schema 2020-12 keywords the scenario checks for.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def build_server() -> MCPServer:
    mcp = MCPServer(name="mcp-conformance-test-server", version="0.1.0")
    subscriptions: set[str] = set()

    @mcp.tool()
    def test_simple_text() -> str:
        """Tests simple text content response"""
        return "This is a simple text response for testing."

    @mcp.tool()
    def test_image_content() -> list[ImageContent]:
        """Tests image content response"""
        return [ImageContent(type="image", data=IMAGE, mime_type="image/png")]

    @mcp.tool()
    def test_audio_content() -> list[AudioContent]:
        """Tests audio content response"""
        return [AudioContent(type="audio", data=AUDIO, mime_type="audio/wav")]

    @mcp.tool()
    def test_embedded_resource() -> list[EmbeddedResource]:
        """Tests embedded resource content response"""
        return [
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://embedded-resource",
                    mime_type="text/plain",
                    text="This is an embedded resource content.",
                ),
            )
        ]

    @mcp.tool()
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Tests response with multiple content types (text, image, resource)"""
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=IMAGE, mime_type="image/png"),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://mixed-content-resource",
                    mime_type="application/json",
                    text='{"test": "data", "value": 123}',
                ),
            ),
        ]

    @mcp.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Tests tool that emits log messages during execution"""
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @mcp.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Tests tool that reports progress notifications"""
        await ctx.report_progress(progress=0, total=100, message="Completed step 0 of 100")
        await asyncio.sleep(0.05)
        await ctx.report_progress(progress=50, total=100, message="Completed step 50 of 100")
        await asyncio.sleep(0.05)
        await ctx.report_progress(progress=100, total=100, message="Completed step 100 of 100")
        meta = ctx.request_context.meta if ctx.request_context else None
        return str(meta.get("progress_token") if meta else 0)

    @mcp.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Tests server-initiated sampling (LLM completion request)"""
        try:
            # With related_request_id the request rides on this call's own stream.
            result = await ctx.session.create_message(
                messages=[
                    SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
                ],
                max_tokens=100,
                related_request_id=ctx.request_id,
            )
            text = result.content.text if result.content.type == "text" else "No response"
            return f"LLM response: {text}"
        except Exception as error:
            return f"Sampling not supported or error: {error}"

    @mcp.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Tests server-initiated elicitation (user input request)"""
        try:
            result = await ctx.elicit(message=message, schema=UserResponse)
            content = result.data.model_dump_json() if result.action == "accept" else "{}"
            return f"User response: action={result.action}, content={content}"
        except Exception as error:
            return f"Elicitation not supported or error: {error}"

    @mcp.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Tests elicitation with default values for all primitive types (SEP-1034)"""
        try:
            result = await ctx.elicit(
                message="Please provide user information", schema=Sep1034Defaults
            )
            content = result.data.model_dump_json() if result.action == "accept" else "{}"
            return f"Elicitation result: action={result.action}, content={content}"
        except Exception as error:
            return f"Elicitation not supported or error: {error}"

    @mcp.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Tests elicitation with enum schema variations per SEP-1330"""
        try:
            result = await ctx.elicit(
                message="Please select values using different enum schema types",
                schema=Sep1330Enums,
            )
            content = result.data.model_dump_json() if result.action == "accept" else "{}"
            return f"Elicitation completed: action={result.action}, content={content}"
        except Exception as error:
            return f"Elicitation not supported or error: {error}"

    @mcp.tool()
    def test_error_handling() -> str:
        """Tests error response handling"""
        raise RuntimeError("This tool intentionally returns an error for testing")

    @mcp.tool(name="json_schema_2020_12_tool")
    def json_schema_2020_12_tool() -> str:
        """Tests JSON Schema 2020-12 keyword preservation in tools/list"""
        return "json_schema_2020_12_tool"

    # No public way to give a tool an inputSchema of its own yet (the reference server does so).
    mcp._tool_manager._tools["json_schema_2020_12_tool"].parameters = JSON_SCHEMA_2020_12

    @mcp.tool()
    async def test_reconnection(ctx: Context) -> str:
        """Tests SSE polling by closing the stream mid-call (SEP-1699)"""
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)  # the reference server's pause for the client to reconnect
        await ctx.info("After reconnect")
        return "Reconnection test completed"

    @mcp.resource("test://static-text")
    def static_text_resource() -> str:
        """A static text resource for testing"""
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary")
    def static_binary_resource() -> bytes:
        """A static binary resource (image) for testing"""
        return base64.b64decode(IMAGE)

    @mcp.resource("test://template/{id}/data")
    def template_resource(id: str) -> str:
        """A resource template with parameter substitution"""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource")
    def watched_resource() -> str:
        """A resource that can be subscribed to for updates"""
        return "Watched resource content"

    @mcp.prompt()
    def test_simple_prompt() -> list[UserMessage]:
        """A simple prompt without arguments"""
        text = "This is a simple prompt for testing."
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @mcp.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """A prompt with required arguments"""
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @mcp.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        """A prompt that includes an embedded resource"""
        resource = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        text = "Please process the embedded resource above."
        return [
            UserMessage(role="user", content=EmbeddedResource(type="resource", resource=resource)),
            UserMessage(role="user", content=TextContent(type="text", text=text)),
        ]

    @mcp.prompt()
    def test_prompt_with_image() -> list[UserMessage]:
        """A prompt that includes image content"""
        text = "Please analyze the image above."
        return [
            UserMessage(
                role="user", content=ImageContent(type="image", data=IMAGE, mime_type="image/png")
            ),
            UserMessage(role="user", content=TextContent(type="text", text=text)),
        ]

    async def set_level(ctx: ServerRequestContext, params: SetLevelRequestParams) -> EmptyResult:
        logger.info("log level set to %s", params.level)
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext, params: UnsubscribeRequestParams
    ) -> EmptyResult:
        subscriptions.discard(str(params.uri))
        return EmptyResult()

    # MCPServer has no public API for these three yet (the reference server does the same).
    lowlevel = mcp._lowlevel_server
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    @mcp.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        return Completion(values=[], total=0, has_more=False)

    return mcp


def build_app(args: argparse.Namespace) -> Any:
    mcp = build_server()
    if args.plain:
        event_store: EventStore = MemoryEventStore()
        return mcp.streamable_http_app(event_store=event_store, retry_interval=RETRY_INTERVAL_MS)
    from sessionstore.mcp import McpSessions

    sessions = McpSessions(
        args.store, namespace=args.namespace, instance_id=args.instance, ttl=1800
    )
    inner = mcp.streamable_http_app(
        event_store=sessions.event_store, retry_interval=RETRY_INTERVAL_MS
    )
    return sessions.wrap(inner)


class Server(uvicorn.Server):
    """uvicorn's server, saying ``READY <port>`` on stdout once it listens."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"READY {self.config.port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--store", default="memory")
    parser.add_argument("--namespace", default="conformance")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"[{args.instance}] %(asctime)s %(name)s %(levelname)s %(message)s",
    )
    config = uvicorn.Config(
        build_app(args), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on"
    )
    asyncio.run(Server(config).serve())


if __name__ == "__main__":
    main()
