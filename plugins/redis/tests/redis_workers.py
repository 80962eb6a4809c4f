"""Worker processes for the multi-process tests (run as scripts, not collected)."""

from __future__ import annotations

import asyncio
import sys

from sessionstore import Session, open_store


async def bump(session: Session) -> None:
    count = session.metadata["count"]
    await asyncio.sleep(0)  # let the other tasks of this process interleave
    session.metadata = {"count": count + 1}


async def increment(spec: str, namespace: str, times: int) -> None:
    """``times`` increments of session ``counter``, five tasks at a time, via modify_session."""
    async with open_store(spec, namespace=namespace, modify_attempts=100_000) as store:

        async def task(share: int) -> None:
            for _ in range(share):
                await store.modify_session("counter", bump)

        shares = [times // 5 + (1 if n < times % 5 else 0) for n in range(5)]
        await asyncio.gather(*(task(share) for share in shares))


if __name__ == "__main__":
    command, spec, namespace, number = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    asyncio.run({"increment": increment}[command](spec, namespace, number))
