"""Benchmark: what each middleware costs per operation, on the memory and SQLite backends.

For each middleware (a section: a function returning the middleware to open a store with), each
backend and each operation (create, get, update), it times N operations on

* the bare store: ``open_store(backend)``;
* the same store with the middleware: ``open_store(backend, middleware=[...])``;

both in the same run, alternating which side goes first, each round on a fresh store (a fresh
SQLite file) holding the same pre-built sessions. It prints the microseconds per operation of
each side (best round, and the spread: median and worst), what the middleware adds per operation
(best with minus best bare) and the ratio. ``gc.collect()`` runs before every timed round.

Sections:

* ``otel``: :class:`sessionstore.otel.OpenTelemetryMiddleware` with the OpenTelemetry SDK as an
  application would run it: spans through a ``BatchSpanProcessor`` (to an exporter that drops
  them, so no I/O is timed) and metrics aggregated for a reader (never collected: a scrape's
  cost is not per operation).
* ``otel-api-only``: the same middleware on the API's no-op providers (no SDK installed).
* ``encryption``: :class:`sessionstore.encryption.EncryptionMiddleware` (AES-256-GCM).
* ``compression``: :class:`sessionstore.compression.CompressionMiddleware` at its default
  threshold (1024 bytes), which these sessions (about 250 bytes encoded) stay under: the cost of
  looking.
* ``compression-all``: the same with ``threshold=0``: every payload goes through zstd (stored
  compressed where that is smaller).
* ``encryption+compression``: both stacked as documented (compression outermost).

Run it with ``make bench`` or ``.venv/bin/python bench/bench_middleware.py [--only SECTION]
[--sessions N] [--rounds R] [--json]``.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

from benchkit import base_parser, check, emit, proxy_session

from sessionstore import Session, SessionStore, __version__, open_store

OPERATIONS = ("create", "get", "update")
BACKENDS = ("memory", "sqlite")
DEFAULT_SESSIONS = 3_000
DEFAULT_ROUNDS = 5


# -- the sections: one function per middleware, returning what a store is opened with ----------


def otel_middleware() -> list[object]:
    """OpenTelemetryMiddleware on SDK providers: batched spans to a dropping exporter, metrics
    aggregated for an in-memory reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from sessionstore.otel import OpenTelemetryMiddleware

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropped()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return [OpenTelemetryMiddleware(tracer_provider, meter_provider)]


def otel_api_only_middleware() -> list[object]:
    """OpenTelemetryMiddleware on the API's no-op providers: an application that installed the
    middleware but no SDK."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from sessionstore.otel import OpenTelemetryMiddleware

    return [OpenTelemetryMiddleware(NoOpTracerProvider(), NoOpMeterProvider())]


def encryption_middleware() -> list[object]:
    """EncryptionMiddleware with one 256-bit key."""
    from sessionstore.encryption import EncryptionMiddleware, generate_key

    return [EncryptionMiddleware([generate_key()])]


def compression_middleware() -> list[object]:
    """CompressionMiddleware at its default threshold."""
    from sessionstore.compression import CompressionMiddleware

    return [CompressionMiddleware()]


def compression_all_middleware() -> list[object]:
    """CompressionMiddleware compressing every payload (threshold 0)."""
    from sessionstore.compression import CompressionMiddleware

    return [CompressionMiddleware(threshold=0)]


def encryption_compression_middleware() -> list[object]:
    """Both, compression outermost (it compresses first, encryption seals the result)."""
    return [*encryption_middleware(), *compression_all_middleware()]


SECTIONS: dict[str, Callable[[], list[object]]] = {
    "otel": otel_middleware,
    "otel-api-only": otel_api_only_middleware,
    "encryption": encryption_middleware,
    "compression": compression_middleware,
    "compression-all": compression_all_middleware,
    "encryption+compression": encryption_compression_middleware,
}
"""Section name -> the function building its middleware (once per run, shared by its rounds)."""


# -- one timed round ----------------------------------------------------------------------------


class Stores:
    """Opens each round's store: a fresh SQLite file in a temporary directory, or memory."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._count = 0

    def open(self, backend: str, middleware: Sequence[object]) -> SessionStore:
        if backend == "memory":
            return open_store("memory", middleware=middleware)
        self._count += 1
        return open_store(
            f"sqlite:///{self._directory / f'round-{self._count}.db'}", middleware=middleware
        )


async def timed(store: SessionStore, op: str, sessions: Sequence[Session]) -> float:
    """N operations ``op`` on ``store`` (set up first, untimed); return the seconds they took."""
    try:
        if op == "create":
            call: Callable[[Any], Awaitable[Any]] = store.create_session
            items: Sequence[Any] = [s.model_copy() for s in sessions]
        else:
            created = [await store.create_session(s.model_copy()) for s in sessions]
            if op == "get":
                call, items = store.get_session, [s.id for s in created]
            else:
                call, items = store.update_session, created
        gc.collect()
        start = perf_counter()
        for item in items:
            await call(item)
        elapsed = perf_counter() - start
        check(await store.count_sessions() == len(sessions), f"{op}: session count")
        if op == "update":
            last = await store.get_session(sessions[-1].id)
            check(last.version == 2, "update: versions")
    finally:
        await store.aclose()
    return elapsed


async def run_section(
    middleware: Sequence[object], sessions: Sequence[Session], rounds: int, stores: Stores
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Times of every (backend, operation), bare and with the middleware, round by round."""
    times: dict[str, dict[str, dict[str, list[float]]]] = {
        backend: {op: {"bare": [], "with": []} for op in OPERATIONS} for backend in BACKENDS
    }
    for round_index in range(rounds):
        for backend in BACKENDS:
            for op in OPERATIONS:
                order = ("bare", "with") if round_index % 2 == 0 else ("with", "bare")
                for side in order:
                    store = stores.open(backend, middleware if side == "with" else ())
                    times[backend][op][side].append(await timed(store, op, sessions))
    return times


def summarize_section(
    times: dict[str, dict[str, dict[str, list[float]]]], count: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for backend, ops in times.items():
        for op, sides in ops.items():
            bare, with_ = sides["bare"], sides["with"]
            results[f"{backend} {op}"] = {
                "bare_us_per_op": min(bare) / count * 1e6,
                "with_us_per_op": min(with_) / count * 1e6,
                "bare_median_us": statistics.median(bare) / count * 1e6,
                "with_median_us": statistics.median(with_) / count * 1e6,
                "bare_worst_us": max(bare) / count * 1e6,
                "with_worst_us": max(with_) / count * 1e6,
                "cost_us_per_op": (min(with_) - min(bare)) / count * 1e6,
                "ratio": min(with_) / min(bare),
                "bare_round_s": bare,
                "with_round_s": with_,
            }
    return results


def render(summary: dict[str, Any]) -> str:
    lines = [
        "sessionstore middleware: what each costs per operation (bare store vs with it)",
        f"python {summary['python']} ({summary['implementation']}), "
        f"sessionstore {summary['sessionstore']}, {summary['platform']}",
        f"sessions {summary['sessions']:,}, rounds {summary['rounds']} "
        "(us/op: best round, then median / worst), wall "
        f"{summary['wall_s']:.1f} s",
    ]
    header = (
        f"{'operation':<16}{'bare us/op':>12}{'  (med/worst)':<16}"
        f"{'with us/op':>12}{'  (med/worst)':<16}{'cost us/op':>12}{'ratio':>8}"
    )
    for section, results in summary["sections"].items():
        lines += ["", f"[{section}]", header, "-" * len(header)]
        for name, r in results.items():
            bare_spread = f"  ({r['bare_median_us']:.1f}/{r['bare_worst_us']:.1f})"
            with_spread = f"  ({r['with_median_us']:.1f}/{r['with_worst_us']:.1f})"
            lines.append(
                f"{name:<16}{r['bare_us_per_op']:>12.2f}{bare_spread:<16}"
                f"{r['with_us_per_op']:>12.2f}{with_spread:<16}"
                f"{r['cost_us_per_op']:>12.2f}{r['ratio']:>8.2f}"
            )
    lines += ["", "cost = best round with the middleware - best round bare, per operation"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__, sessions=DEFAULT_SESSIONS, rounds=DEFAULT_ROUNDS)
    parser.add_argument(
        "--only", choices=sorted(SECTIONS), action="append", help="run only this section"
    )
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.rounds < 1:
        parser.error("--sessions and --rounds must be at least 1")
    sessions = [proxy_session() for _ in range(args.sessions)]
    start = perf_counter()
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-middleware-") as directory:
        stores = Stores(Path(directory))
        for name in args.only or SECTIONS:
            middleware = SECTIONS[name]()
            times = asyncio.run(run_section(middleware, sessions, args.rounds, stores))
            sections[name] = summarize_section(times, args.sessions)
    summary = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sessionstore": __version__,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "wall_s": perf_counter() - start,
        "sections": sections,
    }
    return emit(summary, as_json=args.json, render=render)


if __name__ == "__main__":
    sys.exit(main())
