"""Bad input with a clear, documented outcome (README, "Errors and edge cases"): payloads over
--max-payload-bytes at start and at completion, completions that cannot be applied, unknown names,
events for unknown or finished instances, duplicate ids under the reuse policy, and terminate,
suspend and resume of finished instances. Where the protocol leaves room, the outcome is compared
with Microsoft's in-memory backend (`hub_address` runs a test against both)."""

import grpc
import pytest
from google.protobuf import timestamp_pb2

from durabletask import client, task
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from tests.support.hub import RawWorker, activity_result, complete, episode, schedule, text
from tests.support.sdk import new_id, running_worker

LIMIT = 1000
LIMIT_NAMED = f"payload limit of {LIMIT} bytes (--max-payload-bytes)"
TERMINAL = {pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_FAILED, pb.ORCHESTRATION_STATUS_TERMINATED}


@pytest.fixture
def small_hub(server_factory):
    """Our server with a 1000-byte payload limit."""
    return server_factory("--max-payload-bytes", str(LIMIT))


@pytest.fixture
def stub(hub_address):
    with grpc.insecure_channel(hub_address) as channel:
        yield stubs.TaskHubSidecarServiceStub(channel)


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value


def state_of(stub, instance_id: str) -> pb.OrchestrationState:
    response = stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True), timeout=10)
    assert response.exists
    return response.orchestrationState


def finished(stub, instance_id: str) -> pb.OrchestrationState:
    return stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True),
                                          timeout=30).orchestrationState


def run_to_end(address, instance_id: str, output: str = '"done"') -> None:
    """Start `instance_id` and finish it by hand with `output`."""
    worker = RawWorker(address, pb.GetWorkItemsRequest(workItemFilters=pb.WorkItemFilters(
        orchestrations=[pb.OrchestrationFilter(name="by-hand")])))
    try:
        worker.stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="by-hand"))
        item = worker.next()
        worker.stub.CompleteOrchestratorTask(episode(instance_id, item.completionToken, complete(output)))
        finished(worker.stub, instance_id)
    finally:
        worker.close()


# ---- payloads over the limit ------------------------------------------------------------------

def test_oversized_input_event_and_terminate_output_are_refused_at_start(small_hub):
    with grpc.insecure_channel(small_hub.address) as channel:
        hub = stubs.TaskHubSidecarServiceStub(channel)
        error = refused(hub.StartInstance, pb.CreateInstanceRequest(instanceId="big", name="w", input=text("é" * 501)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == f"The input is 1002 bytes, over this server's {LIMIT_NAMED}."
        assert not hub.GetInstance(pb.GetInstanceRequest(instanceId="big")).exists
        hub.StartInstance(pb.CreateInstanceRequest(instanceId="small", name="w", input=text("x" * LIMIT)))
        for call, request, what in [
                (hub.RaiseEvent, pb.RaiseEventRequest(instanceId="small", name="e", input=text("y" * 1001)),
                 "event_data"),
                (hub.TerminateInstance, pb.TerminateRequest(instanceId="small", output=text("z" * 1001)), "output")]:
            error = refused(call, request)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.details().startswith(f"The {what} is 1001 bytes") and LIMIT_NAMED in error.details()
        assert state_of(hub, "small").orchestrationStatus == pb.ORCHESTRATION_STATUS_PENDING  # nothing applied


def big_result(ctx: task.ActivityContext, _):
    return "x" * 2000


def calls_big_result(ctx: task.OrchestrationContext, _):
    return (yield ctx.call_activity(big_result))


def returns_big_output(ctx: task.OrchestrationContext, _):
    return "y" * 2000
    yield  # an orchestrator is a generator


@pytest.mark.parametrize("orchestrator, failure", [
    (calls_big_result, "The activity_result is 2002 bytes"),  # the JSON string: 2000 characters and quotes
    (returns_big_output, "The completeOrchestration result is 2002 bytes"),
], ids=["activity result", "orchestration output"])
def test_an_oversized_result_from_a_worker_fails_the_orchestration_naming_the_limit(small_hub, orchestrator,
                                                                                    failure):
    with running_worker(small_hub.address, [calls_big_result, returns_big_output], [big_result]), \
            client.TaskHubGrpcClient(host_address=small_hub.address) as hub:
        instance_id = hub.schedule_new_orchestration(orchestrator, instance_id=new_id("big"))
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert failure in state.failure_details.message and LIMIT_NAMED in state.failure_details.message


def test_the_worker_is_told_why_its_oversized_completion_was_refused(small_hub):
    worker = RawWorker(small_hub.address)
    try:
        worker.stub.StartInstance(pb.CreateInstanceRequest(instanceId="w", name="w"))
        item = worker.next()
        worker.stub.CompleteOrchestratorTask(episode("w", item.completionToken, schedule(1, "act")))
        activity = worker.next()
        error = refused(worker.stub.CompleteActivityTask, activity_result(
            activity.activityRequest, activity.completionToken, "r" * 1500))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == (f"The activity_result is 1500 bytes, over this server's {LIMIT_NAMED}. "
                                   "The activity was recorded as failed with this message.")
        # The orchestration hears of the failure; the activity is not handed out again.
        item = worker.next()
        failed = item.orchestratorRequest.newEvents[-1].taskFailed.failureDetails
        assert (failed.errorType, failed.isNonRetriable) == ("PayloadTooLarge", True)
        error = refused(worker.stub.CompleteOrchestratorTask, episode("w", item.completionToken, complete("o" * 1500)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details().endswith("The orchestration was failed with this message.")
        assert worker.idle(wait=1.0)
        state = state_of(worker.stub, "w")
        assert state.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
        assert state.failureDetails.errorType == "PayloadTooLarge"
    finally:
        worker.close()


@pytest.mark.parametrize("action, message", [
    (pb.OrchestratorAction(id=1, createTimer=pb.CreateTimerAction(fireAt=timestamp_pb2.Timestamp(
        seconds=253_402_300_800))), "The createTimer fireAt is not a valid time"),
    (complete(status=pb.ORCHESTRATION_STATUS_RUNNING), "completeOrchestration: an orchestration cannot finish RUNNING"),
    (pb.OrchestratorAction(id=1, createSubOrchestration=pb.CreateSubOrchestrationAction(instanceId="a\nb", name="c")),
     "createSubOrchestration: Instance ids must be 1 to 256 printable characters."),
], ids=["timer in year 10000", "finishing RUNNING", "child id with a newline"])
def test_an_episode_that_cannot_be_applied_fails_its_orchestration(server_factory, action, message):
    server = server_factory()
    worker = RawWorker(server.address)
    try:
        worker.stub.StartInstance(pb.CreateInstanceRequest(instanceId="bad", name="w"))
        item = worker.next()
        error = refused(worker.stub.CompleteOrchestratorTask, episode("bad", item.completionToken, action))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(message)
        state = state_of(worker.stub, "bad")
        assert state.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
        assert (state.failureDetails.errorType, state.failureDetails.errorMessage) == (
            "InvalidAction", error.details().removesuffix(" The orchestration was failed with this message."))
    finally:
        worker.close()


# ---- names no worker has ----------------------------------------------------------------------

def registered(ctx: task.OrchestrationContext, _):
    return (yield ctx.call_activity("nobody-has-this-activity"))


def test_unknown_names_wait_for_a_worker_that_has_them(shared_server):
    """A worker asks only for what it registered: work for other names stays in the backlog."""
    with running_worker(shared_server.address, [registered]), \
            client.TaskHubGrpcClient(host_address=shared_server.address) as hub:
        unknown = hub.schedule_new_orchestration("nobody-has-this-orchestrator", instance_id=new_id("unknown"))
        waiting = hub.schedule_new_orchestration(registered, instance_id=new_id("waiting"))
        with pytest.raises(TimeoutError):
            hub.wait_for_orchestration_completion(waiting, timeout=2)
        assert hub.get_orchestration_state(unknown).runtime_status == client.OrchestrationStatus.PENDING
        assert hub.get_orchestration_state(waiting).runtime_status == client.OrchestrationStatus.RUNNING
        hub.terminate_orchestration(unknown)
        hub.terminate_orchestration(waiting)


def test_unknown_names_fail_on_a_worker_that_takes_everything(hub_address):
    with running_worker(hub_address, [registered], filters=False), \
            client.TaskHubGrpcClient(host_address=hub_address) as hub:
        unknown = hub.schedule_new_orchestration("nobody-has-this-orchestrator", instance_id=new_id("unknown"))
        missing_activity = hub.schedule_new_orchestration(registered, instance_id=new_id("missing-activity"))
        states = [hub.wait_for_orchestration_completion(i, timeout=30) for i in (unknown, missing_activity)]
    assert [s.runtime_status for s in states] == [client.OrchestrationStatus.FAILED] * 2
    assert "'nobody-has-this-orchestrator' orchestrator was not registered" in states[0].failure_details.message
    assert "nobody-has-this-activity" in states[1].failure_details.message


# ---- instances: unknown, finished, duplicated ---------------------------------------------------

def test_events_for_unknown_instances_are_not_found_and_for_finished_ones_dropped(stub, hub_address):
    error = refused(stub.RaiseEvent, pb.RaiseEventRequest(instanceId=new_id("nobody"), name="e"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    instance_id = new_id("done")
    run_to_end(hub_address, instance_id)
    stub.RaiseEvent(pb.RaiseEventRequest(instanceId=instance_id, name="late"), timeout=10)
    assert state_of(stub, instance_id).orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED


def test_terminating_a_finished_instance_changes_nothing(stub, hub_address):
    instance_id = new_id("done")
    run_to_end(hub_address, instance_id)
    stub.TerminateInstance(pb.TerminateRequest(instanceId=instance_id, output=text('"too late"')), timeout=10)
    state = state_of(stub, instance_id)
    assert (state.orchestrationStatus, state.output.value) == (pb.ORCHESTRATION_STATUS_COMPLETED, '"done"')


def test_a_duplicate_id_is_refused_unless_the_reuse_policy_names_its_status(stub, hub_address):
    instance_id = new_id("dup")
    run_to_end(hub_address, instance_id)
    error = refused(stub.StartInstance, pb.CreateInstanceRequest(instanceId=instance_id, name="by-hand"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and instance_id in error.details()
    not_covering = pb.OrchestrationIdReusePolicy(replaceableStatus=[pb.ORCHESTRATION_STATUS_FAILED])
    assert refused(stub.StartInstance, pb.CreateInstanceRequest(
        instanceId=instance_id, name="by-hand", orchestrationIdReusePolicy=not_covering)).code() == \
        grpc.StatusCode.ALREADY_EXISTS
    covering = pb.OrchestrationIdReusePolicy(replaceableStatus=[pb.ORCHESTRATION_STATUS_COMPLETED])
    stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="by-hand", input=text('"again"'),
                                                orchestrationIdReusePolicy=covering), timeout=10)
    again = state_of(stub, instance_id)
    assert again.orchestrationStatus not in TERMINAL and again.input.value == '"again"'  # a fresh start
    stub.TerminateInstance(pb.TerminateRequest(instanceId=instance_id), timeout=10)


# Where our server is stricter than Microsoft's in-memory backend (which accepts these silently).
def test_our_server_refuses_what_would_do_nothing_or_harm(shared_server):
    with grpc.insecure_channel(shared_server.address) as channel:
        hub = stubs.TaskHubSidecarServiceStub(channel)
        instance_id = new_id("done")
        run_to_end(shared_server.address, instance_id)
        for call, request in [(hub.SuspendInstance, pb.SuspendRequest(instanceId=instance_id)),
                              (hub.ResumeInstance, pb.ResumeRequest(instanceId=instance_id))]:
            error = refused(call, request)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == (f"Orchestration instance '{instance_id}' has already finished (COMPLETED); "
                                       f"it cannot be {'suspended' if call is hub.SuspendInstance else 'resumed'}.")
        assert refused(hub.TerminateInstance, pb.TerminateRequest(instanceId=new_id("nobody"))).code() == \
            grpc.StatusCode.NOT_FOUND
        running = new_id("running")
        hub.StartInstance(pb.CreateInstanceRequest(instanceId=running, name="never-run"))
        assert refused(hub.PurgeInstances, pb.PurgeInstancesRequest(instanceId=running)).code() == \
            grpc.StatusCode.FAILED_PRECONDITION
        for request in [pb.GetInstanceRequest(instanceId=""), pb.GetInstanceRequest(instanceId="tab\there"),
                        pb.GetInstanceRequest(instanceId="x" * 257)]:
            assert refused(hub.GetInstance, request).code() == grpc.StatusCode.INVALID_ARGUMENT
        hub.TerminateInstance(pb.TerminateRequest(instanceId=running))


def test_text_postgresql_cannot_keep_is_refused_and_fails_a_completion(server_factory, postgres_cluster):
    """PostgreSQL text holds no NUL character (SQLite's does): such a request is INVALID_ARGUMENT, and such
    a completion is settled as a failure like any other that cannot be applied."""
    server = server_factory(store_url=postgres_cluster.new_database())
    worker = RawWorker(server.address)
    try:
        error = refused(worker.stub.StartInstance, pb.CreateInstanceRequest(instanceId="nul", name="w\x00"))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == ("The PostgreSQL store cannot keep this request: PostgreSQL text fields cannot "
                                   "contain NUL (0x00) bytes.")
        worker.stub.StartInstance(pb.CreateInstanceRequest(instanceId="nul", name="w"))
        item = worker.next()
        error = refused(worker.stub.CompleteOrchestratorTask, episode("nul", item.completionToken, complete('"\x00"')))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().endswith("The orchestration was failed with this message.")
        assert worker.idle(wait=1.0)
        state = state_of(worker.stub, "nul")
        assert (state.orchestrationStatus, state.failureDetails.errorType) == (pb.ORCHESTRATION_STATUS_FAILED,
                                                                               "Unstorable")
    finally:
        worker.close()
