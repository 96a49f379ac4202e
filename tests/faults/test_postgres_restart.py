"""PostgreSQL crashes and comes back under load (an immediate shutdown, then a start on the same
port), with two server replicas on it: the servers reconnect (their connection pools and their
LISTEN connections), and no instance is lost or stuck."""

import threading
import time

import grpc
import pytest

from durabletask import client

from tests.support.postgres import PostgresCluster

INSTANCES = 400
AFTER_THE_RESTART = 100
DOWN_SECONDS = 3.0


@pytest.fixture(scope="module")
def own_postgres():
    """A cluster of this module's own, since its tests crash it."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def store_url(own_postgres):
    return own_postgres.new_database()


@pytest.mark.timeout(120)
def test_servers_ride_out_a_postgresql_restart_under_load(fault_hub, own_postgres):
    # The one worker is on the first replica; clients use both.
    hub = fault_hub(replicas=2, workers=1)
    started = time.monotonic()
    scheduling, expected = hub.start_orchestrations_in_background(INSTANCES)
    hub.wait_for_activity_runs(INSTANCES * 2 // 4)
    own_postgres.restart(down_seconds=DOWN_SECONDS)
    hub.faults += 1
    restarted_at = hub.ledger.total()
    scheduling.join()
    settled = hub.settle(expected, timeout=60)
    assert not settled.problems(INSTANCES)
    # Started through the second replica only, once the first has nothing left to do: the first
    # replica (the worker's) hears of them only through the database's notifications, so they
    # complete only if its LISTEN connection came back.
    expected |= hub.start_orchestrations(AFTER_THE_RESTART, prefix="after-the-restart", through=1)

    result = hub.settle(expected, timeout=30)
    hub.report(f"PostgreSQL restart after {restarted_at} activity runs", expected, result, started)
    assert restarted_at < INSTANCES * 2 * 0.8, "the restart came too late to test anything"
    assert not result.problems(INSTANCES + AFTER_THE_RESTART)


@pytest.mark.timeout(60)
def test_while_postgresql_is_down_callers_get_unavailable_and_then_carry_on(server_factory, own_postgres,
                                                                            store_url):
    server = server_factory(store_url=store_url)
    hub = client.TaskHubGrpcClient(host_address=server.address)
    instance_id = hub.schedule_new_orchestration("never_run")
    outage = threading.Thread(target=own_postgres.restart, kwargs={"down_seconds": 3.0})
    outage.start()
    try:
        time.sleep(1.0)  # the cluster is down now
        with pytest.raises(grpc.RpcError) as refused:
            hub.get_orchestration_state(instance_id)
    finally:
        outage.join()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # which gRPC callers retry
    assert "cannot be reached right now" in refused.value.details()
    deadline = time.monotonic() + 30
    while True:
        try:
            state = hub.get_orchestration_state(instance_id)
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
            time.sleep(0.5)
    assert state.runtime_status == client.OrchestrationStatus.PENDING
