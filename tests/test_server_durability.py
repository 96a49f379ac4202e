"""Our server keeps its promises across a crash: timers, pending events and in-flight work
survive `kill -9` and a restart on the same store."""

import subprocess
import time

from durabletask.internal import orchestrator_service_pb2 as pb
from tests.support.hub import RawWorker, activity_result, episode, schedule, timer
from tests.support.processes import ms_python


def test_timers_events_and_in_flight_work_survive_kill_9(server_factory):
    server = server_factory("--lease-seconds", "1")
    before = RawWorker(server.address)
    before.stub.StartInstance(pb.CreateInstanceRequest(instanceId="survivor", name="workflow"))
    first = before.next()
    before.stub.CompleteOrchestratorTask(episode("survivor", first.completionToken,
                                                 schedule(1, "slow-step"), timer(2, 2.0)))
    in_flight_activity = before.next()
    assert in_flight_activity.HasField("activityRequest")
    before.stub.RaiseEvent(pb.RaiseEventRequest(instanceId="survivor", name="ping"))
    in_flight_episode = before.next()
    assert in_flight_episode.orchestratorRequest.newEvents[1].eventRaised.name == "ping"

    server.kill()
    before.close()
    server.start()

    after = RawWorker(server.address)
    seen: list[str] = []
    deadline = time.monotonic() + 10
    try:
        while "timerFired" not in seen and time.monotonic() < deadline:
            item = after.next(timeout=max(0.1, deadline - time.monotonic()))
            if item.HasField("activityRequest"):
                seen.append(f"activity {item.activityRequest.name}")
                after.stub.CompleteActivityTask(activity_result(item.activityRequest, item.completionToken, '"ok"'))
            else:
                seen += [e.WhichOneof("eventType") for e in item.orchestratorRequest.newEvents[1:]]
                seen += [e.eventRaised.name for e in item.orchestratorRequest.newEvents if e.HasField("eventRaised")]
                after.stub.CompleteOrchestratorTask(episode("survivor", item.completionToken))
    finally:
        after.close()
    assert "activity slow-step" in seen, f"the in-flight activity was not redelivered: {seen}"
    assert "ping" in seen, f"the event raised before the crash was lost: {seen}"
    assert "taskCompleted" in seen and "timerFired" in seen, f"the activity result or timer was lost: {seen}"


MS_TIMER_WORKFLOW = """
import sys
import time
from datetime import timedelta
from durabletask import client, worker

def shout(ctx, text):
    return text.upper()

def nap_between(ctx, _):
    first = yield ctx.call_activity(shout, input="before")
    yield ctx.create_timer(timedelta(seconds=3))
    second = yield ctx.call_activity(shout, input="after")
    return [first, second]

w = worker.TaskHubGrpcWorker(host_address=sys.argv[1])
w.add_orchestrator(nap_between)
w.add_activity(shout)
w.start()
c = client.TaskHubGrpcClient(host_address=sys.argv[1])
iid = c.schedule_new_orchestration(nap_between, instance_id="nap")
print("started", flush=True)
state = None
for attempt in range(30):
    try:
        state = c.wait_for_orchestration_completion(iid, timeout=60)
        break
    except Exception:  # the server is down for a moment
        time.sleep(0.5)
print(state.runtime_status.name, state.serialized_output, flush=True)
w.stop()
"""


def test_microsofts_sdk_finishes_an_orchestration_across_a_server_crash(server_factory):
    server = server_factory("--lease-seconds", "2")
    script = subprocess.Popen([str(ms_python()), "-c", MS_TIMER_WORKFLOW, server.address], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert script.stdout.readline().strip() == "started"
        time.sleep(1.0)  # inside the 3 s durable timer
        server.kill()
        server.start()
        out, err = script.communicate(timeout=90)
    finally:
        script.kill()
    assert out.strip().splitlines()[-1] == 'COMPLETED ["BEFORE", "AFTER"]', err[-2000:]


def test_a_graceful_restart_ends_the_streams_at_once_and_keeps_the_work_in_flight_leased(server_factory):
    server = server_factory()
    before = RawWorker(server.address)
    before.stub.StartInstance(pb.CreateInstanceRequest(instanceId="steady", name="workflow"))
    first = before.next()
    before.stub.CompleteOrchestratorTask(episode("steady", first.completionToken, schedule(1, "slow-step")))
    in_flight = before.next()
    assert in_flight.HasField("activityRequest")

    began = time.monotonic()
    server.stop()  # SIGTERM
    stopping_took = time.monotonic() - began
    before.close()
    server.start()

    after = RawWorker(server.address)
    # The activity was not handed out again, so the result the worker finishes now still applies.
    assert after.idle(wait=1.0)
    after.stub.CompleteActivityTask(activity_result(in_flight.activityRequest, in_flight.completionToken, '"ok"'))
    result = after.next()
    assert [e.taskCompleted.result.value for e in result.orchestratorRequest.newEvents
            if e.HasField("taskCompleted")] == ['"ok"']
    after.close()
    # An open work item stream used to hold the server for all of its 5 s grace period.
    assert stopping_took < 3.0
