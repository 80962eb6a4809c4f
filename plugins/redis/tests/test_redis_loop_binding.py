"""A Redis store belongs to the event loop of its first call (issue 14, item 10).

Its connections are the loop's: a call from another thread's loop, or from a second
``asyncio.run()``, raises :class:`WrongEventLoopError` before any command is sent, and never shows
the password of the URL. The backend-independent tests are in core/tests/test_loop_binding.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from concurrent.futures import Future
from typing import TypeVar

import pytest
from redis_servers import ServerFactory

from sessionstore import Session, StoreClosedError, TransportType, WrongEventLoopError, open_store

T = TypeVar("T")
PASSWORD = "s3cret-Wk7"


def run_in_another_thread(coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` to completion in a new thread with an event loop of its own."""
    result: Future[T] = Future()

    def main() -> None:
        async def wrapped() -> T:
            return await coroutine

        try:
            result.set_result(asyncio.run(wrapped()))
        except BaseException as error:
            result.set_exception(error)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(timeout=60)
    return result.result(timeout=0)


async def test_another_threads_loop_is_refused_without_showing_the_password(
    make_redis_server: ServerFactory,
) -> None:
    server = make_redis_server(password=PASSWORD)
    url = server.url
    assert PASSWORD in url
    async with open_store(url, namespace="bound") as store:
        await store.create_session(Session(id="mine", transport=TransportType.HTTP))
        for call in (
            store.get_session("mine"),
            store.create_session(Session(id="theirs", transport=TransportType.HTTP)),
            store.count_sessions(),
            store.list_sessions(),
            store.append_event("mine", "s", b"x"),
        ):
            with pytest.raises(WrongEventLoopError) as refused:
                run_in_another_thread(call)
            assert PASSWORD not in str(refused.value)
        assert [s.id for s in await store.list_sessions()] == ["mine"]
        await store.clear()


def test_a_second_asyncio_run_is_refused_and_the_store_can_still_be_closed(
    redis_url: str,
) -> None:
    store = open_store(redis_url, namespace="bound-twice")
    asyncio.run(store.create_session(Session(id="s", transport=TransportType.HTTP)))
    with pytest.raises(WrongEventLoopError, match="open one store per thread or event loop"):
        asyncio.run(store.get_session("s"))
    asyncio.run(store.aclose())  # its loop is closed: closing it from here is allowed
    with pytest.raises(StoreClosedError):
        asyncio.run(store.count_sessions())

    async def clear() -> None:
        async with open_store(redis_url, namespace="bound-twice") as fresh:
            await fresh.clear()

    asyncio.run(clear())
