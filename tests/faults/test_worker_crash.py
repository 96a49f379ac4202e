"""A worker that dies or hangs while it runs an activity or an orchestration episode: its work
item is handed out again to another worker and completes there.

A worker killed with kill -9 closes its connection (the OS does), so the server gives its work
back at once. A worker that hangs (SIGSTOP here; a frozen node or a cut-off network in real life)
keeps its connection open and answers nothing: the server must notice within about a lease time
(`--lease-seconds`, short here) and hand the work out again."""

import time

import pytest

from durabletask import client
from tests.support.metrics import Scrape
from tests.support.processes import RunnerProcess

LEASE_SECONDS = 1.0
NAP_SECONDS = 2.0  # how long the activity or episode runs, on each worker that gets it
APP = "tests.support.napping_app"
WORK = {"activity": "napping", "orchestration": "dozing"}  # kind of work item -> orchestrator that blocks in it


def running(worker: RunnerProcess, kind: str) -> bool:
    code, body = worker.get("/metrics")
    return code == 200 and Scrape(body).total("durabletask_worker_work_items_in_flight", kind=kind) == 1


@pytest.fixture
def hub(server_factory):
    return server_factory("--lease-seconds", str(LEASE_SECONDS), "--log-level", "WARNING")


@pytest.mark.parametrize("fault", ["kill -9", "freeze"])
@pytest.mark.parametrize("kind", WORK)
def test_work_held_by_a_dead_or_hung_worker_completes_on_another(hub, kind, fault):
    first = RunnerProcess("--app", APP, "--address", hub.address).start()
    second = RunnerProcess("--app", APP, "--address", hub.address)
    try:
        first.wait_until("/readyz", 200)
        with client.TaskHubGrpcClient(host_address=hub.address) as hub_client:
            instance_id = hub_client.schedule_new_orchestration(WORK[kind], input=NAP_SECONDS)
            deadline = time.monotonic() + 10
            while not running(first, kind):
                assert time.monotonic() < deadline, f"the first worker never started the {kind}"
                time.sleep(0.02)
            first.kill() if fault == "kill -9" else first.freeze()
            failed_at = time.monotonic()
            second.start()
            state = hub_client.wait_for_orchestration_completion(instance_id, timeout=20)
            took = time.monotonic() - failed_at
        assert state.runtime_status == client.OrchestrationStatus.COMPLETED, state.failure_details
        assert state.serialized_output == str(second.process.pid), "the second worker did not finish the work"
        print(f"[faults] worker {fault} mid-{kind}: 1 fault injected, 0 lost, the {kind} ran twice; "
              f"completed on another worker {took:.1f}s later")
    finally:
        first.stop()
        second.stop()
