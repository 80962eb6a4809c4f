"""Deliberately broken backends for the tests of ``notifications.py``: each gets one promise of
the ``event_watch`` hook wrong.

Each is a real memory backend (see ``delegating.py``) whose watches come from its own
:class:`~sessionstore.WatchHub`, registered process-wide per shared store and namespace the way
a server's pub/sub channels are shared by its clients; the writes that change events notify it,
one of them in the wrong way. ``EXPECTED_FAILURES`` names the contract tests that must catch each.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from delegating import Delegating

from sessionstore import SessionDump, WatchHub, hookimpl
from sessionstore.watching import EventWatch
from sessionstore_memory import MemoryBackend, create_backend

_CHANNELS: dict[str, weakref.WeakSet[WatchHub]] = {}
"""The hubs listening on each "server channel space" (a broken backend's choice of key)."""


async def _no_io(key: str) -> None:
    """Subscribing is being in ``_CHANNELS`` (see _Notifying.event_watch)."""


class _Notifying(Delegating):
    """A memory backend with watches: appends, deletes and loads notify every hub of the same
    shared store and namespace, after the write (what a correct backend does)."""

    def __init__(self, inner: MemoryBackend, space: str) -> None:
        super().__init__(inner)
        self.space = space
        self.hub = self.make_hub()

    def make_hub(self) -> WatchHub:
        return WatchHub(_no_io, _no_io)

    def channel(self) -> str:
        return self.space

    def publish(self, session_id: str) -> None:
        for hub in list(_CHANNELS.get(self.channel(), ())):
            hub.notify(session_id)

    async def changed(self, session_id: str, write: Callable[[], object]) -> object:
        result = write()
        self.publish(session_id)
        return result

    @hookimpl
    async def event_watch(self, session_id: str) -> EventWatch:
        _CHANNELS.setdefault(self.channel(), weakref.WeakSet()).add(self.hub)
        return await self.hub.watch(session_id)

    @hookimpl
    def event_watch_count(self) -> int:
        return self.hub.subscriptions

    @hookimpl
    async def event_append(
        self, session_id: str, stream_id: str, data: bytes | None, retention: int, now_ms: int
    ) -> str:
        return str(
            await self.changed(
                session_id,
                lambda: self.inner.event_append(session_id, stream_id, data, retention, now_ms),
            )
        )

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        return bool(
            await self.changed(session_id, lambda: self.inner.session_delete(session_id, now_ms))
        )

    @hookimpl
    async def session_load(self, dump: SessionDump, retention: int, now_ms: int) -> bool:
        return bool(
            await self.changed(
                dump.record.id, lambda: self.inner.session_load(dump, retention, now_ms)
            )
        )


class NeverNotifies(_Notifying):
    """Offers watches, but its writes publish nothing (the PUBLISH left out of the script)."""

    def publish(self, session_id: str) -> None:
        return None


class NotifiesBeforeWriting(_Notifying):
    """Publishes first and writes in a second round trip: the woken reader finds nothing new."""

    async def changed(self, session_id: str, write: Callable[[], object]) -> object:
        self.publish(session_id)
        await asyncio.sleep(0.2)  # the round trip of the write that follows
        return write()


class NotifiesEveryNamespace(_Notifying):
    """Names its channels by session id alone: a write to ``s`` in one namespace wakes the
    watches of ``s`` in every namespace."""

    def channel(self) -> str:
        return self.space.partition("/")[0]


class ForgetsUnwaitedChanges(_Notifying):
    """Wakes only the waiters waiting at the instant of the notification (a condition
    variable's ``notify_all``): a change made between two waits is lost."""

    def make_hub(self) -> WatchHub:
        return _WaitersOnlyHub(_no_io, _no_io)


class _WaitersOnlyHub(WatchHub):
    waiting: dict[str, int]

    async def watch(self, key: str) -> EventWatch:
        self.__dict__.setdefault("waiting", {})
        return _WaitersOnlyWatch(self, await super().watch(key), key)

    def notify(self, key: str) -> None:
        if self.__dict__.get("waiting", {}).get(key):
            super().notify(key)


class _WaitersOnlyWatch:
    def __init__(self, hub: _WaitersOnlyHub, inner: EventWatch, key: str) -> None:
        self.hub, self.inner, self.key = hub, inner, key

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 -- EventWatch's
        self.hub.waiting[self.key] = self.hub.waiting.get(self.key, 0) + 1
        try:
            return await self.inner.wait(timeout)
        finally:
            self.hub.waiting[self.key] -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class KeepsClosedWatches(_Notifying):
    """Never unsubscribes: every session ever watched stays subscribed (memory grows)."""

    def make_hub(self) -> WatchHub:
        return _KeepingHub(_no_io, _no_io)


class _KeepingHub(WatchHub):
    async def watch(self, key: str) -> EventWatch:
        self.__dict__.setdefault("ever", set()).add(key)
        return await super().watch(key)

    @property
    def subscriptions(self) -> int:
        return len(self.__dict__.get("ever", ()))


def _factory(cls: type[_Notifying]) -> Callable[..., Delegating]:
    """As ``delegating.wrapping_factory``, with the hub's channel space named after the shared
    store and the namespace."""

    def factory(spec: str, *, namespace: str) -> Delegating:
        inner = create_backend(f"memory://teeth-{cls.__name__}", namespace=namespace)
        return cls(inner, f"{cls.__name__}/{namespace}")

    return factory


never_notifies = _factory(NeverNotifies)
notifies_before_writing = _factory(NotifiesBeforeWriting)
notifies_every_namespace = _factory(NotifiesEveryNamespace)
forgets_unwaited_changes = _factory(ForgetsUnwaitedChanges)
keeps_closed_watches = _factory(KeepsClosedWatches)

EXPECTED_FAILURES: dict[str, set[str]] = {
    # Every test of a wake-up fails on it; one is enough to show it (each waits WAKE_BOUND).
    "never_notifies": {"test_watch_wakes_on_changes_through_another_handle"},
    "notifies_before_writing": {"test_watch_wakes_on_changes_through_another_handle"},
    "notifies_every_namespace": {"test_watch_never_hears_another_namespace"},
    "forgets_unwaited_changes": {"test_watch_started_before_a_write_never_misses_it"},
    "keeps_closed_watches": {"test_watches_of_one_session_share_it_and_closed_ones_are_forgotten"},
}
