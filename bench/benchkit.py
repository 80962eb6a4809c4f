"""What the benchmark scripts share: the session they store, result checks, the common options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from sessionstore import ResponseMode, Session, TransportType, new_session_id

__all__ = ["base_parser", "check", "emit", "proxy_session"]


def proxy_session(session_id: str | None = None) -> Session:
    """A session as an MCP proxy keeps it: HTTP, SSE responses, an upstream id, small metadata."""
    return Session(
        id=session_id or new_session_id(),
        transport=TransportType.HTTP,
        response_mode=ResponseMode.SSE_STREAM,
        upstream_session_id=new_session_id(),
        metadata={"client": "claude-desktop", "protocol": "2025-06-18", "tools": 12},
    )


def check(condition: bool, what: str) -> None:
    """Fail the benchmark if one of its results is wrong: a fast wrong answer is no figure."""
    if not condition:
        raise RuntimeError(f"benchmark sanity check failed: {what}")


def base_parser(doc: str | None, *, sessions: int, rounds: int) -> argparse.ArgumentParser:
    """The options every benchmark takes: --sessions, --rounds, --json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument(
        "--sessions", type=int, default=sessions, help="sessions per round (%(default)s)"
    )
    parser.add_argument(
        "--rounds", type=int, default=rounds, help="rounds per side and op (%(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object, not a table")
    return parser


def emit(summary: dict[str, Any], *, as_json: bool, render: Callable[[dict[str, Any]], str]) -> int:
    """Print the results as JSON (``--json``) or as the script's table; return the exit status."""
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(summary))
    return 0
