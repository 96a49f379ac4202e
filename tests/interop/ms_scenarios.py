"""Feature scenarios driven by Microsoft's `durabletask` Python SDK against a task hub.

This file is executed by the interpreter of the virtual environment that holds Microsoft's
`durabletask` (its package name clashes with ours, so it never runs in the test process). It
imports only Microsoft's package (and the gRPC runtime it ships with) and the standard library.

    python ms_scenarios.py HOST:PORT SCENARIO [SCENARIO ...]   (or `all`, or `--list`)

For every scenario it prints one JSON line: {"scenario": name, "ok": bool, "detail": str}.
Each scenario starts its own workers, uses unique instance ids, and bounds every wait, so a
hang becomes a failure that says what it was waiting for.
"""

import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import grpc
from durabletask import client, task, worker
from durabletask.client import OrchestrationQuery, OrchestrationStatus
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.worker import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy

WAIT = 20.0               # seconds: the longest any single wait may take
SCENARIO_DEADLINE = 75.0  # seconds: a watchdog ends the process if a scenario overruns this

TERMINAL = {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}

LOG = logging.getLogger("ms-sdk")
LOG.setLevel(logging.WARNING)
LOG.addHandler(logging.StreamHandler(sys.stderr))


class Failed(Exception):
    """A scenario's expectation did not hold."""


def expect(actual, expected, what: str) -> None:
    if actual != expected:
        raise Failed(f"{what}: expected {expected!r}, got {actual!r}")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def describe(state) -> str:
    if state is None:
        return "<no such instance>"
    text = f"status={state.runtime_status.name} output={state.serialized_output!r}"
    if state.failure_details is not None:
        text += f" failure={state.failure_details.error_type}: {state.failure_details.message}"
    return text


class Hub:
    """One scenario's view of the task hub: clients, workers, ids and bounded waits."""

    def __init__(self, address: str, scenario: str):
        self.address = address
        self.scenario = scenario
        self._clients: list[client.TaskHubGrpcClient] = []
        self.client = self.new_client()

    def new_id(self, tag: str = "") -> str:
        return f"{self.scenario}{'-' + tag if tag else ''}-{uuid.uuid4().hex[:10]}"

    def new_client(self, default_version: str | None = None) -> client.TaskHubGrpcClient:
        c = client.TaskHubGrpcClient(host_address=self.address, default_version=default_version, logger=LOG)
        self._clients.append(c)
        return c

    def close(self) -> None:
        for c in self._clients:
            c.close()

    @contextmanager
    def worker(self, orchestrators=(), activities=(), versioning: VersioningOptions | None = None,
               filters: bool = False):
        """A started TaskHubGrpcWorker with the given functions; stopped on exit."""
        w = worker.TaskHubGrpcWorker(host_address=self.address, logger=LOG)
        for fn in orchestrators:
            w.add_orchestrator(fn)
        for fn in activities:
            w.add_activity(fn)
        if versioning is not None:
            w.use_versioning(versioning)
        if filters:
            w.use_work_item_filters()
        w.start()
        try:
            yield w
        finally:
            w.stop()

    def state(self, instance_id: str):
        return self.client.get_orchestration_state(instance_id)

    def finish(self, instance_id: str, timeout: float = WAIT):
        """Wait until the instance reaches a terminal status and return its state."""
        try:
            state = self.client.wait_for_orchestration_completion(instance_id, timeout=timeout)
        except TimeoutError:
            raise Failed(f"instance {instance_id} did not finish within {timeout}s "
                         f"(last seen: {describe(self.state(instance_id))})") from None
        require(state is not None, f"instance {instance_id} vanished while waiting for it to finish")
        require(state.runtime_status in TERMINAL,
                f"wait_for_orchestration_completion returned a non-terminal state: {describe(state)}")
        return state

    def completed(self, instance_id: str, timeout: float = WAIT):
        """Wait for the instance to finish and require COMPLETED; returns the state."""
        state = self.finish(instance_id, timeout)
        expect(state.runtime_status, OrchestrationStatus.COMPLETED, f"status of {instance_id} ({describe(state)})")
        return state

    def wait_until(self, what: str, probe, timeout: float = WAIT, last_seen=None):
        """Poll `probe()` until it returns something truthy; fail naming `what` (and, if given,
        `last_seen()`) after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                seen = f" (last seen: {last_seen()})" if last_seen else ""
                raise Failed(f"timed out after {timeout}s waiting for {what}{seen}")
            time.sleep(0.05)

    def wait_state(self, instance_id: str, what: str, matches, timeout: float = WAIT):
        """Poll the instance's state until `matches(state)`; returns that state."""
        def probe():
            state = self.state(instance_id)
            return state if state is not None and matches(state) else None
        return self.wait_until(f"{instance_id} {what}", probe, timeout,
                               last_seen=lambda: describe(self.state(instance_id)))

    def wait_status(self, instance_id: str, status: OrchestrationStatus, timeout: float = WAIT):
        return self.wait_state(instance_id, f"to be {status.name}", lambda s: s.runtime_status == status, timeout)

    def wait_custom_status(self, instance_id: str, custom_status, timeout: float = WAIT):
        return self.wait_state(instance_id, f"to report custom status {custom_status!r}",
                               lambda s: s.get_custom_status() == custom_status, timeout)

    def raw_state(self, instance_id: str) -> pb.OrchestrationState:
        """The OrchestrationState message exactly as the hub returns it (fields the SDK drops)."""
        with grpc.insecure_channel(self.address) as channel:
            response = stubs.TaskHubSidecarServiceStub(channel).GetInstance(
                pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True), timeout=WAIT)
        require(response.exists, f"GetInstance says {instance_id} does not exist")
        return response.orchestrationState


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


# Per-process bookkeeping that activities and orchestrators write into (workers run in this
# process), keyed by orchestration instance id so concurrent instances never share a slot.
calls: dict[str, list] = defaultdict(list)


def versioning(version: str, match: VersionMatchStrategy, failure: VersionFailureStrategy) -> VersioningOptions:
    """Worker versioning where the worker's own version is also the default for sub-orchestrations."""
    return VersioningOptions(version=version, default_version=version, match_strategy=match, failure_strategy=failure)


# ---------------------------------------------------------------------------------------------
# Core orchestration features
# ---------------------------------------------------------------------------------------------

def say_hello(ctx: task.ActivityContext, city: str) -> str:
    calls[ctx.orchestration_id].append(city)
    return f"Hello {city}!"


def hello_cities(ctx: task.OrchestrationContext, cities: list):
    greetings = []
    for city in cities:
        greetings.append((yield ctx.call_activity(say_hello, input=city)))
    return greetings


@scenario
def sequential_activities(hub: Hub) -> str:
    cities = ["Tokyo", "Seattle", "London"]
    with hub.worker([hello_cities], [say_hello]):
        iid = hub.client.schedule_new_orchestration(hello_cities, input=cities, instance_id=hub.new_id())
        expect(iid.startswith(hub.scenario), True, f"StartInstance returned our instance id ({iid!r})")
        state = hub.completed(iid)
    expect(state.get_output(), ["Hello Tokyo!", "Hello Seattle!", "Hello London!"], "output")
    expect(state.get_input(), cities, "input read back from the state")
    expect(state.name, "hello_cities", "orchestration name on the state")
    expect(calls[iid], cities, "order in which the activities ran")
    return "three activities ran one after another"


def square(ctx: task.ActivityContext, n: int) -> int:
    calls[ctx.orchestration_id].append(n)
    return n * n


def fan_out_fan_in(ctx: task.OrchestrationContext, count: int):
    squares = yield task.when_all([ctx.call_activity(square, input=i) for i in range(count)])
    return {"squares": squares, "sum": sum(squares)}


@scenario
def fan_out_fan_in_50(hub: Hub) -> str:
    with hub.worker([fan_out_fan_in], [square]):
        iid = hub.client.schedule_new_orchestration(fan_out_fan_in, input=50, instance_id=hub.new_id())
        output = hub.completed(iid).get_output()
    expect(output["squares"], [i * i for i in range(50)], "when_all results, in scheduling order")
    expect(output["sum"], 40425, "sum of squares 0..49")
    expect(sorted(calls[iid]), list(range(50)), "inputs the 50 activities received")
    return "50 parallel activities joined by when_all"


def race_event_against_timer(ctx: task.OrchestrationContext, timeout_seconds: float):
    approval = ctx.wait_for_external_event("approval")
    deadline = ctx.create_timer(timedelta(seconds=timeout_seconds))
    winner = yield task.when_any([approval, deadline])
    if winner is approval:
        return f"approved by {approval.get_result()}"
    return "timed out"


@scenario
def when_any_timer_race(hub: Hub) -> str:
    with hub.worker([race_event_against_timer]):
        timer_wins = hub.client.schedule_new_orchestration(race_event_against_timer, input=1.0,
                                                           instance_id=hub.new_id("timer"))
        event_wins = hub.client.schedule_new_orchestration(race_event_against_timer, input=60.0,
                                                           instance_id=hub.new_id("event"))
        hub.wait_status(event_wins, OrchestrationStatus.RUNNING)
        started = time.monotonic()
        hub.client.raise_orchestration_event(event_wins, "approval", data="alice")
        expect(hub.completed(event_wins).get_output(), "approved by alice", "output when the event beats a 60s timer")
        took = time.monotonic() - started
        require(took < 15, f"the event won but the orchestration took {took:.1f}s (it waited for the timer?)")
        expect(hub.completed(timer_wins).get_output(), "timed out", "output when a 1s timer beats a missing event")
    return "event beat a 60s timer; a 1s timer beat a missing event"


def nap(ctx: task.OrchestrationContext, seconds: float):
    before = ctx.current_utc_datetime
    yield ctx.create_timer(before + timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - before).total_seconds()


@scenario
def durable_timer(hub: Hub) -> str:
    with hub.worker([nap]):
        started = time.monotonic()
        iid = hub.client.schedule_new_orchestration(nap, input=1.5, instance_id=hub.new_id())
        slept = hub.completed(iid).get_output()
        wall = time.monotonic() - started
    require(slept >= 1.5, f"orchestration clock advanced {slept}s across a 1.5s timer")
    require(1.5 <= wall < 12, f"a 1.5s timer took {wall:.2f}s of wall-clock time")
    return f"1.5s timer fired after {wall:.2f}s"


def order_line(ctx: task.OrchestrationContext, item: dict):
    if item["qty"] < 0:
        raise ValueError(f"negative quantity for {item['sku']}")
    price = yield ctx.call_activity(square, input=item["qty"])
    return {"sku": item["sku"], "price": price}


def order(ctx: task.OrchestrationContext, lines: list):
    child_id = f"{ctx.instance_id}-line0"
    first = yield ctx.call_sub_orchestrator(order_line, input=lines[0], instance_id=child_id)
    try:
        yield ctx.call_sub_orchestrator(order_line, input=lines[1])
        second = "no error"
    except task.TaskFailedError as error:
        second = error.details.message
    return {"first": first, "second": second}


@scenario
def sub_orchestration(hub: Hub) -> str:
    lines = [{"sku": "apple", "qty": 3}, {"sku": "pear", "qty": -1}]
    with hub.worker([order, order_line], [square]):
        iid = hub.client.schedule_new_orchestration(order, input=lines, instance_id=hub.new_id())
        output = hub.completed(iid).get_output()
    expect(output["first"], {"sku": "apple", "price": 9}, "result of the first sub-orchestration")
    require("negative quantity for pear" in output["second"],
            "a failing sub-orchestration should surface as TaskFailedError carrying its message; "
            f"got {output['second']!r}")
    child = hub.state(f"{iid}-line0")
    require(child is not None, "the sub-orchestration with an explicit instance id cannot be found")
    expect(child.runtime_status, OrchestrationStatus.COMPLETED, "status of the sub-orchestration")
    expect(child.name, "order_line", "name of the sub-orchestration")
    expect(child.get_output(), {"sku": "apple", "price": 9}, "output on the sub-orchestration's own state")
    return "child output returned to the parent; child failure surfaced as TaskFailedError"


def report_parent(ctx: task.OrchestrationContext, _):
    return ctx.parent_instance_id


def parent_of_reporter(ctx: task.OrchestrationContext, _):
    seen = yield ctx.call_sub_orchestrator(report_parent, instance_id=f"{ctx.instance_id}-child")
    return {"child_saw": seen, "top_level_parent": ctx.parent_instance_id}


@scenario
def sub_orchestration_parent_id(hub: Hub) -> str:
    with hub.worker([parent_of_reporter, report_parent]):
        iid = hub.client.schedule_new_orchestration(parent_of_reporter, instance_id=hub.new_id())
        output = hub.completed(iid).get_output()
    expect(output, {"child_saw": iid, "top_level_parent": None},
           "parent_instance_id seen by the child and by the top-level orchestration")
    raw = hub.raw_state(f"{iid}-child")
    expect(raw.parentInstanceId.value, iid, "parentInstanceId on the child's OrchestrationState")
    return "child sees its parent's id in its context and on its state"


def two_events(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status("waiting for first")
    first = yield ctx.wait_for_external_event("first")
    second = yield ctx.wait_for_external_event("second")
    return [first, second]


@scenario
def external_events(hub: Hub) -> str:
    with hub.worker([two_events]):
        iid = hub.client.schedule_new_orchestration(two_events, instance_id=hub.new_id())
        # "second" arrives before the orchestrator waits for it (it may not even have started).
        hub.client.raise_orchestration_event(iid, "second", data={"n": 2})
        # "first" arrives once the orchestrator is known to be waiting for it.
        hub.wait_custom_status(iid, "waiting for first")
        hub.client.raise_orchestration_event(iid, "first", data={"n": 1})
        expect(hub.completed(iid).get_output(), [{"n": 1}, {"n": 2}], "event payloads, in the order awaited")
    return "an early event was buffered; a later one woke the waiting orchestrator"


def count_to(ctx: task.OrchestrationContext, n: int):
    calls[ctx.instance_id].append(n)
    if n < 5:
        ctx.continue_as_new(n + 1)
        return None
    return f"reached {n}"


@scenario
def continue_as_new(hub: Hub) -> str:
    with hub.worker([count_to]):
        iid = hub.client.schedule_new_orchestration(count_to, input=1, instance_id=hub.new_id())
        state = hub.completed(iid)
    expect(state.get_output(), "reached 5", "final output after four continue_as_new generations")
    expect(state.get_input(), 5, "input of the final generation")
    expect(sorted(set(calls[iid])), [1, 2, 3, 4, 5], "generations that ran")
    return "five generations, final output 'reached 5'"


def await_go(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status("waiting")
    return (yield ctx.wait_for_external_event("go"))


@scenario
def suspend_resume(hub: Hub) -> str:
    with hub.worker([await_go]):
        iid = hub.client.schedule_new_orchestration(await_go, instance_id=hub.new_id())
        hub.wait_custom_status(iid, "waiting")
        hub.client.suspend_orchestration(iid, reason="maintenance")
        hub.wait_status(iid, OrchestrationStatus.SUSPENDED)
        hub.client.raise_orchestration_event(iid, "go", data="payload")
        time.sleep(1.0)
        state = hub.state(iid)
        expect(state.runtime_status, OrchestrationStatus.SUSPENDED,
               f"status 1s after an event reached a suspended instance ({describe(state)})")
        hub.client.resume_orchestration(iid, reason="done")
        expect(hub.completed(iid).get_output(), "payload", "output: the event buffered while suspended")
    return "event sent while suspended was held, then delivered on resume"


@scenario
def terminate(hub: Hub) -> str:
    with hub.worker([await_go]):
        iid = hub.client.schedule_new_orchestration(await_go, instance_id=hub.new_id())
        hub.wait_custom_status(iid, "waiting")
        hub.client.terminate_orchestration(iid, output={"reason": "operator said so"})
        state = hub.finish(iid)
        expect(state.runtime_status, OrchestrationStatus.TERMINATED, f"status after terminate ({describe(state)})")
        expect(state.get_output(), {"reason": "operator said so"}, "output given to terminate")
        try:
            hub.client.raise_orchestration_event(iid, "go", data="too late")
        except grpc.RpcError:
            pass  # a hub may refuse events for a finished instance; either way it must stay terminated
        time.sleep(0.5)
        expect(hub.state(iid).runtime_status, OrchestrationStatus.TERMINATED,
               "status after an event hit a terminated instance")
    return "TERMINATED with the given output, and stays so"


def reject_payment(ctx: task.ActivityContext, amount: int):
    raise ValueError(f"card declined for {amount}")


def checkout(ctx: task.OrchestrationContext, amount: int):
    try:
        yield ctx.call_activity(reject_payment, input=amount)
        return "paid"
    except task.TaskFailedError as error:
        return {"message": error.details.message, "type": error.details.error_type,
                "is_value_error": error.details.is_caused_by(ValueError)}


@scenario
def activity_failure_caught(hub: Hub) -> str:
    with hub.worker([checkout], [reject_payment]):
        iid = hub.client.schedule_new_orchestration(checkout, input=42, instance_id=hub.new_id())
        state = hub.completed(iid)
    expect(state.get_output(), {"message": "card declined for 42", "type": "builtins.ValueError",
                                "is_value_error": True}, "what the orchestrator caught")
    return "activity's ValueError caught as TaskFailedError with type and message"


def flaky(ctx: task.ActivityContext, fail_times: int) -> str:
    calls[ctx.orchestration_id].append(time.monotonic())
    attempt = len(calls[ctx.orchestration_id])
    if attempt <= fail_times:
        raise ConnectionError(f"attempt {attempt} failed")
    return f"succeeded on attempt {attempt}"


def retrying(ctx: task.OrchestrationContext, max_attempts: int):
    policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=0.5), max_number_of_attempts=max_attempts)
    try:
        return (yield ctx.call_activity(flaky, input=2, retry_policy=policy))
    except task.TaskFailedError as error:
        return f"gave up: {error.details.message}"


@scenario
def retry_policy(hub: Hub) -> str:
    with hub.worker([retrying], [flaky]):
        enough = hub.client.schedule_new_orchestration(retrying, input=3, instance_id=hub.new_id("enough"))
        too_few = hub.client.schedule_new_orchestration(retrying, input=2, instance_id=hub.new_id("too-few"))
        expect(hub.completed(enough).get_output(), "succeeded on attempt 3", "output with 3 attempts allowed")
        expect(hub.completed(too_few).get_output(), "gave up: attempt 2 failed", "output with 2 attempts allowed")
    expect(len(calls[enough]), 3, "activity executions with max_number_of_attempts=3")
    expect(len(calls[too_few]), 2, "activity executions with max_number_of_attempts=2")
    gaps = [b - a for a, b in zip(calls[enough], calls[enough][1:])]
    require(all(gap >= 0.45 for gap in gaps), f"retries must wait first_retry_interval=0.5s; gaps were {gaps}")
    return "failed twice then succeeded (3 attempts); with 2 allowed it gave up after 2"


def doomed(ctx: task.OrchestrationContext, invoice: int):
    yield ctx.call_activity(square, input=invoice)
    raise ValueError(f"invoice {invoice} is invalid")


@scenario
def orchestration_failure(hub: Hub) -> str:
    with hub.worker([doomed], [square]):
        iid = hub.client.schedule_new_orchestration(doomed, input=42, instance_id=hub.new_id())
        state = hub.finish(iid)
    expect(state.runtime_status, OrchestrationStatus.FAILED, f"status ({describe(state)})")
    require(state.failure_details is not None, "a FAILED instance must carry failure details")
    expect(state.failure_details.error_type, "builtins.ValueError", "failure details errorType")
    expect(state.failure_details.message, "invoice 42 is invalid", "failure details message")
    expect(state.get_output(), None, "output of a failed orchestration")
    try:
        state.raise_if_failed()
        raise Failed("raise_if_failed() did not raise for a FAILED instance")
    except client.OrchestrationFailedError as error:
        expect(error.failure_details.message, "invoice 42 is invalid", "OrchestrationFailedError details")
    return "FAILED with errorType builtins.ValueError and the raised message"


def staged(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status({"stage": 1, "note": "waiting for review"})
    yield ctx.wait_for_external_event("reviewed")
    ctx.set_custom_status({"stage": 2, "note": "done"})
    return "ok"


@scenario
def custom_status(hub: Hub) -> str:
    with hub.worker([staged]):
        iid = hub.client.schedule_new_orchestration(staged, instance_id=hub.new_id())
        running = hub.wait_custom_status(iid, {"stage": 1, "note": "waiting for review"})
        expect(running.runtime_status, OrchestrationStatus.RUNNING, "status while custom status is stage 1")
        hub.client.raise_orchestration_event(iid, "reviewed")
        state = hub.completed(iid)
    expect(state.get_custom_status(), {"stage": 2, "note": "done"}, "custom status after completion")
    return "custom status visible while running and after completion"


def wall_clock(ctx: task.ActivityContext, _) -> float:
    return time.time()


def report_start(ctx: task.OrchestrationContext, _):
    return (yield ctx.call_activity(wall_clock))


@scenario
def scheduled_start(hub: Hub) -> str:
    with hub.worker([report_start], [wall_clock]):
        start_at = datetime.now(timezone.utc) + timedelta(seconds=2)
        iid = hub.client.schedule_new_orchestration(report_start, instance_id=hub.new_id(), start_at=start_at)
        time.sleep(0.5)
        state = hub.state(iid)
        expect(state.runtime_status, OrchestrationStatus.PENDING, f"status 1.5s before start_at ({describe(state)})")
        ran_at = hub.completed(iid).get_output()
    early = start_at.timestamp() - ran_at
    require(early <= 0.05, f"the orchestration ran {early:.2f}s before its start_at")
    return f"PENDING until start_at, ran {-early:.2f}s after it"


@scenario
def query_and_purge(hub: Hub) -> str:
    prefix = hub.new_id()
    started_at = datetime.now(timezone.utc)
    with hub.worker([hello_cities, await_go], [say_hello]):
        done = [hub.client.schedule_new_orchestration(hello_cities, input=[f"c{i}"], instance_id=f"{prefix}-done{i}")
                for i in range(3)]
        waiting = hub.client.schedule_new_orchestration(await_go, instance_id=f"{prefix}-waiting")
        for iid in done:
            hub.completed(iid)
        hub.wait_custom_status(waiting, "waiting")

        def query(*statuses):
            found = hub.client.get_all_orchestration_states(OrchestrationQuery(
                instance_id_prefix=prefix, runtime_status=list(statuses) or None, fetch_inputs_and_outputs=True))
            return {s.instance_id: s for s in found}

        expect(sorted(query()), sorted(done + [waiting]), "instances matching the prefix")
        completed = query(OrchestrationStatus.COMPLETED)
        expect(sorted(completed), sorted(done), "COMPLETED instances matching the prefix")
        expect(completed[done[1]].get_output(), ["Hello c1!"], "output returned by the query")
        expect(sorted(query(OrchestrationStatus.RUNNING)), [waiting], "RUNNING instances matching the prefix")
        expect(query(OrchestrationStatus.FAILED), {}, "FAILED instances matching the prefix")

        expect(hub.client.purge_orchestration(done[0]).deleted_instance_count, 1, "purge of a completed instance")
        expect(hub.state(done[0]), None, "state of a purged instance")
        expect(sorted(query()), sorted(done[1:] + [waiting]), "instances left after the purge")

        hub.client.terminate_orchestration(waiting)
        hub.finish(waiting)
        result = hub.client.purge_orchestrations_by(created_time_from=started_at,
                                                    runtime_status=[OrchestrationStatus.TERMINATED])
        expect(result.deleted_instance_count, 1, "purge by filter (TERMINATED since the scenario began)")
        expect(hub.state(waiting), None, "state of the instance purged by filter")
        expect(sorted(query()), sorted(done[1:]), "instances left after both purges")
    return "query by prefix/status returns exactly the right instances; purged ones are gone"


uuids_seen: dict[str, list] = defaultdict(list)


def uuids_across_replays(ctx: task.OrchestrationContext, _):
    first = ctx.new_uuid()
    uuids_seen[ctx.instance_id].append(("first", first))
    yield ctx.call_activity(square, input=2)
    second = ctx.new_uuid()
    uuids_seen[ctx.instance_id].append(("second", second))
    yield ctx.create_timer(timedelta(seconds=0.2))
    return [first, second, ctx.new_uuid()]


@scenario
def new_uuid_determinism(hub: Hub) -> str:
    with hub.worker([uuids_across_replays], [square]):
        iid = hub.client.schedule_new_orchestration(uuids_across_replays, instance_id=hub.new_id())
        output = hub.completed(iid).get_output()
    require(len(set(output)) == 3, f"three new_uuid() calls must give three distinct values: {output}")
    for value in output:
        uuid.UUID(value)
    for label, position in (("first", 0), ("second", 1)):
        seen = {value for name, value in uuids_seen[iid] if name == label}
        expect(seen, {output[position]}, f"values of the {label} new_uuid() across all replays")
    replays = sum(1 for name, _ in uuids_seen[iid] if name == "first")
    require(replays >= 3, f"the orchestrator should have been replayed at least 3 times, ran {replays}")
    return f"same uuids across {replays} executions"


# ---------------------------------------------------------------------------------------------
# Versioning
# ---------------------------------------------------------------------------------------------

def report_version(ctx: task.OrchestrationContext, _):
    return ctx.version


@scenario
def versioning_client_default_version(hub: Hub) -> str:
    versioned_client = hub.new_client(default_version="1.5")
    with hub.worker([report_version]):
        by_default = versioned_client.schedule_new_orchestration(report_version, instance_id=hub.new_id("default"))
        explicit = versioned_client.schedule_new_orchestration(report_version, instance_id=hub.new_id("explicit"),
                                                               version="1.6")
        unversioned = hub.client.schedule_new_orchestration(report_version, instance_id=hub.new_id("none"))
        expect(hub.completed(by_default).get_output(), "1.5", "context.version from the client's default_version")
        expect(hub.completed(explicit).get_output(), "1.6", "context.version from an explicit version")
        expect(hub.completed(unversioned).get_output(), None, "context.version with no version at all")
    return "context.version shows the client default, an explicit override, and None"


def tagged_orchestrator(label: str):
    """An orchestrator (the same registered name on every worker) that says which worker ran it."""
    def versioned_work(ctx: task.OrchestrationContext, _):
        return {"worker": label, "version": ctx.version}
    return versioned_work


def tagged_orchestrator_with_activity(label: str):
    def versioned_work(ctx: task.OrchestrationContext, _):
        stamp = yield ctx.call_activity("stamp")
        return {"worker": label, "version": ctx.version, "activity": stamp}
    return versioned_work


def tagged_activity(label: str):
    def stamp(ctx: task.ActivityContext, _):
        return f"stamped by {label}"
    return stamp


def version_worker(hub: Hub, version: str, match: VersionMatchStrategy, failure: VersionFailureStrategy, *,
                   orchestrator=tagged_orchestrator, activity=None, filters: bool = False):
    """A worker whose functions report `version` as their label, with versioning set to `version`."""
    return hub.worker([orchestrator(version)], [activity(version)] if activity else [], filters=filters,
                      versioning=versioning(version, match, failure))


def start_versions(hub: Hub, *versions: str | None, copies: int = 1) -> list[tuple]:
    """Start `copies` instances of "versioned_work" per version; returns [(version, instance id)]."""
    return [(v, hub.client.schedule_new_orchestration("versioned_work", instance_id=hub.new_id(f"v{v}-{i}"),
                                                      version=v))
            for i in range(copies) for v in versions]


@scenario
def versioning_strict_fail(hub: Hub) -> str:
    with version_worker(hub, "1.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.FAIL):
        ids = dict(start_versions(hub, "1.0", "2.0", "0.9"))
        expect(hub.completed(ids["1.0"]).get_output(), {"worker": "1.0", "version": "1.0"}, "matching instance output")
        for v in ("2.0", "0.9"):
            state = hub.finish(ids[v])
            expect(state.runtime_status, OrchestrationStatus.FAILED, f"status of the {v} instance ({describe(state)})")
            expect(state.failure_details.error_type, "VersionMismatch", f"errorType for the {v} instance")
            require(f"'{v}'" in state.failure_details.message and "'1.0'" in state.failure_details.message,
                    f"failure message should name both versions: {state.failure_details.message!r}")
    return "1.0 ran; 2.0 and 0.9 FAILED with VersionMismatch"


@scenario
def versioning_strict_reject(hub: Hub) -> str:
    with version_worker(hub, "1.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.REJECT):
        ids = dict(start_versions(hub, "2.0", "1.0"))
        expect(hub.completed(ids["1.0"]).get_output(), {"worker": "1.0", "version": "1.0"},
               "the 1.0 instance, run by the 1.0 worker")
        time.sleep(1.5)
        waiting = hub.state(ids["2.0"])
        require(waiting.runtime_status in (OrchestrationStatus.PENDING, OrchestrationStatus.RUNNING),
                f"a rejected 2.0 instance must wait for a 2.0 worker, but it is {describe(waiting)}")
        with version_worker(hub, "2.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.REJECT):
            expect(hub.completed(ids["2.0"]).get_output(), {"worker": "2.0", "version": "2.0"},
                   "the 2.0 instance once a 2.0 worker connected")
    return f"2.0 instance waited ({waiting.runtime_status.name}) until a 2.0 worker connected, then completed"


@scenario
def versioning_current_or_older(hub: Hub) -> str:
    with version_worker(hub, "2.0", VersionMatchStrategy.CURRENT_OR_OLDER, VersionFailureStrategy.FAIL):
        ids = dict(start_versions(hub, "1.0", "2.0", None, "3.0", "10.0"))
        for v in ("1.0", "2.0", None):
            expect(hub.completed(ids[v]).get_output(), {"worker": "2.0", "version": v}, f"output of the {v} instance")
        for v in ("3.0", "10.0"):
            state = hub.finish(ids[v])
            expect(state.runtime_status, OrchestrationStatus.FAILED,
                   f"status of the newer {v} instance ({describe(state)})")
            expect(state.failure_details.error_type, "VersionMismatch", f"errorType for the {v} instance")
    return "1.0, 2.0 and unversioned ran on a 2.0 worker; 3.0 and 10.0 FAILED"


def child_version(ctx: task.OrchestrationContext, _):
    return ctx.version


def parent_version(ctx: task.OrchestrationContext, _):
    inherited = yield ctx.call_sub_orchestrator(child_version)
    pinned = yield ctx.call_sub_orchestrator(child_version, version="1.7")
    return {"parent": ctx.version, "child": inherited, "child_pinned": pinned}


@scenario
def versioning_sub_orchestration(hub: Hub) -> str:
    options = versioning("3.0", VersionMatchStrategy.NONE, VersionFailureStrategy.FAIL)
    with hub.worker([parent_version, child_version], versioning=options):
        iid = hub.client.schedule_new_orchestration(parent_version, instance_id=hub.new_id(), version="1.0")
        output = hub.completed(iid).get_output()
    expect(output, {"parent": "1.0", "child": "3.0", "child_pinned": "1.7"},
           "versions: parent from the client, child from the worker's default_version, pinned child from the call")
    return "child got the worker's default_version, not the parent's"


@scenario
def versioning_two_workers(hub: Hub) -> str:
    with version_worker(hub, "1.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.REJECT), \
            version_worker(hub, "2.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.REJECT):
        for v, iid in start_versions(hub, "1.0", "2.0", copies=3):
            expect(hub.completed(iid).get_output(), {"worker": v, "version": v}, f"who ran the {v} instance {iid}")
    return "each of 6 instances ran on the worker of its own version"


def run_on_filtered_workers(hub: Hub, **functions) -> None:
    """Two workers (1.0 and 2.0) opted into work item filters, with FAIL on a version mismatch: an
    instance offered to the wrong worker FAILS, so every instance completing proves the routing."""
    with version_worker(hub, "1.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.FAIL, filters=True,
                        **functions), \
            version_worker(hub, "2.0", VersionMatchStrategy.STRICT, VersionFailureStrategy.FAIL, filters=True,
                           **functions):
        for v, iid in start_versions(hub, "1.0", "2.0", copies=3):
            state = hub.finish(iid)
            expect(state.runtime_status, OrchestrationStatus.COMPLETED,
                   f"status of the {v} instance {iid}; FAILED means the wrong worker was offered it "
                   f"({describe(state)})")
            expected = {"worker": v, "version": v}
            if "activity" in functions:
                expected["activity"] = f"stamped by {v}"
            expect(state.get_output(), expected, f"output of the {v} instance {iid}")


@scenario
def work_item_filters(hub: Hub) -> str:
    run_on_filtered_workers(hub)
    return "with filters, each worker was only offered instances of its own version"


@scenario
def work_item_filters_with_activities(hub: Hub) -> str:
    run_on_filtered_workers(hub, orchestrator=tagged_orchestrator_with_activity, activity=tagged_activity)
    return "with filters, orchestrations and their activities stayed on the worker of their version"


# ---------------------------------------------------------------------------------------------

def run(address: str, name: str) -> dict:
    hub = Hub(address, name)
    try:
        detail = SCENARIOS[name](hub)
        return {"scenario": name, "ok": True, "detail": detail}
    except Failed as failure:
        return {"scenario": name, "ok": False, "detail": str(failure)}
    except Exception as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        return {"scenario": name, "ok": False,
                "detail": f"{type(error).__name__}: {error} (at {os.path.basename(where.filename)}:{where.lineno})"}
    finally:
        hub.close()


def report(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if argv[1:] == ["--list"]:
        print("\n".join(SCENARIOS))
        return 0
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    address, names = argv[1], argv[2:]
    if names == ["all"]:
        names = list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    all_ok = True
    for name in names:
        def overrun(name=name):
            report({"scenario": name, "ok": False,
                    "detail": f"watchdog: scenario still running after {SCENARIO_DEADLINE}s (a worker or wait hung)"})
            os._exit(3)
        watchdog = threading.Timer(SCENARIO_DEADLINE, overrun)
        watchdog.daemon = True
        watchdog.start()
        result = run(address, name)
        watchdog.cancel()
        report(result)
        all_ok &= result["ok"]
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
