"""Moving sessions: ``export``, ``import``, ``migrate``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from ...store import open_store
from ...transfer import (
    ExportReader,
    MigrationCheckpoint,
    MigrationReport,
    TransferCounts,
    export_store,
    import_dumps,
    migrate,
    verify_export,
)
from ...urls import redact_url
from .. import output
from ..options import (
    CommandFailed,
    count_option,
    describe,
    examples,
    json_flag,
    open_from,
    option_flag,
    parse_options,
    plural,
    progress_flag,
    run,
    store_options,
)
from ..root import cli
from .inspect import Unreadable

RESUME = "interrupted; run the same command again to resume"


def _owner_only_file(path: Path) -> TextIO:
    """A new file at ``path``, readable and writable by its owner only (0600), as the SQLite
    databases are: an export holds every session's data. Fails if ``path`` exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return open(descriptor, "w", encoding="utf-8", newline="\n")


@cli.command(
    epilog=examples(
        "sessionstore export backup.jsonl --store sqlite:///sessions.db",
        "sessionstore export --store redis://localhost:6379/0 -n tenant-a | gzip > a.jsonl.gz",
    )
)
@click.argument("file", metavar="[FILE]", default="-")
@store_options()
@progress_flag
@json_flag
def export(
    file: str,
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    progress: bool | None,
    as_json: bool,
) -> None:
    """Write every live session of a namespace to FILE (default: stdout), whole.

    The file is JSON Lines, format sessionstore-export version 1 (see docs/cli.md): a header, one
    line per session (version, deadline, incarnation, payload, last event id, every stream's
    events), and an end line counting them, so a truncated file is refused by import. A FILE is
    written under a temporary name and renamed when complete; it is readable by its owner only.

    The summary goes to stderr ("exported N sessions to FILE"; --json: {"exported": N, "to":
    FILE}), as stdout may hold the export itself.

    A stored record that cannot be decoded is left out and named on stderr; the export goes on,
    and the command fails at the end naming every record left out.
    """
    unreadable = Unreadable()

    async def write(out: TextIO) -> int:
        async with open_from(store_url, namespace, options) as store:
            total = await store.count_sessions()
            with output.progress_bar("exporting", total, progress) as bar:
                return await export_store(
                    store, out, source=store_url or "", progress=bar, on_corrupt=unreadable
                )

    if file == "-":
        exported = run(write(sys.stdout))
        where = "stdout"
    else:
        path = Path(file)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        partial.unlink(missing_ok=True)  # left by a killed run that had this process id
        try:
            with _owner_only_file(partial) as out:
                exported = run(write(out))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        where = file
    if as_json:
        output.emit_json({"exported": exported, "to": where}, err=True)
    else:
        click.echo(f"exported {plural(exported, 'session')} to {where}", err=True)
    if unreadable.ids:
        raise unreadable.failure(f"{where} holds the other {plural(exported, 'session')}")


def _counts_text(counts: TransferCounts) -> str:
    return (
        f"copied {counts.copied}, already there {counts.present}, expired before they could be "
        f"written {counts.expired}, conflicts {counts.conflicts}"
    )


def _counts_json(counts: TransferCounts) -> dict[str, Any]:
    return {
        "copied": counts.copied,
        "present": counts.present,
        "expired": counts.expired,
        "conflicts": counts.conflicts,
        "conflict_ids": list(counts.conflict_ids),
    }


def _conflicts_failure(counts: TransferCounts) -> CommandFailed:
    listed = ", ".join(repr(i) for i in counts.conflict_ids)
    more = "" if counts.conflicts == len(counts.conflict_ids) else ", ..."
    return CommandFailed(
        f"{plural(counts.conflicts, 'session')} of the target had the same id with another "
        f"version or content and were left as they were: {listed}{more}"
    )


@cli.command(
    "import",
    epilog=examples(
        "sessionstore import backup.jsonl --store redis://localhost:6379/0",
        "gunzip -c a.jsonl.gz | sessionstore import - --store sqlite:///sessions.db -n tenant-a",
    ),
)
@click.argument("file", metavar="FILE")
@store_options(namespace_default=None)
@count_option("--concurrency", default=16, help="Sessions written at once.")
@progress_flag
@json_flag
def import_(
    file: str,
    store_url: str | None,
    namespace: str | None,
    options: dict[str, Any],
    concurrency: int,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Load the sessions of an export FILE (- for stdin) into a store, whole.

    Into the namespace the file was exported from, unless --namespace says otherwise. A session
    whose id is live in the store is never overwritten: the same one (same version and content)
    counts as already there, another one as a conflict, which fails the import. Importing a file
    twice, or again after an interruption, copies each session once. A FILE is checked whole
    before anything is written, so a truncated or damaged file imports nothing; from stdin the
    sessions before the damage are imported and the error names the line.

    --json: {"imported", "store", "namespace", "copied", "present", "expired", "conflicts",
    "conflict_ids"}.
    """
    settings = (store_url, namespace, options, concurrency, progress, as_json)
    if file == "-":
        _import(ExportReader(sys.stdin, name="<stdin>"), *settings, total=None)
        return
    with open(file, encoding="utf-8") as lines:
        _, total = verify_export(lines, name=file)
    with open(file, encoding="utf-8") as lines:
        _import(ExportReader(lines, name=file), *settings, total=total)


def _import(
    reader: ExportReader,
    store_url: str | None,
    namespace: str | None,
    options: dict[str, Any],
    concurrency: int,
    progress: bool | None,
    as_json: bool,
    *,
    total: int | None,
) -> None:
    namespace = namespace or reader.header.namespace or "default"

    async def load() -> TransferCounts:
        async with open_from(store_url, namespace, options) as store:
            with output.progress_bar(
                "importing", total or 0, progress if total is not None else False
            ) as bar:
                return await import_dumps(reader, store, concurrency=concurrency, progress=bar)

    counts = run(load(), on_interrupt=RESUME)
    if as_json:
        output.emit_json(
            {
                "imported": counts.handled,
                "store": redact_url(store_url or ""),
                "namespace": namespace,
                **_counts_json(counts),
            }
        )
    else:
        output.echo(
            f"imported {plural(counts.handled, 'session')} into "
            f"{describe(store_url or '', namespace)}: {_counts_text(counts)}"
        )
    if counts.conflicts:
        raise _conflicts_failure(counts)


@cli.command(
    "migrate",
    epilog=examples(
        "sessionstore migrate --from sqlite:///sessions.db --to redis://localhost:6379/0",
        "sessionstore migrate --from redis://old:6379/0 --to redis://new:6379/0 \\",
        "    --namespace tenant-a --checkpoint migrate.ckpt",
    ),
)
@click.option("--from", "source_url", required=True, metavar="URL", help="The store to copy.")
@click.option("--to", "target_url", required=True, metavar="URL", help="The store to fill.")
@click.option(
    "--namespace",
    "-n",
    default="default",
    show_default=True,
    envvar="SESSIONSTORE_NAMESPACE",
    help="The namespace to migrate (on both sides).",
)
@click.option("--from-namespace", metavar="NAMESPACE", help="The source's, if another.")
@click.option("--to-namespace", metavar="NAMESPACE", help="The target's, if another.")
@option_flag("--from-option", help="A backend option of the source (repeatable).")
@click.option(
    "--to-option",
    "target_options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=parse_options,
    help="A backend option of the target (repeatable).",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file recording progress: rerunning the command skips what is already copied.",
)
@click.option(
    "--sample",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Sessions compared whole at the end.",
)
@count_option("--concurrency", default=16, help="Sessions written at once.")
@progress_flag
@json_flag
def migrate_command(
    source_url: str,
    target_url: str,
    namespace: str,
    from_namespace: str | None,
    to_namespace: str | None,
    options: dict[str, Any],
    target_options: dict[str, Any],
    checkpoint: Path | None,
    sample: int,
    concurrency: int,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Copy every session of a namespace from one store to another, whole, then check.

    Each session keeps its version, deadline, incarnation and payload, its last event id and its
    event log (whose events get new ids from the target). Memory stays bounded whatever the size.
    A live session of the target is never overwritten: one with the same id but another version
    or content is a conflict, which fails the migration. Interrupted, the same command continues
    where it stopped (with --checkpoint it skips ahead at once). At the end the counts of both
    stores and --sample sessions drawn at random are compared; any difference fails the
    command. Migrate a store nobody writes to meanwhile.
    """
    source_namespace = from_namespace or namespace
    target_namespace = to_namespace or namespace
    if (redact_url(source_url), source_namespace) == (redact_url(target_url), target_namespace):
        raise click.UsageError("--from and --to name the same store and namespace")
    route = f"{describe(source_url, source_namespace)} to {describe(target_url, target_namespace)}"
    tracker = (
        MigrationCheckpoint(
            checkpoint,
            source=source_url,
            source_namespace=source_namespace,
            target=target_url,
            target_namespace=target_namespace,
        )
        if checkpoint is not None
        else None
    )

    async def copy() -> MigrationReport:
        async with (
            open_store(source_url, namespace=source_namespace, **options) as source,
            open_store(target_url, namespace=target_namespace, **target_options) as target,
        ):
            total = await source.count_sessions()
            with output.progress_bar("migrating", total, progress) as bar:
                return await migrate(
                    source,
                    target,
                    checkpoint=tracker,
                    concurrency=concurrency,
                    sample_size=sample,
                    progress=bar,
                )

    started = time.monotonic()
    report = run(copy(), on_interrupt=RESUME)
    elapsed = time.monotonic() - started
    counts = report.counts
    if as_json:
        output.emit_json(
            {
                "from": {"store": redact_url(source_url), "namespace": source_namespace},
                "to": {"store": redact_url(target_url), "namespace": target_namespace},
                "seconds": round(elapsed, 3),
                **_counts_json(counts),
                "skipped": report.skipped,
                "source_count": report.source_count,
                "target_count": report.target_count,
                "sampled": report.sampled,
                "differences": [output.one_line(str(d)) for d in report.differences[:20]],
                "difference_count": len(report.differences),
                "ok": not counts.conflicts and not report.differences,
            },
            indent=2,
        )
    else:
        output.echo(f"migrated {route} in {elapsed:.1f} s")
        output.echo(f"  {_counts_text(counts)}, skipped (checkpoint) {report.skipped}")
        output.echo(
            f"  check: the source holds {report.source_count} sessions, the target "
            f"{report.target_count}; {report.sampled} sampled sessions compared whole"
        )
        for difference in report.differences[:20]:
            output.echo(f"  difference: {difference}")
        if len(report.differences) > 20:
            output.echo(f"  ... and {len(report.differences) - 20} more differences")
    if counts.conflicts:
        raise _conflicts_failure(counts)
    if report.differences:
        raise CommandFailed(
            f"the migration check found {plural(len(report.differences), 'difference')} "
            + ("(listed in differences)" if as_json else "(listed above)")
        )
    if not as_json:
        output.echo(f"  {output.paint('ok', 'good')}: every session checked arrived whole")
