"""The gRPC surface under malformed and random input (hypothesis, derandomized): random bytes to every
method of TaskHubSidecarService, and valid-but-weird messages (empty and huge strings, odd enum values,
out-of-range times, random field combinations) to the client and worker RPCs, including completions
that hold a real lease. The server must answer every call with a deliberate status code — never
UNKNOWN or INTERNAL, which mean an unhandled exception — and survive; afterwards a normal
orchestration still runs, the instances made before still read back unchanged, and SQLite's
integrity check passes. The number of inputs tried is printed at the end of the module."""

import collections
import sqlite3
import uuid

import grpc
import pytest
from google.protobuf import timestamp_pb2, wrappers_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durabletask import client as dt_client
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from tests.support.hub import RawWorker, activity_result, complete, episode, schedule, text
from tests.support.processes import ServerProcess
from tests.support.sdk import new_id, running_worker

PAYLOAD_LIMIT = 2000  # the server's --max-payload-bytes here, so that "huge" stays cheap
SERVICE = pb.DESCRIPTOR.services_by_name["TaskHubSidecarService"]
# Codes the server answers on purpose (DEADLINE_EXCEEDED: a wait that outlived the client's deadline).
DELIBERATE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DEADLINE_EXCEEDED}
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPISODE, ACTIVITY = "fuzz-episode", "fuzz-activity"  # what the leased-completion tests' worker asks for

tried: collections.Counter = collections.Counter()

# ---- strategies ------------------------------------------------------------------------------
CHARACTERS = st.characters(codec="utf-8")  # any character a protobuf string can hold: no lone surrogates
WEIRD_TEXT = st.one_of(
    st.just(""),
    st.text(CHARACTERS, max_size=12),  # controls, combining marks, astral planes
    st.builds(lambda c, n: c * n, CHARACTERS, st.integers(250, 260)),  # around the instance id limit
    st.builds(lambda c: c * (PAYLOAD_LIMIT + 1), st.sampled_from("x\u00e9\U0001f600")),  # over the payload limit
)
INSTANCE_IDS = st.one_of(WEIRD_TEXT, st.sampled_from(["fz-a", "fz-b", "fz-c"]))  # a small pool: duplicates
OPTIONAL_TEXT = st.one_of(st.none(), WEIRD_TEXT.map(lambda v: wrappers_pb2.StringValue(value=v)))
INT32 = st.integers(-2**31, 2**31 - 1)
STATUSES = st.one_of(st.sampled_from(list(pb.OrchestrationStatus.values())), INT32)
TIMES = st.one_of(st.none(), st.builds(
    timestamp_pb2.Timestamp, seconds=st.one_of(st.integers(-62_135_596_800, 253_402_300_799),
                                               st.integers(-2**63, 2**63 - 1)),
    nanos=st.one_of(st.integers(0, 999_999_999), INT32)))
TAGS = st.dictionaries(WEIRD_TEXT, WEIRD_TEXT, max_size=2)
TOKENS = st.one_of(WEIRD_TEXT, st.from_regex(r"\Aa[0-9\u00b2]{1,25}\.[0-9a-f]{0,16}\Z"),
                   st.from_regex(r"\Ao[0-9a-f]{0,16}\.fz-[abc]\Z"))
FAILURES = st.one_of(st.none(), st.builds(pb.TaskFailureDetails, errorType=WEIRD_TEXT, errorMessage=WEIRD_TEXT,
                                          stackTrace=OPTIONAL_TEXT, isNonRetriable=st.booleans()))


def action(**kind) -> st.SearchStrategy:
    return st.builds(pb.OrchestratorAction, id=INT32, **kind)


ACTIONS = st.one_of(
    action(scheduleTask=st.builds(pb.ScheduleTaskAction, name=WEIRD_TEXT, version=OPTIONAL_TEXT,
                                  input=OPTIONAL_TEXT, tags=TAGS)),
    action(createTimer=st.builds(pb.CreateTimerAction, fireAt=TIMES)),
    action(createSubOrchestration=st.builds(pb.CreateSubOrchestrationAction, instanceId=INSTANCE_IDS,
                                            name=WEIRD_TEXT, version=OPTIONAL_TEXT, input=OPTIONAL_TEXT)),
    action(sendEvent=st.builds(pb.SendEventAction, instance=st.builds(pb.OrchestrationInstance,
                                                                      instanceId=INSTANCE_IDS),
                               name=WEIRD_TEXT, data=OPTIONAL_TEXT)),
    action(completeOrchestration=st.builds(pb.CompleteOrchestrationAction, orchestrationStatus=STATUSES,
                                           result=OPTIONAL_TEXT, details=OPTIONAL_TEXT, newVersion=OPTIONAL_TEXT,
                                           failureDetails=FAILURES)),
    action(terminateOrchestration=st.builds(pb.TerminateOrchestrationAction, instanceId=INSTANCE_IDS,
                                            reason=OPTIONAL_TEXT, recurse=st.booleans())),
)
EPISODES = st.builds(pb.OrchestratorResponse, actions=st.lists(ACTIONS, max_size=4), customStatus=OPTIONAL_TEXT)
ACTIVITY_RESULTS = st.builds(pb.ActivityResponse, taskId=INT32, result=OPTIONAL_TEXT, failureDetails=FAILURES)

# Valid-but-weird requests, per RPC.
REQUESTS = {
    "StartInstance": st.builds(
        pb.CreateInstanceRequest, instanceId=INSTANCE_IDS, name=WEIRD_TEXT, version=OPTIONAL_TEXT,
        input=OPTIONAL_TEXT, scheduledStartTimestamp=TIMES, tags=TAGS, executionId=OPTIONAL_TEXT,
        orchestrationIdReusePolicy=st.one_of(st.none(), st.builds(
            pb.OrchestrationIdReusePolicy, replaceableStatus=st.lists(STATUSES, max_size=4)))),
    "RaiseEvent": st.builds(pb.RaiseEventRequest, instanceId=INSTANCE_IDS, name=WEIRD_TEXT, input=OPTIONAL_TEXT),
    "TerminateInstance": st.builds(pb.TerminateRequest, instanceId=INSTANCE_IDS, output=OPTIONAL_TEXT,
                                   recursive=st.booleans()),
    "SuspendInstance": st.builds(pb.SuspendRequest, instanceId=INSTANCE_IDS, reason=OPTIONAL_TEXT),
    "ResumeInstance": st.builds(pb.ResumeRequest, instanceId=INSTANCE_IDS, reason=OPTIONAL_TEXT),
    "GetInstance": st.builds(pb.GetInstanceRequest, instanceId=INSTANCE_IDS, getInputsAndOutputs=st.booleans()),
    "RestartInstance": st.builds(pb.RestartInstanceRequest, instanceId=INSTANCE_IDS,
                                 restartWithNewInstanceId=st.booleans()),
    "QueryInstances": st.builds(pb.QueryInstancesRequest, query=st.builds(
        pb.InstanceQuery, runtimeStatus=st.lists(STATUSES, max_size=4), createdTimeFrom=TIMES, createdTimeTo=TIMES,
        maxInstanceCount=INT32, continuationToken=OPTIONAL_TEXT, instanceIdPrefix=OPTIONAL_TEXT,
        fetchInputsAndOutputs=st.booleans())),
    "ListInstanceIds": st.builds(
        pb.ListInstanceIdsRequest, runtimeStatus=st.lists(STATUSES, max_size=4), completedTimeFrom=TIMES,
        completedTimeTo=TIMES, pageSize=INT32, lastInstanceKey=OPTIONAL_TEXT),
    "PurgeInstances": st.one_of(
        st.builds(pb.PurgeInstancesRequest, instanceId=INSTANCE_IDS, recursive=st.booleans()),
        st.builds(pb.PurgeInstancesRequest, instanceBatch=st.builds(
            pb.InstanceBatch, instanceIds=st.lists(INSTANCE_IDS, max_size=4)), recursive=st.booleans()),
        st.builds(pb.PurgeInstancesRequest, purgeInstanceFilter=st.builds(
            pb.PurgeInstanceFilter, createdTimeFrom=TIMES, createdTimeTo=TIMES,
            runtimeStatus=st.lists(STATUSES, max_size=4)), recursive=st.booleans()),
        st.just(pb.PurgeInstancesRequest())),
    "CompleteOrchestratorTask": st.builds(
        pb.OrchestratorResponse, instanceId=INSTANCE_IDS, completionToken=TOKENS,
        actions=st.lists(ACTIONS, max_size=3), customStatus=OPTIONAL_TEXT),
    "CompleteActivityTask": st.builds(pb.ActivityResponse, instanceId=INSTANCE_IDS, taskId=INT32,
                                      result=OPTIONAL_TEXT, failureDetails=FAILURES, completionToken=TOKENS),
    "AbandonTaskOrchestratorWorkItem": st.builds(pb.AbandonOrchestrationTaskRequest, completionToken=TOKENS),
    "AbandonTaskActivityWorkItem": st.builds(pb.AbandonActivityTaskRequest, completionToken=TOKENS),
}


# ---- the server, and what must survive it ---------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("fuzz") / "hub.db"
    hub = ServerProcess(f"sqlite:///{path}", extra_args=("--max-payload-bytes", str(PAYLOAD_LIMIT))).start()
    hub.path = path
    yield hub
    hub.stop()
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\nfuzz: {sum(tried.values())} inputs tried ({', '.join(f'{k} {v}' for k, v in tried.items())})")


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as open_channel:
        yield open_channel


@pytest.fixture(scope="module")
def stub(channel):
    return stubs.TaskHubSidecarServiceStub(channel)


@pytest.fixture(scope="module")
def keepers(stub):
    """Instances made before the fuzzing, one pending and one suspended, as they read back then."""
    ids = [f"keeper-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for instance_id in ids:
        stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="keeper", input=text('"kept"'),
                                                     tags={"k": "v"}))
    stub.SuspendInstance(pb.SuspendRequest(instanceId=ids[1], reason=text("kept aside")))
    return {instance_id: read_back(stub, instance_id) for instance_id in ids}


def read_back(stub, instance_id: str) -> pb.OrchestrationState:
    response = stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True), timeout=5)
    assert response.exists, instance_id
    return response.orchestrationState


def answered_on_purpose(call) -> None:
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() in DELIBERATE, f"{error.code()}: {error.details()}"
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED or error.details().endswith("."), error.details()


def raw_call(channel, method: str, payload: bytes) -> None:
    """One call with bytes as the request body; a stream is read for its first message, then cancelled."""
    path = f"/{SERVICE.full_name}/{method}"
    if SERVICE.methods_by_name[method].server_streaming:
        responses = channel.unary_stream(path)(payload, timeout=0.3)
        try:
            next(responses, None)
        finally:
            responses.cancel()
    else:
        channel.unary_unary(path)(payload, timeout=0.5)


# ---- the fuzzing ------------------------------------------------------------------------------
@settings(FUZZ, max_examples=1500)
@given(method=st.sampled_from(sorted(SERVICE.methods_by_name)), payload=st.binary(max_size=64))
def test_random_bytes_get_a_status_code_from_every_method(keepers, channel, method, payload):
    tried["random bytes"] += 1
    answered_on_purpose(lambda: raw_call(channel, method, payload))


@pytest.mark.parametrize("rpc", sorted(REQUESTS))
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_weird_messages_get_a_status_code(keepers, stub, rpc, data):
    request = data.draw(REQUESTS[rpc])
    tried["weird messages"] += 1
    answered_on_purpose(lambda: getattr(stub, rpc)(request, timeout=5))


@pytest.fixture(scope="module")
def leased(server):
    """A worker that asks only for the fuzzed orchestration and activity, so each test holds a real lease."""
    worker = RawWorker(server.address, pb.GetWorkItemsRequest(workItemFilters=pb.WorkItemFilters(
        orchestrations=[pb.OrchestrationFilter(name=EPISODE)], activities=[pb.ActivityFilter(name=ACTIVITY)])))
    yield worker
    worker.close()


def take(worker: RawWorker, instance_id: str, kind: str) -> pb.WorkItem:
    """The next `kind` work item of `instance_id`; earlier fuzzing's leftovers are finished on the way."""
    while True:
        item = worker.next()
        which = item.WhichOneof("request")
        request = getattr(item, which)
        owner = request.instanceId if which == "orchestratorRequest" else request.orchestrationInstance.instanceId
        if which == kind and owner == instance_id:
            return item
        if which == "orchestratorRequest":
            worker.stub.CompleteOrchestratorTask(episode(owner, item.completionToken, complete()))
        else:
            worker.stub.CompleteActivityTask(activity_result(request, item.completionToken, '"leftover"'))


def start_leased(worker, prefix: str):
    """A new EPISODE instance and its first work item, leased by `worker`."""
    instance_id = new_id(prefix)
    worker.stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name=EPISODE))
    return instance_id, take(worker, instance_id, "orchestratorRequest")


@settings(FUZZ, max_examples=200)
@given(response=EPISODES)
def test_weird_episodes_with_a_real_lease(keepers, leased, response):
    tried["leased episodes"] += 1
    instance_id, item = start_leased(leased, "fz-episode")
    response.instanceId, response.completionToken = instance_id, item.completionToken
    answered_on_purpose(lambda: leased.stub.CompleteOrchestratorTask(response, timeout=5))
    state = read_back(leased.stub, instance_id)
    assert state.orchestrationStatus in pb.OrchestrationStatus.values()


@settings(FUZZ, max_examples=100)
@given(result=ACTIVITY_RESULTS)
def test_weird_activity_results_with_a_real_lease(keepers, leased, result):
    tried["leased activity results"] += 1
    instance_id, item = start_leased(leased, "fz-activity")
    leased.stub.CompleteOrchestratorTask(episode(instance_id, item.completionToken, schedule(1, ACTIVITY)))
    activity = take(leased, instance_id, "activityRequest")
    result.instanceId, result.completionToken = instance_id, activity.completionToken
    answered_on_purpose(lambda: leased.stub.CompleteActivityTask(result, timeout=5))
    # Whatever was sent, the orchestration hears back about its activity and can finish.
    item = take(leased, instance_id, "orchestratorRequest")
    assert item.orchestratorRequest.newEvents[-1].WhichOneof("eventType") in ("taskCompleted", "taskFailed")
    leased.stub.CompleteOrchestratorTask(episode(instance_id, item.completionToken, complete()))


# ---- afterwards -------------------------------------------------------------------------------
def hello(ctx, name):
    return (yield ctx.call_activity(greet, input=name))


def greet(ctx, name):
    return f"Hello, {name}!"


def test_afterwards_the_hub_still_works_and_the_store_is_intact(server, stub, keepers):
    assert server.process.poll() is None, "the server process died"
    with running_worker(server.address, orchestrators=[hello], activities=[greet]):
        hub = dt_client.TaskHubGrpcClient(host_address=server.address)
        instance_id = hub.schedule_new_orchestration(hello, input="fuzz")
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == '"Hello, fuzz!"'
    for instance_id, before in keepers.items():
        after = read_back(stub, instance_id)
        assert (after.name, after.input, after.orchestrationStatus, after.createdTimestamp, dict(after.tags)) == \
            (before.name, before.input, before.orchestrationStatus, before.createdTimestamp, dict(before.tags))
    with sqlite3.connect(f"file:{server.path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
