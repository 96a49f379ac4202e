"""Our task hub server over gRPC, driven with raw stubs: error codes, fencing of stale tokens,
release of work held by a vanished stream, waits and deadlines, filters and concurrency limits."""

import asyncio
import threading
import time
import uuid

import grpc
import pytest

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.server import servicer
from durabletask.server.app import TaskHubServer
from durabletask.server.stores.sqlite import SqliteStore
from tests.support.hub import RawWorker, complete, episode, kinds, run_async, schedule, text


@pytest.fixture
def client(shared_server):
    with grpc.insecure_channel(shared_server.address) as channel:
        yield stubs.TaskHubSidecarServiceStub(channel)


def new_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def start(stub, name="workflow", instance_id=None, **kwargs) -> str:
    return stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id or new_id(name), name=name,
                                                       **kwargs)).instanceId


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value


def test_unknown_instances_are_not_found(client):
    for call, request in [(client.RaiseEvent, pb.RaiseEventRequest(instanceId="nobody", name="e")),
                          (client.TerminateInstance, pb.TerminateRequest(instanceId="nobody")),
                          (client.SuspendInstance, pb.SuspendRequest(instanceId="nobody")),
                          (client.ResumeInstance, pb.ResumeRequest(instanceId="nobody"))]:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "nobody" in error.details()
    assert not client.GetInstance(pb.GetInstanceRequest(instanceId="nobody")).exists


@pytest.mark.parametrize("request_", [
    pb.CreateInstanceRequest(instanceId="no-name"),
    pb.CreateInstanceRequest(instanceId="bad\x00id", name="workflow"),
    pb.CreateInstanceRequest(instanceId="x" * 300, name="workflow"),
], ids=["missing name", "control character in id", "id too long"])
def test_malformed_start_requests_are_invalid_arguments(client, request_):
    error = rpc_error(client.StartInstance, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().endswith(".")


def test_empty_instance_ids_are_invalid_arguments(client):
    for call, request in [(client.RaiseEvent, pb.RaiseEventRequest(name="e")),
                          (client.GetInstance, pb.GetInstanceRequest()),
                          (client.PurgeInstances, pb.PurgeInstancesRequest(instanceId=""))]:
        assert rpc_error(call, request).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_duplicate_start_is_already_exists(client):
    instance_id = start(client)
    assert rpc_error(client.StartInstance, pb.CreateInstanceRequest(
        instanceId=instance_id, name="workflow")).code() == grpc.StatusCode.ALREADY_EXISTS


def test_oversized_payloads_are_refused_naming_the_limit(server_factory):
    server = server_factory("--max-payload-bytes", "1000")
    with grpc.insecure_channel(server.address) as channel:
        stub = stubs.TaskHubSidecarServiceStub(channel)
        error = rpc_error(stub.StartInstance, pb.CreateInstanceRequest(instanceId="big", name="w",
                                                                       input=text("x" * 2000)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1000" in error.details() and "--max-payload-bytes" in error.details()
        assert not stub.GetInstance(pb.GetInstanceRequest(instanceId="big")).exists
        start(stub, instance_id="small", input=text("x" * 900))
        error = rpc_error(stub.RaiseEvent, pb.RaiseEventRequest(instanceId="small", name="e", input=text("y" * 1001)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_entity_rpcs_are_unimplemented_with_a_reason(client):
    error = rpc_error(client.SignalEntity, pb.SignalEntityRequest(instanceId="@counter@a", name="add"))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "entities" in error.details().lower()


def test_a_stale_token_is_refused_once_the_work_passed_to_another_worker(server_factory):
    server = server_factory()
    gone = RawWorker(server.address)
    instance_id = start(gone.stub)
    stale = gone.next()
    gone.close()  # its work is released and goes to the next worker
    holder = RawWorker(server.address)
    try:
        held = holder.next()
        assert held.orchestratorRequest.instanceId == instance_id
        error = rpc_error(holder.stub.CompleteOrchestratorTask, episode(instance_id, stale.completionToken,
                                                                        complete('"stale"')))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "token" in error.details()
        holder.stub.CompleteOrchestratorTask(episode(instance_id, held.completionToken, complete('"fresh"')))
        state = holder.stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True))
        assert state.orchestrationState.output.value == '"fresh"'
        error = rpc_error(holder.stub.AbandonTaskActivityWorkItem, pb.AbandonActivityTaskRequest(
            completionToken="made-up"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        holder.close()


def test_leases_held_by_live_streams_are_renewed(server_factory):
    server = server_factory("--lease-seconds", "1")
    busy, other = RawWorker(server.address), None
    try:
        instance_id = start(busy.stub)
        item = busy.next()
        other = RawWorker(server.address)
        assert other.idle(wait=2.5)  # well past the 1 s lease: still busy's
        busy.stub.CompleteOrchestratorTask(episode(instance_id, item.completionToken, complete()))
    finally:
        busy.close()
        if other:
            other.close()


def test_work_held_by_a_vanished_stream_is_released_at_once(server_factory):
    server = server_factory("--lease-seconds", "300")
    first = RawWorker(server.address)
    instance_id = start(first.stub)
    first.next()
    first.close()
    second = RawWorker(server.address)
    try:
        started = time.monotonic()
        assert second.next(timeout=5).orchestratorRequest.instanceId == instance_id
        assert time.monotonic() - started < 3
    finally:
        second.close()


def test_wait_for_completion_honours_the_deadline(client):
    instance_id = start(client, name="never-run-" + uuid.uuid4().hex)
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        client.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId=instance_id), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 2


def test_wait_for_completion_returns_when_the_instance_finishes(server_factory):
    server = server_factory()
    worker = RawWorker(server.address)
    try:
        instance_id = start(worker.stub)
        answer = {}
        waiter = threading.Thread(target=lambda: answer.setdefault("state", worker.stub.WaitForInstanceCompletion(
            pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True), timeout=10)))
        waiter.start()
        item = worker.next()
        time.sleep(0.2)
        finished = time.monotonic()
        worker.stub.CompleteOrchestratorTask(episode(instance_id, item.completionToken, complete('"ok"')))
        waiter.join(10)
        assert time.monotonic() - finished < 1
        state = answer["state"].orchestrationState
        assert (state.orchestrationStatus, state.output.value) == (pb.ORCHESTRATION_STATUS_COMPLETED, '"ok"')
    finally:
        worker.close()


def test_streams_only_get_work_matching_their_filters(server_factory):
    server = server_factory()
    only_b = RawWorker(server.address, pb.GetWorkItemsRequest(workItemFilters=pb.WorkItemFilters(
        orchestrations=[pb.OrchestrationFilter(name="b", versions=["2.0"])])))
    everything = None
    try:
        start(only_b.stub, name="a", version=text("2.0"))
        start(only_b.stub, name="b", version=text("1.0"))
        wanted = start(only_b.stub, name="b", version=text("2.0"))
        assert only_b.next().orchestratorRequest.instanceId == wanted
        assert only_b.idle()
        everything = RawWorker(server.address)
        names = {everything.next().orchestratorRequest.newEvents[1].executionStarted.name for _ in range(2)}
        assert names == {"a", "b"}
    finally:
        only_b.close()
        if everything:
            everything.close()


def test_a_stream_holds_no_more_than_its_concurrency_limit(server_factory):
    server = server_factory()
    worker = RawWorker(server.address, pb.GetWorkItemsRequest(maxConcurrentOrchestrationWorkItems=1))
    try:
        ids = [start(worker.stub, name=f"w{i}") for i in range(2)]
        first = worker.next()
        assert worker.idle()
        instance_id = first.orchestratorRequest.instanceId
        worker.stub.CompleteOrchestratorTask(episode(instance_id, first.completionToken, complete()))
        second = worker.next()
        assert {instance_id, second.orchestratorRequest.instanceId} == set(ids)
    finally:
        worker.close()


def test_history_can_be_streamed(server_factory):
    server = server_factory()
    worker = RawWorker(server.address)
    try:
        instance_id = start(worker.stub)
        item = worker.next()
        worker.stub.CompleteOrchestratorTask(episode(instance_id, item.completionToken, schedule(1, "step")))
        chunks = list(worker.stub.StreamInstanceHistory(pb.StreamInstanceHistoryRequest(instanceId=instance_id)))
        events = [e for chunk in chunks for e in chunk.events]
        assert kinds(events) == ["orchestratorStarted", "executionStarted", "taskScheduled", "orchestratorCompleted"]
    finally:
        worker.close()


@run_async
async def test_an_idle_work_item_stream_gets_health_pings(tmp_path, monkeypatch):
    """The SDKs give up on a stream that stays silent for two minutes: an idle one gets a health
    ping every HEALTH_PING_SECONDS (shortened here)."""
    monkeypatch.setattr(servicer, "HEALTH_PING_SECONDS", 0.2)
    server = await TaskHubServer(SqliteStore(str(tmp_path / "hub.db")), port=0).start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stream = stubs.TaskHubSidecarServiceStub(channel).GetWorkItems(pb.GetWorkItemsRequest())
            opened = time.monotonic()
            items = [await asyncio.wait_for(stream.read(), 5.0) for _ in range(2)]
            assert [item.WhichOneof("request") for item in items] == ["healthPing", "healthPing"]
            assert time.monotonic() - opened >= 0.35
            stream.cancel()
    finally:
        await server.stop(grace=0)
