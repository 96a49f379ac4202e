"""End-to-end SDK scenarios against a real task hub (ours and Microsoft's reference backend)."""

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from durabletask import client, task, worker
from tests.support.processes import MsBackendProcess, free_port, ms_python, ms_run
from tests.support.sdk import new_id, running_worker, wait_until


@pytest.fixture
def hub(hub_address):
    with client.TaskHubGrpcClient(host_address=hub_address) as c:
        yield c


def run_to_end(hub, orchestrator, timeout=30, **kwargs):
    instance_id = hub.schedule_new_orchestration(orchestrator, instance_id=new_id(task.get_name(orchestrator)), **kwargs)
    state = hub.wait_for_orchestration_completion(instance_id, timeout=timeout)
    assert state is not None
    return state


# ---- activities, chaining, fan-out ------------------------------------------------------------

def hello(ctx: task.ActivityContext, name):
    return f"Hello, {name}!"


def hello_cities(ctx: task.OrchestrationContext, _):
    results = []
    for city in ("Tokyo", "Seattle", "London"):
        results.append((yield ctx.call_activity(hello, input=city)))
    return results


def square(ctx, n):
    return n * n


def fan_out(ctx, count):
    return sum((yield task.when_all([ctx.call_activity(square, input=i) for i in range(count)])))


def test_activity_chain_returns_results_in_order(hub, hub_address):
    with running_worker(hub_address, [hello_cities], [hello]):
        state = run_to_end(hub, hello_cities)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.get_output() == ["Hello, Tokyo!", "Hello, Seattle!", "Hello, London!"]


def test_fan_out_fan_in(hub, hub_address):
    with running_worker(hub_address, [fan_out], [square]):
        state = run_to_end(hub, fan_out, input=20)
    assert state.get_output() == sum(i * i for i in range(20))


@dataclass
class Order:
    item: str
    quantity: int


def double_order(ctx, order: Order) -> Order:
    return Order(order.item, order.quantity * 2)


def takes_order(ctx, order: Order):
    doubled = yield ctx.call_activity(double_order, input=order)
    return f"{doubled.quantity} x {doubled.item}"


def test_dataclasses_travel_as_json_objects_and_are_rebuilt_from_annotations(hub, hub_address):
    with running_worker(hub_address, [takes_order], [double_order]):
        state = run_to_end(hub, takes_order, input=Order("apple", 3))
    assert state.get_input() == {"item": "apple", "quantity": 3}
    assert state.get_input(Order) == Order("apple", 3)
    assert state.get_output() == "6 x apple"


# ---- failures ---------------------------------------------------------------------------------

def explode(ctx, _):
    raise ValueError("kaboom")


def calls_explode(ctx, _):
    yield ctx.call_activity(explode)


def test_activity_failure_fails_the_orchestration_with_details(hub, hub_address):
    with running_worker(hub_address, [calls_explode], [explode]):
        state = run_to_end(hub, calls_explode)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "durabletask.task.TaskFailedError"
    assert "kaboom" in state.failure_details.message
    with pytest.raises(client.OrchestrationFailedError, match="kaboom"):
        state.raise_if_failed()


def calls_unknown_activity(ctx, _):
    yield ctx.call_activity("not_registered_anywhere")


def test_unregistered_activity_fails_like_microsofts_sdk(hub, hub_address):
    # Only a worker that sends no work item filters is offered an activity it does not have.
    with running_worker(hub_address, [calls_unknown_activity], filters=False):
        state = run_to_end(hub, calls_unknown_activity)
    inner = state.failure_details.inner_failure
    assert inner.error_type == "durabletask.worker.ActivityNotRegisteredError"
    assert inner.message == "Activity function named 'not_registered_anywhere' was not registered!"


def test_unregistered_orchestrator_fails_the_instance_on_a_worker_without_filters(hub, hub_address):
    with running_worker(hub_address, [hello_cities], [hello], filters=False):
        instance_id = hub.schedule_new_orchestration("no_such_orchestrator", instance_id=new_id("missing"))
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "durabletask.worker.OrchestratorNotRegisteredError"
    assert state.failure_details.message == "A 'no_such_orchestrator' orchestrator was not registered."


def test_unregistered_work_waits_for_a_worker_that_has_it(hub, hub_address):
    """By default workers send filters: what no connected worker registered stays PENDING."""
    with running_worker(hub_address, [], [hello]):
        instance_id = hub.schedule_new_orchestration(hello_cities, instance_id=new_id("unserved"))
        time.sleep(1)
        assert hub.get_orchestration_state(instance_id).runtime_status == client.OrchestrationStatus.PENDING
        with running_worker(hub_address, [hello_cities]):
            state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == ["Hello, Tokyo!", "Hello, Seattle!", "Hello, London!"]


attempts: dict[str, int] = {}


def flaky(ctx: task.ActivityContext, succeed_on):
    attempts[ctx.orchestration_id] = attempts.get(ctx.orchestration_id, 0) + 1
    if attempts[ctx.orchestration_id] < succeed_on:
        raise RuntimeError(f"attempt {attempts[ctx.orchestration_id]} failed")
    return attempts[ctx.orchestration_id]


def retries_flaky(ctx, succeed_on):
    policy = task.RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=3)
    return (yield ctx.call_activity(flaky, input=succeed_on, retry_policy=policy))


def test_retry_policy_retries_until_success(hub, hub_address):
    with running_worker(hub_address, [retries_flaky], [flaky]):
        state = run_to_end(hub, retries_flaky, input=3)
    assert state.get_output() == 3


def test_retry_policy_gives_up_after_max_attempts(hub, hub_address):
    with running_worker(hub_address, [retries_flaky], [flaky]):
        state = run_to_end(hub, retries_flaky, input=10)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert attempts[state.instance_id] == 3


# ---- timers, events, sub-orchestrations ---------------------------------------------------------

def sleeps(ctx, seconds):
    before = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - before).total_seconds()


def test_durable_timer_delays_the_orchestration(hub, hub_address):
    with running_worker(hub_address, [sleeps]):
        started = time.monotonic()
        state = run_to_end(hub, sleeps, input=1)
    assert state.get_output() >= 1
    assert time.monotonic() - started >= 1


def approval_or_timeout(ctx, _):
    approval = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(seconds=30))
    winner = yield task.when_any([approval, timeout])
    return approval.get_result() if winner is approval else "timed out"


def test_external_event_wins_a_race_with_a_timer(hub, hub_address):
    with running_worker(hub_address, [approval_or_timeout]):
        instance_id = hub.schedule_new_orchestration(approval_or_timeout, instance_id=new_id("approval"))
        hub.wait_for_orchestration_start(instance_id, timeout=10)
        hub.raise_orchestration_event(instance_id, "approval", data={"by": "ann"})
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == {"by": "ann"}


def child(ctx, n):
    return {"id": ctx.instance_id, "value": n + 1, "version": ctx.version}


def parent(ctx, n):
    return (yield ctx.call_sub_orchestrator(child, input=n))


def test_sub_orchestration_result_flows_back_to_parent(hub, hub_address):
    with running_worker(hub_address, [parent, child]):
        state = run_to_end(hub, parent, input=41)
    # The child's id derives from the parent's id and the call's sequence number, as in Microsoft's SDK.
    assert state.get_output() == {"id": f"{state.instance_id}:0001", "value": 42, "version": None}


def pinger(ctx, target):
    ctx.send_event(target, "ping", data="from pinger")
    return "sent"


def waits_for_ping(ctx, _):
    return (yield ctx.wait_for_external_event("ping"))


def test_send_event_reaches_another_instance(hub, hub_address):
    with running_worker(hub_address, [pinger, waits_for_ping]):
        target = hub.schedule_new_orchestration(waits_for_ping, instance_id=new_id("target"))
        hub.wait_for_orchestration_start(target, timeout=10)
        run_to_end(hub, pinger, input=target)
        state = hub.wait_for_orchestration_completion(target, timeout=30)
    assert state.get_output() == "from pinger"


def counter(ctx, n):
    if n < 5:
        ctx.continue_as_new(n + 1)
        return
    return n


def test_continue_as_new_restarts_with_new_input(hub, hub_address):
    with running_worker(hub_address, [counter]):
        state = run_to_end(hub, counter, input=0)
    assert state.get_output() == 5


def shows_progress(ctx, _):
    ctx.set_custom_status({"stage": "waiting"})
    yield ctx.wait_for_external_event("go")
    return ctx.new_uuid()


# ---- management: suspend, resume, terminate, custom status, query, purge ----------------------

def test_suspend_holds_events_until_resume(hub, hub_address):
    with running_worker(hub_address, [shows_progress]):
        instance_id = hub.schedule_new_orchestration(shows_progress, instance_id=new_id("suspend"))
        hub.wait_for_orchestration_start(instance_id, timeout=10)
        hub.suspend_orchestration(instance_id)
        wait_for_status(hub, instance_id, client.OrchestrationStatus.SUSPENDED)
        hub.raise_orchestration_event(instance_id, "go")
        time.sleep(0.5)
        assert hub.get_orchestration_state(instance_id).runtime_status == client.OrchestrationStatus.SUSPENDED
        hub.resume_orchestration(instance_id)
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.get_custom_status() == {"stage": "waiting"}
    uuid.UUID(state.get_output())


def test_terminate_ends_a_running_orchestration_with_output(hub, hub_address):
    with running_worker(hub_address, [shows_progress]):
        instance_id = hub.schedule_new_orchestration(shows_progress, instance_id=new_id("terminate"))
        hub.wait_for_orchestration_start(instance_id, timeout=10)
        hub.terminate_orchestration(instance_id, output="operator said stop")
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.TERMINATED
    assert state.get_output() == "operator said stop"


def test_query_and_purge(hub, hub_address):
    prefix = new_id("query")
    with running_worker(hub_address, [counter]):
        ids = [hub.schedule_new_orchestration(counter, input=5, instance_id=f"{prefix}-{i}") for i in range(3)]
        for instance_id in ids:
            hub.wait_for_orchestration_completion(instance_id, timeout=30)
    found = hub.get_all_orchestration_states(client.OrchestrationQuery(instance_id_prefix=prefix))
    assert sorted(s.instance_id for s in found) == sorted(ids)
    assert hub.purge_orchestration(ids[0]).deleted_instance_count == 1
    assert hub.get_orchestration_state(ids[0]) is None
    purged = hub.purge_orchestrations_by(created_time_from=min(s.created_at for s in found),
                                         created_time_to=max(s.created_at for s in found) + timedelta(milliseconds=1),
                                         runtime_status=[client.OrchestrationStatus.COMPLETED])
    assert purged.deleted_instance_count == 2
    assert [hub.get_orchestration_state(i) for i in ids[1:]] == [None, None]


def test_unknown_instance_has_no_state(hub):
    assert hub.get_orchestration_state(new_id("nobody")) is None


def test_wait_times_out_with_timeout_error(hub):
    instance_id = hub.schedule_new_orchestration("never_runs", instance_id=new_id("timeout"))
    with pytest.raises(TimeoutError):
        hub.wait_for_orchestration_completion(instance_id, timeout=0.5)


def test_scheduling_something_that_is_not_an_orchestrator_says_so(hub):
    with pytest.raises(TypeError, match="orchestrator function or its registered name"):
        hub.schedule_new_orchestration(42)


def wait_for_status(hub, instance_id, status, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = hub.get_orchestration_state(instance_id)
        if state is not None and state.runtime_status == status:
            return state
        time.sleep(0.05)
    raise AssertionError(f"{instance_id} never reached {status}")


# ---- the worker's connection ------------------------------------------------------------------

def test_worker_reconnects_after_the_hub_restarts():
    backend = MsBackendProcess()
    backend.start()
    try:
        with running_worker(backend.address, [hello_cities], [hello]) as w:
            # Stopped once the worker's stream is open: a hub that goes away while the first stream
            # is still being set up is the silent-stream case, given up on after SILENT_STREAM_SECONDS.
            wait_until(lambda: w.is_connected)
            backend.stop()
            time.sleep(1)  # the worker sees the stream drop and starts backing off
            backend.start()
            with client.TaskHubGrpcClient(host_address=backend.address) as c:
                instance_id = c.schedule_new_orchestration(hello_cities, instance_id=new_id("reconnect"))
                state = c.wait_for_orchestration_completion(instance_id, timeout=30)
        assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    finally:
        backend.stop()


def test_worker_keeps_retrying_a_hub_that_is_not_there_yet_and_stops_promptly():
    address = f"127.0.0.1:{free_port()}"
    w = worker.TaskHubGrpcWorker(host_address=address)
    w.start()
    time.sleep(0.5)
    started = time.monotonic()
    w.stop()
    assert time.monotonic() - started < 2


def test_worker_refuses_registration_while_running(hub_address):
    with running_worker(hub_address, [counter]) as w:
        with pytest.raises(RuntimeError, match="while the worker is running"):
            w.add_orchestrator(parent)


def test_in_flight_orchestration_finishes_after_our_server_restarts(server_factory):
    server = server_factory()
    with running_worker(server.address, [approval_or_timeout]), \
            client.TaskHubGrpcClient(host_address=server.address) as c:
        instance_id = c.schedule_new_orchestration(approval_or_timeout, instance_id=new_id("restart"))
        c.wait_for_orchestration_start(instance_id, timeout=10)
        server.restart()
        c.raise_orchestration_event(instance_id, "approval", data="after restart")
        state = c.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == "after restart"


# ---- wire compatibility with Microsoft's SDK ----------------------------------------------------

MS_CLIENT_STARTS_AND_READS = """
import json, sys
from dataclasses import dataclass
from durabletask import client

@dataclass
class Basket:
    items: list
    owner: str

with client.TaskHubGrpcClient(host_address=sys.argv[1]) as c:
    instance_id = c.schedule_new_orchestration("sums_basket", input=Basket([1, 2, 3], "ann"), instance_id=sys.argv[2])
    state = c.wait_for_orchestration_completion(instance_id, timeout=30)
    print(json.dumps([str(state.runtime_status), state.get_output(), state.get_custom_status()]))
"""


def basket_total(ctx, basket):
    return {"owner": basket["owner"], "total": sum(basket["items"])}


def sums_basket(ctx, basket):
    ctx.set_custom_status("counted")
    return (yield ctx.call_activity(basket_total, input=basket))


def test_microsofts_client_starts_and_reads_an_instance_our_worker_runs(hub_address):
    with running_worker(hub_address, [sums_basket], [basket_total]):
        result = ms_run(MS_CLIENT_STARTS_AND_READS, hub_address, new_id("ms-client"))
    assert result.returncode == 0, result.stderr[-2000:]
    status, output, custom_status = json.loads(result.stdout.strip().splitlines()[-1])
    assert (status, output, custom_status) == ("COMPLETED", {"owner": "ann", "total": 6}, "counted")


MS_WORKER = """
import sys, time
from durabletask import task, worker

def label(ctx, order):
    return order["item"].upper() * order["quantity"]

def labels(ctx, items):
    results = yield task.when_all([ctx.call_activity(label, input=i) for i in items])
    return results

with worker.TaskHubGrpcWorker(host_address=sys.argv[1]) as w:
    w.add_orchestrator(labels)
    w.add_activity(label)
    w.start()
    time.sleep(float(sys.argv[2]))
"""


def test_our_client_reads_an_instance_microsofts_worker_runs(hub, hub_address):
    ms_worker = subprocess.Popen([str(ms_python()), "-c", MS_WORKER, hub_address, "8"], cwd="/",
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        instance_id = hub.schedule_new_orchestration("labels", input=[Order("pear", 1), Order("fig", 2)],
                                                     instance_id=new_id("ms-worker"))
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    finally:
        ms_worker.terminate()
        ms_worker.wait()
    assert state.runtime_status == client.OrchestrationStatus.COMPLETED
    assert state.get_output() == ["PEAR", "FIGFIG"]
