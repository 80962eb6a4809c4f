"""The fenced code blocks of the documentation, read the way the tests run them.

Pages: ``README.md`` and every ``docs/**/*.md``. A block opens with a line of three or more
backticks (or tildes), optionally indented, followed by an info string whose first word is the
language; it closes with a line of the same character, at least as long. A Python block is one
whose language is ``python``, ``py`` or ``python3``.

An HTML comment on the line right before a fence tells the tests something about that block:

``<!-- snippet: skip (reason) -->``
    the block is deliberately a fragment and is not run; the reason is required and is shown in
    the test's skip message.
``<!-- snippet: continue -->``
    the block continues the previous Python block of the same page: the two (or more) run as one
    program, so a long listing can be explained piece by piece and still be tested whole.
``<!-- snippet: mcp-sdk1 -->``
    the block is written for the MCP SDK's 1.x API: it runs in ``.venv-mcp1`` (the SDK 1.x
    environment the MCP end-to-end tests use), not in the development environment's SDK 2.x.

A marker that is not right before a fence, a skip without a reason, an unknown directive, a
``continue`` with nothing to continue and an unclosed fence are all reported in
:attr:`Page.problems`, which the tests require to be empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PYTHON_LANGUAGES",
    "REPO",
    "Block",
    "Page",
    "Snippet",
    "documentation_pages",
    "parse_page",
]

REPO = Path(__file__).resolve().parents[2]
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*snippet:(?P<body>.*?)-->\s*$")
_SKIP = re.compile(r"skip\b\s*(?:\((?P<reason>.*)\))?\s*\Z", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block: ``line`` is the 1-based line of its opening fence."""

    line: int
    language: str
    code: str
    directive: str | None = None
    """``"skip"``, ``"continue"``, ``"mcp-sdk1"`` or ``None``: the marker before the fence."""
    reason: str | None = None
    """The reason of a ``skip``."""


@dataclass
class Snippet:
    """A Python program of the docs: one block, or a block and the blocks that continue it."""

    page: str
    """The page, relative to the repository (``docs/quickstart.md``)."""
    line: int
    code: str
    blocks: int = 1
    skip_reason: str | None = None
    mcp_sdk1: bool = False
    """Whether it runs with the MCP SDK 1.x (``.venv-mcp1``)."""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Page:
    path: str
    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def snippets(self) -> list[Snippet]:
        """The Python programs of the page, continued blocks joined to the block they continue."""
        snippets: list[Snippet] = []
        for block in self.blocks:
            if block.language not in PYTHON_LANGUAGES:
                continue
            if block.directive == "continue" and snippets:
                previous = snippets[-1]
                previous.code = previous.code.rstrip("\n") + "\n\n" + block.code
                previous.blocks += 1
                continue
            snippets.append(
                Snippet(
                    self.path,
                    block.line,
                    block.code,
                    skip_reason=(block.reason or "no reason given (a problem of the page)")
                    if block.directive == "skip"
                    else None,
                    mcp_sdk1=block.directive == "mcp-sdk1",
                )
            )
        return snippets

    @property
    def skips(self) -> list[Block]:
        return [b for b in self.blocks if b.directive == "skip"]


def documentation_pages(repo: Path = REPO) -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def parse_page(text: str, path: str) -> Page:
    """Every fenced block of a Markdown text, with the problems of its snippet markers."""
    page = Page(path)
    lines = text.splitlines()
    marker: tuple[int, str] | None = None  # (line number, body) of a marker awaiting its fence
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        opening = _FENCE.match(line)
        if opening is None:
            found = _MARKER.match(line)
            if marker is not None:
                page.problems.append(
                    f"{path}:{marker[0]}: a snippet marker must be on the line right before a "
                    "code fence"
                )
            marker = (number, found["body"].strip()) if found else None
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = (opening["info"].strip().split() or [""])[0].lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        index += 1
        while index < len(lines) and not closing.match(lines[index]):
            body.append(_dedent(lines[index], indent))
            index += 1
        if index == len(lines):
            page.problems.append(f"{path}:{number}: the code fence opened here is never closed")
        index += 1  # past the closing fence
        directive, reason = None, None
        if marker is not None:
            directive, reason = _directive(marker[1], f"{path}:{marker[0]}", page.problems)
            if directive == "continue" and not any(
                b.language in PYTHON_LANGUAGES for b in page.blocks
            ):
                page.problems.append(
                    f"{path}:{marker[0]}: 'continue' but no Python block before it on this page"
                )
            if directive is not None and language not in PYTHON_LANGUAGES:
                page.problems.append(
                    f"{path}:{marker[0]}: a snippet marker before a {language or 'plain'} block; "
                    "markers are for Python blocks"
                )
            marker = None
        page.blocks.append(Block(number, language, "\n".join(body) + "\n", directive, reason))
    if marker is not None:
        page.problems.append(
            f"{path}:{marker[0]}: a snippet marker must be on the line right before a code fence"
        )
    return page


def _directive(body: str, where: str, problems: list[str]) -> tuple[str | None, str | None]:
    if body in ("continue", "mcp-sdk1"):
        return body, None
    skip = _SKIP.match(body)
    if skip is None:
        problems.append(
            f"{where}: unknown snippet marker {body!r}: "
            "use 'skip (reason)', 'continue' or 'mcp-sdk1'"
        )
        return None, None
    reason = (skip["reason"] or "").strip()
    if not reason:
        problems.append(f"{where}: a skipped snippet needs a reason: <!-- snippet: skip (why) -->")
    return "skip", reason or None


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t")
