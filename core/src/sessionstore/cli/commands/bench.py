"""``sessionstore bench``: measure a store."""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Callable
from typing import Any

import click

from ...benchmark import BenchmarkReport, run_benchmark
from ...store import open_store
from ...urls import backend_name_of, redact_url
from .. import output
from ..options import count_option, examples, json_flag, option_flag, progress_flag, run
from ..root import cli

RAW_DRIVER_NOT_OFFERED = "not offered by this backend"


@cli.command(
    epilog=examples(
        "sessionstore bench sqlite:///bench.db",
        "sessionstore bench redis://localhost:6379/0 --ops 20000 --concurrency 32 --json",
    )
)
@click.argument("url", envvar="SESSIONSTORE_URL", metavar="URL")
@count_option("--ops", default=2000, help="Sessions created, read, updated and deleted.")
@count_option("--concurrency", "-c", default=1, help="Operations in flight at once.")
@count_option("--batch-size", default=50, help="Sessions per batch get.")
@option_flag("--option", "-o")
@json_flag
@progress_flag
def bench(
    url: str,
    ops: int,
    concurrency: int,
    batch_size: int,
    options: dict[str, Any],
    as_json: bool,
    progress: bool | None,
) -> None:
    """Measure a store: ops/s and p50/p95/p99 latency of create, get, update, batch get, delete.

    Works in a scratch namespace (bench-<random>) that it clears when done, even when
    interrupted; its sessions have a one-hour ttl, so a killed run's expire by themselves.
    Where the backend offers its driver's bare read (SQLite, Redis), times it on the same
    sessions and shows how many times as long get takes: what the framework costs.
    """
    namespace = f"bench-{secrets.token_hex(6)}"
    show_progress = sys.stderr.isatty() if progress is None else progress

    async def measure() -> BenchmarkReport:
        store = open_store(url, namespace=namespace, **{"ttl": 3600, **options})
        try:
            bars: list[contextlib.ExitStack] = []

            def on_phase(name: str, calls: int) -> Callable[[int], None] | None:
                for stack in bars:
                    stack.close()
                bars.clear()
                if not show_progress:
                    return None
                stack = contextlib.ExitStack()
                bars.append(stack)
                return stack.enter_context(output.progress_bar(f"{name:<9}", calls, True))

            try:
                return await run_benchmark(
                    store,
                    operations=ops,
                    concurrency=concurrency,
                    batch_size=batch_size,
                    on_phase=on_phase,
                )
            finally:
                for stack in bars:
                    stack.close()
        finally:
            try:
                await store.clear()
            finally:
                await store.aclose()

    report = run(measure())
    shown_url = redact_url(url)
    raw, ratio = report.raw_get, report.raw_get_ratio
    if as_json:
        summary: dict[str, Any] = {
            "store": shown_url,
            "backend": backend_name_of(url),
            "namespace": namespace,
            "operations": ops,
            "concurrency": concurrency,
            "batch_size": batch_size,
            "results": {r.name: r.as_dict() for r in report.results},
            "raw_driver": None if raw is None else {"get": raw.as_dict()},
            "raw_driver_ratio": None if ratio is None else {"get": round(ratio, 2)},
        }
        if raw is None:
            summary["raw_driver_note"] = RAW_DRIVER_NOT_OFFERED
        output.emit_json(summary, indent=2)
        return
    output.echo(f"{shown_url}: {ops} sessions, concurrency {concurrency}")
    output.echo(
        output.paint(
            f"{'operation':<16}{'ops/s':>12}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}", "header"
        )
    )
    rows = [*report.results, *([] if raw is None else [raw])]
    for result in rows:
        name = {"raw_get": "raw driver get"}.get(result.name, result.name)
        if result.sessions_per_call != 1:
            name = f"{name} ({result.sessions_per_call})"
        output.echo(
            f"{name:<16}{result.ops_per_second:>12,.0f}{result.percentile(50):>10.3f}"
            f"{result.percentile(95):>10.3f}{result.percentile(99):>10.3f}"
        )
    if ratio is None:
        output.echo(f"raw driver: {RAW_DRIVER_NOT_OFFERED}")
    else:
        output.echo(
            f"raw driver: get_session takes {ratio:.2f}x the time of the driver's bare read "
            "(the same command, nothing decoded or checked)"
        )
