"""Event notifications: the optional ``event_watch`` hook (``Capability.EVENT_NOTIFICATIONS``).

A watch of a session wakes when its events change through any handle or process, only once the
change is visible, never misses a change made after it started, is shared per session and
forgotten once closed, and never hears another namespace. A backend without the hook skips
these tests with the core's reason (the store polls for it).

No test times how fast a wake-up comes: each waits for it with a generous bound
(:data:`WAKE_BOUND`); the speed is measured in ``bench/bench_push.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from sessionstore import Capability, EventWatch, SessionStore

from .common import new_session
from .processes import HERE, run_in_processes
from .target import ContractTarget

__all__ = ["NotificationContract", "WAKE_BOUND"]

WAKE_BOUND = 10.0
"""Seconds a watch may take to wake after a change: far beyond any working backend's delay, so
a test fails only when the notification never comes."""


async def _assert_wakes(watch: EventWatch, what: str) -> None:
    assert await watch.wait(WAKE_BOUND), f"the watch did not wake within {WAKE_BOUND} s of {what}"


async def _replayed(store: SessionStore, after: str) -> list[bytes | None]:
    _, events = await store.replay_events_after(after)
    return [e.data for e in events]


class NotificationContract:
    """The promises of the ``event_watch`` hook."""

    def test_watch_wakes_on_changes_through_another_handle(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """An append, a delete and a load of the session through another handle each wake a
        watch of it, and each is visible to a read made as soon as the watch woke."""
        target = sessionstore_target
        target.require(Capability.EVENT_NOTIFICATIONS)
        target.require(Capability.SHARED_HANDLES)

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            first = await store.append_event("s", "st", b"first")
            async with (
                target.open(namespace=store.namespace) as other,
                store.watch_events("s") as watch,
            ):
                # Each write runs as the other instance's task: the reader reads as soon as
                # it is woken, whether or not the write's call has returned yet.
                writing = asyncio.create_task(other.append_event("s", "st", b"second"))
                await _assert_wakes(watch, "an append through another handle")
                assert await _replayed(store, first) == [b"second"], (
                    "the watch woke before the append it announced was visible"
                )
                await writing
                dump = await store.dump_session("s")
                deleting = asyncio.create_task(other.delete_session("s"))
                await _assert_wakes(watch, "a delete through another handle")
                assert await store.get_sessions_batch(["s"]) == [], (
                    "the watch woke before the delete it announced was visible"
                )
                await deleting
                loading = asyncio.create_task(other.load_session(dump))
                await _assert_wakes(watch, "a load through another handle")
                assert await store.get_sessions_batch(["s"]) != [], (
                    "the watch woke before the load it announced was visible"
                )
                await loading
                assert (await store.dump_session("s")).streams == dump.streams

        target.run(scenario)

    def test_watch_started_before_a_write_never_misses_it(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """A change made after the watch started, while nobody waits, is not lost: the next
        wait returns at once (here: within the bound). Through the same handle too."""
        target = sessionstore_target
        target.require(Capability.EVENT_NOTIFICATIONS)

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            async with store.watch_events("s") as watch:
                for n in range(3):  # each after the previous wake-up was consumed
                    await store.append_event("s", "st", f"e{n}".encode())
                    await _assert_wakes(watch, f"append {n}, made before the wait")

        target.run(scenario)

    def test_watches_of_one_session_share_it_and_closed_ones_are_forgotten(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """Every watch of the session wakes; many watches of one session hold one subscription;
        a closed watch is forgotten, and the session's subscription goes with its last watch."""
        target = sessionstore_target
        target.require(Capability.EVENT_NOTIFICATIONS)

        async def scenario(store: SessionStore) -> None:
            for session_id in ("a", "b"):
                await store.create_session(new_session(session_id))
            async with (
                store.watch_events("a") as a1,
                store.watch_events("a") as a2,
                store.watch_events("b") as b1,
            ):
                counted = store.watched_sessions
                if counted is None:
                    pytest.skip("the backend does not count its subscriptions (event_watch_count)")
                assert counted == 2, f"3 watches of 2 sessions hold {counted} subscriptions"
                await store.append_event("a", "st", b"x")
                await _assert_wakes(a1, "an append (first watch of the session)")
                await _assert_wakes(a2, "an append (second watch of the session)")
                await store.append_event("b", "st", b"x")
                await _assert_wakes(b1, "an append")
                async with store.watch_events("a"):
                    pass
                assert store.watched_sessions == 2, "a closed watch changed the subscriptions"
            assert store.watched_sessions == 0, (
                f"every watch is closed, yet {store.watched_sessions} subscriptions are held"
            )
            for round_ in range(50):  # watches opened and closed: nothing accumulates
                async with store.watch_events(f"gone-{round_}"):
                    pass
            assert store.watched_sessions == 0, (
                f"50 watches opened and closed left {store.watched_sessions} subscriptions"
            )

        target.run(scenario)

    def test_watch_never_hears_another_namespace(self, sessionstore_target: ContractTarget) -> None:
        """A change to the same session id in another namespace does not wake the watch: a
        change in its own namespace made afterwards wakes another watch, and by then the first
        has heard nothing (one store's notifications arrive in order)."""
        target = sessionstore_target
        target.require(Capability.EVENT_NOTIFICATIONS)
        target.require(Capability.SHARED_HANDLES)

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            await store.create_session(new_session("marker"))
            async with target.open() as elsewhere:
                await elsewhere.create_session(new_session("s"))
                try:
                    async with (
                        store.watch_events("s") as watch,
                        store.watch_events("marker") as marker,
                    ):
                        await elsewhere.append_event("s", "st", b"other namespace")
                        await elsewhere.delete_session("s")
                        await store.append_event("marker", "st", b"own namespace")
                        await _assert_wakes(marker, "an append in its own namespace")
                        assert not await watch.wait(0), (
                            "a change to session 's' in another namespace woke the watch of 's'"
                        )
                finally:
                    await elsewhere.clear()

        target.run(scenario)

    def test_watch_wakes_on_an_append_in_another_process(
        self, sessionstore_target: ContractTarget
    ) -> None:
        """An append by another OS process wakes a watch started before it."""
        target = sessionstore_target
        target.require(Capability.EVENT_NOTIFICATIONS)
        target.require(Capability.SHARED_PROCESSES)

        async def scenario(store: SessionStore) -> None:
            await store.create_session(new_session("s"))
            first = await store.append_event("s", "st", None)
            async with store.watch_events("s") as watch:
                await asyncio.to_thread(
                    run_in_processes,
                    target,
                    store.namespace,
                    f"{HERE}:append_scenario",
                    [{"session_id": "s", "stream_id": "st", "tag": "p", "count": 1}],
                )
                await _assert_wakes(watch, "an append by another process")
                assert await _replayed(store, first) == [b"p/0"]

        target.run(scenario)
