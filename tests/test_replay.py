"""The replay engine on hand-built histories: no server, no threads."""

import json
import logging
from datetime import datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2, wrappers_pb2

from durabletask import task
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal.replay import replay

T0 = datetime(2024, 1, 2, 3, 4, 5, 678000)
INSTANCE = "inst-1"


# ---- history builders --------------------------------------------------------------------

def _ts(moment):
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _json(value):
    return None if value is None else wrappers_pb2.StringValue(value=json.dumps(value))


def started(at=T0):
    return pb.HistoryEvent(eventId=-1, orchestratorStarted=pb.OrchestratorStartedEvent(), timestamp=_ts(at))


def execution_started(name, input=None, version=None, parent=None):
    return pb.HistoryEvent(eventId=-1, executionStarted=pb.ExecutionStartedEvent(
        name=name, input=_json(input),
        version=wrappers_pb2.StringValue(value=version) if version else None,
        orchestrationInstance=pb.OrchestrationInstance(instanceId=INSTANCE),
        parentInstance=pb.ParentInstanceInfo(orchestrationInstance=pb.OrchestrationInstance(instanceId=parent))
        if parent else None))


def task_scheduled(event_id, name):
    return pb.HistoryEvent(eventId=event_id, taskScheduled=pb.TaskScheduledEvent(name=name))


def task_completed(task_id, result):
    return pb.HistoryEvent(eventId=-1, taskCompleted=pb.TaskCompletedEvent(taskScheduledId=task_id, result=_json(result)))


def task_failed(task_id, message="boom"):
    return pb.HistoryEvent(eventId=-1, taskFailed=pb.TaskFailedEvent(
        taskScheduledId=task_id, failureDetails=pb.TaskFailureDetails(errorType="builtins.ValueError", errorMessage=message)))


def timer_created(event_id, fire_at):
    return pb.HistoryEvent(eventId=event_id, timerCreated=pb.TimerCreatedEvent(fireAt=_ts(fire_at)))


def timer_fired(timer_id, fire_at):
    return pb.HistoryEvent(eventId=-1, timerFired=pb.TimerFiredEvent(timerId=timer_id, fireAt=_ts(fire_at)))


def event_raised(name, data):
    return pb.HistoryEvent(eventId=-1, eventRaised=pb.EventRaisedEvent(name=name, input=_json(data)))


def suspended():
    return pb.HistoryEvent(eventId=-1, executionSuspended=pb.ExecutionSuspendedEvent())


def resumed():
    return pb.HistoryEvent(eventId=-1, executionResumed=pb.ExecutionResumedEvent())


def terminated(output):
    return pb.HistoryEvent(eventId=-1, executionTerminated=pb.ExecutionTerminatedEvent(input=_json(output)))


def sub_created(event_id, name, instance_id):
    return pb.HistoryEvent(eventId=event_id, subOrchestrationInstanceCreated=pb.SubOrchestrationInstanceCreatedEvent(
        name=name, instanceId=instance_id))


def run(orchestrator, past, new, **kwargs):
    return replay(orchestrator, INSTANCE, past, new, **kwargs)


def completion(result):
    completions = [a.completeOrchestration for a in result.actions if a.HasField("completeOrchestration")]
    assert len(completions) == 1, result.actions
    return completions[0]


def output_of(result):
    done = completion(result)
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED, done
    return json.loads(done.result.value) if done.HasField("result") else None


# ---- orchestrators used below --------------------------------------------------------------

def greet_twice(ctx, name):
    first = yield ctx.call_activity("greet", input=name)
    second = yield ctx.call_activity("greet", input=first)
    return second


def start(name, input=None, **kwargs):
    return [started(), execution_started(name, input, **kwargs)]


# ---- scheduling and completing ----------------------------------------------------------------

def test_first_episode_schedules_the_first_activity_with_its_json_input():
    result = run(greet_twice, [], start("greet_twice", "ann"))
    assert len(result.actions) == 1
    action = result.actions[0]
    assert action.id == 1
    assert action.scheduleTask.name == "greet"
    assert json.loads(action.scheduleTask.input.value) == "ann"


def test_replay_feeds_recorded_results_back_and_completes():
    past = start("greet_twice", "ann") + [task_scheduled(1, "greet"), task_completed(1, "hi ann"), started(),
                                         task_scheduled(2, "greet")]
    result = run(greet_twice, past, [started(), task_completed(2, "hi hi ann")])
    assert output_of(result) == "hi hi ann"


def test_function_that_does_not_yield_completes_in_its_first_episode():
    result = run(lambda ctx, x: x * 2, [], start("double", 21))
    assert output_of(result) == 42


def test_failed_activity_raises_task_failed_error_that_the_orchestrator_can_catch():
    def careful(ctx, _):
        try:
            yield ctx.call_activity("risky")
        except task.TaskFailedError as error:
            return f"caught {error.details.error_type}: {error.details.message}"

    result = run(careful, start("careful") + [task_scheduled(1, "risky")], [started(), task_failed(1, "bad input")])
    assert output_of(result) == "caught builtins.ValueError: bad input"


def test_uncaught_task_failure_fails_the_orchestration_with_the_activity_failure_inside():
    result = run(greet_twice, start("greet_twice", "x") + [task_scheduled(1, "greet")], [started(), task_failed(1, "nope")])
    done = completion(result)
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert done.failureDetails.errorType == "durabletask.task.TaskFailedError"
    assert done.failureDetails.innerFailure.errorMessage == "nope"


def test_orchestrator_exception_fails_the_orchestration_with_its_type_and_message():
    def broken(ctx, _):
        raise KeyError("missing")

    done = completion(run(broken, [], start("broken")))
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert done.failureDetails.errorType == "builtins.KeyError"
    assert "missing" in done.failureDetails.errorMessage


# ---- non-determinism --------------------------------------------------------------------------

def test_renamed_activity_is_reported_as_non_determinism_naming_the_step():
    def changed(ctx, _):
        yield ctx.call_activity("refund")

    done = completion(run(changed, start("changed") + [task_scheduled(1, "charge")], [started(), task_completed(1, None)]))
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert done.failureDetails.errorType == "durabletask.task.NonDeterminismError"
    message = done.failureDetails.errorMessage
    assert "sequence number 1" in message
    assert "call_activity('charge')" in message and "call_activity('refund')" in message


def test_different_kind_of_step_is_reported_as_non_determinism():
    def changed(ctx, _):
        yield ctx.create_timer(timedelta(seconds=5))

    done = completion(run(changed, start("changed") + [task_scheduled(1, "charge")], [started(), task_completed(1, 1)]))
    assert done.failureDetails.errorType == "durabletask.task.NonDeterminismError"
    assert "call_activity('charge')" in done.failureDetails.errorMessage
    assert "create_timer()" in done.failureDetails.errorMessage


def test_recorded_step_the_code_no_longer_takes_is_non_determinism():
    def shorter(ctx, _):
        yield ctx.call_activity("a")
        return "done early"

    past = start("shorter") + [task_scheduled(1, "a"), task_completed(1, None), task_scheduled(2, "b")]
    done = completion(run(shorter, past, [started(), task_completed(2, None)]))
    assert done.failureDetails.errorType == "durabletask.task.NonDeterminismError"
    assert "sequence number 2" in done.failureDetails.errorMessage
    assert "takes no step" in done.failureDetails.errorMessage


def test_result_for_a_step_the_code_no_longer_takes_is_non_determinism_at_its_record():
    def changed(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    past = start("changed") + [task_scheduled(1, "old_step")]
    done = completion(run(changed, past, [task_completed(1, "x")]))
    assert done.failureDetails.errorType == "durabletask.task.NonDeterminismError"
    assert "call_activity('old_step')" in done.failureDetails.errorMessage


def test_stale_timer_from_an_earlier_execution_is_ignored():
    def waits(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    result = run(waits, start("waits"), [timer_fired(9, T0), event_raised("go", "went")])
    assert output_of(result) == "went"


# ---- time, timers, uuids ---------------------------------------------------------------------

def test_timer_fires_at_current_time_plus_delay_and_time_comes_from_history():
    seen = []

    def sleeper(ctx, _):
        seen.append(ctx.current_utc_datetime)
        yield ctx.create_timer(timedelta(minutes=5))
        seen.append(ctx.current_utc_datetime)
        return "woke"

    result = run(sleeper, [], start("sleeper"))
    assert result.actions[0].createTimer.fireAt.ToDatetime() == T0 + timedelta(minutes=5)
    later = T0 + timedelta(minutes=5, seconds=1)
    result = run(sleeper, start("sleeper") + [timer_created(1, T0 + timedelta(minutes=5))],
                 [started(later), timer_fired(1, T0 + timedelta(minutes=5))])
    assert output_of(result) == "woke"
    assert seen[-2:] == [T0, later]


def test_is_replaying_is_true_only_while_re_running_recorded_steps():
    flags = []

    def watcher(ctx, _):
        flags.append(ctx.is_replaying)
        yield ctx.call_activity("a")
        flags.append(ctx.is_replaying)

    run(watcher, start("watcher") + [task_scheduled(1, "a")], [task_completed(1, None)])
    assert flags == [True, False]


def test_new_uuid_is_stable_and_equal_to_microsofts():
    def ids(ctx, _):
        return [ctx.new_uuid(), ctx.new_uuid()]

    # Values produced by Microsoft's durabletask 1.12 for the same instance id and start time.
    expected = ["7dcbdcad-eddc-514d-830a-3b7890e410ab", "4438b301-dbc0-5e83-a9c3-aa2133d4112e"]
    assert output_of(run(ids, [], start("ids"))) == expected


# ---- external events, suspension, termination -------------------------------------------------

def approval(ctx, _):
    decision = yield ctx.wait_for_external_event("Approval")
    return decision


def test_event_raised_before_the_code_waits_for_it_is_buffered_and_names_are_case_insensitive():
    result = run(approval, [], start("approval") + [event_raised("approval", {"ok": True})])
    assert output_of(result) == {"ok": True}


def test_events_are_delivered_in_arrival_order():
    def two(ctx, _):
        a = yield ctx.wait_for_external_event("e")
        b = yield ctx.wait_for_external_event("e")
        return [a, b]

    assert output_of(run(two, [], start("two") + [event_raised("e", 1), event_raised("e", 2)])) == [1, 2]


def test_suspended_orchestration_holds_events_until_resumed():
    past = start("approval")
    held = run(approval, past, [suspended(), event_raised("Approval", "yes")])
    assert held.actions == []
    result = run(approval, past + [suspended(), event_raised("Approval", "yes")], [resumed()])
    assert output_of(result) == "yes"


def test_terminate_ends_the_instance_with_the_given_output_and_no_new_steps():
    result = run(greet_twice, start("greet_twice", "x"), [terminated("stopped by operator")])
    assert len(result.actions) == 1
    done = completion(result)
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
    assert json.loads(done.result.value) == "stopped by operator"


def test_continue_as_new_carries_unconsumed_events_when_asked_and_keeps_the_version():
    def counter(ctx, n):
        ctx.continue_as_new(n + 1, save_events=True)

    result = run(counter, [], start("counter", 1, version="2.0") + [event_raised("late", "data")])
    done = completion(result)
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
    assert json.loads(done.result.value) == 2
    assert not done.HasField("newVersion")  # the hub keeps the instance's version
    assert [(e.eventRaised.name, e.eventRaised.input.value) for e in done.carryoverEvents] == [("late", '"data"')]


def test_continue_as_new_without_save_events_drops_unconsumed_events():
    def counter(ctx, n):
        ctx.continue_as_new(n + 1)

    done = completion(run(counter, [], start("counter", 1) + [event_raised("late", "data")]))
    assert list(done.carryoverEvents) == []


# ---- composition, retry, sub-orchestrations ---------------------------------------------------

def test_when_all_returns_results_in_call_order_even_when_they_finish_out_of_order():
    def fan_out(ctx, _):
        return (yield task.when_all([ctx.call_activity("work", input=i) for i in range(3)]))

    first = run(fan_out, [], start("fan_out"))
    assert [a.id for a in first.actions] == [1, 2, 3]
    past = start("fan_out") + [task_scheduled(i, "work") for i in (1, 2, 3)]
    result = run(fan_out, past, [task_completed(3, "c"), task_completed(1, "a"), task_completed(2, "b")])
    assert output_of(result) == ["a", "b", "c"]


def test_when_any_returns_the_first_task_to_finish():
    def race(ctx, _):
        approval_task = ctx.wait_for_external_event("approve")
        timeout = ctx.create_timer(timedelta(hours=1))
        winner = yield task.when_any([approval_task, timeout])
        return "approved" if winner is approval_task else "timed out"

    past = start("race") + [timer_created(1, T0 + timedelta(hours=1))]
    assert output_of(run(race, past, [event_raised("approve", None)])) == "approved"
    assert output_of(run(race, past, [timer_fired(1, T0 + timedelta(hours=1))])) == "timed out"


def test_retry_policy_waits_then_reschedules_under_the_same_number_then_gives_up():
    policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=10), max_number_of_attempts=2)

    def flaky(ctx, _):
        return (yield ctx.call_activity("flaky_step", retry_policy=policy))

    history = start("flaky") + [task_scheduled(1, "flaky_step")]
    wait = run(flaky, history, [started(), task_failed(1)])
    assert [a.WhichOneof("orchestratorActionType") for a in wait.actions] == ["createTimer"]
    assert wait.actions[0].id == 2
    assert wait.actions[0].createTimer.fireAt.ToDatetime() == T0 + timedelta(seconds=10)

    history += [started(), task_failed(1), timer_created(2, T0 + timedelta(seconds=10))]
    again = run(flaky, history, [started(), timer_fired(2, T0 + timedelta(seconds=10))])
    assert [(a.id, a.scheduleTask.name) for a in again.actions] == [(1, "flaky_step")]

    history += [started(), timer_fired(2, T0 + timedelta(seconds=10)), task_scheduled(1, "flaky_step")]
    done = completion(run(flaky, history, [started(), task_failed(1, "still broken")]))
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert done.failureDetails.innerFailure.errorMessage == "still broken"


def test_sub_orchestration_gets_the_workers_default_version_not_the_parents():
    def parent(ctx, _):
        a = ctx.call_sub_orchestrator("child")
        b = ctx.call_sub_orchestrator("child", version="0.9", instance_id="explicit")
        yield task.when_all([a, b])

    result = run(parent, [], start("parent", version="2.0"), default_sub_orchestration_version="1.5")
    first, second = (a.createSubOrchestration for a in result.actions)
    assert (first.version.value, first.instanceId) == ("1.5", f"{INSTANCE}:0001")
    assert (second.version.value, second.instanceId) == ("0.9", "explicit")


def test_sub_orchestration_without_any_default_version_has_none():
    def parent(ctx, _):
        yield ctx.call_sub_orchestrator("child")

    result = run(parent, [], start("parent", version="2.0"))
    assert not result.actions[0].createSubOrchestration.HasField("version")


def test_context_exposes_version_and_parent_instance():
    def me(ctx, _):
        return [ctx.version, ctx.parent_instance_id, ctx.instance_id]

    assert output_of(run(me, [], start("me", version="3.1", parent="the-parent"))) == ["3.1", "the-parent", INSTANCE]


def test_sub_orchestration_recorded_under_another_name_is_non_determinism():
    def parent(ctx, _):
        yield ctx.call_sub_orchestrator("new_child")

    past = start("parent") + [sub_created(1, "old_child", f"{INSTANCE}:0001")]
    done = completion(run(parent, past, [started()]))
    assert "call_sub_orchestrator('old_child')" in done.failureDetails.errorMessage


# ---- bad input from user code ---------------------------------------------------------------

def test_yielding_something_that_is_not_a_task_fails_with_a_clear_message():
    def wrong(ctx, _):
        yield 42

    done = completion(run(wrong, [], start("wrong")))
    assert done.failureDetails.errorType == "builtins.TypeError"
    assert "yielded a int" in done.failureDetails.errorMessage


def test_call_activity_of_something_that_is_not_a_function_or_name_says_so():
    def wrong(ctx, _):
        yield ctx.call_activity(123)

    done = completion(run(wrong, [], start("wrong")))
    assert done.failureDetails.errorMessage == (
        "call_activity expects an activity function or its registered name (str), but got a int.")


def test_retry_policy_rejects_impossible_settings():
    with pytest.raises(ValueError, match="max_number_of_attempts"):
        task.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=0)


def test_continue_as_new_with_an_unencodable_input_fails_with_a_clear_message():
    def bad(ctx, _):
        ctx.continue_as_new(object())

    done = completion(run(bad, [], start("bad")))
    assert done.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert "Cannot encode a value of type 'object' as JSON" in done.failureDetails.errorMessage


def test_failure_details_say_what_caused_them():
    def pays(ctx, _):
        try:
            yield ctx.call_activity("pay")
        except task.TaskFailedError as error:
            details = error.details
            return [details.is_caused_by(ValueError), details.is_caused_by("ValueError"),
                    details.is_caused_by(KeyError), details.is_caused_by("builtins.ValueError")]

    past = start("pays") + [task_scheduled(1, "pay")]
    assert output_of(run(pays, past, [task_failed(1)])) == [True, True, False, True]


def test_replay_safe_logger_logs_each_message_once(caplog):
    def chatty(ctx, _):
        log = ctx.create_replay_safe_logger(logging.getLogger("chatty"))
        log.info("step one")
        yield ctx.call_activity("a")
        log.info("step two")

    with caplog.at_level(logging.INFO, logger="chatty"):
        run(chatty, start("chatty") + [task_scheduled(1, "a")], [task_completed(1, None)])
    assert [r.getMessage() for r in caplog.records if r.name == "chatty"] == ["step two"]


# ---- resuming from the previous episode's checkpoint ------------------------------------------

def recorded(past, new, result):
    """The history a hub keeps after an episode: what was past, the new events, then the steps taken."""
    steps = [task_scheduled(a.id, a.scheduleTask.name) for a in result.actions if a.HasField("scheduleTask")]
    return past + new + steps


def counting_chain(calls):
    def chain(ctx, n):
        value = 0
        for _ in range(n):
            calls.append(ctx.is_replaying)
            value = yield ctx.call_activity("inc", input=value)
        return value
    return chain


def drive(orchestrator, steps, resume):
    """Run a chain episode by episode as a hub would; return every episode's result."""
    past, new, checkpoint, results = [], start("chain", steps), None, []
    for step in range(steps + 1):
        result = run(orchestrator, past, new, resume_from=checkpoint if resume else None)
        results.append(result)
        past, new = recorded(past, new, result), [started(), task_completed(step + 1, step + 1)]
        checkpoint = result.checkpoint
    return results


def test_resuming_from_checkpoints_gives_the_same_actions_as_replaying_and_runs_each_step_once():
    replayed_calls, resumed_calls = [], []
    replayed = drive(counting_chain(replayed_calls), 5, resume=False)
    resumed = drive(counting_chain(resumed_calls), 5, resume=True)
    assert [r.actions for r in resumed] == [r.actions for r in replayed]
    assert output_of(resumed[-1]) == 5
    assert len(replayed_calls) == 1 + 2 + 3 + 4 + 5 + 5  # every episode re-runs the steps before it
    assert resumed_calls == [False] * 5  # each step's code runs once, in the episode that takes it
    assert resumed[-1].checkpoint is None  # nothing to resume once the orchestration finished


def test_history_that_does_not_continue_the_checkpoint_is_replayed_from_the_start():
    calls = []
    chain = counting_chain(calls)
    first = run(chain, [], start("chain", 2))
    # The first episode's completion never reached the hub: the next work item carries its events
    # again, as new events, and the checkpoint (which assumed them committed) must not be used.
    retry = run(chain, [], start("chain", 2) + [started()], resume_from=first.checkpoint)
    assert [a.scheduleTask.name for a in retry.actions] == ["inc"]
    assert retry.actions[0].id == 1
    past = recorded([], start("chain", 2) + [started()], retry)
    second = run(chain, past, [started(), task_completed(1, 1)], resume_from=first.checkpoint)
    assert second.actions[0].id == 2 and json.loads(second.actions[0].scheduleTask.input.value) == 1


def test_events_recorded_since_the_checkpoint_are_replayed_before_the_new_ones():
    calls = []
    chain = counting_chain(calls)
    first = run(chain, [], start("chain", 3))
    # Another worker ran the second episode; this worker's checkpoint is one episode behind.
    past = recorded([], start("chain", 3), first)
    second = run(counting_chain([]), past, [started(), task_completed(1, 1)])
    past = recorded(past, [started(), task_completed(1, 1)], second)
    third = run(chain, past, [started(), task_completed(2, 2)], resume_from=first.checkpoint)
    assert calls == [False, True, False]  # the missed step ran as replay, the new one live
    assert third.actions[0].id == 3 and json.loads(third.actions[0].scheduleTask.input.value) == 2
