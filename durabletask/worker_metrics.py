"""A worker's own Prometheus metrics, fed by its work item listener:

    metrics = WorkerMetrics(worker)
    worker.use_work_item_listener(metrics)
    server = metrics.serve(9465)  # /metrics on port 9465 until server.shutdown()

The `durabletask-worker` runner serves the same registry next to its probes.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from durabletask.worker import TaskHubGrpcWorker, WorkItemInfo, WorkItemListener, WorkItemOutcome


class WorkerMetrics(WorkItemListener):
    """Work items in flight, work items finished by outcome, activity durations, connectedness."""

    def __init__(self, worker: TaskHubGrpcWorker):
        self.registry = CollectorRegistry()
        self._in_flight = Gauge("durabletask_worker_work_items_in_flight",
                                "Work items this worker is running now.", ["kind"], registry=self.registry)
        self._finished = Counter("durabletask_worker_work_items",
                                 "Work items this worker finished, by how they ended: completed, failed, "
                                 "abandoned (handed back to the hub) or not_reported.",
                                 ["kind", "name", "version", "outcome"], registry=self.registry)
        self._activity_seconds = Histogram("durabletask_worker_activity_duration_seconds",
                                           "How long activities ran on this worker.", ["name"],
                                           registry=self.registry)
        connected = Gauge("durabletask_worker_connected",
                          "1 while the work item stream to the task hub is open, else 0.", registry=self.registry)
        connected.set_function(lambda: float(worker.is_connected))

    def serve(self, port: int, host: str = ""):
        """Serve /metrics on host:port (all interfaces by default) from a daemon thread; returns the
        HTTP server (call shutdown() to stop it). Raises OSError if the port cannot be bound."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server

    def work_item_started(self, item: WorkItemInfo) -> None:
        self._in_flight.labels(item.kind).inc()

    def work_item_finished(self, item: WorkItemInfo, outcome: WorkItemOutcome, seconds: float) -> None:
        self._in_flight.labels(item.kind).dec()
        self._finished.labels(item.kind, item.name, item.version, outcome.value).inc()
        if item.kind == "activity" and outcome in (WorkItemOutcome.COMPLETED, WorkItemOutcome.FAILED):
            self._activity_seconds.labels(item.name).observe(seconds)
