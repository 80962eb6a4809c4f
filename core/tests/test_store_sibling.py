"""``SessionStore.sibling``: a store on the same backend, in another namespace."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_testkit import store_built_directly

from sessionstore import (
    ConfigurationError,
    MetricsMiddleware,
    Session,
    SessionNotFoundError,
    StoreClosedError,
    TransportType,
    open_store,
)


async def test_a_sibling_shares_the_backend_not_the_namespace(tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'shared.db'}"
    async with open_store(spec, namespace="app", ttl=60) as store:
        async with store.sibling("app.own") as own:
            assert own.namespace == "app.own"
            assert own.ttl == store.ttl  # unchanged unless given
            made = await own.create_session(Session(transport=TransportType.HTTP))
            with pytest.raises(SessionNotFoundError):
                await store.get_session(made.id)
            assert await store.count_sessions() == 0
        # The sibling is closed, the store is not.
        assert await store.count_sessions() == 0
        # The same database: a second open_store in that namespace sees the sibling's record.
        async with open_store(spec, namespace="app.own") as again:
            assert (await again.get_session(made.id)).id == made.id


async def test_a_sibling_takes_its_own_ttl() -> None:
    async with (
        open_store("memory://sibling-ttl", ttl=60) as store,
        store.sibling("forever", ttl=None) as forever,
        store.sibling("x", ttl=5) as x,
    ):
        assert forever.ttl is None
        assert x.ttl is not None
        assert x.ttl.total_seconds() == 5


async def test_a_sibling_carries_the_options_and_middleware() -> None:
    metrics = MetricsMiddleware()
    async with (
        open_store(
            "memory://sibling-options", namespace="a", page_size=7, middleware=[metrics]
        ) as store,
        store.sibling("b") as other,
    ):
        assert other._page_size == 7
        await other.create_session(Session(transport=TransportType.HTTP))
        assert metrics.snapshot()["session_create"].calls == 1


async def test_a_sibling_needs_a_valid_namespace_and_an_open_store() -> None:
    store = open_store("memory")
    with pytest.raises(ConfigurationError, match="namespace"):
        store.sibling("no spaces")
    with pytest.raises(ConfigurationError, match="namespace"):
        store.sibling("x" * 65)
    await store.aclose()
    with pytest.raises(StoreClosedError):
        store.sibling("fine")


def test_a_store_not_made_by_open_store_has_no_sibling() -> None:
    store = store_built_directly()
    with pytest.raises(ConfigurationError, match="open_store"):
        store.sibling("other")
