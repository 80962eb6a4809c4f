"""Benchmark: the Redis backend through the SessionStore facade against raw redis-py and two peers.

Everything runs in one process against ONE redis-server: a throwaway one started on a free
loopback port (``plugins/redis/tests/redis_servers.py``), or the server that ``--url`` or
``SESSIONSTORE_REDIS_URL`` names (one node; the benchmark then works in fresh namespaces and
removes what it wrote). Every side stores the same ``--sessions N`` sessions, shaped as an MCP
proxy keeps them (``benchkit.proxy_session()``), created through the store with ``ttl=3600``.

Part 1, speed (every side on the same ids, in the same random order):

* get: ``store.get_session(id)`` against raw ``redis.asyncio`` (hiredis, ``decode_responses=False``,
  its default options) doing what the backend must: one ``GET`` of the same key, the 25-byte
  header unpacked with ``struct`` (format byte checked, expired treated as missing) and
  ``decode_session`` of the ``SessionRecord`` (built with ``new_record``, as the backend does);
* update (compare-and-set): ``store.update_session(session)`` against ``encode_session`` plus one
  ``EVALSHA`` of a minimal check-and-set Lua script (``GET``, compare the 8 version bytes, ``SET``
  with ``PX``) writing a value of the same size (header + payload). Both sides bump the versions
  of the same records; at the end every record must hold version ``1 + 4 x rounds``;
* ``x50``: both of the above with 50 tasks (``asyncio.gather``) sharing one store / one client;
* batch: ``store.get_sessions_batch(1,000 ids)`` against raw ``MGET`` of the same 1,000 keys plus
  the same unpack and decode of each; for reference, a pipeline of 1,000 ``GET`` plus decode;
* ``redis-benchmark`` (the C client shipped with Redis), same server, ``GET`` of one of the
  records stored above (so a value of the same size): ``-c 1`` is the baseline of get, ``-c 50``
  (50 connections) that of get x50. Its own ops/s figure counts (not its start-up). Targets:
  >= 0.6 and >= 0.4. Skipped, and why printed, without the binary or on a server that needs a
  password or TLS (``--url``);
* the loop floor, for reference: a bare ``asyncio.Protocol`` writing ``GET`` and waking the
  task from ``data_received`` (hiredis, no library, no decode), same keys, same rounds. Its own
  ratio to ``redis-benchmark -c 1`` is printed too: no asyncio client's one-task get can do
  better on this machine and event loop;
* peers, same server, same sessions: py-key-value-aio's ``RedisStore`` and aiocache's
  ``RedisCache`` (its default ``JsonSerializer``; never pickle). Neither takes a ``Session``: a
  put is ``session.model_dump(mode="json")`` then ``put``/``set`` with ``ttl=3600``; a get
  returns their dict. Ours is ``update_session`` (a compare-and-set, not a blind overwrite) and
  ``get_session`` (a validated ``Session``). For reference, each peer's get is also timed with
  ``Session.model_validate`` of the dict, which is what a caller needing a ``Session`` pays.

Each (operation, side) runs ``--rounds`` rounds, rotating which side goes first, and the best
(fastest) round of each counts, since a shared machine is noisy; ``gc.collect()`` runs before
every timed loop. ratio = ours ops/s / baseline ops/s; beside it, the spread of the ratios of the
rounds (ours and the baseline of the same round): median [min..max], so noise shows as noise.
Targets: >= 0.85 against raw for get, update and their x50 forms, >= 0.67 (within 1.5x of the
time) against raw MGET for the batch, > 1 (ahead) against each peer. A peer that cannot be
imported or used is skipped, and why is printed.

Part 2, scale (``--scale N``, default 1,000,000; ``--scale 0`` skips it), in a fresh namespace
with a controllable clock (the contract suite's ``ManualClock``, standing still until it is
moved): N/10 sessions are created (``ttl`` 7 days) through ``create_session`` by two child
processes of 32 concurrent tasks each, every child with a store of its own; then, through a
store in this process, ``count_sessions`` (best of 5) and ``iter_sessions`` over all of them
(one pass timed; one pass under ``tracemalloc`` for the peak of Python memory) are measured;
then N/10 more with ``ttl`` 1 hour and the rest with 7 days, and the same at N. The clock then
moves 1 hour ahead, so exactly N/10 sessions are expired; ``purge_expired`` must remove exactly
those (target < 10 s), and the count must then be 9N/10. The server's ``used_memory`` is printed
at each step. ``count_sessions`` must be O(1)-like (similar at N/10 and N), and the
``iter_sessions`` peak flat (similar at N/10 and N). An ``iter_sessions`` pass is checked by the
number of sessions it yields and a sum of the hashes of their ids against the sessions created.

Run it with ``make bench`` or ``.venv/bin/python bench/bench_redis.py [--sessions N]
[--rounds R] [--scale N] [--url redis://host:port/db] [--json]``.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import platform
import random
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from hashlib import blake2b
from time import perf_counter
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
import redis
from benchkit import NoRedisServer, base_parser, check, emit, proxy_session, redis_server
from redis.asyncio import Redis

from sessionstore import (
    ConflictError,
    CorruptRecordError,
    Session,
    SessionNotFoundError,
    SessionRecord,
    SessionStore,
    __version__,
    decode_session,
    encode_session,
    open_store,
)
from sessionstore.records import new_record
from sessionstore_contract import ManualClock
from sessionstore_redis.scripts import UPDATE as UPDATE_SCRIPT

DEFAULT_SESSIONS = 2_000
DEFAULT_ROUNDS = 7
DEFAULT_SCALE = 1_000_000
CONCURRENCY = 50
REDIS_BENCHMARK_REQUESTS = {1: 10_000, CONCURRENCY: 25_000}  # per round, by connections
BATCH_SIZE = 1_000
BATCH_CALLS = 20  # batch calls per side and round, cycling over the N ids
TTL_S = 3600
TTL_MS = TTL_S * 1000
GRACE_MS = 60_000  # the backend's default expiry_grace, in ms
SCALE_LONG_TTL_S = 7 * 86_400
SCALE_SHORT_TTL_S = 3600
SCALE_PROCESSES = 2  # child processes creating the sessions, each through its own store
SCALE_TASKS = 32  # concurrent create_session tasks in each
SCALE_PROGRESS_EVERY = 100_000
PURGE_TARGET_S = 10.0
SIMILAR_FACTOR = 3.0  # "similar": the figure at N is at most 3x the one at N/10
HASH_MASK = (1 << 64) - 1
KEY_PREFIX = "sessionstore"  # the backend's default key_prefix

# Copies of the backend's record layout (plugins/redis/src/sessionstore_redis/layout.py).
RECORD_FORMAT = 1
HEADER_SIZE = 25
HEADER = struct.Struct(">BQQQ")
U64 = struct.Struct(">Q")

# The least a compare-and-set can do: the version bytes compared, the value and its TTL set.
RAW_CAS = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 1 end
if string.sub(cur, 2, 9) ~= ARGV[2] then return 2 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 0
"""

OPERATIONS = ("get", "update", "get_x50", "update_x50", "batch")
OP_LABELS = {
    "get": "get",
    "update": "update",
    "get_x50": f"get x{CONCURRENCY}",
    "update_x50": f"update x{CONCURRENCY}",
    "batch": f"batch {BATCH_SIZE:,}",
}
ALL_SIDES: dict[str, tuple[str, ...]] = {
    "get": (
        "ours",
        "raw",
        "redis_benchmark",
        "loop_floor",
        "kv",
        "kv_session",
        "aiocache",
        "aiocache_session",
    ),
    "update": ("ours", "raw", "raw_same", "kv", "aiocache"),
    "get_x50": ("ours", "raw", "redis_benchmark"),
    "update_x50": ("ours", "raw", "raw_same"),
    "batch": ("ours", "raw_mget", "raw_pipeline"),
}
PEER_OF_SIDE = {
    "redis_benchmark": "redis-benchmark",
    "kv": "py-key-value-aio",
    "kv_session": "py-key-value-aio",
    "aiocache": "aiocache",
    "aiocache_session": "aiocache",
}
# (operation, baseline side, what the baseline does, minimum ratio or None, strictly above?)
COMPARISONS: tuple[tuple[str, str, str, float | None, bool], ...] = (
    ("get", "raw", "raw GET + unpack + decode", 0.85, False),
    ("get", "redis_benchmark", "redis-benchmark -c 1 GET (C client)", 0.6, False),
    ("get", "loop_floor", "bare asyncio Protocol GET, no decode", None, False),
    ("update", "raw", "raw encode + EVALSHA check-and-set", 0.85, False),
    ("update", "raw_same", "raw encode + EVALSHA of our script", 0.85, False),
    ("get_x50", "raw", "raw GET + unpack + decode", 0.85, False),
    ("get_x50", "redis_benchmark", f"redis-benchmark -c {CONCURRENCY} GET (C client)", 0.4, False),
    ("update_x50", "raw", "raw encode + EVALSHA check-and-set", 0.85, False),
    ("update_x50", "raw_same", "raw encode + EVALSHA of our script", 0.85, False),
    ("batch", "raw_mget", "raw MGET + unpack + decode", 0.67, False),
    ("batch", "raw_pipeline", "raw pipeline of GETs + decode", None, False),
    ("get", "kv", "py-key-value-aio get (dict)", 1.0, True),
    ("get", "kv_session", "py-key-value-aio get + Session", None, False),
    ("get", "aiocache", "aiocache get (dict)", 1.0, True),
    ("get", "aiocache_session", "aiocache get + Session", None, False),
    ("update", "kv", "py-key-value-aio model_dump + put", 1.0, True),
    ("update", "aiocache", "aiocache model_dump + set", 1.0, True),
)


def _progress(message: str) -> None:
    print(f"[bench_redis {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server -----------------------------------------------------------------------------------


def raw_client(url: str) -> Redis:
    """Plain redis-py: hiredis (when installed, as here) and bytes replies; its default options."""
    client: Redis = Redis.from_url(url, decode_responses=False)
    return client


def layout_key(namespace: str) -> str:
    """The one key ``clear()`` leaves: the namespace's shard count (see layout.py)."""
    return f"{KEY_PREFIX}:{{{namespace}/0}}:layout"


def record_base(namespace: str) -> str:
    """Where the backend keeps the records of a one-shard namespace (see layout.py)."""
    return f"{KEY_PREFIX}:{{{namespace}/0}}:s:"


def unpack_live(session_id: str, value: bytes, now_ms: int) -> SessionRecord | None:
    """What the backend must do with a stored value: check, unpack, drop it if expired."""
    if len(value) < HEADER_SIZE or value[0] != RECORD_FORMAT:
        raise CorruptRecordError(session_id, "not a sessionstore record")
    _, version, deadline, incarnation = HEADER.unpack_from(value)
    if deadline and deadline <= now_ms:
        return None
    return new_record((session_id, version, deadline or None, value[HEADER_SIZE:], incarnation))


# -- the peers ------------------------------------------------------------------------------------


@dataclass
class Peers:
    """The peer stores that could be opened, and why the others could not."""

    kv: Any = None  # key_value.aio.stores.redis.RedisStore
    redis_benchmark: list[str] = field(default_factory=list)  # its command line up to -c
    kv_collection: str = ""
    aiocache: Any = None  # aiocache.RedisCache
    versions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    async def aclose(self) -> None:
        if self.kv is not None:
            await self.kv.__aexit__(None, None, None)
        if self.aiocache is not None:
            await self.aiocache.close()


def redis_benchmark_command(url: str, peers: Peers) -> None:
    """Find ``redis-benchmark`` and address the server of ``url`` with it (into ``peers``)."""
    binary = shutil.which("redis-benchmark")
    parts = urlsplit(url)
    if binary is None:
        peers.skipped["redis-benchmark"] = "not on PATH (it comes with redis-server)"
    elif parts.password or parts.username or parts.scheme.lower() == "rediss":
        # Its only way to take a password is -a on the command line, visible to every user.
        peers.skipped["redis-benchmark"] = (
            "the server needs a password or TLS; run without --url for a throwaway server"
        )
    else:
        peers.redis_benchmark = [
            binary,
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 6379),
            "--dbnum",
            parts.path.strip("/") or "0",
        ]
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        peers.versions["redis-benchmark"] = version[1] if len(version) > 1 else "?"


async def open_peers(url: str, tag: str) -> Peers:
    peers = Peers(kv_collection=f"bench-kv-{tag}")
    redis_benchmark_command(url, peers)
    kv: Any = None
    try:
        from importlib.metadata import version

        from key_value.aio.stores.redis import RedisStore

        kv = RedisStore(url=url, default_collection=peers.kv_collection)
        await kv.__aenter__()
        await kv.put(key="probe", value={"ok": True}, collection=peers.kv_collection, ttl=60)
        check(await kv.get(key="probe", collection=peers.kv_collection) == {"ok": True}, "kv probe")
        await kv.delete(key="probe", collection=peers.kv_collection)
        peers.versions["py-key-value-aio"] = version("py-key-value-aio")
        peers.kv, kv = kv, None
    except Exception as exc:  # any failure: the peer is skipped, and why is printed
        peers.skipped["py-key-value-aio"] = f"{type(exc).__name__}: {exc}"
    finally:
        if kv is not None:
            with suppress(Exception):
                await kv.__aexit__(None, None, None)
    cache: Any = None
    try:
        import aiocache
        from aiocache import RedisCache
        from aiocache.serializers import JsonSerializer

        parts = urlsplit(url)
        pool: dict[str, Any] = {}
        if parts.username:
            pool["username"] = unquote(parts.username)
        cache = RedisCache(
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(parts.path.strip("/") or 0),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            namespace=f"bench-aiocache-{tag}",  # it adds the ":" itself
            connection_pool_kwargs=pool,
        )
        check(isinstance(cache.serializer, JsonSerializer), "aiocache default serializer is JSON")
        await cache.set("probe", {"ok": True}, ttl=60)
        check(await cache.get("probe") == {"ok": True}, "aiocache probe")
        await cache.delete("probe")
        peers.versions["aiocache"] = aiocache.__version__
        peers.aiocache, cache = cache, None
    except Exception as exc:  # any failure: the peer is skipped, and why is printed
        peers.skipped["aiocache"] = f"{type(exc).__name__}: {exc}"
    finally:
        if cache is not None:
            with suppress(Exception):
                await cache.close()
    return peers


# -- part 1: the sides ----------------------------------------------------------------------------


@dataclass
class Ctx:
    """What every side of part 1 shares: the store, the clients, the sessions and the order."""

    store: SessionStore
    # Typed Any, as in the backend: redis-py types replies as unions over every decode mode;
    # with decode_responses=False they are bytes.
    raw: Any
    peers: Peers
    base: str  # record key = base + id
    cas_sha: str
    sessions: list[Session]  # the objects the store returned, in the (random) order of the ops
    ids: list[str]
    incarnations: list[int]
    versions: list[int] = field(default_factory=list)  # the stored version of each, as known
    floor: LoopFloor | None = None  # opened by its first round

    def sync_from_sessions(self) -> None:
        self.versions = [session.version for session in self.sessions]

    def sync_to_sessions(self) -> None:
        for session, version in zip(self.sessions, self.versions, strict=True):
            session.__dict__["version"] = version  # as the facade does; not a timed step

    def batches(self) -> list[list[str]]:
        ids = self.ids
        starts = [(i * BATCH_SIZE) % len(ids) for i in range(BATCH_CALLS)]
        return [(ids + ids[:BATCH_SIZE])[start : start + BATCH_SIZE] for start in starts]


def _slices(count: int) -> list[range]:
    return [range(first, count, CONCURRENCY) for first in range(min(CONCURRENCY, count))]


async def ours_get(ctx: Ctx) -> float:
    get = ctx.store.get_session
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        await get(session_id)
    return perf_counter() - start


async def raw_get(ctx: Ctx) -> float:
    client_get = ctx.raw.get
    base, unpack, decode, clock = ctx.base, unpack_live, decode_session, time.time
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        value = await client_get(base + session_id)
        record = None if value is None else unpack(session_id, value, int(clock() * 1000))
        if record is None:
            raise SessionNotFoundError(session_id)
        decode(record)
    return perf_counter() - start


async def ours_update(ctx: Ctx) -> float:
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


async def _raw_cas(ctx: Ctx, index: int) -> None:
    """One raw compare-and-set: encode, build the same value, EVALSHA; the stored version + 1."""
    session = ctx.sessions[index]
    version = ctx.versions[index]
    payload = encode_session(session)
    deadline = int(time.time() * 1000) + TTL_MS
    value = HEADER.pack(RECORD_FORMAT, version + 1, deadline, ctx.incarnations[index]) + payload
    key = ctx.base + session.id
    outcome = await ctx.raw.evalsha(ctx.cas_sha, 1, key, value, U64.pack(version), TTL_MS)
    if outcome != 0:
        raise ConflictError(session.id)
    ctx.versions[index] = version + 1


async def _raw_same_cas(ctx: Ctx, index: int) -> None:
    """The backend's own compare-and-set script, called with redis-py alone: what the update
    costs without the framework (the backend's script does more than RAW_CAS: it compares the
    incarnation and keeps the deadline index that counts and purges use)."""
    session = ctx.sessions[index]
    version = ctx.versions[index]
    payload = encode_session(session)
    now = int(time.time() * 1000)
    deadline = now + TTL_MS
    value = HEADER.pack(RECORD_FORMAT, version + 1, deadline, ctx.incarnations[index]) + payload
    shard_base = ctx.base[: -len("s:")]
    outcome = await ctx.raw.evalsha(
        UPDATE_SCRIPT.sha,
        3,
        ctx.base + session.id,
        f"{shard_base}e:{session.id}",
        f"{shard_base}i",
        value,
        U64.pack(version),
        now,
        TTL_MS + GRACE_MS,
        deadline,
    )
    if outcome != 0:
        raise ConflictError(session.id)
    ctx.versions[index] = version + 1


RawCas = Callable[[Ctx, int], Awaitable[None]]


async def _cas_in_order(ctx: Ctx, cas: RawCas) -> float:
    """Time ``cas`` on every session, one after the other."""
    indexes = range(len(ctx.sessions))
    gc.collect()
    start = perf_counter()
    for index in indexes:
        await cas(ctx, index)
    return perf_counter() - start


async def _cas_by_tasks(ctx: Ctx, cas: RawCas) -> float:
    """Time ``cas`` on every session, split over CONCURRENCY tasks."""

    async def worker(part: range) -> None:
        for index in part:
            await cas(ctx, index)

    parts = _slices(len(ctx.sessions))
    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(worker(part) for part in parts))
    return perf_counter() - start


async def raw_update(ctx: Ctx) -> float:
    return await _cas_in_order(ctx, _raw_cas)


async def raw_same_update(ctx: Ctx) -> float:
    return await _cas_in_order(ctx, _raw_same_cas)


async def raw_update_x50(ctx: Ctx) -> float:
    return await _cas_by_tasks(ctx, _raw_cas)


async def raw_same_update_x50(ctx: Ctx) -> float:
    return await _cas_by_tasks(ctx, _raw_same_cas)


async def ours_get_x50(ctx: Ctx) -> float:
    get = ctx.store.get_session
    ids = ctx.ids

    async def worker(part: range) -> None:
        for index in part:
            await get(ids[index])

    parts = _slices(len(ids))
    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(worker(part) for part in parts))
    return perf_counter() - start


async def raw_get_x50(ctx: Ctx) -> float:
    client_get = ctx.raw.get
    base, unpack, decode, clock = ctx.base, unpack_live, decode_session, time.time
    ids = ctx.ids

    async def worker(part: range) -> None:
        for index in part:
            session_id = ids[index]
            value = await client_get(base + session_id)
            record = None if value is None else unpack(session_id, value, int(clock() * 1000))
            if record is None:
                raise SessionNotFoundError(session_id)
            decode(record)

    parts = _slices(len(ids))
    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(worker(part) for part in parts))
    return perf_counter() - start


async def ours_update_x50(ctx: Ctx) -> float:
    ctx.sync_to_sessions()
    update = ctx.store.update_session
    sessions = ctx.sessions

    async def worker(part: range) -> None:
        for index in part:
            await update(sessions[index])

    parts = _slices(len(sessions))
    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(worker(part) for part in parts))
    elapsed = perf_counter() - start
    ctx.sync_from_sessions()
    return elapsed


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


def _decode_values(ids: Sequence[str], values: Sequence[bytes | None]) -> list[Session]:
    now_ms = int(time.time() * 1000)
    decode = decode_session
    found = []
    for session_id, value in zip(ids, values, strict=True):
        if value is not None and (record := unpack_live(session_id, value, now_ms)) is not None:
            found.append(decode(record))
    return found


async def raw_mget_batch(ctx: Ctx) -> float:
    mget, base = ctx.raw.mget, ctx.base
    batches = ctx.batches()
    gc.collect()
    start = perf_counter()
    for batch in batches:
        found = _decode_values(batch, await mget([base + i for i in batch]))
        if len(found) != len(batch):
            raise SessionNotFoundError(*batch)
    return perf_counter() - start


async def raw_pipeline_batch(ctx: Ctx) -> float:
    raw, base = ctx.raw, ctx.base
    batches = ctx.batches()
    gc.collect()
    start = perf_counter()
    for batch in batches:
        async with raw.pipeline(transaction=False) as pipe:
            for session_id in batch:
                pipe.get(base + session_id)
            values = await pipe.execute()
        found = _decode_values(batch, values)
        if len(found) != len(batch):
            raise SessionNotFoundError(*batch)
    return perf_counter() - start


async def kv_get(ctx: Ctx) -> float:
    get, collection = ctx.peers.kv.get, ctx.peers.kv_collection
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        if await get(key=session_id, collection=collection) is None:
            raise SessionNotFoundError(session_id)
    return perf_counter() - start


async def kv_session_get(ctx: Ctx) -> float:
    get, collection = ctx.peers.kv.get, ctx.peers.kv_collection
    validate = Session.model_validate
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        value = await get(key=session_id, collection=collection)
        if value is None:
            raise SessionNotFoundError(session_id)
        validate(value)
    return perf_counter() - start


async def kv_put(ctx: Ctx) -> float:
    put, collection = ctx.peers.kv.put, ctx.peers.kv_collection
    sessions = ctx.sessions
    gc.collect()
    start = perf_counter()
    for session in sessions:
        await put(
            key=session.id, value=session.model_dump(mode="json"), collection=collection, ttl=TTL_S
        )
    return perf_counter() - start


async def aiocache_get(ctx: Ctx) -> float:
    get = ctx.peers.aiocache.get
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        if await get(session_id) is None:
            raise SessionNotFoundError(session_id)
    return perf_counter() - start


async def aiocache_session_get(ctx: Ctx) -> float:
    get = ctx.peers.aiocache.get
    validate = Session.model_validate
    ids = ctx.ids
    gc.collect()
    start = perf_counter()
    for session_id in ids:
        value = await get(session_id)
        if value is None:
            raise SessionNotFoundError(session_id)
        validate(value)
    return perf_counter() - start


async def aiocache_set(ctx: Ctx) -> float:
    set_ = ctx.peers.aiocache.set
    sessions = ctx.sessions
    gc.collect()
    start = perf_counter()
    for session in sessions:
        await set_(session.id, session.model_dump(mode="json"), ttl=TTL_S)
    return perf_counter() - start


class LoopFloor(asyncio.Protocol):
    """The least an asyncio program can do per GET: write the command on a transport, and in
    ``data_received`` feed hiredis and wake the waiting task; no library, no checks, no decode.
    Its ratio to ``redis-benchmark -c 1`` is the ceiling of any asyncio client's one-task get
    on this machine and this event loop, measured in the same rounds."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiter: asyncio.Future[Any] | None = None
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast: uvloop's transports write, but are not asyncio.WriteTransport subclasses
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        reply = self.reader.gets()
        if reply is not False and self.waiter is not None:
            self.waiter.set_result(reply)

    async def get(self, command: bytes) -> Any:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(command)
        return await self.waiter


async def loop_floor_get(ctx: Ctx) -> float:
    if ctx.floor is None:  # the server's address, as the raw client has it
        where = ctx.raw.connection_pool.connection_kwargs
        _, ctx.floor = await asyncio.get_running_loop().create_connection(
            LoopFloor, where["host"], where["port"]
        )
    get = ctx.floor.get
    commands = [
        b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)
        for key in ((ctx.base + i).encode() for i in ctx.ids)
    ]
    gc.collect()
    start = perf_counter()
    for command in commands:
        await get(command)
    elapsed = perf_counter() - start
    check((await get(commands[0]))[:1] == bytes([RECORD_FORMAT]), "the floor read our record")
    return elapsed


async def _redis_benchmark(ctx: Ctx, connections: int) -> float:
    """Seconds per GET of ``redis-benchmark -c connections`` on the first session's record, by
    its own count (its start-up is not timed)."""
    requests = REDIS_BENCHMARK_REQUESTS[connections]
    command = [*ctx.peers.redis_benchmark, "-c", str(connections), "-n", str(requests)]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--csv",
        "GET",
        ctx.base + ctx.ids[0],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    lines = out.decode().strip().splitlines()
    check(process.returncode == 0 and len(lines) >= 2, f"redis-benchmark ran: {err.decode()!r}")
    rps = float(lines[-1].split(",")[1].strip('"'))
    check(rps > 0, "redis-benchmark reported its requests per second")
    return 1 / rps


async def redis_benchmark_get(ctx: Ctx) -> float:
    return await _redis_benchmark(ctx, 1)


async def redis_benchmark_get_x50(ctx: Ctx) -> float:
    return await _redis_benchmark(ctx, CONCURRENCY)


RUNNERS: dict[tuple[str, str], Callable[[Ctx], Awaitable[float]]] = {
    ("get", "redis_benchmark"): redis_benchmark_get,
    ("get_x50", "redis_benchmark"): redis_benchmark_get_x50,
    ("get", "ours"): ours_get,
    ("get", "raw"): raw_get,
    ("get", "loop_floor"): loop_floor_get,
    ("get", "kv"): kv_get,
    ("get", "kv_session"): kv_session_get,
    ("get", "aiocache"): aiocache_get,
    ("get", "aiocache_session"): aiocache_session_get,
    ("update", "ours"): ours_update,
    ("update", "raw"): raw_update,
    ("update", "raw_same"): raw_same_update,
    ("update", "kv"): kv_put,
    ("update", "aiocache"): aiocache_set,
    ("get_x50", "ours"): ours_get_x50,
    ("get_x50", "raw"): raw_get_x50,
    ("update_x50", "ours"): ours_update_x50,
    ("update_x50", "raw"): raw_update_x50,
    ("update_x50", "raw_same"): raw_same_update_x50,
    ("batch", "ours"): ours_batch,
    ("batch", "raw_mget"): raw_mget_batch,
    ("batch", "raw_pipeline"): raw_pipeline_batch,
}


def _ops(ctx: Ctx, op: str, side: str) -> int:
    if side == "redis_benchmark":
        return 1  # its runner returns seconds per op already
    return BATCH_CALLS if op == "batch" else len(ctx.ids)


async def _stored_sizes(ctx: Ctx) -> dict[str, int]:
    """Bytes of the value each side stores for the first session."""
    session_id = ctx.ids[0]
    sizes = {"ours": int(await ctx.raw.strlen(ctx.base + session_id))}
    if ctx.peers.kv is not None:
        kv_key = f"{ctx.peers.kv_collection}::{session_id}"  # py-key-value's compound key
        sizes["py-key-value-aio"] = int(await ctx.raw.strlen(kv_key))
    if ctx.peers.aiocache is not None:
        key = ctx.peers.aiocache.build_key(session_id)
        sizes["aiocache"] = int(await ctx.raw.strlen(key))
    return sizes


def _same(stored: Any, session: Session) -> bool:
    """Whether a peer's dict is ``session`` (but its version: ours and raw bumped it since)."""
    if not isinstance(stored, dict):
        return False
    expected = session.model_dump(mode="json")
    return {**stored, "version": 0} == {**expected, "version": 0}


async def check_small(ctx: Ctx, rounds: int) -> None:
    """Both sides did the same work: every record was bumped by every update of every side."""
    # update and update x50, each by ours, raw and raw_same, once per round
    expected = 1 + 6 * rounds
    check(all(v == expected for v in ctx.versions), f"tracked versions == {expected}")
    values = await ctx.raw.mget([ctx.base + i for i in ctx.ids])
    stored = [HEADER.unpack_from(v)[1] if v is not None else None for v in values]
    check(all(v == expected for v in stored), f"every stored record has version {expected}")
    ctx.sync_to_sessions()
    for session in (ctx.sessions[0], ctx.sessions[-1]):
        got = await ctx.store.get_session(session.id)
        check(got.version == expected, "the store reads the version the raw CAS wrote")
        check(
            got.model_dump(exclude={"version"}) == session.model_dump(exclude={"version"}),
            "round-trip after the updates",
        )
    # Both compare-and-sets really compare: a stale version is refused by each, nothing written.
    index = len(ctx.sessions) // 2
    session = ctx.sessions[index]
    value = HEADER.pack(RECORD_FORMAT, expected, 0, ctx.incarnations[index])
    stale = U64.pack(expected - 1)
    refused = await ctx.raw.evalsha(ctx.cas_sha, 1, ctx.base + session.id, value, stale, TTL_MS)
    check(refused == 2, "the raw CAS refuses a stale version")
    session.__dict__["version"] = expected - 1
    try:
        await ctx.store.update_session(session)
    except ConflictError:
        pass
    else:
        raise RuntimeError("benchmark sanity check failed: update_session accepted a stale version")
    session.__dict__["version"] = expected
    check((await ctx.store.get_session(session.id)).version == expected, "stale writes refused")
    check(await ctx.store.count_sessions() == len(ctx.ids), "part 1 count")
    if ctx.peers.kv is not None:
        for i in (0, len(ctx.ids) - 1):
            got_kv = await ctx.peers.kv.get(key=ctx.ids[i], collection=ctx.peers.kv_collection)
            check(_same(got_kv, ctx.sessions[i]), "py-key-value holds what was put")
    if ctx.peers.aiocache is not None:
        for i in (0, len(ctx.ids) - 1):
            got_cache = await ctx.peers.aiocache.get(ctx.ids[i])
            check(_same(got_cache, ctx.sessions[i]), "aiocache holds what was set")


async def run_small(
    url: str, count: int, rounds: int, tag: str, *, clean_up: bool
) -> dict[str, Any]:
    """Every round runs every operation on every side, rotating which side goes first.

    ``clean_up``: remove what was written (on a server that outlives the benchmark).
    """
    namespace = f"bench-{tag}"
    raw = raw_client(url)
    peers = await open_peers(url, tag)
    sides = {
        op: tuple(
            s
            for s in ALL_SIDES[op]
            if PEER_OF_SIDE.get(s) is None or PEER_OF_SIDE[s] in peers.versions
        )
        for op in OPERATIONS
    }
    times: dict[str, dict[str, list[float]]] = {
        op: {side: [] for side in op_sides} for op, op_sides in sides.items()
    }
    try:
        async with open_store(url, namespace=namespace, ttl=TTL_S) as store:
            _progress(f"part 1: creating {count:,} sessions (namespace {namespace})")
            sessions = [await store.create_session(proxy_session()) for _ in range(count)]
            random.shuffle(sessions)
            incarnations = []
            for session in sessions:
                private = session.__pydantic_private__
                incarnations.append(0 if private is None else private.get("_incarnation", 0))
            check(all(incarnations), "create_session sets an incarnation")
            cas_sha = await raw.script_load(RAW_CAS)
            await raw.script_load(UPDATE_SCRIPT.source)
            ids = [s.id for s in sessions]
            ctx = Ctx(
                store, raw, peers, record_base(namespace), cas_sha, sessions, ids, incarnations
            )
            ctx.sync_from_sessions()
            # The peers hold the same sessions before their first timed get.
            if peers.kv is not None:
                await kv_put(ctx)
            if peers.aiocache is not None:
                await aiocache_set(ctx)
            await raw_get(ctx)  # warm both connection pools
            await ours_get(ctx)
            for round_index in range(rounds):
                _progress(f"part 1: round {round_index + 1}/{rounds}")
                for op, op_sides in sides.items():
                    shift = round_index % len(op_sides)
                    for side in op_sides[shift:] + op_sides[:shift]:
                        elapsed = await RUNNERS[op, side](ctx)
                        times[op][side].append(elapsed / _ops(ctx, op, side))
            if ctx.floor is not None and ctx.floor.transport is not None:
                ctx.floor.transport.close()
            await check_small(ctx, rounds)
            sizes = await _stored_sizes(ctx)
            info = await raw.info("server")
            if clean_up:
                await store.clear()
                await raw.delete(layout_key(namespace))
                if peers.kv is not None:
                    await peers.kv.delete_many(keys=ctx.ids, collection=peers.kv_collection)
                if peers.aiocache is not None:
                    build_key = peers.aiocache.build_key
                    await raw.delete(*(build_key(i) for i in ctx.ids))
    finally:
        await peers.aclose()
        await raw.aclose()
    return {
        "times": times,
        "sizes": sizes,
        "redis_version": info.get("redis_version", "?"),
        "peers": peers.versions,
        "skipped": peers.skipped,
    }


def summarize_small(small: dict[str, Any]) -> dict[str, Any]:
    times: dict[str, dict[str, list[float]]] = small["times"]
    best = {op: {side: min(v) for side, v in per.items()} for op, per in times.items()}
    comparisons = []
    for op, side, does, target, above in COMPARISONS:
        if side not in best[op]:
            continue
        ours, base = best[op]["ours"], best[op][side]
        ratio = base / ours  # ours ops/s / baseline ops/s
        # Round by round: ours and the baseline ran in the same round, under the same load.
        spread = [b / o for o, b in zip(times[op]["ours"], times[op][side], strict=True)]
        ok = None if target is None else (ratio > target if above else ratio >= target)
        comparisons.append(
            {
                "operation": op,
                "baseline": side,
                "baseline_does": does,
                "ours_ops_per_s": 1 / ours,
                "baseline_ops_per_s": 1 / base,
                "ours_us_per_op": ours * 1e6,
                "baseline_us_per_op": base * 1e6,
                "ratio": ratio,
                "ratio_median": statistics.median(spread),
                "ratio_min": min(spread),
                "ratio_max": max(spread),
                "target_min_ratio": target,
                "target_strictly_above": above,
                "within_target": ok,
            }
        )
    floor = None
    if {"loop_floor", "redis_benchmark"} <= set(times["get"]):
        # The ceiling of any asyncio client's one-task get here: the floor against the C client.
        get = times["get"]
        rounds = [c / f for f, c in zip(get["loop_floor"], get["redis_benchmark"], strict=True)]
        floor = {
            "ratio": best["get"]["redis_benchmark"] / best["get"]["loop_floor"],
            "ratio_median": statistics.median(rounds),
            "ratio_min": min(rounds),
            "ratio_max": max(rounds),
        }
    return {
        "best_s_per_op": best,
        "all_s_per_op": times,
        "comparisons": comparisons,
        "loop_floor_vs_redis_benchmark": floor,
        "stored_value_bytes": small["sizes"],
        "redis_version": small["redis_version"],
        "peers": small["peers"],
        "skipped_peers": small["skipped"],
    }


# -- one task's get on each event loop -------------------------------------------------------------

LOOP_SIDES = ("ours", "loop_floor", "redis_benchmark")


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops to compare: asyncio's own, and uvloop's where it is installed."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:
        return factories
    factories[f"uvloop {uvloop.__version__}"] = uvloop.new_event_loop
    return factories


async def run_one_task(url: str, count: int, rounds: int, tag: str) -> dict[str, list[float]]:
    """Part 1's one-task get (ours, the loop floor, ``redis-benchmark -c 1``) on whichever event
    loop runs this, the sides rotating as in part 1. ``{}`` without ``redis-benchmark``."""
    peers = Peers()
    redis_benchmark_command(url, peers)
    if not peers.redis_benchmark:
        return {}
    raw = raw_client(url)
    times: dict[str, list[float]] = {side: [] for side in LOOP_SIDES}
    try:
        async with open_store(url, namespace=f"bench-loop-{tag}", ttl=TTL_S) as store:
            sessions = [await store.create_session(proxy_session()) for _ in range(count)]
            random.shuffle(sessions)
            ids = [s.id for s in sessions]
            ctx = Ctx(store, raw, peers, record_base(f"bench-loop-{tag}"), "", sessions, ids, [])
            await ours_get(ctx)  # warm the connection
            for round_index in range(rounds):
                shift = round_index % len(LOOP_SIDES)
                for side in LOOP_SIDES[shift:] + LOOP_SIDES[:shift]:
                    elapsed = await RUNNERS["get", side](ctx)
                    times[side].append(elapsed / _ops(ctx, "get", side))
            if ctx.floor is not None and ctx.floor.transport is not None:
                ctx.floor.transport.close()
            await store.clear()
    finally:
        await raw.aclose()
    return times


def summarize_one_task(times: dict[str, list[float]]) -> dict[str, Any]:
    """Ours and the loop floor against ``redis-benchmark -c 1``: best rounds, and each round's."""
    rb = times["redis_benchmark"]
    result: dict[str, Any] = {}
    for side in ("ours", "loop_floor"):
        spread = [b / o for o, b in zip(times[side], rb, strict=True)]
        result[side] = {
            "us_per_op": min(times[side]) * 1e6,
            "ratio": min(rb) / min(times[side]),
            "ratio_median": statistics.median(spread),
            "ratio_min": min(spread),
            "ratio_max": max(spread),
        }
    result["redis_benchmark_us_per_op"] = min(rb) * 1e6
    return result


# -- part 2: scale --------------------------------------------------------------------------------


def id_hash(session_id: str) -> int:
    """A hash of an id that every process agrees on (``hash()`` is salted per process)."""
    return int.from_bytes(blake2b(session_id.encode(), digest_size=8).digest(), "big")


async def _create_many(store: SessionStore, count: int, label: str) -> tuple[int, int]:
    """Create ``count`` sessions with SCALE_TASKS concurrent tasks: (created, sum of id hashes)."""
    remaining = count
    total = 0
    created = 0
    started = perf_counter()

    async def worker() -> None:
        nonlocal remaining, total, created
        create = store.create_session
        while remaining > 0:
            remaining -= 1
            session = await create(proxy_session())
            total = (total + id_hash(session.id)) & HASH_MASK
            created += 1
            if created % SCALE_PROGRESS_EVERY == 0:
                rate = created / (perf_counter() - started)
                _progress(f"part 2: {label}: {created:,}/{count:,} created ({rate:,.0f}/s)")

    await asyncio.gather(*(worker() for _ in range(SCALE_TASKS)))
    return created, total


def populate(
    url: str, namespace: str, ttl_s: int, now: float, count: int, label: str
) -> tuple[int, int]:
    """In a child process: create ``count`` sessions through a store of its own whose clock
    stands still at ``now``. Returns (created, sum of their id hashes)."""

    async def run() -> tuple[int, int]:
        clock = ManualClock(now)
        async with open_store(url, namespace=namespace, ttl=ttl_s, clock=clock) as store:
            return await _create_many(store, count, label)

    return asyncio.run(run())


async def create_sessions(
    pool: ProcessPoolExecutor, url: str, namespace: str, ttl_s: int, now: float, count: int
) -> int:
    """Create ``count`` sessions, shared among the SCALE_PROCESSES children; their hash sum."""
    loop = asyncio.get_running_loop()
    each, extra = divmod(count, SCALE_PROCESSES)
    shares = [each + (i < extra) for i in range(SCALE_PROCESSES)]
    label = f"ttl {ttl_s} s"
    results = await asyncio.gather(
        *(
            loop.run_in_executor(
                pool, populate, url, namespace, ttl_s, now, share, f"{label}, child {i + 1}"
            )
            for i, share in enumerate(shares)
            if share
        )
    )
    created = sum(c for c, _ in results)
    check(created == count, f"created {created:,} sessions of {count:,}")
    return sum(h for _, h in results) & HASH_MASK


async def _used_memory(raw: Redis) -> int:
    info = await raw.info("memory")
    return int(info["used_memory"])


async def _count_best(store: SessionStore, expected: int) -> float:
    best = float("inf")
    for _ in range(5):
        gc.collect()
        start = perf_counter()
        counted = await store.count_sessions()
        best = min(best, perf_counter() - start)
        check(counted == expected, f"count_sessions {counted:,} != {expected:,}")
    return best


async def _iterate(store: SessionStore, expected: int, expected_hash: int) -> dict[str, float]:
    """One pass without tracemalloc (its time), one with it (its peak); both checked."""
    out: dict[str, float] = {}
    for traced in (False, True):
        gc.collect()
        if traced:
            tracemalloc.start()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        yielded = 0
        total = 0
        start = perf_counter()
        async for session in store.iter_sessions():
            yielded += 1
            total = (total + id_hash(session.id)) & HASH_MASK
        elapsed = perf_counter() - start
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            out["peak_bytes"] = peak - base
            out["traced_s"] = elapsed
        else:
            out["s"] = elapsed
        check(yielded == expected, f"iter_sessions yielded {yielded:,}, expected {expected:,}")
        check(total == expected_hash, "iter_sessions yields every created id once")
    return out


async def run_scale(url: str, count: int, tag: str, *, clean_up: bool) -> dict[str, Any]:
    namespace = f"bench-scale-{tag}"
    tenth = count // 10
    now = time.time()
    clock = ManualClock(now)
    raw = raw_client(url)
    out: dict[str, Any] = {"sessions": count, "expired": tenth}
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=SCALE_PROCESSES, mp_context=context) as pool:
            out["used_memory_start"] = await _used_memory(raw)
            start = perf_counter()
            _progress(f"part 2: creating {tenth:,} sessions (ttl 7 d), namespace {namespace}")
            live_hash = await create_sessions(pool, url, namespace, SCALE_LONG_TTL_S, now, tenth)
            out["create_tenth_s"] = perf_counter() - start
            out["used_memory_tenth"] = await _used_memory(raw)
            async with open_store(url, namespace=namespace, clock=clock) as store:
                out["count_tenth_s"] = await _count_best(store, tenth)
                _progress(f"part 2: iter_sessions over {tenth:,}")
                out["iter_tenth"] = await _iterate(store, tenth, live_hash)

            start = perf_counter()
            _progress(f"part 2: creating {tenth:,} sessions with ttl 1 h (to expire)")
            short_hash = await create_sessions(pool, url, namespace, SCALE_SHORT_TTL_S, now, tenth)
            rest = count - 2 * tenth
            _progress(f"part 2: creating {rest:,} more sessions (ttl 7 d)")
            live_hash += await create_sessions(pool, url, namespace, SCALE_LONG_TTL_S, now, rest)
            out["create_rest_s"] = perf_counter() - start
        out["used_memory_full"] = await _used_memory(raw)
        async with open_store(url, namespace=namespace, clock=clock) as store:
            out["count_full_s"] = await _count_best(store, count)
            _progress(f"part 2: iter_sessions over {count:,}")
            all_hash = (live_hash + short_hash) & HASH_MASK
            out["iter_full"] = await _iterate(store, count, all_hash)

            clock.advance(SCALE_SHORT_TTL_S + 1)  # the ttl-1-h sessions are now expired
            live = count - tenth
            out["count_after_advance_s"] = await _count_best(store, live)
            _progress(f"part 2: purge_expired of {tenth:,} expired sessions")
            gc.collect()
            start = perf_counter()
            purged = await store.purge_expired()
            out["purge_s"] = perf_counter() - start
            out["purged"] = purged
            check(purged == tenth, f"purge_expired removed {purged:,}, expected {tenth:,}")
            check(await store.purge_expired() == 0, "a second purge finds nothing")
            out["count_after_purge_s"] = await _count_best(store, live)
            out["used_memory_after_purge"] = await _used_memory(raw)
            if clean_up:
                _progress(f"part 2: removing the namespace {namespace}")
                await store.clear()
                await raw.delete(layout_key(namespace))
    finally:
        await raw.aclose()
    return out


# -- report ---------------------------------------------------------------------------------------


def _verdict(ok: bool | None, bad: str) -> str:
    return "" if ok is None else ("ok" if ok else bad)


def _spread(comparison: dict[str, Any]) -> str:
    c = comparison
    return f"{c['ratio_median']:.2f} [{c['ratio_min']:.2f}..{c['ratio_max']:.2f}]"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def render(summary: dict[str, Any]) -> str:
    small = summary["small"]
    peers = ", ".join(f"{name} {v}" for name, v in small["peers"].items()) or "none"
    lines = [
        "sessionstore redis backend: SessionStore facade vs raw redis-py vs py-key-value-aio, "
        "aiocache",
        f"python {summary['python']} ({summary['implementation']}), sessionstore "
        f"{summary['sessionstore']}, redis-py {summary['redis_py']} (hiredis "
        f"{summary['hiredis']}), redis-server {small['redis_version']}, peers: {peers}, "
        f"{summary['cpus']} CPUs, {summary['platform']}",
        f"server: {summary['server']}",
        f"sessions {summary['sessions']:,}, rounds {summary['rounds']} (best round of each side "
        f"reported), {CONCURRENCY} tasks for x{CONCURRENCY}, batch = {BATCH_CALLS} calls of "
        f"{BATCH_SIZE:,} ids, wall {summary['wall_s']:.1f} s",
    ]
    for name, why in small["skipped_peers"].items():
        lines.append(f"SKIPPED peer {name}: {why}")
    lines.append("")
    header = (
        f"{'operation':<12}{'baseline':<36}{'ours ops/s':>11}{'base ops/s':>11}"
        f"{'ours us':>9}{'base us':>9}{'ratio':>7}{'rounds: median [min..max]':>27}  target"
    )
    lines += [header, "-" * (len(header) + 10)]
    for c in small["comparisons"]:
        target = c["target_min_ratio"]
        if target is None:
            goal = "(reference)"
        elif c["target_strictly_above"]:
            goal = f"> {target:<5g} {_verdict(c['within_target'], 'BEHIND')}"
        else:
            goal = f">= {target:<4g} {_verdict(c['within_target'], 'MISS')}"
        lines.append(
            f"{OP_LABELS[c['operation']]:<12}{c['baseline_does']:<36}"
            f"{c['ours_ops_per_s']:>11,.0f}{c['baseline_ops_per_s']:>11,.0f}"
            f"{c['ours_us_per_op']:>9.1f}{c['baseline_us_per_op']:>9.1f}{c['ratio']:>7.2f}"
            f"{_spread(c):>27}  {goal}"
        )
    floor = small.get("loop_floor_vs_redis_benchmark")
    if floor is not None:
        lines.append(
            f"{'get':<12}{'(the loop floor vs redis-benchmark -c 1)':<36}{'':>40}"
            f"{floor['ratio']:>7.2f}{_spread(floor):>27}  (ceiling for one task)"
        )
    if summary["one_task_get_by_loop"]:
        lines += [
            "",
            "one task's get on each event loop, against redis-benchmark -c 1 (target >= 0.6)",
        ]
        for loop_name, result in summary["one_task_get_by_loop"].items():
            for side, label in (("ours", "ours"), ("loop_floor", "the loop floor")):
                r = result[side]
                goal = f">= 0.6 {_verdict(r['ratio'] >= 0.6, 'MISS')}" if side == "ours" else ""
                lines.append(
                    f"{loop_name:<16}{label:<16}{r['us_per_op']:>9.1f} us"
                    f"{result['redis_benchmark_us_per_op']:>9.1f} us{r['ratio']:>7.2f}"
                    f"{_spread(r):>27}  {goal}".rstrip()
                )
    sizes = ", ".join(f"{k} {v} B" for k, v in small["stored_value_bytes"].items())
    lines += [
        "",
        "ratio = ours ops/s / baseline ops/s (best rounds; higher is better); for batch an op is "
        f"one call of {BATCH_SIZE:,} ids; rounds: the ratio of each round (the same load on "
        "both sides)",
        "redis-benchmark: GET of one of our records (the same value) over 1 or "
        f"{CONCURRENCY} connections; its own ops/s",
        "update vs a peer: ours is a compare-and-set (update_session), the peer a blind put/set",
        f"value stored per session: {sizes}",
    ]
    scale = summary["scale"]
    if scale is None:
        return "\n".join(lines)
    n, tenth = scale["sessions"], scale["expired"]
    count_similar = scale["count_full_s"] <= SIMILAR_FACTOR * max(scale["count_tenth_s"], 1e-4)
    peak_tenth, peak_full = scale["iter_tenth"]["peak_bytes"], scale["iter_full"]["peak_bytes"]
    peak_similar = peak_full <= SIMILAR_FACTOR * max(peak_tenth, 1)
    purge_ok = scale["purge_s"] < PURGE_TARGET_S
    per_session = (scale["used_memory_full"] - scale["used_memory_start"]) / n
    lines += [
        "",
        f"scale: {n:,} sessions ({tenth:,} of them expire when the clock moves 1 h ahead); "
        f"created in {scale['create_tenth_s'] + scale['create_rest_s']:.1f} s "
        f"({n / (scale['create_tenth_s'] + scale['create_rest_s']):,.0f}/s; "
        f"{SCALE_PROCESSES} processes x {SCALE_TASKS} tasks)",
        "",
    ]
    header = f"{'measure':<40}{'at N/10':>20}{'at N':>20}  target"
    lines += [header, "-" * (len(header) + 20)]
    it_t, it_f = scale["iter_tenth"], scale["iter_full"]
    rows = [
        (
            "count_sessions (best of 5)",
            f"{scale['count_tenth_s'] * 1e3:.3f} ms",
            f"{scale['count_full_s'] * 1e3:.3f} ms",
            f"similar (<= {SIMILAR_FACTOR:g}x) {_verdict(count_similar, 'GREW')}",
        ),
        (
            "iter_sessions: time (sessions/s)",
            f"{it_t['s']:.2f} s ({tenth / it_t['s']:,.0f})",
            f"{it_f['s']:.2f} s ({n / it_f['s']:,.0f})",
            "",
        ),
        (
            "iter_sessions: peak traced memory",
            _mib(peak_tenth),
            _mib(peak_full),
            f"flat (<= {SIMILAR_FACTOR:g}x) {_verdict(peak_similar, 'GREW')}",
        ),
        (
            "  (its time under tracemalloc)",
            f"{it_t['traced_s']:.2f} s",
            f"{it_f['traced_s']:.2f} s",
            "",
        ),
        (
            "redis used_memory",
            _mib(scale["used_memory_tenth"]),
            _mib(scale["used_memory_full"]),
            f"{per_session:,.0f} B/session",
        ),
    ]
    lines += [f"{a:<40}{b:>20}{c:>20}  {d}".rstrip() for a, b, c, d in rows]
    lines += [
        "",
        f"after the clock moved: count_sessions {scale['count_after_advance_s'] * 1e3:.3f} ms "
        f"(= {n - tenth:,})",
        f"purge_expired: {scale['purge_s']:.2f} s, {scale['purged']:,} removed (== expired)   "
        f"target < {PURGE_TARGET_S:g} s {_verdict(purge_ok, 'OVER')}",
        f"after purge: count_sessions {scale['count_after_purge_s'] * 1e3:.3f} ms, "
        f"used_memory {_mib(scale['used_memory_after_purge'])} "
        f"(start {_mib(scale['used_memory_start'])})",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__, sessions=DEFAULT_SESSIONS, rounds=DEFAULT_ROUNDS)
    parser.add_argument(
        "--scale",
        type=int,
        default=DEFAULT_SCALE,
        help="sessions in the scale part, 0 to skip it (%(default)s)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("SESSIONSTORE_REDIS_URL"),
        help="a redis:// URL of one server to use instead of a throwaway one "
        "(default: $SESSIONSTORE_REDIS_URL)",
    )
    args = parser.parse_args(argv)
    if args.sessions < BATCH_SIZE or args.rounds < 1 or args.scale < 0:
        parser.error(f"--sessions must be at least {BATCH_SIZE}, --rounds 1, --scale 0")
    if 0 < args.scale < 10:
        parser.error("--scale must be 0 or at least 10")
    start = perf_counter()
    tag = secrets.token_hex(4)
    with ExitStack() as stack:
        try:
            url, what = stack.enter_context(redis_server(args.url))
        except NoRedisServer as exc:
            raise SystemExit(f"bench_redis: {exc}") from None
        clean_up = bool(args.url)  # a throwaway server is simply stopped
        small = asyncio.run(run_small(url, args.sessions, args.rounds, tag, clean_up=clean_up))
        one_task = {}
        for loop_name, factory in _loop_factories().items():
            _progress(f"one task's get on {loop_name}")
            with asyncio.Runner(loop_factory=factory) as runner:
                times = runner.run(run_one_task(url, args.sessions, args.rounds, tag))
            if times:
                one_task[loop_name] = summarize_one_task(times)
        scale = (
            asyncio.run(run_scale(url, args.scale, tag, clean_up=clean_up)) if args.scale else None
        )
    summary = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sessionstore": __version__,
        "redis_py": redis.__version__,
        "hiredis": _hiredis_version(),
        "cpus": os.cpu_count(),
        "server": what,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "wall_s": perf_counter() - start,
        "small": summarize_small(small),
        "one_task_get_by_loop": one_task,
        "scale": scale,
    }
    return emit(summary, as_json=args.json, render=render)


def _hiredis_version() -> str:
    try:
        import hiredis
    except ImportError:
        return "not installed"
    return str(hiredis.__version__)


if __name__ == "__main__":
    sys.exit(main())
