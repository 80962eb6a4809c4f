"""sessionstore's OpenTelemetry metrics, exported to Prometheus.

The OpenTelemetry SDK aggregates what :class:`sessionstore.otel.OpenTelemetryMiddleware` records;
the Prometheus exporter (``opentelemetry-exporter-prometheus``) serves it over HTTP with
``prometheus-client``, for Prometheus to scrape. Run it with::

    .venv/bin/python examples/otel_prometheus.py [--port 9464] [--spec sqlite:///build/otel.db]

then read http://127.0.0.1:9464/metrics: ``db_client_operation_duration_seconds_bucket`` (one
series per operation, bucket boundaries from 5 microseconds), ``sessionstore_conflicts_total``
and, for a store opened with a fallback, ``sessionstore_fallback_circuits``. It runs a small
workload once (sessions created, read, updated, one compare-and-set conflict) and serves until
interrupted (Ctrl-C). ``--port 0`` picks a free port; the first line printed names the address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import start_http_server

from sessionstore import ConflictError, Session, TransportType, open_store
from sessionstore.otel import OpenTelemetryMiddleware


async def workload(spec: str, otel: OpenTelemetryMiddleware, sessions: int) -> None:
    """Create, read and update ``sessions`` sessions, and make one update conflict."""
    async with open_store(spec, namespace="example", middleware=[otel]) as store:
        created = [
            await store.create_session(Session(transport=TransportType.HTTP))
            for _ in range(sessions)
        ]
        for session in created:
            await store.get_session(session.id)
            await store.update_session(session)
        stale = await store.get_session(created[0].id)
        await store.update_session(created[0])
        with contextlib.suppress(ConflictError):  # read before the update above: refused
            await store.update_session(stale)
        for session in created:
            await store.delete_session(session.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9464, help="HTTP port (%(default)s)")
    parser.add_argument("--spec", default="memory", help="the store (%(default)s)")
    parser.add_argument("--sessions", type=int, default=100, help="sessions (%(default)s)")
    args = parser.parse_args()

    # The reader is what the HTTP server reads; the resource names this service in target_info.
    reader = PrometheusMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "sessionstore-example"}),
    )
    server, thread = start_http_server(args.port, addr="127.0.0.1")
    print(f"serving http://127.0.0.1:{server.server_port}/metrics", flush=True)

    otel = OpenTelemetryMiddleware(meter_provider=provider)
    asyncio.run(workload(args.spec, otel, args.sessions))
    print("workload done; serving until interrupted", flush=True)
    try:
        thread.join()  # the server's thread runs until the process ends
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        provider.shutdown()


if __name__ == "__main__":
    main()
