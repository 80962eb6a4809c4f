"""Measuring a store: throughput and latency percentiles of each operation.

Nothing here knows about the command line (see ``sessionstore bench`` in :mod:`sessionstore.cli`).
:func:`run_benchmark` drives one open store through create, get, update, batch get and delete of
the same sessions, ``concurrency`` operations in flight, timing every call; where the backend
offers its driver's bare read (the optional ``raw_get`` hook), it times that too, next to ``get``.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ._tasks import cancel_and_wait
from .errors import BenchmarkCheckError
from .models import ResponseMode, Session, TransportType
from .store import SessionStore

__all__ = [
    "OPERATIONS",
    "BenchmarkCheckError",
    "BenchmarkReport",
    "OperationResult",
    "bench_sessions",
    "percentile",
    "run_benchmark",
]

OPERATIONS = ("create", "get", "update", "get_batch", "delete")
"""The operations measured, in the order they run (each needs the sessions the one before left)."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise BenchmarkCheckError(f"the store gave a wrong answer during the benchmark: {what}")


@dataclass(frozen=True)
class OperationResult:
    """The measurements of one operation."""

    name: str
    calls: int
    seconds: float
    """Wall time of the whole phase."""
    latencies_ms: Sequence[float]
    """Every call's latency, sorted."""
    sessions_per_call: int = 1

    @property
    def ops_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else math.inf

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "calls": self.calls,
            "sessions_per_call": self.sessions_per_call,
            "seconds": round(self.seconds, 6),
            "ops_per_second": round(self.ops_per_second, 1),
            "p50_ms": round(self.percentile(50), 4),
            "p95_ms": round(self.percentile(95), 4),
            "p99_ms": round(self.percentile(99), 4),
        }


@dataclass(frozen=True)
class BenchmarkReport:
    """What :func:`run_benchmark` measured."""

    results: list[OperationResult]
    """One per entry of :data:`OPERATIONS`, in that order."""
    raw_get: OperationResult | None
    """The backend's driver doing ``get``'s read alone, on the same sessions (``None`` when the
    backend offers no such read)."""

    def result(self, name: str) -> OperationResult:
        return next(r for r in self.results if r.name == name)

    @property
    def raw_get_ratio(self) -> float | None:
        """How many times as long ``get_session`` takes as the driver's bare read (``None``
        without one): what the framework costs over the driver."""
        if self.raw_get is None:
            return None
        return self.raw_get.ops_per_second / self.result("get").ops_per_second


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of sorted values (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def bench_sessions(count: int) -> list[Session]:
    """``count`` sessions as an MCP proxy keeps them: HTTP, SSE responses, an upstream id, a
    little metadata. Ids share a random prefix, so two runs never collide."""
    prefix = f"bench-{secrets.token_hex(4)}-"
    return [
        Session(
            id=f"{prefix}{index:09d}",
            transport=TransportType.HTTP,
            response_mode=ResponseMode.SSE_STREAM,
            upstream_session_id=f"upstream-{index}",
            metadata={"client": "sessionstore-bench", "protocol": "2025-06-18", "tools": 12},
        )
        for index in range(count)
    ]


async def _timed_phase(
    name: str,
    calls: int,
    call: Callable[[int], Awaitable[object]],
    concurrency: int,
    progress: Callable[[int], None] | None,
    sessions_per_call: int = 1,
) -> OperationResult:
    """Run ``call(0) .. call(calls - 1)`` with ``concurrency`` in flight, timing each."""
    latencies: list[float] = []
    indexes = iter(range(calls))
    clock = time.perf_counter_ns

    async def worker() -> None:
        for index in indexes:  # shared: each index goes to exactly one worker
            started = clock()
            await call(index)
            latencies.append((clock() - started) / 1e6)
            if progress is not None:
                progress(1)

    started = time.perf_counter()
    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, calls))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        await cancel_and_wait(workers)
        raise
    seconds = time.perf_counter() - started
    latencies.sort()
    return OperationResult(name, calls, seconds, latencies, sessions_per_call)


async def run_benchmark(
    store: SessionStore,
    *,
    operations: int,
    concurrency: int,
    batch_size: int = 50,
    on_phase: Callable[[str, int], Callable[[int], None] | None] | None = None,
) -> BenchmarkReport:
    """Measure ``store``: ``operations`` creates, gets, updates and deletes of as many sessions,
    and batch gets of ``batch_size`` of them at a time, each phase with ``concurrency`` calls in
    flight. Where the backend offers it (:attr:`SessionStore.offers_raw_get`), the driver's bare
    read of each session is timed right after ``get``, as ``raw_get``.

    Every result is checked (a fast wrong answer is no measurement): a wrong one raises
    :class:`BenchmarkCheckError`. The sessions are deleted by the last phase; run it on a
    namespace of its own. ``on_phase(name, calls)`` is called as each phase starts and may return
    a progress callback, called with 1 after each call.
    """
    sessions = bench_sessions(operations)
    ids = [session.id for session in sessions]
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]

    async def create(index: int) -> None:
        await store.create_session(sessions[index])

    async def get(index: int) -> None:
        session = await store.get_session(ids[index])
        _check(session.id == ids[index], f"get_session({ids[index]!r}) returned {session.id!r}")

    async def raw_get(index: int) -> None:
        found = await store.raw_get(ids[index])
        _check(found is not None, f"the raw driver read found no {ids[index]!r}")

    async def update(index: int) -> None:
        session = sessions[index]
        session.metadata = {**session.metadata, "tools": 13}
        await store.update_session(session)  # compare-and-set on the version create returned

    async def get_batch(index: int) -> None:
        found = await store.get_sessions_batch(batches[index])
        _check(
            [s.id for s in found] == batches[index],
            f"get_sessions_batch of {len(batches[index])} sessions found {len(found)}",
        )

    async def delete(index: int) -> None:
        _check(await store.delete_session(ids[index]), f"{ids[index]!r} was not there to delete")

    plan: list[tuple[str, int, Callable[[int], Awaitable[object]], int]] = [
        ("create", operations, create, 1),
        ("get", operations, get, 1),
        *([("raw_get", operations, raw_get, 1)] if store.offers_raw_get else []),
        ("update", operations, update, 1),
        ("get_batch", len(batches), get_batch, batch_size),
        ("delete", operations, delete, 1),
    ]
    results = []
    for name, calls, call, per_call in plan:
        progress = on_phase(name, calls) if on_phase is not None else None
        results.append(await _timed_phase(name, calls, call, concurrency, progress, per_call))
    raw = next((r for r in results if r.name == "raw_get"), None)
    return BenchmarkReport([r for r in results if r.name != "raw_get"], raw)
