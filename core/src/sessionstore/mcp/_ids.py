"""The shapes of the ids the MCP layer reads back from clients and from the store, in one place:
what events.py checks of an event id and replies.py of a request id must agree."""

from __future__ import annotations

import re

__all__ = ["INSTANCE_ID", "INSTANCE_ID_PATTERN", "INTEGER"]

INSTANCE_ID_PATTERN = r"[A-Za-z0-9_-]{1,80}"
"""An instance id (with its random suffix), as it appears inside event ids and request ids."""

INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)

INTEGER = re.compile(r"-?[0-9]{1,18}")
"""A JSON-RPC request id that was an integer (at most 18 digits: exact in every JSON parser)."""
