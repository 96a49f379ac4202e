"""Fixtures for operator tests: a task hub server with its metrics page on."""

from dataclasses import dataclass

import pytest

from tests.support.processes import ServerProcess, free_port


@dataclass
class Hub:
    server: ServerProcess
    metrics_port: int

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@pytest.fixture
def hub(tmp_path):
    """Our task hub server on a fresh SQLite store, serving /metrics on its own port."""
    metrics_port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db", extra_args=("--metrics-port", str(metrics_port))).start()
    yield Hub(server, metrics_port)
    server.stop()
