"""`durabletask-server`: run a task hub server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from durabletask.server.app import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_PAYLOAD_BYTES, TaskHubServer, log
from durabletask.server.stores import StoreUrlError, open_store, safe_url

DEFAULT_STORE_FILE = "durabletask-hub.db"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="durabletask-server", description="Durable Task hub server (gRPC).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4001, help="gRPC port (default 4001)")
    parser.add_argument("--store", help=f"store URL: sqlite:///PATH/hub.db (default: ./{DEFAULT_STORE_FILE}) or "
                        "postgresql://USER@HOST:5432/DB[?synchronous_commit=off] (several replicas may share one)")
    parser.add_argument("--metrics-port", type=int, default=9464, help="Prometheus /metrics port; 0 turns it off")
    parser.add_argument("--lease-seconds", type=float, default=DEFAULT_LEASE_SECONDS,
                        help="how long a work item stays with a server that lost track of it (a crash) before "
                        "it returns to the queue; a worker that stops answering loses its work within about as long")
    parser.add_argument("--max-payload-bytes", type=int, default=DEFAULT_MAX_PAYLOAD_BYTES,
                        help="largest input, output or event payload accepted (default 4 MiB)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


class StartupError(Exception):
    pass


async def serve(server: TaskHubServer, store_url: str) -> None:
    try:
        await server.start()
    except (OSError, RuntimeError) as error:  # a port that is taken, an address we cannot bind
        await server.stop(grace=0)
        raise StartupError(f"Cannot listen on {server.host} (gRPC port {server.port}, metrics port "
                           f"{server.metrics_port}): {str(error).rstrip('.')}.") from None
    log.info("task hub listening on %s:%d, state in %s", server.host, server.port, safe_url(store_url))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down")
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The event loop and the store's writer thread hand work to each other at every step; a shorter
    # GIL switch interval (default 5 ms) shortens the wait at each hand-off.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store_url = args.store or f"sqlite:///{os.path.abspath(DEFAULT_STORE_FILE)}"
    try:
        store = open_store(store_url)
    except StoreUrlError as error:
        print(f"durabletask-server: {error}", file=sys.stderr)
        return 2
    server = TaskHubServer(store, args.host, args.port, lease_seconds=args.lease_seconds,
                           max_payload_bytes=args.max_payload_bytes, metrics_port=args.metrics_port)
    try:
        asyncio.run(serve(server, store_url))
    except StartupError as error:
        print(f"durabletask-server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
