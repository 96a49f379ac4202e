"""Prometheus metrics, read from the store's per-(name, version, status) counts at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from durabletask.server.stores.base import Store, status_name


class OrchestrationCountCollector:
    """`durabletask_orchestrations{name,version,status}`: one cheap read of the count table per scrape."""

    def __init__(self, store: Store):
        self._store = store

    def collect(self):
        gauge = GaugeMetricFamily("durabletask_orchestrations",
                                  "Orchestration instances in the task hub, by name, version and status.",
                                  labels=["name", "version", "status"])
        for name, version, status, count in self._store.instance_counts():
            gauge.add_metric([name, version, status_name(status)], count)
        yield gauge


def serve_metrics(store: Store, host: str, port: int):
    """Serve /metrics on host:port from a background thread; returns the HTTP server."""
    registry = CollectorRegistry()
    registry.register(OrchestrationCountCollector(store))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server
