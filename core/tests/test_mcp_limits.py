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


async def test_a_full_ledger_is_pruned_at_most_once_per_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A principal at its cap knocking again and again costs one record read per knock, not a
    batch read of its sessions: one prune per FULL_HOLD. A place given back here ends the hold."""
    monkeypatch.setattr(limits_module, "FULL_HOLD", 3600.0)
    async with (
        open_store("memory://prune-hold", namespace="app") as app,
        app.sibling("app.mcp-layer", ttl=None) as own,
    ):
        limits = SessionLimits(own, app, max_sessions=None, max_sessions_per_principal=2)
        for session_id in ("s1", "s2"):
            assert (await limits.admit(session_id, "p")).admitted
            await app.create_session(Session(id=session_id, transport=TransportType.HTTP))
        batches: list[int] = []
        batch_read = app.get_sessions_batch

        async def counted(session_ids: list[str]) -> list[Session]:
            batches.append(len(session_ids))
            return await batch_read(session_ids)

        monkeypatch.setattr(app, "get_sessions_batch", counted)
        for n in range(5):
            assert not (await limits.admit(f"knock-{n}", "p")).admitted
        assert batches == [2]
        await limits.release("s1", "p", None)  # given back here: seen at once, no prune
        assert (await limits.admit("s3", "p")).admitted
        assert batches == [2]
        # Without a hold, every knock on the full ledger prunes it (the test's own control).
        monkeypatch.setattr(limits_module, "FULL_HOLD", 0.0)
        assert not (await limits.admit("knock-a", "p")).admitted
        assert not (await limits.admit("knock-b", "p")).admitted
        assert batches == [2, 2, 2]


async def test_the_prune_holds_an_instance_remembers_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits_module, "FULL_HOLD", 3600.0)
    monkeypatch.setattr(limits_module, "_MAX_HOLDS", 3)
    async with (
        open_store("memory://prune-bound", namespace="app") as app,
        app.sibling("app.mcp-layer", ttl=None) as own,
    ):
        limits = SessionLimits(own, app, max_sessions=None, max_sessions_per_principal=1)
        for n in range(8):
            assert (await limits.admit(f"s{n}", f"p{n}")).admitted
            await app.create_session(Session(id=f"s{n}", transport=TransportType.HTTP))
            assert not (await limits.admit(f"knock-{n}", f"p{n}")).admitted
            assert len(limits._prune_after) <= 3
        assert list(limits._prune_after) == [
            "mcp-limit.principal.p5",
            "mcp-limit.principal.p6",
            "mcp-limit.principal.p7",
        ]


async def test_a_principal_without_places_leaves_no_ledger() -> None:
    """The layer's store keeps no record per principal ever seen: the last place given back
    deletes the principal's ledger (the fleet's few shards stay)."""
    async with (
        open_store("memory://empty-ledgers", namespace="app") as app,
        app.sibling("app.mcp-layer", ttl=None) as own,
    ):
        limits = SessionLimits(own, app, max_sessions=10, max_sessions_per_principal=2)
        admitted = {}
        for principal in ("p", "q"):
            for n in range(2):
                admission = await limits.admit(f"{principal}{n}", principal)
                assert admission.admitted
                admitted[f"{principal}{n}"] = (principal, admission.shard)
        assert await own.count_sessions() == 3  # two principals, one shard
        await limits.release("p0", *admitted["p0"])
        assert await own.count_sessions() == 3  # p still holds p1
        for session_id in ("p1", "q0", "q1"):
            await limits.release(session_id, *admitted[session_id])
        assert [ledger.id for ledger in await own.list_sessions()] == ["mcp-limit.all.0"]
        assert (await limits.admit("p2", "p")).admitted  # a ledger made afresh
        assert await own.count_sessions() == 2


async def test_a_place_lost_to_a_racing_ledger_delete_is_taken_again_on_confirm() -> None:
    """The store has no compare-and-set delete: a reservation written between another
    instance's read of the principal's last place and its delete goes with the ledger. The
    confirmation after the session's record exists takes it again, however fast the opening."""
    async with (
        open_store("memory://racing-delete", namespace="app") as app,
        app.sibling("app.mcp-layer", ttl=None) as own,
    ):
        limits = SessionLimits(own, app, max_sessions=None, max_sessions_per_principal=1)
        x = await limits.admit("session-x", "p")
        assert x.admitted
        await own.delete_session("mcp-limit.principal.p")  # the racing delete lands late
        await app.create_session(Session(id="session-x", transport=TransportType.HTTP))
        assert await limits.confirm(x, "session-x", "p")  # fresh, and checked all the same
        held = (await own.get_session("mcp-limit.principal.p")).metadata["held"]
        assert list(held) == ["session-x"]
        assert not (await limits.admit("session-y", "p")).admitted  # the cap holds
