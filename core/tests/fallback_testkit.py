"""Helpers of the fallback tests: a primary whose storage can be switched off, whose replies can be
held back or lost, and a breaker clock moved by hand.

The primary is a real backend (:class:`core_testkit.DictBackend`) with switches around each hook;
nothing is mocked.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from core_testkit import DictBackend, factory_of

from sessionstore import (
    FallbackMiddleware,
    Session,
    SessionStore,
    StoreUnavailableError,
    hookimpl,
    open_store,
)
from sessionstore.middleware import ASYNC_HOOKS

PASSWORD = "s3cret-pw"

WAIT = 10.0
"""Upper bound, in seconds, on waiting for an event that must happen (a loaded machine is slow;
a correct run never comes near it)."""


class Parked:
    """A reply held back: the hook has run on the storage and waits for ``release`` to answer."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), WAIT)


class FlakyBackend(DictBackend):
    """A DictBackend whose storage can be switched off, whose replies can be held or lost.

    * ``down``: every hook raises StoreUnavailableError (with a URL holding a password in its
      message, as a careless driver would). ``down_after = n`` lets n more calls through, then
      sets ``down``.
    * ``gate``: when set, holds every call before it runs until it is set; ``hook_gates[name]``
      does the same for one hook.
    * ``park(name)``: the next call of that hook runs on the storage, then waits for the returned
      :class:`Parked`'s ``release`` before answering (a reply that arrives late).
    * ``lose(name, n)``: the next ``n`` calls of that hook run on the storage, then raise
      StoreUnavailableError (a reply lost on the way back).
    * ``latency``: seconds every call waits before it runs (a primary that answers slowly).

    ``refused`` lists the hooks called while down; ``calls`` (from DictBackend) those that reached
    the storage.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.down_after: int | None = None
        self.gate: asyncio.Event | None = None
        self.hook_gates: dict[str, asyncio.Event] = {}
        self.parked: dict[str, Parked] = {}
        self.losing: dict[str, int] = {}
        self.latency = 0.0
        self.refused: list[str] = []

    def reachable(self, hook: str) -> None:
        if self.down_after is not None:
            if self.down_after == 0:
                self.down, self.down_after = True, None
            else:
                self.down_after -= 1
        if self.down:
            self.refused.append(hook)
            raise StoreUnavailableError(
                f"{hook}: connection refused by redis://app:{PASSWORD}@db:6379/0"
            )

    def park(self, hook: str) -> Parked:
        parked = self.parked[hook] = Parked()
        return parked

    def lose(self, hook: str, times: int = 1) -> None:
        self.losing[hook] = times


def _switchable(name: str) -> Any:
    base = getattr(DictBackend, name)

    @functools.wraps(base)  # pluggy reads the hook's argument names through __wrapped__
    async def hook(self: FlakyBackend, *args: Any) -> Any:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.gate is not None:
            await self.gate.wait()
        gate = self.hook_gates.get(name)
        if gate is not None:
            await gate.wait()
        self.reachable(name)
        result = await base(self, *args)
        parked = self.parked.pop(name, None)
        if parked is not None:
            parked.reached.set()
            await parked.release.wait()
        losing = self.losing.get(name, 0)
        if losing:
            self.losing[name] = losing - 1
            raise StoreUnavailableError(f"{name}: timed out waiting for the reply")
        return result

    return hookimpl(hook)


for _name in ASYNC_HOOKS:
    setattr(FlakyBackend, _name, _switchable(_name))


class FakeClock:
    """The breaker's clock: seconds, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new(session_id: str, **metadata: Any) -> Session:
    return Session(id=session_id, transport="http", metadata=metadata)


def with_fallback(
    primary: DictBackend, clock: FakeClock, fallback: Any = "memory", **options: Any
) -> SessionStore:
    return open_store(
        factory_of(primary), fallback=fallback, fallback_options={"clock": clock, **options}
    )


def breaker(store: SessionStore) -> FallbackMiddleware:
    assert store.fallback is not None
    return store.fallback


async def settled(store: SessionStore) -> None:
    """Wait until the reconciliation running in the background (if any) has finished."""
    await asyncio.wait_for(breaker(store).wait_reconciled(), WAIT)


async def recover(store: SessionStore, primary: FlakyBackend, clock: FakeClock) -> None:
    """Bring the primary back, let one operation start the probe, and wait for reconciliation
    to end with the circuit closed."""
    primary.down = False
    await settled(store)  # a reconciliation the outage interrupted has stopped
    clock.now += breaker(store).probe_after
    await store.get_sessions_batch(["nobody"])
    await settled(store)
    if breaker(store).state != "closed":  # nothing needed the primary: this call probes it
        await store.get_sessions_batch(["nobody"])
    assert breaker(store).state == "closed"
