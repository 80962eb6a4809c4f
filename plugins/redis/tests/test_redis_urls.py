"""Passwords as users write them in Redis URLs (issue 14, item 7): a base64 password with an
unencoded ``/``, ``+`` and ``=`` works as written, on a real server, and no part of it shows in
any message; a wrong one is refused without quoting it."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from redis_servers import ServerFactory

from sessionstore import Session, StoreUnavailableError, TransportType, open_store
from sessionstore_redis.connection import parse_spec

SECRET = "Zq9x/Wk7+Yh3=="
PARTS = ["Zq9", "x/W", "Wk7", "+Yh", "h3="]


@pytest.mark.parametrize(
    ("userinfo", "user", "password"),
    [
        (f":{SECRET}", None, SECRET),
        (f"app:{SECRET}", "app", SECRET),
        (f":{quote(SECRET, safe='')}", None, SECRET),
        (":p@ss?w#rd/:x", None, "p@ss?w#rd/:x"),
        ("app:", "app", ""),
        ("app", "app", None),
    ],
)
def test_passwords_of_every_spelling_are_parsed_whole(
    userinfo: str, user: str | None, password: str | None
) -> None:
    for host, nodes in [("h:7000/2", (("h", 7000),)), ("[::1]:7001", (("::1", 7001),))]:
        endpoint = parse_spec(f"redis://{userinfo}@{host}")
        assert (endpoint.username, endpoint.password, endpoint.nodes) == (user, password, nodes)
    cluster = parse_spec(f"rediss+cluster://{userinfo}@a:1,b:2")
    assert (cluster.username, cluster.password) == (user, password)
    assert cluster.nodes == (("a", 1), ("b", 2))


async def test_a_base64_password_with_a_slash_works_as_written(
    make_redis_server: ServerFactory,
) -> None:
    server = make_redis_server(password=SECRET)
    for url in (
        f"redis://:{SECRET}@{server.host}:{server.port}/0",
        f"redis://default:{SECRET}@{server.host}:{server.port}",
        server.url_for(password=SECRET),  # percent-encoded
    ):
        async with open_store(url) as store:
            created = await store.create_session(Session(transport=TransportType.HTTP))
            assert (await store.get_session(created.id)).version == 1
            assert not [part for part in PARTS if part in repr(store)]
    wrong = open_store(f"redis://:{SECRET[::-1]}@{server.host}:{server.port}")
    with pytest.raises(StoreUnavailableError, match="refused the credentials") as info:
        await wrong.count_sessions()
    await wrong.aclose()
    text = f"{info.value} {wrong!r}"
    assert not [part for part in [*PARTS, "==h", "Y+7", "kW/"] if part in text], text
