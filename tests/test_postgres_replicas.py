"""Several task hub server replicas on one PostgreSQL database, as behind a Kubernetes Service:
work spread over them completes exactly once, and when one replica dies (kill -9) the others
finish its work once its leases run out."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from durabletask import client
from durabletask.server.stores.postgres import PostgresStore
from tests.support.audit import audit, completed_count
from tests.support.processes import RunnerProcess, ServerProcess

INSTANCES = 1000
LEASE_SECONDS = 3  # how long work held by a killed replica waits before another replica takes it
APP = "tests.support.replica_app"


@pytest.fixture
def replicas(postgres_cluster):
    """Three servers on one fresh database, and four workers spread across them (two on the first)."""
    database = postgres_cluster.new_database()
    servers = [ServerProcess(database, extra_args=("--lease-seconds", str(LEASE_SECONDS))).start()
               for _ in range(3)]
    workers = [RunnerProcess("--app", APP, "--address", servers[i].address, "--concurrency", "50",
                             "--http-port", "0", "--log-level", "ERROR").start() for i in (0, 0, 1, 2)]
    yield database, servers
    for process in (*workers, *servers):
        process.stop()


@pytest.mark.timeout(120)
def test_three_replicas_finish_every_orchestration_once_even_when_one_is_killed(replicas):
    database, servers = replicas
    clients = [client.TaskHubGrpcClient(host_address=server.address) for server in servers]
    started = time.monotonic()
    store = PostgresStore(database)
    try:
        # Clients go through the replicas that survive; workers are on all three.
        with ThreadPoolExecutor(16) as pool:
            scheduled = [pool.submit(clients[i % 2].schedule_new_orchestration, "double_twice", input=i,
                                     instance_id=f"job-{i:04d}") for i in range(INSTANCES)]
            while completed_count(store) < INSTANCES // 4:
                assert time.monotonic() - started < 40, f"only {completed_count(store)} done after 40 s"
                time.sleep(0.05)
            servers[2].kill()  # kill -9: its streams, its leases and its in-flight commits are gone
            killed_at = completed_count(store)
            ids = [future.result() for future in scheduled]
        assert killed_at < INSTANCES * 0.8, "the kill came too late to test anything"

        survivor = clients[0]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda iid: survivor.wait_for_orchestration_completion(iid, timeout=60), ids))
        elapsed = time.monotonic() - started

        # Exactly once: each completed with its output, one result per activity and timer, nothing twice, and
        # the completed counter (the metrics gauge's truth, the same on every replica) agrees.
        result = audit(store, {iid: str(4 * i) for i, iid in enumerate(ids)})
        assert not result.problems(INSTANCES)
        print(f"{INSTANCES} orchestrations in {elapsed:.1f}s; replica 3 killed after {killed_at}")
    finally:
        store.close()
