"""Draining a worker (`stop(grace_period=...)`), its readiness signal and its work item listener,
against our real server. The server's lease is 60 s, so work that moves to another worker within
seconds was handed back, not left to expire."""

import threading
import time

from durabletask import client, worker
from tests.support.processes import ServerProcess
from tests.support.sdk import new_id, running_worker, wait_until

# Each call of `slow_step` records itself here; it blocks until the test releases it.
calls: list[str] = []
release = threading.Event()


def slow_step(ctx, label):
    calls.append(label)
    release.wait(10)
    return f"{label} done"


def one_slow_step(ctx, label):
    return (yield ctx.call_activity(slow_step, input=label))


class Recorder(worker.WorkItemListener):
    def __init__(self):
        self.finished: list[tuple[worker.WorkItemInfo, worker.WorkItemOutcome]] = []

    def work_item_finished(self, item, outcome, seconds):
        self.finished.append((item, outcome))


def start_worker(address, listener=None):
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_orchestrator(one_slow_step)
    w.add_activity(slow_step)
    if listener is not None:
        w.use_work_item_listener(listener)
    w.start()
    return w


def test_a_running_activity_finishes_within_the_grace_period_and_runs_once(shared_server):
    calls.clear()
    release.clear()
    label = new_id("finish")
    draining = start_worker(shared_server.address)
    with client.TaskHubGrpcClient(host_address=shared_server.address) as hub:
        instance_id = hub.schedule_new_orchestration(one_slow_step, input=label, instance_id=label)
        wait_until(lambda: calls == [label])
        threading.Timer(0.5, release.set).start()
        began = time.monotonic()
        draining.stop(grace_period=10)
        assert 0.3 < time.monotonic() - began < 5, "stop() should return once the running activity finished"
        with running_worker(shared_server.address, [one_slow_step], [slow_step]):
            state = hub.wait_for_orchestration_completion(instance_id, timeout=10)
    assert state.get_output() == f"{label} done"
    assert calls == [label], "the activity's result was kept, so it never ran again"


def test_work_still_running_after_the_grace_period_is_handed_back_to_another_worker(shared_server):
    calls.clear()
    release.clear()
    label = new_id("handback")
    recorder = Recorder()
    draining = start_worker(shared_server.address, recorder)
    try:
        with client.TaskHubGrpcClient(host_address=shared_server.address) as hub:
            instance_id = hub.schedule_new_orchestration(one_slow_step, input=label, instance_id=label)
            wait_until(lambda: calls == [label])
            began = time.monotonic()
            draining.stop(grace_period=0.5)
            assert time.monotonic() - began < 3, "stop() waits for the grace period, not for the activity"
            release.set()  # the first run ends now, after its item was handed back: its result is not reported
            with running_worker(shared_server.address, [one_slow_step], [slow_step]):
                state = hub.wait_for_orchestration_completion(instance_id, timeout=10)
    finally:
        release.set()
    assert state.get_output() == f"{label} done"
    assert calls == [label, label]
    wait_until(lambda: len(recorder.finished) == 2)
    assert recorder.finished == [
        (worker.WorkItemInfo("orchestration", "one_slow_step", ""), worker.WorkItemOutcome.COMPLETED),
        (worker.WorkItemInfo("activity", "slow_step", ""), worker.WorkItemOutcome.ABANDONED),
    ]


def test_is_connected_only_while_a_stream_to_a_live_hub_is_open(tmp_path):
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db")
    w = worker.TaskHubGrpcWorker(host_address=server.address)
    w.start()
    try:
        time.sleep(0.5)
        assert not w.is_connected, "no hub is listening yet"
        server.start()
        wait_until(lambda: w.is_connected)
        server.stop()
        wait_until(lambda: not w.is_connected)
    finally:
        w.stop()
        server.stop()
    assert not w.is_connected
