"""A lone command's task polls for its reply before it sleeps (sessionstore_redis.spinning):
bounded in time and by the server's recent round trips, fair to every other task, seeing the
reply the turn it arrives, and safe to cancel while polling (the reply's future is cancelled and
the connection dropped, so the next command gets its own reply).

Polls are counted by driving the wait's coroutine (:class:`Polls`): each ``None`` it yields to
the event loop is a poll (``asyncio.sleep(0)``); a parked wait yields its future instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Generator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
from redis.asyncio.connection import ConnectionPool
from redis_servers import RedisServer
from reply_gate import BOUND, ReplyGate, until

from sessionstore import ConfigurationError, Session, TransportType, open_store
from sessionstore_redis.direct import DirectCommands
from sessionstore_redis.spinning import SPIN_LIMIT, Spinner

LONG = 20.0  # seconds: the commands' own timeout, never reached by a passing test


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def alone() -> bool:
    return True


class Polls:
    """Await ``coroutine``, counting the turns of the loop it polls (yields ``None``)."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self.coroutine = coroutine
        self.count = 0

    def __await__(self) -> Generator[Any, Any, Any]:
        sent: Any = None
        thrown: BaseException | None = None  # a cancellation, passed on to the coroutine
        while True:
            try:
                if thrown is None:
                    yielded = self.coroutine.send(sent)
                else:
                    yielded = self.coroutine.throw(thrown)
            except StopIteration as stop:
                return stop.value
            if yielded is None:
                self.count += 1
            try:
                sent, thrown = (yield yielded), None
            except BaseException as exc:
                sent, thrown = None, exc


def resolved_after(seconds: float, value: object = "reply") -> asyncio.Future[object]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()
    loop.call_later(seconds, lambda: future.done() or future.set_result(value))
    return future


async def test_a_wait_polls_until_the_reply_arrives_and_returns_on_that_turn() -> None:
    """The reply comes after 0.1 s, well within the limit (5 s): the wait polls meanwhile, and
    returns once the reply is in (the turn after), not at the end of the limit."""
    spinner = Spinner(alone, limit=5.0)
    polls = Polls(spinner.wait(resolved_after(0.1)))
    start = time.monotonic()
    assert await asyncio.wait_for(polls, BOUND) == "reply"
    assert time.monotonic() - start < 2.5  # half the limit: it stopped at the reply
    assert polls.count > 0
    assert spinner.typical > 0


async def test_other_tasks_run_while_a_wait_polls() -> None:
    """Polling yields to the loop every turn: a task that counts its own turns keeps counting,
    and timers (the reply's) fire; a wait that held the loop would starve both."""
    loop = asyncio.get_running_loop()
    turns = 0

    async def counter() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counting = loop.create_task(counter())
    try:
        before = turns
        polls = Polls(Spinner(alone, limit=5.0).wait(resolved_after(0.1)))
        assert await asyncio.wait_for(polls, BOUND) == "reply"
        assert polls.count > 0
        assert turns - before >= polls.count // 2  # the counter ran between the polls
    finally:
        counting.cancel()


async def test_a_wait_polls_no_longer_than_the_limit_then_sleeps() -> None:
    """A reply slower than the limit: the task polls for the limit, then parks; over a 1 s
    wait the thread spends a small part of the time on the CPU (polling throughout would
    spend all of it that the machine gives it)."""
    spinner = Spinner(alone, limit=0.02)
    cpu = time.thread_time()
    polls = Polls(spinner.wait(resolved_after(1.0)))
    assert await asyncio.wait_for(polls, BOUND) == "reply"
    assert polls.count > 0
    assert time.thread_time() - cpu < 0.15


async def test_a_server_whose_replies_have_been_slow_is_not_polled() -> None:
    """After replies slower than the limit the average is past it and the next wait parks at
    once; once replies are fast again, waits poll again."""
    loop = asyncio.get_running_loop()
    spinner = Spinner(alone, limit=0.01)
    for _ in range(12):
        await spinner.wait(resolved_after(0.05))
    assert spinner.typical > spinner.limit
    slow = Polls(spinner.wait(resolved_after(0.05)))
    await asyncio.wait_for(slow, BOUND)
    assert slow.count == 0
    for _ in range(60):  # replies at once: the average falls below the limit again
        done: asyncio.Future[object] = loop.create_future()
        done.set_result("reply")
        await spinner.wait(done)
    assert spinner.typical < spinner.limit
    fast = Polls(spinner.wait(resolved_after(0.005)))
    await asyncio.wait_for(fast, BOUND)
    assert fast.count > 0


async def test_one_slow_reply_does_not_switch_polling_off() -> None:
    """A single reply far slower than the limit (a long script, say) counts as at most twice the
    limit in the average: the next fast reply is still polled for."""
    spinner = Spinner(alone, limit=0.01)
    await spinner.wait(resolved_after(0.3))
    assert spinner.typical < spinner.limit
    after = Polls(spinner.wait(resolved_after(0.005)))
    await asyncio.wait_for(after, BOUND)
    assert after.count > 0


def test_a_limit_must_be_a_finite_number_of_seconds() -> None:
    for limit in (-0.001, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite number >= 0"):
            Spinner(alone, limit=limit)


async def test_a_wait_stops_polling_once_a_command_queues_behind_it() -> None:
    """Polling is for a lone caller: once ``alone()`` turns false (a command queued behind this
    one), the wait parks and polls no more, though its limit is far off."""
    queued = False
    spinner = Spinner(lambda: not queued, limit=60.0)
    polls = Polls(spinner.wait(resolved_after(0.5)))
    waiting = asyncio.ensure_future(polls)
    await until("the wait polling", lambda: polls.count > 3)
    queued = True
    polled = polls.count
    assert await asyncio.wait_for(waiting, BOUND) == "reply"
    assert polls.count - polled <= 1


async def test_cancelling_a_polling_wait_cancels_the_reply() -> None:
    """The caller cancelled while polling: the reply's future is cancelled, as awaiting it
    would have done, so a reply set later has nobody to miss it and nothing is left pending."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[object] = loop.create_future()
    polls = Polls(Spinner(alone, limit=60.0).wait(reply))

    async def wait() -> object:
        return await polls

    waiting = loop.create_task(wait())
    await until("the wait polling", lambda: polls.count > 3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert reply.cancelled()


def polls_of(direct: DirectCommands, limit: float | None = None) -> list[Polls]:
    """Count the polls of every wait of ``direct``'s own spinner (wrapping its ``wait``), with
    ``limit`` (if given) and the average of past round trips forgotten: the list gets one per
    wait."""
    spinner = direct._spinner
    if limit is not None:
        spinner.limit = limit
    spinner.typical = 0.0
    waits: list[Polls] = []
    wait = spinner.wait

    def counted(reply: asyncio.Future[Any]) -> Polls:
        waits.append(Polls(wait(reply)))
        return waits[-1]

    spinner.wait = counted  # type: ignore[method-assign,assignment]
    return waits


@asynccontextmanager
async def gated_connection(
    port: int, *, command_timeout: float = LONG
) -> AsyncIterator[tuple[ReplyGate, DirectCommands]]:
    """A ``ReplyGate`` in front of the server on ``port``, and the backend's commands over one
    connection through it, each command bounded by ``command_timeout`` (closed afterwards)."""
    async with ReplyGate(port) as gate:
        pool = ConnectionPool.from_url(gate.url, max_connections=1)
        direct = DirectCommands(pool, timeout=command_timeout)
        try:
            yield gate, direct
        finally:
            await direct.close()


@pytest.mark.parametrize("limit", [SPIN_LIMIT, 60.0], ids=["parked", "polling"])
async def test_a_lone_command_cancelled_while_waiting_never_hands_its_reply_on(
    redis_server: RedisServer, limit: float
) -> None:
    """A lone GET whose reply is held back, cancelled while parked (the limit long past) and
    while polling (a limit longer than the test): its connection is dropped, and the next
    command, once replies flow again, gets its own reply, not the held one."""
    async with gated_connection(redis_server.port) as (gate, direct):
        direct._spinner.limit = limit
        await direct.execute("SET", "k", b"v" * 300)
        await direct.execute("SET", "n", b"1")
        gate.holding = True
        lone = asyncio.ensure_future(direct.execute("GET", "k"))
        await until("the reply held", lambda: len(gate.held) > 0)
        lone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lone
        gate.open()
        assert await asyncio.wait_for(direct.execute("GET", "n"), BOUND) == b"1"


async def test_a_lone_command_whose_reply_is_held_sleeps_while_it_waits(
    redis_server: RedisServer,
) -> None:
    """Through the backend's own connections and spinner (SPIN_LIMIT): a reply held back for
    1 s costs the waiting thread little CPU; the wait parks once the limit has passed."""
    async with gated_connection(redis_server.port) as (gate, direct):
        await direct.execute("SET", "k", b"v")
        gate.holding = True
        cpu = time.thread_time()
        lone = asyncio.ensure_future(direct.execute("GET", "k"))
        await asyncio.sleep(1.0)
        assert not lone.done()
        gate.open()
        assert await asyncio.wait_for(lone, BOUND) == b"v"
        assert time.thread_time() - cpu < 0.15


async def test_a_lone_command_stops_polling_once_another_queues_behind_it(
    redis_server: RedisServer,
) -> None:
    """Through the backend's own connections, with a limit longer than the test: a held lone
    GET polls until a second command queues behind it, then parks, so a 1 s hold costs the
    thread little CPU; both commands then get their own replies."""
    async with gated_connection(redis_server.port) as (gate, direct):
        await direct.execute("SET", "k", b"v")
        await direct.execute("SET", "n", b"1")
        waits = polls_of(direct, 60.0)
        gate.holding = True
        lone = asyncio.ensure_future(direct.execute("GET", "k"))
        await until("the reply held", lambda: len(gate.held) > 0)
        await until("the lone command polling", lambda: bool(waits) and waits[0].count > 3)
        behind = asyncio.ensure_future(direct.execute("GET", "n"))
        cpu = time.thread_time()
        await asyncio.sleep(1.0)
        assert time.thread_time() - cpu < 0.15
        gate.open()
        assert await asyncio.wait_for(lone, BOUND) == b"v"
        assert await asyncio.wait_for(behind, BOUND) == b"1"


async def test_a_connection_cut_while_a_lone_command_polls_fails_it_at_once(
    redis_server: RedisServer,
) -> None:
    """Through the backend's own connections, polling with a limit longer than the test: the
    cut fails the command with ConnectionError at once, and the next one gets its own reply."""
    async with gated_connection(redis_server.port) as (gate, direct):
        await direct.execute("SET", "k", b"v")
        waits = polls_of(direct, 60.0)
        gate.holding = True
        lone = asyncio.ensure_future(direct.execute("GET", "k"))
        await until("the lone command polling", lambda: bool(waits) and waits[0].count > 3)
        await until("the reply held", lambda: len(gate.held) > 0)
        gate.cut()
        with pytest.raises(redis.ConnectionError):
            await asyncio.wait_for(lone, BOUND)
        assert await asyncio.wait_for(direct.execute("GET", "k"), BOUND) == b"v"


async def test_a_lone_command_polling_past_its_deadline_times_out(
    redis_server: RedisServer,
) -> None:
    """Polling with a limit longer than the test, the reply held: the command's own deadline
    (0.4 s) ends it with TimeoutError, and the next command, once replies flow, gets its own."""
    async with gated_connection(redis_server.port, command_timeout=0.4) as (gate, direct):
        await direct.execute("SET", "k", b"v")
        await direct.execute("SET", "n", b"1")
        waits = polls_of(direct, 60.0)
        gate.holding = True
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(direct.execute("GET", "k"), BOUND)
        assert waits[0].count > 3
        gate.open()
        assert await asyncio.wait_for(direct.execute("GET", "n"), BOUND) == b"1"


@pytest.mark.parametrize("limit", [-0.001, float("inf"), float("nan"), "0.1", True])
def test_bad_poll_limits_are_refused_by_name(limit: object) -> None:
    with pytest.raises(ConfigurationError, match="poll_limit must be"):
        open_store("redis://127.0.0.1:1/0", poll_limit=limit)


async def test_poll_limit_reaches_the_connections_of_a_server_and_of_every_cluster_node(
    redis_url: str, redis_cluster_url: str
) -> None:
    for url in (redis_url, redis_cluster_url):
        async with open_store(url, namespace=fresh_namespace(), poll_limit=0.001) as store:
            for _ in range(8):  # sessions on every node
                await store.create_session(Session(transport=TransportType.HTTP))
            commands = store._backend._commands
            nodes = list(commands._nodes.values()) if url == redis_cluster_url else [commands]
            assert len(nodes) == (3 if url == redis_cluster_url else 1)
            assert [node._spinner.limit for node in nodes] == [0.001] * len(nodes)
            await store.clear()
    async with open_store(redis_url, namespace=fresh_namespace()) as store:
        assert store._backend._commands._spinner.limit == SPIN_LIMIT


@pytest.mark.parametrize(
    ("options", "polled"), [({}, True), ({"poll_limit": 0}, False)], ids=["default", "zero"]
)
async def test_poll_limit_zero_turns_polling_off(
    redis_url: str, options: dict[str, float], polled: bool
) -> None:
    """Lone gets through a store: with the default limit they poll (the first wait at least:
    no reply is in right after its command is written); with ``poll_limit=0`` none does."""
    async with open_store(redis_url, namespace=fresh_namespace(), **options) as store:
        session = await store.create_session(Session(transport=TransportType.HTTP))
        waits = polls_of(store._backend._commands)
        for _ in range(20):
            await store.get_session(session.id)
        assert len(waits) == 20
        assert (sum(w.count for w in waits) > 0) is polled
        await store.clear()
