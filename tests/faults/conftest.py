"""The fault-injection suite's harness: task hub server replicas on one store, worker processes
spread over them running `tests.support.replica_app`, a ledger of activity runs, and the figures
each test prints (faults injected, instances lost, duplicate activity runs)."""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from durabletask import client
from durabletask.server.stores import open_store
from tests.support.audit import Audit, audit, wait_for_completed
from tests.support.ledger import Ledger
from tests.support.processes import RunnerProcess, ServerProcess
from tests.support.tcp_proxy import TcpProxy

APP = "tests.support.replica_app"
ACTIVITIES_PER_INSTANCE = 2  # double_twice: an activity, a timer, an activity


def expected_output(i: int) -> str:
    return str(4 * i)


class FaultHub:
    """Servers on one store and workers spread over them (worker i talks to server i mod replicas)."""

    def __init__(self, store_url: str, ledger: Ledger, *, replicas: int = 1, workers: int = 2,
                 lease_seconds: float = 2.0, concurrency: int = 50, through_proxies: bool = False):
        self.store_url = store_url
        self.ledger = ledger
        self.servers = [ServerProcess(store_url, extra_args=("--lease-seconds", str(lease_seconds),
                                                             "--log-level", "WARNING"))
                        for _ in range(replicas)]
        # With `through_proxies`, workers reach their server through a TCP proxy whose connections a test can reset.
        self.proxies = [TcpProxy(server.address) for server in self.servers] if through_proxies else []
        addresses = [hop.address for hop in self.proxies or self.servers]
        self.workers = [RunnerProcess("--app", APP, "--address", addresses[i % replicas],
                                      "--concurrency", str(concurrency), "--log-level", "ERROR", env=ledger.env)
                        for i in range(workers)]
        self.store = None
        self.faults = 0  # faults injected so far, counted by the tests
        self._clients: list[client.TaskHubGrpcClient] = []

    def start(self) -> "FaultHub":
        for server in self.servers:
            server.start()
        for worker in self.workers:
            worker.start()
        self.store = open_store(self.store_url)
        self._clients = [client.TaskHubGrpcClient(host_address=server.address) for server in self.servers]
        return self

    def stop(self) -> None:
        for process in (*self.workers, *self.servers):
            process.stop()
        for proxy in self.proxies:
            proxy.close()
        for hub_client in self._clients:
            hub_client.close()
        if self.store is not None:
            self.store.close()

    def start_orchestrations(self, count: int, prefix: str = "job", through: int | None = None) -> dict[str, str]:
        """Start `count` orchestrations through any replica (or replica `through`), riding out
        replicas that die meanwhile; instance id -> expected output."""
        expected = {f"{prefix}-{i:05d}": expected_output(i) for i in range(count)}
        clients = self._clients if through is None else [self._clients[through]]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda iid, n: self._start_one(clients, iid, n), expected, range(count)))
        return expected

    @staticmethod
    def _start_one(clients: list[client.TaskHubGrpcClient], instance_id: str, n: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                random.choice(clients).schedule_new_orchestration("double_twice", input=n, instance_id=instance_id)
                return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                    return  # an earlier attempt went through before its replica died
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def start_orchestrations_in_background(self, count: int) -> tuple[threading.Thread, dict[str, str]]:
        """As start_orchestrations, on a thread; join it before reading the dict."""
        expected: dict[str, str] = {}
        thread = threading.Thread(target=lambda: expected.update(self.start_orchestrations(count)), daemon=True)
        thread.start()
        return thread, expected

    def wait_for_activity_runs(self, runs: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ledger.total() < runs:
            assert time.monotonic() < deadline, f"only {self.ledger.total()} activity runs after {timeout}s"
            time.sleep(0.02)

    def wait_until_every_worker_connected(self) -> None:
        for worker in self.workers:
            worker.wait_until("/readyz", 200, timeout=15)  # the worker's back-off is capped at 5 s, gRPC's too

    def worker_pids(self) -> set[int]:
        return {worker.process.pid for worker in self.workers}

    def settle(self, expected: dict[str, str], timeout: float = 90.0) -> Audit:
        """Wait until every instance completed (or `timeout` passed), then audit them."""
        wait_for_completed(self.store, len(expected), timeout)
        return audit(self.store, expected)

    def report(self, case: str, expected: dict[str, str], result: Audit, started: float) -> None:
        """Print the case's figures (pytest -s shows them; the README explains them)."""
        runs = self.ledger.total()
        line = (f"[faults] {case}: {self.faults} faults injected, {len(expected)} orchestrations, "
                f"{len(result.lost)} lost, {len(result.applied_twice)} applied twice, "
                f"{runs - len(self.ledger.runs())} duplicate activity runs "
                f"({runs} runs of {ACTIVITIES_PER_INSTANCE * len(expected)} activities), "
                f"{time.monotonic() - started:.1f}s")
        print(line)
        duplicates = self.ledger.duplicates()
        if duplicates:
            print(f"[faults] {case}: activities run more than once: {sorted(duplicates.items())[:20]}"
                  f"{' ...' if len(duplicates) > 20 else ''}")


@pytest.fixture
def long_run(request):
    """Skips the test unless the long runs were asked for (--soak)."""
    if not request.config.getoption("--soak"):
        pytest.skip("a long run: only with --soak")


@pytest.fixture
def ledger(tmp_path):
    return Ledger(tmp_path / "activity-runs.txt")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    return request.getfixturevalue("postgres_cluster").new_database()


@pytest.fixture
def fault_hub(store_url, ledger):
    """A factory of started FaultHubs on `store_url`, stopped after the test."""
    hubs = []

    def make(**options) -> FaultHub:
        hub = FaultHub(store_url, ledger, **options)
        hubs.append(hub)
        return hub.start()

    yield make
    for hub in hubs:
        hub.stop()
