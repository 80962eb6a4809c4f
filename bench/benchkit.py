"""What the benchmark scripts share: the session they store, result checks, the common options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sessionstore import ResponseMode, Session, TransportType, new_session_id

__all__ = ["NoRedisServer", "base_parser", "check", "emit", "proxy_session", "redis_server"]

REDIS_TESTS = Path(__file__).resolve().parent.parent / "plugins" / "redis" / "tests"


class NoRedisServer(Exception):
    """No ``--url`` was given and ``redis-server`` is not on PATH to start a throwaway one."""


@contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, str]]:
    """``(url, what it is)``: the given server, or a throwaway one stopped on exit.

    Raises :class:`NoRedisServer` on entry when there is neither.
    """
    if url:
        if urlsplit(url).scheme.lower() not in ("redis", "rediss"):
            raise SystemExit(
                f"--url must be a redis:// or rediss:// URL of one server, not {url!r}"
            )
        yield url, "given by --url / SESSIONSTORE_REDIS_URL"
        return
    sys.path.insert(0, str(REDIS_TESTS))
    from redis_servers import RedisServer, redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        raise NoRedisServer(
            "redis-server is not on PATH: install it (apt-get install redis-server) "
            "or pass --url redis://host:port/db"
        )
    with RedisServer() as server:
        yield server.url, f"throwaway {binary} on 127.0.0.1:{server.port}"


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
