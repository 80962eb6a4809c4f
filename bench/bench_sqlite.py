"""Benchmark: the SQLite backend through the SessionStore facade against raw sqlite3 and aiosqlite.

Part 1 (``--sessions N`` sessions, created through the store in ``<tmp>/bench.db``):

* get: the framework (``store.get_session(id)`` on ``open_store("sqlite:///<tmp>/bench.db")``)
  against raw stdlib ``sqlite3`` on the same file running the backend's SELECT plus the public
  codec (``decode_session(SessionRecord(...))``) in a plain synchronous loop, and against
  ``aiosqlite`` running the same SELECT plus decode with one ``await db.execute(...)`` and
  ``await cursor.fetchone()`` per get (and, for reference, ``await db.execute_fetchall(...)``:
  one thread hop per get, the best an executor-based design can do);
* update (compare-and-set): ``store.update_session(session)`` passing back the returned object,
  against raw ``sqlite3`` running ``encode_session`` plus the backend's version-checked UPDATE
  (autocommit, rowcount checked), and, for reference, ``aiosqlite`` running the same UPDATE.

Every side works on the same N ids in the same random order. Raw and aiosqlite connections are
opened with ``isolation_level=None`` (autocommit) on the same WAL file and set
``synchronous = NORMAL`` as the backend does by default (with SQLite's default FULL every raw
commit would fsync, which would flatter the framework). Each (side, operation) runs several
rounds, rotating which side goes first, and the best (fastest) round of each counts, since a
shared machine is noisy. ``gc.collect()`` runs before every timed loop. The ratio is throughput:
framework ops/s / baseline ops/s (targets: >= 0.5 against raw sqlite3 for get and update, >= 4
against aiosqlite execute+fetchone for get).

Part 2 (``--big N`` sessions, default 1,000,000; ``--big 0`` skips it), in ``<tmp>/big.db``: a
child process creates the schema through the store, then fills the table with raw ``sqlite3``
``executemany`` of encoded payloads in transactions of 50,000 rows (through the table, so the
triggers keep ``session_counts`` right), about 10% with a deadline in the past. Then, through the
store: ``count_sessions`` (best of 5, target < 50 ms, must equal the live rows), ``iter_sessions``
over everything (time, number yielded, RSS: the peak is reset through ``/proc/self/clear_refs``
before iterating where Linux allows it, and VmRSS is sampled every 50,000 sessions),
``get_sessions_batch`` of 1,000 ids (live, expired and missing; best of 5) against 1,000
``get_session`` calls, and ``purge_expired``. The backend fetches a batch with one SELECT
(``id IN (SELECT value FROM json_each(?))``, see ``session_get_many`` in backend.py); the
statements whose query plans are printed are copies of the backend's SQL.

Everything lives in a temporary directory, deleted at the end. Run it with
``.venv/bin/python bench/bench_sqlite.py [--sessions N] [--rounds R] [--big N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import platform
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import aiosqlite
from benchkit import base_parser, check, emit, proxy_session

from sessionstore import (
    ConflictError,
    Session,
    SessionNotFoundError,
    SessionRecord,
    SessionStore,
    __version__,
    decode_session,
    encode_session,
    new_session_id,
    open_store,
)

DEFAULT_SESSIONS = 20_000
DEFAULT_ROUNDS = 5
DEFAULT_BIG = 1_000_000
AIOSQLITE_SHARE = 4  # the aiosqlite sides (~10x slower) run the first 1/4 of the ids
NAMESPACE = "bench"
TTL_S = 3600
TTL_MS = TTL_S * 1000

# Copies of the backend's statements (plugins/sqlite/src/sessionstore_sqlite/backend.py).
GET_SQL = (
    "SELECT version, deadline, payload FROM sessions "
    "WHERE namespace = ? AND id = ? AND (deadline IS NULL OR deadline > ?)"
)
UPDATE_SQL = (
    "UPDATE sessions SET version = ?, deadline = ?, payload = ? "
    "WHERE namespace = ? AND id = ? AND version = ? AND (deadline IS NULL OR deadline > ?)"
)
COUNT_SQL = (
    "SELECT coalesce((SELECT n FROM session_counts WHERE namespace = ?1), 0) - "
    "(SELECT count(*) FROM sessions WHERE namespace = ?1 AND deadline <= ?2)"
)
BATCH_SQL = (
    "SELECT id, version, deadline, payload FROM sessions WHERE namespace = ? "
    "AND id IN (SELECT value FROM json_each(?)) AND (deadline IS NULL OR deadline > ?)"
)
INSERT_SQL = (
    "INSERT INTO sessions (namespace, id, version, deadline, payload) VALUES (?, ?, ?, ?, ?)"
)

SIDES = {
    "get": ("framework", "raw", "aiosqlite", "aiosqlite_1hop"),
    "update": ("framework", "raw", "aiosqlite"),
}
SIDE_LABELS = {
    "framework": "store (framework)",
    "raw": "raw sqlite3",
    "aiosqlite": "aiosqlite",
    "aiosqlite_1hop": "aiosqlite 1 hop",
}
# (operation, baseline side, what the baseline does, minimum throughput ratio or None)
COMPARISONS: tuple[tuple[str, str, str, float | None], ...] = (
    ("get", "raw", "raw sqlite3 SELECT + decode", 0.5),
    ("get", "aiosqlite", "aiosqlite execute + fetchone", 4.0),
    ("get", "aiosqlite_1hop", "aiosqlite execute_fetchall", None),
    ("update", "raw", "raw sqlite3 encode + UPDATE", 0.5),
    ("update", "aiosqlite", "aiosqlite encode + UPDATE", None),
)
COUNT_TARGET_S = 0.050
BIG_CHUNK = 50_000
RSS_SAMPLE_EVERY = 50_000
FLAT_RSS_KIB = 16 * 1024  # "flat": the VmRSS samples stay within 16 MiB of each other
EXPIRED_FRACTION = 0.1
BATCH_SIZE = 1000


def _progress(message: str) -> None:
    print(f"[bench_sqlite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _store_spec(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path gives sqlite:////abs/path.db


def _raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    check(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal", "raw WAL mode")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


# -- part 1: get and update, three sides on one file ---------------------------------------------


@dataclass
class Small:
    """What every side of part 1 shares: the connections, the sessions and the order."""

    store: SessionStore
    raw: sqlite3.Connection
    aio: aiosqlite.Connection
    sessions: list[Session]  # the objects the store returned, in the (random) order of the ops
    ids: list[str]
    aio_count: int  # the aiosqlite sides run the first aio_count of the same ids
    versions: list[int] = field(default_factory=list)  # the stored version of each, as known

    def sync_from_sessions(self) -> None:
        self.versions = [session.version for session in self.sessions]

    def sync_to_sessions(self) -> None:
        for session, version in zip(self.sessions, self.versions, strict=True):
            session.__dict__["version"] = version  # as the facade does; not a timed step


async def framework_get(ctx: Small) -> float:
    get = ctx.store.get_session
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        await get(session_id)
    return perf_counter() - start


async def raw_get(ctx: Small) -> float:
    execute = ctx.raw.execute
    decode, record, clock, ns = decode_session, SessionRecord, time.time, NAMESPACE
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        row = execute(GET_SQL, (ns, session_id, int(clock() * 1000))).fetchone()
        if row is None:
            raise SessionNotFoundError(session_id)
        decode(record(session_id, *row))
    return perf_counter() - start


async def aiosqlite_get(ctx: Small) -> float:
    db = ctx.aio
    decode, record, clock, ns = decode_session, SessionRecord, time.time, NAMESPACE
    ids = ctx.ids[: ctx.aio_count]
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        cursor = await db.execute(GET_SQL, (ns, session_id, int(clock() * 1000)))
        row = await cursor.fetchone()
        if row is None:
            raise SessionNotFoundError(session_id)
        decode(record(session_id, *row))
    return perf_counter() - start


async def aiosqlite_1hop_get(ctx: Small) -> float:
    db = ctx.aio
    decode, record, clock, ns = decode_session, SessionRecord, time.time, NAMESPACE
    ids = ctx.ids[: ctx.aio_count]
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        rows = await db.execute_fetchall(GET_SQL, (ns, session_id, int(clock() * 1000)))
        row = next(iter(rows), None)
        if row is None:
            raise SessionNotFoundError(session_id)
        decode(record(session_id, *row))
    return perf_counter() - start


async def framework_update(ctx: Small) -> float:
    ctx.sync_to_sessions()
    update = ctx.store.update_session
    sessions = ctx.sessions
    gc.collect()
    start = perf_counter()
    for session in sessions:
        await update(session)
    elapsed = perf_counter() - start
    ctx.sync_from_sessions()
    return elapsed


async def raw_update(ctx: Small) -> float:
    execute = ctx.raw.execute
    encode, clock, ns = encode_session, time.time, NAMESPACE
    sessions, versions = ctx.sessions, ctx.versions
    gc.collect()
    start = perf_counter()
    for index, session in enumerate(sessions):
        version = versions[index]
        payload = encode(session)
        now = int(clock() * 1000)
        params = (version + 1, now + TTL_MS, payload, ns, session.id, version, now)
        if execute(UPDATE_SQL, params).rowcount != 1:
            raise ConflictError(session.id)
        versions[index] = version + 1
    return perf_counter() - start


async def aiosqlite_update(ctx: Small) -> float:
    db = ctx.aio
    encode, clock, ns = encode_session, time.time, NAMESPACE
    sessions, versions = ctx.sessions[: ctx.aio_count], ctx.versions
    gc.collect()
    start = perf_counter()
    for index, session in enumerate(sessions):
        version = versions[index]
        payload = encode(session)
        now = int(clock() * 1000)
        params = (version + 1, now + TTL_MS, payload, ns, session.id, version, now)
        cursor = await db.execute(UPDATE_SQL, params)
        if cursor.rowcount != 1:
            raise ConflictError(session.id)
        versions[index] = version + 1
    return perf_counter() - start


RUNNERS: dict[tuple[str, str], Callable[[Small], Awaitable[float]]] = {
    ("get", "framework"): framework_get,
    ("get", "raw"): raw_get,
    ("get", "aiosqlite"): aiosqlite_get,
    ("get", "aiosqlite_1hop"): aiosqlite_1hop_get,
    ("update", "framework"): framework_update,
    ("update", "raw"): raw_update,
    ("update", "aiosqlite"): aiosqlite_update,
}


async def run_small(
    folder: Path, count: int, aio_count: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Every round runs every operation on every side, rotating which side goes first.

    Returns the seconds per operation of every (operation, side, round).
    """
    path = folder / "bench.db"
    times: dict[str, dict[str, list[float]]] = {
        op: {side: [] for side in sides} for op, sides in SIDES.items()
    }
    async with open_store(_store_spec(path), namespace=NAMESPACE, ttl=TTL_S) as store:
        _progress(f"part 1: creating {count:,} sessions in {path}")
        sessions = [await store.create_session(proxy_session()) for _ in range(count)]
        random.shuffle(sessions)
        raw = _raw_connect(path)
        try:
            async with aiosqlite.connect(path, isolation_level=None) as aio:
                await aio.execute("PRAGMA synchronous = NORMAL")
                ctx = Small(store, raw, aio, sessions, [s.id for s in sessions], aio_count)
                ctx.sync_from_sessions()
                for round_index in range(rounds):
                    _progress(f"part 1: round {round_index + 1}/{rounds}")
                    for op, sides in SIDES.items():
                        shift = round_index % len(sides)
                        for side in sides[shift:] + sides[:shift]:
                            ops = aio_count if side.startswith("aiosqlite") else count
                            times[op][side].append(await RUNNERS[op, side](ctx) / ops)
                ctx.sync_to_sessions()
                for session in (sessions[0], sessions[-1]):
                    stored = await store.get_session(session.id)
                    check(stored.version == session.version, "versions after the updates")
                    same = stored.model_dump(exclude={"version"}) == session.model_dump(
                        exclude={"version"}
                    )
                    check(same, "round-trip after the updates")
                check(await store.count_sessions() == count, "part 1 count")
        finally:
            raw.close()
    return times


def summarize_small(times: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Best round of each side; ``times`` holds seconds per operation."""
    best = {op: {side: min(t) for side, t in sides.items()} for op, sides in times.items()}
    sides_out = {
        op: {
            side: {
                "ops_per_s": 1 / per_op,
                "us_per_op": per_op * 1e6,
                "round_us_per_op": [t * 1e6 for t in times[op][side]],
            }
            for side, per_op in sides.items()
        }
        for op, sides in best.items()
    }
    comparisons = []
    for op, baseline, what, target in COMPARISONS:
        framework, base = best[op]["framework"], best[op][baseline]
        ratio = base / framework  # throughput ratio: framework ops/s / baseline ops/s
        comparisons.append(
            {
                "operation": op,
                "baseline": baseline,
                "baseline_does": what,
                "framework_ops_per_s": 1 / framework,
                "baseline_ops_per_s": 1 / base,
                "framework_us_per_op": framework * 1e6,
                "baseline_us_per_op": base * 1e6,
                "overhead_us_per_op": (framework - base) * 1e6,
                "ratio": ratio,
                "target_min_ratio": target,
                "within_target": None if target is None else ratio >= target,
            }
        )
    return {"sides": sides_out, "comparisons": comparisons}


# -- part 2: a million sessions --------------------------------------------------------------------


async def _create_schema(path: Path) -> None:
    store = open_store(_store_spec(path), namespace=NAMESPACE)
    await store.aclose()


def _encode_chunk(session_ids: Sequence[str]) -> list[bytes]:
    """In a worker process: the payloads of new sessions with these ids."""
    return [encode_session(proxy_session(session_id)) for session_id in session_ids]


def populate(path: Path, count: int, seed: int) -> dict[str, Any]:
    """In a child process (its memory never shows in the parent's RSS): fill ``path``.

    Two worker processes build and encode the sessions while this one inserts them.
    """
    started = perf_counter()
    asyncio.run(_create_schema(path))
    rng = random.Random(seed)
    ids = sorted(new_session_id() for _ in range(count))  # key order: a fast B-tree build
    chunks = [ids[start : start + BIG_CHUNK] for start in range(0, count, BIG_CHUNK)]
    now_ms = int(time.time() * 1000)
    live_deadline = now_ms + 86_400_000
    live: list[str] = []
    expired: list[str] = []
    done = 0
    conn = sqlite3.connect(path, isolation_level=None)
    context = multiprocessing.get_context("spawn")
    try:
        conn.execute("PRAGMA synchronous = OFF")  # setup only; the store reopens it as usual
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB, in the child
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            for chunk, payloads in zip(chunks, pool.map(_encode_chunk, chunks), strict=True):
                rows = []
                for session_id, payload in zip(chunk, payloads, strict=True):
                    if rng.random() < EXPIRED_FRACTION:
                        deadline = now_ms - rng.randrange(1000, TTL_MS)
                        expired.append(session_id)
                    else:
                        deadline = live_deadline
                        live.append(session_id)
                    rows.append((NAMESPACE, session_id, 1, deadline, payload))
                conn.execute("BEGIN")
                conn.executemany(INSERT_SQL, rows)
                conn.execute("COMMIT")
                done += len(rows)
                if done % (BIG_CHUNK * 4) == 0 or done == count:
                    elapsed = perf_counter() - started
                    _progress(f"part 2: populated {done:,}/{count:,} ({elapsed:.0f} s)")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        stored = conn.execute(
            "SELECT n FROM session_counts WHERE namespace = ?", (NAMESPACE,)
        ).fetchone()
    finally:
        conn.close()
    check(stored is not None and stored[0] == count, "session_counts after populating")
    batch_live = rng.sample(live, min(len(live), BATCH_SIZE * 7 // 10))
    batch_expired = rng.sample(expired, min(len(expired), BATCH_SIZE * 2 // 10))
    batch_missing = [
        new_session_id() for _ in range(BATCH_SIZE - len(batch_live) - len(batch_expired))
    ]
    batch = batch_live + batch_expired + batch_missing
    rng.shuffle(batch)
    return {
        "rows": count,
        "live": len(live),
        "expired": len(expired),
        "batch_ids": batch,
        "batch_live": batch_live,
        "batch_expired": len(batch_expired),
        "batch_missing": len(batch_missing),
        "populate_s": perf_counter() - started,
    }


def _status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM, and so ru_maxrss) to the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def _best_of(times: int, action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(times):
        gc.collect()
        start = perf_counter()
        result = await action()
        best = min(best, perf_counter() - start)
    return best, result


async def measure_big(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    live, expired = info["live"], info["expired"]
    out: dict[str, Any] = {}
    with sqlite3.connect(path) as conn:
        now = int(time.time() * 1000)
        out["count_plan"] = [
            row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + COUNT_SQL, (NAMESPACE, now))
        ]
        out["batch_plan"] = [
            row[3]
            for row in conn.execute("EXPLAIN QUERY PLAN " + BATCH_SQL, (NAMESPACE, "[]", now))
        ]
    conn.close()
    async with open_store(_store_spec(path), namespace=NAMESPACE, ttl=TTL_S) as store:
        count_s, counted = await _best_of(5, store.count_sessions)
        check(counted == live, f"count_sessions {counted:,} != live rows {live:,}")
        out["count_s"] = count_s
        out["count"] = counted

        _progress(f"part 2: iter_sessions over {live:,} live sessions")
        gc.collect()
        out["maxrss_before_reset_kib"] = _maxrss_kib()
        out["peak_reset"] = _reset_peak_rss()
        out["maxrss_before_kib"] = _maxrss_kib()
        out["vmrss_before_kib"] = _status_kib("VmRSS")
        samples: list[int] = []
        yielded = 0
        start = perf_counter()
        async for _session in store.iter_sessions():
            yielded += 1
            if yielded % RSS_SAMPLE_EVERY == 0:
                rss = _status_kib("VmRSS")
                if rss is not None:
                    samples.append(rss)
                if yielded % (RSS_SAMPLE_EVERY * 4) == 0:
                    _progress(f"part 2: iterated {yielded:,}/{live:,}")
        out["iter_s"] = perf_counter() - start
        out["maxrss_after_kib"] = _maxrss_kib()
        out["vmrss_after_kib"] = _status_kib("VmRSS")
        out["iter_yielded"] = yielded
        out["rss_samples_kib"] = samples
        out["rss_flat"] = not samples or max(samples) - min(samples) <= FLAT_RSS_KIB
        check(yielded == live, f"iter_sessions yielded {yielded:,} != live rows {live:,}")

        ids = info["batch_ids"]
        batch_s, found = await _best_of(5, lambda: store.get_sessions_batch(ids))
        live_in_batch = set(info["batch_live"])
        check(
            [s.id for s in found] == [i for i in ids if i in live_in_batch],
            "get_sessions_batch returns the live ids in request order",
        )

        async def one_by_one() -> int:
            hits = 0
            for session_id in ids:
                try:
                    await store.get_session(session_id)
                except SessionNotFoundError:
                    continue
                hits += 1
            return hits

        singles_s, hits = await _best_of(5, one_by_one)
        check(hits == len(found), "single gets find what the batch finds")
        out.update(
            batch_ids=len(ids),
            batch_found=len(found),
            batch_expired=info["batch_expired"],
            batch_missing=info["batch_missing"],
            batch_s=batch_s,
            singles_s=singles_s,
        )

        # The same statement on a raw connection, without decoding: what the round costs.
        raw = _raw_connect(path)
        try:
            ids_json = json.dumps(ids)

            async def raw_batch() -> int:
                now = int(time.time() * 1000)
                return len(raw.execute(BATCH_SQL, (NAMESPACE, ids_json, now)).fetchall())

            out["raw_batch_s"], raw_found = await _best_of(5, raw_batch)
        finally:
            raw.close()
        check(raw_found == len(found), "the raw batch SELECT finds what the store finds")

        _progress(f"part 2: purge_expired of {expired:,} expired sessions")
        gc.collect()
        start = perf_counter()
        purged = await store.purge_expired()
        out["purge_s"] = perf_counter() - start
        out["purged"] = purged
        check(purged == expired, f"purge_expired removed {purged:,}, expected {expired:,}")
        count_after_s, counted = await _best_of(5, store.count_sessions)
        check(counted == live, "count after purge")
        out["count_after_purge_s"] = count_after_s
    return out


def run_big(folder: Path, count: int) -> dict[str, Any]:
    path = folder / "big.db"
    _progress(f"part 2: populating {count:,} sessions in {path} (child process)")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        info = pool.submit(populate, path, count, random.randrange(2**32)).result()
    out = asyncio.run(measure_big(path, info))
    size = sum(p.stat().st_size for p in folder.glob("big.db*"))
    return {
        **{k: v for k, v in info.items() if k not in ("batch_ids", "batch_live")},
        "file_bytes": size,
        **out,
    }


# -- report ----------------------------------------------------------------------------------------


def summarize(
    small: dict[str, Any], big: dict[str, Any] | None, args: argparse.Namespace, wall: float
) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sessionstore": __version__,
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": getattr(aiosqlite, "__version__", "?"),
        "cpus": os.cpu_count(),
        "sessions": args.sessions,
        "aiosqlite_sessions": max(1, args.sessions // AIOSQLITE_SHARE),
        "rounds": args.rounds,
        "wall_s": wall,
        "small": small,
        "big": big,
    }


def _verdict(ok: bool | None, bad: str) -> str:
    return "" if ok is None else ("ok" if ok else bad)


def _mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


def render(summary: dict[str, Any]) -> str:
    lines = [
        "sessionstore sqlite backend: SessionStore facade vs raw sqlite3 vs aiosqlite",
        f"python {summary['python']} ({summary['implementation']}), "
        f"sessionstore {summary['sessionstore']}, SQLite {summary['sqlite']}, "
        f"aiosqlite {summary['aiosqlite']}, {summary['cpus']} CPUs, {summary['platform']}",
        f"sessions {summary['sessions']:,} (aiosqlite sides: the first "
        f"{summary['aiosqlite_sessions']:,} of the same random order), rounds "
        f"{summary['rounds']} (best round of each side reported), wall {summary['wall_s']:.1f} s",
        "",
    ]
    header = (
        f"{'operation':<10}{'baseline':<31}{'framework ops/s':>16}{'baseline ops/s':>15}"
        f"{'fw us/op':>10}{'base us/op':>11}{'ratio':>7}  target"
    )
    lines += [header, "-" * len(header)]
    for c in summary["small"]["comparisons"]:
        target = c["target_min_ratio"]
        verdict = _verdict(c["within_target"], "MISS")
        lines.append(
            f"{c['operation']:<10}{c['baseline_does']:<31}{c['framework_ops_per_s']:>16,.0f}"
            f"{c['baseline_ops_per_s']:>15,.0f}{c['framework_us_per_op']:>10.2f}"
            f"{c['baseline_us_per_op']:>11.2f}{c['ratio']:>7.2f}  "
            + (f">= {target:<4g} {verdict}" if target is not None else "(reference)")
        )
    lines += [
        "",
        "ratio = framework ops/s / baseline ops/s (best rounds; higher is better)",
    ]
    big = summary["big"]
    if big is None:
        return "\n".join(lines)
    count_ok = big["count_s"] < COUNT_TARGET_S
    samples = big["rss_samples_kib"]
    peak_note = "peak reset before iterating" if big["peak_reset"] else "peak not resettable"
    batch_per_single = big["singles_s"] / big["batch_s"]
    lines += [
        "",
        f"{big['rows']:,} sessions in the file ({big['live']:,} live, {big['expired']:,} expired), "
        f"{big['file_bytes'] / 2**20:,.0f} MiB, populated in {big['populate_s']:.1f} s",
        "",
    ]
    header = f"{'measure':<44}{'result':<56}target"
    lines += [header, "-" * (len(header) + 12)]
    rows = [
        (
            "count_sessions (best of 5)",
            f"{big['count_s'] * 1e3:.2f} ms = {big['count']:,} (== live)",
            f"< {COUNT_TARGET_S * 1e3:g} ms {_verdict(count_ok, 'OVER')}",
        ),
        (
            f"iter_sessions: {big['iter_yielded']:,} yielded (== live)",
            f"{big['iter_s']:.2f} s, {big['iter_yielded'] / big['iter_s']:,.0f} sessions/s",
            "",
        ),
        (
            f"  VmRSS every {RSS_SAMPLE_EVERY:,} sessions",
            (
                f"min {_mib(min(samples))}, max {_mib(max(samples))} ({len(samples)} samples)"
                if samples
                else "no samples"
            ),
            f"flat (<= {FLAT_RSS_KIB // 1024} MiB) {_verdict(big['rss_flat'], 'GREW')}",
        ),
        (
            "  VmRSS before / after",
            f"{_mib(big['vmrss_before_kib'])} / {_mib(big['vmrss_after_kib'])}",
            "",
        ),
        (
            "  peak RSS (ru_maxrss) before / after",
            f"{_mib(big['maxrss_before_kib'])} / {_mib(big['maxrss_after_kib'])}",
            f"({peak_note}; {_mib(big['maxrss_before_reset_kib'])} before)",
        ),
        (
            f"get_sessions_batch({big['batch_ids']:,} ids), best of 5",
            f"{big['batch_s'] * 1e3:.2f} ms: {big['batch_found']:,} live found, "
            f"{big['batch_expired']:,} expired, {big['batch_missing']:,} missing",
            "one SELECT (json_each)",
        ),
        (
            "  its SELECT alone, raw sqlite3, no decode",
            f"{big['raw_batch_s'] * 1e3:.2f} ms",
            "",
        ),
        (
            f"{big['batch_ids']:,} x get_session, same ids, best of 5",
            f"{big['singles_s'] * 1e3:.2f} ms",
            f"batch {batch_per_single:.1f}x faster",
        ),
        (
            "purge_expired",
            f"{big['purge_s']:.2f} s, {big['purged']:,} removed (== expired)",
            "",
        ),
        (
            "count_sessions after purge (best of 5)",
            f"{big['count_after_purge_s'] * 1e3:.2f} ms",
            "",
        ),
    ]
    lines += [f"{a:<44}{b:<56}{c}".rstrip() for a, b, c in rows]
    lines += ["", "query plan of count_sessions:"]
    lines += [f"  {step}" for step in big["count_plan"]]
    lines += ["query plan of get_sessions_batch:"]
    lines += [f"  {step}" for step in big["batch_plan"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__, sessions=DEFAULT_SESSIONS, rounds=DEFAULT_ROUNDS)
    parser.add_argument(
        "--big",
        type=int,
        default=DEFAULT_BIG,
        help="sessions in the large file, 0 to skip that part (%(default)s)",
    )
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.rounds < 1 or args.big < 0:
        parser.error("--sessions and --rounds must be at least 1, --big at least 0")
    start = perf_counter()
    with tempfile.TemporaryDirectory(prefix="sessionstore-bench-") as folder:
        aio_count = max(1, args.sessions // AIOSQLITE_SHARE)
        times = asyncio.run(run_small(Path(folder), args.sessions, aio_count, args.rounds))
        small = summarize_small(times)
        big = run_big(Path(folder), args.big) if args.big else None
    summary = summarize(small, big, args, perf_counter() - start)
    return emit(summary, as_json=args.json, render=render)


if __name__ == "__main__":
    sys.exit(main())
