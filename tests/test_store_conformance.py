"""Store conformance: the behaviour every task hub store must have, whatever its database.

Each test plays both the client's and the worker's part against a store directly. The `store`
fixture is parametrized over the store implementations; a new store passes these unchanged.
"""

import asyncio
import time

import pytest

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.server.stores.base import (
    ACCEPT_ALL, RESULT_BATCH_SECONDS, ClaimRequest, InstanceExists, InstanceNotFound, InstanceQuery, NameFilter,
    NewInstance, PurgeFilter, StaleToken, StoreError, WorkFilters, WrongState)
from durabletask.server.stores.postgres import PostgresStore
from durabletask.server.stores.sqlite import SqliteStore
from tests.support.hub import (
    activity_result, complete, continue_as_new, episode, kinds, run_async, schedule, sub_orchestration, text, timer)

LEASE = 30.0
RUNNING, COMPLETED, PENDING, SUSPENDED, TERMINATED, FAILED = (
    pb.ORCHESTRATION_STATUS_RUNNING, pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_PENDING,
    pb.ORCHESTRATION_STATUS_SUSPENDED, pb.ORCHESTRATION_STATUS_TERMINATED, pb.ORCHESTRATION_STATUS_FAILED)


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request, tmp_path):
    """Opens the store under test; calling it again reopens the same data (a restart)."""
    opened = []
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_cluster").new_database()

    def open_():
        store = {"sqlite": lambda: SqliteStore(str(tmp_path / "hub.db")),
                 "postgres": lambda: PostgresStore(database)}[request.param]()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


async def claim_one(store, kind="orchestrations", filters=ACCEPT_ALL, lease=LEASE):
    claimed = await store.claim(10, 0, filters, lease) if kind == "orchestrations" \
        else await store.claim(0, 10, filters, lease)
    items = getattr(claimed, kind)
    assert len(items) == 1, f"expected exactly one claimable {kind}, got {len(items)}"
    return items[0]


async def nothing_claimable(store, filters=ACCEPT_ALL):
    claimed = await store.claim(10, 10, filters, LEASE)
    return not claimed.orchestrations and not claimed.activities


async def start(store, instance_id, name="workflow", **kwargs):
    await store.create_instance(NewInstance(instance_id=instance_id, name=name, **kwargs))


async def run_to_activity(store, instance_id, activity="step"):
    """Start an instance and run its first episode, which schedules one activity."""
    await start(store, instance_id)
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode(instance_id, item.token, schedule(1, activity, '"in"')))


async def wait_claimable(store, filters=ACCEPT_ALL, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        claimed = await store.claim(10, 10, filters, LEASE)
        if claimed.orchestrations or claimed.activities:
            return claimed
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing became claimable within {timeout}s")


# -- lifecycle ------------------------------------------------------------------------------------

@run_async
async def test_a_new_instance_is_pending_and_its_first_work_item_starts_it(store):
    await start(store, "a", input='"hi"', version="1.0", tags={"team": "x"})
    state = await store.get_instance("a")
    assert (state.status, state.name, state.version, state.input, state.tags) == (PENDING, "workflow", "1.0", '"hi"',
                                                                                   {"team": "x"})
    item = await claim_one(store)
    assert item.request.instanceId == "a"
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "executionStarted"]
    started = item.request.newEvents[1].executionStarted
    assert (started.name, started.version.value, started.input.value) == ("workflow", "1.0", '"hi"')
    assert not item.request.pastEvents


@run_async
async def test_activity_round_trip_completes_the_orchestration(store):
    await run_to_activity(store, "a")
    assert (await store.get_instance("a")).status == RUNNING
    activity = await claim_one(store, "activities")
    assert (activity.request.name, activity.request.input.value, activity.request.taskId) == ("step", '"in"', 1)
    await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"out"'))

    item = await claim_one(store)
    assert kinds(item.request.pastEvents) == ["orchestratorStarted", "executionStarted", "taskScheduled",
                                              "orchestratorCompleted"]
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "taskCompleted"]
    assert item.request.newEvents[1].taskCompleted.result.value == '"out"'
    await store.complete_orchestration(item.token, episode("a", item.token, complete('"done"'),
                                                           custom_status='"finished"'))
    state = await store.get_instance("a")
    assert (state.status, state.output, state.custom_status) == (COMPLETED, '"done"', '"finished"')
    assert state.completed_at is not None
    assert kinds(await store.get_history("a"))[-2:] == ["orchestratorCompleted", "executionCompleted"]
    assert await nothing_claimable(store)


@run_async
async def test_an_activity_result_is_filed_under_the_task_its_token_names(store):
    """The token, not the ids a worker echoes back, says which task of which instance finished."""
    await run_to_activity(store, "a")
    activity = await claim_one(store, "activities")
    result = activity_result(activity.request, activity.token, '"out"')
    result.taskId, result.instanceId = 7, "elsewhere"
    await store.complete_activity(activity.token, result)

    item = await claim_one(store)
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "taskCompleted"]
    assert item.request.newEvents[1].taskCompleted.taskScheduledId == 1


@run_async
async def test_a_fan_outs_results_wait_briefly_for_each_other_and_the_last_result_ends_the_wait(store):
    """While some of its activities are still due, a result makes its instance ready only
    RESULT_BATCH_SECONDS later, so that one episode (one replay) takes in a burst of results; the last
    result due makes it ready at once."""
    await start(store, "a")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("a", item.token, *(schedule(i, "step") for i in (1, 2, 3))))
    first, second, third = (await store.claim(0, 10, ACCEPT_ALL, LEASE)).activities
    held_since = time.monotonic()
    for activity in (first, second):
        await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"r"'))
    claimed = await store.claim(10, 0, ACCEPT_ALL, LEASE)
    if time.monotonic() - held_since < RESULT_BATCH_SECONDS / 2:  # (a stall of this machine would end the wait)
        assert not claimed.orchestrations
    item = claimed.orchestrations[0] if claimed.orchestrations else (await wait_claimable(store)).orchestrations[0]
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "taskCompleted", "taskCompleted"]
    await store.complete_orchestration(item.token, episode("a", item.token))

    await store.complete_activity(third.token, activity_result(third.request, third.token, '"r"'))
    item = await claim_one(store)
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "taskCompleted"]


@run_async
async def test_failed_activity_and_orchestration_failure_details_are_kept(store):
    await run_to_activity(store, "a")
    activity = await claim_one(store, "activities")
    boom = pb.TaskFailureDetails(errorType="ValueError", errorMessage="boom")
    await store.complete_activity(activity.token, activity_result(activity.request, activity.token, failure=boom))
    item = await claim_one(store)
    assert item.request.newEvents[1].taskFailed.failureDetails.errorMessage == "boom"
    await store.complete_orchestration(item.token, episode("a", item.token, complete(status=FAILED, failure=boom)))
    state = await store.get_instance("a")
    assert state.status == FAILED
    assert (state.failure_details.errorType, state.failure_details.errorMessage) == ("ValueError", "boom")


@run_async
async def test_duplicates_refused_in_one_batch_are_not_counted(store):
    outcomes = await asyncio.gather(start(store, "a"), start(store, "a"), start(store, "b"), start(store, "a"),
                                    return_exceptions=True)
    assert sum(isinstance(outcome, InstanceExists) for outcome in outcomes) == 2
    assert [(name, status, count) for name, _, status, count in store.instance_counts() if count] == [
        ("workflow", PENDING, 2)]


@run_async
async def test_duplicate_ids_are_refused_unless_the_status_is_replaceable(store):
    await start(store, "a")
    with pytest.raises(InstanceExists):
        await start(store, "a")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("a", item.token, complete('"1"')))
    await store.create_instance(NewInstance("a", "workflow", input='"again"'), replaceable=(COMPLETED,))
    state = await store.get_instance("a")
    assert (state.status, state.input, state.output) == (PENDING, '"again"', None)


@run_async
async def test_scheduled_start_holds_the_instance_until_its_time(store):
    await start(store, "later", scheduled_start=time.time() + 0.5)
    claimed = await store.claim(10, 10, ACCEPT_ALL, LEASE)
    assert not claimed.orchestrations
    assert claimed.next_ready_at == pytest.approx(time.time() + 0.5, abs=0.2)
    await store.raise_event("later", "early", None)  # must not start it before its time either
    assert await nothing_claimable(store)
    item = (await wait_claimable(store)).orchestrations[0]
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "executionStarted", "eventRaised"]


# -- leases and fencing -----------------------------------------------------------------------------

@run_async
async def test_a_leased_instance_is_not_claimed_twice(store):
    await start(store, "a")
    await claim_one(store)
    await store.raise_event("a", "meanwhile", None)
    assert await nothing_claimable(store)


@run_async
async def test_a_completion_refill_claims_the_work_it_made_ready_in_the_same_commit(store):
    await start(store, "a")
    item = await claim_one(store)
    refill = ClaimRequest(10, 10, ACCEPT_ALL, LEASE)
    claimed = await store.complete_orchestration(item.token, episode("a", item.token, schedule(1, "step", '"in"')),
                                                 refill)
    assert [(a.request.name, a.request.taskId) for a in claimed.activities] == [("step", 1)]
    activity = claimed.activities[0]

    claimed = await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"out"'),
                                            refill)
    assert [kinds(o.request.newEvents) for o in claimed.orchestrations] == [["orchestratorStarted", "taskCompleted"]]
    assert await nothing_claimable(store)  # leased by the refill: nobody else gets it
    item = claimed.orchestrations[0]
    assert await store.complete_orchestration(item.token, episode("a", item.token, complete('"done"'))) is None
    assert (await store.get_instance("a")).output == '"done"'


@run_async
async def test_a_refused_completion_claims_nothing_with_its_refill(store):
    await run_to_activity(store, "a")
    await start(store, "b")
    activity = await claim_one(store, "activities")
    await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"1"'))
    with pytest.raises(StaleToken):
        await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"2"'),
                                      ClaimRequest(10, 10, ACCEPT_ALL, LEASE))
    claimed = await store.claim(10, 10, ACCEPT_ALL, LEASE)
    assert sorted(item.request.instanceId for item in claimed.orchestrations) == ["a", "b"]


@run_async
async def test_an_expired_lease_returns_the_work_and_fences_the_old_token(store):
    await start(store, "a")
    first = await claim_one(store, lease=0.2)
    await asyncio.sleep(0.3)
    second = await claim_one(store)
    assert second.token != first.token
    with pytest.raises(StaleToken):
        await store.complete_orchestration(first.token, episode("a", first.token, complete('"stale"')))
    await store.complete_orchestration(second.token, episode("a", second.token, complete('"fresh"')))
    assert (await store.get_instance("a")).output == '"fresh"'


@run_async
async def test_renewed_leases_do_not_expire(store):
    await run_to_activity(store, "a")
    await store.raise_event("a", "e", None)
    orchestration_held = await claim_one(store, lease=0.3)
    activity = await claim_one(store, "activities", lease=0.3)
    for _ in range(3):
        await asyncio.sleep(0.2)
        await store.renew([orchestration_held.token, activity.token, "o-unknown.a"], 0.3)
    assert await nothing_claimable(store)
    await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"ok"'))


@run_async
async def test_a_token_is_applied_once(store):
    await run_to_activity(store, "a")
    activity = await claim_one(store, "activities")
    await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"1"'))
    with pytest.raises(StaleToken):
        await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"2"'))
    item = await claim_one(store)
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "taskCompleted"]
    await store.complete_orchestration(item.token, episode("a", item.token))
    with pytest.raises(StaleToken):
        await store.complete_orchestration(item.token, episode("a", item.token, complete()))


@run_async
async def test_expired_activity_lease_is_reclaimed_and_the_late_result_refused(store):
    await run_to_activity(store, "a")
    slow = await claim_one(store, "activities", lease=0.2)
    await asyncio.sleep(0.3)
    fast = await claim_one(store, "activities")
    await store.complete_activity(fast.token, activity_result(fast.request, fast.token, '"fast"'))
    with pytest.raises(StaleToken):
        await store.complete_activity(slow.token, activity_result(slow.request, slow.token, '"slow"'))


@run_async
async def test_unknown_tokens_are_refused(store):
    # Tokens are the store's own text, but a worker may send anything: digits that int() reads but
    # no ASCII digit, a row id past 64 bits, more digits than int() converts.
    for token in ["", "nonsense", "o123.missing", "a999.x", "a\u00b2.x", "a99999999999999999999.x", "a" + "9" * 5000]:
        with pytest.raises(StaleToken):
            await store.abandon(token)
        with pytest.raises(StaleToken):
            await store.complete_orchestration(token, episode("missing", token, complete()))
        with pytest.raises(StaleToken):
            await store.complete_activity(token, pb.ActivityResponse(completionToken=token))


@run_async
async def test_abandoned_work_returns_after_its_back_off(store):
    await run_to_activity(store, "a")
    activity = await claim_one(store, "activities")
    await store.abandon(activity.token, retry_after=0.3)
    assert await nothing_claimable(store)
    again = (await wait_claimable(store)).activities[0]
    assert again.request.taskId == activity.request.taskId
    with pytest.raises(StaleToken):
        await store.abandon(activity.token)

    await store.complete_activity(again.token, activity_result(again.request, again.token, '"x"'))
    item = await claim_one(store)
    await store.abandon(item.token)
    redelivered = await claim_one(store)
    assert kinds(redelivered.request.newEvents) == ["orchestratorStarted", "taskCompleted"]


# -- filters ------------------------------------------------------------------------------------

@run_async
async def test_filters_select_by_name_and_version_before_claiming(store):
    await start(store, "v1", name="order", version="1.0")
    await start(store, "v2", name="order", version="2.0")
    await start(store, "other", name="invoice")
    only_v2 = WorkFilters(orchestrations=(NameFilter("order", ("2.0",)),), activities=())
    assert [i.request.instanceId for i in (await store.claim(10, 10, only_v2, LEASE)).orchestrations] == ["v2"]
    no_orchestrations = WorkFilters(orchestrations=())
    assert not (await store.claim(10, 10, no_orchestrations, LEASE)).orchestrations
    any_order = WorkFilters(orchestrations=(NameFilter("order"),))
    assert [i.request.instanceId for i in (await store.claim(10, 10, any_order, LEASE)).orchestrations] == ["v1"]
    rest = await store.claim(10, 10, ACCEPT_ALL, LEASE)
    assert [i.request.instanceId for i in rest.orchestrations] == ["other"]


@run_async
async def test_activities_inherit_their_orchestrations_version_for_filtering(store):
    await start(store, "a", version="2.0")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("a", item.token, schedule(1, "stamp")))
    v1_worker = WorkFilters(activities=(NameFilter("stamp", ("1.0",)),))
    assert not (await store.claim(0, 10, v1_worker, LEASE)).activities
    v2_worker = WorkFilters(activities=(NameFilter("stamp", ("2.0",)),))
    assert len((await store.claim(0, 10, v2_worker, LEASE)).activities) == 1


@run_async
async def test_a_max_version_filter_takes_that_version_and_older_in_version_order(store):
    for version in ("", "1.0", "2.0", "9.0", "10.0", "2.0.1"):
        await start(store, f"v{version}", name="order", version=version)
    up_to_9 = WorkFilters(orchestrations=(NameFilter("order", max_version="9.0"),), activities=())
    claimed = await store.claim(10, 0, up_to_9, LEASE)
    assert sorted(i.request.instanceId for i in claimed.orchestrations) == ["v", "v1.0", "v2.0", "v2.0.1", "v9.0"]
    listed_or_older = WorkFilters(orchestrations=(NameFilter("order", ("10.0",), max_version="1.0"),))
    assert [i.request.instanceId for i in (await store.claim(10, 0, listed_or_older, LEASE)).orchestrations] \
        == ["v10.0"]


@run_async
async def test_listed_versions_match_their_equals_as_workers_compare_them(store):
    for version in ("1", "1.0.0", "1.0.1", "V2-beta"):
        await start(store, f"v{version}", name="order", version=version)
    listed = WorkFilters(orchestrations=(NameFilter("order", ("1.0", "v2-BETA")),))
    assert sorted(i.request.instanceId for i in (await store.claim(10, 0, listed, LEASE)).orchestrations) \
        == ["v1", "v1.0.0", "vV2-beta"]


@run_async
async def test_activity_max_version_follows_the_orchestrations_version(store):
    for iid, version in (("old", "1.0"), ("new", "3.0")):
        await start(store, iid, version=version)
        item = await claim_one(store)
        await store.complete_orchestration(item.token, episode(iid, item.token, schedule(1, "stamp")))
    up_to_2 = WorkFilters(activities=(NameFilter("stamp", max_version="2.0"),))
    claimed = await store.claim(0, 10, up_to_2, LEASE)
    assert [a.request.orchestrationInstance.instanceId for a in claimed.activities] == ["old"]


@run_async
async def test_excluded_instances_are_left_for_other_streams(store):
    await start(store, "a")
    await start(store, "b")
    not_a = WorkFilters(excluded_instances=frozenset({"a"}))
    assert [i.request.instanceId for i in (await store.claim(10, 0, not_a, LEASE)).orchestrations] == ["b"]
    assert [i.request.instanceId for i in (await store.claim(10, 0, ACCEPT_ALL, LEASE)).orchestrations] == ["a"]


@run_async
async def test_claims_say_when_the_work_became_ready_and_whether_a_lease_ran_out(store):
    before = time.time()
    await start(store, "a")
    first = await claim_one(store, lease=0.2)
    assert before <= first.ready_at <= time.time() and not first.lease_expired
    await asyncio.sleep(0.3)
    assert (await claim_one(store)).lease_expired


@run_async
async def test_pending_counts_are_the_backlog_claimable_now(store):
    await run_to_activity(store, "c")  # its activity is waiting; the instance itself is not
    await start(store, "a", name="order", version="1.0")
    await start(store, "b", name="order", version="1.0")
    await start(store, "later", name="order", version="1.0", scheduled_start=time.time() + 60)
    pending = sorted(await asyncio.to_thread(store.pending_counts))
    assert pending == [("activity", "step", "", 1), ("orchestration", "order", "1.0", 2)]
    await claim_one(store, filters=WorkFilters(orchestrations=(NameFilter("order"),), excluded_instances=
                                               frozenset({"b"})))
    await claim_one(store, "activities")
    assert sorted(await asyncio.to_thread(store.pending_counts)) == [("orchestration", "order", "1.0", 1)]


# -- timers and events ----------------------------------------------------------------------------

@run_async
async def test_durable_timer_fires_at_its_time(store):
    await start(store, "a")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("a", item.token, timer(1, 0.4)))
    claimed = await store.claim(10, 10, ACCEPT_ALL, LEASE)
    assert not claimed.orchestrations
    assert claimed.next_ready_at == pytest.approx(time.time() + 0.4, abs=0.2)
    fired = (await wait_claimable(store)).orchestrations[0]
    assert kinds(fired.request.newEvents) == ["orchestratorStarted", "timerFired"]
    assert fired.request.newEvents[1].timerFired.timerId == 1


@run_async
async def test_events_reach_running_instances_and_unknown_ids_are_refused(store):
    await start(store, "a")
    await store.raise_event("a", "approve", '"yes"')
    item = await claim_one(store)
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "executionStarted", "eventRaised"]
    assert item.request.newEvents[2].eventRaised.input.value == '"yes"'
    with pytest.raises(InstanceNotFound):
        await store.raise_event("nobody", "approve", None)


@run_async
async def test_events_arriving_during_an_episode_wait_for_the_next(store):
    await start(store, "a")
    item = await claim_one(store)
    await store.raise_event("a", "late", None)
    await store.complete_orchestration(item.token, episode("a", item.token))
    nxt = await claim_one(store)
    assert kinds(nxt.request.newEvents) == ["orchestratorStarted", "eventRaised"]


# -- suspend, resume, terminate ---------------------------------------------------------------------

@run_async
async def test_suspended_instances_hold_their_events_until_resumed(store):
    await run_to_activity(store, "a")
    await store.suspend("a", "maintenance")
    assert (await store.get_instance("a")).status == SUSPENDED
    await store.raise_event("a", "first", '"1"')
    activity = await claim_one(store, "activities")  # activities already running may finish
    await store.complete_activity(activity.token, activity_result(activity.request, activity.token, '"r"'))
    await store.raise_event("a", "second", '"2"')
    assert await nothing_claimable(store)
    await store.resume("a", "done")
    assert (await store.get_instance("a")).status == RUNNING
    item = await claim_one(store)
    assert kinds(item.request.newEvents) == ["orchestratorStarted", "executionSuspended", "eventRaised",
                                             "taskCompleted", "eventRaised", "executionResumed"]


@run_async
async def test_suspend_and_resume_refuse_finished_and_unknown_instances(store):
    with pytest.raises(InstanceNotFound):
        await store.suspend("nobody", None)
    await start(store, "a")
    await store.terminate("a", None, False)
    with pytest.raises(WrongState):
        await store.suspend("a", None)


@run_async
async def test_terminate_finishes_at_once_fences_the_episode_and_drops_later_events(store):
    await start(store, "a")
    item = await claim_one(store)
    await store.terminate("a", '"stop"', False)
    state = await store.get_instance("a")
    assert (state.status, state.output) == (TERMINATED, '"stop"')
    with pytest.raises(StaleToken):
        await store.complete_orchestration(item.token, episode("a", item.token, complete('"late"')))
    await store.raise_event("a", "ignored", None)
    assert await nothing_claimable(store)
    assert kinds(await store.get_history("a"))[-2:] == ["executionTerminated", "executionCompleted"]
    await store.terminate("a", '"again"', False)  # already finished: nothing changes
    assert (await store.get_instance("a")).output == '"stop"'
    with pytest.raises(InstanceNotFound):
        await store.terminate("nobody", None, False)


# -- sub-orchestrations and continue-as-new -----------------------------------------------------------

async def start_parent_with_child(store):
    await start(store, "parent", version="3.0")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("parent", item.token,
                                                           sub_orchestration(7, "child", "helper")))
    child = await claim_one(store)
    assert child.request.instanceId == "child"
    return child


@run_async
async def test_a_sub_orchestration_knows_its_parent_and_reports_back(store):
    child = await start_parent_with_child(store)
    parent_info = child.request.newEvents[1].executionStarted.parentInstance
    assert (parent_info.orchestrationInstance.instanceId, parent_info.taskScheduledId) == ("parent", 7)
    assert (await store.get_instance("child")).parent_instance_id == "parent"
    await store.complete_orchestration(child.token, episode("child", child.token, complete('"child result"')))
    back = await claim_one(store)
    assert back.request.instanceId == "parent"
    done = back.request.newEvents[1].subOrchestrationInstanceCompleted
    assert (done.taskScheduledId, done.result.value) == (7, '"child result"')


@run_async
async def test_a_failed_sub_orchestration_fails_its_task_in_the_parent(store):
    child = await start_parent_with_child(store)
    boom = pb.TaskFailureDetails(errorType="ValueError", errorMessage="bad line")
    await store.complete_orchestration(child.token, episode("child", child.token, complete(status=FAILED,
                                                                                           failure=boom)))
    back = await claim_one(store)
    assert back.request.newEvents[1].subOrchestrationInstanceFailed.failureDetails.errorMessage == "bad line"


@run_async
async def test_recursive_terminate_reaches_sub_orchestrations(store):
    await start_parent_with_child(store)
    await store.terminate("parent", '"all"', True)
    assert (await store.get_instance("child")).status == TERMINATED
    assert (await store.get_instance("parent")).status == TERMINATED


@run_async
async def test_continue_as_new_resets_history_and_keeps_carried_over_events(store):
    await start(store, "a", input='"1"', version="1.0")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("a", item.token, timer(1, 0.2)))
    await store.raise_event("a", "handled", '"h"')
    item = await claim_one(store)
    carried = pb.HistoryEvent(eventId=-1, eventRaised=pb.EventRaisedEvent(name="carried"))
    await store.raise_event("a", "during", None)
    await store.complete_orchestration(item.token, episode("a", item.token, continue_as_new(
        '"2"', carryoverEvents=[carried])))
    state = await store.get_instance("a")
    assert (state.status, state.input, state.version) == (RUNNING, '"2"', "1.0")
    assert await store.get_history("a") == []
    await asyncio.sleep(0.3)  # the old execution's timer would have fired by now: it must be gone
    nxt = await claim_one(store)
    assert not nxt.request.pastEvents
    assert kinds(nxt.request.newEvents) == ["orchestratorStarted", "executionStarted", "eventRaised", "eventRaised"]
    assert [e.eventRaised.name for e in nxt.request.newEvents[2:]] == ["carried", "during"]
    assert nxt.request.newEvents[1].executionStarted.input.value == '"2"'
    await store.complete_orchestration(nxt.token, episode("a", nxt.token, continue_as_new('"3"', newVersion=text("2.0"))))
    assert (await store.get_instance("a")).version == "2.0"


# -- query, purge, counts ---------------------------------------------------------------------------

async def finish(store, instance_id, output='"ok"'):
    await start(store, instance_id)
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode(instance_id, item.token, complete(output)))


@run_async
async def test_query_filters_by_status_and_prefix_and_pages(store):
    for i in range(5):
        await finish(store, f"done-{i}")
    await start(store, "done-pending")
    await start(store, "other")
    page, more = await store.query_instances(InstanceQuery(id_prefix="done-", page_size=2))
    seen = [s.instance_id for s in page]
    while more:
        page, more = await store.query_instances(InstanceQuery(id_prefix="done-", page_size=2, after_id=more))
        seen += [s.instance_id for s in page]
    assert seen == ["done-0", "done-1", "done-2", "done-3", "done-4", "done-pending"]
    completed, _ = await store.query_instances(InstanceQuery(statuses=(COMPLETED,), include_payloads=True))
    assert {s.instance_id for s in completed} == {f"done-{i}" for i in range(5)}
    assert {s.output for s in completed} == {'"ok"'}
    hidden, _ = await store.query_instances(InstanceQuery(statuses=(COMPLETED,)))
    assert {s.output for s in hidden} == {None}


@run_async
async def test_a_prefix_query_takes_any_last_character(store):
    """The prefix is a key range up to the next character, which U+10FFFF and U+D7FF do not simply have."""
    for instance_id in ["x\U0010ffff", "x\U0010ffff-1", "x\ud7ff", "x\ud7ff-1", "x\ue000", "y"]:
        await start(store, instance_id)
    for prefix, expected in [("x\U0010ffff", ["x\U0010ffff", "x\U0010ffff-1"]), ("x\ud7ff", ["x\ud7ff", "x\ud7ff-1"]),
                             ("\U0010ffff", [])]:
        page, _ = await store.query_instances(InstanceQuery(id_prefix=prefix))
        assert [s.instance_id for s in page] == expected


@run_async
async def test_a_list_key_this_store_did_not_make_is_refused(store):
    for key in ["nonsense", "|x", "1.5e|x", "12"]:
        with pytest.raises(StoreError, match="lastInstanceKey"):
            await store.list_instance_ids((), None, None, 2, key)


@run_async
async def test_list_instance_ids_pages_finished_instances_by_completion_time(store):
    for i in range(5):
        await finish(store, f"f{i}")
    await start(store, "running")
    ids, key = await store.list_instance_ids((), None, None, 2, None)
    while key:
        more, key = await store.list_instance_ids((), None, None, 2, key)
        ids += more
    assert ids == [f"f{i}" for i in range(5)]


@run_async
async def test_purge_deletes_finished_instances_only(store):
    await finish(store, "done")
    await start(store, "running")
    assert await store.purge(["done"]) == 1
    assert await store.get_instance("done") is None
    assert await store.purge(["done"]) == 0
    with pytest.raises(WrongState):
        await store.purge(["running"])
    await store.terminate("running", None, False)
    assert await store.purge(where=PurgeFilter(statuses=(TERMINATED,))) == 1
    assert await store.get_instance("running") is None


@run_async
async def test_recursive_purge_removes_sub_orchestrations(store):
    child = await start_parent_with_child(store)
    await store.complete_orchestration(child.token, episode("child", child.token, complete()))
    back = await claim_one(store)
    await store.complete_orchestration(back.token, episode("parent", back.token, complete()))
    assert await store.purge(["parent"], recursive=True) == 2
    assert await store.get_instance("child") is None


@run_async
async def test_counts_follow_every_status_change(store):
    await finish(store, "c1")
    await finish(store, "gone")
    await store.purge(["gone"])
    await start(store, "p1", version="2.0")
    await start(store, "s1", version="2.0")
    await store.suspend("s1", None)
    await start(store, "t1")
    await store.terminate("t1", None, False)
    counts = {(n, v, s): c for n, v, s, c in await asyncio.to_thread(store.instance_counts) if c}
    assert counts == {("workflow", "", COMPLETED): 1, ("workflow", "2.0", PENDING): 1,
                      ("workflow", "2.0", SUSPENDED): 1, ("workflow", "", TERMINATED): 1}


# -- durability ---------------------------------------------------------------------------------

@run_async
async def test_everything_survives_reopening_the_store(open_store):
    store = open_store()
    await run_to_activity(store, "a")
    await start(store, "b")
    item = await claim_one(store)
    await store.complete_orchestration(item.token, episode("b", item.token, timer(1, 0.5)))
    await start(store, "c")
    await store.raise_event("c", "ping", '"p"')
    leased = await claim_one(store)
    store.close()

    store = open_store()
    activity = await claim_one(store, "activities")
    assert activity.request.orchestrationInstance.instanceId == "a"
    await store.complete_orchestration(leased.token, episode("c", leased.token, complete('"survived"')))
    assert (await store.get_instance("c")).output == '"survived"'
    fired = (await wait_claimable(store)).orchestrations[0]
    assert (fired.request.instanceId, kinds(fired.request.newEvents)[1]) == ("b", "timerFired")


@run_async
async def test_the_store_carries_on_after_callers_give_up_on_their_writes(store):
    # A gRPC call cancelled mid-write (a worker whose connection dropped) cancels the store call it awaits.
    given_up = [asyncio.ensure_future(start(store, f"given-up-{i}")) for i in range(50)]
    await asyncio.sleep(0)  # queued for the writer
    for write in given_up:
        write.cancel()
    await asyncio.wait_for(start(store, "after"), timeout=10)
    assert (await store.get_instance("after")).status == PENDING
