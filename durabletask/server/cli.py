"""`durabletask-server`: run a task hub server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping

try:
    import uvloop
except ImportError:  # not built for Windows: asyncio's own event loop serves there
    uvloop = None

from durabletask.internal.token_file import TokenFile, parse_tokens
from durabletask.server.app import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_PAYLOAD_BYTES, TaskHubServer, log
from durabletask.server.stores import Store, StoreUrlError, open_store, safe_url
from durabletask.server.tls import ServerTls, TlsConfigError, check_server_tls

DEFAULT_STORE_FILE = "durabletask-hub.db"
TOKEN_ENV = "DURABLETASK_AUTH_TOKEN"


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
    tls = parser.add_argument_group("TLS (off unless --tls-cert and --tls-key are given; /metrics then uses HTTPS)")
    tls.add_argument("--tls-cert", metavar="FILE", help="the server's PEM certificate (chain)")
    tls.add_argument("--tls-key", metavar="FILE", help="its PEM private key")
    tls.add_argument("--tls-client-ca", metavar="FILE",
                     help="require client certificates signed by this PEM CA (mutual TLS)")
    auth = parser.add_argument_group(f"bearer tokens (off unless --auth-token-file or {TOKEN_ENV} is set)")
    auth.add_argument("--auth-token-file", metavar="FILE",
                      help="accepted tokens, one per line; re-read when the file changes (rotation). "
                           f"Or set {TOKEN_ENV} to the token(s).")
    return parser.parse_args(argv)


class StartupError(Exception):
    pass


class ConfigError(ValueError):
    """A setting the server cannot start with."""


def accepted_tokens(token_file: str | None, environ: Mapping[str, str]) -> Callable[[], tuple[str, ...]] | None:
    """Where the accepted tokens come from (None: no authentication); raises ConfigError."""
    from_env = parse_tokens(environ.get(TOKEN_ENV, ""))
    if token_file and from_env:
        raise ConfigError(f"Give the accepted tokens in --auth-token-file or in {TOKEN_ENV}, not both.")
    if from_env:
        return lambda: from_env
    if not token_file:
        return None
    try:
        tokens = TokenFile(token_file)
    except OSError as error:
        raise ConfigError(f"--auth-token-file {token_file} cannot be read ({error.strerror}).") from None
    if not tokens.tokens():
        raise ConfigError(f"--auth-token-file {token_file} holds no token (one token per line).")
    return tokens.tokens


async def serve(server: TaskHubServer, store_url: str, security: str) -> None:
    try:
        await server.start()
    except (OSError, RuntimeError) as error:  # a port that is taken, an address we cannot bind
        await server.stop(grace=0)
        raise StartupError(f"Cannot listen on {server.host} (gRPC port {server.port}, metrics port "
                           f"{server.metrics_port}): {str(error).rstrip('.')}.") from None
    log.info("task hub listening on %s:%d (%s), state in %s", server.host, server.port, security,
             safe_url(store_url))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down")
    await server.stop()


def open_served_store(url: str) -> Store:
    """The store this server will serve: opened, and held against a second server where the store
    allows only one."""
    store = open_store(url)
    try:
        store.hold_exclusively()
    except StoreUrlError:
        store.close()
        raise
    return store


def describe_security(tls: ServerTls | None, tokens_required: bool) -> str:
    transport = "plaintext" if tls is None else "mutual TLS" if tls.client_ca_file else "TLS"
    return f"{transport}, bearer token required" if tokens_required else transport


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The event loop hands work to other threads and takes it back (gRPC's poller, the store's
    # readers, PostgreSQL's careful writer); a shorter GIL switch interval (default 5 ms) shortens the
    # wait at each hand-off.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store_url = args.store or f"sqlite:///{os.path.abspath(DEFAULT_STORE_FILE)}"
    try:
        tls = check_server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
        tokens = accepted_tokens(args.auth_token_file, os.environ)
        store = open_served_store(store_url)
    except (TlsConfigError, ConfigError, StoreUrlError) as error:
        print(f"durabletask-server: {error}", file=sys.stderr)
        return 2
    if tokens and not tls:
        log.warning("Bearer tokens are required but TLS is off: tokens cross the network in plain text.")
    server = TaskHubServer(store, args.host, args.port, lease_seconds=args.lease_seconds,
                           max_payload_bytes=args.max_payload_bytes, metrics_port=args.metrics_port,
                           tls=tls, accepted_tokens=tokens)
    # The server's time goes to event loop callbacks, and uvloop's cost less than asyncio's own loop:
    # each of the benchmark's workloads ran 4-9% faster on it (bench/README.md).
    run = asyncio.run if uvloop is None else uvloop.run
    try:
        run(serve(server, store_url, describe_security(tls, tokens is not None)))
    except StartupError as error:
        print(f"durabletask-server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
