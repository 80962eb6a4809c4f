"""Benchmark: sessionstore.mcp's SessionEventStore against mcp-persist's event stores (issue 6).

mcp-persist (PyPI, pinned in requirements/bench.txt) is the closest existing library: durable
``EventStore`` implementations of the MCP SDK's ``mcp.server.streamable_http.EventStore`` for
SQLite, Redis and Postgres. The two share SQLite and Redis (mcp-persist has no in-memory store,
sessionstore has no Postgres one), so both are measured on those, in one process, through the
SDK's interface: ``await store_event(stream_id, message)`` and ``await replay_events_after(
event_id, send_callback)``, with the same SDK messages and the same stream layout.

The sides:

* ours: ``SessionEventStore(store)`` over ``open_store(...)`` with ``ttl=3600`` and
  ``event_retention`` 20,000 (nothing is evicted during the run; mcp-persist keeps every event),
  each call inside ``session_scope(session_id)`` of a session created through the store;
* theirs: mcp-persist's store (``ttl=3600``, its other options at their defaults) seen through
  ``SessionScopedEventStore(store, session_id)``, the per-session view its
  ``SessionScopedSessionManager`` gives every transport and its README requires whenever several
  sessions share a store (the SDK files events by request id alone): the same isolation as ours;
* theirs, bare (reference): the same kind of store called directly, with the stream names the view
  would make (``<session id>:<request id>``): no ownership check on replay;
* SQLite only, theirs at synchronous=NORMAL: the scoped view over a store whose connection runs
  ``PRAGMA synchronous = NORMAL``, the durability sessionstore's SQLite backend uses by default.
  mcp-persist leaves SQLite's default (FULL: every commit syncs the WAL to disk).

Backends: SQLite, every side on its own file in one temporary directory (WAL; ours runs its SQL on
the event loop's thread, mcp-persist through aiosqlite's thread); Redis, every side on ONE server,
a throwaway ``redis-server`` on a free loopback port (``plugins/redis/tests/redis_servers.py``) or
the one that ``--url`` / ``SESSIONSTORE_REDIS_URL`` names (then in fresh namespaces / key
prefixes, removed at the end). mcp-persist opens its client with ``RedisEventStore.create(url)``.

The messages, built with the SDK's types before any timing: a progress notification
(``notifications/progress`` with ``ProgressNotificationParams``, about 190 bytes of JSON) and a
tool result (``JSONRPCResponse`` of a ``CallToolResult`` with text and structured content, about
1 KB). A request stream is what the SDK's transport writes for one tool call: a priming event
(``None``), 8 progress notifications, the result.

Operations, each timed per side in ``--rounds`` rounds, rotating which side goes first; the best
(fastest) round counts; ``gc.collect()`` runs before every timed loop:

* store_event: ``--events N`` events (N/10 request streams of 10) written one after the other in a
  fresh session; per event;
* store_event x50: the same N events over 50 fresh sessions, one task each (``asyncio.gather``),
  sharing one store; per event;
* replay 10,000: one stream holding a priming event and 10,000 events (a tool result every 10th,
  progress notifications otherwise), written once per side before the rounds; timed: one
  ``replay_events_after(<the priming event's id>, send_callback)`` delivering all 10,000, where
  ``send_callback`` appends the ``EventMessage`` to a list. Checked every round: 10,000 events,
  the ids ``store_event`` returned, in order, and the stream id; before the rounds, once, every
  replayed message equals the one stored.

After each store round every side's ids must be unique and name stored events (ours answers a
failed write with an ``unstored-`` id rather than raise into the SDK) and a replay of one of its
request streams must give back its messages. ratio = ours events/s / baseline events/s (best
rounds; higher is better); the target is > 1 (ahead) against mcp-persist, scoped, at its defaults
and at synchronous=NORMAL; the bare store is a reference.

Run it with ``make bench`` or ``.venv/bin/python bench/bench_mcp.py [--events N] [--rounds R]
[--backends sqlite,redis] [--url redis://host:port/db] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import (
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
)
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from time import perf_counter
from typing import Any

from benchkit import NoRedisServer, check, emit, proxy_session, redis_server

from sessionstore import SessionStore, __version__, new_session_id, open_store

DEFAULT_EVENTS = 1_000
DEFAULT_ROUNDS = 15
REPLAY_EVENTS = 10_000
CONCURRENCY = 50
PROGRESS_PER_REQUEST = 8  # a request stream: priming event, 8 progress notifications, the result
EVENTS_PER_REQUEST = PROGRESS_PER_REQUEST + 2
RESULT_EVERY = 10  # in the replay stream, every 10th event is a tool result
TTL_S = 3600
EVENT_RETENTION = 2 * REPLAY_EVENTS  # ours; mcp-persist keeps every event (max_stream_length None)
BACKENDS = ("sqlite", "redis")
KEY_PREFIX = "sessionstore"  # the Redis backend's default key_prefix

OPERATIONS = ("store", "store_x50", "replay")
OP_LABELS = {
    "store": "store_event",
    "store_x50": f"store_event x{CONCURRENCY}",
    "replay": f"replay {REPLAY_EVENTS:,}",
}
SIDES: dict[str, tuple[str, ...]] = {
    "sqlite": ("ours", "theirs", "theirs_normal", "theirs_bare"),
    "redis": ("ours", "theirs", "theirs_bare"),
}
# (baseline side, what it is, minimum ratio or None for a reference)
COMPARISONS: tuple[tuple[str, str, float | None], ...] = (
    ("theirs", "mcp-persist, session-scoped", 1.0),
    ("theirs_normal", "mcp-persist, scoped, synchronous=NORMAL", 1.0),
    ("theirs_bare", "mcp-persist store, unscoped", None),
)


def _progress(message: str) -> None:
    print(f"[bench_mcp {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def missing_pieces() -> dict[str, str]:
    """What cannot be imported, and why: the benchmark then only says so."""
    missing: dict[str, str] = {}
    for name, module in (
        ("sessionstore.mcp", "sessionstore.mcp"),
        ("mcp-persist", "mcp_persist"),
        ("aiosqlite", "aiosqlite"),
    ):
        try:
            __import__(module)
        except ImportError as exc:
            missing[name] = f"{type(exc).__name__}: {exc}"
    if "sessionstore.mcp" not in missing:
        try:
            from sessionstore.mcp import SessionEventStore, session_scope  # noqa: F401
        except ImportError as exc:
            missing["sessionstore.mcp"] = f"{type(exc).__name__}: {exc}"
    return missing


# -- the messages ---------------------------------------------------------------------------------


def progress_message(token: str, step: int, total: int) -> Any:
    """A ``notifications/progress`` as the SDK's dispatcher sends it."""
    from mcp_types import JSONRPCNotification, ProgressNotificationParams

    params = ProgressNotificationParams(
        progress_token=token,
        progress=step,
        total=total,
        message=f"Indexing repository: {step} of {total} shards done, 1,284 files scanned",
    )
    return JSONRPCNotification(
        jsonrpc="2.0",
        method="notifications/progress",
        params=params.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def tool_result(request_id: int) -> Any:
    """The ``JSONRPCResponse`` of a ``tools/call``: text plus structured content, about 1 KB."""
    from mcp_types import CallToolResult, JSONRPCResponse, TextContent

    matches = [
        {
            "path": f"src/service/handlers/h{i:02d}.py",
            "line": 40 + 7 * i,
            "score": round(1 - i / 20, 2),
        }
        for i in range(6)
    ]
    text = "Found 6 matches for 'retry_policy':\n" + "\n".join(
        f"{m['path']}:{m['line']}: retry_policy = RetryPolicy(attempts=5, backoff=0.2)"
        for m in matches
    )
    result = CallToolResult(
        content=[TextContent(text=text)],
        structured_content={"query": "retry_policy", "total": len(matches), "matches": matches},
    )
    return JSONRPCResponse(
        jsonrpc="2.0",
        id=request_id,
        result=result.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


Request = tuple[str, list[Any]]  # (the request id the SDK names its stream after, its messages)


def build_requests(count: int) -> list[Request]:
    """``count`` tool calls: each a priming event, progress notifications, the result."""
    requests = []
    for request_id in range(1, count + 1):
        token = f"call-{request_id}"
        messages: list[Any] = [None]
        messages += [
            progress_message(token, step, PROGRESS_PER_REQUEST)
            for step in range(1, PROGRESS_PER_REQUEST + 1)
        ]
        messages.append(tool_result(request_id))
        requests.append((str(request_id), messages))
    return requests


def build_replay_stream() -> list[Any]:
    """The long stream: a priming event then REPLAY_EVENTS events, every 10th a tool result."""
    messages: list[Any] = [None]
    for i in range(1, REPLAY_EVENTS + 1):
        if i % RESULT_EVERY == 0:
            messages.append(tool_result(i))
        else:
            messages.append(progress_message("call-long", i, REPLAY_EVENTS))
    return messages


def json_size(message: Any) -> int:
    return len(message.model_dump_json(by_alias=True, exclude_none=True))


# -- the sides ------------------------------------------------------------------------------------


@dataclass
class Lane:
    """One MCP session as a side sees it: the scope its calls run in, the EventStore to call,
    and the prefix of the stream names it passes (only the bare store needs one)."""

    scope: Callable[[], AbstractContextManager[Any]]
    store: Any  # an mcp.server.streamable_http.EventStore
    prefix: str = ""
    session_id: str = ""


@dataclass
class Side:
    name: str
    new_lane: Callable[[], Awaitable[Lane]]
    notes: dict[str, Any] = field(default_factory=dict)


def ours_side(store: SessionStore) -> Side:
    from sessionstore.mcp import SessionEventStore, session_scope

    events = SessionEventStore(store)

    async def new_lane() -> Lane:
        session = await store.create_session(proxy_session())
        session_id = session.id
        return Lane(lambda: session_scope(session_id), events, "", session_id)

    return Side("ours", new_lane)


def theirs_scoped_side(name: str, store: Any) -> Side:
    from mcp_persist import SessionScopedEventStore

    async def new_lane() -> Lane:
        session_id = new_session_id()
        return Lane(nullcontext, SessionScopedEventStore(store, session_id), "", session_id)

    return Side(name, new_lane)


def theirs_bare_side(store: Any) -> Side:
    from mcp_persist.session_scope import SESSION_STREAM_SEPARATOR

    async def new_lane() -> Lane:
        session_id = new_session_id()
        return Lane(nullcontext, store, f"{session_id}{SESSION_STREAM_SEPARATOR}", session_id)

    return Side("theirs_bare", new_lane)


def check_stored(side: str, ids: Sequence[str]) -> None:
    """Every id names a stored event: ours answers a failed write with an ``unstored-`` id (it
    must not stop the SDK's message router), which a benchmark must not count as a write."""
    check(len(ids) == len(set(ids)), f"{side}: every event id is unique")
    check(
        not any(i.startswith(("unstored-", "unrecorded-")) for i in ids),
        f"{side}: every event was stored",
    )


def expected_stream(lane: Lane, request_id: str) -> str:
    """The stream id ``replay_events_after`` returns for a stream of ``request_id``."""
    return lane.prefix + request_id


# -- the timed loops ------------------------------------------------------------------------------


async def write_requests(lane: Lane, requests: Sequence[Request], ids: list[str]) -> None:
    """Store every event of ``requests`` through ``lane``, one after the other; collect the ids."""
    store_event = lane.store.store_event
    prefix = lane.prefix
    append = ids.append
    with lane.scope():
        for request_id, messages in requests:
            stream = prefix + request_id
            for message in messages:
                append(await store_event(stream, message))


async def replay(lane: Lane, after: str) -> tuple[float, Any, list[Any]]:
    """Time one ``replay_events_after(after, send_callback)``: (seconds, stream id, events)."""
    events: list[Any] = []
    append = events.append

    async def send_callback(event: Any) -> None:
        append(event)

    replay_events_after = lane.store.replay_events_after
    with lane.scope():
        gc.collect()
        start = perf_counter()
        stream = await replay_events_after(after, send_callback)
        elapsed = perf_counter() - start
    return elapsed, stream, events


def _same_message(got: Any, sent: Any) -> bool:
    return bool(got == sent) or got.model_dump(by_alias=True, exclude_none=True) == sent.model_dump(
        by_alias=True, exclude_none=True
    )


async def check_request_stream(side: str, lane: Lane, request: Request, ids: Sequence[str]) -> None:
    """A replay after the priming event of ``request`` gives back its other messages."""
    request_id, messages = request
    _, stream, events = await replay(lane, ids[0])
    check(stream == expected_stream(lane, request_id), f"{side}: replay names the stream")
    check(len(events) == len(messages) - 1, f"{side}: a request stream replays in full")
    check([e.event_id for e in events] == list(ids[1:]), f"{side}: replayed ids are the stored ids")
    check(
        all(_same_message(e.message, m) for e, m in zip(events, messages[1:], strict=True)),
        f"{side}: replayed messages are the stored ones",
    )


@dataclass
class Bench:
    """What every operation of one backend shares."""

    sides: dict[str, Side]
    requests: list[Request]
    replay_lanes: dict[str, Lane] = field(default_factory=dict)
    replay_ids: dict[str, list[str]] = field(default_factory=dict)


async def run_store(bench: Bench, side: Side) -> float:
    lane = await side.new_lane()
    ids: list[str] = []
    gc.collect()
    start = perf_counter()
    await write_requests(lane, bench.requests, ids)
    elapsed = perf_counter() - start
    check(len(ids) == len(bench.requests) * EVENTS_PER_REQUEST, f"{side.name}: one id per event")
    check_stored(side.name, ids)
    await check_request_stream(side.name, lane, bench.requests[-1], ids[-EVENTS_PER_REQUEST:])
    return elapsed / len(ids)


async def run_store_x50(bench: Bench, side: Side) -> float:
    lanes = [await side.new_lane() for _ in range(CONCURRENCY)]
    parts = [bench.requests[i::CONCURRENCY] for i in range(CONCURRENCY)]
    ids: list[list[str]] = [[] for _ in range(CONCURRENCY)]
    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(write_requests(*args) for args in zip(lanes, parts, ids, strict=True)))
    elapsed = perf_counter() - start
    every = [i for part in ids for i in part]
    check(len(every) == len(bench.requests) * EVENTS_PER_REQUEST, f"{side.name}: one id per event")
    check_stored(side.name, every)
    await check_request_stream(side.name, lanes[0], parts[0][0], ids[0][:EVENTS_PER_REQUEST])
    return elapsed / len(every)


async def run_replay(bench: Bench, side: Side) -> float:
    lane, ids = bench.replay_lanes[side.name], bench.replay_ids[side.name]
    elapsed, stream, events = await replay(lane, ids[0])
    check(stream == expected_stream(lane, "1"), f"{side.name}: replay names the stream")
    check(len(events) == REPLAY_EVENTS, f"{side.name}: {len(events):,} events replayed")
    check(events[0].event_id == ids[1] and events[-1].event_id == ids[-1], "replayed ids")
    return elapsed


RUNNERS: dict[str, Callable[[Bench, Side], Awaitable[float]]] = {
    "store": run_store,
    "store_x50": run_store_x50,
    "replay": run_replay,
}


async def prepare_replay(bench: Bench, stream: list[Any]) -> None:
    """Write the long stream through every side, then check one full replay of it on each."""
    for name, side in bench.sides.items():
        lane = await side.new_lane()
        ids: list[str] = []
        started = perf_counter()
        await write_requests(lane, [("1", stream)], ids)
        _progress(
            f"  {name}: wrote the {len(ids):,}-event stream in {perf_counter() - started:.1f} s"
        )
        check(len(ids) == REPLAY_EVENTS + 1, f"{name}: one id per event")
        check_stored(name, ids)
        _, got_stream, events = await replay(lane, ids[0])
        check(got_stream == expected_stream(lane, "1"), f"{name}: replay names the stream")
        check([e.event_id for e in events] == ids[1:], f"{name}: every id, in order")
        check(
            all(_same_message(e.message, m) for e, m in zip(events, stream[1:], strict=True)),
            f"{name}: every replayed message is the one stored",
        )
        bench.replay_lanes[name], bench.replay_ids[name] = lane, ids


async def run_rounds(
    backend: str, sides: dict[str, Side], events: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    bench = Bench(sides, build_requests(events // EVENTS_PER_REQUEST))
    _progress(f"{backend}: writing the replay stream through every side")
    await prepare_replay(bench, build_replay_stream())
    names = list(sides)
    times: dict[str, dict[str, list[float]]] = {op: {n: [] for n in names} for op in OPERATIONS}
    for round_index in range(rounds):
        _progress(f"{backend}: round {round_index + 1}/{rounds}")
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for op in OPERATIONS:
            for name in order:
                times[op][name].append(await RUNNERS[op](bench, sides[name]))
    return times


# -- the backends ---------------------------------------------------------------------------------


@asynccontextmanager
async def sqlite_sides(directory: Path, tag: str) -> AsyncIterator[tuple[dict[str, Side], dict]]:
    import aiosqlite
    from mcp_persist import SQLiteEventStore

    info: dict[str, Any] = {
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": _version("aiosqlite"),
        "ours": "journal_mode=wal, synchronous=1 (the backend's default)",
    }
    async with AsyncExitStack() as stack:
        ours = await stack.enter_async_context(
            open_store(
                f"sqlite:///{directory / 'ours.db'}",
                namespace=f"bench-mcp-{tag}",
                ttl=TTL_S,
                event_retention=EVENT_RETENTION,
            )
        )
        theirs = await stack.enter_async_context(
            SQLiteEventStore.create(str(directory / "theirs.db"), ttl=TTL_S)
        )
        bare = await stack.enter_async_context(
            SQLiteEventStore.create(str(directory / "theirs_bare.db"), ttl=TTL_S)
        )
        conn = await aiosqlite.connect(directory / "theirs_normal.db")
        stack.push_async_callback(conn.close)
        normal = SQLiteEventStore(conn, ttl=TTL_S)
        stack.push_async_callback(normal.aclose)
        await normal.initialize()
        await conn.execute("PRAGMA synchronous = NORMAL")
        for name, store in (("theirs", theirs), ("theirs_normal", normal)):
            async with store._conn.execute("PRAGMA journal_mode") as cursor:
                mode = (await cursor.fetchone())[0]
            async with store._conn.execute("PRAGMA synchronous") as cursor:
                level = (await cursor.fetchone())[0]
            info[name] = f"journal_mode={mode}, synchronous={level}"
        check(info["theirs_normal"].endswith("synchronous=1"), "synchronous = NORMAL")
        sides = {
            "ours": ours_side(ours),
            "theirs": theirs_scoped_side("theirs", theirs),
            "theirs_normal": theirs_scoped_side("theirs_normal", normal),
            "theirs_bare": theirs_bare_side(bare),
        }
        yield sides, info


@asynccontextmanager
async def redis_sides(url: str, tag: str, *, clean_up: bool) -> AsyncIterator[tuple[dict, dict]]:
    from mcp_persist import RedisEventStore

    namespace = f"bench-mcp-{tag}"
    prefixes = (f"bench-mcp-{tag}:", f"bench-mcp-{tag}-bare:")
    async with AsyncExitStack() as stack:
        ours = await stack.enter_async_context(
            open_store(url, namespace=namespace, ttl=TTL_S, event_retention=EVENT_RETENTION)
        )
        theirs = await stack.enter_async_context(
            RedisEventStore.create(url, key_prefix=prefixes[0], ttl=TTL_S)
        )
        bare = await stack.enter_async_context(
            RedisEventStore.create(url, key_prefix=prefixes[1], ttl=TTL_S)
        )
        server = await theirs._redis.info("server")
        info = {"redis_server": server.get("redis_version", "?"), "redis_py": _version("redis")}
        sides = {
            "ours": ours_side(ours),
            "theirs": theirs_scoped_side("theirs", theirs),
            "theirs_bare": theirs_bare_side(bare),
        }
        try:
            yield sides, info
        finally:
            if clean_up:
                await ours.clear()
                client = theirs._redis
                await client.delete(f"{KEY_PREFIX}:{{{namespace}/0}}:layout")
                for prefix in prefixes:
                    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
                    for start in range(0, len(keys), 1000):
                        await client.delete(*keys[start : start + 1000])


async def bench_sqlite(events: int, rounds: int, tag: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        async with sqlite_sides(Path(tmp), tag) as (sides, info):
            times = await run_rounds("sqlite", sides, events, rounds)
    return {"where": "one file per side in one temporary directory", "info": info, "times": times}


async def bench_redis(url: str, what: str, events: int, rounds: int, tag: str, **kw: Any) -> dict:
    async with redis_sides(url, tag, **kw) as (sides, info):
        times = await run_rounds("redis", sides, events, rounds)
    return {"where": what, "info": info, "times": times}


# -- report ---------------------------------------------------------------------------------------


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    best = {op: {side: min(v) for side, v in per.items()} for op, per in times.items()}
    comparisons = []
    for op in OPERATIONS:
        per_op = REPLAY_EVENTS if op == "replay" else 1
        for side, does, target in COMPARISONS:
            if side not in best[op]:
                continue
            ours, base = best[op]["ours"], best[op][side]
            ratio = base / ours  # ours events/s / baseline events/s
            comparisons.append(
                {
                    "operation": op,
                    "baseline": side,
                    "baseline_is": does,
                    "ours_events_per_s": per_op / ours,
                    "baseline_events_per_s": per_op / base,
                    "ours_s_per_op": ours,
                    "baseline_s_per_op": base,
                    "ratio": ratio,
                    "target_min_ratio": target,
                    "ahead": None if target is None else ratio > target,
                }
            )
    return {"best_s_per_op": best, "all_s_per_op": times, "comparisons": comparisons}


def _per_op(op: str, seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if op == "replay" else f"{seconds * 1e6:.1f} us"


def render(summary: dict[str, Any]) -> str:
    lines = [
        "sessionstore.mcp SessionEventStore vs mcp-persist (SDK EventStore interface)",
        f"python {summary['python']} ({summary['implementation']}), sessionstore "
        f"{summary['sessionstore']}, mcp {summary['mcp']}, mcp-persist {summary['mcp_persist']}, "
        f"{summary['cpus']} CPUs, {summary['platform']}",
        f"events per store round {summary['events']:,} ({summary['events'] // EVENTS_PER_REQUEST:,}"
        f" request streams of {EVENTS_PER_REQUEST}), rounds {summary['rounds']} (best round of "
        f"each side), x{CONCURRENCY} = {CONCURRENCY} sessions, one task each; message JSON: "
        f"progress {summary['message_bytes']['progress']} B, tool result "
        f"{summary['message_bytes']['result']} B; wall {summary['wall_s']:.1f} s",
    ]
    for name, why in summary["skipped"].items():
        lines.append(f"SKIPPED {name}: {why}")
    header = (
        f"{'operation':<18}{'baseline':<42}{'ours ev/s':>11}{'base ev/s':>11}"
        f"{'ours':>10}{'base':>10}{'ratio':>7}  target"
    )
    for backend, result in summary["backends"].items():
        info = "; ".join(f"{k}: {v}" for k, v in result["info"].items())
        lines += [
            "",
            f"{backend}: {result['where']}",
            f"  {info}",
            header,
            "-" * (len(header) + 10),
        ]
        for c in result["summary"]["comparisons"]:
            if c["target_min_ratio"] is None:
                goal = "(reference)"
            else:
                goal = f"> {c['target_min_ratio']:g} " + ("ok" if c["ahead"] else "BEHIND")
            op = c["operation"]
            lines.append(
                f"{OP_LABELS[op]:<18}{c['baseline_is']:<42}"
                f"{c['ours_events_per_s']:>11,.0f}{c['baseline_events_per_s']:>11,.0f}"
                f"{_per_op(op, c['ours_s_per_op']):>10}{_per_op(op, c['baseline_s_per_op']):>10}"
                f"{c['ratio']:>7.2f}  {goal}"
            )
    lines += [
        "",
        "ratio = ours events/s / baseline events/s (best rounds; higher is better); ours, base: "
        f"time per event (store_event) or per replay of {REPLAY_EVENTS:,} events",
        "ours: SessionEventStore in session_scope(); theirs: SessionScopedEventStore (what its "
        "SessionScopedSessionManager gives each session); bare: its store called directly",
        "synchronous: 1 = NORMAL, 2 = FULL (SQLite's default, kept by mcp-persist); not compared: "
        "memory (mcp-persist has no in-memory store), Postgres (sessionstore has none)",
    ]
    return "\n".join(lines)


async def run(args: Any, tag: str) -> tuple[dict[str, Any], dict[str, str]]:
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for backend in args.backends:
        _progress(f"{backend}: starting")
        if backend == "sqlite":
            results[backend] = await bench_sqlite(args.events, args.rounds, tag)
            continue
        try:
            server = redis_server(args.url)
            url, what = server.__enter__()
        except NoRedisServer as exc:
            skipped["redis"] = str(exc)
            continue
        try:
            results[backend] = await bench_redis(
                url, what, args.events, args.rounds, tag, clean_up=bool(args.url)
            )
        finally:
            server.__exit__(None, None, None)
    return results, skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"events per store_event round, a multiple of {EVENTS_PER_REQUEST * CONCURRENCY} "
        "(%(default)s)",
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        type=lambda s: [b.strip() for b in s.split(",") if b.strip()],
        help="comma-separated, of: sqlite, redis (%(default)s)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("SESSIONSTORE_REDIS_URL"),
        help="a redis:// URL of one server to use instead of a throwaway one "
        "(default: $SESSIONSTORE_REDIS_URL)",
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds per side and op (%(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object, not a table")
    args = parser.parse_args(argv)
    if args.events < 1 or args.events % (EVENTS_PER_REQUEST * CONCURRENCY) or args.rounds < 1:
        parser.error(f"--events must be a positive multiple of {EVENTS_PER_REQUEST * CONCURRENCY}")
    if not args.backends or set(args.backends) - set(BACKENDS):
        parser.error(f"--backends takes {', '.join(BACKENDS)}")
    missing = missing_pieces()
    if missing:
        for name, why in missing.items():
            print(f"bench_mcp: SKIPPED, {name} cannot be imported: {why}", file=sys.stderr)
        return 0
    start = perf_counter()
    results, skipped = asyncio.run(run(args, secrets.token_hex(4)))
    summary = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sessionstore": __version__,
        "mcp": _version("mcp"),
        "mcp_persist": _version("mcp-persist"),
        "cpus": os.cpu_count(),
        "events": args.events,
        "rounds": args.rounds,
        "message_bytes": {
            "progress": json_size(progress_message("call-1", 1, PROGRESS_PER_REQUEST)),
            "result": json_size(tool_result(1)),
        },
        "wall_s": perf_counter() - start,
        "skipped": skipped,
        "backends": {
            backend: {
                "where": result["where"],
                "info": result["info"],
                "summary": summarize(result["times"]),
            }
            for backend, result in results.items()
        },
    }
    return emit(summary, as_json=args.json, render=render)


if __name__ == "__main__":
    sys.exit(main())
