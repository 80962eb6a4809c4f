"""The initialize request a session starts with: recognised as the SDK recognises it (parsed by
the SDK's own parser, so a hostile body gets the SDK's answer, never a 500 of the layer), and kept
in the store as its exact text, to be replayed byte for byte when the session is restored."""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic_core

from ._sdk import SDK_MAJOR

__all__ = [
    "UNPARSED",
    "Unparsable",
    "initialize_body",
    "is_initialize",
    "kept_initialize",
    "parse_as_the_sdk_does",
]

UNPARSED = object()


class Unparsable(Exception):
    """A body SDK 1.x's parser fails on with another error than ``JSONDecodeError``."""


def parse_as_the_sdk_does(body: bytes) -> Any:
    """The body parsed by the SDK's own parser (2.x: pydantic-core's, 1.x: ``json.loads``), so
    the layer takes for an initialize request exactly what the SDK will; :data:`UNPARSED` when
    the SDK answers it with its parse error. :class:`Unparsable` where SDK 1.x's parser fails
    otherwise (a ``RecursionError``, a ``UnicodeDecodeError``: SDK 1.x answers 500)."""
    if SDK_MAJOR >= 2:
        try:
            return pydantic_core.from_json(body)
        except ValueError:
            return UNPARSED
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return UNPARSED
    except RecursionError:
        raise Unparsable("recursion limit exceeded") from None
    except ValueError:  # UnicodeDecodeError
        raise Unparsable("invalid unicode") from None


def is_initialize(message: Any) -> bool:
    return isinstance(message, dict) and message.get("method") == "initialize" and "id" in message


def kept_initialize(body: bytes) -> dict[str, str]:
    """What the store keeps of an initialize request: its exact text, one string (the store
    never decodes its structure), or base64 of its bytes when they are not UTF-8 (SDK 1.x's
    parser also reads UTF-16 and UTF-32)."""
    try:
        return {"initialize": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"initialize_base64": base64.b64encode(body).decode("ascii")}


def initialize_body(kept: dict[str, Any]) -> bytes:
    """The kept initialize request, byte for byte as the client sent it."""
    text = kept.get("initialize")
    if isinstance(text, str):
        return text.encode("utf-8")
    coded = kept.get("initialize_base64")
    if isinstance(coded, str):
        return base64.b64decode(coded)
    return json.dumps(text).encode()  # a session kept by an earlier release: parsed JSON
