"""Removing sessions: ``rm`` and ``purge``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import click

from ...errors import CorruptRecordError, InvalidSessionError, SessionNotFoundError
from ...models import validate_session_id
from ...store import SessionStore
from .. import output
from ..options import (
    CommandFailed,
    IdArgumentsCommand,
    dry_run_flag,
    examples,
    ids_from,
    json_flag,
    open_from,
    plural,
    run,
    store_options,
)
from ..root import cli

NAMED_MISSING = 20
"""Missing ids the failure of ``rm`` names (it counts them all)."""

NAMED_INVALID = 20
"""Lines of stdin that are not ids ``rm`` names on stderr (it counts them all)."""


async def _exists(store: SessionStore, session_id: str) -> bool:
    try:
        await store.get_session(session_id)
    except SessionNotFoundError:
        return False
    except CorruptRecordError:  # unreadable, but there: rm would delete it
        return True
    return True


@cli.command(
    cls=IdArgumentsCommand,
    epilog=examples(
        "sessionstore rm 3q2-Xt0pQ9 -Xt0pQ9r2 --store sqlite:///sessions.db",
        "sessionstore ls --status closed --json | jq -r '.id // empty' | sessionstore rm --stdin",
        "sessionstore rm --dry-run - < ids.txt",
    ),
)
@click.argument("session_ids", metavar="[ID...]", nargs=-1)
@store_options()
@click.option(
    "--stdin", "from_stdin", is_flag=True, help="Read the ids from stdin, one per line (or: -)."
)
@dry_run_flag
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but a failure.")
@json_flag
def rm(
    session_ids: tuple[str, ...],
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    from_stdin: bool,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Delete sessions, with their last event ids and events.

    The ids are arguments (one may start with -; one spelled exactly like an option goes after
    --), or lines of stdin with --stdin or -, read and deleted one at a time, so any number of
    them takes bounded memory. Every id is tried: the command fails at the end, naming the ids
    that were not there and the lines of stdin that were not ids.

    Prints "deleted ID" for each (--dry-run: "would delete ID", deleting nothing; --quiet:
    nothing); --json prints one object at the end: {"dry_run", "deleted", "missing",
    "missing_ids" (the first 20), "invalid"}.
    """
    if session_ids == ("-",):
        session_ids, from_stdin = (), True
    if from_stdin and session_ids:
        raise click.UsageError("give the ids as arguments or on stdin (--stdin or -), not both")
    if not from_stdin and not session_ids:
        raise click.UsageError("no session id given (give IDs, or --stdin to read them)")
    if not from_stdin:
        for session_id in session_ids:  # all of them before deleting any
            try:
                validate_session_id(session_id)
            except InvalidSessionError as exc:
                raise click.BadParameter(str(exc), param_hint="ID") from None
    wanted: Iterable[str | InvalidSessionError] = ids_from(sys.stdin) if from_stdin else session_ids
    deleted, missing, invalid = 0, 0, 0
    missing_ids: list[str] = []
    verb = "would delete" if dry_run else "deleted"

    async def remove() -> None:
        nonlocal deleted, missing, invalid
        async with open_from(store_url, namespace, options) as store:
            for item in wanted:
                if isinstance(item, InvalidSessionError):
                    invalid += 1
                    if invalid <= NAMED_INVALID:
                        output.note(f"skipped: {item}")
                    elif invalid == NAMED_INVALID + 1:
                        output.note("skipped: more lines that are not ids, counted at the end")
                    continue
                if dry_run:
                    there = await _exists(store, item)
                else:
                    there = await store.delete_session(item)
                if there:
                    deleted += 1
                    if not quiet and not as_json:
                        output.echo(f"{verb} {item}")
                else:
                    missing += 1
                    if len(missing_ids) < NAMED_MISSING:
                        missing_ids.append(item)

    run(remove())
    if as_json:
        output.emit_json(
            {
                "dry_run": dry_run,
                "deleted": deleted,
                "missing": missing,
                "missing_ids": missing_ids,
                "invalid": invalid,
            }
        )
    failures = []
    if missing:
        if missing <= NAMED_MISSING:
            failures.append(str(SessionNotFoundError(*missing_ids)))
        else:
            listed = ", ".join(repr(i) for i in missing_ids)
            failures.append(f"{missing} sessions not found: {listed}, ...")
    if invalid:
        were = "was not a session id" if invalid == 1 else "were not session ids"
        failures.append(f"{plural(invalid, 'line')} of stdin {were} (see above)")
    if failures:
        raise CommandFailed("; ".join(failures))


@cli.command(
    epilog=examples(
        "sessionstore purge --store sqlite:///sessions.db",
        "sessionstore purge --dry-run --json",
    )
)
@store_options()
@dry_run_flag
@json_flag
def purge(
    store_url: str | None, namespace: str, options: dict[str, Any], dry_run: bool, as_json: bool
) -> None:
    """Remove the expired sessions (already invisible to every read) to reclaim their space.

    --dry-run removes nothing and prints "would purge N expired sessions": the number purge
    would remove now, where the backend can count them (the optional session_count_expired
    hook); else it says the backend cannot count them and prints how many live sessions the
    store holds. --json: {"dry_run", "purged"} (in a dry run, what would be purged; null, with
    "live", where the backend cannot count).
    """

    async def purged() -> tuple[int | None, int, str]:
        async with open_from(store_url, namespace, options) as store:
            if not dry_run:
                return await store.purge_expired(), 0, store.backend_name
            if store.offers_count_expired:
                return await store.count_expired(), 0, store.backend_name
            return None, await store.count_sessions(), store.backend_name

    number, live, backend = run(purged())
    if dry_run:
        if number is not None:
            if as_json:
                output.emit_json({"dry_run": True, "purged": number})
            else:
                output.echo(f"would purge {plural(number, 'expired session')}")
        elif as_json:
            output.emit_json({"dry_run": True, "purged": None, "live": live})
        else:
            output.echo(
                f"dry run: nothing removed; backend {backend} cannot count its expired sessions "
                f"without removing them (the store holds {plural(live, 'live session')})"
            )
        return
    assert number is not None  # a purge always says how many it removed
    if as_json:
        output.emit_json({"dry_run": False, "purged": number})
    else:
        output.echo(f"purged {plural(number, 'expired session')}")
