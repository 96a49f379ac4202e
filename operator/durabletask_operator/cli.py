"""`durabletask-operator`: run the WorkerPool operator (kopf) with its instance-count source."""

from __future__ import annotations

import argparse
import functools
import os
import ssl
import sys

import kopf

from durabletask_operator import handlers
from durabletask_operator.metrics import SharedCounts, query_prometheus, scrape_hub


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="durabletask-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch WorkerPools in this namespace (repeatable; globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch WorkerPools in every namespace")
    parser.add_argument("--standalone", action="store_true",
                        help="run without kopf peering (no other operator instance coordinates with this one)")
    parser.add_argument("--prometheus-url", default=os.environ.get("DURABLETASK_PROMETHEUS_URL"),
                        help="Prometheus base URL to query for durabletask_orchestrations "
                             "(env DURABLETASK_PROMETHEUS_URL)")
    parser.add_argument("--hub-metrics-url", default=os.environ.get("DURABLETASK_HUB_METRICS_URL"),
                        help="the task hub server's /metrics URL, scraped when no Prometheus URL is given "
                             "(env DURABLETASK_HUB_METRICS_URL)")
    parser.add_argument("--metrics-ca-file", default=os.environ.get("DURABLETASK_METRICS_CA_FILE"),
                        help="PEM CA to trust when the Prometheus or /metrics URL is https:// with a private CA "
                             "(env DURABLETASK_METRICS_CA_FILE)")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("DURABLETASK_OPERATOR_INTERVAL", 15)),
                        help="seconds between checks of each pool (env DURABLETASK_OPERATOR_INTERVAL; default 15)")
    parser.add_argument("--verbose", action="store_true", help="log every API call and handler run")
    parser.add_argument("--liveness", metavar="URL",
                        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    args = parser.parse_args(argv)
    if not args.prometheus_url and not args.hub_metrics_url:
        parser.error("one of --prometheus-url or --hub-metrics-url is required: "
                     "without instance counts nothing could ever drain.")
    if not args.namespace and not args.all_namespaces:
        parser.error("choose the scope: --namespace NAME (repeatable) or --all-namespaces.")
    args.metrics_tls = None
    if args.metrics_ca_file:
        try:
            args.metrics_tls = ssl.create_default_context(cafile=args.metrics_ca_file)
        except (OSError, ssl.SSLError) as error:
            parser.error(f"--metrics-ca-file {args.metrics_ca_file} is not a readable PEM CA file "
                         f"({getattr(error, 'strerror', None) or error.reason}).")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prometheus_url:
        read = functools.partial(query_prometheus, args.prometheus_url, max_age=max(60.0, 4 * args.interval),
                                 tls=args.metrics_tls)
    else:
        read = functools.partial(scrape_hub, args.hub_metrics_url, tls=args.metrics_tls)
    kopf.configure(verbose=args.verbose)
    registry = kopf.OperatorRegistry()
    # Half an interval: every pool's tick in one round shares a read, and each round reads afresh.
    handlers.register(registry, SharedCounts(read, ttl=args.interval / 2), args.interval)
    kopf.run(registry=registry, standalone=args.standalone, clusterwide=args.all_namespaces,
             namespaces=args.namespace, liveness_endpoint=args.liveness)
    return 0


if __name__ == "__main__":
    sys.exit(main())
