"""sessionstore.otel: spans and metrics of every store operation, read back through the
OpenTelemetry SDK's InMemorySpanExporter and InMemoryMetricReader (nothing mocked).

Stores run on the memory backend, on SQLite files, and on the fallback testkit's switchable
primary for the fallback's circuit and reconciliations. The Prometheus example
(examples/otel_prometheus.py) runs as a subprocess and is scraped over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from core_testkit import factory_of, redis_servers
from fallback_testkit import WAIT, FakeClock, FlakyBackend, breaker, new, recover, with_fallback
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes.db_attributes import DbSystemNameValues
from opentelemetry.semconv.attributes import db_attributes, error_attributes
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION
from opentelemetry.trace import SpanKind, StatusCode

from sessionstore import (
    ConflictError,
    SessionNotFoundError,
    StoreUnavailableError,
    hookimpl,
    open_store,
)
from sessionstore import otel as otel_module
from sessionstore.otel import DURATION_BUCKETS, OpenTelemetryMiddleware, db_system_name
from sessionstore_contract import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
SECRET_ID = "secret-session-id-7f3a9c"  # must never appear in telemetry
CONVENTION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)


@dataclass
class Telemetry:
    """An OpenTelemetryMiddleware on SDK providers whose output the test reads back."""

    middleware: OpenTelemetryMiddleware
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """Every data point of metric ``name`` collected now."""
        found: list[Any] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def values(self, name: str, *keys: str) -> dict[tuple[Any, ...], Any]:
        """``{(attribute values of keys...): value}`` of a counter or gauge."""
        return {
            tuple(point.attributes.get(k) for k in keys): point.value for point in self.points(name)
        }

    def metrics_by_name(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        return {
            metric.name: metric
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(
        OpenTelemetryMiddleware(tracer_provider, meter_provider), spans, reader, tracer_provider
    )
    meter_provider.shutdown()
    tracer_provider.shutdown()


# -- spans ------------------------------------------------------------------------------------


async def test_a_span_per_operation_named_and_attributed_by_the_conventions(
    telemetry: Telemetry,
) -> None:
    async with open_store("memory", namespace="tenant-a", middleware=[telemetry.middleware]) as s:
        session = await s.create_session(new(SECRET_ID))
        await s.get_session(SECRET_ID)
        await s.update_session(session)
        await s.get_sessions_batch([SECRET_ID, "other"])
        await s.delete_session(SECRET_ID)
    spans = telemetry.finished()
    assert [span.name for span in spans] == [
        "session_create tenant-a",
        "session_get tenant-a",
        "session_update tenant-a",
        "session_get_many tenant-a",
        "session_delete tenant-a",
        "store_close tenant-a",
    ]
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "sessionstore"
        operation = span.name.split()[0]
        expected: dict[str, Any] = {
            "db.system.name": "memory",
            "db.namespace": "tenant-a",
            "db.operation.name": operation,
        }
        if operation == "session_get_many":
            expected["db.operation.batch.size"] = 2
        assert dict(span.attributes or {}) == expected


def test_attribute_and_metric_names_are_the_conventions_own() -> None:
    assert otel_module.DB_SYSTEM_NAME == db_attributes.DB_SYSTEM_NAME
    assert otel_module.DB_NAMESPACE == db_attributes.DB_NAMESPACE
    assert otel_module.DB_OPERATION_NAME == db_attributes.DB_OPERATION_NAME
    assert otel_module.DB_OPERATION_BATCH_SIZE == db_attributes.DB_OPERATION_BATCH_SIZE
    assert otel_module.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert DB_CLIENT_OPERATION_DURATION == "db.client.operation.duration"
    for backend, value in [
        ("redis", DbSystemNameValues.REDIS),
        ("rediss+cluster", DbSystemNameValues.REDIS),
        ("sqlite", DbSystemNameValues.SQLITE),
        ("postgres", DbSystemNameValues.POSTGRESQL),
        ("postgresql", DbSystemNameValues.POSTGRESQL),
    ]:
        assert db_system_name(backend) == value.value
    assert db_system_name("memory") == "memory"
    assert db_system_name("MyDB") == "mydb"  # the conventions: custom values in lower case


async def test_sqlite_stores_report_sqlite(telemetry: Telemetry, tmp_path: Path) -> None:
    spec = f"sqlite:///{tmp_path / 'otel.db'}"
    async with open_store(spec, middleware=[telemetry.middleware]) as store:
        await store.create_session(new("s"))
        await store.get_session("s")
    systems = {(span.attributes or {}).get("db.system.name") for span in telemetry.finished()}
    assert systems == {"sqlite"}
    points = telemetry.points("db.client.operation.duration")
    assert {p.attributes["db.system.name"] for p in points} == {"sqlite"}


async def test_a_failed_operation_has_error_type_and_the_error_status(
    telemetry: Telemetry,
) -> None:
    primary = FlakyBackend()
    async with open_store(factory_of(primary), middleware=[telemetry.middleware]) as store:
        session = await store.create_session(new(SECRET_ID))
        await store.delete_session(SECRET_ID)
        with pytest.raises(SessionNotFoundError):
            await store.update_session(session)
        primary.down = True
        with pytest.raises(StoreUnavailableError):
            await store.get_session(SECRET_ID)
        primary.down = False
    spans = {span.name.split()[0]: span for span in telemetry.finished()}
    for operation, error in [
        ("session_update", "SessionNotFoundError"),
        ("session_get", "StoreUnavailableError"),
    ]:
        span = spans[operation]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is None  # exception messages name sessions
        assert (span.attributes or {})["error.type"] == error
        assert not span.events  # the conventions: no exception events
    for operation in ("session_create", "session_delete"):
        assert spans[operation].status.status_code is StatusCode.UNSET
        assert "error.type" not in (spans[operation].attributes or {})
    by_error = {
        (p.attributes["db.operation.name"], p.attributes.get("error.type")): p.count
        for p in telemetry.points("db.client.operation.duration")
    }
    assert by_error[("session_update", "SessionNotFoundError")] == 1
    assert by_error[("session_get", "StoreUnavailableError")] == 1
    assert by_error[("session_create", None)] == 1


async def test_spans_of_the_backend_are_children_of_the_operation_span(
    telemetry: Telemetry,
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("a-driver")

    class TracedDriver(FlakyBackend):
        @hookimpl
        async def session_get(self, session_id: str, now_ms: int) -> Any:
            with tracer.start_as_current_span("GET"):
                return await super().session_get(session_id, now_ms)

    async with open_store(factory_of(TracedDriver()), middleware=[telemetry.middleware]) as store:
        await store.create_session(new("s"))
        await store.get_session("s")
    spans = {span.name.split()[0]: span for span in telemetry.finished()}
    driver, operation = spans["GET"], spans["session_get"]
    assert driver.parent is not None
    assert driver.parent.span_id == operation.context.span_id
    assert driver.context.trace_id == operation.context.trace_id


# -- the duration histogram --------------------------------------------------------------------


async def test_durations_are_seconds_equal_to_the_spans_with_sub_millisecond_buckets(
    telemetry: Telemetry,
) -> None:
    async with open_store("memory", middleware=[telemetry.middleware]) as store:
        for n in range(20):
            await store.create_session(new(f"s{n}"))
            await store.get_session(f"s{n}")
    metric = telemetry.metrics_by_name()["db.client.operation.duration"]
    assert metric.unit == "s"
    points: list[Any] = list(metric.data.data_points)
    for point in points:
        assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert min(DURATION_BUCKETS) <= 0.00001  # resolves operations of microseconds
    assert set(CONVENTION_BUCKETS) <= set(DURATION_BUCKETS)  # and keeps the conventions' own
    spans = telemetry.finished()
    for point in points:
        operation = point.attributes["db.operation.name"]
        durations = [
            (span.end_time or 0) - (span.start_time or 0)
            for span in spans
            if span.name.split()[0] == operation
        ]
        assert point.count == len(durations)
        assert point.sum == pytest.approx(sum(durations) / 1e9, rel=1e-9, abs=1e-12)
    gets = next(p for p in points if p.attributes["db.operation.name"] == "session_get")
    assert gets.count == 20


async def test_the_duration_covers_work_done_when_the_hook_is_called(
    telemetry: Telemetry,
) -> None:
    """A backend of plain ``def`` hooks (memory) does its work when pluggy calls the hook, before
    any coroutine is awaited: the timing must start before that."""
    pause = 0.02

    class WorkAtCall:  # a middleware inside the telemetry one, working at call time
        @hookimpl(wrapper=True)
        def session_get(self) -> Any:
            time.sleep(pause)  # stands for a plain-def backend's synchronous work
            return (yield)

    async with open_store("memory", middleware=[WorkAtCall(), telemetry.middleware]) as store:
        await store.create_session(new("s"))
        await store.get_session("s")
    [point] = [
        p
        for p in telemetry.points("db.client.operation.duration")
        if p.attributes["db.operation.name"] == "session_get"
    ]
    assert point.sum >= pause  # a lower bound sleep guarantees; no speed is asserted


# -- counters ----------------------------------------------------------------------------------


async def test_compare_and_set_conflicts_are_counted(telemetry: Telemetry) -> None:
    async with open_store("memory", namespace="ns", middleware=[telemetry.middleware]) as store:
        a = await store.create_session(new("a"))
        b = await store.create_session(new("b"))
        stale_a = await store.get_session("a")
        await store.update_session(a)
        for _ in range(2):
            with pytest.raises(ConflictError):
                await store.update_session(stale_a)
        stale_b = await store.get_session("b")
        await store.update_session(b)
        with pytest.raises(ConflictError):
            await store.update_sessions_batch([stale_b])
        with pytest.raises(SessionNotFoundError):  # a failure, not a conflict
            await store.update_session(new("missing"))
    counted = telemetry.values(
        "sessionstore.conflicts", "db.operation.name", "db.namespace", "db.system.name"
    )
    assert counted == {
        ("session_update", "ns", "memory"): 2,
        ("session_update_many", "ns", "memory"): 1,
    }


async def test_the_fallback_state_and_its_reconciliations_are_reported(
    telemetry: Telemetry,
) -> None:
    primary, clock = FlakyBackend(), FakeClock()
    other = open_store(factory_of(primary))  # another instance, which still reaches the primary

    def circuits() -> dict[str, int]:
        return {
            state: value
            for (state,), value in telemetry.values(
                "sessionstore.fallback.circuits", "sessionstore.fallback.state"
            ).items()
        }

    def reconciliations() -> dict[str, int]:
        return {
            outcome: value
            for (outcome,), value in telemetry.values(
                "sessionstore.fallback.reconciliations", "sessionstore.fallback.outcome"
            ).items()
        }

    async with with_fallback(primary, clock, failures=1) as store:
        store.add_middleware(telemetry.middleware)
        assert circuits() == {"closed": 1, "open": 0, "half-open": 0}
        mine = await store.create_session(new("mine"))
        theirs = await store.create_session(new("theirs"))
        primary.down = True
        await store.update_session(mine)  # opens the circuit: served by the fallback
        await store.update_session(theirs)
        assert breaker(store).state == "open"
        assert circuits() == {"closed": 0, "open": 1, "half-open": 0}
        primary.down = False
        await other.modify_session("theirs", lambda s: s.metadata.update(other=1))
        await recover(store, primary, clock)
        assert circuits() == {"closed": 1, "open": 0, "half-open": 0}
        assert reconciliations() == {"reconciled": 1, "conflict": 1}
        for point in telemetry.points("sessionstore.fallback.circuits"):
            assert set(point.attributes) == {
                "db.system.name",
                "db.namespace",
                "sessionstore.fallback.state",
            }
    assert circuits() == {}  # a closed store is no longer observed
    await other.aclose()


async def test_fallback_observers_hear_each_outcome_and_their_errors_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary, clock = FlakyBackend(), FakeClock()
    heard: list[str] = []

    def broken(outcome: str) -> None:
        raise RuntimeError("observer bug")

    async with with_fallback(primary, clock, failures=1) as store:
        fallback = breaker(store)
        fallback.add_observer(broken)
        fallback.add_observer(heard.append)
        session = await store.create_session(new("a"))
        primary.down = True
        session = await store.update_session(session)
        await recover(store, primary, clock)
        assert heard == ["reconciled"]
        fallback.remove_observer(heard.append)
        fallback.remove_observer(heard.append)  # not an error
        primary.down = True
        await store.update_session(session)
        await recover(store, primary, clock)
        assert heard == ["reconciled"]
    assert "observer bug" in caplog.text


async def test_stores_and_siblings_report_their_own_namespace(telemetry: Telemetry) -> None:
    async with (
        open_store(
            "memory://otel-siblings", namespace="one", middleware=[telemetry.middleware]
        ) as store,
        store.sibling("two") as sibling,
    ):
        await store.create_session(new("s"))
        await sibling.create_session(new("s"))
    creates = [span for span in telemetry.finished() if span.name.startswith("session_create")]
    assert sorted(span.name for span in creates) == ["session_create one", "session_create two"]
    namespaces = {
        p.attributes["db.namespace"]
        for p in telemetry.points("db.client.operation.duration")
        if p.attributes["db.operation.name"] == "session_create"
    }
    assert namespaces == {"one", "two"}


async def test_no_session_id_in_any_metric_attribute_nor_span(telemetry: Telemetry) -> None:
    primary, clock = FlakyBackend(), FakeClock()
    async with with_fallback(primary, clock, failures=1) as store:
        store.add_middleware(telemetry.middleware)
        session = await store.create_session(new(SECRET_ID))
        stale = await store.get_session(SECRET_ID)
        await store.update_session(session)
        with pytest.raises(ConflictError):
            await store.update_session(stale)
        await store.append_event(SECRET_ID, "stream", b"data")
        await store.get_sessions_batch([SECRET_ID, "x"])
        primary.down = True
        await store.update_session(session)  # the fallback serves it
        await recover(store, primary, clock)
        await store.delete_session(SECRET_ID)
        with pytest.raises(SessionNotFoundError):
            await store.update_session(session)
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    seen = 0
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    seen += 1
                    assert SECRET_ID not in repr(point.attributes), metric.name
    assert seen > 10
    spans = telemetry.finished()
    assert len(spans) > 10
    for span in spans:
        text = repr((span.name, dict(span.attributes or {}), span.status.description, span.events))
        assert SECRET_ID not in text


# -- next to redis-py's own metrics ------------------------------------------------------------

REDIS_SPLIT = """
import asyncio, json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.observability.config import MetricGroup, OTelConfig
from redis.observability.providers import get_observability_instance
from sessionstore import Session, TransportType, open_store
from sessionstore.otel import OpenTelemetryMiddleware

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # redis-py reads the global
get_observability_instance().init(OTelConfig(metric_groups=list(MetricGroup)))

async def main():
    otel = OpenTelemetryMiddleware()
    async with open_store(sys.argv[1], namespace="split", middleware=[otel]) as store:
        session = await store.create_session(Session(transport=TransportType.HTTP))
        await store.get_session(session.id)
        await store.update_session(session)
        await store.count_sessions()

asyncio.run(main())
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                print(json.dumps([scope.scope.name, metric.name, dict(point.attributes)]))
"""


def test_on_redis_it_adds_operations_to_what_redis_py_reports() -> None:
    """With redis-py's own OpenTelemetry metrics on (every group), the store's operations come
    from the sessionstore scope only, as ``db.system.name="redis"``; redis-py's scope reports its
    own instruments (connections), never a series of the store's operations."""
    servers = redis_servers()
    if servers.redis_server_binary() is None:
        skip_or_fail("redis-server not found on PATH: install it to run this test")
    with servers.RedisServer() as server:
        done = subprocess.run(
            [sys.executable, "-c", REDIS_SPLIT, server.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    ours = [(name, attributes) for scope, name, attributes in rows if scope == "sessionstore"]
    theirs = [(name, attributes) for scope, name, attributes in rows if scope == "redis-py"]
    assert theirs, "redis-py reported nothing: its instrumentation is not on"
    operations = {a["db.operation.name"] for n, a in ours if n == "db.client.operation.duration"}
    assert {"session_create", "session_get", "session_update", "session_count"} <= operations
    assert {a["db.system.name"] for _, a in ours} == {"redis"}
    assert {n for n, _ in ours}.isdisjoint(
        n for n, _ in theirs if n != "db.client.operation.duration"
    )
    their_operations = {a.get("db.operation.name") for n, a in theirs}
    assert operations.isdisjoint(their_operations)


# -- without OpenTelemetry ---------------------------------------------------------------------


def test_without_opentelemetry_the_import_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if it were not installed\n"
        "try:\n"
        "    import sessionstore.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'sessionstore[otel]'" in done.stdout, done.stdout + done.stderr


# -- the Prometheus example --------------------------------------------------------------------


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """The next line the example prints, waiting at most until ``deadline``."""
    assert process.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        lines.append(await asyncio.to_thread(process.stdout.readline))

    asyncio.run(asyncio.wait_for(read(), max(0.1, deadline - time.monotonic())))
    if not lines[0]:
        raise AssertionError(f"the example exited with {process.wait()} before printing")
    return lines[0]


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=WAIT) as reply:
        body: bytes = reply.read()
    return body.decode()


def test_the_prometheus_example_serves_the_duration_buckets() -> None:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "otel_prometheus.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        first = _read_line(process, deadline)
        match = re.fullmatch(r"serving (http://127\.0\.0\.1:\d+/metrics)\n", first)
        assert match, first
        assert _read_line(process, deadline).startswith("workload done")
        text = _scrape(match[1])
    finally:
        process.terminate()
        process.communicate(timeout=WAIT)
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith("db_client_operation_duration_seconds_bucket{")
    ]
    assert any(
        'db_operation_name="session_get"' in line and 'le="5e-06"' in line for line in buckets
    )
    assert any('otel_scope_name="sessionstore"' in line for line in buckets)
    assert re.search(
        r'^sessionstore_conflicts_total\{[^}]*db_operation_name="session_update"[^}]*\} 1\.0$',
        text,
        re.M,
    ), text
