"""Looking into one store: ``ls``, ``show``, ``events``, ``count``."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import datetime
from typing import Any

import click

from ...codec import decode_session
from ...errors import CorruptRecordError
from ...models import Session, SessionStatus, TransportType
from ...transfer import dump_to_json
from .. import output
from ..options import (
    CommandFailed,
    IdArgumentsCommand,
    choices_option,
    deadline_text,
    examples,
    json_flag,
    open_from,
    parse_moment,
    plural,
    run,
    store_options,
    when,
)
from ..root import cli

LISTED_UNREADABLE = 20
"""Unreadable ids the failure at the end of a listing names (each was named on stderr when met)."""


class Unreadable:
    """The ``on_corrupt`` of a listing that goes on past records that cannot be decoded: each
    one is named on stderr when it is met (and, for ``--json``, on stdout as
    ``{"corrupt": {"id": ..., "reason": ...}}``, a line without a top-level ``id``, so a
    pipeline picking ``.id`` never acts on it); :meth:`failure` is the error at the end."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.ids: list[str] = []
        self._as_json = as_json

    def __call__(self, error: CorruptRecordError) -> None:
        self.ids.append(error.session_id)
        shown = {"id": error.session_id, "reason": output.one_line(error.reason)}
        output.note(f"skipped: {error!s}", skipped=shown)
        if self._as_json:
            output.emit_json({"corrupt": shown})

    def failure(self, outcome: str) -> CommandFailed:
        listed = ", ".join(repr(i) for i in self.ids[:LISTED_UNREADABLE])
        more = ", ..." if len(self.ids) > LISTED_UNREADABLE else ""
        were = "was" if len(self.ids) == 1 else "were"
        return CommandFailed(
            f"{plural(len(self.ids), 'stored record')} could not be read and {were} skipped: "
            f"{listed}{more}; {outcome}"
        )


def session_json(session: Session, deadline_ms: int | None) -> dict[str, Any]:
    """A session as ``ls --json`` and ``show --json`` print it: its fields and version, and its
    expiry (``deadline_ms``, Unix milliseconds, and ``expires_at``; both ``null``: never)."""
    return {
        **session.model_dump(mode="json"),
        "deadline_ms": deadline_ms,
        "expires_at": None if deadline_ms is None else deadline_text(deadline_ms),
    }


_STATUS_ROLES: dict[str, output.Role] = {"active": "good", "failed": "bad", "closed": "dim"}

SORT_KEYS = ("created", "activity", "expiry", "id", "none")


def _sort_key(sort: str, session: Session, deadline_ms: int | None) -> tuple[Any, ...]:
    if sort == "created":
        return (session.created_at, session.id)
    if sort == "activity":
        return (session.last_activity, session.id)
    if sort == "expiry":  # the sessions that never expire last
        return (deadline_ms is None, deadline_ms or 0, session.id)
    return (session.id,)


@cli.command(
    "ls",
    epilog=examples(
        "sessionstore ls --store sqlite:///sessions.db",
        "sessionstore ls --status active --transport http --older-than 2h",
        "sessionstore ls --newer-than 2025-01-31T00:00:00Z --by activity --json | jq .id",
        "sessionstore ls --sort activity --reverse --limit 10",
    ),
)
@store_options()
@choices_option(
    "--status",
    "statuses",
    [s.value for s in SessionStatus],
    "Only sessions with this status (repeatable).",
)
@choices_option(
    "--transport",
    "transports",
    [t.value for t in TransportType],
    "Only sessions of this transport (repeatable).",
)
@click.option(
    "--older-than",
    metavar="AGE|TIME",
    callback=parse_moment,
    help="Only sessions created before then: an age (90s, 15m, 2h, 7d) or an ISO 8601 time.",
)
@click.option(
    "--newer-than",
    metavar="AGE|TIME",
    callback=parse_moment,
    help="Only sessions created after then.",
)
@click.option(
    "--by",
    type=click.Choice(["created", "activity"]),
    default="created",
    show_default=True,
    help="Which time --older-than and --newer-than compare: created_at or last_activity.",
)
@click.option(
    "--sort",
    type=click.Choice(SORT_KEYS),
    default="created",
    show_default=True,
    help="Order: by created_at, last_activity, expiry or id (ties by id); none: the store's "
    "paging order, printed as it is read.",
)
@click.option("--reverse", is_flag=True, help="Newest (or last) first.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first this many sessions.")
@json_flag
def ls(
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    statuses: tuple[str, ...],
    transports: tuple[str, ...],
    older_than: datetime | None,
    newer_than: datetime | None,
    by: str,
    sort: str,
    reverse: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the live sessions, oldest first (see --sort).

    With --json, one JSON object per line (JSON Lines): the session's fields and version, and its
    expiry (deadline_ms, expires_at) as show prints them.

    Sorting holds the listed sessions in memory (one line each; with --limit, at most twice that
    many); --sort none prints them in the store's paging order as they are read, in constant
    memory.

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

    def row(session: Session, deadline_ms: int | None) -> list[str]:
        return [
            session.id,
            session.transport.value,
            session.status.value,
            str(session.version),
            when(session.created_at),
            when(session.last_activity),
            deadline_text(deadline_ms),
        ]

    table = output.Table(
        ("ID", "TRANSPORT", "STATUS", "VERSION", "CREATED", "LAST ACTIVITY", "EXPIRES"),
        right=(3,),
        roles=lambda column, cell: _STATUS_ROLES.get(cell.strip()) if column == 2 else None,
        widths=(33, 9, 7, 7, 20, 20),  # for --sort none, which prints rows as they are read
    )

    unreadable = Unreadable(as_json=as_json)
    kept: list[tuple[tuple[Any, ...], Session, int | None]] = []

    async def list_them() -> None:
        async with open_from(store_url, namespace, options) as store:
            shown = 0
            listing = store.iter_sessions_with_deadlines(on_corrupt=unreadable)
            if sort == "none" and not as_json:
                table.header()
            async with contextlib.aclosing(listing) as sessions:
                async for session, deadline_ms in sessions:
                    if not wanted(session):
                        continue
                    if sort != "none":
                        kept.append((_sort_key(sort, session, deadline_ms), session, deadline_ms))
                        if limit is not None and len(kept) >= 2 * limit:
                            kept.sort(key=lambda item: item[0], reverse=reverse)
                            del kept[limit:]
                        continue
                    if as_json:
                        output.emit_json(session_json(session, deadline_ms))
                    else:
                        table.row(row(session, deadline_ms))
                    shown += 1
                    if limit is not None and shown >= limit:
                        break

    run(list_them())
    if sort != "none":
        kept.sort(key=lambda item: item[0], reverse=reverse)
        if limit is not None:
            del kept[limit:]
        if as_json:
            for _, session, deadline_ms in kept:
                output.emit_json(session_json(session, deadline_ms))
        else:
            table.print([row(session, deadline_ms) for _, session, deadline_ms in kept])
    if unreadable.ids:
        raise unreadable.failure("the readable sessions were listed")


@cli.command(
    cls=IdArgumentsCommand,
    epilog=examples(
        "sessionstore show 3q2-Xt0pQ9 --store sqlite:///sessions.db",
        "sessionstore show -Xt0pQ9r2 --json",
        "sessionstore show --json -- -n",
    ),
)
@click.argument("session_id", metavar="ID")
@store_options()
@json_flag
def show(
    session_id: str, store_url: str | None, namespace: str, options: dict[str, Any], as_json: bool
) -> None:
    """Show one session: its fields, version, expiry, last event id and event streams.

    An ID may start with -; one spelled exactly like an option (-n) goes after --.
    """

    async def fetch() -> None:
        async with open_from(store_url, namespace, options) as store:
            dump = await store.dump_session(session_id)
        session = decode_session(dump.record)
        streams = [(stream_id, len(events)) for stream_id, events in dump.streams]
        if as_json:
            shown = {
                **session_json(session, dump.record.deadline_ms),
                "last_event_id": dump.last_event_id,
                "streams": [{"id": s, "events": n} for s, n in streams],
            }
            output.emit_json(shown, indent=2)
            return
        rows = [
            ("id", session.id),
            ("transport", session.transport.value),
            ("response mode", session.response_mode.value if session.response_mode else "-"),
            ("status", session.status.value),
            ("upstream id", session.upstream_session_id or "-"),
            ("created", when(session.created_at)),
            ("last activity", when(session.last_activity)),
            ("version", str(session.version)),
            ("expires", deadline_text(dump.record.deadline_ms)),
            ("last event id", dump.last_event_id or "-"),
            (
                "streams",
                ", ".join(f"{s} ({plural(n, 'event')})" for s, n in streams) or "-",
            ),
            ("metadata", json.dumps(session.metadata) if session.metadata else "-"),
        ]
        for label, value in rows:
            output.echo(f"{output.paint(f'{label:<14}', 'header')}{value}")

    run(fetch())


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


@cli.command(
    cls=IdArgumentsCommand,
    epilog=examples(
        "sessionstore events 3q2-Xt0pQ9 --store sqlite:///sessions.db",
        "sessionstore events 3q2-Xt0pQ9 --json",
    ),
)
@click.argument("session_id", metavar="ID")
@store_options()
@click.option("--full", is_flag=True, help="Show each event's data whole, not cut at 100.")
@json_flag
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
    them (data in base64, null for a priming event). An ID may start with -.
    """

    async def fetch() -> None:
        async with open_from(store_url, namespace, options) as store:
            dump = await store.dump_session(session_id)
        if as_json:
            line = dump_to_json(dump)
            shown = {"id": line["id"], "last_event_id": line["last_event_id"]}
            output.emit_json({**shown, "streams": line["streams"]}, indent=2)
            return
        output.echo(f"last event id: {dump.last_event_id or '-'}")
        if not dump.streams:
            output.echo("no events")
        for stream_id, stream_events in dump.streams:
            output.echo(f"stream {stream_id}: {plural(len(stream_events), 'event')}, oldest first")
            for position, data in enumerate(stream_events, start=1):
                output.echo(f"  {position:>5}  {_event_text(data, full)}")

    run(fetch())


@cli.command(epilog=examples("sessionstore count --store redis://localhost:6379/0 -n tenant-a"))
@store_options()
@json_flag
def count(store_url: str | None, namespace: str, options: dict[str, Any], as_json: bool) -> None:
    """Print how many live sessions the namespace holds (--json: {"sessions": N})."""

    async def counted() -> int:
        async with open_from(store_url, namespace, options) as store:
            return await store.count_sessions()

    total = run(counted())
    if as_json:
        output.emit_json({"sessions": total})
    else:
        output.echo(str(total))
