"""OpenTelemetry spans and metrics for every store operation, as a middleware.

Needs the extra ``sessionstore[otel]`` (the OpenTelemetry API).

``OpenTelemetryMiddleware(tracer_provider=None, meter_provider=None)`` (the global providers when
``None``) reports, per the OpenTelemetry semantic conventions for database clients:

* a span per store operation (each hook of :data:`~sessionstore.middleware.ASYNC_HOOKS`), kind
  ``CLIENT``, named ``"{db.operation.name} {db.namespace}"`` (``"session_get default"``), with
  ``db.system.name``, ``db.namespace`` (the store's namespace), ``db.operation.name`` (the hook's
  name), ``db.operation.batch.size`` (``session_get_many`` and ``session_update_many`` of two or
  more sessions) and, when the operation raised, ``error.type`` and the status ``ERROR``;
* the histogram ``db.client.operation.duration`` in seconds, with the same attributes but the
  batch size, and the same duration as the span, with bucket boundaries from 5 microseconds
  (:data:`DURATION_BUCKETS`, given as the advisory ``explicit_bucket_boundaries_advisory``);
* ``sessionstore.conflicts``: compare-and-set writes refused with
  :class:`~sessionstore.ConflictError`;
* for a store opened with ``fallback=``: ``sessionstore.fallback.circuits``, how many circuits are
  in each state (attribute ``sessionstore.fallback.state``: ``closed``, ``open``, ``half-open``),
  and ``sessionstore.fallback.reconciliations``, each session reconciled after an outage
  (attribute ``sessionstore.fallback.outcome``: ``reconciled`` or ``conflict``).

``db.system.name`` is the convention's well-known value for the backend where one exists
(``redis``, ``sqlite``, ``postgresql``), else the backend's name in lower case (``memory``).
``error.type`` is the exception's class name (``ConflictError``, ``StoreUnavailableError``...), the
exception the backend raised before the store wraps a foreign one in
:class:`~sessionstore.BackendError`. Session ids are never recorded, neither in metric attributes
nor in spans: a session id is a bearer credential in MCP, and the conventions make query parameter
values opt-in; exception messages (which name ids) are left out of the span status for the same
reason.

One object serves every store it is given to (``sibling()`` stores included), each with its own
namespace: create one per meter provider and share it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionstore.otel needs the OpenTelemetry API: pip install 'sessionstore[otel]'"
    ) from exc

from . import __version__
from .errors import ConflictError
from .fallback import FallbackMiddleware, ReconcileOutcome
from .hookspecs import hookimpl
from .middleware import ASYNC_HOOKS

__all__ = ["DURATION_BUCKETS", "INSTRUMENTATION_SCOPE", "OpenTelemetryMiddleware", "db_system_name"]

INSTRUMENTATION_SCOPE = "sessionstore"
"""The name of the tracer and the meter (``otel_scope_name`` in Prometheus)."""

DURATION_BUCKETS: tuple[float, ...] = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Bucket boundaries of ``db.client.operation.duration``, in seconds: the conventions' advisory
boundaries (1 ms to 10 s) and finer ones below, since an in-process or SQLite operation takes
microseconds."""

CIRCUIT_STATES = ("closed", "open", "half-open")

# The attribute names of the conventions (opentelemetry-semantic-conventions is not a dependency
# of the API, so they are spelled here; the tests compare them with that package).
DB_SYSTEM_NAME = "db.system.name"
DB_NAMESPACE = "db.namespace"
DB_OPERATION_NAME = "db.operation.name"
DB_OPERATION_BATCH_SIZE = "db.operation.batch.size"
ERROR_TYPE = "error.type"
FALLBACK_STATE = "sessionstore.fallback.state"
FALLBACK_OUTCOME = "sessionstore.fallback.outcome"

_DB_SYSTEMS = {
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
}


def db_system_name(backend_name: str) -> str:
    """The ``db.system.name`` of a backend: the conventions' well-known value for it where one
    exists (``redis``, ``sqlite``, ``postgresql``), else its name in lower case."""
    return _DB_SYSTEMS.get(backend_name, backend_name.lower())


class OpenTelemetryMiddleware:
    """Report every store operation to OpenTelemetry (see :mod:`sessionstore.otel`).

    Give it to stores as any middleware: ``open_store(..., middleware=[otel])`` or
    ``store.add_middleware(otel)``. ``tracer_provider`` and ``meter_provider`` default to the
    global ones (``opentelemetry.trace.set_tracer_provider``...), which may be set later: the
    API's proxies forward to them once they are. The instruments are created here, once: use one
    object per meter provider.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(INSTRUMENTATION_SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_SCOPE, __version__, meter_provider)
        self._duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._conflicts = meter.create_counter(
            "sessionstore.conflicts",
            unit="{conflict}",
            description="Compare-and-set writes refused because a stored version differed.",
        )
        self._reconciliations = meter.create_counter(
            "sessionstore.fallback.reconciliations",
            unit="{session}",
            description="Sessions served by the fallback during an outage and then reconciled "
            "with the primary, by outcome.",
        )
        meter.create_observable_up_down_counter(
            "sessionstore.fallback.circuits",
            callbacks=[self._observe_circuits],
            unit="{circuit}",
            description="Fallback circuits in each state.",
        )
        # The stores with a fallback, while open. Read by the meter's collection, which may run in
        # another thread (a periodic reader, a Prometheus scrape): hence the lock.
        self._lock = threading.Lock()
        self._watched: weakref.WeakSet[_StoreTelemetry] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<OpenTelemetryMiddleware scope={INSTRUMENTATION_SCOPE!r}>"

    def bind_store(self, *, backend_name: str, namespace: str) -> _StoreTelemetry:
        """The plugin a store of ``backend_name`` in ``namespace`` registers (see
        :func:`sessionstore.middleware.bound_middleware`)."""
        return _StoreTelemetry(self, backend_name, namespace)

    def _watch(self, telemetry: _StoreTelemetry) -> None:
        with self._lock:
            self._watched.add(telemetry)

    def _unwatch(self, telemetry: _StoreTelemetry) -> None:
        with self._lock:
            self._watched.discard(telemetry)

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            watched = list(self._watched)
        # Stores with the same backend and namespace add up: one observation per attribute set.
        counts: dict[tuple[str, str, str], int] = {}
        for telemetry in watched:
            fallback = telemetry.fallback
            if fallback is None:
                continue
            current = fallback.state
            system, namespace = telemetry.base_attributes.values()
            for state in CIRCUIT_STATES:
                key = (system, namespace, state)
                counts[key] = counts.get(key, 0) + (state == current)
        return [
            Observation(
                count, {DB_SYSTEM_NAME: system, DB_NAMESPACE: namespace, FALLBACK_STATE: state}
            )
            for (system, namespace, state), count in counts.items()
        ]


class _StoreTelemetry:
    """What one store registers: a wrapper around each of its operations, reporting to the
    instruments of ``owner`` with this store's backend and namespace."""

    def __init__(self, owner: OpenTelemetryMiddleware, backend_name: str, namespace: str) -> None:
        self._owner = owner
        self.base_attributes: Mapping[str, str] = {
            DB_SYSTEM_NAME: db_system_name(backend_name),
            DB_NAMESPACE: namespace,
        }
        # Built once: the span name and the attributes of each operation (never a session id).
        self._operations = {
            operation: (
                f"{operation} {namespace}",
                {**self.base_attributes, DB_OPERATION_NAME: operation},
            )
            for operation in ASYNC_HOOKS
        }
        self.fallback: FallbackMiddleware | None = None

    def __repr__(self) -> str:
        system, namespace = self.base_attributes.values()
        return f"<OpenTelemetryMiddleware for {system} namespace={namespace!r}>"

    def observe_fallback(self, fallback: FallbackMiddleware) -> None:
        """Report ``fallback``'s circuit state and reconciliations (the store calls this)."""
        self.fallback = fallback
        fallback.add_observer(self._reconciled)
        self._owner._watch(self)

    def _reconciled(self, outcome: ReconcileOutcome) -> None:
        self._owner._reconciliations.add(1, {**self.base_attributes, FALLBACK_OUTCOME: outcome})

    # -- the hooks (see the loop below the class for the others) ------------------------------

    @hookimpl(wrapper=True)
    def session_get_many(self, session_ids: Sequence[str]) -> Generator[None, Any, Any]:
        return (yield from self._observe("session_get_many", len(session_ids)))

    @hookimpl(wrapper=True)
    def session_update_many(self, records: Sequence[object]) -> Generator[None, Any, Any]:
        return (yield from self._observe("session_update_many", len(records)))

    @hookimpl(wrapper=True)
    def store_close(self) -> Generator[None, Any, Any]:
        if self.fallback is not None:
            self.fallback.remove_observer(self._reconciled)
            self._owner._unwatch(self)
        return (yield from self._observe("store_close", 0))

    def _observe(self, operation: str, batch_size: int) -> Generator[None, Any, Any]:
        """The body of every wrapper: time from before the inner hooks run (a backend of plain
        ``def`` hooks does its work then, not when its result is awaited)."""
        start_time = time.time_ns()
        started = time.perf_counter_ns()
        try:
            inner = yield
        except Exception as exc:  # a middleware inside this one raised instead of returning
            span = self._start(operation, batch_size, start_time)
            self._end(span, operation, start_time, started, exc)
            raise
        return self._traced(operation, batch_size, start_time, started, inner)

    async def _traced(
        self, operation: str, batch_size: int, start_time: int, started: int, inner: Any
    ) -> Any:
        span = self._start(operation, batch_size, start_time)
        # Current while the backend works: spans it or its driver starts are its children (and
        # follow its sampling decision). A no-op provider's span has nothing to pass on.
        token = (
            context.attach(trace.set_span_in_context(span))
            if span.get_span_context().is_valid
            else None
        )
        try:
            result = await inner
        except BaseException as exc:  # cancelled too: the operation ended without an answer
            self._end(span, operation, start_time, started, exc)
            raise
        finally:
            if token is not None:
                context.detach(token)
        self._end(span, operation, start_time, started, None)
        return result

    def _start(self, operation: str, batch_size: int, start_time: int) -> trace.Span:
        name, attributes = self._operations[operation]
        if batch_size > 1:  # the conventions: a batch has two or more operations
            return self._owner._tracer.start_span(
                name,
                kind=SpanKind.CLIENT,
                attributes={**attributes, DB_OPERATION_BATCH_SIZE: batch_size},
                start_time=start_time,
            )
        return self._owner._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start_time
        )

    def _end(
        self,
        span: trace.Span,
        operation: str,
        start_time: int,
        started: int,
        error: BaseException | None,
    ) -> None:
        elapsed = time.perf_counter_ns() - started
        attributes = self._operations[operation][1]
        if error is not None:
            error_type = type(error).__qualname__
            span.set_attribute(ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR))  # no description: messages name sessions
            if isinstance(error, ConflictError):
                self._owner._conflicts.add(1, attributes)
            attributes = {**attributes, ERROR_TYPE: error_type}
        # The span's duration and the histogram's value are the same measurement.
        span.end(end_time=start_time + elapsed)
        self._owner._duration.record(elapsed / 1e9, attributes)


def _wrapper(operation: str) -> Callable[..., Generator[None, Any, Any]]:
    def wrap(self: _StoreTelemetry) -> Generator[None, Any, Any]:
        return (yield from self._observe(operation, 0))

    wrap.__name__ = wrap.__qualname__ = operation
    return hookimpl(wrapper=True)(wrap)


for _operation in ASYNC_HOOKS:
    if _operation not in vars(_StoreTelemetry):
        setattr(_StoreTelemetry, _operation, _wrapper(_operation))
