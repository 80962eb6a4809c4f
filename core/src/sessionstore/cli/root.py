"""The root command: runs a command and turns every way it can end into an exit status and at
most one line on stderr (see :mod:`sessionstore.cli`)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import SessionStoreError
from . import output
from .options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, Interrupted, examples


def _wants_json(args: Sequence[str]) -> bool:
    """Whether ``--json`` is among the options (before any ``--``): then failures are JSON too,
    usage errors found before the command's own options were parsed included."""
    shown = list(args)
    return "--json" in (shown[: shown.index("--")] if "--" in shown else shown)


def _closed_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` says stdout's reader went away: a broken pipe, and stdout's pipe is the
    broken one (not, say, a socket of a store's driver)."""
    if not isinstance(exc, OSError) or exc.errno != errno.EPIPE:
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no descriptor, no poll(): cannot tell
        return False


class _StdoutClosed(Exception):
    """The reader of stdout went away (``| head``). Not an ``OSError``, so that click's own
    handling of a closed pipe (exit status 1) does not apply."""


class SessionStoreCommand(click.Group):
    """The root command. Its :meth:`main` turns every failure into one line on stderr and an
    exit status (see the package docstring); set ``SESSIONSTORE_TRACEBACK=1`` to see the
    traceback of an unexpected error instead. A reader that closes stdout early (``| head``)
    ends the command quietly, with status 0."""

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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if _closed_pipe(exc):
                raise _StdoutClosed from None
            raise

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: dict[str, Any],
    ) -> int:
        output.MODE.prog = prog_name or "sessionstore"
        output.MODE.json = _wants_json(sys.argv[1:] if args is None else args)

        def fail(kind: str, message: str, status: int) -> int:
            with contextlib.suppress(OSError):  # stderr gone too: the status still tells
                click.echo(output.failure_line(kind, message, status), err=True)
            return status

        try:
            try:
                outcome = super().main(
                    args,
                    prog_name,
                    complete_var,
                    standalone_mode=False,
                    windows_expand_args=windows_expand_args,
                    **extra,
                )
            finally:
                sys.stdout.flush()  # a closed pipe shows here, while it can still be handled
        except _StdoutClosed:
            output.quiet_closed_stdout()
            return 0
        except click.exceptions.NoArgsIsHelpError as exc:  # the bare command: its help
            click.echo(exc.format_message())
            return 0
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else output.MODE.prog
            message = output.one_line(exc.format_message()).rstrip(".")
            return fail("usage error", f"{message} (see '{where} --help')", EXIT_USAGE)
        except click.ClickException as exc:
            return fail("error", exc.format_message(), exc.exit_code)
        except click.Abort:
            return fail("interrupted", "interrupted", EXIT_INTERRUPTED)
        except Interrupted as exc:
            return fail("interrupted", str(exc), EXIT_INTERRUPTED)
        except SessionStoreError as exc:
            return fail("error", str(exc), EXIT_FAILED)
        except OSError as exc:
            if _closed_pipe(exc):
                output.quiet_closed_stdout()
                return 0
            where = f" ({exc.filename})" if exc.filename else ""
            return fail("error", f"{exc.strerror or exc}{where}", EXIT_FAILED)
        except Exception as exc:
            if os.environ.get("SESSIONSTORE_TRACEBACK"):
                raise
            return fail(
                "internal error",
                f"{type(exc).__name__}: {output.one_line(str(exc))} (please report it; "
                "SESSIONSTORE_TRACEBACK=1 shows the traceback)",
                EXIT_FAILED,
            )
        return outcome if isinstance(outcome, int) else 0


@click.group(
    cls=SessionStoreCommand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=examples(
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
    line on stderr with exit status 1 (2 for a usage error, 130 when interrupted); with --json,
    that line is a JSON object.
    """


def main(argv: Sequence[str] | None = None) -> None:
    """The console script ``sessionstore``: runs the command and exits with its status."""
    cli.main(args=argv, prog_name="sessionstore")
