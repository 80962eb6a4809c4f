"""Every Python snippet of the documentation runs, and the pages keep their other promises.

**What runs.** Every ``python`` fenced block of ``README.md`` and ``docs/**/*.md`` (read by
``docs_snippets.py``, which also defines the markers): each is one test, named after its page and
line. A block marked ``<!-- snippet: skip (reason) -->`` is skipped with its reason (pytest ``-rs``
lists them); a skip without a reason, a stray marker or an unclosed fence fails
``test_snippet_markers``, which also counts the skips and fails beyond ``MAX_SKIPS``. A block
marked ``<!-- snippet: continue -->`` runs together with the blocks before it, as one program.

**How it runs.** Each snippet runs in a fresh subprocess of this interpreter, as the module
``__main__``, with a fresh temporary directory as its working directory, and must finish within
``SNIPPET_TIMEOUT`` seconds and exit 0 (its own ``assert`` statements are part of the test). The
docs use top-level ``await`` (``async with``, ``async for``) as in ``python -m asyncio``: the
snippet is compiled with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``; if that makes its code a coroutine,
the whole snippet runs as the body of one async function, to completion, under ``asyncio.run``.
Otherwise it runs as a plain script.

**Redis.** A snippet that names a Redis URL gets a real server, never a mock. Before it runs, its
text is changed by this substitution rule and no other:

* ``redis://HOST[:PORT][/DB]`` becomes ``redis://127.0.0.1:PORT[/DB]`` of a throwaway
  ``redis-server`` started for this module (the database number is kept). When
  ``SESSIONSTORE_REDIS_URL`` is set, the whole URL is replaced by that one instead.
* ``rediss://HOST[:PORT][/DB]`` becomes the URL of a throwaway TLS server (certificate for
  127.0.0.1, signed by a fresh CA); the CA's certificate is put in the working directory as
  ``ca.pem``, so a snippet connects with ``tls_ca_file="ca.pem"``.
* ``redis+cluster://HOST:PORT[,HOST:PORT...]`` becomes the nodes of a throwaway three-master
  Redis Cluster.

A Redis URL with credentials in a Python snippet is refused (the throwaway servers have none;
show credentials in ``console`` blocks). Servers start only when a snippet needs them, as in the
Redis backend's tests (``plugins/redis/tests/redis_servers.py``): without ``redis-server`` on PATH
those snippets are skipped, loudly, and under ``CI=true`` they fail.

**The backend guide.** ``docs/writing-a-backend.md`` is also built as a project from an empty
folder: every block whose first line is ``# <path>`` becomes that file, the project is installed
with pip (no index, no network) and its ``tests/`` run the whole contract suite on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from core_testkit import redis_servers
from docs_snippets import REPO, Page, Snippet, documentation_pages, parse_page

from sessionstore_contract import skip_or_fail

SNIPPET_TIMEOUT = 120.0  # seconds for one snippet, servers already started
MAX_SKIPS = 5  # keep skipped snippets rare: make a snippet complete rather than skip it

RUNNER = """\
import ast, asyncio, inspect, sys, types

path = sys.argv[1]
with open(path, encoding="utf-8") as file:
    source = file.read()
code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
module = types.ModuleType("__main__")
module.__file__ = path
sys.modules["__main__"] = module
sys.argv = [path]
if code.co_flags & inspect.CO_COROUTINE:  # top-level await: one async function's body
    asyncio.run(eval(code, module.__dict__))
else:
    exec(code, module.__dict__)
"""

PAGES: list[Page] = [
    parse_page(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())
    for path in documentation_pages()
]
SNIPPETS: list[Snippet] = [snippet for page in PAGES for snippet in page.snippets]

_REDIS_URL = re.compile(
    r"(?P<scheme>rediss?(?:\+cluster)?)://(?P<authority>[^/\s\"'`]*)(?P<db>/\d+)?"
)


# -- Redis servers for the snippets ---------------------------------------------------------------


class SnippetServers:
    """Throwaway Redis servers, each started on first use and stopped with the module."""

    def __init__(self) -> None:
        self._servers = redis_servers()
        self._started: dict[str, Any] = {}

    def _require(self, *, cli: bool = False, tls: bool = False) -> None:
        if self._servers.redis_server_binary() is None:
            skip_or_fail("redis-server not found on PATH: install it to run this snippet")
        if cli and self._servers.redis_cli_binary() is None:
            skip_or_fail("redis-cli not found on PATH: it is needed to start a Redis Cluster")
        if tls and not self._servers.redis_server_supports_tls():
            skip_or_fail("this redis-server was built without TLS support")

    def plain(self) -> str:
        """``redis://host:port`` without a database, or ``SESSIONSTORE_REDIS_URL`` whole."""
        configured = os.environ.get("SESSIONSTORE_REDIS_URL")
        if configured:
            return configured
        if "plain" not in self._started:
            self._require()
            self._started["plain"] = self._servers.RedisServer().start()
        return str(self._started["plain"].url)

    def tls(self) -> tuple[str, str]:
        """``(rediss://host:port, path of the CA certificate)``."""
        if "tls" not in self._started:
            self._require(tls=True)
            self._started["tls"] = self._servers.RedisServer(tls=True).start()
        server = self._started["tls"]
        return str(server.url), str(server.ca_file)

    def cluster(self) -> str:
        if "cluster" not in self._started:
            self._require(cli=True)
            self._started["cluster"] = self._servers.RedisClusterServers().start()
        return str(self._started["cluster"].url)

    def close(self) -> None:
        for server in self._started.values():
            server.close()


@pytest.fixture(scope="module")
def snippet_servers() -> Iterator[SnippetServers]:
    servers = SnippetServers()
    yield servers
    servers.close()


def substitute_redis_urls(code: str, servers: SnippetServers, workdir: Path) -> str:
    """Apply the substitution rule of the module docstring to a snippet's text."""

    def replace(match: re.Match[str]) -> str:
        scheme, authority, db = match["scheme"], match["authority"], match["db"] or ""
        if "@" in authority:
            pytest.fail(
                f"a Python snippet names a Redis URL with credentials ({match[0]!r}): the "
                "throwaway servers have none; show credentials in a console block",
                pytrace=False,
            )
        if scheme.endswith("+cluster"):
            if scheme.startswith("rediss"):
                pytest.fail("no throwaway TLS cluster: rediss+cluster:// cannot run", pytrace=False)
            return servers.cluster()
        if scheme == "rediss":
            url, ca_file = servers.tls()
            shutil.copyfile(ca_file, workdir / "ca.pem")
            return url + db
        plain = servers.plain()
        if os.environ.get("SESSIONSTORE_REDIS_URL"):
            return plain
        return plain + db

    return _REDIS_URL.sub(replace, code)


# -- the snippets --------------------------------------------------------------------------------


def _numbered(code: str) -> str:
    return "\n".join(f"{n:4} | {line}" for n, line in enumerate(code.splitlines(), 1))


MCP_SDK1_PYTHON = REPO / ".venv-mcp1" / "bin" / "python"


def run_snippet(
    code: str, workdir: Path, label: str, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    path = workdir / "snippet.py"
    path.write_text(code, encoding="utf-8")
    try:
        return subprocess.run(
            [python, "-c", RUNNER, str(path)],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=SNIPPET_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{label} did not finish in {SNIPPET_TIMEOUT:.0f} s\n{_numbered(code)}\n"
            f"--- output so far ---\n{exc.stdout or ''}{exc.stderr or ''}",
            pytrace=False,
        )


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if snippet.skip_reason is not None:
        pytest.skip(f"{snippet.id}: {snippet.skip_reason}")
    code = snippet.code
    if _REDIS_URL.search(code):
        code = substitute_redis_urls(code, request.getfixturevalue("snippet_servers"), tmp_path)
    python = sys.executable
    if snippet.mcp_sdk1:
        if not MCP_SDK1_PYTHON.exists():
            skip_or_fail(
                f"{snippet.id} needs the SDK 1.x environment: run `make .venv-mcp1/.installed`"
            )
        python = str(MCP_SDK1_PYTHON)
    result = run_snippet(code, tmp_path, snippet.id, python)
    if result.returncode != 0:
        pytest.fail(
            f"{snippet.id} ({snippet.blocks} block(s)) exited with {result.returncode}\n"
            f"{_numbered(code)}\n--- stdout ---\n{result.stdout[-3000:]}\n"
            f"--- stderr ---\n{result.stderr[-5000:]}",
            pytrace=False,
        )


def test_snippet_markers() -> None:
    """No malformed marker anywhere, every skip has a reason, and skips stay rare."""
    problems = [problem for page in PAGES for problem in page.problems]
    assert not problems, "\n".join(problems)
    skips = [f"{page.path}:{block.line}: {block.reason}" for page in PAGES for block in page.skips]
    assert len(skips) <= MAX_SKIPS, (
        f"{len(skips)} skipped snippets (at most {MAX_SKIPS}): make them complete instead\n"
        + "\n".join(skips)
    )
    # The pages this test reads are the ones the site is built from, and they have snippets.
    assert {"README.md", "docs/index.md", "docs/quickstart.md"} <= {page.path for page in PAGES}
    assert len(SNIPPETS) >= 10


def test_marker_rules_catch_mistakes() -> None:
    """The parser reports what test_snippet_markers must fail on (so that test can fail)."""
    text = (
        "<!-- snippet: skip -->\n```python\nhook(x)\n```\n"  # 1: no reason
        "<!-- snippet: skip (a hook signature) -->\n```python\ndef f(\n```\n"  # 5: fine
        "<!-- snippet: continue -->\n\n```python\nprint(1)\n```\n"  # 9: not right before
        "<!-- snippet: frobnicate -->\n```python\nx = 1\n```\n"  # 14: unknown directive
        "<!-- snippet: continue -->\n```python\ny = x + 1\n```\n"  # 18: joined to line 15
        "  ```py\n  indented = True\n  ```\n"  # 22: an indented fence
        "```python\nnever closed\n"  # 25
    )
    page = parse_page(text, "t.md")
    assert page.problems == [
        "t.md:1: a skipped snippet needs a reason: <!-- snippet: skip (why) -->",
        "t.md:9: a snippet marker must be on the line right before a code fence",
        "t.md:14: unknown snippet marker 'frobnicate': "
        "use 'skip (reason)', 'continue' or 'mcp-sdk1'",
        "t.md:25: the code fence opened here is never closed",
    ]
    snippets = {s.line: s for s in page.snippets}
    assert snippets[2].skip_reason is not None
    assert snippets[6].skip_reason == "a hook signature"
    assert snippets[15].code == "x = 1\n\ny = x + 1\n"
    assert snippets[15].blocks == 2
    assert snippets[22].code == "indented = True\n"
    assert [b.directive for b in page.skips] == ["skip", "skip"]


def test_redis_urls_are_substituted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONSTORE_REDIS_URL", raising=False)

    class Fixed(SnippetServers):
        def plain(self) -> str:
            return "redis://127.0.0.1:1111"

        def tls(self) -> tuple[str, str]:
            ca = tmp_path / "the-ca.pem"
            ca.write_text("CA")
            return "rediss://127.0.0.1:2222", str(ca)

        def cluster(self) -> str:
            return "redis+cluster://127.0.0.1:3,127.0.0.1:4,127.0.0.1:5"

    code = (
        'a = "redis://localhost:6379/0"; b = "redis://cache:6379"\n'
        'c = "rediss://redis.internal:6380/2"; d = "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"\n'
        'e = "sqlite:///s.db"\n'
    )
    assert substitute_redis_urls(code, Fixed(), tmp_path) == (
        'a = "redis://127.0.0.1:1111/0"; b = "redis://127.0.0.1:1111"\n'
        'c = "rediss://127.0.0.1:2222/2"; d = "redis+cluster://127.0.0.1:3,127.0.0.1:4,127.0.0.1:5"\n'
        'e = "sqlite:///s.db"\n'
    )
    assert (tmp_path / "ca.pem").read_text() == "CA"


# -- the backend guide: from an empty folder to a passing contract suite --------------------------

_FILE_HEADER = re.compile(r"#\s+(?P<path>[\w./-]+\.(?:py|toml|cfg|txt))\s*\n")


def test_backend_guide_builds_a_backend_that_passes_the_contract(tmp_path: Path) -> None:
    page = next(p for p in PAGES if p.path == "docs/writing-a-backend.md")
    files: dict[str, str] = {}
    sources = [(s.line, s.code) for s in page.snippets] + [
        (b.line, b.code) for b in page.blocks if b.language == "toml"
    ]
    for line, code in sources:
        header = _FILE_HEADER.match(code)
        if header is not None:
            assert header["path"] not in files, f"line {line}: {header['path']} given twice"
            files[header["path"]] = code
    assert {"pyproject.toml", "tests/test_contract.py"} <= set(files), sorted(files)
    assert any(path.startswith("src/") and path.endswith(".py") for path in files), sorted(files)

    project, site = tmp_path / "project", tmp_path / "site"
    for relative, code in files.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(code, encoding="utf-8")
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--no-build-isolation", "--no-index", "--target", str(site)),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    # Every contract test ran (each parametrized case counts), and the only ones skipped are
    # those the guide's backend declines: the optional raw_get and event_watch hooks, and the
    # capabilities its dicts cannot offer (other processes, reopening).
    counts = re.match(r"(\d+) passed, (\d+) skipped in ", summary)
    assert counts is not None, summary
    assert int(counts[1]) + int(counts[2]) == _contract_test_cases(), summary
    skips = re.findall(r"^SKIPPED \[(\d+)\] \S+: (.*)$", run.stdout, re.MULTILINE)
    declined = (
        "optional raw_get hook",
        "lacks shared_processes",
        "lacks durable",
        "lacks event_notifications",
    )
    assert all(any(d in reason for d in declined) for _, reason in skips), skips
    assert sum(int(n) for n, _ in skips) == int(counts[2]), skips
    assert "optional raw_get hook" in run.stdout, run.stdout[-2000:]
    # What the page shows of such a run ("## 5. Prove it") is this run: its counts, and each
    # skip it lists with its number, are the real ones.
    text = (REPO / page.path).read_text(encoding="utf-8")
    shown = re.findall(r"^(\d+) passed, (\d+) skipped in ", text, re.MULTILINE)
    assert shown == [(counts[1], counts[2])], f"the page shows {shown}; the run: {summary}"
    shown_skips = re.findall(r"^SKIPPED \[(\d+)\] \.\.\.: (.*)$", text, re.MULTILINE)
    assert shown_skips, "the page shows the skips of the run"
    for number, reason in shown_skips:
        assert (number, reason) in skips, (
            f"the page shows SKIPPED [{number}] {reason!r}; the run: {skips}"
        )


def _contract_test_cases() -> int:
    """How many test cases StoreContract has: one per test, times its parametrized values."""
    from sessionstore_contract import StoreContract

    cases = 0
    for name in dir(StoreContract):
        if not name.startswith("test_"):
            continue
        count = 1
        for mark in getattr(getattr(StoreContract, name), "pytestmark", []):
            if mark.name == "parametrize":
                count *= len(mark.args[1])
        cases += count
    return cases


# -- the CI workflow and the README ---------------------------------------------------------------


def test_contract_suite_page_has_a_complete_github_actions_workflow() -> None:
    page = next(p for p in PAGES if p.path == "docs/contract-suite.md")
    workflows = [
        b for b in page.blocks if b.language == "yaml" and b.code.startswith("# .github/workflows/")
    ]
    assert len(workflows) == 1, "one workflow file, its path on its first line"
    workflow = yaml.safe_load(workflows[0].code)
    assert workflow["name"]
    assert workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    jobs = workflow["jobs"]
    assert jobs
    commands = []
    for name, job in jobs.items():
        assert job["runs-on"], name
        steps = job["steps"]
        assert all(("uses" in step) != ("run" in step) for step in steps), name
        uses = [step["uses"].split("@")[0] for step in steps if "uses" in step]
        assert "actions/checkout" in uses, name
        assert "actions/setup-python" in uses, name
        commands += [" ".join(step["run"].split()) for step in steps if "run" in step]
    assert any("pip install" in command for command in commands), commands
    assert any(
        "--pyargs sessionstore_contract --sessionstore-backend" in command for command in commands
    ), commands


def test_readme_links_resolve() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link)]
    assert len(local) >= 3, links
    missing = [link for link in local if not (REPO / link.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
