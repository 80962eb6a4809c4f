"""Headless Chromium driven over the DevTools protocol: just enough to test the docs site.

Debian's ``chromium`` package (``make .browser`` installs it) runs headless with
``--remote-debugging-port=0``; the port it chose is read from its ``DevToolsActivePort`` file, and
one page is driven over a WebSocket (the ``websockets`` package, pinned in requirements/dev.txt).
Nothing is downloaded: no Playwright or Puppeteer browser build.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.sync.client import ClientConnection, connect

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of a Chromium executable on ``PATH``, or ``None``."""
    for name in EXECUTABLES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


class ChromiumError(RuntimeError):
    """Chromium did not start, or a DevTools command failed."""


class Chromium:
    """One headless Chromium process with one page, closed on ``__exit__``.

    ``timeout`` bounds every wait (start, each command, each :meth:`wait_for`), generously: the
    machine running the tests may be loaded.
    """

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="sessionstore-chromium-"))
        self._process = subprocess.Popen(
            [
                executable,
                "--headless=new",
                "--no-sandbox",  # the tests may run as root (a container, CI)
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._ids = itertools.count(1)
        self._closing = contextlib.ExitStack()
        self.console: list[str] = []
        """Console messages and uncaught exceptions of the page, in order."""
        try:
            self._ws = self._connect(timeout=60)
            self.send("Runtime.enable")
            self.send("Page.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _connect(self, *, timeout: float) -> ClientConnection:
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None:
                stderr = self._process.stderr.read() if self._process.stderr else b""
                raise ChromiumError(f"chromium exited: {stderr.decode(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise ChromiumError(f"chromium wrote no DevToolsActivePort in {timeout} s")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        if not pages:
            raise ChromiumError("chromium has no page to drive")
        return self._closing.enter_context(
            connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        )

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result; events met meanwhile are recorded."""
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChromiumError(f"{method}: no answer in {timeout} s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") == message_id:
                if "error" in message:
                    raise ChromiumError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._record(message)

    def _record(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"console.{params['type']}: {text}")
        elif event.get("method") == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {text}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str, *, timeout: float = 60) -> None:
        """Load ``url`` and wait until its document is complete."""
        self.send("Page.navigate", url=url)
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            timeout=timeout,
            what=f"loading {url}",
        )

    def wait_for(self, expression: str, *, timeout: float = 60, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise ChromiumError(f"{what or expression}: not true after {timeout} s")
            time.sleep(0.1)

    def close(self) -> None:
        """End the browser and remove its profile."""
        self._closing.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
