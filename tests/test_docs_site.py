"""The documentation site as a reader meets it: built by MkDocs, opened in headless Chromium.

The site is built once (``mkdocs build --strict``, as ``make docs`` does) into a temporary folder,
served over http on a free loopback port, and read by one headless Chromium (Debian's package,
``make .browser``) at 1280 x 900 px, driven over the DevTools protocol (tests/headless_chromium.py).
Requests to the internet (web fonts, the repository's star count) are blocked: the site must work
without them. Without Chromium the browser tests are skipped, and fail under ``CI=true``.

Also here, without a browser: the generated API reference lists every field and enum member, and
every count of contract tests written in docs/ is the suite's real count.
"""

from __future__ import annotations

import enum
import functools
import html
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from headless_chromium import Chromium, find_chromium

import sessionstore
from sessionstore_contract import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
_REPO_URL = re.search(r"^repo_url: (\S+)$", (REPO / "mkdocs.yml").read_text(), re.MULTILINE)
assert _REPO_URL is not None, "mkdocs.yml has a repo_url"
REPO_URL = _REPO_URL[1]
WIDTH = 1280
# The repository's line length (ruff): a code block no wider than this must not scroll.
LINE_LENGTH = 100


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:]
    return out


def _pages(site: Path) -> list[str]:
    """Every page of the site, as paths relative to its root (``reference/api.html``)."""
    pages = [
        str(p.relative_to(site))
        for p in site.rglob("*.html")
        if "assets" not in p.relative_to(site).parts and p.name != "404.html"
    ]
    return sorted(pages)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The test's output stays the test's."""


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    """The site over http on a free loopback port."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        skip_or_fail("chromium is not installed: `make .browser` installs Debian's package")
    with Chromium(executable, width=WIDTH) as chromium:
        # Nothing from the internet: the site works without it (and the test stays hermetic).
        chromium.send("Network.enable")
        chromium.send("Network.setBlockedURLs", urls=["https://*"])
        yield chromium


# What a page looks like at 1280 px, measured in the page.
MEASURE = """JSON.stringify({
  title: (document.querySelector('.md-content h1') || {}).textContent || '',
  text: document.querySelector('.md-content article').innerText.length,
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  code: [...document.querySelectorAll('pre > code')]
    .filter(c => Math.max(...c.textContent.split('\\n').map(l => l.length)) <= LINE_LENGTH)
    .filter(c => c.scrollWidth > c.clientWidth + 1)
    .map(c => c.textContent.split('\\n')[0].slice(0, 60)),
  tables: [...document.querySelectorAll('.md-typeset__table')]
    .filter(t => t.scrollWidth > t.clientWidth + 1).length,
  broken: [...document.querySelectorAll('td code, th code')]
    .filter(c => !/\\s/.test(c.textContent) && c.getClientRects().length > 1)
    .map(c => c.textContent),
  source: [...document.querySelectorAll('a.md-source')].map(a => a.href),
})""".replace("LINE_LENGTH", str(LINE_LENGTH))


def test_every_page_renders_and_fits_1280_px(site: Path, base_url: str, browser: Chromium) -> None:
    """Each page has its title and text, raises nothing, is no wider than the window, and links
    to the repository; no code block of the repository's line length scrolls, and no
    identifier in a table is broken across lines."""
    pages = _pages(site)
    assert len(pages) >= 10, pages
    problems: dict[str, Any] = {}
    for page in pages:
        before = len(browser.console)
        browser.goto(base_url + page)
        facts = json.loads(browser.evaluate(MEASURE))
        errors = [m for m in browser.console[before:] if m.startswith("exception:")]
        wrong = {
            "no title": not facts["title"].strip(),
            "no text": facts["text"] < 200,
            "exceptions": errors,
            "wider than the window by px": max(facts["overflow"], 0),
            "code blocks that scroll": facts["code"],
            "tables that scroll": facts["tables"],
            "identifiers broken in tables": facts["broken"],
            "no link to the repository": set(facts["source"]) != {REPO_URL},
        }
        wrong = {what: value for what, value in wrong.items() if value}
        if wrong:
            problems[page] = wrong
    assert not problems, json.dumps(problems, indent=1)


OPEN_SEARCH = "document.querySelector('label[for=__search]').click(), true"
TYPE = """(() => {
  const input = document.querySelector('.md-search__input');
  input.focus();
  input.value = %s;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new KeyboardEvent('keyup', {key: 'y', bubbles: true}));
  return true;
})()"""
META = "(document.querySelector('.md-search-result__meta') || {}).textContent || ''"
HITS = "[...document.querySelectorAll('.md-search-result__item a')].map(a => a.href)"


def _search(browser: Chromium, start: str, word: str) -> list[str]:
    """Open ``start``, open its search box, type ``word``; the result links."""
    browser.goto(start)
    browser.evaluate(OPEN_SEARCH)
    browser.wait_for(
        f"(m => m.trim() !== '' && !/Initializing/.test(m))({META})",
        timeout=60,
        what="the search box leaving 'Initializing search'",
    )
    browser.evaluate(TYPE % json.dumps(word))
    browser.wait_for(f"/\\d+ matching/.test({META})", timeout=60, what=f"results for {word!r}")
    hits: list[str] = browser.evaluate(HITS)
    return hits


def test_search_finds_a_known_word(base_url: str, browser: Chromium) -> None:
    hits = _search(browser, base_url, "linearizability")
    assert any(h.startswith(f"{base_url}contract-suite.html") for h in hits), hits


def test_search_works_from_the_folder_without_a_server(site: Path, browser: Chromium) -> None:
    """Opened as build/site/index.html (file://), where a browser refuses Web Workers: the
    search still answers (docs/javascripts/file-worker.js), and results open pages, not
    folders."""
    start = (site / "index.html").as_uri()
    before = len(browser.console)
    hits = _search(browser, start, "linearizability")
    contract = (site / "contract-suite.html").as_uri()
    assert any(h.startswith(contract) for h in hits), hits
    assert not [m for m in browser.console[before:] if m.startswith("exception:")]


def test_repository_paths_link_to_the_repository(base_url: str, browser: Chromium) -> None:
    browser.goto(base_url + "writing-a-backend.html")
    links = browser.evaluate(
        "[...document.querySelectorAll('a.repo-path')].map(a => [a.textContent, a.href])"
    )
    assert [
        "examples/third_party_backend/",
        f"{REPO_URL}/tree/main/examples/third_party_backend",
    ] in links, links
    for text, href in links:
        path = text.partition("::")[0].rstrip("/")
        assert href.endswith(f"/main/{path}"), (text, href)
        assert (REPO / path).exists(), text


# -- without a browser ----------------------------------------------------------------------------


def _reference_ids(site: Path) -> set[str]:
    page = (site / "reference" / "api.html").read_text()
    return {html.unescape(i) for i in re.findall(r'\bid="(sessionstore\.[^"]+)"', page)}


def test_the_api_reference_lists_every_field_and_enum_member(site: Path) -> None:
    ids = _reference_ids(site)
    wanted = {f"sessionstore.Session.{name}" for name in sessionstore.Session.model_fields}
    enums = [
        value
        for value in vars(sessionstore).values()
        if isinstance(value, type)
        and issubclass(value, enum.Enum)
        and value.__module__
        and value.__module__.startswith("sessionstore")
    ]
    documented = {"TransportType", "ResponseMode", "SessionStatus", "Capability"}
    assert documented <= {e.__name__ for e in enums}
    wanted |= {f"sessionstore.{name}" for name in documented}
    for enum_type in enums:
        if f"sessionstore.{enum_type.__name__}" in ids:  # every enum the reference shows, whole
            wanted |= {f"sessionstore.{enum_type.__name__}.{m.name}" for m in enum_type}
    missing = sorted(wanted - ids)
    assert not missing, f"reference/api.html lacks {missing}"


def _contract_test_count() -> int:
    """How many tests the contract suite runs on a backend (what ``sessionstore check``
    announces), collected as a backend author's CI collects them."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"),
            *("--pyargs", "sessionstore_contract", "--sessionstore-backend", "memory"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    found = re.search(r"^(\d+) tests? collected", done.stdout, re.MULTILINE)
    assert found is not None, done.stdout[-3000:]
    return int(found[1])


# A total of contract tests written in a page: "102 tests", "of 102 contract tests", and the
# summary line "100 passed, 0 failed, 2 skipped" (its sum).
_TOTALS = re.compile(r"\b(\d+) (?:contract )?tests\b")
_SUMMARY = re.compile(r"\b(\d+) passed, (\d+) failed, (\d+) skipped\b")


def test_every_count_of_contract_tests_in_the_docs_is_the_real_one() -> None:
    """Counts went stale before ("33 tests" when there were 102): each one written in docs/ is
    the suite's count now. Write none, or the true one."""
    count = _contract_test_count()
    wrong = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for match in _TOTALS.finditer(text):
            if int(match[1]) != count:
                wrong.append(f"{page.relative_to(REPO)}: {match[0]!r}")
        for match in _SUMMARY.finditer(text):
            if sum(int(n) for n in match.groups()) != count:
                wrong.append(f"{page.relative_to(REPO)}: {match[0]!r}")
    assert not wrong, f"the contract suite has {count} tests; the docs say otherwise: {wrong}"


def test_the_backend_guide_explains_every_capability() -> None:
    """docs/writing-a-backend.md has a row for each ``Capability``: what not declaring it
    promises, when to declare it missing, and which of our backends lack it."""
    text = (DOCS / "writing-a-backend.md").read_text()
    rows = {
        cells[0].strip("` "): cells[1:]
        for line in text.splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    for capability in sessionstore.Capability:
        cells = rows.get(capability.value)
        assert cells is not None, f"no row for {capability.value} in writing-a-backend.md"
        assert len(cells) == 3, cells
        assert all(len(cell) > 8 for cell in cells), cells
