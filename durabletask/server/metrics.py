"""The task hub's Prometheus metrics. Gauges of instances and backlog are read from the store's
counts at scrape time (so they are exact after a restart); the counters and histograms of work
moving through the hub are kept by this process as the dispatcher and the service see it happen."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from durabletask.server.stores.base import CommitNotice, Store, status_name
from durabletask.server.tls import ServerTls

ORCHESTRATION = "orchestration"
ACTIVITY = "activity"

# Orchestrations run from milliseconds to days; work items should wait milliseconds.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, float("inf"))
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf"))


class StoreCountsCollector:
    """`durabletask_orchestrations` and `durabletask_work_items_pending`: two cheap reads of the
    store's counts per scrape."""

    def __init__(self, store: Store):
        self._store = store

    def collect(self):
        instances = GaugeMetricFamily("durabletask_orchestrations",
                                      "Orchestration instances in the task hub, by name, version and status.",
                                      labels=["name", "version", "status"])
        for name, version, status, count in self._store.instance_counts():
            instances.add_metric([name, version, status_name(status)], count)
        yield instances
        pending = GaugeMetricFamily("durabletask_work_items_pending",
                                    "Work items ready to run and waiting for a worker, by kind, name and version.",
                                    labels=["kind", "name", "version"])
        for kind, name, version, count in self._store.pending_counts():
            pending.add_metric([kind, name, version], count)
        yield pending


class HubMetrics:
    """Every metric of one task hub, in a registry of its own (so several hubs can share a process)."""

    def __init__(self, store: Store):
        self.registry = CollectorRegistry()
        self.registry.register(StoreCountsCollector(store))
        self.workers_connected = Gauge(
            "durabletask_workers_connected",
            "Open work item streams, by the newest orchestration version the worker asks for "
            "(its maxVersion or listed version; empty when it sends no versions).",
            ["version"], registry=self.registry)
        self.dispatched = Counter("durabletask_work_items_dispatched", "Work items sent to a worker.",
                                  ["kind"], registry=self.registry)
        self.completed = Counter("durabletask_work_items_completed", "Work item results a worker reported and "
                                 "the hub applied.", ["kind"], registry=self.registry)
        self.abandoned = Counter(
            "durabletask_work_items_abandoned",
            "Work items that went back to the queue: handed back by the worker (worker), held by a stream "
            "that closed (stream_closed), or whose lease ran out (lease_expired).",
            ["kind", "reason"], registry=self.registry)
        self.orchestration_duration = Histogram(
            "durabletask_orchestration_duration_seconds",
            "Time from an instance's creation to its completion, failure or termination.",
            ["name"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.work_item_latency = Histogram(
            "durabletask_work_item_latency_seconds", "Time a work item waited between becoming ready and "
            "being sent to a worker.", ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def on_commit(self, notice: CommitNotice) -> None:
        for name, seconds in notice.finished:
            self.orchestration_duration.labels(name).observe(seconds)


def serve_metrics(metrics: HubMetrics, host: str, port: int, tls: ServerTls | None = None):
    """Serve /metrics on host:port from a background thread, over HTTPS with the gRPC port's
    certificate when TLS is on (scrapers need no client certificate); returns the HTTP server."""
    certificate = {"certfile": tls.cert_file, "keyfile": tls.key_file} if tls else {}
    server, _ = start_http_server(port, addr=host, registry=metrics.registry, **certificate)
    return server
