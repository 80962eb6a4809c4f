"""Real PostgreSQL servers for the tests: finding one, a fresh database in it, and throwaway
clusters that a test may stop and restart.

Where a server comes from, first match wins (:func:`postgres_server`):

1. ``SESSIONSTORE_POSTGRES_URL`` (a server you run, e.g. in CI): its user must be allowed to
   ``CREATE DATABASE``;
2. the server on 127.0.0.1:5432, when one answers as ``postgres`` (database ``test``, then
   ``postgres``) without a password;
3. a throwaway cluster (:class:`PostgresCluster`) made with ``initdb`` and ``pg_ctl`` found on
   ``PATH`` or in ``/usr/lib/postgresql/*/bin``, on a free port in a temporary directory.

Tests never work in a database another run uses: :func:`fresh_database_url` creates
``sessionstore_test_<random>`` and drops it afterwards. Only a :class:`PostgresCluster` may be
stopped or restarted, never a shared server.

Nothing here imports pytest, so benchmarks and other test directories can use it too. Run as a
script, it runs a command with ``{url}`` in its arguments replaced by a fresh database's URL
(``make contract`` does)::

    python plugins/postgres/tests/postgres_servers.py pytest --sessionstore-backend {url} ...

or import it by path::

    spec = importlib.util.spec_from_file_location(
        "postgres_servers", ROOT / "plugins/postgres/tests/postgres_servers.py"
    )
    postgres_servers = importlib.util.module_from_spec(spec)
    sys.modules["postgres_servers"] = postgres_servers
    spec.loader.exec_module(postgres_servers)
    with postgres_servers.fresh_database_url() as url: ...

:class:`PostgresUnavailable` says, in its message, why no server could be found; the fixtures
turn it into ``skip_or_fail``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

__all__ = [
    "DEFAULT_URLS",
    "ENV_URL",
    "PostgresCluster",
    "PostgresUnavailable",
    "fresh_database",
    "fresh_database_url",
    "postgres_binaries",
    "postgres_server",
    "server_answers",
]

ENV_URL = "SESSIONSTORE_POSTGRES_URL"
DEFAULT_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://postgres@127.0.0.1:5432/postgres",
)
"""The local server, as these machines run it (trust authentication)."""
PROBE_TIMEOUT = 3.0  # seconds for a server to accept a connection when probing for one
START_TIMEOUT = 30  # seconds pg_ctl waits for a cluster to start or stop
DATABASE_PREFIX = "sessionstore_test_"

T = TypeVar("T")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started; the message says why."""


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` returns to completion in a thread of its own, so that this
    works from plain code, fixtures and async tests (whose loop is running) alike."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def server_answers(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a server at ``url`` accepts a connection and runs ``SELECT 1`` now."""

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(url, timeout=timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        try:
            return bool(await connection.fetchval("SELECT 1", timeout=timeout) == 1)
        finally:
            await connection.close(timeout=timeout)

    return _run(probe)


def postgres_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: the one on ``PATH``, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian's layout); ``None`` when neither has both."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin")

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for directory in sorted(candidates, key=version, reverse=True):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) on 127.0.0.1 and a free port, in
    a temporary directory of its own, with trust authentication for the user ``postgres``.

    ``start()`` returns once the server accepts connections; ``stop()``, ``restart()`` keep the
    data and the port (a restart never moves to another port, as clients hold it); ``close()``
    stops it and removes the directory. Durability settings are off (``fsync=off``): a test
    cluster need not survive a power cut. PostgreSQL refuses to run as root, so as root the
    binaries run as the ``postgres`` user (``runuser``), which must exist.
    """

    def __init__(self, *, max_connections: int = 100) -> None:
        binaries = postgres_binaries()
        if binaries is None:
            raise PostgresUnavailable(
                "initdb and pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin: install "
                "the PostgreSQL server binaries to run the PostgreSQL tests"
            )
        self._binaries = binaries
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None or not _user_exists("postgres"):
                raise PostgresUnavailable(
                    "running as root, and PostgreSQL refuses root: a 'postgres' user and "
                    "runuser are needed to start a throwaway cluster"
                )
            self._as_user = [runuser, "-u", "postgres", "--"]
        self._max_connections = max_connections
        self._port = _free_port()
        self._fixed_port = False
        self._dir = Path(tempfile.mkdtemp(prefix="sessionstore-postgres-"))
        self._data = self._dir / "data"
        self._log = self._dir / "postgres.log"
        self._initialized = False
        self._running = False
        if self._as_user:
            shutil.chown(self._dir, user="postgres")

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def url(self) -> str:
        """An admin URL: user ``postgres``, database ``postgres``."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Initialize the cluster on first use, start it and wait until it accepts connections.

        Another process can take the port between choosing it and the server binding it; the
        first start then moves to a new port (up to three tries). A restart never moves.
        """
        if self._running:
            return self
        if not self._initialized:
            self._pg(
                "initdb",
                ["-D", str(self._data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
            )
            self._initialized = True
        for attempt in range(3):
            try:
                self._pg_ctl("start", "-l", str(self._log), "-o", self._server_options())
                self._running = True
                return self
            except PostgresUnavailable:
                if self._fixed_port or attempt == 2 or "could not bind" not in self.log_tail():
                    raise
                self._port = _free_port()
        raise AssertionError("unreachable")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``fast`` rolls back open transactions and disconnects
        clients; ``immediate`` is a crash: recovery runs at the next start). Keeps the data."""
        if not self._running:
            return
        self._running = False
        self._fixed_port = True
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> Self:
        """Stop the server and start it again on the same port, with its data. Returns ``self``."""
        self.stop(mode)
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory. Safe to call more than once."""
        try:
            if self._running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's log (for error messages)."""
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostgresCluster {self.host}:{self.port} {state}>"

    # -- internals -------------------------------------------------------------------------

    def _server_options(self) -> str:
        return (
            f"-p {self._port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self._dir} -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections={self._max_connections}"
        )

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._pg("pg_ctl", [action, "-D", str(self._data), "-w", "-t", str(START_TIMEOUT), *args])

    def _pg(self, program: str, args: list[str]) -> None:
        command = [*self._as_user, str(self._binaries / program), *args]
        result = subprocess.run(
            command,
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{program} {' '.join(args[:1])} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self.log_tail()}"
            )


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin URL of a server to test against (see the module's docstring for the
    order), starting a throwaway cluster for the block when no other answers.

    Raises :class:`PostgresUnavailable`, saying why, when there is none.
    """
    url = os.environ.get(ENV_URL)
    if url:
        if not server_answers(url):
            raise PostgresUnavailable(f"{ENV_URL} is set but no server answers there")
        yield url
        return
    for url in DEFAULT_URLS:
        if server_answers(url):
            yield url
            return
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        raise PostgresUnavailable(f"no PostgreSQL on 127.0.0.1:5432 and {exc}") from None
    with cluster:
        yield cluster.url


def database_url(server_url: str, database: str) -> str:
    """``server_url`` with its database (the URL's path) replaced by ``database``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + database))


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create database ``sessionstore_test_<random>`` on the server of ``server_url``, yield
    its URL and drop it afterwards (``WITH (FORCE)``: connections left open do not stop it)."""
    name = DATABASE_PREFIX + secrets.token_hex(6)

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server_url, timeout=PROBE_TIMEOUT)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    _run(lambda: admin(f'CREATE DATABASE "{name}"'))
    try:
        yield database_url(server_url, name)
    finally:
        _run(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def fresh_database_url() -> Iterator[str]:
    """Yield the URL of a fresh, empty database on the server :func:`postgres_server` finds,
    dropped afterwards (with the throwaway cluster, if one had to be started)."""
    with postgres_server() as server_url, fresh_database(server_url) as url:
        yield url


def main(argv: list[str]) -> int:
    """Run ``argv`` with every ``{url}`` replaced by a fresh database's URL; its exit status.

    Without a server it says why on stderr and exits 0 (a skip), or 1 when ``CI=true``.
    """
    if not argv:
        print(
            f"usage: {Path(__file__).name} COMMAND [ARGS...]  ({{url}}: the URL)", file=sys.stderr
        )
        return 2
    try:
        with fresh_database_url() as url:
            return subprocess.call([arg.replace("{url}", url) for arg in argv])
    except PostgresUnavailable as exc:
        in_ci = os.environ.get("CI", "").strip().lower() == "true"
        print(f"SKIPPED (no PostgreSQL): {exc}", file=sys.stderr)
        return 1 if in_ci else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
