"""The :class:`~sessionstore.WatchHub` shared by backends: a watch whose close is cancelled
(a client gone while its follower closes its watch) is still forgotten and its key still
unsubscribed, and a key watched again meanwhile keeps its subscription.

Subscribe and unsubscribe are plain recording coroutines: the hub's bookkeeping is what is
tested. No test sleeps: each waits on an event with a generous bound.
"""

from __future__ import annotations

import asyncio

from sessionstore import WatchHub

BOUND = 10.0
"""Seconds an awaited step may take: a test fails only when it never comes."""


class _Listener:
    """Records subscriptions; subscribing ``slow`` waits for :attr:`gate`, holding the hub's
    lock meanwhile."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.subscribed: set[str] = set()
        self.unsubscribed = asyncio.Event()

    async def subscribe(self, key: str) -> None:
        if key == "slow":
            await self.gate.wait()
        self.subscribed.add(key)

    async def unsubscribe(self, key: str) -> None:
        self.subscribed.discard(key)
        self.unsubscribed.set()


async def test_a_cancelled_close_still_forgets_the_watch_and_unsubscribes() -> None:
    listener = _Listener()
    hub = WatchHub(listener.subscribe, listener.unsubscribe)
    watch = await hub.watch("a")
    slow = asyncio.create_task(hub.watch("slow"))  # holds the hub's lock until the gate opens
    await asyncio.sleep(0)  # the slow subscription starts: registered, then the gate
    assert hub.keys() == ["a", "slow"]
    closing = asyncio.create_task(watch.aclose())
    await asyncio.sleep(0)  # the close starts, and waits behind the slow subscription
    closing.cancel()  # the client went away
    await asyncio.gather(closing, return_exceptions=True)
    assert hub.keys() == ["slow"], "a watch whose close was cancelled stays registered"
    listener.gate.set()
    await slow
    await asyncio.wait_for(listener.unsubscribed.wait(), BOUND)
    assert "a" not in listener.subscribed
    assert hub.keys() == ["slow"]
    assert hub.subscriptions == 1
    await hub.close()


async def test_a_key_watched_again_before_its_unsubscription_ran_stays_subscribed() -> None:
    listener = _Listener()
    hub = WatchHub(listener.subscribe, listener.unsubscribe)
    watch = await hub.watch("a")
    slow = asyncio.create_task(hub.watch("slow"))
    await asyncio.sleep(0)  # the slow subscription starts: registered, then the gate
    assert hub.keys() == ["a", "slow"]
    closing = asyncio.create_task(watch.aclose())  # its unsubscription waits for the lock
    again = asyncio.create_task(hub.watch("a"))
    await asyncio.sleep(0)
    listener.gate.set()
    await asyncio.wait_for(asyncio.gather(slow, closing, again), BOUND)
    assert sorted(hub.keys()) == ["a", "slow"]
    assert "a" in listener.subscribed, "the old watch's unsubscription undid the new one's"
    await hub.close()
