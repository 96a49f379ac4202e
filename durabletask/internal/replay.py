"""The replay engine: re-runs an orchestrator over its history and says what it wants done next.

Pure: (orchestrator function, past events, new events) -> (actions, custom status). No gRPC, no
threads, no clock; the only time the orchestrator sees comes from OrchestratorStarted events.

Every step the orchestrator takes (activity, timer, sub-orchestration, sent event) gets the next
sequence number, and the history records each step under that number. Replay checks them against
each other, so code that no longer takes the recorded steps fails loudly instead of diverging.
"""

import itertools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import GeneratorType
from typing import Any

from google.protobuf import timestamp_pb2

from durabletask import task
from durabletask.internal import json_payloads as payloads
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.failures import failure_details

# Microsoft's SDK derives replay-safe UUIDs from this namespace; using it too keeps the ids equal.
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "9e952958-5e33-4daf-827f-2fa12937b875")
_UUID_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# While suspended, every event but these waits for the resume.
_NEVER_HELD_WHILE_SUSPENDED = {"executionResumed", "executionTerminated"}

_STEP_NAMES = {
    "scheduleTask": "call_activity",
    "createTimer": "create_timer",
    "createSubOrchestration": "call_sub_orchestrator",
    "sendEvent": "send_event",
}


@dataclass
class Checkpoint:
    """An unfinished run as the last episode left it, to continue in the next episode instead of
    replaying the whole history again. Resumable once; only on a history that continues exactly the
    one it has seen, which `replay` checks (anything else is replayed from the start)."""
    run: "_OrchestrationRun"
    past_length: int  # how many past events the run had applied before its last new events
    last_new_events: list[pb.HistoryEvent]  # copies: a kept request would pin its whole history

    @property
    def seen(self) -> int:
        """How many events of the history the run has applied."""
        return self.past_length + len(self.last_new_events)

    def continues_into(self, orchestrator: task.Orchestrator[Any, Any], past_events: Sequence[pb.HistoryEvent]) -> bool:
        return (self.run._orchestrator is orchestrator and len(past_events) >= self.seen
                and all(seen == now for seen, now in zip(self.last_new_events,
                                                         past_events[self.past_length:self.seen])))


@dataclass
class ReplayResult:
    actions: list[pb.OrchestratorAction]
    custom_status: str | None = None
    checkpoint: Checkpoint | None = None  # where the next episode may resume (None once finished)


def execution_started(past_events: Iterable[pb.HistoryEvent],
                      new_events: Iterable[pb.HistoryEvent]) -> pb.ExecutionStartedEvent | None:
    """The ExecutionStarted event of this execution: its orchestrator name, version and input."""
    for event in itertools.chain(past_events, new_events):
        if event.HasField("executionStarted"):
            return event.executionStarted
    return None


def failed_result(details: pb.TaskFailureDetails) -> ReplayResult:
    """The outcome of an orchestration that fails before any of its code runs."""
    return ReplayResult([_completion(-1, pb.ORCHESTRATION_STATUS_FAILED, failure=details)])


def replay(orchestrator: task.Orchestrator[Any, Any],
           instance_id: str,
           past_events: Sequence[pb.HistoryEvent],
           new_events: Sequence[pb.HistoryEvent],
           *,
           default_sub_orchestration_version: str | None = None,
           resume_from: Checkpoint | None = None) -> ReplayResult:
    """Run `orchestrator` over `past_events` (replaying) then `new_events`; return its new actions.
    With `resume_from` (the checkpoint of this instance's previous episode), only the past events
    the checkpoint has not seen are replayed, provided the history continues it."""
    if resume_from is not None and resume_from.continues_into(orchestrator, past_events):
        run, unseen = resume_from.run, past_events[resume_from.seen:]
    else:
        run, unseen = _OrchestrationRun(orchestrator, instance_id, default_sub_orchestration_version), past_events
    try:
        if not new_events:
            raise task.OrchestrationStateError("An orchestration work item must carry at least one new event.")
        run.apply_all(unseen, replaying=True)
        run.apply_all(new_events, replaying=False)
    except Exception as error:
        run.fail(error)
    checkpoint = None if run.is_finished else Checkpoint(run, len(past_events), [_copy(e) for e in new_events])
    return ReplayResult(run.actions(), run.custom_status, checkpoint)


def _copy(event: pb.HistoryEvent) -> pb.HistoryEvent:
    copy = pb.HistoryEvent()
    copy.CopyFrom(event)
    return copy


def _completion(action_id: int, status: "pb.OrchestrationStatus", *, result: str | None = None,
                failure: pb.TaskFailureDetails | None = None, new_version: str | None = None,
                carryover_events: list[pb.HistoryEvent] | None = None) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=action_id, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=status,
        result=payloads.wrap(result),
        failureDetails=failure,
        newVersion=payloads.wrap(new_version),
        carryoverEvents=carryover_events,
    ))


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _describe(action: pb.OrchestratorAction) -> str:
    kind = action.WhichOneof("orchestratorActionType")
    if kind == "scheduleTask":
        return f"call_activity('{action.scheduleTask.name}')"
    if kind == "createSubOrchestration":
        return f"call_sub_orchestrator('{action.createSubOrchestration.name}')"
    if kind == "sendEvent":
        return f"send_event('{action.sendEvent.name}' to '{action.sendEvent.instance.instanceId}')"
    return f"{_STEP_NAMES.get(kind, kind)}()"


def _recorded_step(event: pb.HistoryEvent) -> pb.OrchestratorAction:
    """The action that a 'step taken' history event records, to compare with what the code does now."""
    kind = event.WhichOneof("eventType")
    if kind == "taskScheduled":
        return pb.OrchestratorAction(scheduleTask=pb.ScheduleTaskAction(name=event.taskScheduled.name))
    if kind == "subOrchestrationInstanceCreated":
        return pb.OrchestratorAction(createSubOrchestration=pb.CreateSubOrchestrationAction(
            name=event.subOrchestrationInstanceCreated.name))
    if kind == "eventSent":
        return pb.OrchestratorAction(sendEvent=pb.SendEventAction(
            name=event.eventSent.name, instance=pb.OrchestrationInstance(instanceId=event.eventSent.instanceId)))
    return pb.OrchestratorAction(createTimer=pb.CreateTimerAction())


class _OrchestrationRun(task.OrchestrationContext):
    """One execution of an orchestrator over a history: the context it sees, and the event handlers."""

    def __init__(self, orchestrator: task.Orchestrator[Any, Any], instance_id: str,
                 default_sub_orchestration_version: str | None):
        self._orchestrator = orchestrator
        self._instance_id = instance_id
        self._default_sub_version = default_sub_orchestration_version
        self._version: str | None = None
        self._parent_instance_id: str | None = None
        self._now = datetime(1000, 1, 1)
        self._is_replaying = True
        self._sequence = 0
        self._uuid_counter = 0
        self._custom_status: str | None = None
        # Steps the code took that the history has not (yet) recorded: the new actions.
        self._unrecorded: dict[int, pb.OrchestratorAction] = {}
        self._waiting: dict[int, task.CompletableTask[Any]] = {}
        self._retry_actions: dict[int, pb.OrchestratorAction] = {}
        self._retry_timers: dict[int, tuple[int, task.RetryableTask[Any]]] = {}
        self._event_waiters: dict[str, list[task.CompletableTask[Any]]] = {}
        # Raised events nobody waits for yet, in arrival order: (name as sent, JSON payload).
        self._buffered_events: list[tuple[str, str | None]] = []
        self._suspended = False
        self._held_while_suspended: list[pb.HistoryEvent] = []
        self._generator: Any = None
        self._awaited: task.Task[Any] | None = None
        self._completion: pb.OrchestratorAction | None = None
        # (JSON of the new input, save_events, new_version) once the code asked to continue as new.
        self._continue_as_new: tuple[str | None, bool, str | None] | None = None

    # ---- results -------------------------------------------------------------------------

    @property
    def custom_status(self) -> str | None:
        return self._custom_status

    @property
    def is_finished(self) -> bool:
        return self._completion is not None or self._continue_as_new is not None

    def actions(self) -> list[pb.OrchestratorAction]:
        actions = list(self._unrecorded.values())
        if self._completion is not None:
            actions.append(self._completion)
        elif self._continue_as_new is not None:
            encoded_input, save_events, new_version = self._continue_as_new
            carryover = [pb.HistoryEvent(eventId=-1, eventRaised=pb.EventRaisedEvent(name=name, input=payloads.wrap(data)))
                         for name, data in self._buffered_events] if save_events else None
            actions.append(_completion(self._next_id(), pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
                                       result=encoded_input, new_version=new_version,
                                       carryover_events=carryover))
        return actions

    def fail(self, error: Exception) -> None:
        """End the orchestration as failed; this also overrides an outcome that replay later disproved."""
        if self._completion is not None and \
                self._completion.completeOrchestration.orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED:
            return
        details = failure_details(error)
        if isinstance(error, task.TaskFailedError):
            details.innerFailure.CopyFrom(error._failure_details)
        self._continue_as_new = None
        self._completion = _completion(self._next_id(), pb.ORCHESTRATION_STATUS_FAILED, failure=details)

    # ---- the OrchestrationContext the orchestrator sees ---------------------------------

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def parent_instance_id(self) -> str | None:
        return self._parent_instance_id

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def current_utc_datetime(self) -> datetime:
        return self._now

    @property
    def is_replaying(self) -> bool:
        return self._is_replaying

    def set_custom_status(self, custom_status: Any) -> None:
        self._custom_status = payloads.to_json(custom_status)

    def create_timer(self, fire_at: datetime | timedelta) -> task.Task[None]:
        if isinstance(fire_at, timedelta):
            fire_at = self._now + fire_at
        elif isinstance(fire_at, datetime):
            if fire_at.utcoffset() is not None:
                fire_at = fire_at.astimezone(timezone.utc).replace(tzinfo=None)
        else:
            raise TypeError(f"create_timer expects a datetime or a timedelta, but got a {type(fire_at).__name__}.")
        return self._schedule(pb.OrchestratorAction(createTimer=pb.CreateTimerAction(fireAt=_timestamp(fire_at))),
                              task.TimerTask())

    def call_activity(self, activity: Any, *, input: Any = None,
                      retry_policy: task.RetryPolicy | None = None,
                      tags: dict[str, str] | None = None,
                      return_type: type | None = None) -> task.Task[Any]:
        name = self._step_name("call_activity", "an activity function", activity)
        # The activity carries its orchestration's version, so that hubs routing activities by version
        # (work item filters) send it to the workers of that version whether or not they would
        # assume the orchestration's version themselves (Microsoft's backend does not).
        action = pb.OrchestratorAction(scheduleTask=pb.ScheduleTaskAction(
            name=name, version=payloads.wrap(self._version), input=payloads.to_string_value(input), tags=tags))
        if return_type is None and callable(activity):
            return_type = payloads.annotated_output_type(activity)
        return self._schedule(action, self._new_task(retry_policy, return_type))

    def call_sub_orchestrator(self, orchestrator: Any, *, input: Any = None,
                              instance_id: str | None = None,
                              retry_policy: task.RetryPolicy | None = None,
                              version: str | None = None,
                              return_type: type | None = None) -> task.Task[Any]:
        name = self._step_name("call_sub_orchestrator", "an orchestrator function", orchestrator)
        action_id = self._sequence + 1
        action = pb.OrchestratorAction(createSubOrchestration=pb.CreateSubOrchestrationAction(
            name=name,
            # Same derivation as Microsoft's SDK, so a child's id is stable across replays and SDKs.
            instanceId=instance_id or f"{self._instance_id}:{action_id:04x}",
            input=payloads.to_string_value(input),
            version=payloads.wrap(version or self._default_sub_version),
        ))
        return self._schedule(action, self._new_task(retry_policy, return_type))

    def wait_for_external_event(self, name: str, *, data_type: type | None = None) -> task.Task[Any]:
        if not isinstance(name, str) or not name:
            raise TypeError(f"wait_for_external_event expects a non-empty event name, but got {name!r}.")
        waiter: task.CompletableTask[Any] = task.CompletableTask(data_type)
        key = name.casefold()
        for index, (buffered_name, data) in enumerate(self._buffered_events):
            if buffered_name.casefold() == key:
                del self._buffered_events[index]
                waiter.complete(payloads.from_json(data, data_type))
                return waiter
        self._event_waiters.setdefault(key, []).append(waiter)
        return waiter

    def send_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        if not instance_id or not event_name:
            raise ValueError("send_event needs both a target instance_id and an event_name.")
        action = pb.OrchestratorAction(sendEvent=pb.SendEventAction(
            instance=pb.OrchestrationInstance(instanceId=instance_id),
            name=event_name, data=payloads.to_string_value(data)))
        action.id = self._next_id()
        self._unrecorded[action.id] = action

    def continue_as_new(self, new_input: Any, *, save_events: bool = False,
                        new_version: str | None = None) -> None:
        if not self.is_finished:
            self._continue_as_new = (payloads.to_json(new_input), save_events, new_version)

    def new_uuid(self) -> str:
        name = f"{self._instance_id}_{self._now.strftime(_UUID_TIME_FORMAT)}_{self._uuid_counter}"
        self._uuid_counter += 1
        return str(uuid.uuid5(_UUID_NAMESPACE, name))

    # ---- scheduling --------------------------------------------------------------------

    def _next_id(self) -> int:
        self._sequence += 1
        return self._sequence

    def _schedule(self, action: pb.OrchestratorAction, pending: task.CompletableTask[Any]) -> task.CompletableTask[Any]:
        action.id = self._next_id()
        self._unrecorded[action.id] = action
        self._waiting[action.id] = pending
        if isinstance(pending, task.RetryableTask):
            self._retry_actions[action.id] = action
        return pending

    def _new_task(self, retry_policy: task.RetryPolicy | None, result_type: type | None) -> task.CompletableTask[Any]:
        if retry_policy is None:
            return task.CompletableTask(result_type)
        if not isinstance(retry_policy, task.RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, but got a {type(retry_policy).__name__}.")
        return task.RetryableTask(retry_policy, self._now, result_type)

    @staticmethod
    def _step_name(method: str, what: str, target: Any) -> str:
        if isinstance(target, str):
            return target
        if callable(target):
            return task.get_name(target)
        raise TypeError(f"{method} expects {what} or its registered name (str), but got a {type(target).__name__}.")

    # ---- driving the orchestrator's generator ------------------------------------------

    def _start(self, started: pb.ExecutionStartedEvent) -> None:
        self._version = started.version.value if started.HasField("version") else None
        if started.parentInstance.HasField("orchestrationInstance"):
            self._parent_instance_id = started.parentInstance.orchestrationInstance.instanceId
        input_type = payloads.annotated_input_type(self._orchestrator)
        output = self._orchestrator(self, payloads.from_json(payloads.unwrap(started.input), input_type))
        if isinstance(output, GeneratorType):
            self._generator = output
            self._step(lambda: output.send(None))
            self._resume()
        else:
            self._return(output)

    def _resume(self) -> None:
        """Feed the awaited task's outcome to the generator for as long as what it awaits is done."""
        while not self.is_finished and self._awaited is not None and self._awaited.is_complete:
            awaited = self._awaited
            if awaited.is_failed:
                self._step(lambda: self._generator.throw(awaited.get_exception()))
            else:
                self._step(lambda: self._generator.send(awaited.get_result()))

    def _step(self, advance: Callable[[], Any]) -> None:
        try:
            yielded = advance()
        except StopIteration as stop:
            self._awaited = None
            self._return(stop.value)
            return
        if not isinstance(yielded, task.Task):
            raise TypeError(f"Orchestrator '{task.get_name(self._orchestrator)}' yielded a {type(yielded).__name__}; "
                            "orchestrators may only yield tasks from the context or from when_all/when_any.")
        self._awaited = yielded

    def _return(self, output: Any) -> None:
        if not self.is_finished:
            self._completion = _completion(self._next_id(), pb.ORCHESTRATION_STATUS_COMPLETED,
                                           result=payloads.to_json(output))

    # ---- applying history events -------------------------------------------------------

    def apply_all(self, events: Iterable[pb.HistoryEvent], *, replaying: bool) -> None:
        self._is_replaying = replaying
        for event in events:
            self.apply(event)

    def apply(self, event: pb.HistoryEvent) -> None:
        kind = event.WhichOneof("eventType")
        if self._suspended and kind not in _NEVER_HELD_WHILE_SUSPENDED:
            self._held_while_suspended.append(event)
            return
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _on_orchestratorStarted(self, event: pb.HistoryEvent) -> None:
        self._now = event.timestamp.ToDatetime()

    def _on_executionStarted(self, event: pb.HistoryEvent) -> None:
        self._start(event.executionStarted)

    def _on_taskScheduled(self, event: pb.HistoryEvent) -> None:
        self._match_recorded_step(event)

    def _on_timerCreated(self, event: pb.HistoryEvent) -> None:
        self._match_recorded_step(event)

    def _on_subOrchestrationInstanceCreated(self, event: pb.HistoryEvent) -> None:
        self._match_recorded_step(event)

    def _on_eventSent(self, event: pb.HistoryEvent) -> None:
        self._match_recorded_step(event)

    def _on_taskCompleted(self, event: pb.HistoryEvent) -> None:
        self._succeed(event.taskCompleted.taskScheduledId, event.taskCompleted.result)

    def _on_subOrchestrationInstanceCompleted(self, event: pb.HistoryEvent) -> None:
        completed = event.subOrchestrationInstanceCompleted
        self._succeed(completed.taskScheduledId, completed.result)

    def _on_taskFailed(self, event: pb.HistoryEvent) -> None:
        failed = event.taskFailed
        self._failed(failed.taskScheduledId, failed.failureDetails, "Activity")

    def _on_subOrchestrationInstanceFailed(self, event: pb.HistoryEvent) -> None:
        failed = event.subOrchestrationInstanceFailed
        self._failed(failed.taskScheduledId, failed.failureDetails, "Sub-orchestration")

    def _on_timerFired(self, event: pb.HistoryEvent) -> None:
        timer_id = event.timerFired.timerId
        timer = self._take_waiting(timer_id)
        if timer is None:
            return
        retry = self._retry_timers.pop(timer_id, None)
        if retry is not None:
            self._retry(*retry)
            return
        timer.complete(None)
        self._resume()

    def _on_eventRaised(self, event: pb.HistoryEvent) -> None:
        raised = event.eventRaised
        waiters = self._event_waiters.get(raised.name.casefold())
        if waiters and not self.is_finished:
            waiter = waiters.pop(0)
            waiter.complete(payloads.from_json(payloads.unwrap(raised.input), waiter.expected_type))
            self._resume()
        else:
            self._buffered_events.append((raised.name, payloads.unwrap(raised.input)))

    def _on_executionSuspended(self, event: pb.HistoryEvent) -> None:
        self._suspended = True

    def _on_executionResumed(self, event: pb.HistoryEvent) -> None:
        self._suspended = False
        held, self._held_while_suspended = self._held_while_suspended, []
        for held_event in held:
            self.apply(held_event)

    def _on_executionTerminated(self, event: pb.HistoryEvent) -> None:
        if self._completion is None:
            # A terminated instance takes no further steps, whatever the code had just asked for.
            self._unrecorded.clear()
            self._continue_as_new = None
            self._completion = _completion(self._next_id(), pb.ORCHESTRATION_STATUS_TERMINATED,
                                           result=payloads.unwrap(event.executionTerminated.input))

    # ---- event helpers -----------------------------------------------------------------

    def _match_recorded_step(self, event: pb.HistoryEvent) -> None:
        recorded = _recorded_step(event)
        action = self._unrecorded.pop(event.eventId, None)
        now_does = "takes no step with that number" if action is None else f"calls {_describe(action)}"
        kind = recorded.WhichOneof("orchestratorActionType")
        if action is not None and action.WhichOneof("orchestratorActionType") == kind:
            if kind == "scheduleTask" and action.scheduleTask.name == recorded.scheduleTask.name:
                return
            if kind == "createSubOrchestration" and action.createSubOrchestration.name == recorded.createSubOrchestration.name:
                return
            if kind == "sendEvent" and action.sendEvent.instance.instanceId == recorded.sendEvent.instance.instanceId \
                    and action.sendEvent.name == recorded.sendEvent.name:
                return
            if kind == "createTimer":
                return
        raise task.NonDeterminismError(
            f"Non-deterministic orchestration at sequence number {event.eventId}: the history records "
            f"{_describe(recorded)}, but the code now {now_does}. The orchestrator's code changed while this "
            f"instance was running, or it is not deterministic.")

    def _take_waiting(self, task_id: int) -> task.CompletableTask[Any] | None:
        """The task a result event is for; None for results nothing waits for any more.

        Those are duplicates, or results of steps taken by an earlier execution of this instance
        (before continue_as_new) that hubs may still deliver. A result whose step the code no
        longer takes cannot get here: the step's own history record fails the replay first.
        """
        return self._waiting.pop(task_id, None)

    def _succeed(self, task_id: int, result: Any) -> None:
        pending = self._take_waiting(task_id)
        if pending is not None:
            pending.complete(payloads.from_json(payloads.unwrap(result), pending.expected_type))
            self._resume()

    def _failed(self, task_id: int, details: pb.TaskFailureDetails, what: str) -> None:
        pending = self._take_waiting(task_id)
        if pending is None:
            return
        if isinstance(pending, task.RetryableTask) and not self.is_finished:
            delay = pending.next_delay(self._now)
            if delay is not None:
                pending.attempt_count += 1
                self._schedule(pb.OrchestratorAction(createTimer=pb.CreateTimerAction(
                    fireAt=_timestamp(self._now + delay))), task.TimerTask())
                self._retry_timers[self._sequence] = (task_id, pending)
                return
        pending.fail(f"{what} task #{task_id} failed: {details.errorMessage}", details)
        self._resume()

    def _retry(self, task_id: int, pending: task.RetryableTask[Any]) -> None:
        """Schedule another attempt of a failed call; like Microsoft's SDK, it reuses the call's number."""
        attempt = pb.OrchestratorAction()
        attempt.CopyFrom(self._retry_actions[task_id])
        self._unrecorded[task_id] = attempt
        self._waiting[task_id] = pending
