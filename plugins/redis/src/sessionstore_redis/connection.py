"""From a store spec to a redis-py asyncio client, and from redis-py's failures to ours.

Spec forms (a password goes percent-encoded in the URL; it never appears in a repr, a log line or
an error message)::

    redis                                       redis://127.0.0.1:6379/0
    redis://[[user]:password@]host[:port][/db]  one server
    rediss://...                                the same over TLS
    redis+cluster://[[user]:password@]host:port[,host:port...]
    rediss+cluster://...                        a Redis Cluster (over TLS); any reachable node
                                                is enough, the others are discovered
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterError,
    ConnectionError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)

from sessionstore import ConfigurationError, StoreUnavailableError, redact_url
from sessionstore.urls import parse_url, redact_text

from .cluster import ClusterCommands

__all__ = ["Endpoint", "open_client", "parse_spec", "unavailable", "UNAVAILABLE"]

_SCHEMES = {
    "redis": (False, False),
    "rediss": (False, True),
    "redis+cluster": (True, False),
    "rediss+cluster": (True, True),
}
_DEFAULT_PORT = 6379

UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # also authentication, authorization, loading, pool exhausted
    TimeoutError,
    ReadOnlyError,  # a replica promoted or demoted under us
    OutOfMemoryError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
    OSError,
    asyncio.TimeoutError,
)
"""redis-py failures that mean the store cannot be used right now."""


@dataclass(frozen=True)
class Endpoint:
    """Where a spec points; ``password`` is kept out of the repr."""

    cluster: bool
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None = field(repr=False)
    display: str
    """The spec with the password masked: safe to print."""


def parse_spec(spec: str) -> Endpoint:
    """Parse a Redis store spec; :class:`ConfigurationError` says what is wrong with a bad one."""
    display = redact_url(spec)
    if spec.strip().lower() == "redis":
        return Endpoint(False, False, (("127.0.0.1", _DEFAULT_PORT),), 0, None, None, display)
    scheme, sep, _ = spec.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"Redis store spec {display!r} must start with redis://, rediss://, "
            "redis+cluster:// or rediss+cluster://"
        )
    cluster, tls = _SCHEMES[scheme.lower()]
    # The core's parser: the userinfo runs to the last "@", so a password may hold "/", "?", "#"
    # (base64 ones do), and no part of it ever lands in a host, port or database message.
    url = parse_url(spec, what="Redis store spec")
    if url.query is not None or url.fragment is not None:
        raise ConfigurationError(
            f"Redis store spec {display!r}: pass options as open_store keywords (on the "
            "sessionstore command line: -o key=value), not in the URL"
        )
    username, password = url.username or None, url.password
    hosts, tail = url.host, url.path[1:]
    nodes = tuple(_node(part, display) for part in hosts.split(",")) if hosts else ()
    if not nodes:
        raise ConfigurationError(f"Redis store spec {display!r} names no host")
    if not cluster and len(nodes) > 1:
        raise ConfigurationError(
            f"Redis store spec {display!r} names several hosts; for a Redis Cluster use "
            f"{'rediss' if tls else 'redis'}+cluster://host:port,host:port"
        )
    db = 0
    if tail:
        if cluster:
            raise ConfigurationError(
                f"Redis store spec {display!r}: a Redis Cluster has only database 0; "
                "drop the /db part"
            )
        if not tail.isdigit() or len(tail) > 5:
            raise ConfigurationError(
                f"Redis store spec {display!r}: the database must be a number, not {tail!r}"
            )
        db = int(tail)
    return Endpoint(cluster, tls, nodes, db, username, password, display)


def _node(text: str, display: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, after = text[1:].partition("]")
        port = after.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ConfigurationError(f"Redis store spec {display!r}: empty host in {text!r}")
    if not port:
        return host, _DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"Redis store spec {display!r}: bad port {port!r}")
    return host, int(port)


def open_client(
    endpoint: Endpoint,
    *,
    timeout: float,
    connect_timeout: float,
    max_connections: int,
    poll_limit: float,
    tls_ca_file: str | None,
    tls_cert_file: str | None,
    tls_key_file: str | None,
    tls_check_hostname: bool,
) -> Redis | ClusterCommands:
    """A client for ``endpoint``; nothing is connected until the first command. On a cluster,
    the commands of :mod:`.cluster` over one such client per node.

    Commands are never retried by the driver: a compare-and-set whose reply was lost may have
    run, and running it again would report a conflict with itself. A failure surfaces at once as
    :class:`StoreUnavailableError`, and the caller decides.

    The driver gets no socket timeout: with one, redis-py wraps every send in
    ``asyncio.wait_for``, a new task per command, which costs more than a GET on loopback. The
    backend bounds each operation itself (:mod:`sessionstore_redis.deadlines`; a cancelled
    command makes redis-py drop its connection, so no late reply is ever read as another's),
    and a round trip shared by concurrent commands by ``timeout`` (:mod:`.coalescing`).
    """
    options: dict[str, Any] = {
        "username": endpoint.username,
        "password": endpoint.password,
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
        "max_connections": max_connections,  # per node on a cluster
    }
    if endpoint.tls:
        options.update(
            ssl=True,
            ssl_ca_certs=tls_ca_file,
            ssl_certfile=tls_cert_file,
            ssl_keyfile=tls_key_file,
            ssl_check_hostname=tls_check_hostname,
        )
    if endpoint.cluster:

        def client_for(host: str, port: int) -> Redis:
            return Redis(host=host, port=port, **options)

        return ClusterCommands(
            endpoint.nodes,
            client_for,
            refresh_timeout=connect_timeout,
            timeout=timeout,
            poll_limit=poll_limit,
        )
    host, port = endpoint.nodes[0]
    return Redis(host=host, port=port, db=endpoint.db, **options)


def unavailable(exc: BaseException, endpoint: Endpoint) -> StoreUnavailableError:
    """The error to raise for a driver failure in :data:`UNAVAILABLE` (or an ACL refusal)."""
    if isinstance(exc, AuthenticationError):
        reason = "the server refused the credentials"
    elif isinstance(exc, AuthorizationError | NoPermissionError):
        reason = "the user lacks a permission this backend needs"
    elif isinstance(exc, TimeoutError | asyncio.TimeoutError):
        reason = "timed out"
    elif isinstance(exc, OutOfMemoryError):  # refused before its first write (see .scripts)
        reason = "the server is full (used memory over maxmemory); nothing was written"
    else:
        reason = "unavailable"
    detail = redact_text(str(exc)) if str(exc) else ""
    # Never the raw text of an AUTH failure beyond redis-py's own message, never the password.
    if endpoint.password and endpoint.password in detail:
        detail = detail.replace(endpoint.password, "***")
    message = f"redis at {endpoint.display}: {reason} ({type(exc).__name__}"
    return StoreUnavailableError(f"{message}: {detail})" if detail else f"{message})")
