"""``SessionLimits`` on their own (two memory stores standing for the layer's namespace and the
application's), and the checks of the layer's bound options. The limits across real instances,
on SQLite and Redis, are ``core/tests/mcp/test_mcp_bounds.py``."""

from __future__ import annotations

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'sessionstore[mcp]')")

from sessionstore import Session, TransportType, open_store
from sessionstore.mcp import McpSessions, SessionLimits
from sessionstore.mcp import limits as limits_module
from sessionstore.mcp.limits import MAX_PER_PRINCIPAL, MAX_SESSIONS, Admission


async def test_a_slow_creation_that_lost_its_place_is_not_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """X reserves the principal's only place; its record is slow to come, a prune frees the
    place and Y takes it: once X's record exists, X is not confirmed (no overshoot)."""
    monkeypatch.setattr(limits_module, "RESERVATION_GRACE", 0.0)
    async with (
        open_store("memory://slow", namespace="app") as app,
        app.sibling("app.mcp-layer", ttl=None) as own,
    ):
        limits = SessionLimits(own, app, max_sessions=None, max_sessions_per_principal=1)
        x = await limits.admit("session-x", "p")
        assert x.admitted
        y = await limits.admit("session-y", "p")  # the prune found no record of x
        assert y.admitted
        for session_id in ("session-x", "session-y"):
            await app.create_session(Session(id=session_id, transport=TransportType.HTTP))
        slow = Admission(True, x.shard, at=x.at - 3600)
        assert not await limits.confirm(slow, "session-x", "p")
        assert await limits.confirm(Admission(True, y.shard, at=0.0), "session-y", "p")
        assert await limits.confirm(y, "session-y", "p")  # fresh: nothing to check
        assert not (await limits.admit("session-z", "p")).admitted


async def test_the_fleet_is_counted_over_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "SHARD_SIZE", 10)  # 25 places: 3 shards
    async with (
        open_store("memory://shards", namespace="app") as app,
        app.sibling("app.mcp-layer", ttl=None) as own,
    ):
        limits = SessionLimits(own, app, max_sessions=25, max_sessions_per_principal=None)
        assert limits._caps == [9, 8, 8]
        admitted = []
        for n in range(25):
            admission = await limits.admit(f"s{n}", "p")
            assert admission.admitted
            assert admission.shard is not None
            admitted.append(admission.shard)
            await app.create_session(Session(id=f"s{n}", transport=TransportType.HTTP))
        assert sorted(set(admitted)) == [0, 1, 2]
        assert not (await limits.admit("one-more", "p")).admitted
        await limits.release("s7", "p", admitted[7])
        await app.delete_session("s7")
        assert (await limits.admit("one-more", "p")).admitted


def test_bound_options_are_checked() -> None:
    for bad in (0, -1, 1.5, True, MAX_SESSIONS + 1):
        with pytest.raises(ValueError, match="max_sessions must be None or an int"):
            McpSessions("memory", max_sessions=bad)
    with pytest.raises(ValueError, match="max_sessions_per_principal"):
        McpSessions("memory", max_sessions_per_principal=MAX_PER_PRINCIPAL + 1)
    for bad in (255, 4 * 1024 * 1024 + 1, "64k"):
        with pytest.raises(ValueError, match="max_initialize_bytes"):
            McpSessions("memory", max_initialize_bytes=bad)  # type: ignore[arg-type]
    sessions = McpSessions("memory", max_sessions=10, max_sessions_per_principal=2)
    assert (sessions.max_sessions, sessions.max_sessions_per_principal) == (10, 2)
    assert sessions.limits is None  # until it starts
