"""Version-aware dispatch: a real task hub server and real workers of several versions.

With work item filters (our SDK sends them by default) the hub offers each worker only the
versions it runs, so nothing is abandoned and nothing waits on the wrong worker. Without filters
the hub offers anything and the worker's VersionFailureStrategy decides (REJECT hands it back,
FAIL fails it); the hub then keeps a rejected instance away from the stream that rejected it.
Abandons are read from the hub's `durabletask_work_items_abandoned_total` counter.
"""

import json
import time

import pytest

from durabletask import client, task
from durabletask.worker import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy
from tests.support.metrics import scrape
from tests.support.processes import ServerProcess, free_port, ms_run
from tests.support.sdk import new_id, running_worker

STRICT, CURRENT_OR_OLDER, NONE = (VersionMatchStrategy.STRICT, VersionMatchStrategy.CURRENT_OR_OLDER,
                                  VersionMatchStrategy.NONE)
REJECT, FAIL = VersionFailureStrategy.REJECT, VersionFailureStrategy.FAIL
INSTANCES = 500


@pytest.fixture
def hub(tmp_path):
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db", metrics_port=free_port()).start()
    yield server
    server.stop()


def abandons(hub) -> float:
    return scrape(hub.metrics_port).total("durabletask_work_items_abandoned_total")


def pool(label: str):
    """The code one deployment ships: the same orchestrator and activity names on every version,
    each saying which deployment ran it."""
    def versioned_work(ctx: task.OrchestrationContext, _):
        stamp = yield ctx.call_activity("stamp")
        return {"worker": label, "version": ctx.version, "activity": stamp}

    def stamp(ctx: task.ActivityContext, _):
        return label
    return [versioned_work], [stamp]


def version_worker(hub, label: str, match, failure, version: str | None = None, filters: bool = True):
    orchestrators, activities = pool(label)
    return running_worker(hub.address, orchestrators, activities, filters=filters,
                          versioning=VersioningOptions(version or label, version or label, match, failure))


def start(c: client.TaskHubGrpcClient, version: str | None) -> str:
    return c.schedule_new_orchestration("versioned_work", instance_id=new_id(f"v{version}"), version=version)


def status(c: client.TaskHubGrpcClient, instance_id: str) -> client.OrchestrationStatus:
    return c.get_orchestration_state(instance_id).runtime_status


def run_two_strict_pools(hub, filters: bool) -> tuple[list[dict], float]:
    """500 instances, half 1.0 and half 2.0, on a 1.0 and a 2.0 pool (STRICT, REJECT) connected at
    once; returns the outputs (in order of `versions`) and the hub's abandon count."""
    versions = ["1.0", "2.0"] * (INSTANCES // 2)
    with version_worker(hub, "1.0", STRICT, REJECT, filters=filters), \
            version_worker(hub, "2.0", STRICT, REJECT, filters=filters), \
            client.TaskHubGrpcClient(host_address=hub.address) as c:
        ids = [start(c, v) for v in versions]
        states = [c.wait_for_orchestration_completion(iid, timeout=60) for iid in ids]
    assert [s.runtime_status for s in states] == [client.OrchestrationStatus.COMPLETED] * INSTANCES
    return [json.loads(s.serialized_output) for s in states], abandons(hub)


def test_two_strict_pools_with_default_filters_abandon_nothing(hub):
    outputs, abandoned = run_two_strict_pools(hub, filters=True)
    print(f"\nwith filters: {INSTANCES} instances on two STRICT/REJECT pools, {abandoned:.0f} abandons")
    assert abandoned == 0
    versions = ["1.0", "2.0"] * (INSTANCES // 2)
    assert outputs == [{"worker": v, "version": v, "activity": v} for v in versions]


def test_two_strict_pools_without_filters_reject_until_each_instance_finds_its_version(hub):
    outputs, abandoned = run_two_strict_pools(hub, filters=False)
    print(f"\nwithout filters: {INSTANCES} instances on two STRICT/REJECT pools, {abandoned:.0f} abandons")
    assert abandoned > 0
    # REJECT keeps orchestrations on their version; activities carry no check of their own.
    assert [o["worker"] for o in outputs] == ["1.0", "2.0"] * (INSTANCES // 2)


def test_current_or_older_gets_its_version_and_older_and_newer_ones_wait(hub):
    with version_worker(hub, "2.0", CURRENT_OR_OLDER, FAIL), \
            client.TaskHubGrpcClient(host_address=hub.address) as c:
        ids = {v: start(c, v) for v in (None, "1.0", "2.0", "2.0.1", "10.0")}
        for v in (None, "1.0", "2.0"):
            output = c.wait_for_orchestration_completion(ids[v], timeout=30).serialized_output
            assert json.loads(output) == {"worker": "2.0", "version": v, "activity": "2.0"}
        time.sleep(0.5)
        # FAIL would have failed them had they been offered: they were not, they wait.
        assert [status(c, ids[v]) for v in ("2.0.1", "10.0")] == [client.OrchestrationStatus.PENDING] * 2
        with version_worker(hub, "10.0", CURRENT_OR_OLDER, FAIL):
            for v in ("2.0.1", "10.0"):
                output = c.wait_for_orchestration_completion(ids[v], timeout=30).serialized_output
                assert json.loads(output)["worker"] == "10.0"
    assert abandons(hub) == 0


def test_a_worker_matching_no_version_runs_every_version(hub):
    with version_worker(hub, "1.0", NONE, FAIL), client.TaskHubGrpcClient(host_address=hub.address) as c:
        ids = {v: start(c, v) for v in (None, "0.5", "1.0", "7.0")}
        workers = {v: json.loads(c.wait_for_orchestration_completion(iid, timeout=30).serialized_output)["worker"]
                   for v, iid in ids.items()}
    assert workers == dict.fromkeys(ids, "1.0")


def test_without_filters_fail_fails_the_other_versions(hub):
    with version_worker(hub, "1.0", STRICT, FAIL, filters=False), \
            client.TaskHubGrpcClient(host_address=hub.address) as c:
        state = c.wait_for_orchestration_completion(start(c, "2.0"), timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "VersionMismatch"


def test_without_filters_a_rejected_instance_is_not_offered_straight_back(hub):
    with version_worker(hub, "1.0", STRICT, REJECT, filters=False), \
            client.TaskHubGrpcClient(host_address=hub.address) as c:
        newer = start(c, "2.0")
        time.sleep(3)  # six abandon back-offs: the hub would have re-offered it every 0.5 s
        assert status(c, newer) == client.OrchestrationStatus.PENDING
        assert abandons(hub) == 1
        with version_worker(hub, "2.0", STRICT, REJECT, filters=False):
            output = c.wait_for_orchestration_completion(newer, timeout=30).serialized_output
    assert json.loads(output)["worker"] == "2.0"


# Microsoft's SDK: a 1.0 pool alone first, then a 2.0 pool (STRICT, REJECT), with or without
# use_work_item_filters(). Prints {"waited": status of the 2.0 instance alone with 1.0, "ran": {...}}.
MS_POOLS = """
import json, sys, time, uuid
from durabletask import client, task, worker
from durabletask.worker import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy
address, use_filters = sys.argv[1], sys.argv[2] == "filters"

def pool(version):
    def versioned_work(ctx, _):
        stamp = yield ctx.call_activity("stamp")
        return {"worker": version, "activity": stamp}
    def stamp(ctx, _):
        return version
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_orchestrator(versioned_work)
    w.add_activity(stamp)
    w.use_versioning(VersioningOptions(version=version, default_version=version,
                                       match_strategy=VersionMatchStrategy.STRICT,
                                       failure_strategy=VersionFailureStrategy.REJECT))
    if use_filters:
        w.use_work_item_filters()
    w.start()
    return w

c = client.TaskHubGrpcClient(host_address=address)
start = lambda v: c.schedule_new_orchestration("versioned_work", instance_id=f"ms-{v}-{uuid.uuid4().hex[:8]}",
                                               version=v)
old = pool("1.0")
ids = {"1.0": start("1.0"), "2.0": start("2.0")}
c.wait_for_orchestration_completion(ids["1.0"], timeout=30)
time.sleep(1)
waited = c.get_orchestration_state(ids["2.0"]).runtime_status.name
new = pool("2.0")
ran = {v: json.loads(c.wait_for_orchestration_completion(iid, timeout=30).serialized_output)
       for v, iid in ids.items()}
old.stop()
new.stop()
print(json.dumps({"waited": waited, "ran": ran}))
"""


@pytest.mark.parametrize("filters", [True, False], ids=["use_work_item_filters", "no_filters"])
def test_microsofts_sdk_pools_are_routed_by_version(hub, filters):
    done = ms_run(MS_POOLS, hub.address, "filters" if filters else "none")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["waited"] == "PENDING"
    assert report["ran"]["1.0"] == {"worker": "1.0", "activity": "1.0"}
    assert report["ran"]["2.0"]["worker"] == "2.0"
    if filters:
        assert report["ran"]["2.0"]["activity"] == "2.0"
        assert abandons(hub) == 0
    else:
        assert abandons(hub) >= 1  # the lone 1.0 worker was offered the 2.0 instance and handed it back
