"""Throwaway real Redis servers for the tests: one node (optionally with a password, ACL users or
TLS) and a Redis Cluster (three masters, optionally with replicas), each on free loopback ports in
its own temporary directory.

Nothing here imports pytest, so benchmarks and scripts can use it too. Every server is started
explicitly and must be closed explicitly (``close()`` or a ``with`` block): there is no ``__del__``,
because a finalizer that runs at an unpredictable time is no way to stop a process. Servers never
persist anything (``save ""``, ``appendonly no``), so a restarted server starts empty.
"""

from __future__ import annotations

import functools
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import quote

__all__ = [
    "ClusterNodeInfo",
    "RedisClusterServers",
    "RedisServer",
    "ServerFactory",
    "free_port",
    "parse_cluster_nodes",
    "redis_cli_binary",
    "redis_server_binary",
    "redis_server_supports_tls",
]

START_TIMEOUT = 10.0  # seconds for a server to answer PING
STOP_TIMEOUT = 10.0  # seconds for a server to exit after SIGTERM before it gets SIGKILL
CLUSTER_TIMEOUT = 30.0  # seconds for `redis-cli --cluster create` plus every node reporting ok
CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on port + 10000 (the cluster bus)


def redis_server_binary() -> str | None:
    """The path of ``redis-server`` on ``PATH``, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


def redis_cli_binary() -> str | None:
    """The path of ``redis-cli`` on ``PATH``, or ``None`` when it is not installed."""
    return shutil.which("redis-cli")


@functools.cache
def redis_server_supports_tls() -> bool:
    """Whether this ``redis-server`` build accepts the ``tls-*`` directives (built with TLS).

    It asks the binary itself rather than guessing from its linked libraries: the directives are
    followed by one that no build knows, so the server always exits at once, and the error names
    the first directive it rejected. Nothing is started and no port is used.
    """
    binary = redis_server_binary()
    if binary is None:
        return False
    probe = "sessionstore-tls-probe"
    result = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--tls-auth-clients", "no", f"--{probe}", "x"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    # Configuration loading stops at the first bad directive: reaching the probe means every
    # tls-* directive before it was accepted.
    return probe in result.stdout + result.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; nothing holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is a valid port and free too."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535 and _port_is_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) found on 127.0.0.1")


def _quote(value: str) -> str:
    """``value`` as one double-quoted token of a redis.conf line."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"a redis.conf value cannot contain a line break or NUL: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(
    host: str, port: int, *args: str, tls_context: ssl.SSLContext | None, timeout: float = 1.0
) -> str:
    """Send one command and return its reply: a status, an integer or a bulk string as text, or
    an error as ``-ERR...``. A bare RESP client, so that waiting for a server needs neither
    redis-py nor redis-cli; it understands no array reply."""
    (reply,) = _commands(host, port, [args], tls_context=tls_context, timeout=timeout)
    return reply


def _commands(
    host: str,
    port: int,
    commands: list[tuple[str, ...]],
    *,
    tls_context: ssl.SSLContext | None,
    timeout: float = 1.0,
) -> list[str]:
    """Send ``commands`` on one connection (a pipeline) and return their replies, as
    :func:`_command` does: what one command does to its connection (``WAIT`` waits for the
    replicas to have this connection's writes) holds for the next."""
    request = "".join(
        f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        for args in commands
    )
    replies: list[str] = []
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = tls_context.wrap_socket(raw, server_hostname=host) if tls_context else raw
        with sock:
            sock.sendall(request.encode())
            buffer = b""
            while len(replies) < len(commands):
                reply, used = _parse_reply(buffer, f"{host}:{port}")
                if reply is None:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError(f"{host}:{port} closed the connection")
                    buffer += chunk
                    continue
                replies.append(reply)
                buffer = buffer[used:]
    return replies


def _parse_reply(buffer: bytes, where: str) -> tuple[str | None, int]:
    """The first whole reply in ``buffer`` and the bytes it took, or ``(None, 0)``."""
    header, sep, rest = buffer.partition(b"\r\n")
    if not sep:
        return None, 0
    kind, body = header[:1], header[1:].decode()
    if kind in (b"+", b":"):
        return body, len(header) + 2
    if kind == b"-":
        return header.decode(), len(header) + 2
    if kind != b"$":
        raise ConnectionError(f"{where} sent an unexpected reply: {header!r}")
    size = int(body)
    if size < 0:
        return "", len(header) + 2  # a null bulk string
    if len(rest) < size + 2:
        return None, 0
    return rest[:size].decode(), len(header) + 2 + size + 2


class RedisServer:
    """One throwaway ``redis-server`` on 127.0.0.1, listening on a free port (or ``port``).

    ``start()`` returns only once the server answers PING, and raises ``RuntimeError`` with the
    tail of the server's log if it exits or stays silent for ``START_TIMEOUT`` seconds.
    ``restart()`` starts it again on the same port. ``close()`` stops it and removes its temporary
    directory; it is idempotent, and so is ``stop()``.

    ``password`` is the default user's password (``requirepass``). ``acl_users`` maps user names
    to passwords; each becomes an ACL user with full access (``on >pw ~* &* +@all``) through
    ``user`` directives in the generated redis.conf, which redis 6 and 7 accept. ``tls=True``
    serves TLS only (``port 0`` + ``tls-port``) with a certificate for 127.0.0.1 and localhost
    signed by a fresh CA (``ca_file``); clients are not asked for certificates. ``config`` adds
    raw redis.conf directives (name -> value).
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        acl_users: Mapping[str, str] | None = None,
        tls: bool = False,
        port: int | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        if tls and not redis_server_supports_tls():
            raise RuntimeError(
                f"{binary} was built without TLS support (it rejects the tls-* directives): "
                "install a redis-server built with BUILD_TLS=yes to use tls=True"
            )
        self._binary = binary
        self._password = password
        self._acl_users = dict(acl_users or {})
        self._tls = tls
        self._config = dict(config or {})
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="sessionstore-redis-"))
        self._log = self._dir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._ca_file: Path | None = None
        if tls:
            try:
                self._write_certificates()
            except BaseException:
                shutil.rmtree(self._dir, ignore_errors=True)
                raise

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The port clients connect to (the TLS port when ``tls=True``); kept across restarts."""
        return self._port

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def ca_file(self) -> str:
        """Path of the PEM file of the CA that signed the server's certificate (TLS only)."""
        if self._ca_file is None:
            raise AttributeError("ca_file exists only for a server started with tls=True")
        return str(self._ca_file)

    @property
    def directory(self) -> Path:
        """The server's temporary directory: redis.conf, redis.log and the PEM files."""
        return self._dir

    @property
    def url(self) -> str:
        """The URL to reach the server, with credentials when it needs any.

        It authenticates as the first ACL user when ``acl_users`` is given, else as the default
        user with ``password``, else not at all.
        """
        if self._acl_users:
            user, password = next(iter(self._acl_users.items()))
            return self.url_for(user, password)
        return self.url_for(password=self._password)

    def url_for(self, user: str | None = None, password: str | None = None) -> str:
        """``redis://`` (``rediss://`` with TLS) URL of this server with the given credentials.

        Both parts are percent-encoded; ``password`` alone authenticates the default user.
        """
        scheme = "rediss" if self._tls else "redis"
        userinfo = ""
        if user is not None or password is not None:
            userinfo = quote(user or "", safe="")
            if password is not None:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        return f"{scheme}://{userinfo}{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The running server's process id, e.g. to freeze it with SIGSTOP (``stop()`` and
        ``close()`` still end a frozen server). ``RuntimeError`` when it is not running."""
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        return self._process.pid

    def start(self) -> Self:
        """Start the server and wait until it answers PING. Returns ``self``.

        Another process can take a port between ``free_port()`` and the server binding it; the
        first start then moves to a new port (up to three tries). A restart never moves.
        """
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._spawn()
                return self
            except RuntimeError:
                if self._fixed_port or attempt == 2 or "Address already in use" not in self._tail():
                    raise
                self._port = free_port()
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server with SIGTERM and wait for it (SIGKILL after ``STOP_TIMEOUT``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        process.send_signal(signal.SIGCONT)  # a server frozen with SIGSTOP must see the SIGTERM
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> Self:
        """Stop the server if it runs, then start it again on the same port (empty: nothing is
        persisted). Returns ``self``."""
        self.stop()
        self._fixed_port = True  # clients hold this port now: never move to another one
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory. Safe to call more than once."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

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
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} tls={self._tls} {state}>"

    # -- internals -------------------------------------------------------------------------

    def _write_certificates(self) -> None:
        import trustme  # only TLS servers need it

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._ca_file = self._dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self._ca_file))
        cert.cert_chain_pems[0].write_to_path(str(self._dir / "server.pem"))
        cert.private_key_pem.write_to_path(str(self._dir / "server.key"))

    def _write_config(self) -> Path:
        """Write redis.conf; a file rather than arguments keeps passwords out of ``ps``."""
        directives: dict[str, str] = {
            "bind": "127.0.0.1",
            "protected-mode": "no",  # a password-less server must still accept loopback clients
            "dir": str(self._dir),
            "save": "",
            "appendonly": "no",
            "daemonize": "no",
            "logfile": "",  # stdout, which goes to redis.log together with startup errors
        }
        if self._tls:
            directives |= {
                "port": "0",
                "tls-port": str(self._port),
                "tls-cert-file": str(self._dir / "server.pem"),
                "tls-key-file": str(self._dir / "server.key"),
                "tls-ca-cert-file": str(self.ca_file),
                "tls-auth-clients": "no",
            }
        else:
            directives["port"] = str(self._port)
        if self._password is not None:
            directives["requirepass"] = self._password
        directives |= self._config
        lines = [f"{name} {_quote(value)}" for name, value in directives.items()]
        lines += [
            f"user {_quote(user)} on {_quote('>' + password)} ~* &* +@all"
            for user, password in self._acl_users.items()
        ]
        path = self._dir / "redis.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _spawn(self) -> None:
        config = self._write_config()
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [self._binary, str(config)],
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.kill()
            raise

    def _tls_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_file) if self._tls else None

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        context = self._tls_context()
        last_error = "no reply yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self._port} exited with status "
                    f"{self._process.returncode} while starting; log tail:\n{self._tail()}"
                )
            try:
                reply = _command(self.host, self._port, "PING", tls_context=context)
            except OSError as error:
                last_error = repr(error)
            else:
                # NOAUTH proves the server is up and serving: it only wants a password first.
                if reply == "PONG" or reply.startswith("-NOAUTH"):
                    return
                last_error = reply
            time.sleep(0.02)
        raise RuntimeError(
            f"redis-server on port {self._port} did not answer PING within {START_TIMEOUT} s "
            f"(last: {last_error}); log tail:\n{self._tail()}"
        )

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class ServerFactory(Protocol):
    """What the ``make_redis_server`` fixture is: ``RedisServer``'s options in, a started server
    out (closed for you after the test)."""

    def __call__(
        self,
        *,
        password: str | None = None,
        acl_users: Mapping[str, str] | None = None,
        tls: bool = False,
        config: Mapping[str, str] | None = None,
    ) -> RedisServer: ...


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES``: what a node is, as the node that was asked sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    """The master a replica follows; ``None`` for a master."""
    slots: tuple[tuple[int, int], ...]
    """The slot ranges a master serves (inclusive), migrations in progress left out."""

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    """The nodes in a ``CLUSTER NODES`` reply (``<id> <ip:port@bus> <flags> <master> ...``)."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@")[0]
        slots = []
        for part in fields[8:]:
            if part.startswith("["):  # "[slot->-id]" / "[slot-<-id]": a migration under way
                continue
            low, _, high = part.partition("-")
            slots.append((int(low), int(high or low)))
        nodes.append(
            ClusterNodeInfo(
                node_id=fields[0],
                port=int(address.rpartition(":")[2]),
                flags=frozenset(fields[2].replace("myself,", "").split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
            )
        )
    return nodes


class RedisClusterServers:
    """A throwaway Redis Cluster on free 127.0.0.1 ports: ``masters`` masters (three), each with
    ``replicas`` replicas (none), failure detection after ``node_timeout_ms`` (2000).

    ``start()`` returns only once ``redis-cli --cluster create`` assigned all 16384 slots, every
    node reports ``cluster_state:ok`` and knows every other node, and every replica is in sync
    with its master; otherwise it raises ``RuntimeError`` with what went wrong, after stopping
    the nodes. ``close()`` stops every node and removes their temporary directories; it is
    idempotent. ``topology()`` reads who is master of what now (after a failover or a slot
    migration, which the tests make with ``cluster_admin``).
    """

    def __init__(self, masters: int = 3, *, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        cli = redis_cli_binary()
        if cli is None:
            raise RuntimeError("redis-cli not found on PATH (it is needed to create a cluster)")
        self._cli = cli
        self._masters = masters
        self._replicas = replicas
        self._node_timeout_ms = node_timeout_ms
        self._servers: list[RedisServer] = []

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, masters and replicas, in the order they started."""
        return [(server.host, server.port) for server in self._servers]

    @property
    def servers(self) -> list[RedisServer]:
        """The node servers, e.g. to stop or kill one."""
        return list(self._servers)

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``: every node, as startup nodes."""
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.nodes)

    @property
    def node_timeout(self) -> float:
        """Seconds after which the cluster holds a silent node failed (``cluster-node-timeout``)."""
        return self._node_timeout_ms / 1000

    def server_on(self, port: int) -> RedisServer:
        """The node server listening on ``port``."""
        for server in self._servers:
            if server.port == port:
                return server
        raise KeyError(f"no node of {self!r} listens on port {port}")

    def topology(self) -> list[ClusterNodeInfo]:
        """Every node as the first running node that answers sees it (``CLUSTER NODES``)."""
        errors = []
        for server in self._servers:
            if not server.running:
                continue
            try:
                reply = _command(server.host, server.port, "CLUSTER", "NODES", tls_context=None)
            except OSError as error:
                errors.append(f"{server.port}: {error!r}")
                continue
            if not reply.startswith("-"):
                return parse_cluster_nodes(reply)
            errors.append(f"{server.port}: {reply}")
        raise RuntimeError(f"no node of {self!r} answered CLUSTER NODES: {errors}")

    def start(self) -> Self:
        if self._servers:
            return self
        try:
            for _ in range(self._masters * (1 + self._replicas)):
                port = _free_cluster_port()
                config = {
                    "cluster-enabled": "yes",
                    "cluster-config-file": f"nodes-{port}.conf",
                    "cluster-node-timeout": str(self._node_timeout_ms),
                    "repl-diskless-sync-delay": "0",  # a replica syncs at once, not after 5 s
                }
                self._servers.append(RedisServer(port=port, config=config).start())
            self._create()
            self.wait_until_ok()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every node and remove its directory. Safe to call more than once."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisClusterServers {self.url}>"

    def _unconfirmed_masters(self) -> dict[str, str]:
        """The masters whose running replicas do not yet confirm a write (``WAIT``), each with
        what ``WAIT`` said. A replica counts as online for a while after its first sync before
        it answers the master's requests for acknowledgement: until then ``WAIT`` times out."""
        topology = self.topology()
        running = {server.port for server in self._servers if server.running}
        unconfirmed = {}
        for master in topology:
            if not master.is_master or master.failed or master.port not in running:
                continue
            replicas = [
                node
                for node in topology
                if node.master_id == master.node_id and not node.failed and node.port in running
            ]
            if not replicas or not master.slots:
                continue
            key = self._key_served_by(master)
            _, confirmed = _commands(
                "127.0.0.1",
                master.port,
                [("SET", key, "probe"), ("WAIT", str(len(replicas)), "100")],
                tls_context=None,
            )
            if confirmed != str(len(replicas)):
                unconfirmed[f"127.0.0.1:{master.port}"] = f"WAIT: {confirmed} of {len(replicas)}"
        return unconfirmed

    @staticmethod
    def _key_served_by(master: ClusterNodeInfo) -> str:
        """A key in one of ``master``'s slots (the server hashes the candidates)."""
        for n in range(10_000):
            key = f"sessionstore-test-probe-{n}"
            slot = _command("127.0.0.1", master.port, "CLUSTER", "KEYSLOT", key, tls_context=None)
            if master.serves(int(slot)):
                return key
        raise RuntimeError(f"no probe key found for the slots of {master}")

    def _create(self) -> None:
        addresses = [f"{host}:{port}" for host, port in self.nodes]
        command = [self._cli, "--cluster", "create", *addresses]
        command += ["--cluster-replicas", str(self._replicas), "--cluster-yes"]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=CLUSTER_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"{' '.join(command)} hung for {CLUSTER_TIMEOUT} s") from error
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise RuntimeError(
                f"{' '.join(command)} failed with status {result.returncode}:\n{output}"
            )

    def wait_until_ok(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and knows every node,
        and every running replica's link to its master is up (its first sync done).
        ``RuntimeError`` naming the nodes still waiting after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        expected = ("cluster_state:ok", f"cluster_known_nodes:{len(self._servers)}")
        while True:
            waiting: dict[str, str] = {}
            for server in self._servers:
                if not server.running:
                    continue
                host, port = server.host, server.port
                try:
                    info = _command(host, port, "CLUSTER", "INFO", tls_context=None)
                    replication = _command(host, port, "INFO", "replication", tls_context=None)
                except OSError as error:
                    info = replication = repr(error)
                lines = info.splitlines() + replication.splitlines()
                # Both ends: the replica's link is up, and its master counts it online (in WAIT).
                synced = ("role:slave" not in lines or "master_link_status:up" in lines) and all(
                    "state=online" in line for line in lines if re.match(r"slave\d+:", line)
                )
                if not all(line in lines for line in expected) or not synced:
                    waiting[f"{host}:{port}"] = info + replication
            if not waiting:
                waiting = self._unconfirmed_masters()
            if not waiting:
                return
            if time.monotonic() > deadline:
                report = "\n".join(f"{node}:\n{info}" for node, info in waiting.items())
                raise RuntimeError(
                    f"cluster not ok within {timeout} s on {len(waiting)} node(s):\n" + report
                )
            time.sleep(0.05)
