"""Processes of the MCP end-to-end tests: server instances (``mcp_server_app.py``) and the SDK's
own client (``mcp_client.py``), each run by the python of the SDK under test.

Nothing here imports pytest. Every process's stdout is read by a thread into a queue, each line
stamped with ``time.monotonic()`` on arrival, so the tests measure delays on one clock and never
block on a pipe; stderr goes to a log file the tests print when they fail. ``close()`` kills
whatever is still running; it is safe to call twice.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from switch import Switch

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "mcp_server_app.py"
CLIENT_SCRIPT = HERE / "mcp_client.py"

START_TIMEOUT = 30.0  # seconds for an instance to print READY (the SDK imports take a while)
QUIT_TIMEOUT = 1.0  # seconds for a client to quit when asked before it is killed


@dataclass
class Line:
    text: str
    at: float  # time.monotonic() when the test process read it


class _Reader:
    """Reads a pipe line by line in a daemon thread; ``get(timeout)`` hands the lines out."""

    def __init__(self, pipe: Any) -> None:
        self._queue: queue.Queue[Line | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe: Any) -> None:
        for raw in pipe:
            self._queue.put(Line(raw.decode("utf-8", "replace").rstrip("\n"), time.monotonic()))
        self._queue.put(None)

    def get(self, timeout: float) -> Line | None:
        """The next line; ``None`` at end of output. ``TimeoutError`` if none came in time."""
        try:
            return self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise TimeoutError from None


class _Process:
    """A child process with its stdout read by a thread and its stderr in ``log``."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: _Reader | None = None

    def _spawn(self, command: Sequence[str], *, stdin: bool = False) -> None:
        with self.log.open("ab") as err:
            self._process = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self._process.stdout is not None
        self._reader = _Reader(self._process.stdout)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _line(self, timeout: float) -> Line | None:
        assert self._reader is not None
        return self._reader.get(timeout)

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """The exit status; ``TimeoutError`` if it still runs after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still runs after {timeout} s") from None

    def close(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


class ServerInstance(_Process):
    """One instance of ``mcp_server_app.py`` on ``port`` (start it with ``start()``, which does
    not wait; ``wait_ready()`` does)."""

    def __init__(
        self,
        python: Path | str,
        name: str,
        port: int,
        *,
        store: str,
        namespace: str,
        log_dir: Path,
        plain: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        super().__init__(name, log_dir / f"server-{name}.log")
        self.port = port
        self._command = [str(python), str(SERVER_SCRIPT), "--port", str(port)]
        self._command += ["--instance", name, "--store", store, "--namespace", namespace]
        self._command += ["--plain"] if plain else []
        self._command += list(options)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> Self:
        self._spawn(self._command)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Self:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._line(deadline - time.monotonic())
            except TimeoutError:
                raise RuntimeError(
                    f"instance {self.name} not ready within {timeout} s; log:\n{self.log_text()}"
                ) from None
            if line is None:
                status = self.process.wait()
                raise RuntimeError(
                    f"instance {self.name} exited with status {status} while starting; "
                    f"log:\n{self.log_text()}"
                )
            if line.text.startswith("READY"):
                return self

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap it."""
        self.signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown); does not wait."""
        self.signal(signal.SIGTERM)


@dataclass
class Event:
    """One JSON line of the client, with when the test read it."""

    kind: str
    fields: dict[str, Any]
    at: float

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass
class CallOutcome:
    """Everything one ``progress`` call reported: its progress values, then a result or error."""

    label: str
    progress: list[float] = field(default_factory=list)
    progress_at: list[float] = field(default_factory=list)
    end: Event | None = None

    @property
    def result(self) -> str | None:
        return self.end["text"] if self.end is not None and self.end.kind == "result" else None

    @property
    def error(self) -> Event | None:
        return self.end if self.end is not None and self.end.kind == "error" else None


class McpClient(_Process):
    """``mcp_client.py``: the SDK's client on ``url`` with a bearer ``token``.

    ``events`` keeps every line it wrote, HTTP responses included, for the failure report.
    """

    def __init__(self, python: Path | str, url: str, token: str, *, log_dir: Path) -> None:
        super().__init__(f"client-{token}", log_dir / f"client-{token}.log")
        self._command = [str(python), str(CLIENT_SCRIPT), "--url", url, "--token", token]
        self.events: list[Event] = []
        self.session: str | None = None

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start it and wait until it initialized a session and listed the tools."""
        self._spawn(self._command, stdin=True)
        ready = self.next_event(lambda event: event.kind == "ready", timeout)
        self.session = ready["session"]
        return self

    def send(self, **command: Any) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write((json.dumps(command) + "\n").encode())
        stdin.flush()

    def call(self, label: str, *, steps: int = 10, delay: float = 0.2, limit: float = 30.0) -> None:
        """Start a ``progress`` call (``limit``: the client's read timeout for it)."""
        self.send(op="call", label=label, steps=steps, delay=delay, timeout=limit)

    def next_event(self, wanted: Callable[[Event], bool], timeout: float) -> Event:
        """The next event ``wanted`` accepts (every event read is kept in ``events``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._line(deadline - time.monotonic())
            except TimeoutError:
                raise TimeoutError(
                    f"{self.name}: no wanted event within {timeout} s\n{self.report()}"
                ) from None
            if line is None:
                raise RuntimeError(f"{self.name} ended its output\n{self.report()}")
            try:
                fields = json.loads(line.text)
            except ValueError:
                fields = {"event": "noise", "text": line.text}
            event = Event(fields.pop("event", "noise"), fields, line.at)
            self.events.append(event)
            if wanted(event):
                return event

    def follow(
        self,
        outcome: CallOutcome,
        timeout: float,
        *,
        until_progress: float | None = None,
    ) -> CallOutcome:
        """Collect ``outcome``'s events until its result or error (or, with ``until_progress``,
        until that progress value arrived). ``TimeoutError`` after ``timeout`` seconds."""

        def wanted(event: Event) -> bool:
            return event.kind in ("progress", "result", "error", "fatal")

        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(wanted, deadline - time.monotonic())
            if event.kind == "fatal":
                raise RuntimeError(f"{self.name} crashed\n{self.report()}")
            if event.get("call") != outcome.label:
                continue
            if event.kind == "progress":
                outcome.progress.append(event["progress"])
                outcome.progress_at.append(event.at)
                if until_progress is not None and event["progress"] >= until_progress:
                    return outcome
            else:
                outcome.end = event
                return outcome

    def http(self) -> list[Event]:
        return [event for event in self.events if event.kind == "http"]

    def report(self) -> str:
        lines = [f"--- {self.name} events:"]
        lines += [f"{e.at:.3f} {e.kind} {json.dumps(e.fields)}" for e in self.events]
        lines += [f"--- {self.name} stderr:", self.log_text()]
        return "\n".join(lines)

    def close(self) -> None:
        """Ask it to quit; kill it if it is still busy (in a call) a moment later."""
        if self.running:
            try:
                self.send(op="quit")
                self.process.wait(QUIT_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                pass
        super().close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """Server instances sharing one store, the switch in front of them and the clients of one
    test; ``close()`` ends them all, ``report()`` gathers their logs for a failure."""

    def __init__(
        self, python: Path | str, *, store: str, namespace: str, log_dir: Path, plain: bool = False
    ) -> None:
        self.python = python
        self.store = store
        self.namespace = namespace
        self.log_dir = log_dir
        self.plain = plain
        self.instances: dict[str, ServerInstance] = {}
        self.clients: list[McpClient] = []
        self.switch: Switch | None = None

    def start_instances(self, *names: str, options: Sequence[str] = ()) -> list[ServerInstance]:
        """Start the instances together and wait until each listens."""
        started = []
        for name in names:
            instance = ServerInstance(
                self.python,
                name,
                free_port(),
                store=self.store,
                namespace=self.namespace,
                log_dir=self.log_dir,
                plain=self.plain,
                options=options,
            )
            self.instances[name] = instance
            started.append(instance.start())
        for instance in started:
            instance.wait_ready()
        return started

    def start_switch(self, target: ServerInstance) -> Switch:
        self.switch = Switch(target.port).start()
        return self.switch

    def start_client(self, url: str, token: str) -> McpClient:
        client = McpClient(self.python, url, token, log_dir=self.log_dir)
        self.clients.append(client)
        return client.start()

    def close(self) -> None:
        for process in [*self.clients, *self.instances.values()]:
            process.close()
        if self.switch is not None:
            self.switch.close()

    def report(self) -> str:
        parts = [f"store {self.store} namespace {self.namespace} plain={self.plain}"]
        if self.switch is not None:
            parts.append(f"switch: {self.switch!r} connections {self.switch.connections}")
        parts += [client.report() for client in self.clients]
        parts += [
            f"--- instance {name} (port {instance.port}) stderr:\n{instance.log_text()}"
            for name, instance in self.instances.items()
        ]
        return "\n".join(parts)


ClusterFactory = Callable[..., Cluster]
"""What the ``make_cluster`` fixture is: ``make_cluster(sdk, store_kind, plain=False)``."""
