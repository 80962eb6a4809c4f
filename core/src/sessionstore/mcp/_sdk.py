"""The few parts of the official MCP SDK this package uses, for its 1.x and 2.x releases alike.

SDK 1.x keeps its wire types in ``mcp.types`` (``JSONRPCMessage`` is a root model whose ``.root``
is the message); SDK 2.x keeps them in the ``mcp_types`` distribution (``JSONRPCMessage`` is a
union validated through ``jsonrpc_message_adapter``). Everything else here is the same in both.
"""

from __future__ import annotations

import importlib
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
    "ANSWER_KINDS",
    "SDK_MAJOR",
    "EventMessage",
    "EventStore",
    "dump_message",
    "error_message",
    "is_answer",
    "load_message",
    "parse_any",
    "sdk_types",
    "wire",
]

SDK_MAJOR = int(version("mcp").split(".")[0])

# The SDK's wire types module. Typed Any: mypy sees one SDK (the 2.x of the dev environment),
# this code runs with either.
sdk_types: Any = importlib.import_module("mcp_types" if SDK_MAJOR >= 2 else "mcp.types")

if SDK_MAJOR >= 2:

    def wire(message: Any) -> Any:
        """The message itself (SDK 1.x: the ``JSONRPCMessage`` root model's ``.root``)."""
        return message

    def _from_wire(message: Any) -> Any:
        return message

    def parse_any(data: bytes) -> Any:
        """A JSON-RPC message of any kind, validated by the SDK as it validates a request body
        (``pydantic.ValidationError`` when it is none)."""
        return sdk_types.jsonrpc_message_adapter.validate_json(data)

    _EXCLUDE = {"exclude_unset": True}

else:  # pragma: no cover - exercised by the SDK 1.x end-to-end tests

    def wire(message: Any) -> Any:
        return message.root

    def _from_wire(message: Any) -> Any:
        return sdk_types.JSONRPCMessage(root=message)

    def parse_any(data: bytes) -> Any:
        return sdk_types.JSONRPCMessage.model_validate_json(data)

    _EXCLUDE = {"exclude_none": True}

# One byte before a stored message's JSON names its class, so a replay validates each message
# against that class alone: the SDK's union of four tries them in turn (2-3x slower).
_KIND_OF: dict[Any, bytes] = {
    sdk_types.JSONRPCNotification: b"n",
    sdk_types.JSONRPCResponse: b"r",
    sdk_types.JSONRPCError: b"e",
    sdk_types.JSONRPCRequest: b"q",
}
_CLASS_OF: dict[int, Any] = {kind[0]: cls for cls, kind in _KIND_OF.items()}
ANSWER_KINDS = frozenset(b"re")
"""The first bytes of :func:`dump_message`'s output for a response or an error."""


def dump_message(message: Any) -> bytes:
    """The message's kind byte, then its JSON exactly as the SDK writes it on an SSE stream."""
    unwrapped = wire(message)
    data: str = unwrapped.model_dump_json(by_alias=True, **_EXCLUDE)
    return _KIND_OF[type(unwrapped)] + data.encode()


def is_answer(message: Any) -> bool:
    """Whether an SDK message is a response or an error (it ends its request's stream)."""
    if message is None:  # a priming event
        return False
    return _KIND_OF.get(type(wire(message)), b"-")[0] in ANSWER_KINDS


def load_message(data: bytes) -> Any:
    """The SDK message that :func:`dump_message` wrote (or, with no kind byte, plain JSON)."""
    cls = _CLASS_OF.get(data[0])
    if cls is None:
        return parse_any(data)
    return _from_wire(cls.model_validate_json(data[1:]))


def error_message(request_id: str | int, code: int, message: str, data: object) -> Any:
    """A JSON-RPC error answering ``request_id``, as an SDK message."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": data},
    }
    return parse_any(json.dumps(body).encode())
