"""The memory backend's own behaviour: specs, sharing, the max_sessions bound, threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from sessionstore import (
    Capability,
    ConfigurationError,
    ConflictError,
    Session,
    SessionExistsError,
    StoreFullError,
    TransportType,
    installed_backends,
    open_store,
)
from sessionstore_contract import ManualClock


def _session(session_id: str) -> Session:
    return Session(id=session_id, transport=TransportType.STDIO)


def test_registered_through_its_entry_point() -> None:
    info = installed_backends()["memory"]
    assert info.distribution == "sessionstore-memory"
    assert info.value == "sessionstore_memory:create_backend"


@pytest.mark.parametrize("spec", ["memory://", "memory://name?x=1", "memory://name#frag", "mem"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(spec)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True])
def test_bad_max_sessions_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_sessions"):
        open_store("memory", max_sessions=bad)


def test_private_stores_share_nothing_and_say_so() -> None:
    async def scenario() -> None:
        async with open_store("memory") as first, open_store("memory") as second:
            await first.create_session(_session("only-in-first"))
            assert await second.count_sessions() == 0
            assert Capability.SHARED_HANDLES in first.capabilities

    asyncio.run(scenario())


def test_named_stores_are_shared_within_the_process() -> None:
    async def scenario() -> None:
        async with (
            open_store("memory://shared-test", namespace="n1") as first,
            open_store("memory://shared-test", namespace="n1") as second,
            open_store("memory://shared-test", namespace="n2") as other_namespace,
            open_store("memory://another-name", namespace="n1") as other_store,
        ):
            created = await first.create_session(_session("s"))
            assert await second.get_session("s") == created
            assert await other_namespace.count_sessions() == 0
            assert await other_store.count_sessions() == 0
            assert set(first.capabilities) == {Capability.SHARED_PROCESSES, Capability.DURABLE}
            await first.clear()
            assert await second.count_sessions() == 0

    asyncio.run(scenario())


def test_max_sessions_refuses_rather_than_dropping_live_sessions() -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with open_store("memory", max_sessions=3, ttl=10, clock=clock) as store:
            for n in range(3):
                await store.create_session(_session(f"s{n}"))
            with pytest.raises(StoreFullError, match="max_sessions=3"):
                await store.create_session(_session("s3"))
            assert sorted(s.id for s in await store.list_sessions()) == ["s0", "s1", "s2"]
            clock.advance(5)
            await store.update_session(await store.get_session("s0"))
            clock.advance(6)  # s1 and s2 expire; s0 was refreshed
            await store.create_session(_session("s3"))
            await store.create_session(_session("s4"))
            with pytest.raises(StoreFullError):
                await store.create_session(_session("s5"))
            assert sorted(s.id for s in await store.list_sessions()) == ["s0", "s3", "s4"]
            await store.delete_session("s3")
            await store.create_session(_session("s5"))

    asyncio.run(scenario())


def test_threads_each_with_their_own_loop_lose_no_increment() -> None:
    """The lock makes every operation atomic for threads too, not only for tasks."""

    async def setup() -> None:
        async with open_store("memory://threads", namespace="t") as store:
            await store.create_session(Session(id="n", transport="http", metadata={"n": 0}))

    asyncio.run(setup())

    async def bump(session: Session) -> None:
        value = session.metadata["n"]
        await asyncio.sleep(0)
        session.metadata = {"n": value + 1}

    def worker() -> None:
        async def run() -> None:
            async with open_store("memory://threads", namespace="t", modify_attempts=10_000) as s:
                for _ in range(200):
                    await s.modify_session("n", bump)

        asyncio.run(run())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def check() -> int:
        async with open_store("memory://threads", namespace="t") as store:
            value: int = (await store.get_session("n")).metadata["n"]
            await store.clear()
            return value

    assert asyncio.run(check()) == 800


def test_memory_offers_no_raw_driver_read() -> None:
    async def scenario() -> None:
        async with open_store("memory") as store:
            assert store.offers_raw_get is False
            with pytest.raises(ConfigurationError, match="no raw driver read"):
                await store.raw_get("anything")

    asyncio.run(scenario())


class _CountingLock:
    """A backend's lock that counts how often it is taken."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.taken = 0

    def acquire(self, *args: Any) -> bool:
        self.taken += 1
        return bool(self._lock.acquire(*args))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


async def _creates_and_updates(store: Any) -> _CountingLock:
    lock = store._backend._lock = _CountingLock(store._backend._lock)
    session = await store.create_session(_session("locked"))
    await store.update_session(session)
    await store.update_session(await store.get_session("locked"))
    return lock


def test_a_named_store_takes_its_lock_for_every_create_and_update() -> None:
    """Stores in any thread share a named store's namespace: compare-and-set stays atomic across
    threads only if every write checks and writes under the namespace's lock."""

    async def scenario() -> int:
        async with open_store("memory://locking", namespace="n") as store:
            taken = (await _creates_and_updates(store)).taken
            await store.clear()
            return taken

    assert asyncio.run(scenario()) == 3


def test_a_private_store_writes_new_and_current_sessions_without_its_lock() -> None:
    """A private store's hooks only run in the one loop thread of the one store built on it, one
    at a time, so its common create and update skip the lock; every other case takes it."""

    async def scenario() -> None:
        async with open_store("memory") as store:
            assert (await _creates_and_updates(store)).taken == 0
            lock = store._backend._lock  # type: ignore[attr-defined]
            with pytest.raises(SessionExistsError):
                await store.create_session(_session("locked"))
            stale = await store.get_session("locked")
            await store.update_session(await store.get_session("locked"))
            with pytest.raises(ConflictError):
                await store.update_session(stale)
            assert lock.taken == 2

    asyncio.run(scenario())
