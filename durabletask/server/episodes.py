"""What one orchestration episode commits: turns a worker's OrchestratorResponse into history
events, activity requests, durable timers and messages to other instances. Pure (no storage,
no clock of its own), so every store applies exactly the same semantics."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2, wrappers_pb2

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.server.stores.base import TERMINAL_STATUSES, InstanceState, NewInstance


def timestamp(epoch_seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(epoch_seconds * 1e9))
    return ts


def epoch(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def optional_string(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def event(at: float, event_id: int = -1, **kind) -> pb.HistoryEvent:
    return pb.HistoryEvent(eventId=event_id, timestamp=timestamp(at), **kind)


def execution_started(new: NewInstance, execution_id: str, at: float) -> pb.HistoryEvent:
    started = pb.ExecutionStartedEvent(
        name=new.name, version=optional_string(new.version or None), input=optional_string(new.input),
        orchestrationInstance=pb.OrchestrationInstance(
            instanceId=new.instance_id, executionId=wrappers_pb2.StringValue(value=execution_id)),
        parentInstance=new.parent, tags=new.tags)
    if new.scheduled_start is not None:
        started.scheduledStartTimestamp.CopyFrom(timestamp(new.scheduled_start))
    return event(at, executionStarted=started)


@dataclass
class Deliver:
    """Put `event` into another instance's inbox. With `execution_id`, only while that execution
    is still current (a result for an execution that continued-as-new or finished is dropped)."""
    instance_id: str
    event: pb.HistoryEvent
    execution_id: str | None = None


@dataclass
class StartChild:
    new: NewInstance


@dataclass
class TerminateOther:
    instance_id: str
    reason: str | None
    recursive: bool


@dataclass
class ContinueAsNew:
    input: str | None
    version: str
    carryover: list[pb.HistoryEvent]


@dataclass
class Episode:
    history: list[pb.HistoryEvent]
    status: int
    output: str | None
    failure_details: pb.TaskFailureDetails | None
    custom_status: str | None
    activities: list[pb.ActivityRequest] = field(default_factory=list)
    timers: list[tuple[float, pb.HistoryEvent]] = field(default_factory=list)
    messages: list[Deliver | StartChild | TerminateOther] = field(default_factory=list)
    continue_as_new: ContinueAsNew | None = None


UNSUPPORTED_ACTIONS = {"sendEntityMessage": "entities", "rewindOrchestration": "rewind"}


def plan_episode(instance: InstanceState, parent: pb.ParentInstanceInfo | None,
                 new_events: list[pb.HistoryEvent], response: pb.OrchestratorResponse, now: float) -> Episode:
    """The changes one completed episode makes. `new_events` are the events the worker was given
    (OrchestratorStarted first); `parent` is where a finished sub-orchestration reports."""
    status = instance.status
    if status == pb.ORCHESTRATION_STATUS_PENDING:
        status = pb.ORCHESTRATION_STATUS_RUNNING
    episode = Episode(history=list(new_events), status=status, output=None, failure_details=None,
                      custom_status=response.customStatus.value if response.HasField("customStatus") else None)
    this = pb.OrchestrationInstance(instanceId=instance.instance_id,
                                    executionId=wrappers_pb2.StringValue(value=instance.execution_id))
    for action in response.actions:
        kind = action.WhichOneof("orchestratorActionType")
        if kind == "scheduleTask":
            task = action.scheduleTask
            episode.history.append(event(now, action.id, taskScheduled=pb.TaskScheduledEvent(
                name=task.name, version=task.version if task.HasField("version") else None,
                input=task.input if task.HasField("input") else None, tags=task.tags,
                parentTraceContext=task.parentTraceContext if task.HasField("parentTraceContext") else None)))
            # An activity without a version of its own runs at its orchestration's version, so that
            # version-filtered workers receive the activities of the orchestrations they run.
            version = task.version.value if task.HasField("version") else instance.version
            episode.activities.append(pb.ActivityRequest(
                name=task.name, version=optional_string(version or None),
                input=task.input if task.HasField("input") else None, orchestrationInstance=this,
                taskId=action.id, tags=task.tags,
                parentTraceContext=task.parentTraceContext if task.HasField("parentTraceContext") else None))
        elif kind == "createTimer":
            fire_at = action.createTimer.fireAt
            episode.history.append(event(now, action.id, timerCreated=pb.TimerCreatedEvent(fireAt=fire_at)))
            episode.timers.append((epoch(fire_at), event(epoch(fire_at), timerFired=pb.TimerFiredEvent(
                fireAt=fire_at, timerId=action.id))))
        elif kind == "createSubOrchestration":
            sub = action.createSubOrchestration
            child_id = sub.instanceId or f"{instance.instance_id}:{action.id:04x}"
            episode.history.append(event(now, action.id, subOrchestrationInstanceCreated=(
                pb.SubOrchestrationInstanceCreatedEvent(
                    instanceId=child_id, name=sub.name, version=sub.version if sub.HasField("version") else None,
                    input=sub.input if sub.HasField("input") else None, tags=sub.tags))))
            episode.messages.append(StartChild(NewInstance(
                instance_id=child_id, name=sub.name, version=sub.version.value, tags=dict(sub.tags),
                input=sub.input.value if sub.HasField("input") else None,
                parent=pb.ParentInstanceInfo(taskScheduledId=action.id, name=optional_string(instance.name),
                                             version=optional_string(instance.version or None),
                                             orchestrationInstance=this))))
        elif kind == "sendEvent":
            send = action.sendEvent
            data = send.data if send.HasField("data") else None
            episode.history.append(event(now, action.id, eventSent=pb.EventSentEvent(
                instanceId=send.instance.instanceId, name=send.name, input=data)))
            episode.messages.append(Deliver(send.instance.instanceId, event(now, eventRaised=pb.EventRaisedEvent(
                name=send.name, input=data))))
        elif kind == "terminateOrchestration":
            term = action.terminateOrchestration
            episode.messages.append(TerminateOther(
                term.instanceId, term.reason.value if term.HasField("reason") else None, term.recurse))
        elif kind == "completeOrchestration":
            _finish(episode, instance, action.completeOrchestration)
        elif kind in UNSUPPORTED_ACTIONS:
            _finish(episode, instance, pb.CompleteOrchestrationAction(
                orchestrationStatus=pb.ORCHESTRATION_STATUS_FAILED, failureDetails=pb.TaskFailureDetails(
                    errorType="NotSupported", isNonRetriable=True,
                    errorMessage=f"This task hub server does not support {UNSUPPORTED_ACTIONS[kind]}.")))
            break
    if episode.continue_as_new is None:
        episode.history.append(event(now, orchestratorCompleted=pb.OrchestratorCompletedEvent()))
        if episode.status in TERMINAL_STATUSES:
            episode.history.append(event(now, executionCompleted=pb.ExecutionCompletedEvent(
                orchestrationStatus=episode.status, result=optional_string(episode.output),
                failureDetails=episode.failure_details)))
            notice = parent_notice(parent, episode.status, episode.output, episode.failure_details, now)
            if notice is not None:
                episode.messages.append(notice)
    return episode


def _finish(episode: Episode, instance: InstanceState, complete: pb.CompleteOrchestrationAction) -> None:
    result = complete.result.value if complete.HasField("result") else None
    if complete.orchestrationStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
        episode.continue_as_new = ContinueAsNew(
            input=result, carryover=list(complete.carryoverEvents),
            version=complete.newVersion.value if complete.HasField("newVersion") else instance.version)
        return
    episode.status = complete.orchestrationStatus
    episode.output = result
    episode.failure_details = complete.failureDetails if complete.HasField("failureDetails") else None


def parent_notice(parent: pb.ParentInstanceInfo | None, status: int, output: str | None,
                  failure: pb.TaskFailureDetails | None, now: float) -> Deliver | None:
    """The event a finished sub-orchestration sends to its parent's inbox (None for top-level)."""
    if parent is None:
        return None
    task_id = parent.taskScheduledId
    if status == pb.ORCHESTRATION_STATUS_COMPLETED:
        notice = event(now, subOrchestrationInstanceCompleted=pb.SubOrchestrationInstanceCompletedEvent(
            taskScheduledId=task_id, result=optional_string(output)))
    else:
        if failure is None:
            failure = pb.TaskFailureDetails(
                errorType="SubOrchestrationTerminated",
                errorMessage=f"The sub-orchestration was terminated{': ' + output if output else ''}.")
        notice = event(now, subOrchestrationInstanceFailed=pb.SubOrchestrationInstanceFailedEvent(
            taskScheduledId=task_id, failureDetails=failure))
    origin = parent.orchestrationInstance
    return Deliver(origin.instanceId, notice, origin.executionId.value or None)
