"""The TaskHubSidecarService: translates gRPC requests into store calls and store state back into
protocol messages. Validation and error codes live here; semantics live in the store and in
`episodes.py`."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import defaultdict

import grpc
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2
from google.protobuf.message import DecodeError, Message

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.server.dispatcher import END_OF_STREAM, Dispatcher
from durabletask.server.episodes import epoch, optional_string, timestamp
from durabletask.server.metrics import ACTIVITY, ORCHESTRATION, HubMetrics
from durabletask.server.stores.base import (
    TERMINAL_STATUSES, CommitNotice, InstanceExists, InstanceNotFound, InstanceQuery, InstanceState, NameFilter,
    NewInstance, PurgeFilter, StaleToken, Store, StoreError, StoreUnavailable, Unstorable, WorkFilters, WrongState,
    status_name)

HEALTH_PING_SECONDS = 30.0  # well inside the SDK's 120 s silent-disconnect timeout
ABANDON_BACKOFF_SECONDS = 0.5
DEFAULT_CONCURRENCY = 100
DEFAULT_PAGE_SIZE = 100
MAX_INSTANCE_ID_LENGTH = 256
HISTORY_CHUNK_EVENTS = 200
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
FIRST_SECOND, LAST_SECOND = -62_135_596_800, 253_402_300_799

# What a worker may finish an orchestration with (completeOrchestration.orchestrationStatus).
COMPLETION_STATUSES = TERMINAL_STATUSES | {pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW}

ERROR_CODES = {
    InstanceNotFound: grpc.StatusCode.NOT_FOUND,
    InstanceExists: grpc.StatusCode.ALREADY_EXISTS,
    StaleToken: grpc.StatusCode.FAILED_PRECONDITION,
    WrongState: grpc.StatusCode.FAILED_PRECONDITION,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,  # callers retry UNAVAILABLE by convention
}


def to_orchestration_state(state: InstanceState) -> pb.OrchestrationState:
    return pb.OrchestrationState(
        instanceId=state.instance_id, name=state.name, version=optional_string(state.version or None),
        orchestrationStatus=state.status, createdTimestamp=timestamp(state.created_at),
        lastUpdatedTimestamp=timestamp(state.updated_at),
        scheduledStartTimestamp=timestamp(state.scheduled_start) if state.scheduled_start else None,
        completedTimestamp=timestamp(state.completed_at) if state.completed_at else None,
        input=optional_string(state.input), output=optional_string(state.output),
        customStatus=optional_string(state.custom_status), failureDetails=state.failure_details,
        executionId=optional_string(state.execution_id), parentInstanceId=optional_string(state.parent_instance_id),
        tags=state.tags)


def instance_id_problem(instance_id: str) -> str | None:
    if not instance_id:
        return "An instance id is required."
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH or not instance_id.isprintable():
        return f"Instance ids must be 1 to {MAX_INSTANCE_ID_LENGTH} printable characters."
    return None


def time_problem(what: str, ts: timestamp_pb2.Timestamp) -> str | None:
    if FIRST_SECOND <= ts.seconds <= LAST_SECOND and 0 <= ts.nanos < 1_000_000_000:
        return None
    return f"The {what} is not a valid time (years 1 to 9999, nanos 0 to 999,999,999)."


def failed_episode(request: pb.OrchestratorResponse, error_type: str, message: str) -> pb.OrchestratorResponse:
    """What a refused episode commits instead: its orchestration fails, with the reason as the failure."""
    return pb.OrchestratorResponse(
        instanceId=request.instanceId, completionToken=request.completionToken,
        actions=[pb.OrchestratorAction(id=-1, completeOrchestration=pb.CompleteOrchestrationAction(
            orchestrationStatus=pb.ORCHESTRATION_STATUS_FAILED, failureDetails=pb.TaskFailureDetails(
                errorType=error_type, errorMessage=message, isNonRetriable=True)))])


class _Undecodable:
    """Stands in for a request whose bytes are not a message of the method's type."""


UNDECODABLE = _Undecodable()


class RefuseUndecodableRequests(grpc.aio.ServerInterceptor):
    """Answers a request that does not decode with INVALID_ARGUMENT and one sentence, where gRPC
    would answer UNKNOWN and log a traceback for every malformed call."""

    def __init__(self):
        self._lenient: dict[str, grpc.RpcMethodHandler] = {}  # method -> its handler, made lenient once

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method not in self._lenient:
            handler = await continuation(handler_call_details)
            if handler is None or handler.request_deserializer is None:
                return handler
            self._lenient[method] = self._lenient_handler(handler, method)
        return self._lenient[method]

    @staticmethod
    def _lenient_handler(handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        decode = handler.request_deserializer
        method = full_method.rpartition("/")[2]
        refusal = (f"The {method} request is not a valid "
                   f"{getattr(getattr(decode, '__self__', None), '__name__', 'protocol buffer')} message.")

        def lenient_decode(data: bytes):
            try:
                return decode(data)
            except DecodeError:
                return UNDECODABLE

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                if request is UNDECODABLE:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
                return await inner(request, context)
            return handler._replace(request_deserializer=lenient_decode, unary_unary=unary)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request, context):
                if request is UNDECODABLE:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
                async for response in inner_stream(request, context):
                    yield response
            return handler._replace(request_deserializer=lenient_decode, unary_stream=stream)
        return handler


def _name_filters(filters) -> tuple[NameFilter, ...]:
    return tuple(NameFilter(f.name, tuple(f.versions), f.maxVersion or None) for f in filters)


def work_filters(request: pb.GetWorkItemsRequest) -> WorkFilters:
    if not request.HasField("workItemFilters"):
        return WorkFilters()
    wanted = request.workItemFilters
    return WorkFilters(_name_filters(wanted.orchestrations), _name_filters(wanted.activities))


class StatusWatchers:
    """Wakes WaitForInstance* calls when their instance's status changes."""

    def __init__(self):
        self._watching: dict[str, set[asyncio.Event]] = defaultdict(set)

    def on_commit(self, notice: CommitNotice) -> None:
        for instance_id in notice.status_changed & self._watching.keys():
            for changed in self._watching[instance_id]:
                changed.set()

    def watch(self, instance_id: str) -> asyncio.Event:
        changed = asyncio.Event()
        self._watching[instance_id].add(changed)
        return changed

    def unwatch(self, instance_id: str, changed: asyncio.Event) -> None:
        self._watching[instance_id].discard(changed)
        if not self._watching[instance_id]:
            del self._watching[instance_id]


class TaskHubServicer(stubs.TaskHubSidecarServiceServicer):
    def __init__(self, store: Store, dispatcher: Dispatcher, watchers: StatusWatchers, max_payload_bytes: int,
                 metrics: HubMetrics):
        self._store = store
        self._dispatcher = dispatcher
        self._watchers = watchers
        self._max_payload = max_payload_bytes
        self._metrics = metrics

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    async def _call(context, fn, *args):
        """Await a store call, turning its refusals into gRPC errors."""
        try:
            return await fn(*args)
        except StoreError as error:
            await TaskHubServicer._refuse(context, error)

    @staticmethod
    async def _refuse(context, error: StoreError) -> None:
        await context.abort(ERROR_CODES.get(type(error), grpc.StatusCode.INVALID_ARGUMENT), str(error))

    @staticmethod
    async def _check_id(context, instance_id: str) -> None:
        if (problem := instance_id_problem(instance_id)) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    @staticmethod
    async def _check_times(context, request: Message, *fields: str) -> None:
        for name in fields:
            if request.HasField(name) and (problem := time_problem(name, getattr(request, name))) is not None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    @staticmethod
    async def _check_not_negative(context, **counts: int) -> None:
        for name, count in counts.items():
            if count < 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must not be negative (0 means "
                                                                      "the server's default).")

    def _payload_problem(self, **payloads: wrappers_pb2.StringValue | str | None) -> str | None:
        for what, value in payloads.items():
            text = value.value if isinstance(value, wrappers_pb2.StringValue) else value
            # A str of n characters encodes to at most 4n bytes: only long ones need encoding.
            if not text or len(text) * 4 <= self._max_payload:
                continue
            if (size := len(text.encode())) > self._max_payload:
                return (f"The {what} is {size} bytes, over this server's payload limit of {self._max_payload} "
                        "bytes (--max-payload-bytes).")
        return None

    async def _check_payloads(self, context, **payloads: wrappers_pb2.StringValue | str | None) -> None:
        if (problem := self._payload_problem(**payloads)) is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem)

    def _episode_refusal(self, request: pb.OrchestratorResponse) -> tuple[grpc.StatusCode, str, str] | None:
        """Why an episode cannot be applied as sent, as (status code, failure type, message); None if it can."""
        for action in request.actions:
            kind = action.WhichOneof("orchestratorActionType")
            body = getattr(action, kind) if kind else None
            problem = self._payload_problem(**{f"{kind} {field}": getattr(body, field)
                                               for field in ("input", "result", "data")
                                               if body is not None and hasattr(body, field)})
            if problem is not None:
                return grpc.StatusCode.RESOURCE_EXHAUSTED, "PayloadTooLarge", problem
            if kind == "completeOrchestration" and body.orchestrationStatus not in COMPLETION_STATUSES:
                return grpc.StatusCode.INVALID_ARGUMENT, "InvalidAction", (
                    f"completeOrchestration: an orchestration cannot finish {status_name(body.orchestrationStatus)}; "
                    "it finishes COMPLETED, FAILED, TERMINATED or CONTINUED_AS_NEW.")
            if kind == "createTimer" and (problem := time_problem("createTimer fireAt", body.fireAt)):
                return grpc.StatusCode.INVALID_ARGUMENT, "InvalidAction", problem
            if kind == "createSubOrchestration" and body.instanceId \
                    and (problem := instance_id_problem(body.instanceId)):
                return grpc.StatusCode.INVALID_ARGUMENT, "InvalidAction", f"createSubOrchestration: {problem}"
        if (problem := self._payload_problem(custom_status=request.customStatus)) is not None:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, "PayloadTooLarge", problem
        return None

    # -- client RPCs --------------------------------------------------------------------------
    async def Hello(self, request, context):
        return empty_pb2.Empty()

    async def StartInstance(self, request: pb.CreateInstanceRequest, context):
        instance_id = request.instanceId or uuid.uuid4().hex
        await self._check_id(context, instance_id)
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "An orchestrator name is required.")
        await self._check_payloads(context, input=request.input)
        await self._check_times(context, request, "scheduledStartTimestamp")
        new = NewInstance(
            instance_id=instance_id, name=request.name, version=request.version.value,
            input=request.input.value if request.HasField("input") else None,
            scheduled_start=epoch(request.scheduledStartTimestamp)
            if request.HasField("scheduledStartTimestamp") else None,
            tags=dict(request.tags), execution_id=request.executionId.value or None)
        replaceable = tuple(request.orchestrationIdReusePolicy.replaceableStatus)
        await self._call(context, self._store.create_instance, new, replaceable)
        return pb.CreateInstanceResponse(instanceId=instance_id)

    async def GetInstance(self, request: pb.GetInstanceRequest, context):
        await self._check_id(context, request.instanceId)
        state = await self._call(context, self._store.get_instance, request.instanceId, request.getInputsAndOutputs)
        if state is None:
            return pb.GetInstanceResponse(exists=False)
        return pb.GetInstanceResponse(exists=True, orchestrationState=to_orchestration_state(state))

    async def WaitForInstanceStart(self, request: pb.GetInstanceRequest, context):
        return await self._wait(request, context, lambda status: status != pb.ORCHESTRATION_STATUS_PENDING, "start")

    async def WaitForInstanceCompletion(self, request: pb.GetInstanceRequest, context):
        return await self._wait(request, context, lambda status: status in TERMINAL_STATUSES, "complete")

    async def _wait(self, request: pb.GetInstanceRequest, context, reached, what: str):
        await self._check_id(context, request.instanceId)
        changed = self._watchers.watch(request.instanceId)
        try:
            while True:
                changed.clear()  # before reading, so a change after the read is not missed
                state = await self._call(context, self._store.get_instance, request.instanceId,
                                         request.getInputsAndOutputs)
                if state is None:
                    return pb.GetInstanceResponse(exists=False)
                if reached(state.status):
                    return pb.GetInstanceResponse(exists=True, orchestrationState=to_orchestration_state(state))
                try:
                    await asyncio.wait_for(changed.wait(), context.time_remaining())
                except asyncio.TimeoutError:
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                        f"Instance '{request.instanceId}' did not {what} before the deadline.")
        finally:
            self._watchers.unwatch(request.instanceId, changed)

    async def RaiseEvent(self, request: pb.RaiseEventRequest, context):
        await self._check_id(context, request.instanceId)
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "An event name is required.")
        await self._check_payloads(context, event_data=request.input)
        await self._call(context, self._store.raise_event, request.instanceId, request.name,
                         request.input.value if request.HasField("input") else None)
        return pb.RaiseEventResponse()

    async def TerminateInstance(self, request: pb.TerminateRequest, context):
        await self._check_id(context, request.instanceId)
        await self._check_payloads(context, output=request.output)
        await self._call(context, self._store.terminate, request.instanceId,
                         request.output.value if request.HasField("output") else None, request.recursive)
        return pb.TerminateResponse()

    async def SuspendInstance(self, request: pb.SuspendRequest, context):
        await self._check_id(context, request.instanceId)
        await self._call(context, self._store.suspend, request.instanceId, request.reason.value or None)
        return pb.SuspendResponse()

    async def ResumeInstance(self, request: pb.ResumeRequest, context):
        await self._check_id(context, request.instanceId)
        await self._call(context, self._store.resume, request.instanceId, request.reason.value or None)
        return pb.ResumeResponse()

    async def RestartInstance(self, request: pb.RestartInstanceRequest, context):
        await self._check_id(context, request.instanceId)
        state = await self._call(context, self._store.get_instance, request.instanceId, True)
        if state is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"No orchestration instance with id "
                                                           f"'{request.instanceId}' exists.")
        if state.status not in TERMINAL_STATUSES:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"Orchestration instance '{request.instanceId}' has not finished; only finished "
                                "instances can be restarted.")
        new_id = uuid.uuid4().hex if request.restartWithNewInstanceId else request.instanceId
        new = NewInstance(instance_id=new_id, name=state.name, version=state.version, input=state.input,
                          tags=state.tags)
        await self._call(context, self._store.create_instance, new, tuple(TERMINAL_STATUSES))
        return pb.RestartInstanceResponse(instanceId=new_id)

    async def QueryInstances(self, request: pb.QueryInstancesRequest, context):
        q = request.query
        await self._check_times(context, q, "createdTimeFrom", "createdTimeTo")
        await self._check_not_negative(context, maxInstanceCount=q.maxInstanceCount)
        query = InstanceQuery(
            statuses=tuple(sorted(set(q.runtimeStatus))),
            created_from=epoch(q.createdTimeFrom) if q.HasField("createdTimeFrom") else None,
            created_to=epoch(q.createdTimeTo) if q.HasField("createdTimeTo") else None,
            id_prefix=q.instanceIdPrefix.value, page_size=q.maxInstanceCount or DEFAULT_PAGE_SIZE,
            after_id=q.continuationToken.value or None, include_payloads=q.fetchInputsAndOutputs)
        states, more = await self._call(context, self._store.query_instances, query)
        return pb.QueryInstancesResponse(orchestrationState=[to_orchestration_state(s) for s in states],
                                         continuationToken=optional_string(more))

    async def ListInstanceIds(self, request: pb.ListInstanceIdsRequest, context):
        await self._check_times(context, request, "completedTimeFrom", "completedTimeTo")
        await self._check_not_negative(context, pageSize=request.pageSize)
        ids, more = await self._call(
            context, self._store.list_instance_ids, tuple(sorted(set(request.runtimeStatus))),
            epoch(request.completedTimeFrom) if request.HasField("completedTimeFrom") else None,
            epoch(request.completedTimeTo) if request.HasField("completedTimeTo") else None,
            request.pageSize or DEFAULT_PAGE_SIZE, request.lastInstanceKey.value or None)
        return pb.ListInstanceIdsResponse(instanceIds=ids, lastInstanceKey=optional_string(more))

    async def PurgeInstances(self, request: pb.PurgeInstancesRequest, context):
        which = request.WhichOneof("request")
        if which == "instanceId":
            await self._check_id(context, request.instanceId)
            deleted = await self._call(context, self._store.purge, [request.instanceId], None, request.recursive)
        elif which == "instanceBatch":
            for instance_id in request.instanceBatch.instanceIds:
                await self._check_id(context, instance_id)
            deleted = await self._call(context, self._store.purge, list(request.instanceBatch.instanceIds), None,
                                       request.recursive)
        elif which == "purgeInstanceFilter":
            f = request.purgeInstanceFilter
            await self._check_times(context, f, "createdTimeFrom", "createdTimeTo")
            where = PurgeFilter(created_from=epoch(f.createdTimeFrom) if f.HasField("createdTimeFrom") else None,
                                created_to=epoch(f.createdTimeTo) if f.HasField("createdTimeTo") else None,
                                statuses=tuple(sorted(set(f.runtimeStatus))))
            deleted = await self._call(context, self._store.purge, None, where, request.recursive)
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "Say what to purge: an instance id, a batch of ids, or a filter.")
        return pb.PurgeInstancesResponse(deletedInstanceCount=deleted, isComplete=wrappers_pb2.BoolValue(value=True))

    async def StreamInstanceHistory(self, request: pb.StreamInstanceHistoryRequest, context):
        await self._check_id(context, request.instanceId)
        history = await self._call(context, self._store.get_history, request.instanceId)
        for start in range(0, len(history), HISTORY_CHUNK_EVENTS):
            yield pb.HistoryChunk(events=history[start:start + HISTORY_CHUNK_EVENTS])

    async def CreateTaskHub(self, request, context):
        return pb.CreateTaskHubResponse()  # the store creates its schema on open

    async def DeleteTaskHub(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "Deleting the task hub is not supported; delete the store file instead.")

    # -- worker RPCs --------------------------------------------------------------------------
    async def GetWorkItems(self, request: pb.GetWorkItemsRequest, context):
        await self._check_not_negative(
            context, maxConcurrentOrchestrationWorkItems=request.maxConcurrentOrchestrationWorkItems,
            maxConcurrentActivityWorkItems=request.maxConcurrentActivityWorkItems)
        stream = self._dispatcher.open_stream(
            work_filters(request), request.maxConcurrentOrchestrationWorkItems or DEFAULT_CONCURRENCY,
            request.maxConcurrentActivityWorkItems or DEFAULT_CONCURRENCY)
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:  # items already queued go out without the cost of a timeout
                    item = stream.outbox.get_nowait()
                except asyncio.QueueEmpty:
                    # A health ping goes out if nothing else does for a while (a timer, not wait_for,
                    # which would run every wait for an item as a task of its own).
                    ping = loop.call_later(HEALTH_PING_SECONDS, stream.outbox.put_nowait,
                                           pb.WorkItem(healthPing=pb.HealthPing()))
                    try:
                        item = await stream.outbox.get()
                    finally:
                        ping.cancel()
                if item is END_OF_STREAM:
                    return
                yield item
        finally:
            self._dispatcher.close_stream(stream)

    # A completion that cannot be applied as sent is refused, and its work item is settled with a
    # failure naming the reason instead: handing it back would only have the next worker send the
    # same result again, for ever.
    async def CompleteOrchestratorTask(self, request: pb.OrchestratorResponse, context):
        refusal = self._episode_refusal(request) or await self._apply(
            context, self._store.complete_orchestration, request)
        if refusal is not None:
            code, error_type, problem = refusal
            await self._apply(context, self._store.complete_orchestration,
                              failed_episode(request, error_type, problem))
            await context.abort(code, f"{problem} The orchestration was failed with this message.")
        self._metrics.completed.labels(ORCHESTRATION).inc()
        return pb.CompleteTaskResponse()

    async def CompleteActivityTask(self, request: pb.ActivityResponse, context):
        problem = self._payload_problem(activity_result=request.result)
        refusal = (grpc.StatusCode.RESOURCE_EXHAUSTED, "PayloadTooLarge", problem) if problem else \
            await self._apply(context, self._store.complete_activity, request)
        if refusal is not None:
            code, error_type, problem = refusal
            await self._apply(context, self._store.complete_activity, pb.ActivityResponse(
                instanceId=request.instanceId, taskId=request.taskId, completionToken=request.completionToken,
                failureDetails=pb.TaskFailureDetails(errorType=error_type, errorMessage=problem,
                                                     isNonRetriable=True)))
            await context.abort(code, f"{problem} The activity was recorded as failed with this message.")
        self._metrics.completed.labels(ACTIVITY).inc()
        return pb.CompleteTaskResponse()

    async def _apply(self, context, complete, request) -> tuple[grpc.StatusCode, str, str] | None:
        """Apply a worker's completion, with the refill of its stream; the refusal, if the store cannot
        keep what it holds. The completion runs to the end even if the worker hangs up meanwhile, so
        that what its refill claimed is handed out (or given back), never left leased to nobody."""
        refill = self._dispatcher.completing(request.completionToken)
        applied = asyncio.ensure_future(complete(request.completionToken, request,
                                                 refill.request if refill else None))
        applied.add_done_callback(functools.partial(self._dispatcher.refilled, refill))
        try:
            await asyncio.shield(applied)
        except Unstorable as error:
            return grpc.StatusCode.INVALID_ARGUMENT, "Unstorable", str(error)
        except StoreError as error:
            await self._refuse(context, error)
        return None

    async def AbandonTaskOrchestratorWorkItem(self, request: pb.AbandonOrchestrationTaskRequest, context):
        await self._abandon(context, request.completionToken, ORCHESTRATION)
        return pb.AbandonOrchestrationTaskResponse()

    async def AbandonTaskActivityWorkItem(self, request: pb.AbandonActivityTaskRequest, context):
        await self._abandon(context, request.completionToken, ACTIVITY)
        return pb.AbandonActivityTaskResponse()

    async def _abandon(self, context, token: str, kind: str) -> None:
        try:
            await self._call(context, self._store.abandon, token, ABANDON_BACKOFF_SECONDS)
            self._metrics.abandoned.labels(kind, "worker").inc()
        finally:
            self._dispatcher.settled(token, handed_back=True)

    # -- not supported ------------------------------------------------------------------------
    async def _entities_unsupported(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Durable entities are not supported by this task hub "
                                                           "server.")

    SignalEntity = GetEntity = QueryEntities = CleanEntityStorage = _entities_unsupported
    CompleteEntityTask = AbandonTaskEntityWorkItem = _entities_unsupported

    async def RewindInstance(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Rewinding instances is not supported by this task hub "
                                                           "server.")

    async def SkipGracefulOrchestrationTerminations(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Skipping graceful terminations is not supported: "
                                                           "this server always terminates at once.")
