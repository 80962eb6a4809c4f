"""The ``sessionstore`` command: inspect, export, import, migrate, check and benchmark any store.

Run ``sessionstore --help``; every command's ``--help`` ends with examples. The commands that open
a store take ``--store URL`` (or the ``SESSIONSTORE_URL`` environment variable), ``--namespace``
(or ``SESSIONSTORE_NAMESPACE``) and ``--option KEY=VALUE`` for backend options.

Exit status: 0 on success, 1 when an operation failed (a bad or unreachable store, a missing
session, a failed check), 2 for a usage error, 130 when interrupted. A failure is always one line on
stderr, never a traceback; every store spec is shown with its password redacted.

This module is imported only by the console script: ``import sessionstore`` does not import click.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast
from xml.etree import ElementTree

import click

from .benchmark import BenchmarkReport, run_benchmark
from .capabilities import Capability
from .codec import decode_session
from .errors import CorruptRecordError, SessionNotFoundError, SessionStoreError
from .models import Session, SessionStatus, TransportType
from .plugins import installed_backends, load_backend_factory
from .store import SessionStore, open_store
from .transfer import (
    ExportReader,
    MigrationCheckpoint,
    TransferCounts,
    dump_to_json,
    export_store,
    import_dumps,
    migrate,
    verify_export,
)
from .urls import backend_name_of, redact_text, redact_url

__all__ = ["cli", "main"]

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

RAW_DRIVER_NOT_OFFERED = "not offered by this backend"


# -- failures: one line on stderr and an exit status ----------------------------------------------


class Interrupted(Exception):
    """The user interrupted a command (Ctrl-C); the message says what to do next."""


class CommandFailed(click.ClickException):
    """A command could not do what was asked (exit status 1); the message says why."""


def _one_line(text: str) -> str:
    return redact_text(" ".join(text.split()))


class SessionStoreCommand(click.Group):
    """The root command. Its :meth:`main` turns every failure into one line on stderr and an
    exit status (see the module docstring); set ``SESSIONSTORE_TRACEBACK=1`` to see the
    traceback of an unexpected error instead."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        status = self._run(args, prog_name, complete_var, windows_expand_args, extra)
        if not standalone_mode:
            return status
        sys.exit(status)

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: dict[str, Any],
    ) -> int:
        prog = prog_name or "sessionstore"

        def fail(message: str, status: int) -> int:
            click.echo(f"{prog}: {message}", err=True)
            return status

        try:
            outcome = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except click.exceptions.NoArgsIsHelpError as exc:  # the bare command: its help
            click.echo(exc.format_message())
            return 0
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else prog
            message = _one_line(exc.format_message()).rstrip(".")
            return fail(f"usage error: {message} (see '{where} --help')", EXIT_USAGE)
        except click.ClickException as exc:
            return fail(f"error: {_one_line(exc.format_message())}", exc.exit_code)
        except (click.Abort, Interrupted) as exc:
            return fail(str(exc) if isinstance(exc, Interrupted) else "interrupted", 130)
        except SessionStoreError as exc:
            return fail(f"error: {_one_line(str(exc))}", EXIT_FAILED)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            return fail(f"error: {_one_line(exc.strerror or str(exc))}{where}", EXIT_FAILED)
        except Exception as exc:
            if os.environ.get("SESSIONSTORE_TRACEBACK"):
                raise
            return fail(
                f"internal error: {type(exc).__name__}: {_one_line(str(exc))} (please report "
                "it; SESSIONSTORE_TRACEBACK=1 shows the traceback)",
                EXIT_FAILED,
            )
        return outcome if isinstance(outcome, int) else 0


def _run(coroutine: Coroutine[Any, Any, T], *, on_interrupt: str = "interrupted") -> T:
    """Run ``coroutine`` in a new event loop; Ctrl-C becomes :class:`Interrupted`.

    On Ctrl-C asyncio cancels the coroutine, so its ``async with`` blocks close their stores.
    """
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        raise Interrupted(on_interrupt) from None


# -- shared options -------------------------------------------------------------------------------


def _parse_options(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as backend options; a value is JSON when it parses (``5``, ``true``),
    else the string itself."""
    options: dict[str, Any] = {}
    for pair in values:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter("each option must be KEY=VALUE, KEY a Python identifier")
        try:
            options[key] = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
            options[key] = raw
    return options


def _option_flag(
    *names: str,
    help: str = "A backend option (repeatable): -o key_prefix=myapp, -o busy_timeout=10.",
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    return click.option(
        *names, "options", multiple=True, metavar="KEY=VALUE", callback=_parse_options, help=help
    )


def _store_options(
    *, namespace_default: str | None = "default"
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``--store``, ``--namespace`` and ``--option``, as ``store_url``, ``namespace``,
    ``options``."""

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        command = _option_flag("--option", "-o")(command)
        command = click.option(
            "--namespace",
            "-n",
            default=namespace_default,
            envvar="SESSIONSTORE_NAMESPACE",
            show_default=namespace_default is not None,
            help="The namespace (tenant or application) to work in.",
        )(command)
        return click.option(
            "--store",
            "-s",
            "store_url",
            envvar="SESSIONSTORE_URL",
            metavar="URL",
            help="The store: sqlite:///sessions.db, redis://host:6379/0, memory... "
            "[env: SESSIONSTORE_URL]",
        )(command)

    return decorate


def _progress_flag(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar on stderr (default: when stderr is a terminal).",
    )(command)


def _json_flag(command: Callable[..., T]) -> Callable[..., T]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")(command)


def _open(store_url: str | None, namespace: str, options: dict[str, Any]) -> SessionStore:
    if not store_url:
        raise click.UsageError("no store given: pass --store URL or set SESSIONSTORE_URL")
    return open_store(store_url, namespace=namespace, **options)


def _describe(store_url: str, namespace: str) -> str:
    return f"{redact_url(store_url)} (namespace {namespace})"


@contextlib.contextmanager
def _progress_bar(
    label: str, length: int, enabled: bool | None
) -> Iterator[Callable[[int], None] | None]:
    """A click progress bar on stderr, or ``None`` when disabled (by default when stderr is not
    a terminal)."""
    stderr = sys.stderr
    if enabled is None:
        enabled = stderr.isatty()
    if not enabled:
        yield None
        return
    with click.progressbar(
        length=max(length, 1), label=label, file=stderr, show_pos=True, update_min_steps=1
    ) as bar:
        yield bar.update


def _examples(*lines: str) -> str:
    """An epilog of examples, kept as written by ``--help`` (``\\b``)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deadline_text(deadline_ms: int | None) -> str:
    if deadline_ms is None:
        return "never"
    return _when(datetime.fromtimestamp(deadline_ms / 1000, UTC))


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An age (``90s``, ``15m``, ``2h``, ``7d``, ``1h30m``: that long ago) or an ISO 8601 time
    (UTC when it names no offset)."""
    if value is None:
        return None
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if parts and "".join(number + unit for number, unit in parts) == text:
        age = sum(float(number) * _SECONDS[unit] for number, unit in parts)
        return datetime.now(UTC) - timedelta(seconds=age)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            "expected an age (90s, 15m, 2h, 7d, 1h30m) or a time (2025-01-31T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _event_text(data: bytes | None, full: bool) -> str:
    if data is None:
        return "priming event (no data)"
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\n\r" for c in text):
        kind, shown = "text", text.replace("\r", "\\r").replace("\n", "\\n")
    else:
        kind, shown = "base64", base64.b64encode(data).decode("ascii")
    if not full and len(shown) > 100:
        shown = shown[:100] + "..."
    return f"{len(data)} bytes, {kind}: {shown}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


LISTED_UNREADABLE = 20
"""Unreadable ids the failure at the end of a listing names (each was named on stderr when met)."""


class _Unreadable:
    """The ``on_corrupt`` of a listing that goes on past records that cannot be decoded: each
    one is named on stderr when it is met (and, for ``--json``, on stdout as
    ``{"corrupt": {"id": ..., "reason": ...}}``, a line without a top-level ``id``, so a
    pipeline picking ``.id`` never acts on it); :meth:`failure` is the error at the end."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.ids: list[str] = []
        self._as_json = as_json
        self._prog = click.get_current_context().find_root().info_name or "sessionstore"

    def __call__(self, error: CorruptRecordError) -> None:
        self.ids.append(error.session_id)
        click.echo(f"{self._prog}: skipped: {_one_line(str(error))}", err=True)
        if self._as_json:
            shown = {"id": error.session_id, "reason": _one_line(error.reason)}
            click.echo(json.dumps({"corrupt": shown}))

    def failure(self, outcome: str) -> CommandFailed:
        listed = ", ".join(repr(i) for i in self.ids[:LISTED_UNREADABLE])
        more = ", ..." if len(self.ids) > LISTED_UNREADABLE else ""
        were = "was" if len(self.ids) == 1 else "were"
        return CommandFailed(
            f"{_plural(len(self.ids), 'stored record')} could not be read and {were} skipped: "
            f"{listed}{more}; {outcome}"
        )


# -- the command ----------------------------------------------------------------------------------


@click.group(
    cls=SessionStoreCommand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_examples(
        "sessionstore backends",
        "sessionstore ls --store sqlite:///sessions.db --status active",
        "export SESSIONSTORE_URL=redis://localhost:6379/0; sessionstore count",
        "sessionstore migrate --from sqlite:///sessions.db --to redis://localhost:6379/0",
    ),
)
@click.version_option(package_name="sessionstore", message="%(prog)s %(version)s")
def cli() -> None:
    """Inspect, export, import, migrate, check and benchmark sessionstore stores.

    A store is a backend name or URL (sqlite:///sessions.db, redis://host:6379/0, memory), given
    with --store or SESSIONSTORE_URL. Passwords in URLs are never printed. Every failure is one
    line on stderr with exit status 1 (2 for a usage error, 130 when interrupted).
    """


# -- backends -------------------------------------------------------------------------------------


@dataclass
class _BackendEntry:
    distribution: str | None
    version: str | None
    entry_point: str
    schemes: list[str]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "schemes": self.schemes,
            "error": self.error,
        }


def _installed_backend_entries() -> list[_BackendEntry]:
    """Every installed backend, one entry per distribution and entry point with all the names
    (URL schemes) it registers. Each is imported to check it loads; one that does not keeps its
    error instead of breaking the listing."""
    entries: dict[tuple[str | None, str | None, str], _BackendEntry] = {}
    for name, info in sorted(installed_backends().items()):
        key = (info.distribution, info.version, info.value)
        entry = entries.setdefault(key, _BackendEntry(*key, schemes=[]))
        entry.schemes.append(name)
        try:
            load_backend_factory(name)
        except SessionStoreError as exc:
            entry.error = entry.error or _one_line(str(exc))
    return list(entries.values())


def _capabilities_of(store: SessionStore) -> dict[str, str | None]:
    """Every capability: ``None`` when the store has it, else the reason it lacks it."""
    lacking = store.capabilities
    return {capability.value: lacking.get(capability) for capability in Capability}


@cli.command(
    epilog=_examples(
        "sessionstore backends",
        "sessionstore backends --store redis+cluster://10.0.0.1:7000 --json",
    )
)
@_store_options()
@_json_flag
def backends(store_url: str | None, namespace: str, options: dict[str, Any], as_json: bool) -> None:
    """List the installed backends: distribution, version, URL schemes, and whether each loads.

    A backend that fails to import is listed with its error. Capabilities are declared by a store
    and can depend on its configuration (a Redis Cluster lacks atomic batches across slots):
    with --store (or SESSIONSTORE_URL), the capabilities of that store are listed too. Opening it
    does not contact the server.
    """
    entries = _installed_backend_entries()
    store_info: dict[str, Any] | None = None
    if store_url:
        store = _open(store_url, namespace, options)
        try:
            store_info = {
                "store": redact_url(store_url),
                "backend": store.backend_name,
                "capabilities": _capabilities_of(store),
            }
        finally:
            _run(store.aclose())
    if as_json:
        click.echo(
            json.dumps({"backends": [e.as_dict() for e in entries], "store": store_info}, indent=2)
        )
        return
    rows = [("DISTRIBUTION", "VERSION", "URL SCHEMES", "STATUS")] + [
        (
            e.distribution or "?",
            e.version or "?",
            ", ".join(e.schemes),
            "ok" if e.error is None else f"error: {e.error}",
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[3]
        )
    if not entries:
        click.echo("(no backend installed: pip install sessionstore-sqlite, for one)")
    click.echo()
    if store_info is None:
        click.echo("Capabilities depend on a store's configuration: add --store URL to list one's.")
        return
    click.echo(f"capabilities of {store_info['store']} (backend {store_info['backend']}):")
    width = max(len(c.value) for c in Capability)
    for capability, reason in store_info["capabilities"].items():
        click.echo(f"  {capability.ljust(width)}  {'yes' if reason is None else 'no: ' + reason}")


# -- inspecting one store -------------------------------------------------------------------------


def _session_json(session: Session) -> dict[str, Any]:
    return session.model_dump(mode="json")


@cli.command(
    "ls",
    epilog=_examples(
        "sessionstore ls --store sqlite:///sessions.db",
        "sessionstore ls --status active --transport http --older-than 2h",
        "sessionstore ls --newer-than 2025-01-31T00:00:00Z --by activity --json | jq .id",
    ),
)
@_store_options()
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in SessionStatus]),
    help="Only sessions with this status (repeatable).",
)
@click.option(
    "--transport",
    "transports",
    multiple=True,
    type=click.Choice([t.value for t in TransportType]),
    help="Only sessions of this transport (repeatable).",
)
@click.option(
    "--older-than",
    metavar="AGE|TIME",
    callback=_parse_moment,
    help="Only sessions created before then: an age (90s, 15m, 2h, 7d) or an ISO 8601 time.",
)
@click.option(
    "--newer-than",
    metavar="AGE|TIME",
    callback=_parse_moment,
    help="Only sessions created after then.",
)
@click.option(
    "--by",
    type=click.Choice(["created", "activity"]),
    default="created",
    show_default=True,
    help="Which time --older-than and --newer-than compare: created_at or last_activity.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many sessions.")
@_json_flag
def ls(
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    statuses: tuple[str, ...],
    transports: tuple[str, ...],
    older_than: datetime | None,
    newer_than: datetime | None,
    by: str,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the live sessions, in the store's paging order, a page at a time.

    With --json, one JSON object per line (JSON Lines): the session's fields and version.

    A stored record that cannot be decoded is skipped and named on stderr (with --json also as a
    line {"corrupt": {"id": ..., "reason": ...}}); the listing goes on, and the command fails at
    the end naming every skipped id.
    """

    def wanted(session: Session) -> bool:
        moment = session.created_at if by == "created" else session.last_activity
        return (
            (not statuses or session.status.value in statuses)
            and (not transports or session.transport.value in transports)
            and (older_than is None or moment < older_than)
            and (newer_than is None or moment > newer_than)
        )

    unreadable = _Unreadable(as_json=as_json)

    async def run() -> None:
        async with _open(store_url, namespace, options) as store:
            if not as_json:
                click.echo(
                    f"{'ID':<32}  {'TRANSPORT':<9}  {'STATUS':<7}  {'VERSION':>7}  "
                    f"{'CREATED':<20}  LAST ACTIVITY"
                )
            shown = 0
            listing = cast(
                "AsyncGenerator[Session, None]", store.iter_sessions(on_corrupt=unreadable)
            )
            async with contextlib.aclosing(listing) as sessions:
                async for session in sessions:
                    if not wanted(session):
                        continue
                    if as_json:
                        click.echo(json.dumps(_session_json(session)))
                    else:
                        click.echo(
                            f"{session.id:<32}  {session.transport.value:<9}  "
                            f"{session.status.value:<7}  {session.version:>7}  "
                            f"{_when(session.created_at):<20}  {_when(session.last_activity)}"
                        )
                    shown += 1
                    if limit is not None and shown >= limit:
                        break

    _run(run())
    if unreadable.ids:
        raise unreadable.failure("the readable sessions were listed")


@cli.command(
    epilog=_examples(
        "sessionstore show 3q2-Xt0pQ9 --store sqlite:///sessions.db",
        "sessionstore show 3q2-Xt0pQ9 --json",
    )
)
@click.argument("session_id", metavar="ID")
@_store_options()
@_json_flag
def show(
    session_id: str, store_url: str | None, namespace: str, options: dict[str, Any], as_json: bool
) -> None:
    """Show one session: its fields, version, expiry, last event id and event streams."""

    async def run() -> None:
        async with _open(store_url, namespace, options) as store:
            dump = await store.dump_session(session_id)
        session = decode_session(dump.record)
        streams = [(stream_id, len(events)) for stream_id, events in dump.streams]
        if as_json:
            shown = {
                **_session_json(session),
                "deadline_ms": dump.record.deadline_ms,
                "expires_at": None
                if dump.record.deadline_ms is None
                else _deadline_text(dump.record.deadline_ms),
                "last_event_id": dump.last_event_id,
                "streams": [{"id": s, "events": n} for s, n in streams],
            }
            click.echo(json.dumps(shown, indent=2))
            return
        rows = [
            ("id", session.id),
            ("transport", session.transport.value),
            ("response mode", session.response_mode.value if session.response_mode else "-"),
            ("status", session.status.value),
            ("upstream id", session.upstream_session_id or "-"),
            ("created", _when(session.created_at)),
            ("last activity", _when(session.last_activity)),
            ("version", str(session.version)),
            ("expires", _deadline_text(dump.record.deadline_ms)),
            ("last event id", dump.last_event_id or "-"),
            (
                "streams",
                ", ".join(f"{s} ({_plural(n, 'event')})" for s, n in streams) or "-",
            ),
            ("metadata", json.dumps(session.metadata) if session.metadata else "-"),
        ]
        for label, value in rows:
            click.echo(f"{label:<14}{value}")

    _run(run())


@cli.command(
    epilog=_examples(
        "sessionstore events 3q2-Xt0pQ9 --store sqlite:///sessions.db",
        "sessionstore events 3q2-Xt0pQ9 --json",
    )
)
@click.argument("session_id", metavar="ID")
@_store_options()
@click.option("--full", is_flag=True, help="Show each event's data whole, not cut at 100.")
@_json_flag
def events(
    session_id: str,
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    full: bool,
    as_json: bool,
) -> None:
    """Show the event log of a session: each stream's retained events, oldest first.

    Data is shown as text when it is UTF-8, else as base64. Event ids are not shown: the store
    API hands them out but does not list them. --json gives the streams as an export file holds
    them (data in base64, null for a priming event).
    """

    async def run() -> None:
        async with _open(store_url, namespace, options) as store:
            dump = await store.dump_session(session_id)
        if as_json:
            line = dump_to_json(dump)
            shown = {"id": line["id"], "last_event_id": line["last_event_id"]}
            click.echo(json.dumps({**shown, "streams": line["streams"]}, indent=2))
            return
        click.echo(f"last event id: {dump.last_event_id or '-'}")
        if not dump.streams:
            click.echo("no events")
        for stream_id, stream_events in dump.streams:
            click.echo(f"stream {stream_id}: {_plural(len(stream_events), 'event')}, oldest first")
            for position, data in enumerate(stream_events, start=1):
                click.echo(f"  {position:>5}  {_event_text(data, full)}")

    _run(run())


@cli.command(
    epilog=_examples(
        "sessionstore rm 3q2-Xt0pQ9 --store sqlite:///sessions.db",
        "sessionstore ls --status closed --json | jq -r .id | xargs sessionstore rm",
    )
)
@click.argument("session_ids", metavar="ID...", nargs=-1, required=True)
@_store_options()
def rm(
    session_ids: tuple[str, ...], store_url: str | None, namespace: str, options: dict[str, Any]
) -> None:
    """Delete sessions, with their last event ids and events. Fails if one was not there."""

    async def run() -> None:
        missing = []
        async with _open(store_url, namespace, options) as store:
            for session_id in session_ids:
                if await store.delete_session(session_id):
                    click.echo(f"deleted {session_id}")
                else:
                    missing.append(session_id)
        if missing:
            raise SessionNotFoundError(*missing)

    _run(run())


@cli.command(epilog=_examples("sessionstore count --store redis://localhost:6379/0 -n tenant-a"))
@_store_options()
def count(store_url: str | None, namespace: str, options: dict[str, Any]) -> None:
    """Print how many live sessions the namespace holds."""

    async def run() -> int:
        async with _open(store_url, namespace, options) as store:
            return await store.count_sessions()

    click.echo(_run(run()))


@cli.command(epilog=_examples("sessionstore purge --store sqlite:///sessions.db"))
@_store_options()
def purge(store_url: str | None, namespace: str, options: dict[str, Any]) -> None:
    """Remove the expired sessions (already invisible to every read) to reclaim their space."""

    async def run() -> int:
        async with _open(store_url, namespace, options) as store:
            return await store.purge_expired()

    click.echo(f"purged {_plural(_run(run()), 'expired session')}")


# -- export, import, migrate ----------------------------------------------------------------------


@cli.command(
    epilog=_examples(
        "sessionstore export backup.jsonl --store sqlite:///sessions.db",
        "sessionstore export --store redis://localhost:6379/0 -n tenant-a | gzip > a.jsonl.gz",
    )
)
@click.argument("file", metavar="[FILE]", default="-")
@_store_options()
@_progress_flag
def export(
    file: str,
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    progress: bool | None,
) -> None:
    """Write every live session of a namespace to FILE (default: stdout), whole.

    The file is JSON Lines, format sessionstore-export version 1 (see docs/cli.md): a header, one
    line per session (version, deadline, incarnation, payload, last event id, every stream's
    events), and an end line counting them, so a truncated file is refused by import. A FILE is
    written under a temporary name and renamed when complete.

    A stored record that cannot be decoded is left out and named on stderr; the export goes on,
    and the command fails at the end naming every record left out.
    """
    unreadable = _Unreadable()

    async def run(out: TextIO) -> int:
        async with _open(store_url, namespace, options) as store:
            total = await store.count_sessions()
            with _progress_bar("exporting", total, progress) as bar:
                return await export_store(
                    store, out, source=store_url or "", progress=bar, on_corrupt=unreadable
                )

    if file == "-":
        exported = _run(run(sys.stdout))
        where = "stdout"
    else:
        path = Path(file)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as out:
                exported = _run(run(out))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        where = file
    click.echo(f"exported {_plural(exported, 'session')} to {where}", err=True)
    if unreadable.ids:
        raise unreadable.failure(f"{where} holds the other {_plural(exported, 'session')}")


def _counts_text(counts: TransferCounts) -> str:
    return (
        f"copied {counts.copied}, already there {counts.present}, expired before they could be "
        f"written {counts.expired}, conflicts {counts.conflicts}"
    )


def _conflicts_failure(counts: TransferCounts) -> CommandFailed:
    listed = ", ".join(repr(i) for i in counts.conflict_ids)
    more = "" if counts.conflicts == len(counts.conflict_ids) else ", ..."
    return CommandFailed(
        f"{_plural(counts.conflicts, 'session')} of the target had the same id with another "
        f"version or content and were left as they were: {listed}{more}"
    )


@cli.command(
    "import",
    epilog=_examples(
        "sessionstore import backup.jsonl --store redis://localhost:6379/0",
        "gunzip -c a.jsonl.gz | sessionstore import - --store sqlite:///sessions.db -n tenant-a",
    ),
)
@click.argument("file", metavar="FILE")
@_store_options(namespace_default=None)
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sessions written at once.",
)
@_progress_flag
def import_(
    file: str,
    store_url: str | None,
    namespace: str | None,
    options: dict[str, Any],
    concurrency: int,
    progress: bool | None,
) -> None:
    """Load the sessions of an export FILE (- for stdin) into a store, whole.

    Into the namespace the file was exported from, unless --namespace says otherwise. A session
    whose id is live in the store is never overwritten: the same one (same version and content)
    counts as already there, another one as a conflict, which fails the import. Importing a file
    twice, or again after an interruption, copies each session once. A FILE is checked whole
    before anything is written, so a truncated or damaged file imports nothing; from stdin the
    sessions before the damage are imported and the error names the line.
    """
    if file == "-":
        reader = ExportReader(sys.stdin, name="<stdin>")
        total: int | None = None
        _import(reader, store_url, namespace, options, concurrency, progress, total)
        return
    with open(file, encoding="utf-8") as lines:
        _, total = verify_export(lines, name=file)
    with open(file, encoding="utf-8") as lines:
        reader = ExportReader(lines, name=file)
        _import(reader, store_url, namespace, options, concurrency, progress, total)


def _import(
    reader: ExportReader,
    store_url: str | None,
    namespace: str | None,
    options: dict[str, Any],
    concurrency: int,
    progress: bool | None,
    total: int | None,
) -> None:
    namespace = namespace or reader.header.namespace or "default"

    async def run() -> TransferCounts:
        async with _open(store_url, namespace, options) as store:
            with _progress_bar(
                "importing", total or 0, progress if total is not None else False
            ) as bar:
                return await import_dumps(reader, store, concurrency=concurrency, progress=bar)

    counts = _run(run(), on_interrupt="interrupted; run the same command again to resume")
    click.echo(
        f"imported {_plural(counts.handled, 'session')} into "
        f"{_describe(store_url or '', namespace)}: {_counts_text(counts)}"
    )
    if counts.conflicts:
        raise _conflicts_failure(counts)


@cli.command(
    "migrate",
    epilog=_examples(
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
@_option_flag("--from-option", help="A backend option of the source (repeatable).")
@click.option(
    "--to-option",
    "target_options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_options,
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
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sessions written at once.",
)
@_progress_flag
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
    route = (
        f"{_describe(source_url, source_namespace)} to {_describe(target_url, target_namespace)}"
    )
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

    async def run() -> Any:
        async with (
            open_store(source_url, namespace=source_namespace, **options) as source,
            open_store(target_url, namespace=target_namespace, **target_options) as target,
        ):
            total = await source.count_sessions()
            with _progress_bar("migrating", total, progress) as bar:
                return await migrate(
                    source,
                    target,
                    checkpoint=tracker,
                    concurrency=concurrency,
                    sample_size=sample,
                    progress=bar,
                )

    started = time.monotonic()
    report = _run(run(), on_interrupt="interrupted; run the same command again to resume")
    counts = report.counts
    click.echo(f"migrated {route} in {time.monotonic() - started:.1f} s")
    click.echo(f"  {_counts_text(counts)}, skipped (checkpoint) {report.skipped}")
    click.echo(
        f"  check: the source holds {report.source_count} sessions, the target "
        f"{report.target_count}; {report.sampled} sampled sessions compared whole"
    )
    for difference in report.differences[:20]:
        click.echo(f"  difference: {difference}")
    if len(report.differences) > 20:
        click.echo(f"  ... and {len(report.differences) - 20} more differences")
    if counts.conflicts:
        raise _conflicts_failure(counts)
    if report.differences:
        raise CommandFailed(
            f"the migration check found {_plural(len(report.differences), 'difference')} "
            "(listed above)"
        )
    click.echo("  ok: every session checked arrived whole")


# -- check ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractTestResult:
    """One contract test's outcome: ``passed``, ``failed``, ``error`` or ``skipped``."""

    name: str
    outcome: str
    detail: str


_SECTION = re.compile(r"\s*# -- (.+?) -+\s*$")
_TEST_DEF = re.compile(r"\s*def (test_\w+)\(")


_THEME = re.compile(r'\s*"""([A-Z][\w ]+):')


def _contract_sections(package_dir: Path) -> dict[str, str]:
    """Each contract test's guarantee, from the suite's source (read, not imported): the
    ``# -- N. name ---`` headings of ``suite.py``, and for the suite's other parts the theme
    their module docstring opens with (``Limits: ...``); ``{}`` when nothing can be read."""
    sections: dict[str, str] = {}
    for path in sorted(package_dir.glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if path.name == "suite.py":
            heading = "other"
        else:
            theme = _THEME.match(source)
            heading = theme[1].lower() if theme else "other"
        for line in source.splitlines():
            if path.name == "suite.py" and (match := _SECTION.match(line)):
                heading = match[1]
            elif match := _TEST_DEF.match(line):
                sections[match[1]] = heading
    return sections


def _junit_results(path: Path) -> list[ContractTestResult]:
    results = []
    for case in ElementTree.parse(path).iter("testcase"):
        name = case.get("name", "?").split("[")[0]
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                detail = (child.get("message") or child.text or "").strip()
                break
        lines = detail.splitlines()
        results.append(ContractTestResult(name, outcome, _one_line(lines[0] if lines else "")))
    return results


def _run_pytest(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run pytest; on Ctrl-C give it time to finish its scenarios (each clears its scratch
    namespace on the way out) before killing it."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as process:
        try:
            output, _ = process.communicate()
        except KeyboardInterrupt:
            try:
                process.communicate(timeout=2)  # a terminal's Ctrl-C reached it too
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                try:
                    process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            raise Interrupted("interrupted") from None
        return process.returncode, output


@cli.command(
    epilog=_examples(
        "sessionstore check sqlite:///sessions.db",
        "sessionstore check redis://localhost:6379/0 -o key_prefix=myapp",
        "sessionstore check redis://localhost:6379/0 -k 'namespace or batch' --verbose",
    )
)
@click.argument("url", envvar="SESSIONSTORE_URL", metavar="URL")
@_option_flag("--option", "-o")
@click.option(
    "-k", "select", metavar="EXPRESSION", help="Only the contract tests pytest -k selects."
)
@click.option("--quick", is_flag=True, help="Hypothesis profile sessionstore-quick: no shrinking.")
@click.option("--verbose", "-v", is_flag=True, help="Also print pytest's own output.")
def check(
    url: str, options: dict[str, Any], select: str | None, quick: bool, verbose: bool
) -> None:
    """Run the contract suite against a live store and say which guarantees hold.

    Needs sessionstore-contract. Every test works in a scratch namespace of its own
    (contract-<random>) and clears it when done, so other data is never touched; what the backend
    keeps of an emptied namespace is listed in docs/cli.md. Takes about half a minute. URL may
    come from SESSIONSTORE_URL.
    """
    try:
        suite = importlib.import_module("sessionstore_contract")
    except ImportError:
        raise CommandFailed(
            "the contract suite is not installed: pip install sessionstore-contract"
        ) from None
    load_backend_factory(backend_name_of(url))  # an unknown backend: one line, before pytest
    package_dir = Path(next(iter(suite.__path__)))
    try:
        suite_version = metadata.version("sessionstore-contract")
    except metadata.PackageNotFoundError:
        suite_version = "?"
    shown_url = redact_url(url)
    stderr = sys.stderr
    if stderr.isatty():
        click.echo(f"running the contract suite against {shown_url}...", err=True)
    with tempfile.TemporaryDirectory(prefix="sessionstore-check-") as scratch:
        folder = Path(scratch)
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        report = folder / "results.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(folder / "pytest.ini"),
            "--rootdir",
            scratch,
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "sessionstore_contract",
            "-rA",
            "-q",
            f"--junitxml={report}",
        ]
        if select:
            command += ["-k", select]
        if quick:
            command += ["--hypothesis-profile", "sessionstore-quick"]
        # The URL goes through the environment, not the command line other users can read.
        addopts = ["--sessionstore-backend", url]
        for key, value in options.items():
            addopts += ["--sessionstore-option", f"{key}={json.dumps(value)}"]
        env = {
            **os.environ,
            "PYTEST_ADDOPTS": shlex.join(addopts),
            "HYPOTHESIS_STORAGE_DIRECTORY": str(folder / "hypothesis"),
        }
        started = time.monotonic()
        status, output = _run_pytest(command, env)
        elapsed = time.monotonic() - started
        if verbose:
            click.echo(redact_text(output))
        if status == 5:
            raise CommandFailed(f"no contract test matches -k {select!r}")
        if status not in (0, 1) or not report.exists():
            last = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "no output")
            raise CommandFailed(
                f"the contract suite could not run (pytest exit status {status}): {last}"
            )
        results = _junit_results(report)
    _report_contract(results, _contract_sections(package_dir), shown_url, suite_version, elapsed)


def _report_contract(
    results: list[ContractTestResult],
    sections: dict[str, str],
    shown_url: str,
    suite_version: str,
    elapsed: float,
) -> None:
    click.echo(f"contract suite {suite_version} against {shown_url}: {len(results)} tests")
    grouped: dict[str, list[ContractTestResult]] = {}
    for result in results:
        grouped.setdefault(sections.get(result.name, "other"), []).append(result)
    broken = []
    for heading, group in grouped.items():
        outcomes = [r.outcome for r in group]
        if any(o in ("failed", "error") for o in outcomes):
            verdict = "FAILS"
            broken.append(heading)
        elif all(o == "skipped" for o in outcomes):
            verdict = "not checked (skipped)"
        else:
            skipped = outcomes.count("skipped")
            verdict = "holds" + (f" ({_plural(skipped, 'test')} skipped)" if skipped else "")
        click.echo(f"\n{heading}: {verdict}")
        for result in group:
            label = {"failed": "FAILED", "error": "ERROR"}.get(result.outcome, result.outcome)
            detail = f": {result.detail}" if result.detail and result.outcome != "passed" else ""
            click.echo(f"  {label:<8} {result.name}{detail}")
    tally = {o: sum(r.outcome == o for r in results) for o in ("passed", "skipped")}
    failed = len(results) - tally["passed"] - tally["skipped"]
    click.echo(
        f"\n{tally['passed']} passed, {failed} failed, {tally['skipped']} skipped "
        f"in {elapsed:.1f} s"
    )
    if failed:
        if tally["passed"] == 0:
            first = next(r for r in results if r.outcome in ("failed", "error"))
            raise CommandFailed(f"every contract test failed; the first: {first.detail}")
        raise CommandFailed(
            f"{failed} of {len(results)} contract tests failed: the store does not keep "
            f"{'; '.join(broken)}"
        )
    click.echo("every guarantee checked holds")


# -- bench ----------------------------------------------------------------------------------------


@cli.command(
    epilog=_examples(
        "sessionstore bench sqlite:///bench.db",
        "sessionstore bench redis://localhost:6379/0 --ops 20000 --concurrency 32 --json",
    )
)
@click.argument("url", envvar="SESSIONSTORE_URL", metavar="URL")
@click.option(
    "--ops",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sessions created, read, updated and deleted.",
)
@click.option(
    "--concurrency",
    "-c",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Operations in flight at once.",
)
@click.option(
    "--batch-size",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sessions per batch get.",
)
@_option_flag("--option", "-o")
@_json_flag
@_progress_flag
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
    stderr = sys.stderr
    show_progress = stderr.isatty() if progress is None else progress

    async def run() -> BenchmarkReport:
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
                return stack.enter_context(_progress_bar(f"{name:<9}", calls, True))

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

    report = _run(run())
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
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{shown_url}: {ops} sessions, concurrency {concurrency}")
    click.echo(f"{'operation':<16}{'ops/s':>12}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    rows = [*report.results, *([] if raw is None else [raw])]
    for result in rows:
        name = {"raw_get": "raw driver get"}.get(result.name, result.name)
        if result.sessions_per_call != 1:
            name = f"{name} ({result.sessions_per_call})"
        click.echo(
            f"{name:<16}{result.ops_per_second:>12,.0f}{result.percentile(50):>10.3f}"
            f"{result.percentile(95):>10.3f}{result.percentile(99):>10.3f}"
        )
    if ratio is None:
        click.echo(f"raw driver: {RAW_DRIVER_NOT_OFFERED}")
    else:
        click.echo(
            f"raw driver: get_session takes {ratio:.2f}x the time of the driver's bare read "
            "(the same command, nothing decoded or checked)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """The console script ``sessionstore``: runs the command and exits with its status."""
    cli.main(args=argv, prog_name="sessionstore")
