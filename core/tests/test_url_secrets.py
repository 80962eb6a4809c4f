"""No part of a password in a store URL shows in an error, a repr or the command line's output,
however the URL is spelled, on every backend that takes a URL (issue 14, item 7).

Each password below is made of characters that break naive URL parsers around runs of letters
that appear in no message, host or path here, so any three of its characters in a text mean it
leaked. The Redis URLs point at 127.0.0.1 port 1, where nothing listens: a call fails at once
with the backend's own error, which must not leak either. Property tests over generated passwords
are in test_urls.py.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result
from core_testkit import InstallDistribution

from sessionstore import BackendError, SessionStoreError, open_store
from sessionstore.cli import cli

SECRETS = [
    "Zq9x/Wk7+Yh3==",  # the base64 password: an unencoded "/"
    "QzX?Jk#Vw@Yp:Zt",  # every delimiter of a URL
    "Kw7%Zq[9]x Jv!",  # a stray "%", brackets, a space
    "Vw[::Zq]Jx/K",  # brackets around what urlsplit then reads as an IPv6 address, and quotes
]

TEMPLATES = [
    "redis://{userinfo}@127.0.0.1:1/0",
    "rediss://{userinfo}@127.0.0.1:1",
    "REDIS://{userinfo}@127.0.0.1:1",
    "redis://{userinfo}@[::1]:1/0",
    "redis+cluster://{userinfo}@127.0.0.1:1,127.0.0.1:2",
    "rediss+cluster://{userinfo}@127.0.0.1:1",
    "redis://{userinfo}@",
    "redis://{userinfo}@127.0.0.1:port",
    "redis://{userinfo}@127.0.0.1:1/db",
    "redis://{userinfo}@127.0.0.1:1/0?opt=1",
    "redis://{userinfo}@127.0.0.1:1#frag",
    "redis://{userinfo}@h1:1,h2:2",
    "redis+cluster://{userinfo}@127.0.0.1:1/3",
    "redis:{userinfo}@127.0.0.1:1",
    "redis:///{userinfo}@127.0.0.1:1",
    "{userinfo}@127.0.0.1:1",
    "sqlite://{userinfo}@host/x.db",
    "sqlite://{userinfo}@/x.db",
    "sqlite:{userinfo}@x.db",
    "memory://{userinfo}@name",
    "memory:{userinfo}@name",
    "nosuch://{userinfo}@host",
    "bad scheme://{userinfo}@host",
]


def userinfos(secret: str) -> list[str]:
    """The ways a password is written before the ``@``: with or without a user, raw or
    percent-encoded, and alone when a delimiter in it keeps it from reading as a user name."""
    written = [secret, quote(secret, safe="")]
    spelled = [f"{user}:{password}" for user in ("", "app") for password in written]
    if set("/?#") & set(secret.partition(":")[0]):
        spelled.append(secret)
    return spelled


SPELLINGS = [
    (secret, template.format(userinfo=userinfo))
    for secret in SECRETS
    for userinfo in userinfos(secret)
    for template in TEMPLATES
]


def windows(secret: str) -> set[str]:
    runs = {secret[i : i + 3] for i in range(len(secret) - 2)}
    return {run for run in runs if any(c.isalnum() for c in run)}


def assert_hidden(secret: str, *texts: str) -> None:
    parts = windows(secret) | windows(quote(secret, safe=""))
    for text in texts:
        shown = sorted(part for part in parts if part in text)
        assert not shown, f"{shown} of the secret {secret!r} in {text!r}"


def options_for(url: str) -> dict[str, object]:
    """A short timeout for the Redis backend (nothing listens on port 1 anyway)."""
    return {"timeout": 1.0} if url.lower().startswith("redis") else {}


async def what_it_says(url: str) -> list[str]:
    """Open a store on ``url`` and use it: every message and repr that results."""
    try:
        store = open_store(url, **options_for(url))
    except SessionStoreError as exc:
        return [str(exc), repr(exc)]
    texts = [repr(store), str(store)]
    try:
        texts.append(f"counted {await store.count_sessions()}")
    except SessionStoreError as exc:
        texts += [str(exc), repr(exc)]
    finally:
        await store.aclose()
    return texts


@pytest.mark.parametrize(("secret", "url"), SPELLINGS)
def test_opening_and_using_a_store_never_shows_the_password(secret: str, url: str) -> None:
    assert_hidden(secret, *asyncio.run(what_it_says(url)))


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="sessionstore")


@pytest.mark.parametrize(("secret", "url"), SPELLINGS)
def test_the_command_line_never_shows_the_password(secret: str, url: str) -> None:
    option = ["-o", "timeout=1"] if options_for(url) else []
    results = [
        invoke("count", "-s", url, *option),
        invoke("ls", *option, env={"SESSIONSTORE_URL": url}),
        invoke("migrate", "--from", url, "--to", "memory", *option),
    ]
    for result in results:
        assert result.exit_code in (0, 1, 2), result.output
        assert "Traceback" not in result.output
        assert "internal error" not in result.output
        assert_hidden(secret, result.stdout, result.stderr)


LEAKY_FACTORY = """
from urllib.parse import urlsplit


def create(spec, *, namespace):
    urlsplit(spec).port  # a ValueError quoting part of the authority, as urlsplit's are
    raise ValueError(f"cannot use {spec}")
"""


@pytest.mark.parametrize("secret", SECRETS)
def test_a_backend_factory_quoting_the_url_has_its_message_withheld(
    install_distribution: InstallDistribution, secret: str
) -> None:
    install_distribution(
        "leaky_backend", {"leaky": "leaky_mod:create"}, {"leaky_mod.py": LEAKY_FACTORY}
    )
    for userinfo in userinfos(secret):
        with pytest.raises(BackendError) as info:
            open_store(f"leaky://{userinfo}@host:port/0")
        assert_hidden(secret, str(info.value), repr(info.value))
        assert "factory" in str(info.value)
        assert info.value.__cause__ is None  # a traceback would print the raw message
        with pytest.raises(BackendError, match="cannot use leaky://host:1/0"):
            open_store("leaky://host:1/0")  # nothing to hide: the message is kept
