"""kill -9 of the task hub server in the middle of 1,000 orchestrations, then a restart on the
same store: every instance completes, exactly once, and no activity result is lost. Activities
whose results the dead server never committed run again; the test counts and prints them."""

import time

import pytest

INSTANCES = 1000
LEASE_SECONDS = 2  # how long the work the dead server had handed out waits before it is handed out again


@pytest.mark.timeout(150)
def test_every_orchestration_completes_once_across_a_server_kill(fault_hub, request):
    hub = fault_hub(lease_seconds=LEASE_SECONDS)
    started = time.monotonic()
    scheduling, expected = hub.start_orchestrations_in_background(INSTANCES)
    hub.wait_for_activity_runs(INSTANCES * 2 // 4)  # a quarter of the activities are done
    hub.servers[0].kill()
    hub.faults += 1
    killed_at = hub.ledger.total()
    hub.servers[0].start()
    scheduling.join()
    assert killed_at < INSTANCES * 2 * 0.8, "the kill came too late to test anything"

    result = hub.settle(expected, timeout=100)
    hub.report(f"server kill -9 ({request.node.callspec.id}), after {killed_at} activity runs", expected,
               result, started)
    assert not result.problems(INSTANCES)
