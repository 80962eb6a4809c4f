"""Backend discovery, open_store's checks of backends and options, and hook dispatch."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from core_testkit import DictBackend, InstallDistribution, factory_of

from sessionstore import (
    ENTRY_POINT_GROUP,
    MAX_TTL_SECONDS,
    BackendError,
    BackendLoadError,
    Capability,
    ConfigurationError,
    OperationMiddleware,
    Session,
    SessionNotFoundError,
    SessionRecord,
    SessionStore,
    SessionStoreError,
    StoreClosedError,
    StoreUnavailableError,
    UnknownBackendError,
    hookimpl,
    installed_backends,
    open_store,
    plugins,
)
from sessionstore.middleware import ASYNC_HOOKS
from sessionstore.plugins import HookDispatch, bind_plugins

FAKE_DB_MODULE = """
from sessionstore_memory import create_backend as _memory

received = []


def create(spec, *, namespace, region="eu-west-1", pool_size=10):
    received.append((spec, namespace, region, pool_size))
    return _memory("memory", namespace=namespace)
"""

BROKEN_MODULE = """
import fancy_driver_that_is_not_installed


def create(spec, *, namespace):
    raise AssertionError("never reached")
"""


@pytest.fixture
def fake_db(install_distribution: InstallDistribution) -> Any:
    """A third-party backend ``fakedb`` (distribution fake_backend 1.0), and a broken one."""
    install_distribution(
        "fake_backend",
        {"fakedb": "fake_sessionstore_db:create"},
        {"fake_sessionstore_db.py": FAKE_DB_MODULE},
    )
    install_distribution(
        "broken_backend",
        {"brokenplug": "broken_sessionstore_plugin:create"},
        {"broken_sessionstore_plugin.py": BROKEN_MODULE},
    )

    def received() -> list[tuple[str, str, str, int]]:
        return sys.modules["fake_sessionstore_db"].received  # type: ignore[no-any-return]

    return received


# -- discovery ------------------------------------------------------------------------------


def test_installed_backends_reads_metadata_only(fake_db: Any) -> None:
    backends = installed_backends()
    assert backends["memory"].distribution == "sessionstore-memory"
    assert backends["memory"].value == "sessionstore_memory:create_backend"
    fake = backends["fakedb"]
    assert (fake.name, fake.value) == ("fakedb", "fake_sessionstore_db:create")
    assert (fake.distribution, fake.version) == ("fake_backend", "1.0")
    assert "brokenplug" in backends
    assert "fake_sessionstore_db" not in sys.modules
    assert "broken_sessionstore_plugin" not in sys.modules


async def test_third_party_backend_is_selected_by_name(fake_db: Any) -> None:
    async with open_store("fakedb", namespace="tenant-1", pool_size=3) as store:
        assert store.backend_name == "fakedb"
        created = await store.create_session(Session(id="s1", transport="http"))
        assert (await store.get_session("s1")).id == created.id
    assert fake_db() == [("fakedb", "tenant-1", "eu-west-1", 3)]


async def test_third_party_backend_is_selected_by_url_scheme(fake_db: Any) -> None:
    url = "FakeDB://user:secret@db.example:5432/0?password=secret&timeout=3"
    store = open_store(url, region="us-east-2")
    assert store.backend_name == "fakedb"
    assert fake_db() == [(url, "default", "us-east-2", 10)]
    assert "secret" not in repr(store)
    assert "fakedb" in repr(store).lower()
    assert "user:***@db.example:5432" in repr(store)
    await store.create_session(Session(id="s1", transport="http"))
    assert await store.count_sessions() == 1
    await store.aclose()
    assert "closed" in repr(store)
    assert "secret" not in repr(store)
    with pytest.raises(StoreClosedError) as info:
        await store.get_session("s1")
    assert "secret" not in str(info.value)
    assert "***" in str(info.value)


async def test_broken_plugin_fails_only_when_chosen(fake_db: Any) -> None:
    with pytest.raises(BackendLoadError) as info:
        open_store("brokenplug")
    error = info.value
    assert error.name == "brokenplug"
    assert "fancy_driver_that_is_not_installed" in str(error)
    assert "ModuleNotFoundError" in str(error)
    assert "broken_backend" in str(error)  # the distribution to blame
    assert isinstance(error.__cause__, ImportError)
    async with open_store("memory") as store:
        await store.create_session(Session(id="fine", transport="stdio"))
        assert await store.count_sessions() == 1
    async with open_store("fakedb") as other:
        assert await other.count_sessions() == 0


def test_entry_point_that_is_not_callable(install_distribution: InstallDistribution) -> None:
    install_distribution(
        "odd_backend",
        {"oddone": "odd_sessionstore_mod:VALUE"},
        {"odd_sessionstore_mod.py": "VALUE = 42\n"},
    )
    with pytest.raises(BackendLoadError, match="odd_sessionstore_mod:VALUE is not callable"):
        open_store("oddone")


def test_name_claimed_by_two_distributions(install_distribution: InstallDistribution) -> None:
    install_distribution("first_dist", {"twice": "twice_a:create"}, {"twice_a.py": FAKE_DB_MODULE})
    install_distribution("second_dist", {"twice": "twice_b:create"}, {"twice_b.py": FAKE_DB_MODULE})
    with pytest.raises(BackendLoadError, match="more than one distribution") as info:
        open_store("twice")
    assert "first_dist" in str(info.value)
    assert "second_dist" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "name", "extra"),
    [
        ("sqlite", "sqlite", "sqlite"),
        ("sqlite:///sessions.db", "sqlite", "sqlite"),
        ("memory", "memory", "memory"),
        ("redis://localhost:6379/0", "redis", "redis"),
        ("rediss://user:secret@host/0", "rediss", "redis"),
        ("redis+cluster://h1:7000,h2:7001", "redis+cluster", "redis"),
    ],
)
def test_unknown_own_backend_says_what_to_install(
    fake_db: Any, spec: str, name: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint names the core's extra (core/pyproject.toml), which installs the backend."""
    listed = plugins._entry_points
    # As if the backend's distribution were not installed here.
    monkeypatch.setattr(plugins, "_entry_points", lambda: [e for e in listed() if e.name != name])
    with pytest.raises(UnknownBackendError) as info:
        open_store(spec)
    error = info.value
    assert error.name == name
    assert {"fakedb", "brokenplug"} <= set(error.installed)
    assert name not in error.installed
    assert f"pip install 'sessionstore[{extra}]'" in str(error)
    assert "fakedb" in str(error)
    assert "secret" not in str(error)


def test_unknown_third_party_backend_gets_a_conventional_hint(fake_db: Any) -> None:
    with pytest.raises(UnknownBackendError) as info:
        open_store("cassandra://node1/keyspace")
    message = str(info.value)
    assert info.value.name == "cassandra"
    assert "sessionstore-cassandra" in message
    assert ENTRY_POINT_GROUP in message
    assert "pip install sessionstore-cassandra" not in message  # only a convention, not a promise
    assert isinstance(info.value, ConfigurationError)


# -- checking a backend's hooks ------------------------------------------------------------


class OnlyTwoHooks:
    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        return None

    @hookimpl
    async def store_close(self) -> None:
        return None


def test_backend_missing_hooks_is_refused_naming_every_one() -> None:
    factory = factory_of(OnlyTwoHooks())
    with pytest.raises(BackendLoadError) as info:
        open_store(factory)
    message = str(info.value)
    expected_missing = set(ASYNC_HOOKS) - {"session_get", "store_close"}
    assert len(expected_missing) == 15
    for hook in expected_missing:
        assert f"missing hook {hook}" in message
    assert "session_get" not in message.replace("session_get_many", "")
    assert "store_capabilities" not in message  # optional
    assert info.value.name == factory.__qualname__


class PlainCountAndDelete(DictBackend):
    """Two operation hooks as plain defs, the way a backend that never waits may write them."""

    @hookimpl
    def session_count(self, now_ms: int) -> int:  # type: ignore[override]
        self.calls.append("session_count")
        return len(self.records) + 100

    @hookimpl
    def session_delete(self, session_id: str, now_ms: int) -> bool:  # type: ignore[override]
        self.calls.append("session_delete")
        if session_id == "boom":
            raise LookupError("no such shelf")
        return self.records.pop(session_id, None) is not None


@pytest.mark.parametrize("middleware", [(), (OperationMiddleware(),)], ids=["direct", "pluggy"])
async def test_plain_def_operation_hooks_are_accepted(middleware: tuple[object, ...]) -> None:
    backend = PlainCountAndDelete()
    dispatch = HookDispatch(bind_plugins(backend, "plain", middleware))
    outcome = dispatch.session_count(0)
    if middleware:  # middleware always receive, and return, a coroutine
        assert inspect.iscoroutine(outcome)
        outcome = await outcome
    assert outcome == 100
    async with open_store(factory_of(backend), middleware=middleware) as store:
        await store.create_session(Session(id="one", transport="http"))
        assert await store.count_sessions() == 101
        assert await store.delete_session("one") is True
        assert await store.delete_session("one") is False
        with pytest.raises(BackendError) as info:
            await store.delete_session("boom")
        assert info.value.hook == "session_delete"
        assert isinstance(info.value.__cause__, LookupError)
    assert backend.calls.count("session_delete") == 3


class Misspelled(DictBackend):
    @hookimpl
    async def sesion_get(self, session_id: str, now_ms: int) -> None:
        return None


class WrongArgument(DictBackend):
    @hookimpl
    async def session_get(self, sid: str, now_ms: int) -> SessionRecord | None:  # type: ignore[override]
        return None


def test_misspelled_hook_is_refused() -> None:
    with pytest.raises(BackendLoadError, match="sesion_get"):
        open_store(factory_of(Misspelled()))


def test_hook_with_a_wrong_argument_name_is_refused() -> None:
    with pytest.raises(BackendLoadError) as info:
        open_store(factory_of(WrongArgument()))
    assert "session_get" in str(info.value)
    assert "sid" in str(info.value)


def declaring(capabilities: object) -> DictBackend:
    class Declaring(DictBackend):
        @hookimpl
        def store_capabilities(self) -> object:
            return capabilities

    return Declaring()


async def test_declared_capabilities_are_reported() -> None:
    backend = declaring({"atomic_batch_update": "cluster slots", Capability.SHARED_HANDLES: 7})
    async with open_store(factory_of(backend)) as store:
        assert store.capabilities == {
            Capability.ATOMIC_BATCH_UPDATE: "cluster slots",
            Capability.SHARED_HANDLES: "7",
            Capability.EVENT_NOTIFICATIONS: store.capabilities[Capability.EVENT_NOTIFICATIONS],
        }
    async with open_store(factory_of(DictBackend())) as full:
        assert set(full.capabilities) == {Capability.EVENT_NOTIFICATIONS}  # no event_watch
    async with open_store("memory") as memory:
        assert set(memory.capabilities) == {
            Capability.SHARED_HANDLES,
            Capability.SHARED_PROCESSES,
            Capability.DURABLE,
        }


async def test_the_core_declares_event_notifications_missing_without_event_watch() -> None:
    """A backend without the optional event_watch hook lacks event_notifications, with a reason
    naming it (its own reason if it declares it); its watches poll."""
    async with open_store(factory_of(DictBackend())) as polling:
        assert not polling.offers_event_watch
        reason = polling.capabilities[Capability.EVENT_NOTIFICATIONS]
        assert "event_watch" in reason, reason
        assert polling.backend_name in reason, reason
        assert polling.watched_sessions is None
        async with polling.watch_events("s", poll_interval=0.01) as watch:
            assert await watch.wait(10.0)  # a poll: "may have changed"
    backend = declaring({"event_notifications": "files cannot tell"})
    async with open_store(factory_of(backend)) as store:
        assert store.capabilities == {Capability.EVENT_NOTIFICATIONS: "files cannot tell"}
    async with open_store("memory") as memory:
        assert memory.offers_event_watch
        assert Capability.EVENT_NOTIFICATIONS not in memory.capabilities
        with pytest.raises(ConfigurationError, match="poll_interval"):
            async with memory.watch_events("s", poll_interval=0):
                pass


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(BackendLoadError) as info:
        open_store(factory_of(declaring({"teleportation": "not yet"})))
    assert "'teleportation'" in str(info.value)
    assert "atomic_batch_update" in str(info.value)  # lists the known ones


def test_capabilities_that_are_not_a_mapping_are_refused() -> None:
    with pytest.raises(BackendLoadError, match="store_capabilities"):
        open_store(factory_of(declaring(["atomic_batch_update"])))


class AsyncCapabilities(DictBackend):
    @hookimpl
    async def store_capabilities(self) -> Mapping[str, str]:
        return {}


def test_async_store_capabilities_is_refused() -> None:
    with pytest.raises(BackendLoadError, match="store_capabilities must be a plain def"):
        open_store(factory_of(AsyncCapabilities()))


# -- options --------------------------------------------------------------------------------


def test_option_the_factory_does_not_accept(fake_db: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store("fakedb", colour="red", size=2)
    message = str(info.value)
    assert "'colour'" in message
    assert "'size'" in message
    assert "region" in message
    assert "pool_size" in message
    assert "namespace" not in message.split("accepts:")[1]
    with pytest.raises(ConfigurationError, match=r"'bogus'.*accepts: max_sessions"):
        open_store("memory", bogus=1)
    assert fake_db() == []  # the factory was never called


def test_factory_without_options_says_so() -> None:
    with pytest.raises(ConfigurationError, match="accepts: no options"):
        open_store(factory_of(DictBackend()), pool=3)


@pytest.mark.parametrize(
    "namespace", ["", "-lead", ".dot", "has space", "a:b", "a/b", "ünï", "x" * 65, "a\n", 7, None]
)
def test_bad_namespace(namespace: object) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        open_store("memory", namespace=namespace)  # type: ignore[arg-type]


@pytest.mark.parametrize("namespace", ["a", "A-b_c.d", "9", "x" * 64])
async def test_good_namespace(namespace: str) -> None:
    async with open_store("memory", namespace=namespace) as store:
        assert store.namespace == namespace
        assert f"namespace={namespace!r}" in repr(store)


@pytest.mark.parametrize(
    "ttl",
    [
        0,
        -1,
        0.0,
        float("nan"),
        float("inf"),
        timedelta(0),
        timedelta(seconds=-5),
        True,
        "60",
        [],
        1e30,  # a deadline no backend holds (SQLite overflowed on it)
        MAX_TTL_SECONDS + 1,
        timedelta(days=365 * 101),
    ],
)
def test_bad_ttl(ttl: object) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        open_store("memory", ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (60, timedelta(seconds=60)),
        (1.5, timedelta(milliseconds=1500)),
        (timedelta(minutes=2), timedelta(minutes=2)),
        (0.0001, timedelta(milliseconds=1)),  # kept to the millisecond, never 0
        (MAX_TTL_SECONDS, timedelta(seconds=MAX_TTL_SECONDS)),
        (None, None),
    ],
)
def test_good_ttl(ttl: Any, expected: timedelta | None) -> None:
    assert open_store("memory", ttl=ttl).ttl == expected


@pytest.mark.parametrize("option", ["event_retention", "page_size", "modify_attempts"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10", None])
def test_bad_counts(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        open_store("memory", **{option: value})


def test_bad_clock_and_spec() -> None:
    with pytest.raises(ConfigurationError, match="clock"):
        open_store("memory", clock=12.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be a str, not int"):
        open_store(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="neither a backend name nor a URL"):
        open_store("not a spec")


def test_backend_option_errors_pass_through_unchanged() -> None:
    with pytest.raises(ConfigurationError, match="max_sessions must be an int >= 1"):
        open_store("memory", max_sessions=0)


# -- a factory passed directly --------------------------------------------------------------


async def test_factory_passed_directly() -> None:
    backends: list[DictBackend] = []
    seen: list[tuple[str, str]] = []

    def make_backend(spec: str, *, namespace: str) -> DictBackend:
        seen.append((spec, namespace))
        backends.append(DictBackend())
        return backends[-1]

    async with open_store(make_backend, namespace="ns") as store:
        assert store.backend_name == make_backend.__qualname__
        await store.create_session(Session(id="direct", transport="http"))
        assert "direct" in backends[0].records
    assert seen == [(f"{__name__}:{make_backend.__qualname__}", "ns")]
    assert backends[0].closed == 1


def test_factory_raising_a_raw_exception_is_a_backend_error() -> None:
    def unreachable(spec: str, *, namespace: str) -> object:
        raise OSError("connection refused")

    with pytest.raises(BackendError) as info:
        open_store(unreachable)
    assert (info.value.hook, info.value.backend) == ("factory", unreachable.__qualname__)
    assert isinstance(info.value.__cause__, OSError)
    assert "connection refused" in str(info.value)


def test_factory_raising_a_store_error_passes_it_through() -> None:
    def down(spec: str, *, namespace: str) -> object:
        raise StoreUnavailableError("server is down")

    with pytest.raises(StoreUnavailableError, match="server is down"):
        open_store(down)


# -- raw exceptions from hooks --------------------------------------------------------------


class Faulty(DictBackend):
    @hookimpl
    async def session_get(self, session_id: str, now_ms: int) -> SessionRecord | None:
        raise KeyError(session_id)

    @hookimpl
    async def session_count(self, now_ms: int) -> int:
        raise OSError("disk on fire")

    @hookimpl
    async def session_purge_expired(self, now_ms: int) -> int:
        return "lots"  # type: ignore[return-value]

    @hookimpl
    async def session_delete(self, session_id: str, now_ms: int) -> bool:
        raise StoreUnavailableError("timed out")

    @hookimpl
    async def store_close(self) -> None:
        raise RuntimeError("close failed")


@pytest.mark.parametrize("middleware", [(), (OperationMiddleware(),)], ids=["direct", "pluggy"])
async def test_raw_hook_exceptions_become_backend_errors(middleware: tuple[object, ...]) -> None:
    factory = factory_of(Faulty())
    store = open_store(factory, middleware=middleware)
    cases = [
        (store.get_session("k1"), "session_get", KeyError),
        (store.count_sessions(), "session_count", OSError),
        (store.purge_expired(), "session_purge_expired", TypeError),
        (store.modify_session("k1", lambda s: None), "session_get", KeyError),
    ]
    for call, hook, cause in cases:
        with pytest.raises(BackendError) as info:
            await call
        assert (info.value.backend, info.value.hook) == (factory.__qualname__, hook)
        assert isinstance(info.value.__cause__, cause)
        assert f"hook {hook!r}" in str(info.value)
        assert cause.__name__ in str(info.value)
    with pytest.raises(StoreUnavailableError, match="timed out"):
        await store.delete_session("k1")
    with pytest.raises(BackendError, match="close failed") as closing:
        await store.aclose()
    assert closing.value.hook == "store_close"
    with pytest.raises(StoreClosedError):
        await store.count_sessions()
    await store.aclose()  # already closed: nothing more happens


# -- the direct-call fast path --------------------------------------------------------------

MOMENT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def normalize(value: object) -> object:
    if isinstance(value, Session):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    return value


async def run_scenario(store: SessionStore, clock: list[float]) -> list[object]:
    """Every operation, including failing ones; returns what each gave."""
    results: list[object] = []

    async def step(call: Any) -> None:
        try:
            results.append(("ok", normalize(await call)))
        except SessionStoreError as exc:
            results.append(("error", type(exc).__name__, str(exc)))

    def new(session_id: str) -> Session:
        return Session(id=session_id, transport="http", created_at=MOMENT, last_activity=MOMENT)

    for session_id in ("b", "a", "c*"):
        await step(store.create_session(new(session_id)))
    await step(store.create_session(new("a")))
    await step(store.get_session("a"))
    await step(store.get_session("missing"))
    stale = await store.get_session("a")
    fresh = await store.get_session("a")
    fresh.metadata["n"] = 1
    await step(store.update_session(fresh))
    await step(store.update_session(stale))
    await step(store.update_session(new("missing")))
    await step(store.get_sessions_batch(["c*", "x", "a", "c*"]))
    b = await store.get_session("b")
    await step(store.update_sessions_batch([b, stale]))
    await step(store.update_sessions_batch([b, await store.get_session("a")]))
    await step(store.count_sessions())
    await step(store.list_sessions())
    await step(store.store_last_event_id("a", "ev-9"))
    await step(store.get_last_event_id("a"))
    await step(store.get_last_event_id("b"))
    await step(store.get_last_event_id("missing"))
    first = await store.append_event("a", "s1", b"one")
    await step(store.append_event("a", "s2", None))
    await step(store.append_event("a", "s1", b"two"))
    await step(store.replay_events_after(first))
    await step(store.replay_events_after(first, session_id="b"))
    await step(store.append_event("missing", "s1", b"x"))
    await step(store.modify_session("c*", lambda s: s.metadata.update(m=True)))
    await step(store.delete_session("b"))
    await step(store.delete_session("b"))
    clock[0] += 5
    await step(store.update_session(await store.get_session("a")))
    clock[0] += 6  # "c*" and "b"'s deadline passed, "a" was updated later
    await step(store.count_sessions())
    await step(store.get_session("c*"))
    await step(store.purge_expired())
    await step(store.list_sessions())
    await step(store.clear())
    await step(store.count_sessions())
    return results


class SubsetArguments(DictBackend):
    """Hooks that take fewer arguments than the spec offers, as pluggy allows."""

    @hookimpl
    async def session_count(self) -> int:  # type: ignore[override]
        return len(self.records)

    @hookimpl
    async def session_get(self, session_id: str) -> SessionRecord | None:  # type: ignore[override]
        return self.records.get(session_id)


@pytest.mark.parametrize(
    "make_spec",
    [lambda: "memory", lambda: factory_of(DictBackend()), lambda: factory_of(SubsetArguments())],
    ids=["memory", "dict", "subset-arguments"],
)
async def test_direct_calls_and_pluggy_calls_give_the_same_results(make_spec: Any) -> None:
    outcomes = []
    for middleware in ((), (OperationMiddleware(),)):
        clock = [1_700_000_000.0]
        async with open_store(
            make_spec(), ttl=10, clock=lambda c=clock: c[0], middleware=middleware
        ) as store:
            outcomes.append(await run_scenario(store, clock))
    direct, through_pluggy = outcomes
    assert direct == through_pluggy
    assert ("error", "SessionExistsError", "session already exists: 'a'") in direct
    assert any(r[0] == "error" and r[1] == "ConflictError" for r in direct)


def test_hook_dispatch_bypasses_pluggy_only_without_wrappers() -> None:
    backend, other = DictBackend(), DictBackend()
    direct = HookDispatch(bind_plugins(backend, "dict", []))
    wrapped = HookDispatch(bind_plugins(other, "dict", [OperationMiddleware()]))
    for hook in ASYNC_HOOKS:
        assert getattr(direct, hook) == getattr(backend, hook), hook  # the bound method itself
        assert getattr(wrapped, hook) != getattr(other, hook), hook  # through pluggy


async def test_subset_argument_hooks_receive_the_right_values() -> None:
    backend = SubsetArguments()
    async with open_store(factory_of(backend)) as store:
        await store.create_session(Session(id="only", transport="http"))
        assert (await store.get_session("only")).id == "only"
        assert await store.count_sessions() == 1
        with pytest.raises(SessionNotFoundError):
            await store.get_session("other")
