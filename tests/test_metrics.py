"""The task hub's /metrics, scraped over HTTP from a real server while instances move through
their states, compared with what the hub itself says about its instances (QueryInstances)."""

import time
from collections import Counter

import grpc
import pytest

from durabletask import client, task, worker
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.worker import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy
from durabletask.worker_metrics import WorkerMetrics
from tests.support.hub import RawWorker
from tests.support.metrics import scrape
from tests.support.processes import ServerProcess, free_port
from tests.support.sdk import new_id, running_worker, wait_until

WAIT = 30


def done(ctx: task.OrchestrationContext, _):
    return "done"


def fails(ctx: task.OrchestrationContext, _):
    raise ValueError("on purpose")


def waits(ctx: task.OrchestrationContext, _):
    return (yield ctx.wait_for_external_event("go"))


def loops(ctx: task.OrchestrationContext, rounds: int):
    """Continues as new (moving to version 1.1, keeping events) until its rounds are used up, then waits."""
    if rounds > 0:
        ctx.continue_as_new(rounds - 1, save_events=True, new_version="1.1")
        return None
    return (yield ctx.wait_for_external_event("go"))


def needs_a_missing_activity(ctx: task.OrchestrationContext, _):
    return (yield ctx.call_activity("registered_nowhere"))


@pytest.fixture
def hub(tmp_path):
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db", metrics_port=free_port()).start()
    yield server
    server.stop()


def truth(hub) -> dict[tuple[str, str, str], int]:
    """Instances per (name, version, status) as QueryInstances reports them."""
    with grpc.insecure_channel(hub.address) as channel:
        response = stubs.TaskHubSidecarServiceStub(channel).QueryInstances(
            pb.QueryInstancesRequest(query=pb.InstanceQuery(maxInstanceCount=10_000)))
    return dict(Counter((s.name, s.version.value, pb.OrchestrationStatus.Name(s.orchestrationStatus)
                         .removeprefix("ORCHESTRATION_STATUS_")) for s in response.orchestrationState))


def gauges(hub) -> dict[tuple[str, str, str], int]:
    return {key: int(value) for key, value in
            scrape(hub.metrics_port).by("durabletask_orchestrations", "name", "version", "status").items()}


def test_gauges_match_the_instances_through_every_status_and_a_restart(hub):
    strict_2 = VersioningOptions("2.0", "2.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.REJECT)
    newest_3 = VersioningOptions("3.0", "3.0", VersionMatchStrategy.CURRENT_OR_OLDER, VersionFailureStrategy.FAIL)
    with running_worker(hub.address, [done, fails, waits]), \
            running_worker(hub.address, [loops], versioning=strict_2), \
            running_worker(hub.address, [needs_a_missing_activity], versioning=newest_3), \
            client.TaskHubGrpcClient(host_address=hub.address) as c:
        def start(fn, version=None, data=None):
            return c.schedule_new_orchestration(fn, instance_id=new_id("metrics"), version=version, input=data)

        finished = [start(done), start(done), start(fails)]
        waiting = [start(waits) for _ in range(3)]
        looping = start(loops, "1.0", 2)
        starved = start(needs_a_missing_activity, "2.5")
        for _ in range(2):
            start("nobody_runs_this", "4.0")  # no worker takes this name: pending work
        for iid in finished:
            c.wait_for_orchestration_completion(iid, timeout=WAIT)
        for iid in [*waiting, starved]:
            c.wait_for_orchestration_start(iid, timeout=WAIT)
        c.terminate_orchestration(waiting[0])
        c.wait_for_orchestration_completion(waiting[0], timeout=WAIT)
        c.suspend_orchestration(waiting[1])
        c.purge_orchestration(finished[0])
        # loops ran 1.0 (the STRICT 2.0 worker was never offered it), so it is still PENDING at 1.0.
        metrics = scrape(hub.metrics_port)
        assert gauges(hub) == truth(hub)
        assert truth(hub)[("loops", "1.0", "PENDING")] == 1
        assert metrics.by("durabletask_workers_connected", "version") == {("",): 1, ("2.0",): 1, ("3.0",): 1}
        assert metrics.by("durabletask_work_items_pending", "kind", "name", "version") == {
            ("orchestration", "nobody_runs_this", "4.0"): 2, ("orchestration", "loops", "1.0"): 1,
            ("activity", "registered_nowhere", "2.5"): 1}
        # Finished: 2 completed (one since purged), 1 failed, 1 terminated.
        assert metrics.by("durabletask_orchestration_duration_seconds_count", "name") == {
            ("done",): 2, ("fails",): 1, ("waits",): 1}
        for kind in ("orchestration", "activity"):
            assert metrics.total("durabletask_work_item_latency_seconds_count", kind=kind) \
                == metrics.total("durabletask_work_items_dispatched_total", kind=kind)
        assert metrics.total("durabletask_work_items_completed_total", kind="orchestration") >= 6
        assert metrics.total("durabletask_work_items_abandoned_total") == 0

        with running_worker(hub.address, [loops]):  # no versioning: takes loops 1.0, continues as 1.1
            c.raise_orchestration_event(looping, "go", data="late")  # may arrive before it waits: kept
            assert c.wait_for_orchestration_completion(looping, timeout=WAIT).get_output() == "late"
        assert truth(hub)[("loops", "1.1", "COMPLETED")] == 1
        assert gauges(hub) == truth(hub)

    hub.restart()
    assert gauges(hub) == truth(hub)
    after_restart = scrape(hub.metrics_port)
    assert after_restart.by("durabletask_workers_connected", "version") == {}
    assert after_restart.by("durabletask_work_items_pending", "kind", "name", "version") == {
        ("orchestration", "nobody_runs_this", "4.0"): 2, ("activity", "registered_nowhere", "2.5"): 1}


def shout(ctx: task.ActivityContext, text: str) -> str:
    return text.upper()


def shouts(ctx: task.OrchestrationContext, text: str):
    return (yield ctx.call_activity(shout, input=text))


def test_an_sdk_worker_serves_its_own_metrics(shared_server):
    w = worker.TaskHubGrpcWorker(host_address=shared_server.address)
    w.add_orchestrator(shouts)
    w.add_activity(shout)
    metrics = WorkerMetrics(w)
    w.use_work_item_listener(metrics)
    port = free_port()
    http = metrics.serve(port, "127.0.0.1")
    try:
        with w, client.TaskHubGrpcClient(host_address=shared_server.address) as c:
            w.start()
            iid = c.schedule_new_orchestration(shouts, input="hi", instance_id=new_id("shouts"))
            assert c.wait_for_orchestration_completion(iid, timeout=WAIT).get_output() == "HI"
            # The worker counts an episode once the hub has answered its completion, which can be
            # after the client saw the orchestration finish.
            wait_until(lambda: scrape(port).total("durabletask_worker_work_items_total", kind="orchestration",
                                                  name="shouts", outcome="completed") == 2)  # schedule, finish
            seen = scrape(port)
    finally:
        http.shutdown()
    assert seen.total("durabletask_worker_work_items_total", kind="activity", name="shout", outcome="completed") == 1
    assert seen.total("durabletask_worker_work_items_total", kind="orchestration", name="shouts",
                      outcome="completed") == 2
    assert seen.total("durabletask_worker_connected") == 1


def test_abandons_are_counted_by_reason(tmp_path):
    """worker: handed back; stream_closed: its stream ended first; lease_expired: the server that
    leased it died, and the lease ran out before the work was claimed again."""
    hub = ServerProcess(f"sqlite:///{tmp_path}/hub.db", metrics_port=free_port(),
                        extra_args=("--lease-seconds", "1")).start()
    try:
        with client.TaskHubGrpcClient(host_address=hub.address) as c:
            iid = c.schedule_new_orchestration("played_by_hand", instance_id=new_id("abandons"))
        rejecting = RawWorker(hub.address)
        rejecting.stub.AbandonTaskOrchestratorWorkItem(pb.AbandonOrchestrationTaskRequest(
            completionToken=rejecting.next().completionToken))
        raw = RawWorker(hub.address)
        raw.next()  # after the back-off, offered to the stream that did not reject it
        rejecting.close()
        raw.close()
        deadline = time.monotonic() + 5
        while scrape(hub.metrics_port).total("durabletask_work_items_abandoned_total", reason="stream_closed") < 1:
            assert time.monotonic() < deadline, "the closed stream's work item was not released"
            time.sleep(0.05)
        raw = RawWorker(hub.address)
        assert raw.next().orchestratorRequest.instanceId == iid
        before_restart = scrape(hub.metrics_port).by("durabletask_work_items_abandoned_total", "kind", "reason")
        hub.kill()  # the lease dies with the server's memory of it
        hub.start()
        raw = RawWorker(hub.address)
        assert raw.next(timeout=5).orchestratorRequest.instanceId == iid
        abandoned = scrape(hub.metrics_port).by("durabletask_work_items_abandoned_total", "kind", "reason")
        raw.close()
    finally:
        hub.stop()
    assert before_restart == {("orchestration", "worker"): 1, ("orchestration", "stream_closed"): 1}
    assert abandoned == {("orchestration", "lease_expired"): 1}  # counters start afresh with the process
