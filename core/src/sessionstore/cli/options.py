"""What the commands share: failures and exit statuses, the store options, parsing of ages and
ids, and running a coroutine. Rendering lives in :mod:`.output`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, TypeVar

import click

from ..errors import InvalidSessionError
from ..models import MAX_SESSION_ID_LENGTH, validate_session_id
from ..store import SessionStore, open_store
from ..urls import redact_url
from .output import one_line

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """The user interrupted a command (Ctrl-C); the message says what to do next."""


class CommandFailed(click.ClickException):
    """A command could not do what was asked (exit status 1); the message says why."""


def run(coroutine: Coroutine[Any, Any, T], *, on_interrupt: str = "interrupted") -> T:
    """Run ``coroutine`` in a new event loop; Ctrl-C becomes :class:`Interrupted`.

    On Ctrl-C asyncio cancels the coroutine, so its ``async with`` blocks close their stores.
    """
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        raise Interrupted(on_interrupt) from None


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def examples(*lines: str) -> str:
    """An epilog of examples, kept as written by ``--help`` (``\\b``)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# -- options --------------------------------------------------------------------------------------


def parse_options(
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


def option_flag(
    *names: str,
    help: str = "A backend option (repeatable): -o key_prefix=myapp, -o busy_timeout=10.",
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    return click.option(
        *names, "options", multiple=True, metavar="KEY=VALUE", callback=parse_options, help=help
    )


def store_options(
    *, namespace_default: str | None = "default"
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``--store``, ``--namespace`` and ``--option``, as ``store_url``, ``namespace``,
    ``options``."""

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        command = option_flag("--option", "-o")(command)
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


def count_option(
    *names: str, default: int, help: str
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A whole-number option of at least 1 (0 or less is a usage error), its default shown."""
    return click.option(
        *names, default=default, show_default=True, type=click.IntRange(min=1), help=help
    )


def choices_option(
    name: str, dest: str, choices: Sequence[str], help: str
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A repeatable option taking one of ``choices`` each time, as the tuple ``dest``."""
    return click.option(name, dest, multiple=True, type=click.Choice(list(choices)), help=help)


def progress_flag(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress on stderr (default: when stderr is a terminal).",
    )(command)


def json_flag(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON, for scripts (errors too, on stderr)."
    )(command)


def dry_run_flag(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--dry-run", is_flag=True, help="Say what would be done, and change nothing."
    )(command)


def open_from(store_url: str | None, namespace: str, options: dict[str, Any]) -> SessionStore:
    if not store_url:
        raise click.UsageError("no store given: pass --store URL or set SESSIONSTORE_URL")
    return open_store(store_url, namespace=namespace, **options)


def describe(store_url: str, namespace: str) -> str:
    return f"{redact_url(store_url)} (namespace {namespace})"


# -- times ----------------------------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deadline_text(deadline_ms: int | None) -> str:
    if deadline_ms is None:
        return "never"
    return when(datetime.fromtimestamp(deadline_ms / 1000, UTC))


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
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


# -- session ids as arguments ---------------------------------------------------------------------


class IdArgumentsCommand(click.Command):
    """A command whose arguments are session ids, any valid id included: one that starts with
    ``-`` (about 1 in 64 of the ids older releases generated did) is an argument, not an option.

    A token is an option only when it is exactly one of the command's option names (``-n``,
    ``--store``) or ``--name=value`` for one of them; everything else, ``-abc`` included, is an
    argument; after ``--`` everything is. The price: a short option's value is never glued to it
    (``-n tenant``, not ``-ntenant``), and an id spelled exactly like an option (``-n``) needs
    ``--`` before it.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        options: list[str] = []
        arguments: list[str] = []
        tokens = iter(args)
        for token in tokens:
            if token == "--":
                arguments.extend(tokens)
                break
            name = token.partition("=")[0] if token.startswith("--") else token
            if name in takes_value:
                options.append(token)
                value = next(tokens, None) if takes_value[name] and name == token else None
                if value is not None:  # (a missing value: click reports it below)
                    options.append(value)
            else:
                arguments.append(token)
        return super().parse_args(ctx, [*options, "--", *arguments])


def ids_from(stream: TextIO) -> Iterator[str | InvalidSessionError]:
    """Each id of ``stream``, one per line (surrounding blanks and empty lines ignored), as it is
    read: memory stays bounded whatever the input. A line that is not a valid id comes as the
    :class:`InvalidSessionError` naming it (its start, for a long one)."""
    limit = MAX_SESSION_ID_LENGTH + 2
    number = 0
    while True:
        line = stream.readline(limit)
        if not line:
            return
        number += 1
        if len(line) >= limit and not line.endswith("\n"):
            while True:  # skip the rest of an overlong line, a bounded piece at a time
                more = stream.readline(4096)
                if not more or more.endswith("\n"):
                    break
            yield InvalidSessionError(
                f"line {number} of stdin is not a session id: longer than "
                f"{MAX_SESSION_ID_LENGTH} characters ({line[:40]!r}...)"
            )
            continue
        text = line.strip()
        if not text:
            continue
        try:
            yield validate_session_id(text)
        except InvalidSessionError as error:
            yield InvalidSessionError(f"line {number} of stdin: {one_line(str(error))}")
