"""The fallback middleware in front of a real redis-server that is stopped and started again.

Where a test needs a reply held back, lost or slowed down, the real Redis backend is wrapped
(``Tweaked``): every command still runs on the real server, only its answer is handled differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from redis_servers import RedisServer, ServerFactory

from sessionstore import (
    Session,
    StoreUnavailableError,
    TransportType,
    hookimpl,
    open_store,
)
from sessionstore.middleware import ASYNC_HOOKS
from sessionstore_redis.backend import RedisBackend, create_backend

WAIT = 10.0  # upper bound, in seconds, on waiting for an event that must happen


def session(session_id: str, **metadata: object) -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, metadata=dict(metadata))


def increment(s: Session) -> None:
    s.metadata["n"] = s.metadata.get("n", 0) + 1


class Parked:
    """A reply held back: the command ran on the server; the answer waits for ``release``."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()


class Tweaked:
    """The real Redis backend with switches: ``park(hook)`` holds the next answer of a hook,
    ``lose(hook)`` turns the next answer of a hook into StoreUnavailableError (after the
    command ran), ``latency`` delays every call (a server answering slowly)."""

    def __init__(self, inner: RedisBackend) -> None:
        self.inner = inner
        self.parked: dict[str, Parked] = {}
        self.losing: set[str] = set()
        self.latency = 0.0

    def park(self, hook: str) -> Parked:
        parked = self.parked[hook] = Parked()
        return parked

    def lose(self, hook: str) -> None:
        self.losing.add(hook)

    @hookimpl
    def store_capabilities(self) -> Mapping[str, str]:
        return self.inner.store_capabilities()


def _tweakable(name: str) -> Any:
    base = getattr(RedisBackend, name)

    @functools.wraps(base)  # pluggy reads the hook's argument names through __wrapped__
    async def hook(self: Tweaked, *args: Any) -> Any:
        if self.latency:
            await asyncio.sleep(self.latency)
        result = await getattr(self.inner, name)(*args)
        parked = self.parked.pop(name, None)
        if parked is not None:
            parked.reached.set()
            await parked.release.wait()
        if name in self.losing:
            self.losing.discard(name)
            raise StoreUnavailableError(f"{name}: timed out waiting for the reply")
        return result

    return hookimpl(hook)


for _name in ASYNC_HOOKS:
    setattr(Tweaked, _name, _tweakable(_name))


def tweaked(url: str, **options: Any) -> tuple[Callable[..., Tweaked], list[Tweaked]]:
    """A backend factory for ``open_store`` making Tweaked Redis backends on ``url``, and the
    list the backends it made go into."""
    made: list[Tweaked] = []

    def factory(spec: str, *, namespace: str) -> Tweaked:
        backend = Tweaked(create_backend(url, namespace=namespace, **options))
        made.append(backend)
        return backend

    return factory, made


async def reconciled(store: Any, breaker_time: list[float]) -> None:
    """Probe until reconciliation has closed the circuit: the first command after a restart
    may still meet a connection of the stopped server, which reopens the circuit."""
    for _ in range(5):
        breaker_time[0] += store.fallback.probe_after
        with contextlib.suppress(StoreUnavailableError):
            await store.get_sessions_batch(["nobody"])
        if await asyncio.wait_for(store.fallback.wait_reconciled(), WAIT) == "closed":
            return
    raise AssertionError(f"still {store.fallback.state} after 5 probes")


def persistent(make_redis_server: ServerFactory) -> RedisServer:
    # Append-only persistence, so a stopped and restarted server still holds what it acknowledged.
    return make_redis_server(config={"appendonly": "yes", "appendfsync": "always"})


async def test_an_outage_is_served_from_memory_and_reconciled_without_overwriting(
    make_redis_server: ServerFactory,
) -> None:
    server = persistent(make_redis_server)
    breaker_time = [0.0]
    options = {"failures": 2, "probe_after": 5.0, "clock": lambda: breaker_time[0]}
    async with open_store(
        server.url, timeout=1, fallback="memory", fallback_options=options
    ) as store:
        assert store.fallback is not None
        known = await store.create_session(session("known", n=0))
        other = await store.create_session(session("other", by="us"))
        assert store.fallback.state == "closed"

        server.stop()
        with pytest.raises(StoreUnavailableError):  # one failure: below the threshold
            await store.get_session("known")
        known = await store.get_session("known")  # the second opens the circuit: from memory
        assert store.fallback.state == "open"
        assert known.metadata == {"n": 0}
        for n in (1, 2):
            known.metadata = {"n": n}
            known = await store.update_session(known)
        assert known.version == 3
        other.metadata = {"by": "us, during the outage"}
        await store.update_session(other)
        await store.create_session(session("during"))
        await store.store_last_event_id("during", "ev-7")
        with pytest.raises(StoreUnavailableError, match="fallback"):
            await store.count_sessions()

        server.restart()
        async with open_store(server.url) as elsewhere:  # another instance, never cut off
            theirs = await elsewhere.get_session("other")
            theirs.metadata = {"by": "another instance"}
            await elsewhere.update_session(theirs)

        breaker_time[0] += 6  # past probe_after: the next operation starts reconciliation
        assert (await store.get_session("known")).version == 3
        assert await asyncio.wait_for(store.fallback.wait_reconciled(), WAIT) == "closed"
        assert [(c.session_id, c.what) for c in store.fallback.conflicts] == [("other", "update")]

    async with open_store(server.url) as primary:
        reconciled = await primary.get_session("known")
        assert (reconciled.version, reconciled.metadata) == (3, {"n": 2})
        assert (await primary.get_session("other")).metadata == {"by": "another instance"}
        assert (await primary.get_session("during")).version == 1
        assert await primary.get_last_event_id("during") == "ev-7"
        assert await primary.count_sessions() == 3


async def test_a_late_read_never_rolls_back_what_an_outage_serves(
    make_redis_server: ServerFactory,
) -> None:
    """Issue 14, item 1, on a real server: a read's reply handled after a later update's."""
    server = persistent(make_redis_server)
    breaker_time = [0.0]
    options = {"failures": 1, "probe_after": 5.0, "clock": lambda: breaker_time[0]}
    factory, made = tweaked(server.url, timeout=1)
    async with open_store(factory, fallback="memory", fallback_options=options) as store:
        assert store.fallback is not None
        await store.create_session(session("s", n=0))
        parked = made[0].park("session_get")
        reader = asyncio.create_task(store.get_session("s"))
        await asyncio.wait_for(parked.reached.wait(), WAIT)  # GET answered version 1; held
        await store.modify_session("s", increment)  # acknowledged: version 2, n == 1
        parked.release.set()
        assert (await reader).version == 1  # concurrent with the update: either is right

        server.stop()
        served = await store.get_session("s")  # trips the breaker: served from the copy
        assert store.fallback.state == "open"
        assert (served.version, served.metadata) == (2, {"n": 1})
        await store.modify_session("s", increment)  # acknowledged from memory: version 3

        server.restart()
        await reconciled(store, breaker_time)
        assert store.fallback.conflicts == []

    async with open_store(server.url) as primary:
        stored = await primary.get_session("s")
        assert (stored.version, stored.metadata) == (3, {"n": 2})  # both increments


async def test_a_lost_reply_followed_by_outage_writes_is_recognised(
    make_redis_server: ServerFactory,
) -> None:
    """Issue 14, item 2, on a real server: the update ran on Redis, its answer was lost."""
    server = persistent(make_redis_server)
    breaker_time = [0.0]
    options = {"failures": 1, "probe_after": 5.0, "clock": lambda: breaker_time[0]}
    factory, made = tweaked(server.url, timeout=1)
    async with open_store(factory, fallback="memory", fallback_options=options) as store:
        assert store.fallback is not None
        s = await store.create_session(session("s", n=0))
        made[0].lose("session_update")
        increment(s)
        s = await store.update_session(s)  # applied by Redis, answer lost: served again
        assert store.fallback.state == "open"
        server.stop()
        for _ in range(3):
            increment(s)
            s = await store.update_session(s)
        server.restart()
        await reconciled(store, breaker_time)
        assert store.fallback.conflicts == []

    async with open_store(server.url) as primary:
        stored = await primary.get_session("s")
        assert (stored.version, stored.metadata) == (5, {"n": 4})


SESSIONS = 200
LATENCY = 0.02  # seconds the slow server adds to every call
TIMEOUT = 0.5  # the store's timeout for each command
MARGIN = 1.0  # seconds of slack for a loaded machine


async def test_calls_stay_within_their_timeout_while_reconciliation_runs(
    make_redis_server: ServerFactory,
) -> None:
    """Issue 14, item 3, on a real server that comes back slowly."""
    server = persistent(make_redis_server)
    breaker_time = [0.0]
    options = {"failures": 1, "probe_after": 5.0, "clock": lambda: breaker_time[0]}
    factory, made = tweaked(server.url, timeout=TIMEOUT)
    async with open_store(factory, fallback="memory", fallback_options=options) as store:
        assert store.fallback is not None
        held = [await store.create_session(session(f"s{i}", n=0)) for i in range(SESSIONS)]
        await store.create_session(session("untouched"))
        server.stop()
        for _ in range(2):
            for index, s in enumerate(held):
                increment(s)
                held[index] = await store.update_session(s)
        server.restart()
        made[0].latency = LATENCY
        breaker_time[0] += 6

        during, modified = 0, set()
        started = time.monotonic()
        await store.get_session("s0")  # starts reconciliation
        slowest = time.monotonic() - started
        while store.fallback.state == "half-open":
            index = during % SESSIONS
            for call in (
                store.get_session(f"s{index}"),  # from memory until reconciled, then Redis
                store.get_session("untouched"),  # from Redis
                store.modify_session(f"s{index}", increment),
            ):
                began = time.monotonic()
                await call
                slowest = max(slowest, time.monotonic() - began)
            modified.add(index)
            during += 1
            assert time.monotonic() - started < 60, "reconciliation did not finish"
        reconciliation = time.monotonic() - started
        assert await store.fallback.wait_reconciled() == "closed"
        assert store.fallback.conflicts == []
        print(
            f"\n{SESSIONS} sessions reconciled in {reconciliation:.2f}s with {LATENCY * 1000:.0f} "
            f"ms added per call; {during * 3} calls meanwhile, the slowest {slowest * 1000:.0f} ms"
        )
        assert slowest < TIMEOUT + MARGIN
        assert during >= 5  # calls were made while reconciliation ran

    async with open_store(server.url) as primary:
        for i in range(SESSIONS):
            stored = await primary.get_session(f"s{i}")
            expected = 3 if i in modified else 2
            assert stored.metadata == {"n": expected}, i
            assert stored.version == expected + 1
