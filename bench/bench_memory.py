"""Benchmark: the memory backend through the SessionStore facade against the bare codec.

For each operation (create, get, update) it times

* the framework: ``open_store("memory")`` driven through the facade (``create_session``,
  ``get_session``, ``update_session``) in a tight loop inside one asyncio event loop;
* the baseline: the public codec (``encode_session`` / ``decode_session``) plus a plain dict, in
  a plain synchronous loop: the least work any store could do in this process;

and prints the ops/s of each and the ratio framework_time / baseline_time (the target is at most
1.3). Both sides work on the same pre-built sessions. Each (side, operation) runs several rounds,
alternating the two sides (and which goes first), and the best (fastest) round of each counts,
since a shared machine is noisy. ``gc.collect()`` runs before every timed round. Rounds are timed
in CPU time of the thread (``time.thread_time``): both sides run in this one thread and do no
I/O, and time spent descheduled on a busy machine would otherwise count on one side only.

It also times the codec against bare msgpack on the same sessions (the target is at most 3.0):
``decode_session`` against ``msgpack.unpackb`` of the same payloads, ``encode_session`` against
``msgpack.packb`` of the same fields. The two sides alternate in chunks of a few hundred
operations, each chunk timed in CPU time too.

Every row also shows the ratio of each round (round i of one side against round i of the other):
their median and min..max, so a noisy machine shows as a wide spread rather than a wrong figure.

Run it with ``make bench`` or ``.venv/bin/python bench/bench_memory.py [--sessions N]
[--rounds R] [--json]``.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import statistics
import sys
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter, thread_time
from typing import Any

import msgpack
from benchkit import base_parser, check, emit, proxy_session

from sessionstore import (
    ConflictError,
    Session,
    SessionExistsError,
    SessionNotFoundError,
    SessionRecord,
    __version__,
    decode_session,
    encode_session,
    open_store,
)

OPERATIONS = ("create", "get", "update")
TARGET_RATIO = 1.3
CODEC_OPERATIONS = ("decode", "encode")
CODEC_TARGET_RATIO = 3.0
CODEC_CHUNK = 250
DEFAULT_SESSIONS = 20_000
DEFAULT_ROUNDS = 9

Table = dict[str, tuple[int, bytes]]


def build_sessions(count: int) -> list[Session]:
    """``count`` distinct sessions of the shape an MCP proxy stores."""
    return [proxy_session() for _ in range(count)]


# -- the framework: the SessionStore facade on the memory backend ------------------------------


async def framework_create(sessions: Sequence[Session]) -> float:
    """N creates into a fresh store."""
    store = open_store("memory")
    try:
        create = store.create_session
        gc.collect()
        start = thread_time()
        for session in sessions:
            await create(session)
        elapsed = thread_time() - start
        check(await store.count_sessions() == len(sessions), "framework create count")
    finally:
        await store.aclose()
    return elapsed


async def framework_get(sessions: Sequence[Session]) -> float:
    """N gets (each decodes a new Session) from a store holding the N sessions."""
    store = open_store("memory")
    try:
        for session in sessions:
            await store.create_session(session)
        ids = [session.id for session in sessions]
        get = store.get_session
        gc.collect()
        start = thread_time()
        for session_id in ids:
            await get(session_id)
        elapsed = thread_time() - start
        got = await store.get_session(ids[-1])
        check(got == sessions[-1], "framework get round-trip")
    finally:
        await store.aclose()
    return elapsed


async def framework_update(sessions: Sequence[Session]) -> float:
    """N compare-and-set updates; each passes the object the store returned (version bumped)."""
    store = open_store("memory")
    try:
        current = [await store.create_session(session) for session in sessions]
        update = store.update_session
        gc.collect()
        start = thread_time()
        for session in current:
            await update(session)
        elapsed = thread_time() - start
        stored = await store.get_session(current[-1].id)
        check(stored.version == current[-1].version == 2, "framework update versions")
    finally:
        await store.aclose()
    return elapsed


# -- the baseline: the bare codec and a dict, synchronous ----------------------------------------


def baseline_create(sessions: Sequence[Session]) -> float:
    """N ``encode_session`` + ``dict[id] = (1, payload)`` after checking the id is absent."""
    table: Table = {}
    encode = encode_session
    gc.collect()
    start = thread_time()
    for session in sessions:
        session_id = session.id
        if session_id in table:
            raise SessionExistsError(session_id)
        table[session_id] = (1, encode(session))
    elapsed = thread_time() - start
    check(len(table) == len(sessions), "baseline create count")
    return elapsed


def baseline_get(sessions: Sequence[Session]) -> float:
    """N ``dict[id]`` + ``decode_session(SessionRecord(...))``."""
    table: Table = {session.id: (1, encode_session(session)) for session in sessions}
    ids = [session.id for session in sessions]
    decode, record = decode_session, SessionRecord
    gc.collect()
    start = thread_time()
    for session_id in ids:
        entry = table.get(session_id)
        if entry is None:
            raise SessionNotFoundError(session_id)
        decode(record(session_id, entry[0], None, entry[1]))
    elapsed = thread_time() - start
    version, payload = table[ids[-1]]
    got = decode_session(SessionRecord(ids[-1], version, None, payload))
    same = got.model_dump(exclude={"version"}) == sessions[-1].model_dump(exclude={"version"})
    check(same, "baseline get round-trip")
    return elapsed


def baseline_update(sessions: Sequence[Session]) -> float:
    """N compare-and-set: check the known version against the dict, encode, store version + 1."""
    table: Table = {session.id: (1, encode_session(session)) for session in sessions}
    known = dict.fromkeys(table, 1)  # the version the caller last saw, as session.version is
    encode = encode_session
    gc.collect()
    start = thread_time()
    for session in sessions:
        session_id = session.id
        version = known[session_id]
        entry = table.get(session_id)
        if entry is None:
            raise SessionNotFoundError(session_id)
        if entry[0] != version:
            raise ConflictError(session_id)
        table[session_id] = (version + 1, encode(session))
        known[session_id] = version + 1
    elapsed = thread_time() - start
    check(table[sessions[-1].id][0] == 2, "baseline update versions")
    return elapsed


# -- the codec against bare msgpack ----------------------------------------------------------


def _interleaved(
    bare: Callable[[Any], object],
    bare_inputs: Sequence[Any],
    codec: Callable[[Any], object],
    codec_inputs: Sequence[Any],
) -> tuple[float, float]:
    """CPU seconds of ``bare`` and ``codec`` over their inputs, alternating in chunks."""
    bare_time = codec_time = 0.0
    for chunk, start in enumerate(range(0, len(bare_inputs), CODEC_CHUNK)):
        end = start + CODEC_CHUNK
        for side in ("bare", "codec") if chunk % 2 == 0 else ("codec", "bare"):
            if side == "bare":
                began = thread_time()
                for item in bare_inputs[start:end]:
                    bare(item)
                bare_time += thread_time() - began
            else:
                began = thread_time()
                for item in codec_inputs[start:end]:
                    codec(item)
                codec_time += thread_time() - began
    return bare_time, codec_time


def codec_round(sessions: Sequence[Session], op: str) -> tuple[float, float]:
    """One round of ``op``: (bare msgpack seconds, codec seconds) over every session."""
    payloads = [encode_session(session) for session in sessions]
    if op == "decode":
        records = [SessionRecord(s.id, 1, None, p) for s, p in zip(sessions, payloads, strict=True)]
        gc.collect()
        return _interleaved(msgpack.unpackb, payloads, decode_session, records)
    envelopes = [msgpack.unpackb(payload) for payload in payloads]
    check(
        all(msgpack.packb(e) == p for e, p in zip(envelopes, payloads, strict=True)), "same bytes"
    )
    gc.collect()
    return _interleaved(msgpack.packb, envelopes, encode_session, sessions)


FRAMEWORK: dict[str, Callable[[Sequence[Session]], Awaitable[float]]] = {
    "create": framework_create,
    "get": framework_get,
    "update": framework_update,
}
BASELINE: dict[str, Callable[[Sequence[Session]], float]] = {
    "create": baseline_create,
    "get": baseline_get,
    "update": baseline_update,
}


async def run(sessions: Sequence[Session], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Every round runs every operation on both sides, alternating which side goes first."""
    times: dict[str, dict[str, list[float]]] = {
        op: {"framework": [], "baseline": []} for op in OPERATIONS
    }
    for round_index in range(rounds):
        for op in OPERATIONS:
            framework_first = round_index % 2 == 0
            for side in ("framework", "baseline") if framework_first else ("baseline", "framework"):
                if side == "framework":
                    elapsed = await FRAMEWORK[op](sessions)
                else:
                    elapsed = BASELINE[op](sessions)
                times[op][side].append(elapsed)
        for op in CODEC_OPERATIONS:
            bare, codec = codec_round(sessions, op)
            times.setdefault(op, {"framework": [], "baseline": []})
            times[op]["framework"].append(codec)
            times[op]["baseline"].append(bare)
    return times


def spread(framework: list[float], baseline: list[float]) -> dict[str, float]:
    """Median and range of the per-round ratios (round i against round i)."""
    ratios = [f / b for f, b in zip(framework, baseline, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def summarize(
    times: dict[str, dict[str, list[float]]], count: int, rounds: int, wall: float
) -> dict[str, Any]:
    results = {}
    for op in OPERATIONS + CODEC_OPERATIONS:
        framework, baseline = min(times[op]["framework"]), min(times[op]["baseline"])
        ratio = framework / baseline
        target = TARGET_RATIO if op in OPERATIONS else CODEC_TARGET_RATIO
        per_round = spread(times[op]["framework"], times[op]["baseline"])
        results[op] = {
            "framework_ops_per_s": count / framework,
            "baseline_ops_per_s": count / baseline,
            "framework_us_per_op": framework / count * 1e6,
            "baseline_us_per_op": baseline / count * 1e6,
            "overhead_us_per_op": (framework - baseline) / count * 1e6,
            "ratio": ratio,
            "round_ratios": per_round,
            "target_ratio": target,
            "within_target": ratio <= target,
            "framework_round_s": times[op]["framework"],
            "baseline_round_s": times[op]["baseline"],
        }
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sessionstore": __version__,
        "sessions": count,
        "rounds": rounds,
        "target_ratio": TARGET_RATIO,
        "wall_s": wall,
        "results": results,
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        "sessionstore memory backend: SessionStore facade vs bare codec + dict",
        f"python {summary['python']} ({summary['implementation']}), "
        f"sessionstore {summary['sessionstore']}, {summary['platform']}",
        f"sessions {summary['sessions']:,}, rounds {summary['rounds']} "
        f"(best round of each side reported), wall {summary['wall_s']:.1f} s",
        "",
    ]
    header = (
        f"{'operation':<10}{'framework ops/s':>17}{'baseline ops/s':>16}"
        f"{'fw us/op':>10}{'base us/op':>12}{'overhead us':>13}{'ratio':>8}"
        f"{'per round: median (min..max)':>31}  target"
    )
    lines += [header, "-" * len(header)]
    for op, r in summary["results"].items():
        if op == CODEC_OPERATIONS[0]:
            lines += ["", "codec vs bare msgpack (CPU time; 'framework' = sessionstore's codec)"]
        rounds = r["round_ratios"]
        lines.append(
            f"{op:<10}{r['framework_ops_per_s']:>17,.0f}{r['baseline_ops_per_s']:>16,.0f}"
            f"{r['framework_us_per_op']:>10.2f}{r['baseline_us_per_op']:>12.2f}"
            f"{r['overhead_us_per_op']:>13.2f}{r['ratio']:>8.2f}"
            f"{rounds['median']:>14.2f} ({rounds['min']:.2f}..{rounds['max']:.2f})"
            f"  <= {r['target_ratio']} {'ok' if r['within_target'] else 'OVER'}"
        )
    lines += [
        "",
        "ratio = framework time / baseline time (best rounds); per round: round i of each side",
        "decode: decode_session vs msgpack.unpackb; encode: encode_session vs msgpack.packb",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__, sessions=DEFAULT_SESSIONS, rounds=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.rounds < 1:
        parser.error("--sessions and --rounds must be at least 1")
    sessions = build_sessions(args.sessions)
    start = perf_counter()
    times = asyncio.run(run(sessions, args.rounds))
    summary = summarize(times, args.sessions, args.rounds, perf_counter() - start)
    return emit(summary, as_json=args.json, render=render)


if __name__ == "__main__":
    sys.exit(main())
