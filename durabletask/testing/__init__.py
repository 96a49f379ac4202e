"""An in-process task hub for tests, mirroring Microsoft's `durabletask.testing`:

    backend = create_test_backend(port=50051)
    ...  # point clients and workers at localhost:50051
    backend.stop()

It is our real server on a temporary SQLite file, run on a background thread.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path

from durabletask.server.app import TaskHubServer
from durabletask.server.stores.sqlite import SqliteStore


class TestBackend:
    """A started task hub; `address` is where clients and workers connect."""

    __test__ = False  # not a pytest test class

    def __init__(self, port: int, lease_seconds: float):
        self._folder = Path(tempfile.mkdtemp(prefix="durabletask-test-"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="durabletask-test-backend", daemon=True)
        self._thread.start()
        store = SqliteStore(str(self._folder / "hub.db"))
        self._server = TaskHubServer(store, "localhost", port, lease_seconds=lease_seconds)
        self._run(self._server.start())

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving and delete the temporary store."""
        if not self._thread.is_alive():
            return
        self._run(self._server.stop(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def create_test_backend(port: int = 50051, lease_seconds: float = 30.0) -> TestBackend:
    """Start a task hub on `port` (0 picks a free one) and return it; call `.stop()` when done."""
    return TestBackend(port, lease_seconds)


__all__ = ["TestBackend", "create_test_backend"]
