"""The few parts of the official MCP SDK this package uses, for its 1.x and 2.x releases alike.

SDK 1.x keeps its wire types in ``mcp.types`` (``JSONRPCMessage`` is a root model whose ``.root``
is the message); SDK 2.x keeps them in the ``mcp_types`` distribution (``JSONRPCMessage`` is a
union validated through ``jsonrpc_message_adapter``). Everything else here is the same in both.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

try:
    from mcp.server.streamable_http import EventMessage, EventStore
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionstore.mcp needs the official MCP SDK: pip install 'sessionstore[mcp]'"
    ) from exc

__all__ = [
    "SDK_MAJOR",
    "EventMessage",
    "EventStore",
    "dump_message",
    "load_message",
]

SDK_MAJOR = int(version("mcp").split(".")[0])

if SDK_MAJOR >= 2:
    from mcp_types import jsonrpc_message_adapter

    def dump_message(message: Any) -> bytes:
        """The message's JSON, exactly as the SDK writes it on an SSE stream."""
        data: str = message.model_dump_json(by_alias=True, exclude_unset=True)
        return data.encode()

    def load_message(data: bytes) -> Any:
        """The SDK message ``data`` holds (what :func:`dump_message` wrote)."""
        return jsonrpc_message_adapter.validate_json(data)

else:  # pragma: no cover - exercised by the SDK 1.x end-to-end tests, not under mypy's SDK
    from mcp.types import JSONRPCMessage

    def dump_message(message: Any) -> bytes:
        """The message's JSON, exactly as the SDK writes it on an SSE stream."""
        data: str = message.model_dump_json(by_alias=True, exclude_none=True)
        return data.encode()

    def load_message(data: bytes) -> Any:
        """The SDK message ``data`` holds (what :func:`dump_message` wrote)."""
        return JSONRPCMessage.model_validate_json(data)  # type: ignore[attr-defined]


def error_message(request_id: str | int, code: int, message: str, data: object) -> Any:
    """A JSON-RPC error answering ``request_id``, as an SDK message."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": data},
    }
    return load_message(json.dumps(body).encode())
