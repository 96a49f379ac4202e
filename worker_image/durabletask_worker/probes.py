"""The HTTP probes Kubernetes asks: /healthz (alive), /readyz (taking work) and /metrics."""

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def serve_probes(port: int, alive: Callable[[], bool], ready: Callable[[], bool],
                 registry: CollectorRegistry) -> ThreadingHTTPServer:
    """Answer the probes on all interfaces at `port` from a daemon thread; returns the server
    (call shutdown() to stop it). Raises OSError if the port cannot be bound."""

    class ProbeHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(*_status(alive(), "alive", "not alive"))
            elif path == "/readyz":
                self._answer(*_status(ready(), "ready", "not ready: no open work item stream to the task hub"))
            elif path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._answer(404, b"not found: try /healthz, /readyz or /metrics\n")

        def _answer(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass  # probes arrive every few seconds; logging each would drown the worker's own log

    server = ThreadingHTTPServer(("", port), ProbeHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="durabletask-probes", daemon=True).start()
    return server


def _status(ok: bool, yes: str, no: str) -> tuple[int, bytes]:
    return (200, f"{yes}\n".encode()) if ok else (503, f"{no}\n".encode())
