"""Closing a Redis store while its calls wait on a server that does not answer (issue 14, item 4).

The server is frozen with SIGSTOP: its kernel still accepts connections and bytes, so a command
is sent and then waits for a reply that never comes, exactly as on a hung server. ``aclose()``
must end those calls within their timeout (``StoreClosedError`` or ``StoreUnavailableError``),
and return within a bound of its own, rather than leave them waiting until the server resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator

from redis_servers import RedisServer

from sessionstore import (
    Session,
    SessionStore,
    StoreClosedError,
    StoreUnavailableError,
    TransportType,
    open_store,
)

TIMEOUT = 1.0
WATCHER_SLACK = TIMEOUT / 4  # the deadline watcher wakes every timeout / 4 (see deadlines.py)
SCHEDULING_SLACK = 1.0  # a loaded 2-core machine: generous, and still far below "until resumed"


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """The server stopped with SIGSTOP for the block, and resumed whatever happens."""
    pid = server.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def operations(store: SessionStore, session: Session) -> list[Callable[[], Awaitable[object]]]:
    """One call of each kind of round trip: a GET, each script path, the batched append."""
    return [
        lambda: store.get_session(session.id),
        lambda: store.update_session(session),
        lambda: store.create_session(Session(transport=TransportType.HTTP)),
        lambda: store.count_sessions(),
        lambda: store.append_event(session.id, "s", b"x"),
        lambda: store.append_event(session.id, "s", b"y"),  # queued behind the first append
        lambda: store.get_sessions_batch([session.id, "other"]),
    ]


async def in_flight(calls: list[asyncio.Task[object]]) -> None:
    """Wait until every call has sent its command to the frozen server, i.e. none is runnable:
    all wait on a reply (or on the append in front of them)."""
    # Nothing observable marks "sent" without the server's help, so yield to the loop until no
    # call has finished and a few rounds went by; a call that had not sent yet at close is fine
    # too (it must then end with StoreClosedError), so this only makes the test harder.
    for _ in range(50):
        await asyncio.sleep(0.01)
    done = [task for task in calls if task.done()]
    assert not done, [task.result() for task in done]


async def test_aclose_ends_calls_waiting_on_a_hung_server_within_their_timeout(
    redis_server: RedisServer,
) -> None:
    store = open_store(redis_server.url, namespace="close", timeout=TIMEOUT)
    session = await store.create_session(Session(transport=TransportType.HTTP))
    await store.append_event(session.id, "s", b"warm")
    with frozen(redis_server):
        started = time.monotonic()
        calls = [asyncio.create_task(call()) for call in operations(store, session)]
        await in_flight(calls)
        close_started = time.monotonic()
        await asyncio.wait_for(store.aclose(), TIMEOUT + WATCHER_SLACK + SCHEDULING_SLACK)
        close_took = time.monotonic() - close_started
        bound = TIMEOUT + WATCHER_SLACK + SCHEDULING_SLACK
        _, pending = await asyncio.wait(calls, timeout=bound - (time.monotonic() - started))
        elapsed = time.monotonic() - started
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    assert not pending, f"{len(pending)} of {len(calls)} calls still waited {elapsed:.2f} s"
    outcomes = [task.exception() for task in calls]
    assert all(isinstance(o, StoreClosedError | StoreUnavailableError) for o in outcomes), outcomes
    assert close_took < TIMEOUT + WATCHER_SLACK + SCHEDULING_SLACK, close_took
    with contextlib.suppress(StoreClosedError):  # and the store stays closed
        await store.get_session(session.id)
        raise AssertionError("a call after aclose() succeeded")


async def test_aclose_on_a_hung_server_says_the_store_was_closed_under_the_call(
    redis_server: RedisServer,
) -> None:
    store = open_store(redis_server.url, namespace="close", timeout=30)  # the timeout is far
    session = await store.create_session(Session(transport=TransportType.HTTP))
    with frozen(redis_server):
        call = asyncio.create_task(store.get_session(session.id))
        await in_flight([call])
        started = time.monotonic()
        await asyncio.wait_for(store.aclose(), SCHEDULING_SLACK)
        done, _ = await asyncio.wait([call], timeout=SCHEDULING_SLACK)
        took = time.monotonic() - started
        if not done:
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
    assert done, f"the call still waited {took:.2f} s after aclose() (its timeout is 30 s)"
    error = call.exception()
    assert isinstance(error, StoreClosedError), repr(error)
    assert "closed" in str(error), str(error)
    assert "127.0.0.1" in str(error), str(error)


async def test_a_store_closed_with_nothing_in_flight_closes_at_once(
    redis_server: RedisServer,
) -> None:
    store = open_store(redis_server.url, namespace="close", timeout=TIMEOUT)
    await store.create_session(Session(transport=TransportType.HTTP))
    with frozen(redis_server):
        started = time.monotonic()
        await asyncio.wait_for(store.aclose(), TIMEOUT + SCHEDULING_SLACK)
        assert time.monotonic() - started < TIMEOUT
