"""Middleware (wrapper hooks around the backend) and the metrics middleware."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

import pytest
from core_testkit import DictBackend, factory_of

from sessionstore import (
    BackendError,
    BackendLoadError,
    ConfigurationError,
    ConflictError,
    MetricsMiddleware,
    OperationMiddleware,
    OperationStats,
    Session,
    SessionNotFoundError,
    SessionRecord,
    hookimpl,
    open_store,
)
from sessionstore.middleware import ASYNC_HOOKS

T = TypeVar("T")


def new(session_id: str) -> Session:
    return Session(id=session_id, transport="http")


# -- hand-written wrappers ------------------------------------------------------------------


class HideSessions:
    """Wraps one hook, sees its arguments, and changes its result."""

    def __init__(self, hidden: set[str]) -> None:
        self.hidden = hidden
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def session_get(self, session_id: str) -> Generator[None, Any, Any]:
        inner = yield

        async def filtered() -> SessionRecord | None:
            record: SessionRecord | None = await inner
            self.seen.append(session_id)
            return None if session_id in self.hidden else record

        return filtered()


async def test_wrapper_sees_calls_and_changes_results() -> None:
    hider = HideSessions({"secret-one"})
    async with open_store("memory", middleware=[hider]) as store:
        await store.create_session(new("secret-one"))
        await store.create_session(new("public"))
        assert (await store.get_session("public")).id == "public"
        with pytest.raises(SessionNotFoundError):
            await store.get_session("secret-one")
        assert await store.count_sessions() == 2  # other hooks are not wrapped
        assert len(await store.get_sessions_batch(["secret-one", "public"])) == 2
    assert hider.seen == ["public", "secret-one"]


class Tracer(OperationMiddleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def around(self, operation: str, call: Awaitable[T]) -> T:
        self.log.append(f"{self.name}>{operation}")
        try:
            return await call
        finally:
            self.log.append(f"{self.name}<{operation}")


async def test_two_middlewares_nest_last_given_outermost() -> None:
    log: list[str] = []
    middleware = [Tracer("inner", log), Tracer("outer", log)]
    async with open_store("memory", middleware=middleware) as store:
        log.clear()
        await store.count_sessions()
        assert log == [
            "outer>session_count",
            "inner>session_count",
            "inner<session_count",
            "outer<session_count",
        ]
        log.clear()
        with pytest.raises(SessionNotFoundError):
            await store.update_session(new("missing"))
        assert log == [
            "outer>session_update",
            "inner>session_update",
            "inner<session_update",
            "outer<session_update",
        ]
    assert log[-1] == "outer<store_close"


async def test_operation_middleware_wraps_every_async_hook() -> None:
    log: list[str] = []
    async with open_store("memory", middleware=[Tracer("t", log)]) as store:
        await store.create_session(new("s"))
        await store.get_session("s")
        await store.get_sessions_batch(["s"])
        await store.update_session(await store.get_session("s"))
        await store.update_sessions_batch([await store.get_session("s")])
        await store.list_sessions()
        await store.count_sessions()
        await store.store_last_event_id("s", "e")
        await store.get_last_event_id("s")
        event = await store.append_event("s", "st", b"x")
        await store.replay_events_after(event)
        dump = await store.dump_session("s")
        await store.purge_expired()
        await store.delete_session("s")
        assert await store.load_session(dump)
        await store.clear()
    entered = {entry[2:] for entry in log if entry.startswith("t>")}
    assert entered == set(ASYNC_HOOKS)


class Rewriter:
    """A wrapper that changes what the backend answers, on a hook with several arguments."""

    @hookimpl(wrapper=True)
    def session_page(self, cursor: str | None, limit: int) -> Generator[None, Any, Any]:
        inner = yield

        async def first_only() -> Any:
            records, _ = await inner
            return records[:1], None

        return first_only()


async def test_wrapper_can_replace_results_of_multi_argument_hooks() -> None:
    async with open_store("memory", middleware=[Rewriter()]) as store:
        for i in range(3):
            await store.create_session(new(f"s{i}"))
        assert [s.id for s in await store.list_sessions()] == ["s0"]


class Failing(OperationMiddleware):
    async def around(self, operation: str, call: Awaitable[T]) -> T:
        await call
        raise RuntimeError(f"middleware broke {operation}")


async def test_raw_error_in_middleware_is_a_backend_error() -> None:
    store = open_store("memory", middleware=[Failing()])
    with pytest.raises(BackendError, match="middleware broke session_count") as info:
        await store.count_sessions()
    assert info.value.hook == "session_count"
    assert isinstance(info.value.__cause__, RuntimeError)


# -- refused middleware ---------------------------------------------------------------------


class NotAWrapper:
    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        return None


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def session_count(self) -> Generator[None, Any, None]:
        yield


class HalfWrapper:
    @hookimpl(wrapper=True)
    def session_get(self) -> Generator[None, Any, Any]:
        return (yield)

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        return True


@pytest.mark.parametrize(
    ("plugin", "hook"),
    [
        (NotAWrapper(), "session_get"),
        (OldStyleWrapper(), "session_count"),
        (HalfWrapper(), "session_delete"),
    ],
)
def test_middleware_that_is_not_a_wrapper_is_refused(plugin: object, hook: str) -> None:
    with pytest.raises(ConfigurationError, match=f"hook {hook} must be declared") as info:
        open_store("memory", middleware=[OperationMiddleware(), plugin])
    assert f"{type(plugin).__name__} (middleware #2)" in str(info.value)
    assert "wrapper=True" in str(info.value)


def test_middleware_with_an_unknown_hook_is_refused() -> None:
    class Typo:
        @hookimpl(wrapper=True)
        def sesion_get(self) -> Generator[None, Any, Any]:
            return (yield)

    with pytest.raises(BackendLoadError, match="sesion_get"):
        open_store("memory", middleware=[Typo()])


def test_the_same_middleware_twice_is_refused() -> None:
    metrics = MetricsMiddleware()
    with pytest.raises(ConfigurationError, match="middleware #2"):
        open_store("memory", middleware=[metrics, metrics])


# -- add_middleware -------------------------------------------------------------------------


async def test_add_middleware_on_an_open_store(dict_backend: DictBackend) -> None:
    store = open_store(factory_of(dict_backend))
    await store.create_session(new("before"))
    metrics = MetricsMiddleware()
    store.add_middleware(metrics)
    await store.create_session(new("after"))
    assert (await store.get_session("before")).id == "before"
    snapshot = metrics.snapshot()
    assert snapshot["session_create"].calls == 1
    assert snapshot["session_get"].calls == 1
    log: list[str] = []
    store.add_middleware(Tracer("late", log))
    await store.count_sessions()
    assert log == ["late>session_count", "late<session_count"]
    assert metrics.snapshot()["session_count"].calls == 1
    await store.aclose()
    assert dict_backend.closed == 1


async def test_refused_add_middleware_leaves_the_store_as_it_was() -> None:
    metrics = MetricsMiddleware()
    async with open_store("memory", middleware=[metrics]) as store:
        with pytest.raises(ConfigurationError):
            store.add_middleware(NotAWrapper())
        await store.create_session(new("s"))
        assert (await store.get_session("s")).id == "s"
    assert metrics.snapshot()["session_get"].calls == 1


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_count_calls_and_failures_per_hook() -> None:
    metrics = MetricsMiddleware()
    async with open_store("memory", middleware=[metrics]) as store:
        session = await store.create_session(new("s"))
        await store.get_session("s")
        with pytest.raises(SessionNotFoundError):
            await store.get_session("missing")  # the hook answers None: not a failure
        with pytest.raises(SessionNotFoundError):
            await store.update_session(new("missing"))
        with pytest.raises(SessionNotFoundError):
            await store.get_last_event_id("missing")
        await store.update_session(session)
        stale = await store.get_session("s")
        await store.update_session(await store.get_session("s"))
        with pytest.raises(ConflictError, match="stale"):
            await store.update_session(stale)
        snapshot = metrics.snapshot()
    assert snapshot["session_create"].calls == 1
    assert snapshot["session_get"].calls == 4
    assert snapshot["session_get"].failures == {}
    assert snapshot["session_update"].calls == 4
    assert snapshot["session_update"].failures == {"SessionNotFoundError": 1, "ConflictError": 1}
    assert snapshot["last_event_id_get"].failures == {"SessionNotFoundError": 1}
    assert "session_count" not in snapshot
    for stats in snapshot.values():
        assert stats.total_seconds > 0
        assert 0 < stats.max_seconds <= stats.total_seconds
        assert stats.mean_seconds == pytest.approx(stats.total_seconds / stats.calls)
        assert sum(stats.histogram) == stats.calls
    assert metrics.snapshot()["store_close"].calls == 1


class ScriptedTimer:
    """A timer whose readings are given in advance: start and end of each call in turn."""

    def __init__(self, durations: list[float]) -> None:
        self.readings = [value for d in durations for value in (0.0, d)]

    def __call__(self) -> float:
        return self.readings.pop(0) if self.readings else 0.0


async def test_metrics_latency_quantiles_are_bounded_within_a_factor_of_two() -> None:
    durations = [3e-6, 5e-6, 40e-6, 1e-3, 2e-3, 0.25, 1e-7, 7e-6]
    metrics = MetricsMiddleware(timer=ScriptedTimer(durations))
    async with open_store("memory", middleware=[metrics]) as store:
        for _ in durations:
            with pytest.raises(SessionNotFoundError):
                await store.get_session("nobody")
    stats = metrics.snapshot()["session_get"]
    assert stats.calls == len(durations)
    assert stats.total_seconds == pytest.approx(sum(durations))
    assert stats.max_seconds == 0.25
    ordered = sorted(durations)
    for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        true_value = ordered[math.ceil(q * len(ordered)) - 1]
        bound = stats.quantile(q)
        assert true_value <= bound * (1 + 1e-9), q
        assert bound <= max(2 * true_value, 1e-6) * (1 + 1e-9), q
    assert stats.quantile(1.0) == 0.25
    for bad in (0, -0.5, 1.01):
        with pytest.raises(ValueError, match="q must be"):
            stats.quantile(bad)


def test_empty_stats() -> None:
    stats = OperationStats()
    assert stats.quantile(0.5) == 0.0
    assert stats.mean_seconds == 0.0


async def test_metrics_snapshot_is_a_copy_and_reset_forgets() -> None:
    metrics = MetricsMiddleware()
    async with open_store("memory", middleware=[metrics]) as store:
        await store.count_sessions()
        snapshot = metrics.snapshot()
        snapshot["session_count"].calls = 100
        snapshot["session_count"].histogram[0] = 100
        assert metrics.snapshot()["session_count"].calls == 1
        assert sum(metrics.snapshot()["session_count"].histogram) == 1
        metrics.reset()
        assert metrics.snapshot() == {}
        await store.count_sessions()
        assert metrics.snapshot()["session_count"].calls == 1
