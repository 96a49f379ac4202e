"""The worker's work item stream against a scripted hub that misbehaves on purpose."""

import threading
from concurrent import futures

import grpc
import pytest
from google.protobuf import wrappers_pb2

from durabletask import worker
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs


def shout(ctx, text):
    return text.upper()


SHOUT_HELLO = pb.WorkItem(completionToken="token-7", activityRequest=pb.ActivityRequest(
    name="shout", taskId=3, input=wrappers_pb2.StringValue(value='"hello"'),
    orchestrationInstance=pb.OrchestrationInstance(instanceId="inst")))


class ScriptedHub(stubs.TaskHubSidecarServiceServicer):
    """Resets the first stream, closes the second cleanly, and hands out one work item on the third."""

    def __init__(self, work_item=SHOUT_HELLO):
        self.work_item = work_item
        self.requests: list[pb.GetWorkItemsRequest] = []
        self.completed: list = []
        self.done = threading.Event()

    def GetWorkItems(self, request, context):
        self.requests.append(request)
        if len(self.requests) == 1:
            context.abort(grpc.StatusCode.CANCELLED, "stream reset by the hub")
        if len(self.requests) == 2:
            return
        yield self.work_item
        self.done.wait(10)

    def CompleteActivityTask(self, request, context):
        return self._record(request, pb.CompleteTaskResponse())

    def CompleteOrchestratorTask(self, request, context):
        return self._record(request, pb.CompleteTaskResponse())

    def AbandonTaskOrchestratorWorkItem(self, request, context):
        return self._record(request, pb.AbandonOrchestrationTaskResponse())

    def _record(self, request, response):
        self.completed.append(request)
        self.done.set()
        return response


@pytest.fixture
def scripted_hub(request):
    hub = ScriptedHub(getattr(request, "param", SHOUT_HELLO))
    server = grpc.server(futures.ThreadPoolExecutor(4))
    stubs.add_TaskHubSidecarServiceServicer_to_server(hub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield hub, f"127.0.0.1:{port}"
    hub.done.set()
    server.stop(0)


def test_worker_survives_stream_reset_and_clean_close_then_completes_work(scripted_hub):
    hub, address = scripted_hub
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_activity(shout)
    w.use_work_item_filters()
    with w:
        w.start()
        assert hub.done.wait(10), "the worker never came back for work"
    assert len(hub.requests) == 3
    response = hub.completed[0]
    assert (response.completionToken, response.taskId, response.result.value) == ("token-7", 3, '"HELLO"')
    filters = hub.requests[-1].workItemFilters
    assert [f.name for f in filters.activities] == ["shout"]


def test_by_default_the_worker_asks_only_for_what_it_registered(scripted_hub):
    hub, address = scripted_hub
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_activity(shout)
    with w:
        w.start()
        assert hub.done.wait(10)
    filters = hub.requests[-1].workItemFilters
    assert ([f.name for f in filters.orchestrations], [f.name for f in filters.activities]) == ([], ["shout"])


def test_without_filters_the_worker_asks_for_all_work(scripted_hub):
    hub, address = scripted_hub
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_activity(shout)
    w.use_work_item_filters(None)
    with w:
        w.start()
        assert hub.done.wait(10)
    assert not hub.requests[-1].HasField("workItemFilters")


def test_strict_versioning_puts_the_worker_version_in_derived_filters(scripted_hub):
    hub, address = scripted_hub
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_activity(shout)
    w.use_versioning(worker.VersioningOptions(version="2.0", match_strategy=worker.VersionMatchStrategy.STRICT))
    w.use_work_item_filters()
    with w:
        w.start()
        assert hub.done.wait(10)
    assert [(f.name, list(f.versions)) for f in hub.requests[-1].workItemFilters.activities] == [("shout", ["2.0"])]


def test_current_or_older_versioning_sends_the_newest_accepted_version(scripted_hub):
    hub, address = scripted_hub
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_activity(shout)
    w.use_versioning(worker.VersioningOptions(version="2.0",
                                              match_strategy=worker.VersionMatchStrategy.CURRENT_OR_OLDER))
    w.use_work_item_filters()
    with w:
        w.start()
        assert hub.done.wait(10)
    [activity_filter] = hub.requests[-1].workItemFilters.activities
    assert (activity_filter.name, list(activity_filter.versions), activity_filter.maxVersion) == ("shout", [], "2.0")


def greet(ctx, _):
    return "hi"


def orchestration_work_item(version):
    started = pb.HistoryEvent(eventId=-1, executionStarted=pb.ExecutionStartedEvent(
        name="greet", version=wrappers_pb2.StringValue(value=version)))
    return pb.WorkItem(completionToken="token-9", orchestratorRequest=pb.OrchestratorRequest(
        instanceId="inst-v", newEvents=[started]))


def run_strict_v1_worker_until_answered(hub, address):
    """A STRICT/REJECT worker of version 1.0 running `greet`, until it has answered the hub's one work item."""
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.add_orchestrator(greet)
    w.use_versioning(worker.VersioningOptions(version="1.0", match_strategy=worker.VersionMatchStrategy.STRICT,
                                              failure_strategy=worker.VersionFailureStrategy.REJECT))
    with w:
        w.start()
        assert hub.done.wait(10)


@pytest.mark.parametrize("scripted_hub", [orchestration_work_item("2.0")], indirect=True)
def test_reject_hands_a_mismatched_orchestration_back_with_its_token(scripted_hub):
    hub, address = scripted_hub
    run_strict_v1_worker_until_answered(hub, address)
    assert hub.completed == [pb.AbandonOrchestrationTaskRequest(completionToken="token-9")]


@pytest.mark.parametrize("scripted_hub", [orchestration_work_item("1.0")], indirect=True)
def test_matching_orchestration_is_completed_with_its_token(scripted_hub):
    hub, address = scripted_hub
    run_strict_v1_worker_until_answered(hub, address)
    [response] = hub.completed
    assert (response.completionToken, response.instanceId) == ("token-9", "inst-v")
    assert response.actions[0].completeOrchestration.result.value == '"hi"'
