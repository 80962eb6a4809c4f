"""Specs the PostgreSQL backend accepts or refuses, and passwords kept out of everything printed."""

from __future__ import annotations

import socket
from urllib.parse import quote

import pytest

from sessionstore import ConfigurationError, StoreUnavailableError, open_store
from sessionstore_postgres.connection import parse_spec

PASSWORD = "Zq9x/W@k7:p?w#d%s"
"""A password holding every character that changes how a URL splits."""


def _closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("spec", "dsn"),
    [
        ("postgres", None),
        ("POSTGRESQL", None),
        ("postgresql://db.example:5433/sessions", "postgresql://db.example:5433/sessions"),
        ("postgres://app@db/sessions", "postgresql://app@db/sessions"),
        ("postgresql://h1:5432,h2:5433/s", "postgresql://h1:5432,h2:5433/s"),
        ("postgresql://[::1]:5432/s?sslmode=disable", "postgresql://[::1]:5432/s?sslmode=disable"),
        ("postgresql:///s?host=/run/postgresql", "postgresql:///s?host=/run/postgresql"),
    ],
)
def test_accepted_specs_become_asyncpg_dsns(spec: str, dsn: str | None) -> None:
    assert parse_spec(spec).dsn == dsn


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("mysql://h/db", "must be 'postgres', or start with postgresql://"),
        ("postgresql://h:99999/db", "bad port '99999'"),
        ("postgresql://h:port/db", "bad port 'port'"),
        ("postgresql://h/db/extra", "the path is one database name"),
        ("postgresql://h/db#frag", "drop the '#...' part"),
        ("postgresql://h/db?=x", "its query is not name=value"),
    ],
)
def test_bad_specs_are_refused_naming_the_problem(spec: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL store spec") as caught:
        parse_spec(spec)
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "user"),
    [
        (f"postgresql://app:{quote(PASSWORD, safe='')}@127.0.0.1:{{port}}/db", "app"),
        (f"postgresql://app:{PASSWORD}@127.0.0.1:{{port}}/db", "app"),
        (f"postgres://:{quote(PASSWORD, safe='')}@127.0.0.1:{{port}}/db", None),
    ],
    ids=["percent-encoded", "unencoded", "no-user"],
)
def test_the_userinfo_password_is_decoded_and_kept_apart(spec: str, user: str | None) -> None:
    endpoint = parse_spec(spec.format(port=5432))
    assert endpoint.password == PASSWORD
    assert endpoint.dsn == f"postgresql://{user + '@' if user else ''}127.0.0.1:5432/db"


SECRET_SPELLINGS = [
    f"postgresql://app:{quote(PASSWORD, safe='')}@127.0.0.1:{{port}}/db",
    f"postgresql://app:{PASSWORD}@127.0.0.1:{{port}}/db",
    f"postgresql://app@127.0.0.1:{{port}}/db?password={quote(PASSWORD, safe='')}",
    "postgresql://app@127.0.0.1:{port}/db?sslmode=disable&password=plain-s3cret",
]


@pytest.mark.parametrize(
    "spec", SECRET_SPELLINGS, ids=["encoded", "unencoded", "query-encoded", "query-plain"]
)
async def test_no_password_in_reprs_or_errors_however_spelled(spec: str) -> None:
    """Connecting to a closed port fails with StoreUnavailableError; neither it, nor the store's
    or backend's repr, holds the password in any spelling."""
    spec = spec.format(port=_closed_port())
    forbidden = {PASSWORD, quote(PASSWORD, safe=""), "plain-s3cret", "Zq9x"}
    async with open_store(spec, timeout=5) as store:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.get_session("s1")
        shown = [repr(store), str(store), str(caught.value), repr(caught.value)]
        shown += [repr(parse_spec(spec))]
    for text in shown:
        for secret in forbidden:
            assert secret not in text, f"{secret!r} shown in {text!r}"
    assert "***" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"max_size": 0}, "max_size must be an int >= 1"),
        ({"min_size": 3, "max_size": 2}, "min_size (3) must not exceed max_size (2)"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"connect_timeout": "1"}, "connect_timeout must be a number"),
        ({"schema": "Bad-Name"}, "schema 'Bad-Name' must be 1-63 characters"),
        ({"notify": "yes"}, "notify must be True or False"),
        ({"statement_cache_size": -1}, "statement_cache_size must be an int >= 0"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("postgresql://127.0.0.1/db", **options)
    assert complaint in str(caught.value)
