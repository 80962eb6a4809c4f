"""Everything the command prints goes through here: tables, JSON, colour, notes and failures.

Results go to stdout; notes, progress and failures to stderr. With ``--json`` a result is JSON on
stdout and a failure is one JSON object on stderr (see :func:`failure_line`), so stdout only ever
holds results. Colour is used only on a terminal, and never when ``NO_COLOR`` is set
(https://no-color.org): piped output is plain text.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TextIO

import click

from ..urls import redact_text

Role = Literal["header", "good", "bad", "warn", "dim"]

_STYLES: dict[Role, dict[str, Any]] = {
    "header": {"bold": True},
    "good": {"fg": "green"},
    "bad": {"fg": "red", "bold": True},
    "warn": {"fg": "yellow"},
    "dim": {"dim": True},
}


class _Mode:
    """How this run renders: set once by the root command from its arguments."""

    json = False
    prog = "sessionstore"


MODE = _Mode()


def one_line(text: str) -> str:
    """``text`` on one line, every URL password in it redacted."""
    return redact_text(" ".join(text.split()))


def colour_on(err: bool = False) -> bool:
    """Whether to colour stdout (``err``: stderr): a terminal, and ``NO_COLOR`` unset or empty."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stderr if err else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def paint(text: str, role: Role | None, *, err: bool = False) -> str:
    """``text`` styled for ``role`` when :func:`colour_on`, else unchanged."""
    if role is None or not colour_on(err):
        return text
    return click.style(text, **_STYLES[role])


def echo(text: str = "", *, err: bool = False) -> None:
    click.echo(text, err=err)


def emit_json(value: Any, *, indent: int | None = None, err: bool = False) -> None:
    """``value`` as JSON on one line (or indented), on stdout (``err``: stderr)."""
    click.echo(json.dumps(value, indent=indent), err=err)


def note(message: str, **fields: Any) -> None:
    """A line for the user on stderr (``prog: message``); with ``--json`` the object
    ``{"note": message, **fields}``."""
    if MODE.json:
        emit_json({"note": one_line(message), **fields}, err=True)
    else:
        click.echo(f"{MODE.prog}: {one_line(message)}", err=True)


class Table:
    """Rows under ``headers``, columns two spaces apart; columns in ``right`` right-aligned;
    ``roles(column, cell)`` picks a cell's colour; the last column is not padded.

    :meth:`print` sizes the columns to their widest cell; :meth:`header` and :meth:`row` print
    one line at a time, columns at least ``widths`` wide, for rows printed as they are read.
    """

    def __init__(
        self,
        headers: Sequence[str],
        *,
        right: Sequence[int] = (),
        roles: Callable[[int, str], Role | None] | None = None,
        widths: Sequence[int] = (),
    ) -> None:
        self.headers = list(headers)
        self.right = set(right)
        self.roles = roles
        self.widths = [
            max(len(h), w)
            for h, w in zip(self.headers, [*widths, *[0] * len(headers)], strict=False)
        ]

    def _line(self, cells: Sequence[str], header: bool) -> str:
        shown = []
        for i, cell in enumerate(cells):
            width = self.widths[i]
            if i in self.right:
                padded = cell.rjust(width)
            else:
                padded = cell if i == len(cells) - 1 else cell.ljust(width)
            role = "header" if header else (self.roles(i, cell) if self.roles else None)
            shown.append(paint(padded, role))
        return "  ".join(shown)

    def header(self) -> None:
        click.echo(self._line(self.headers, True))

    def row(self, cells: Sequence[str]) -> None:
        click.echo(self._line(cells, False))

    def print(self, rows: Sequence[Sequence[str]]) -> None:
        self.widths = [max([w, *(len(r[i]) for r in rows)]) for i, w in enumerate(self.widths)]
        self.header()
        for cells in rows:
            self.row(cells)


def failure_line(kind: str, message: str, status: int) -> str:
    """The one line a failure prints on stderr: ``prog: kind: message``, or with ``--json``
    ``{"error": {"kind": kind, "message": message, "status": status}}``.

    ``kind`` is ``error``, ``usage error``, ``interrupted`` or ``internal error``.
    """
    message = one_line(message)
    if MODE.json:
        return json.dumps({"error": {"kind": kind, "message": message, "status": status}})
    if kind == "interrupted":
        return f"{MODE.prog}: {message}"
    return f"{MODE.prog}: {paint(kind + ':', 'bad', err=True)} {message}"


def quiet_closed_stdout() -> None:
    """After a reader closed stdout (``| head``): point stdout at /dev/null so that the
    interpreter's last flush does not fail again (the recipe of Python's signal docs)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def progress_bar(
    label: str, length: int, enabled: bool | None
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr, or ``None`` when disabled (by default when stderr is not a
    terminal)."""
    stderr: TextIO = sys.stderr
    if enabled is None:
        enabled = stderr.isatty()
    if not enabled:
        yield None
        return
    with click.progressbar(
        length=max(length, 1), label=label, file=stderr, show_pos=True, update_min_steps=1
    ) as bar:
        yield bar.update
