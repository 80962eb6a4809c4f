"""Store specs: which backend a spec names, and redacting passwords out of URLs."""

from __future__ import annotations

import pytest

from sessionstore import ConfigurationError, redact_url
from sessionstore.urls import backend_name_of


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:secret@host/0", "redis://:***@host/0"),
        ("rediss://user:p@ss:w@rd@host:6380", "rediss://user:***@host:6380"),
        (
            "postgresql://u:secret@db/app?sslmode=require",
            "postgresql://u:***@db/app?sslmode=require",
        ),
        ("sqlite:///x.db?password=secret&mode=rw", "sqlite:///x.db?password=***&mode=rw"),
        ("redis://host/0?db=1&PASSWORD=secret", "redis://host/0?db=1&PASSWORD=***"),
        ("redis://host/0?pwd=secret", "redis://host/0?pwd=***"),
        ("redis://host/0?pass=secret#frag", "redis://host/0?pass=***#frag"),
        ("redis://u:secret@host/0?password=secret", "redis://u:***@host/0?password=***"),
    ],
)
def test_redact_url_masks_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "secret" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "memory",
        "memory://shared-name",
        "sqlite:///sessions.db",
        "sqlite:////var/lib/app/sessions.db",
        "sqlite://",
        "redis://localhost:6379/0",
        "redis://user@host/0",
        "rediss://host:6380/0?ssl_cert_reqs=none",
        "redis://host/0?",
        "redis://host/0#section",
        "sqlite:///tmp/a@b.db",
        "sqlite:///x.db?passwords_file=/etc/x",
    ],
)
def test_redact_url_leaves_urls_without_passwords_unchanged(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:se/cret@host/0",  # an unencoded "/" in the password
        "redis://user:sec?ret@host/0",
        "redis://user:sec#ret@host/0",
        "redis://user:secret@[::1/0",  # does not parse at all
        "bad scheme://user:secret@host",
        "redis://user:sec\tret@host/0",  # urlsplit drops tabs
    ],
)
def test_redact_url_masks_passwords_it_cannot_parse_cleanly(url: str) -> None:
    redacted = redact_url(url)
    assert "secret" not in redacted.replace("\t", "")
    assert "se/cret" not in redacted
    assert "cret" not in redacted
    assert "***" in redacted


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("memory", "memory"),
        ("  Memory ", "memory"),
        ("sqlite:///sessions.db", "sqlite"),
        ("REDIS://localhost:6379/0", "redis"),
        ("rediss://user:secret@host", "rediss"),
        ("memory://shared", "memory"),
        ("redis+cluster://h", "redis+cluster"),
        ("my_backend.v2", "my_backend.v2"),
    ],
)
def test_backend_name_of(spec: str, name: str) -> None:
    assert backend_name_of(spec) == name


@pytest.mark.parametrize("spec", ["", "   ", ":memory:", "1abc", "my backend", "ünïcode", "/x.db"])
def test_backend_name_of_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="neither a backend name nor a URL"):
        backend_name_of(spec)


@pytest.mark.parametrize("spec", [None, 42, b"memory"])
def test_backend_name_of_refuses_non_strings(spec: object) -> None:
    with pytest.raises(ConfigurationError, match=f"must be a str, not {type(spec).__name__}"):
        backend_name_of(spec)  # type: ignore[arg-type]


def test_backend_name_of_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        backend_name_of("bad name://user:secret@host/0")
    assert "secret" not in str(info.value)
