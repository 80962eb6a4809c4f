"""From a store spec to asyncpg's connection arguments, and from asyncpg's failures to ours.

Spec forms (the scheme may be ``postgres`` or ``postgresql``)::

    postgres                                   libpq's defaults (PGHOST, PGUSER... or localhost)
    postgresql://[user[:password]@][host][:port][,host:port...][/database][?param=value&...]

Query parameters go to asyncpg as libpq's do (``sslmode``, ``sslrootcert``, ``host`` for a Unix
socket directory, ``password``, ``target_session_attrs``...); any other parameter is a server
setting (``application_name``...). The password, from the userinfo or from ``?password=``, is
kept out of every repr, log line and error message however it is spelled (percent-encoded or
not, with ``@``, ``/``, ``:`` in it): messages show the URL through
:func:`~sessionstore.redact_url`, and every driver message is scrubbed of each spelling of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from sessionstore import ConfigurationError, StoreUnavailableError, redact_url
from sessionstore.urls import parse_url, redact_text

__all__ = ["RETRYABLE", "UNAVAILABLE", "Endpoint", "parse_spec", "unavailable"]

_SCHEMES = frozenset({"postgres", "postgresql"})

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, name resolution
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # the connection closed under a query, or the pool closed
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: terminated, shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # 53: disk full, too many connections
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28: bad user or password
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.exceptions.InsufficientPrivilegeError,  # 42501
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: a standby, or read-only mode
    asyncpg.exceptions.InternalClientError,
)
"""asyncpg failures that mean the store cannot be used right now."""

RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
"""Failures after which the server rolled the whole transaction back: running it again is safe."""


@dataclass(frozen=True)
class Endpoint:
    """Where a spec points, as asyncpg's arguments; the password is kept out of the repr."""

    dsn: str | None = field(repr=False)
    """The spec without its password (a user name stays), for asyncpg; ``None``: libpq's
    defaults."""
    password: str | None = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    """Every spelling of every password in the spec: scrubbed out of driver messages."""
    display: str
    """The spec with the password masked: safe to print."""

    def scrub(self, text: str) -> str:
        """``text`` without any URL password and without any spelling of this spec's."""
        text = redact_text(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def parse_spec(spec: str) -> Endpoint:
    """Parse a PostgreSQL store spec; :class:`ConfigurationError` says what is wrong."""
    display = redact_url(spec)
    if spec.strip().lower() in _SCHEMES:
        return Endpoint(None, None, (), spec.strip().lower())
    scheme, sep, _ = spec.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"PostgreSQL store spec {display!r} must be 'postgres', or start with "
            "postgresql:// or postgres://"
        )
    # The core's parser: the userinfo runs to the last "@", so a password may hold "/", "?",
    # "#" or "@" unencoded, and no part of it ever lands in a host or database message.
    url = parse_url(spec, what="PostgreSQL store spec")
    if url.fragment is not None:
        raise ConfigurationError(f"PostgreSQL store spec {display!r}: drop the '#...' part")
    secrets: set[str] = set()
    raw_userinfo = spec.partition("://")[2].rpartition("@")[0] if url.username is not None else ""
    if url.password:
        raw_password = raw_userinfo.partition(":")[2]
        secrets |= {url.password, raw_password, quote(url.password, safe="")}
    query = url.query or ""
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        params = [("", "")]
    if any(not name for name, _ in params):
        raise ConfigurationError(
            f"PostgreSQL store spec {display!r}: its query is not name=value&..."
        )
    password = url.password
    for name, value in params:
        if name == "password":  # kept out of the DSN, as the userinfo's is
            password = value if password is None else password
            secrets |= {value, quote(value, safe="")}
            secrets |= {p.partition("=")[2] for p in query.split("&") if p.startswith("password=")}
    query = "&".join(p for p in query.split("&") if not p.startswith("password="))
    for host in url.host.split(",") if url.host else ():
        _check_port(host, display)
    database = url.path[1:]
    if "/" in database:
        raise ConfigurationError(
            f"PostgreSQL store spec {display!r}: the path is one database name, not {database!r}"
        )
    userinfo = quote(url.username, safe="") + "@" if url.username else ""
    dsn = f"postgresql://{userinfo}{url.host}{url.path}" + (f"?{query}" if query else "")
    # Longest first, so that no shorter secret inside a longer one leaves a piece of it behind.
    ordered = tuple(sorted((s for s in secrets if s), key=len, reverse=True))
    return Endpoint(dsn, password, ordered, display)


def _check_port(host: str, display: str) -> None:
    if host.startswith("["):  # [IPv6]:port
        port = host.partition("]")[2].removeprefix(":")
    else:
        port = host.partition(":")[2]
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ConfigurationError(f"PostgreSQL store spec {display!r}: bad port {port!r}")


def unavailable(exc: BaseException, endpoint: Endpoint, what: str = "") -> StoreUnavailableError:
    """The error to raise for a driver failure in :data:`UNAVAILABLE`, its message scrubbed."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        reason = what or "timed out"
    elif isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        reason = "the server refused the credentials"
    elif isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
        reason = "the user lacks a privilege this backend needs"
    elif isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        reason = "no such database"
    else:
        reason = what or "unavailable"
    detail = endpoint.scrub(str(exc)) if str(exc) else ""
    message = f"PostgreSQL at {endpoint.display}: {reason} ({type(exc).__name__}"
    return StoreUnavailableError(f"{message}: {detail})" if detail else f"{message})")
