"""The proxy helpers of sessionstore.mcp: two ids, the response mode, idle expiry, close."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

from sessionstore import ResponseMode, SessionNotFoundError, open_store
from sessionstore.mcp import ProxySessions, response_mode_for


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        ("application/json", ResponseMode.JSON),
        ("Application/JSON; charset=utf-8", ResponseMode.JSON),
        ("text/event-stream", ResponseMode.SSE_STREAM),
        (" text/event-stream ;charset=utf-8", ResponseMode.SSE_STREAM),
        ("text/plain", ResponseMode.PASSTHROUGH),
        ("application/jsonl", ResponseMode.PASSTHROUGH),
        ("", ResponseMode.PASSTHROUGH),
        (None, ResponseMode.PASSTHROUGH),
    ],
)
def test_response_mode_follows_the_content_type(
    content_type: str | None, mode: ResponseMode
) -> None:
    assert response_mode_for(content_type) is mode


async def test_a_proxy_session_from_open_to_close(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'proxy.db'}"
    async with open_store(spec) as one, open_store(spec) as other:
        sessions = ProxySessions(one)
        session = await sessions.open(metadata={"client": "inspector"})
        assert session.upstream_session_id is None
        assert session.response_mode is None
        learnt = await sessions.record_upstream(
            session.id, content_type="text/event-stream", upstream_session_id="up-123"
        )
        assert learnt.response_mode is ResponseMode.SSE_STREAM
        assert learnt.upstream_session_id == "up-123"
        # Another proxy instance sees both ids and the mode, and can update them in turn.
        seen = await ProxySessions(other).get(session.id)
        assert seen is not None
        assert (seen.id, seen.upstream_session_id) == (session.id, "up-123")
        later = await ProxySessions(other).record_upstream(
            session.id, content_type="application/json"
        )
        assert later.response_mode is ResponseMode.JSON
        assert later.upstream_session_id == "up-123"  # kept when not given
        assert later.metadata == {"client": "inspector"}
        assert await sessions.close(session.id)
        assert await ProxySessions(other).get(session.id) is None
        assert not await sessions.close(session.id)
        with pytest.raises(SessionNotFoundError):
            await sessions.record_upstream(session.id, content_type="application/json")


async def test_idle_proxy_sessions_expire_and_touched_ones_live(tmp_path: Path) -> None:
    now = [1_000.0]
    async with open_store("memory", ttl=10, clock=lambda: now[0]) as store:
        sessions = ProxySessions(store)
        idle = await sessions.open()
        busy = await sessions.open(session_id="busy-session")
        for _ in range(3):
            now[0] += 6
            await sessions.touch(busy.id)
        assert await sessions.get(idle.id) is None
        alive = await sessions.get(busy.id)
        assert alive is not None
        assert alive.version == 4
