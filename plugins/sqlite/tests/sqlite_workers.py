"""Worker processes for the multi-process and crash tests (run as scripts, not collected)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from sessionstore import Session, SessionExistsError, TransportType, open_store


async def bump(session: Session) -> None:
    count = session.metadata["count"]
    await asyncio.sleep(0)
    session.metadata = {"count": count + 1}


async def increment(spec: str, times: int) -> None:
    """``times`` increments of session ``counter`` through modify_session."""
    async with open_store(spec, modify_attempts=100_000, busy_timeout=60) as store:
        for _ in range(times):
            await store.modify_session("counter", bump)


async def write_forever(spec: str, start: int) -> None:
    """Create, update and append, printing ``ack KIND N`` only after each write returned."""
    async with open_store(spec, busy_timeout=60) as store:
        with contextlib.suppress(SessionExistsError):
            await store.create_session(
                Session(id="counter", transport=TransportType.HTTP, metadata={"count": 0})
            )
        counter = await store.get_session("counter")
        n = start
        while True:
            await store.create_session(
                Session(id=f"s{n}", transport=TransportType.SSE, metadata={"n": n, "pad": "x" * n})
            )
            print(f"ack create {n}", flush=True)
            counter.metadata = {"count": counter.metadata["count"] + 1}
            await store.update_session(counter)
            print(f"ack update {counter.version}", flush=True)
            event_id = await store.append_event(f"s{n}", "stream", f"event {n}".encode())
            print(f"ack event {n} {event_id}", flush=True)
            n += 1


async def open_and_create(spec: str, number: int) -> None:
    """Open a (possibly brand-new) database and create session ``opener-NUMBER``."""
    async with open_store(spec, busy_timeout=60) as store:
        await store.create_session(Session(id=f"opener-{number}", transport=TransportType.HTTP))


if __name__ == "__main__":
    command, spec, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
    commands = {"increment": increment, "write": write_forever, "open": open_and_create}
    asyncio.run(commands[command](spec, number))
