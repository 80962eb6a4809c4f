"""The main job, in a few lines of output: a shared session store as an MCP proxy uses it.

Run with ``make demo``. It uses the embedded default backend, SQLite, chosen by URL exactly as an
application would, in a file under the project (build/demo.db): run it twice and the second run
finds the first run's sessions. ``python examples/demo.py memory`` runs it on another backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import timedelta

from sessionstore import (
    ConflictError,
    ResponseMode,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    SessionStore,
    TransportType,
    installed_backends,
    open_store,
)

BACKEND = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///build/demo.db"


def say(step: str, text: str) -> None:
    print(f"  {step:<12} {text}")


async def main() -> None:
    backends = installed_backends()
    print(f"sessionstore demo on {BACKEND!r} (installed backends: {', '.join(sorted(backends))})")
    async with open_store(BACKEND, namespace="demo", ttl=timedelta(days=7)) as store:
        earlier = await store.count_sessions()
        runs = await _count_run(store)
        say(
            "this run",
            f"run #{runs}: {earlier} sessions from earlier runs are still here"
            if earlier
            else "run #1: the store is empty",
        )
        created = await store.create_session(
            Session(transport=TransportType.HTTP, upstream_session_id="upstream-7f3a")
        )
        say("create", f"session {created.id} (version {created.version})")

        read = await store.get_session(created.id)
        say(
            "read back",
            f"upstream {read.upstream_session_id}, equal to what was written: {read == created}",
        )

        proxy_a = await store.get_session(created.id)  # two proxy instances read version 1
        proxy_b = await store.get_session(created.id)
        proxy_a.response_mode = ResponseMode.SSE_STREAM
        await store.update_session(proxy_a)
        say(
            "update",
            f"instance A set response_mode={proxy_a.response_mode.value} "
            f"-> version {proxy_a.version}",
        )
        proxy_b.metadata = {"client": "stale writer"}
        try:
            await store.update_session(proxy_b)
        except ConflictError:
            say("stale update", "instance B wrote from version 1: refused with ConflictError")

        others = [
            await store.create_session(Session(transport=TransportType.STDIO)) for _ in range(3)
        ]
        batch = await store.get_sessions_batch([s.id for s in others] + ["no-such-session"])
        for session in batch:
            session.metadata = {"tools": 12}
        await store.update_sessions_batch(batch)
        say(
            "batch",
            f"read {len(batch)} of 4 ids in one call, updated them all at once "
            f"(versions {[s.version for s in batch]})",
        )

        await store.store_last_event_id(created.id, "evt-42")
        say(
            "event id",
            f"last SSE event id {await store.get_last_event_id(created.id)!r}, "
            f"session still at version {(await store.get_session(created.id)).version}",
        )
        say("count", f"{await store.count_sessions()} live sessions, kept in {BACKEND}")

    now = [1_800_000_000.0]
    async with open_store(BACKEND, namespace="demo-expiry", ttl=60, clock=lambda: now[0]) as short:
        await short.clear()
        brief = await short.create_session(Session(transport=TransportType.HTTP))
        now[0] += 61  # a minute passes on the store's clock
        try:
            await short.get_session(brief.id)
        except SessionNotFoundError:
            say(
                "expiry",
                f"session idle for 61 s with ttl=60 s is gone "
                f"(count {await short.count_sessions()}, purged {await short.purge_expired()})",
            )


async def _count_run(store: SessionStore) -> int:
    """Count the demo's runs in a session of its own: a read-modify-write that retries."""

    def bump(session: Session) -> None:
        session.metadata = {"runs": session.metadata.get("runs", 0) + 1}

    with contextlib.suppress(SessionExistsError):
        await store.create_session(Session(id="demo-runs", transport=TransportType.STDIO))
    return int((await store.modify_session("demo-runs", bump)).metadata["runs"])


if __name__ == "__main__":
    asyncio.run(main())
