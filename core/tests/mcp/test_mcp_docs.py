"""``docs/mcp.md``'s example, run the way a reader runs it (issue 15, item 7).

The page's ``server.py`` and ``client.py`` blocks (the Python blocks whose first line names the
file) are written to a fresh directory. Two ``uvicorn server:app`` processes start there, on the
page's relative SQLite path, behind a round-robin balancer (``balancer.py``: every request to the
next instance), and ``client.py`` runs with the page's URL replaced by the balancer's, nothing else
changed. Its output must be what the page says it prints; a cut of every connection after the
first step must leave each step printed once, then the result. The page's other claims: the
default client (``mode="auto"``) gets no session, and a relative SQLite path is relative to the
working directory when the app starts.
"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from balancer import Balancer
from docs_snippets import REPO, parse_page
from mcp_harness import free_port

from sessionstore import open_store
from sessionstore.mcp import McpSessions

PAGE = parse_page((REPO / "docs" / "mcp.md").read_text(encoding="utf-8"), "docs/mcp.md")
DOCUMENTED_URL = '"http://127.0.0.1:8000/mcp"'
DATABASE = "mcp-sessions.db"  # the relative path server.py names
START_TIMEOUT = 30.0
RUN_TIMEOUT = 60.0


def page_file(name: str) -> str:
    """The page's Python block whose first line is ``# <name>``."""
    found = [
        block.code
        for block in PAGE.blocks
        if block.language == "python" and block.code.startswith(f"# {name}\n")
    ]
    assert len(found) == 1, f"docs/mcp.md has {len(found)} Python blocks starting '# {name}'"
    return found[0]


class Served(NamedTuple):
    workdir: Path
    balancer: Balancer
    instances: list[subprocess.Popen[bytes]]


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"server.py exited: {log.read_text(errors='replace')}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"not listening: {log.read_text(errors='replace')}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two instances of the page's server.py, started from one directory, behind a balancer."""
    workdir = tmp_path_factory.mktemp("docs-example")
    (workdir / "server.py").write_text(page_file("server.py"), encoding="utf-8")
    instances: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    try:
        for number, port in enumerate(ports):
            log = workdir / f"server-{number}.log"
            with log.open("wb") as err:
                instances.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "uvicorn", "server:app", f"--port={port}"],
                        cwd=workdir,
                        stdout=err,
                        stderr=err,
                    )
                )
            wait_listening(instances[-1], port, log)
        with Balancer(ports) as balancer:
            yield Served(workdir, balancer, instances)
    finally:
        for process in instances:
            process.send_signal(signal.SIGTERM)
        for process in instances:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_lines(command: list[str], cwd: Path) -> tuple[subprocess.Popen[str], queue.Queue[Any]]:
    """Start ``command``; its stdout lines arrive in the queue (``None`` at the end)."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def test_the_documented_client_runs_and_resumes_through_a_cut(served: Served) -> None:
    code = page_file("client.py")
    assert code.count(DOCUMENTED_URL) == 1, "the page's client no longer names its URL so"
    url = f'"{served.balancer.url}/mcp"'
    (served.workdir / "client.py").write_text(code.replace(DOCUMENTED_URL, url), encoding="utf-8")
    process, lines = start_lines([sys.executable, "client.py"], served.workdir)
    printed: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while True:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                break
            printed.append(line)
            if line == "step 1 of 3":
                assert served.balancer.cut() >= 1  # the reader's cut: every connection
        assert process.wait(10) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    # What the page says it prints: each step once, in order, though the stream was cut.
    assert printed == [
        "recalled: hello",
        "step 1 of 3",
        "step 2 of 3",
        "step 3 of 3",
        "counted to 3",
    ], printed


def test_the_default_client_gets_no_session(served: Served) -> None:
    """The page's warning: ``Client(url)`` (``mode="auto"``) speaks 2026-07-28; no session."""
    script = f"""
import asyncio, json
from mcp import Client

async def main():
    async with Client("{served.balancer.url}/mcp") as client:
        result = await client.call_tool("recall", {{}})
        print(json.dumps([client.session.protocol_version, result.is_error]))

asyncio.run(main())
"""
    before = asyncio.run(session_ids(served.workdir / DATABASE))
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    version, is_error = json.loads(done.stdout.strip().splitlines()[-1])
    assert version == "2026-07-28"
    assert is_error  # current_session(): NoSessionError, there is no session
    assert asyncio.run(session_ids(served.workdir / DATABASE)) == before


async def session_ids(database: Path) -> set[str]:
    async with open_store(f"sqlite:///{database}") as store:
        return {session.id for session in await store.list_sessions()}


def test_the_instances_share_the_file_relative_to_their_working_directory(served: Served) -> None:
    """Both instances, started from one directory, opened ``<that directory>/mcp-sessions.db``."""
    assert (served.workdir / DATABASE).is_file()
    assert not (Path.cwd() / DATABASE).exists()


async def test_a_relative_sqlite_path_is_resolved_when_the_app_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built, started = tmp_path / "built", tmp_path / "started"
    built.mkdir()
    started.mkdir()
    monkeypatch.chdir(built)
    sessions = McpSessions("sqlite:///relative.db", heartbeat_interval=0.2, heartbeat_ttl=1)
    monkeypatch.chdir(started)
    async with sessions.run():
        monkeypatch.chdir(tmp_path)  # later moves change nothing: the file is open
        assert await sessions.store.count_sessions() == 0
    assert (started / "relative.db").is_file()
    assert not (built / "relative.db").exists()
    assert not (tmp_path / "relative.db").exists()
