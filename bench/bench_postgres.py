"""Benchmark: the PostgreSQL backend through the SessionStore facade against raw asyncpg, and
sessionstore.mcp's event store against mcp-persist's PostgreSQL one.

Everything runs in one process against ONE PostgreSQL server: a fresh database
(``sessionstore_test_<random>``, dropped at the end) on the server the tests find
(``plugins/postgres/tests/postgres_servers.py``: ``SESSIONSTORE_POSTGRES_URL``, else the server on
127.0.0.1:5432, else a throwaway cluster), or the database ``--url`` names (then in fresh
namespaces and tables, removed at the end). Every side stores the same ``--sessions N`` sessions,
shaped as an MCP proxy keeps them (``benchkit.proxy_session()``), created through the store with
``ttl=3600``.

Part 1, speed (every side on the same ids, in the same random order), ours against raw asyncpg
(a pool of asyncpg's default size, its default options) running the backend's own statement
(``sessionstore_postgres.backend.Statements``, so both sides send the same SQL, text for text)
plus the public codec:

* get: ``store.get_session(id)`` against ``pool.fetchrow(<the backend's SELECT>)`` and
  ``decode_session`` of the ``SessionRecord`` built from the row (``new_record``, as the backend
  does);
* update (compare-and-set): ``store.update_session(session)`` against ``encode_session`` plus
  ``pool.fetchrow(<the backend's compare-and-set statement>)``, its verdict checked. Both sides bump
  the versions of the same records; at the end every record must hold version ``1 + 4 x rounds``
  and a stale version must be refused by both;
* ``x50``: both of the above with 50 tasks (``asyncio.gather``) sharing one store / one pool;
* batch: ``store.get_sessions_batch(1,000 ids)`` against ``pool.fetch(<the backend's batch
  SELECT>)`` of the same 1,000 ids plus the same decode of each.

Each (operation, side) runs ``--rounds`` rounds, rotating which side goes first; ``gc.collect()``
runs before every timed loop. The best (fastest) round of each side gives the ratio, ours ops/s /
raw ops/s (target >= 0.85); the spread over the rounds (best, median, worst time per op) is
printed next to it, as the machine is shared and noisy.

Part 2, round trips of a batch: the statements the server ran for one ``get_sessions_batch`` of
1,000 ids, counted by ``pg_stat_statements`` on a throwaway cluster started for it (``initdb`` and
``pg_ctl``, with ``shared_preload_libraries = 'pg_stat_statements'``): after a warm-up call (which
prepares the statement in asyncpg's statement cache), the counters are reset, one batch runs, and
every statement the server executed for the database is listed with its calls. One statement,
already prepared, is one round trip (asyncpg sends Bind, Execute and Sync together). Skipped, with
the reason, where no cluster can be started.

Part 3, events, through the MCP SDK's ``EventStore`` interface, with ``bench_mcp.py``'s messages,
sides and timed loops: ``SessionEventStore`` over the backend (``event_retention`` 20,000) against
mcp-persist's ``PostgresEventStore`` (``PostgresEventStore.create(url, ttl=3600)``, its pool at
asyncpg's defaults, a table of its own), seen through ``SessionScopedEventStore`` (what its
``SessionScopedSessionManager`` gives each session: the same isolation as ours) and, as a
reference, called bare. Operations: ``store_event`` (``--events`` events in request streams of
10, one after the other), ``store_event x50`` (50 sessions, one task each) and a replay of 10,000
events. Target: ahead (ratio > 1) of the scoped store.

Part 4, scale (``--scale N``, default 1,000,000; ``--scale 0`` skips it), in a fresh namespace:
N/10 sessions are written straight into the backend's table with ``COPY`` (encoded with the
public codec, a deadline 7 days out, through the table so that its triggers keep the namespace's
row count), then, through a store, ``count_sessions`` (best of 5, target < 50 ms) and
``iter_sessions`` over all of them (one pass timed, one under ``tracemalloc`` for the peak of
Python memory); then the rest up to N, and the same again. The ``iter_sessions`` peak must be
flat (at most 3x from N/10 to N). Each pass is checked: the number of sessions yielded and a sum
of the hashes of their ids.

Run it with ``make bench`` or ``.venv/bin/python bench/bench_postgres.py [--sessions N]
[--rounds R] [--events N] [--scale N] [--url postgresql://...] [--json]``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import random
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from types import ModuleType
from typing import Any

import asyncpg
import bench_redis
from bench_mcp import _version
from bench_redis import HASH_MASK, _count_best, _iterate, _slices, id_hash
from benchkit import base_parser, check, emit, proxy_session

from sessionstore import (
    ConflictError,
    SessionNotFoundError,
    __version__,
    decode_session,
    encode_session,
    open_store,
)
from sessionstore.records import new_record
from sessionstore_postgres.backend import Statements

DEFAULT_SESSIONS = 2_000
DEFAULT_ROUNDS = 7
DEFAULT_EVENTS = 1_000
DEFAULT_SCALE = 1_000_000
CONCURRENCY = 50
BATCH_SIZE = 1_000
BATCH_CALLS = 20  # batch calls per side and round, cycling over the N ids
TTL_S = 3600
SCALE_TTL_MS = 7 * 86_400_000
COPY_CHUNK = 50_000  # rows per COPY
COUNT_TARGET_S = 0.050
SIMILAR_FACTOR = 3.0  # "flat": the peak at N is at most 3x the one at N/10
SCHEMA = "sessionstore"  # the backend's default schema option
POSTGRES_TESTS = Path(__file__).resolve().parent.parent / "plugins" / "postgres" / "tests"

OPERATIONS = ("get", "update", "get_x50", "update_x50", "batch")
OP_LABELS = {
    "get": "get",
    "update": "update (CAS)",
    "get_x50": f"get x{CONCURRENCY}",
    "update_x50": f"update x{CONCURRENCY}",
    "batch": f"batch {BATCH_SIZE:,}",
}
RAW_DOES = {
    "get": "fetchrow(SELECT) + decode",
    "update": "encode + fetchrow(the CAS statement)",
    "get_x50": "fetchrow(SELECT) + decode",
    "update_x50": "encode + fetchrow(the CAS statement)",
    "batch": "fetch(SELECT ... = ANY($ids)) + decode",
}
TARGET_VS_RAW = 0.85


def _progress(message: str) -> None:
    print(f"[bench_postgres {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server -----------------------------------------------------------------------------------


def postgres_servers() -> ModuleType:
    """``plugins/postgres/tests/postgres_servers.py``, the tests' own server finder (imported from
    its directory, as benchkit imports the Redis tests' servers)."""
    if str(POSTGRES_TESTS) not in sys.path:
        sys.path.insert(0, str(POSTGRES_TESTS))
    import postgres_servers

    return postgres_servers


@contextmanager
def postgres_database(url: str | None) -> Iterator[tuple[str, str]]:
    """``(url, what it is)``: the given database, or a fresh one dropped on exit."""
    if url:
        yield url, "given by --url / SESSIONSTORE_BENCH_POSTGRES_URL"
        return
    servers = postgres_servers()
    try:
        with servers.fresh_database_url() as fresh:
            yield fresh, f"fresh database {fresh.rsplit('/', 1)[1]} on {fresh.split('@')[-1]}"
    except servers.PostgresUnavailable as exc:
        raise SystemExit(f"bench_postgres: {exc}") from None


# -- part 1: speed --------------------------------------------------------------------------------


@dataclass
class Ctx(bench_redis.Ctx):
    """bench_redis.py's context of part 1, its fields holding this backend's things: ``raw`` the
    asyncpg pool, ``base`` the namespace (``peers`` and ``cas_sha`` are unused)."""

    @property
    def pool(self) -> asyncpg.Pool:
        return self.raw  # type: ignore[no-any-return]

    @property
    def namespace(self) -> str:
        return self.base


def _now_ms() -> int:
    return int(time.time() * 1000)


SQL = Statements(SCHEMA, notify=True)  # the backend's statements, at its default options


async def _time_in_order(ctx: Ctx, one: Callable[[int], Awaitable[None]]) -> float:
    gc.collect()
    start = perf_counter()
    for index in range(len(ctx.ids)):
        await one(index)
    return perf_counter() - start


async def _time_by_tasks(ctx: Ctx, one: Callable[[int], Awaitable[None]]) -> float:
    async def worker(part: range) -> None:
        for index in part:
            await one(index)

    parts = _slices(len(ctx.ids))
    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(worker(part) for part in parts))
    return perf_counter() - start


def _ours_get(ctx: Ctx) -> Callable[[int], Awaitable[None]]:
    get, ids = ctx.store.get_session, ctx.ids

    async def one(index: int) -> None:
        await get(ids[index])

    return one


def _raw_get(ctx: Ctx) -> Callable[[int], Awaitable[None]]:
    fetchrow, ids, namespace = ctx.pool.fetchrow, ctx.ids, ctx.namespace
    sql = SQL.get

    async def one(index: int) -> None:
        session_id = ids[index]
        row = await fetchrow(sql, namespace, session_id, _now_ms())
        if row is None:
            raise SessionNotFoundError(session_id)
        decode_session(new_record((session_id, *row)))  # as the backend and the store do

    return one


def _ours_update(ctx: Ctx) -> Callable[[int], Awaitable[None]]:
    update, sessions = ctx.store.update_session, ctx.sessions

    async def one(index: int) -> None:
        await update(sessions[index])

    return one


def _raw_update(ctx: Ctx) -> Callable[[int], Awaitable[None]]:
    fetchrow, namespace = ctx.pool.fetchrow, ctx.namespace
    sessions, versions, incarnations = ctx.sessions, ctx.versions, ctx.incarnations
    sql = SQL.update

    async def one(index: int) -> None:
        session = sessions[index]
        new = versions[index] + 1
        payload = encode_session(session)
        now = _now_ms()
        deadline = now + TTL_S * 1000
        found, updated = await fetchrow(
            sql, namespace, session.id, new, deadline, payload, incarnations[index], now
        )
        if not updated:
            raise ConflictError(session.id) if found else SessionNotFoundError(session.id)
        versions[index] = new

    return one


async def ours_get(ctx: Ctx) -> float:
    return await _time_in_order(ctx, _ours_get(ctx))


async def raw_get(ctx: Ctx) -> float:
    return await _time_in_order(ctx, _raw_get(ctx))


async def ours_get_x50(ctx: Ctx) -> float:
    return await _time_by_tasks(ctx, _ours_get(ctx))


async def raw_get_x50(ctx: Ctx) -> float:
    return await _time_by_tasks(ctx, _raw_get(ctx))


async def ours_update(ctx: Ctx) -> float:
    ctx.sync_to_sessions()
    elapsed = await _time_in_order(ctx, _ours_update(ctx))
    ctx.sync_from_sessions()
    return elapsed


async def raw_update(ctx: Ctx) -> float:
    return await _time_in_order(ctx, _raw_update(ctx))


async def ours_update_x50(ctx: Ctx) -> float:
    ctx.sync_to_sessions()
    elapsed = await _time_by_tasks(ctx, _ours_update(ctx))
    ctx.sync_from_sessions()
    return elapsed


async def raw_update_x50(ctx: Ctx) -> float:
    return await _time_by_tasks(ctx, _raw_update(ctx))


async def ours_batch(ctx: Ctx) -> float:
    get_many = ctx.store.get_sessions_batch
    batches = ctx.batches()
    gc.collect()
    start = perf_counter()
    for batch in batches:
        found = await get_many(batch)
        if len(found) != len(batch):
            raise SessionNotFoundError(*batch)
    return perf_counter() - start


async def raw_batch(ctx: Ctx) -> float:
    fetch, namespace = ctx.pool.fetch, ctx.namespace
    sql = SQL.get_many
    batches = ctx.batches()
    gc.collect()
    start = perf_counter()
    for batch in batches:
        rows = await fetch(sql, namespace, batch, _now_ms())
        found = [decode_session(new_record(tuple(row))) for row in rows]
        if len(found) != len(batch):
            raise SessionNotFoundError(*batch)
    return perf_counter() - start


RUNNERS: dict[tuple[str, str], Callable[[Ctx], Awaitable[float]]] = {
    ("get", "ours"): ours_get,
    ("get", "raw"): raw_get,
    ("update", "ours"): ours_update,
    ("update", "raw"): raw_update,
    ("get_x50", "ours"): ours_get_x50,
    ("get_x50", "raw"): raw_get_x50,
    ("update_x50", "ours"): ours_update_x50,
    ("update_x50", "raw"): raw_update_x50,
    ("batch", "ours"): ours_batch,
    ("batch", "raw"): raw_batch,
}


async def check_small(ctx: Ctx, rounds: int) -> None:
    """Both sides did the same work, and both compare-and-sets really compare."""
    expected = 1 + 4 * rounds  # update and update x50, by ours and raw, once per round
    check(all(v == expected for v in ctx.versions), f"tracked versions == {expected}")
    rows = await ctx.pool.fetch(SQL.get_many, ctx.namespace, ctx.ids, _now_ms())
    check(len(rows) == len(ctx.ids), "every session is there")
    check(all(row["version"] == expected for row in rows), f"every stored version is {expected}")
    ctx.sync_to_sessions()
    for session in (ctx.sessions[0], ctx.sessions[-1]):
        got = await ctx.store.get_session(session.id)
        check(got.version == expected, "the store reads the version the raw update wrote")
        check(
            got.model_dump(exclude={"version"}) == session.model_dump(exclude={"version"}),
            "round-trip after the updates",
        )
    index = len(ctx.sessions) // 2
    session = ctx.sessions[index]
    ctx.versions[index] = expected - 1
    try:
        await _raw_update(ctx)(index)
    except ConflictError:
        pass
    else:
        raise RuntimeError("benchmark sanity check failed: the raw update took a stale version")
    session.__dict__["version"] = expected - 1
    try:
        await ctx.store.update_session(session)
    except ConflictError:
        pass
    else:
        raise RuntimeError("benchmark sanity check failed: update_session took a stale version")
    session.__dict__["version"] = expected
    check((await ctx.store.get_session(session.id)).version == expected, "stale writes refused")


async def _no_reset(connection: asyncpg.Connection) -> None:
    """The raw pool's reset on release: none (asyncpg still rolls back an open transaction)."""


async def run_speed(url: str, count: int, rounds: int, tag: str) -> dict[str, Any]:
    """Every round runs every operation on both sides, rotating which side goes first."""
    namespace = f"bench-{tag}"
    sides = ("ours", "raw")
    times: dict[str, dict[str, list[float]]] = {op: {s: [] for s in sides} for op in OPERATIONS}
    async with (
        open_store(url, namespace=namespace, ttl=TTL_S) as store,
        # The raw side's pool sends no reset on release either, as the backend's does not: the
        # same round trips on both sides.
        asyncpg.create_pool(url, reset=_no_reset) as pool,
    ):
        _progress(f"part 1: creating {count:,} sessions (namespace {namespace})")
        sessions = [await store.create_session(proxy_session()) for _ in range(count)]
        random.shuffle(sessions)
        incarnations = []
        for session in sessions:
            private = session.__pydantic_private__
            incarnations.append(0 if private is None else private.get("_incarnation", 0))
        check(all(incarnations), "create_session sets an incarnation")
        ids = [s.id for s in sessions]
        ctx = Ctx(store, pool, None, namespace, "", sessions, ids, incarnations)
        ctx.sync_from_sessions()
        await raw_get(ctx)  # warm both pools and both statement caches
        await ours_get(ctx)
        for round_index in range(rounds):
            _progress(f"part 1: round {round_index + 1}/{rounds}")
            shift = round_index % len(sides)
            for op in OPERATIONS:
                for side in sides[shift:] + sides[:shift]:
                    calls = BATCH_CALLS if op == "batch" else count
                    times[op][side].append(await RUNNERS[op, side](ctx) / calls)
        await check_small(ctx, rounds)
        server = await pool.fetchval("SHOW server_version")
        pool_size = pool.get_max_size()
        await store.clear()
    return {"times": times, "server_version": server, "raw_pool_size": pool_size}


def spread(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "best": min(seconds),
        "median": statistics.median(seconds),
        "worst": max(seconds),
    }


def summarize_speed(speed: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for op in OPERATIONS:
        ours, raw = spread(speed["times"][op]["ours"]), spread(speed["times"][op]["raw"])
        ratio = raw["best"] / ours["best"]  # ours ops/s / raw ops/s
        rows.append(
            {
                "operation": op,
                "raw_does": RAW_DOES[op],
                "ours_s_per_op": ours,
                "raw_s_per_op": raw,
                "ratio": ratio,
                "median_ratio": raw["median"] / ours["median"],
                "target_min_ratio": TARGET_VS_RAW,
                "within_target": ratio >= TARGET_VS_RAW,
            }
        )
    return rows


# -- part 2: statements of a batch ----------------------------------------------------------------


async def _statements_of(
    admin: asyncpg.Connection, action: Callable[[], Awaitable[None]], resets: set[str]
) -> list[dict[str, Any]]:
    """What the server executed for ``action()``: each statement, its calls, and whether it is
    part of the query asyncpg's pool sends when a connection goes back to it (``reset``)."""
    await admin.execute("SELECT pg_stat_statements_reset()")
    await action()
    rows = await admin.fetch(
        "SELECT query, calls FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC"
    )
    return [
        {"query": r["query"], "calls": r["calls"], "reset": r["query"].strip() in resets}
        for r in rows
    ]


async def run_round_trips(tag: str) -> dict[str, Any]:
    """On a throwaway cluster with pg_stat_statements: the statements of one batch, ours (through
    the store) and raw (one ``fetch`` on a plain connection)."""
    servers = postgres_servers()
    try:
        cluster = servers.PostgresCluster()
    except servers.PostgresUnavailable as exc:
        return {"skipped": str(exc)}
    with cluster:
        admin = await asyncpg.connect(cluster.url)
        try:
            await admin.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        finally:
            await admin.close()
        cluster.restart()
        url = cluster.url
        admin = await asyncpg.connect(url)
        try:
            await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            namespace = f"bench-batch-{tag}"
            raw = await asyncpg.connect(url)
            async with open_store(url, namespace=namespace, ttl=TTL_S) as store:
                ids = [(await store.create_session(proxy_session())).id for _ in range(BATCH_SIZE)]
                random.shuffle(ids)
                sql = SQL.get_many

                async def ours() -> None:
                    found = await store.get_sessions_batch(ids)
                    check(len(found) == BATCH_SIZE, "ours: the batch finds every session")

                async def theirs() -> None:
                    rows = await raw.fetch(sql, namespace, ids, _now_ms())
                    check(len(rows) == BATCH_SIZE, "raw: the batch finds every session")

                await ours()  # prepares the statement in asyncpg's cache, as in a running app
                await theirs()
                resets = {q.strip() for q in raw.get_reset_query().split(";") if q.strip()}
                ours_rows = await _statements_of(admin, ours, resets)
                raw_rows = await _statements_of(admin, theirs, resets)
            await raw.close()
        finally:
            await admin.close()
    return {
        "ours": ours_rows,
        "raw": raw_rows,
        "server": f"throwaway cluster on 127.0.0.1:{cluster.port}",
    }


# -- part 3: events against mcp-persist -----------------------------------------------------------


def missing_event_pieces() -> dict[str, str]:
    """What part 3 cannot import, and why: it is then skipped, saying so."""
    missing: dict[str, str] = {}
    try:
        import bench_mcp

        missing.update(bench_mcp.missing_pieces())
        missing.pop("aiosqlite", None)
        from mcp_persist import PostgresEventStore  # noqa: F401
    except ImportError as exc:
        missing.setdefault("mcp-persist[postgres]", f"{type(exc).__name__}: {exc}")
    return missing


@asynccontextmanager
async def postgres_event_sides(
    url: str, tag: str, *, clean_up: bool
) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    from bench_mcp import (
        EVENT_RETENTION,
        ours_side,
        theirs_bare_side,
        theirs_scoped_side,
    )
    from mcp_persist import PostgresEventStore

    namespace = f"bench-mcp-{tag}"
    tables = (f"bench_mcp_{tag}", f"bench_mcp_bare_{tag}")
    async with AsyncExitStack() as stack:
        ours = await stack.enter_async_context(
            open_store(url, namespace=namespace, ttl=TTL_S, event_retention=EVENT_RETENTION)
        )
        quiet = await stack.enter_async_context(
            open_store(
                url,
                namespace=f"{namespace}-quiet",
                ttl=TTL_S,
                event_retention=EVENT_RETENTION,
                notify=False,
            )
        )
        theirs = await stack.enter_async_context(
            PostgresEventStore.create(url, table_name=tables[0], ttl=TTL_S)
        )
        bare = await stack.enter_async_context(
            PostgresEventStore.create(url, table_name=tables[1], ttl=TTL_S)
        )
        pool = theirs._pool
        info = {
            "ours": "SessionEventStore over the backend at its defaults (notify=True)",
            "ours_quiet": "the same with notify=False (no pg_notify per append), for reference",
            "theirs": f"PostgresEventStore, table {tables[0]}, asyncpg pool of "
            f"{pool.get_max_size()}; scoped by SessionScopedEventStore",
            "theirs_bare": f"PostgresEventStore, table {tables[1]}, called directly",
        }
        sides = {
            "ours": ours_side(ours),
            "ours_quiet": ours_side(quiet),
            "theirs": theirs_scoped_side("theirs", theirs),
            "theirs_bare": theirs_bare_side(bare),
        }
        try:
            yield sides, info
        finally:
            if clean_up:
                await ours.clear()
                await quiet.clear()
                for table in tables:
                    await pool.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_forks"')


async def run_events(url: str, events: int, rounds: int, tag: str, *, clean_up: bool) -> dict:
    from bench_mcp import run_rounds, summarize

    async with postgres_event_sides(url, tag, clean_up=clean_up) as (sides, info):
        times = await run_rounds("postgres", sides, events, rounds)
    summary = summarize(times)
    for comparison in summary["comparisons"]:
        op, side = comparison["operation"], comparison["baseline"]
        comparison["ours_side"] = "ours"
        comparison["ours_spread"] = spread(times[op]["ours"])
        comparison["baseline_spread"] = spread(times[op][side])
    # For reference: ours without notifications, against the scoped mcp-persist store.
    for op in times:
        quiet, theirs = spread(times[op]["ours_quiet"]), spread(times[op]["theirs"])
        summary["comparisons"].append(
            {
                "operation": op,
                "baseline": "theirs",
                "baseline_is": "mcp-persist, session-scoped",
                "ours_side": "ours_quiet",
                "ours_spread": quiet,
                "baseline_spread": theirs,
                "ratio": theirs["best"] / quiet["best"],
                "target_min_ratio": None,
                "ahead": None,
            }
        )
    return {"info": info, "summary": summary}


# -- part 4: scale --------------------------------------------------------------------------------


def _rows(namespace: str, count: int, deadline: int) -> tuple[list[tuple[Any, ...]], int]:
    """``count`` rows as the backend stores a created session, and the sum of their id hashes."""
    rows = []
    total = 0
    for _ in range(count):
        session = proxy_session()
        session.__dict__["version"] = 1
        incarnation = random.getrandbits(62) + 1
        rows.append((namespace, session.id, 1, deadline, encode_session(session), incarnation))
        total = (total + id_hash(session.id)) & HASH_MASK
    return rows, total


async def copy_sessions(url: str, namespace: str, count: int) -> int:
    """Write ``count`` sessions into the backend's table with COPY; their id hash sum."""
    deadline = _now_ms() + SCALE_TTL_MS
    total = 0
    connection = await asyncpg.connect(url)
    try:
        written = 0
        while written < count:
            rows, hashed = _rows(namespace, min(COPY_CHUNK, count - written), deadline)
            await connection.copy_records_to_table(
                "sessions",
                schema_name=SCHEMA,
                columns=["namespace", "id", "version", "deadline", "payload", "incarnation"],
                records=rows,
            )
            written += len(rows)
            total = (total + hashed) & HASH_MASK
            if written % 200_000 == 0 or written == count:
                _progress(f"part 4: {written:,}/{count:,} sessions written")
        await connection.execute(f"ANALYZE {SCHEMA}.sessions")
    finally:
        await connection.close()
    return total


async def run_scale(url: str, count: int, tag: str, *, clean_up: bool) -> dict[str, Any]:
    namespace = f"bench-scale-{tag}"
    tenth = count // 10
    out: dict[str, Any] = {"sessions": count}
    async with open_store(url, namespace=namespace) as store:
        await store.count_sessions()  # creates the schema before COPY writes into it
        start = perf_counter()
        hashed = await copy_sessions(url, namespace, tenth)
        out["write_tenth_s"] = perf_counter() - start
        out["count_tenth_s"] = await _count_best(store, tenth)
        _progress(f"part 4: iter_sessions over {tenth:,}")
        out["iter_tenth"] = await _iterate(store, tenth, hashed)
        start = perf_counter()
        hashed = (hashed + await copy_sessions(url, namespace, count - tenth)) & HASH_MASK
        out["write_rest_s"] = perf_counter() - start
        out["count_full_s"] = await _count_best(store, count)
        _progress(f"part 4: iter_sessions over {count:,}")
        out["iter_full"] = await _iterate(store, count, hashed)
        if clean_up:
            _progress(f"part 4: removing the namespace {namespace}")
            await store.clear()
    return out


# -- report ---------------------------------------------------------------------------------------


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _spread_text(s: dict[str, float], scale: float = 1e6) -> str:
    return f"{s['best'] * scale:,.0f}/{s['median'] * scale:,.0f}/{s['worst'] * scale:,.0f}"


def render(summary: dict[str, Any]) -> str:
    lines = [
        "sessionstore postgres backend: SessionStore facade vs raw asyncpg; SessionEventStore vs "
        "mcp-persist PostgresEventStore",
        f"python {summary['python']} ({summary['implementation']}), sessionstore "
        f"{summary['sessionstore']}, asyncpg {summary['asyncpg']}, PostgreSQL "
        f"{summary['server_version']}, mcp-persist {summary['mcp_persist']}, {summary['cpus']} "
        f"CPUs, {summary['platform']}",
        f"database: {summary['database']}",
        f"sessions {summary['sessions']:,}, rounds {summary['rounds']}, {CONCURRENCY} tasks for "
        f"x{CONCURRENCY}, batch = {BATCH_CALLS} calls of {BATCH_SIZE:,} ids, raw pool of "
        f"{summary['raw_pool_size']}, wall {summary['wall_s']:.1f} s",
        "",
        "part 1: speed against raw asyncpg (the backend's statement + the codec)",
    ]
    header = (
        f"{'operation':<14}{'raw does':<44}{'ours us best/med/worst':>24}"
        f"{'raw us best/med/worst':>24}{'ratio':>7}{'(med)':>7}  target"
    )
    lines += [header, "-" * (len(header) + 12)]
    for row in summary["speed"]:
        verdict = "ok" if row["within_target"] else "MISS"
        lines.append(
            f"{OP_LABELS[row['operation']]:<14}{row['raw_does']:<44}"
            f"{_spread_text(row['ours_s_per_op']):>24}{_spread_text(row['raw_s_per_op']):>24}"
            f"{row['ratio']:>7.2f}{row['median_ratio']:>7.2f}  >= {TARGET_VS_RAW:g} {verdict}"
        )
    lines += [
        "ratio = ours ops/s / raw ops/s of the best rounds ((med): of the median rounds); for "
        f"batch an op is one call of {BATCH_SIZE:,} ids",
        "",
        f"part 2: statements the server ran for one get_sessions_batch of {BATCH_SIZE:,} ids "
        "(pg_stat_statements)",
    ]
    trips = summary["round_trips"]
    if "skipped" in trips:
        lines.append(f"SKIPPED: {trips['skipped']}")
    else:
        lines.append(f"  on a {trips['server']}")
        for side, what in (("ours", "get_sessions_batch"), ("raw", "fetch, plain connection")):
            rows = trips[side]
            work = sum(r["calls"] for r in rows if not r["reset"])
            reset = sum(r["calls"] for r in rows if r["reset"])
            lines.append(
                f"  {side} ({what}): {work} statement(s) of its own"
                + (f", then the pool's reset: {reset} statements in one message" if reset else "")
            )
            for r in rows:
                mark = "  (pool reset)" if r["reset"] else ""
                lines.append(f"    {r['calls']} x {' '.join(r['query'].split())}{mark}")
        lines.append(
            "  a statement in asyncpg's cache is one round trip (Bind, Execute, Sync sent "
            "together); asyncpg's pool sends its reset query as one more when the connection "
            "goes back to the pool (Pool(reset=...) can replace it)"
        )
    lines += ["", "part 3: events through the SDK's EventStore interface, vs mcp-persist"]
    events = summary["events"]
    if "skipped" in events:
        lines.append(f"SKIPPED: {events['skipped']}")
    else:
        lines += [f"  {k}: {v}" for k, v in events["info"].items()]
        header = (
            f"{'operation':<18}{'ours':<11}{'baseline':<36}{'ours best/med/worst':>26}"
            f"{'base best/med/worst':>26}{'ratio':>7}  target"
        )
        lines += [header, "-" * (len(header) + 12)]
        for c in events["summary"]["comparisons"]:
            replay = c["operation"] == "replay"
            unit, scale = ("ms", 1e3) if replay else ("us", 1e6)
            if c["target_min_ratio"] is None:
                goal = "(reference)"
            else:
                goal = f"> {c['target_min_ratio']:g} " + ("ok" if c["ahead"] else "BEHIND")
            label = {"store": "store_event", "store_x50": f"store_event x{CONCURRENCY}"}.get(
                c["operation"], "replay 10,000"
            )
            lines.append(
                f"{label:<18}{c['ours_side']:<11}{c['baseline_is']:<36}"
                f"{_spread_text(c['ours_spread'], scale) + ' ' + unit:>26}"
                f"{_spread_text(c['baseline_spread'], scale) + ' ' + unit:>26}"
                f"{c['ratio']:>7.2f}  {goal}"
            )
        lines.append(
            "ratio = ours events/s / baseline events/s (best rounds); times per event "
            "(store_event) or per replay of 10,000 events"
        )
    scale = summary["scale"]
    if scale is None:
        return "\n".join(lines)
    n = scale["sessions"]
    tenth = n // 10
    count_ok = scale["count_full_s"] < COUNT_TARGET_S
    peak_tenth, peak_full = scale["iter_tenth"]["peak_bytes"], scale["iter_full"]["peak_bytes"]
    flat = peak_full <= SIMILAR_FACTOR * max(peak_tenth, 1)
    it_t, it_f = scale["iter_tenth"], scale["iter_full"]
    lines += [
        "",
        f"part 4: scale, {n:,} sessions written with COPY in "
        f"{scale['write_tenth_s'] + scale['write_rest_s']:.1f} s",
        f"{'measure':<36}{'at N/10':>18}{'at N':>18}  target",
        f"{'count_sessions (best of 5)':<36}{scale['count_tenth_s'] * 1e3:>15.2f} ms"
        f"{scale['count_full_s'] * 1e3:>15.2f} ms  < {COUNT_TARGET_S * 1e3:g} ms "
        + ("ok" if count_ok else "MISS"),
        f"{'iter_sessions: sessions/s':<36}{tenth / it_t['s']:>18,.0f}{n / it_f['s']:>18,.0f}",
        f"{'iter_sessions: peak traced memory':<36}{_mib(peak_tenth):>18}{_mib(peak_full):>18}"
        f"  flat (<= {SIMILAR_FACTOR:g}x) " + ("ok" if flat else "GREW"),
    ]
    return "\n".join(lines)


async def run(args: Any, url: str, tag: str, *, clean_up: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["speed"] = await run_speed(url, args.sessions, args.rounds, tag)
    _progress("part 2: a throwaway cluster with pg_stat_statements")
    out["round_trips"] = await run_round_trips(tag)
    missing = missing_event_pieces()
    if missing:
        out["events"] = {"skipped": "; ".join(f"{k}: {v}" for k, v in missing.items())}
    else:
        _progress("part 3: events, ours vs mcp-persist")
        out["events"] = await run_events(url, args.events, args.rounds, tag, clean_up=clean_up)
    if args.scale:
        out["scale"] = await run_scale(url, args.scale, tag, clean_up=clean_up)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__, sessions=DEFAULT_SESSIONS, rounds=DEFAULT_ROUNDS)
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help="events per store_event round of part 3, a multiple of 500 (%(default)s)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=DEFAULT_SCALE,
        help="sessions in part 4, 0 to skip it (%(default)s)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("SESSIONSTORE_BENCH_POSTGRES_URL"),
        help="a postgresql:// URL of a database to use instead of a fresh one "
        "(default: $SESSIONSTORE_BENCH_POSTGRES_URL)",
    )
    args = parser.parse_args(argv)
    if args.sessions < BATCH_SIZE or args.rounds < 1 or args.scale < 0:
        parser.error(f"--sessions must be at least {BATCH_SIZE}, --rounds 1, --scale 0")
    if 0 < args.scale < 10 or args.events < 500 or args.events % 500:
        parser.error("--scale must be 0 or at least 10, --events a positive multiple of 500")
    start = perf_counter()
    tag = secrets.token_hex(4)
    with postgres_database(args.url) as (url, what):
        results = asyncio.run(run(args, url, tag, clean_up=bool(args.url)))
    speed = results["speed"]
    summary = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sessionstore": __version__,
        "asyncpg": _version("asyncpg"),
        "mcp_persist": _version("mcp-persist"),
        "server_version": speed["server_version"],
        "cpus": os.cpu_count(),
        "database": what,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "raw_pool_size": speed["raw_pool_size"],
        "wall_s": perf_counter() - start,
        "speed": summarize_speed(speed),
        "speed_all_s_per_op": speed["times"],
        "round_trips": results["round_trips"],
        "events": results["events"],
        "scale": results.get("scale"),
    }
    return emit(summary, as_json=args.json, render=render)


if __name__ == "__main__":
    sys.exit(main())
