"""`durabletask-worker`: run an app module's orchestrators and activities as one member of a
versioned worker pool, with HTTP probes, until SIGTERM; then drain and exit 0."""

import logging
import os
import signal
import sys
import threading

from durabletask.security import BearerTokenInterceptor, TlsOptions
from durabletask.worker import ConcurrencyOptions, TaskHubGrpcWorker, VersioningOptions
from durabletask.worker_metrics import WorkerMetrics
from durabletask_worker.app import App, load_app
from durabletask_worker.config import ConfigError, RunnerConfig, parse_config
from durabletask_worker.probes import serve_probes

log = logging.getLogger("durabletask_worker")
CONFIG_ERROR_EXIT_CODE = 2


def tls_options(config: RunnerConfig) -> TlsOptions | None:
    if not (config.tls_ca or config.tls_cert):
        return None  # plain text, or TLS with the public roots when the address says grpcs://
    return TlsOptions(root_certificates_file=config.tls_ca, certificate_chain_file=config.tls_cert,
                      private_key_file=config.tls_key)


def build_worker(config: RunnerConfig, app: App) -> TaskHubGrpcWorker:
    n = config.concurrency
    # As many threads as work items, so that every item received starts at once (and a drain
    # finds no item waiting for a thread).
    worker = TaskHubGrpcWorker(host_address=config.address, concurrency_options=ConcurrencyOptions(
        maximum_concurrent_activity_work_items=n, maximum_concurrent_orchestration_work_items=n,
        maximum_thread_pool_workers=n), tls_options=tls_options(config),
        interceptors=[BearerTokenInterceptor(config.token_file)] if config.token_file else None)
    for orchestrator in app.orchestrators:
        worker.add_orchestrator(orchestrator)
    for activity in app.activities:
        worker.add_activity(activity)
    worker.use_versioning(VersioningOptions(config.version, config.default_version,
                                            config.match_strategy, config.failure_strategy))
    # Ask the hub only for our names (and, under Strict or CurrentOrOlder, our versions): the hub
    # then routes work before it is claimed, rather than this worker rejecting it afterwards.
    worker.use_work_item_filters()
    return worker


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv, os.environ)
        app = load_app(config.app)
    except ConfigError as error:
        print(f"durabletask-worker: {error}", file=sys.stderr)
        return CONFIG_ERROR_EXIT_CODE
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    worker = build_worker(config, app)
    metrics = WorkerMetrics(worker)
    worker.use_work_item_listener(metrics)
    probes = None
    if config.http_port:
        try:
            probes = serve_probes(config.http_port, lambda: worker.is_running, lambda: worker.is_connected,
                                  metrics.registry)
        except OSError as error:
            print(f"durabletask-worker: --http-port {config.http_port} cannot be served ({error.strerror}).",
                  file=sys.stderr)
            return CONFIG_ERROR_EXIT_CODE

    stop_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: stop_requested.set())
    worker.start()
    log.info("Running %s (%d orchestrators, %d activities) as version %s, match %s, on failure %s; probes on %s",
             app.module, len(app.orchestrators), len(app.activities), config.version or "(none)",
             config.match_strategy.name, config.failure_strategy.name,
             f"port {config.http_port}" if probes else "no port")
    # Wait in short steps: the signal may land on one of gRPC's threads, and Python runs its
    # handler only when the main thread next runs, which a wait without a timeout never does.
    while not stop_requested.wait(timeout=0.2):
        pass

    log.info("Stopping: draining for up to %gs", config.drain_seconds)
    worker.stop(grace_period=config.drain_seconds)
    if probes is not None:
        probes.shutdown()
    log.info("Drained; exiting")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Activities still running after the grace period were handed back to the hub, but their
    # threads cannot be interrupted, and the interpreter would wait for them on a normal exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
