"""Store specs: which backend a spec names, splitting a URL into its parts, and redacting its
password out of anything printed, however the URL is spelled."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from urllib.parse import quote, unquote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sessionstore import (
    ConfigurationError,
    SessionStore,
    SessionStoreError,
    open_store,
    redact_url,
)
from sessionstore.urls import StoreURL, backend_name_of, parse_url, redact_text


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
        # An "@" after an empty authority: a path, or a password short of a "/"; masked.
        ("sqlite:///tmp/a@b.db", "sqlite://***@b.db"),
        ("redis:///secret@host", "redis://***@host"),
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


# -- splitting a URL, and passwords of any spelling (issue 14, item 7) ---------------------


BASE64_PASSWORD = "Zq9x/Wk7+Yh3=="
"""The issue's own example: a base64 password with an unencoded "/"."""


def windows(secret: str, size: int = 3) -> set[str]:
    """Every run of ``size`` characters of ``secret`` holding a letter or a digit: text that
    shows one of them shows part of the secret (runs of punctuation alone, like ``://``, are in
    every URL)."""
    runs = {secret[i : i + size] for i in range(len(secret) - size + 1)}
    return {run for run in runs if any(c.isalnum() for c in run)}


def url_in_text(url: str) -> bool:
    """Whether :func:`redact_text` finds all of ``url`` in a text: a URL there ends at whitespace
    or a quote (its docstring says so)."""
    return not any(c.isspace() or c in "'\"<>" for c in url)


def assert_hidden(secret: str, *texts: str) -> None:
    """No part of ``secret`` (nor of its percent-encoding) of 3 characters or more shows in any
    of ``texts``."""
    parts = windows(secret) | windows(quote(secret, safe=""))
    for text in texts:
        shown = sorted(part for part in parts if part in text)
        assert not shown, f"{shown} of the secret {secret!r} in {text!r}"


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("redis://host", ("redis", None, None, "host", "", None, None)),
        ("REDIS://Host:6379/0", ("redis", None, None, "Host:6379", "/0", None, None)),
        ("redis://app@host/0", ("redis", "app", None, "host", "/0", None, None)),
        ("redis://app:@host", ("redis", "app", "", "host", "", None, None)),
        ("redis://:Zq9x/Wk7+Yh3==@host", ("redis", "", BASE64_PASSWORD, "host", "", None, None)),
        ("redis://u:a?b#c@h/1?x=1#f", ("redis", "u", "a?b#c", "h", "/1", "x=1", "f")),
        (
            "redis://u:p@ss@w:rd@[::1]:7000",
            ("redis", "u", "p@ss@w:rd", "[::1]:7000", "", None, None),
        ),
        ("redis://%61pp:%2F%25x@h", ("redis", "app", "/%x", "h", "", None, None)),
        ("redis+cluster://:s@h1:1,h2:2", ("redis+cluster", "", "s", "h1:1,h2:2", "", None, None)),
        ("sqlite:///a@b.db", ("sqlite", None, None, "", "/a@b.db", None, None)),
        ("sqlite:////abs/x.db?", ("sqlite", None, None, "", "//abs/x.db", "", None)),
        ("memory://shared", ("memory", None, None, "shared", "", None, None)),
    ],
)
def test_parse_url_splits_every_part(url: str, parts: tuple[object, ...]) -> None:
    parsed = parse_url(url)
    assert (
        parsed.scheme,
        parsed.username,
        parsed.password,
        parsed.host,
        parsed.path,
        parsed.query,
        parsed.fragment,
    ) == parts
    assert parsed.display == redact_url(url)
    if parsed.password:
        assert_hidden(parsed.password, repr(parsed))


@pytest.mark.parametrize(
    "url",
    [
        "redis",
        "redis:host",
        "redis:/Zq9x/Wk7@host",
        ":Zq9x/Wk7+Yh3==@host",
        "Zq9x/Wk7+Yh3==@host",
        "  redis://:Zq9x/Wk7+Yh3==@host",
        "redis://Zq9x/Wk7+Yh3==@host",  # a password without its ":": the "/" makes it no user
        "redis://host/0?x=Zq9x/Wk7+Yh3==@other",
    ],
)
def test_parse_url_refuses_what_it_cannot_split_without_quoting_it(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_url(url, what="Redis store spec")
    assert str(info.value).startswith("Redis store spec ")
    assert_hidden(BASE64_PASSWORD, str(info.value), repr(info.value))


HOSTILE_SPELLINGS = [
    "redis://:Zq9x/Wk7+Yh3==@host",
    "redis://:Zq9x/Wk7+Yh3==@host:6379/0",
    "redis://app:Zq9x/Wk7+Yh3==@host/0",
    "rediss://:Zq9x/Wk7+Yh3==@[::1]:6380",
    "redis+cluster://:Zq9x/Wk7+Yh3==@h1:7000,h2:7001",
    "redis://Zq9x/Wk7+Yh3==@host",
    "redis://:Zq9x?Wk7+Yh3==@host",
    "redis://:Zq9x#Wk7+Yh3==@host",
    "redis://:Zq9x@Wk7+Yh3==@host",
    "redis://:Zq9x:Wk7+Yh3==@host",
    "redis://:Zq9x/Wk7+Yh3==@",
    "redis://:Zq9x/Wk7+Yh3==@host/0?password=Zq9x/Wk7+Yh3==",
    "redis:Zq9x/Wk7+Yh3==@host",
    "redis:/:Zq9x/Wk7+Yh3==@host",
    "redis:///:Zq9x/Wk7+Yh3==@host",
    ":Zq9x/Wk7+Yh3==@host",
    "app:Zq9x/Wk7+Yh3==@host",
    "Zq9x/Wk7+Yh3==@host",
    "sqlite://app:Zq9x/Wk7+Yh3==@host/x.db",
    "memory://:Zq9x/Wk7+Yh3==@name",
    "redis://:Zq9x\tWk7+Yh3==@host",
    "redis://:Zq9x Wk7+Yh3==@host",
    "redis://:Zq9x\nWk7+Yh3==@host",
]


@pytest.mark.parametrize("url", HOSTILE_SPELLINGS)
def test_redact_url_hides_every_spelling_of_a_password(url: str) -> None:
    redacted = redact_url(url)
    assert_hidden(BASE64_PASSWORD, redacted)
    assert "***" in redacted
    assert redact_url(redacted) == redacted  # redacting twice changes nothing
    if "://" in url and url_in_text(url):
        assert_hidden(BASE64_PASSWORD, redact_text(f"could not reach {url} (refused)"))


@pytest.mark.parametrize("url", HOSTILE_SPELLINGS)
def test_backend_name_of_never_quotes_a_password(url: str) -> None:
    try:
        backend_name_of(url)
    except ConfigurationError as exc:
        assert_hidden(BASE64_PASSWORD, str(exc))


# Characters that break naive URL parsers, and letters that appear in no message, host or path
# of the tests: any three characters of a password in a message mean it leaked.
_SEPARATORS = "/?#@:%+=[]!$&'()*,; \t~"
_MARKERS = "QZXJKVW"
passwords = st.text(alphabet=_SEPARATORS + _MARKERS, min_size=3, max_size=24).filter(
    lambda p: windows(p)
)
_SHAPES = [
    "{scheme}://{userinfo}@{host}{tail}",
    "{scheme}:{userinfo}@{host}{tail}",
    "{userinfo}@{host}{tail}",
]


@settings(max_examples=300, deadline=None, database=None)
@given(
    password=passwords,
    user=st.sampled_from(["", "app", None]),
    encoded=st.booleans(),
    scheme=st.sampled_from(["redis", "rediss", "redis+cluster", "sqlite", "memory", "x"]),
    host=st.sampled_from(["host", "host:6379", "[::1]:6380", "h1:7000,h2:7001", ""]),
    tail=st.sampled_from(["", "/0", "/x.db", "/0?opt=1", "#frag", "/a/b"]),
    shape=st.sampled_from(_SHAPES),
)
def test_no_spelling_shows_any_part_of_a_password(
    password: str,
    user: str | None,
    encoded: bool,
    scheme: str,
    host: str,
    tail: str,
    shape: str,
) -> None:
    secret = quote(password, safe="") if encoded else password
    userinfo = secret if user is None else f"{user}:{secret}"
    url = shape.format(scheme=scheme, userinfo=userinfo, host=host, tail=tail)
    # "scheme:" and a password starting with "//" spell "scheme://...": the first shape's URL.
    assume(shape != _SHAPES[1] or not secret.startswith("//"))
    if user is None:  # the password is all of the userinfo: its start may read as a name
        name, colon, rest = secret.partition(":")
        # "scheme://word:rest@host": "word" is a user name by every URL's grammar, shown like
        # any user name, unless it holds "/", "?" or "#" (then nothing before the "@" is shown).
        # "word:rest@host" is read the same way, "word" then being in the scheme's place.
        if (shape == _SHAPES[0] and not set("/?#") & set(name)) or (
            shape == _SHAPES[2] and colon and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", name)
        ):
            password = unquote(rest) if encoded else rest
            if not colon or not windows(password):
                return
    assert_hidden(password, redact_url(url))
    if shape == _SHAPES[0] and url_in_text(url):
        assert_hidden(password, redact_text(f"at {url}: refused"))
    texts = []
    # "sqlite:///:x@host" names a file: open stores in a scratch folder, never the working tree.
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        for attempt in (
            lambda: parse_url(url),
            lambda: backend_name_of(url),
            lambda: open_store(url),
        ):
            try:
                made = attempt()
            except SessionStoreError as exc:
                texts += [str(exc), repr(exc)]
            else:
                texts.append(repr(made))
                if isinstance(made, SessionStore):  # opening connects to nothing yet
                    asyncio.run(made.aclose())
    assert_hidden(password, *texts)


@settings(max_examples=200, deadline=None, database=None)
@given(password=st.text(min_size=1, max_size=30), user=st.sampled_from(["", "app"]))
def test_a_percent_encoded_password_of_any_characters_comes_back_whole(
    password: str, user: str
) -> None:
    parsed = parse_url(f"redis://{user}:{quote(password, safe='')}@host:6379/0")
    assert (parsed.username, parsed.password) == (user, password)
    assert (parsed.host, parsed.path) == ("host:6379", "/0")


@settings(max_examples=200, deadline=None, database=None)
@given(password=passwords.filter(lambda p: "%" not in p))
def test_an_unencoded_password_without_percent_signs_comes_back_whole(password: str) -> None:
    parsed = parse_url(f"redis://app:{password}@host:6379/0")
    assert (parsed.username, parsed.password) == ("app", password)
    assert (parsed.host, parsed.path, parsed.query, parsed.fragment) == (
        "host:6379",
        "/0",
        None,
        None,
    )


def test_store_url_repr_never_shows_the_password() -> None:
    parsed = parse_url("redis://app:Zq9x/Wk7+Yh3==@host")
    assert isinstance(parsed, StoreURL)
    assert_hidden(BASE64_PASSWORD, repr(parsed), str(parsed))
