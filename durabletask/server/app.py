"""A running task hub: the store, the dispatcher and the gRPC service (and metrics) wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.server.auth import BearerTokenAuth
from durabletask.server.dispatcher import Dispatcher
from durabletask.server.metrics import HubMetrics, serve_metrics
from durabletask.server.servicer import RefuseUndecodableRequests, StatusWatchers, TaskHubServicer
from durabletask.server.stores.base import CommitNotice, Store
from durabletask.server.tls import ServerTls

log = logging.getLogger("durabletask.server")

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
# Floor of the keepalive ping interval and timeout: a busy but live worker must not miss the deadline.
MIN_KEEPALIVE_SECONDS = 1.0


class TaskHubServer:
    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 4001, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 metrics_port: int = 0, tls: ServerTls | None = None,
                 accepted_tokens: Callable[[], tuple[str, ...]] | None = None):
        """`tls`: serve gRPC (and metrics) over TLS. `accepted_tokens`: require a bearer token on every
        call, one of those it returns at the time of the call."""
        self.store = store
        self.host = host
        self.port = port
        self._lease_seconds = lease_seconds
        self._max_payload = max_payload_bytes
        self.metrics_port = metrics_port
        self._tls = tls
        self._accepted_tokens = accepted_tokens
        self._metrics = None
        self._grpc: grpc.aio.Server | None = None
        self._dispatcher: Dispatcher | None = None

    async def start(self) -> "TaskHubServer":
        """Start serving; afterwards `port` is the bound port (useful when 0 was asked for)."""
        loop = asyncio.get_running_loop()
        metrics = HubMetrics(self.store)
        self._dispatcher = Dispatcher(self.store, self._lease_seconds, metrics)
        watchers = StatusWatchers()

        def on_commit(notice: CommitNotice) -> None:
            self._dispatcher.on_commit(notice)
            watchers.on_commit(notice)
            metrics.on_commit(notice)

        self.store.add_commit_listener(lambda notice: loop.call_soon_threadsafe(on_commit, notice))
        # gRPC's own message limit sits above the payload limit, so that an oversized payload reaches
        # our check and gets an error naming --max-payload-bytes.
        limit = self._max_payload * 4 + 1024 * 1024
        # Authentication first: nothing from a caller without a token is even parsed.
        interceptors = [BearerTokenAuth(self._accepted_tokens)] if self._accepted_tokens else []
        interceptors.append(RefuseUndecodableRequests())
        # A worker that stops answering (a frozen process, a lost node, a cut network) leaves its
        # stream open, and the dispatcher renews the leases of open streams: keepalive pings end
        # such a stream within about a lease time, so that its work is handed out again.
        keepalive_ms = int(max(self._lease_seconds / 2, MIN_KEEPALIVE_SECONDS) * 1000)
        self._grpc = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                              ("grpc.max_send_message_length", -1),
                                              # a second hub on a taken port must fail, not share it
                                              ("grpc.so_reuseport", 0),
                                              ("grpc.keepalive_time_ms", keepalive_ms),
                                              ("grpc.keepalive_timeout_ms", keepalive_ms),
                                              # recent gRPC releases time the ping's answer with this
                                              # one, not keepalive_timeout_ms (default: 1 min)
                                              ("grpc.http2.ping_timeout_ms", keepalive_ms),
                                              # keep pinging a stream that has nothing to send
                                              ("grpc.http2.max_pings_without_data", 0),
                                              # latency at some cost in throughput: the hub's callers
                                              # each wait on its answers (a client's starts, a worker
                                              # thread's completions); hello-cities +4% (bench/README.md)
                                              ("grpc.optimization_target", "latency")],
                                     interceptors=interceptors)
        servicer = TaskHubServicer(self.store, self._dispatcher, watchers, self._max_payload, metrics)
        stubs.add_TaskHubSidecarServiceServicer_to_server(servicer, self._grpc)
        address = f"{self.host}:{self.port}"
        if self._tls:
            self.port = self._grpc.add_secure_port(address, self._tls.grpc_credentials())
        else:
            self.port = self._grpc.add_insecure_port(address)
        await self._grpc.start()
        if self.metrics_port:
            self._metrics = serve_metrics(metrics, self.host, self.metrics_port, self._tls)
        return self

    async def stop(self, grace: float = 5.0) -> None:
        if self._dispatcher is not None:
            # First: work handed out during the grace period could not be reported (new calls are refused).
            await self._dispatcher.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._metrics is not None:
            self._metrics.shutdown()
        self.store.close()
