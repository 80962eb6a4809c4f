"""Benchmark: resumed MCP streams told of new events (push) against polling the store (issue 17).

A client whose stream broke resumes it on another instance; that instance follows the stream in
the store until its answer comes (``SessionEventStore._follow``). With push, the store tells the
follower that the session's events changed (``Capability.EVENT_NOTIFICATIONS``: Redis pub/sub,
PostgreSQL ``LISTEN``/``NOTIFY``), and the follower re-reads at least once a second as a safety
net; with polling, it reads every ``poll_interval`` (50 ms, the default), which is what a backend
without notifications gets. Both sides run here in one run, side by side, on the same server.

Setup, per (backend, number of streams, side): a fresh namespace; the producing instance (its own
store, on its own thread and event loop, as another instance would be) creates the sessions and
primes one request stream in each (``SessionEventStore.store_event``); the following instance
(another store) resumes every stream from its priming event (``replay_events_after`` inside
``session_scope``, with a liveness check that always answers "alive", so only the events are
read) and follows it. The polling side is the same code over the same store, whose
``watch_events`` is made to poll (what the core does for a backend without ``event_watch``).

Measured:

* delay: from just before the producer's ``store_event`` call to the follower's
  ``send_callback`` receiving that message. Each round appends one progress notification to every
  stream (one after the other, after a random pause of 0-50 ms so that appends land at any phase
  of the pollers) and waits until every one was delivered. A warm-up round comes first. Median
  and p95 over every delivery, and the spread of the rounds' medians (min-max).
* load on the store: while the streams are followed and nothing happens (``--idle`` seconds), and
  during the rounds: Redis commands per second (every call in ``INFO commandstats``, on a server
  used by nothing else); PostgreSQL transactions per second (``xact_commit + xact_rollback`` of
  the benchmark's fresh database in ``pg_stat_database``; PostgreSQL publishes these counters
  about once a second, so short windows are approximate: the idle window is several seconds).

Servers: Redis, a throwaway ``redis-server`` (``benchkit.redis_server``) or ``--redis-url``;
PostgreSQL, a fresh database on the server the tests find (``plugins/postgres/tests/
postgres_servers.py``) or ``--postgres-url``. A backend whose server cannot be found is skipped
with the reason.

Run it with ``make bench`` or ``.venv/bin/python bench/bench_push.py [--streams 1,100]
[--rounds R] [--idle S] [--backends redis,postgres] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench_mcp import progress_message, tool_result
from benchkit import NoRedisServer, check, emit, redis_server

from sessionstore import MetricsMiddleware, SessionStore, open_store
from sessionstore.mcp import SessionEventStore, session_scope
from sessionstore.watching import EventWatch, PollingWatch

T = TypeVar("T")

POLL_INTERVAL = 0.05
"""The polling side's interval: the SessionEventStore default."""
DELIVERY_BOUND = 60.0
"""Seconds a round may take to deliver everything before the benchmark fails."""
STREAM_ID = "1"


class _PollingStore:
    """The store as the core sees a backend without ``event_watch``: its watches poll."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @asynccontextmanager
    async def watch_events(
        self, session_id: str, *, poll_interval: float = POLL_INTERVAL
    ) -> AsyncIterator[EventWatch]:
        yield PollingWatch(poll_interval)


class _Producer:
    """The producing instance: its own store, on its own thread and event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="producer")
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the producer's loop; await its result here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass
class Counter:
    """The server's count of its work so far: Redis, every command counted in ``INFO
    commandstats`` (those the scripts run included); PostgreSQL, transactions."""

    unit: str
    read: Callable[[], Awaitable[int]]
    close: Callable[[], Awaitable[None]]


@dataclass
class Result:
    backend: str
    streams: int
    side: str
    delays_ms: list[float] = field(default_factory=list)
    round_medians_ms: list[float] = field(default_factory=list)
    idle_reads_per_s: float = 0.0
    idle_server_per_s: float = 0.0
    reads_per_event: float = 0.0
    unit: str = ""

    def summary(self) -> dict[str, Any]:
        delays = sorted(self.delays_ms)
        return {
            "backend": self.backend,
            "streams": self.streams,
            "side": self.side,
            "deliveries": len(delays),
            "delay_median_ms": round(statistics.median(delays), 2),
            "delay_p95_ms": round(delays[int(0.95 * (len(delays) - 1))], 2),
            "round_median_min_ms": round(min(self.round_medians_ms), 2),
            "round_median_max_ms": round(max(self.round_medians_ms), 2),
            "idle_reads_per_s": round(self.idle_reads_per_s, 1),
            "idle_server_per_s": round(self.idle_server_per_s, 1),
            "reads_per_event": round(self.reads_per_event, 2),
            "server_unit": self.unit,
        }


async def measure(
    spec: str,
    backend: str,
    counter: Counter,
    *,
    streams: int,
    push: bool,
    rounds: int,
    idle: float,
) -> Result:
    """One side on one backend with ``streams`` resumed streams (see the module's docstring)."""
    namespace = f"bench-push-{secrets.token_hex(4)}"
    result = Result(backend, streams, "push" if push else "poll", unit=counter.unit)
    producer = _Producer()
    writer: SessionStore | None = None
    metrics = MetricsMiddleware()  # counts the followers' reads (event_replay calls)
    reader = open_store(spec, namespace=namespace, ttl=3600, middleware=[metrics])

    def reads() -> int:
        stats = metrics.snapshot().get("event_replay")
        return 0 if stats is None else stats.calls

    try:
        check(reader.offers_event_watch, f"{backend} offers event notifications")
        followed: Any = reader if push else _PollingStore(reader)
        consumer = SessionEventStore(followed, instance_id="consumer", poll_interval=POLL_INTERVAL)

        async def alive(producer_id: str) -> bool:
            return True

        consumer.bind(followed, instance_id="consumer", liveness=alive, liveness_interval=0.5)

        async def open_writer() -> tuple[SessionStore, SessionEventStore, list[tuple[str, str]]]:
            store = open_store(spec, namespace=namespace, ttl=3600, event_retention=10_000)
            events = SessionEventStore(store, instance_id="producer")
            primed = []
            for _ in range(streams):
                session_id = (await store.create_session(_session())).id
                with session_scope(session_id):
                    primed.append((session_id, await events.store_event(STREAM_ID, None)))
            return store, events, primed

        writer, produced, primed = await producer.run(open_writer())
        sent: dict[tuple[str, int], float] = {}
        received: dict[tuple[str, int], float] = {}
        expected: dict[str, tuple[int, asyncio.Event]] = {}

        def callback_for(session_id: str) -> Callable[[Any], Awaitable[None]]:
            async def send(event: Any) -> None:
                params = getattr(event.message, "params", None) or {}
                step = params.get("progress")
                if step is None:
                    return  # the answer that ends the stream
                received[(session_id, int(step))] = time.perf_counter()
                want, done = expected[session_id]
                if int(step) >= want:
                    done.set()

            return send

        async def follow(session_id: str, primed_id: str) -> None:
            with session_scope(session_id):
                await consumer.replay_events_after(primed_id, callback_for(session_id))

        followers = [asyncio.create_task(follow(s, p)) for s, p in primed]

        async def append_round(step: int) -> None:
            await asyncio.sleep(random.uniform(0, POLL_INTERVAL))  # a random phase
            for session_id, _ in primed:
                with session_scope(session_id):
                    sent[(session_id, step)] = time.perf_counter()
                    await produced.store_event(
                        STREAM_ID, progress_message(f"call-{session_id}", step, rounds + 1)
                    )

        async def one_round(step: int) -> None:
            for session_id, _ in primed:
                expected[session_id] = (step, asyncio.Event())
            await producer.run(append_round(step))
            waits = [done.wait() for _, done in expected.values()]
            await asyncio.wait_for(asyncio.gather(*waits), DELIVERY_BOUND)

        await one_round(1)  # warm-up: every follower is subscribed and steady
        served, read = await counter.read(), reads()
        await asyncio.sleep(idle)  # the measurement window: the followers alone
        result.idle_reads_per_s = (reads() - read) / idle
        result.idle_server_per_s = (await counter.read() - served) / idle
        read = reads()
        for step in range(2, rounds + 2):
            await one_round(step)
            delays = [(received[(s, step)] - sent[(s, step)]) * 1000 for s, _ in primed]
            result.delays_ms += delays
            result.round_medians_ms.append(statistics.median(delays))
        result.reads_per_event = (reads() - read) / (rounds * streams)

        async def answer_all() -> None:
            for n, (session_id, _) in enumerate(primed):
                with session_scope(session_id):
                    await produced.store_event(STREAM_ID, tool_result(n))

        await producer.run(answer_all())
        await asyncio.wait_for(asyncio.gather(*followers), DELIVERY_BOUND)
        check(
            len(result.delays_ms) == rounds * streams,
            f"{backend} {result.side}: every event delivered",
        )
        check(all(d > 0 for d in result.delays_ms), "every delay is positive")
    finally:
        await reader.aclose()
        if writer is not None:
            store = writer

            async def close_writer() -> None:
                await store.clear()
                await store.aclose()

            await producer.run(close_writer())
        producer.close()
    return result


def _session() -> Any:
    from benchkit import proxy_session

    return proxy_session()


# -- the servers ------------------------------------------------------------------------------


async def redis_counter(url: str) -> Counter:
    from redis.asyncio import Redis

    admin = Redis.from_url(url)

    async def read() -> int:
        stats = await admin.info("commandstats")
        return sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict))

    return Counter("Redis commands/s (INFO commandstats, incl. inside scripts)", read, admin.aclose)


async def postgres_counter(url: str) -> Counter:
    import asyncpg

    admin = await asyncpg.connect(url)

    async def read() -> int:
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        value = await admin.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(value)

    unit = "PostgreSQL transactions/s (pg_stat_database; asyncpg's reset on release is one too)"
    return Counter(unit, read, admin.close)


@contextmanager
def servers(
    backends: list[str], redis_url: str | None, postgres_url: str | None
) -> Iterator[dict[str, tuple[str, str]]]:
    """``{backend: (url, what it is)}`` for each backend whose server is found; the others are
    reported as skipped."""
    found: dict[str, tuple[str, str]] = {}
    with ExitStack() as stack:
        if "redis" in backends:
            try:
                found["redis"] = stack.enter_context(redis_server(redis_url))
            except NoRedisServer as exc:
                print(f"bench_push: redis SKIPPED: {exc}", file=sys.stderr)
        if "postgres" in backends:
            try:
                found["postgres"] = stack.enter_context(_postgres_database(postgres_url))
            except (SystemExit, ImportError) as exc:
                print(f"bench_push: postgres SKIPPED: {exc}", file=sys.stderr)
        yield found


@contextmanager
def _postgres_database(url: str | None) -> Iterator[tuple[str, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_postgres import postgres_database

    with postgres_database(url) as found:
        yield found


# -- the report -------------------------------------------------------------------------------


def render(summary: dict[str, Any]) -> str:
    lines = [
        "bench_push: delay from append to delivery on another instance, and the store's load",
        f"  polling every {POLL_INTERVAL * 1000:.0f} ms against push (safety re-read every "
        "1 s). Delay: median, p95, and the rounds' medians (min-max). Load while the streams",
        "  are followed and nothing happens: the followers' reads/s (event_replay calls) and the",
        "  server's count/s; and the followers' reads per event delivered during the rounds.",
        "",
        f"{'backend':<9}{'streams':>8} {'side':<5}{'median':>9}{'p95':>9}"
        f"{'rounds':>17}{'idle reads/s':>14}{'server/s':>10}{'reads/event':>13}",
    ]
    for row in summary["results"]:
        spread = f"{row['round_median_min_ms']:.1f}-{row['round_median_max_ms']:.1f} ms"
        lines.append(
            f"{row['backend']:<9}{row['streams']:>8} {row['side']:<5}"
            f"{row['delay_median_ms']:>7.2f}ms{row['delay_p95_ms']:>7.2f}ms{spread:>17}"
            f"{row['idle_reads_per_s']:>14.1f}{row['idle_server_per_s']:>10.1f}"
            f"{row['reads_per_event']:>13.2f}"
        )
    units = dict.fromkeys(row["server_unit"] for row in summary["results"])
    lines += [f"  {unit}" for unit in units]
    for note in summary["servers"]:
        lines.append(f"  {note}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    with servers(args.backends, args.redis_url, args.postgres_url) as found:
        for backend, (url, what) in found.items():
            notes.append(f"{backend}: {what}")
            make_counter = redis_counter if backend == "redis" else postgres_counter
            counter = await make_counter(url)
            try:
                for streams in args.streams:
                    rounds = args.rounds or (30 if streams == 1 else 10)
                    for push in (True, False):
                        result = await measure(
                            url,
                            backend,
                            counter,
                            streams=streams,
                            push=push,
                            rounds=rounds,
                            idle=args.idle,
                        )
                        results.append(result.summary())
            finally:
                await counter.close()
    return {"results": results, "servers": notes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--streams",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 100],
        help="resumed streams per run, comma-separated (1,100)",
    )
    parser.add_argument(
        "--rounds", type=int, default=0, help="rounds per run (default 30 for 1 stream, else 10)"
    )
    parser.add_argument("--idle", type=float, default=5.0, help="idle window, seconds (5)")
    parser.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        default=["redis", "postgres"],
        help="redis,postgres",
    )
    parser.add_argument("--redis-url", default=None, help="a Redis server to use (its data stays)")
    parser.add_argument("--postgres-url", default=None, help="a PostgreSQL database to use")
    parser.add_argument("--json", action="store_true", help="print a JSON object, not a table")
    args = parser.parse_args()
    summary = asyncio.run(main_async(args))
    return emit(summary, as_json=args.json, render=render)


if __name__ == "__main__":
    sys.exit(main())
