"""The planner decides everything the operator does; these tests pin its rules."""

from datetime import datetime, timedelta, timezone

import pytest

from durabletask_operator import planner
from durabletask_operator.planner import ObservedDeployment, plan_group
from durabletask_operator.spec import Pool

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
SCALE_DOWN, DELETE = 300, 3600


def pool(name, version, match="Strict", replicas=2, app="orders", **status):
    """A WorkerPool body as the API returns it, parsed; `status` holds what an earlier run recorded."""
    return Pool.from_body({
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 3},
        "spec": {"app": app, "image": "img", "module": "app", "version": version, "matchStrategy": match,
                 "replicas": replicas, "taskHubAddress": "hub:4001",
                 "drain": {"scaleDownDelaySeconds": SCALE_DOWN, "deleteDelaySeconds": DELETE}},
        "status": status,
    })


def running(*pools):
    return {p.name: ObservedDeployment(replicas=p.replicas, ready_replicas=p.replicas) for p in pools}


def plan(pools, counts, now=NOW, deployments=None):
    return plan_group(pools, running(*pools) if deployments is None else deployments, counts, now)


def condition(plan_, kind):
    return next(c for c in plan_.status["conditions"] if c["type"] == kind)


def test_a_lone_pool_is_active_with_its_replicas_and_says_so_once():
    v1 = pool("v1", "1.0")
    result = plan([v1], {"1.0": 4})["v1"]
    assert (result.replicas, result.delete_deployment, result.status["phase"]) == (2, False, "Active")
    assert result.status["runningInstances"] == 4
    assert [e.reason for e in result.events] == ["Active"]
    again = pool("v1", "1.0", phase="Active", conditions=result.status["conditions"])
    assert plan([again], {"1.0": 4})["v1"].events == []


# Pools v1 (version 1.0) and v2 (2.0); each cell: v1's phase when the only live instances have
# version 0.5, 1.0 or 3.0. "D" Draining (v1 still runs them and v2 cannot), "-" Drained.
STRATEGY_MATRIX = {
    ("Strict", "Strict"): "-D-",
    ("Strict", "CurrentOrOlder"): "---",
    ("Strict", "None"): "---",
    ("CurrentOrOlder", "Strict"): "DD-",
    ("CurrentOrOlder", "CurrentOrOlder"): "---",
    ("CurrentOrOlder", "None"): "---",
    ("None", "Strict"): "DDD",
    ("None", "CurrentOrOlder"): "--D",
    ("None", "None"): "---",
}


@pytest.mark.parametrize("old_match, new_match", STRATEGY_MATRIX)
def test_an_old_pool_is_needed_while_a_version_only_it_runs_has_live_instances(old_match, new_match):
    old, new = pool("v1", "1.0", old_match), pool("v2", "2.0", new_match)
    for version, expected in zip(("0.5", "1.0", "3.0"), STRATEGY_MATRIX[old_match, new_match]):
        plans = plan([old, new], {version: 3, "2.0": 5})
        assert plans["v2"].status["phase"] == "Active"
        assert plans["v1"].status["phase"] == {"D": "Draining", "-": "Drained"}[expected], version
        assert plans["v1"].replicas == 2  # neither draining nor freshly drained pools scale down yet


@pytest.mark.parametrize("old_match, new_match, phase", [
    ("CurrentOrOlder", "Strict", "Draining"),
    ("Strict", "Strict", "Drained"),
    ("CurrentOrOlder", "CurrentOrOlder", "Drained"),
])
def test_unversioned_instances_are_older_than_every_version(old_match, new_match, phase):
    plans = plan([pool("v1", "1.0", old_match), pool("v2", "2.0", new_match)], {"": 1})
    assert plans["v1"].status["phase"] == phase


def test_each_version_belongs_to_the_newest_pool_that_runs_it():
    v1, v2, v3 = pool("v1", "1.0", "CurrentOrOlder"), pool("v2", "2.0", "Strict"), pool("v3", "3.0", "Strict")
    phases = {name: p.status["phase"] for name, p in plan([v3, v1, v2], {"1.0": 1}).items()}
    assert phases == {"v1": "Draining", "v2": "Drained", "v3": "Active"}
    phases = {name: p.status["phase"] for name, p in plan([v3, v1, v2], {"2.0": 1}).items()}
    assert phases == {"v1": "Drained", "v2": "Draining", "v3": "Active"}
    v3_takes_all = pool("v3", "3.0", "CurrentOrOlder")
    phases = {name: p.status["phase"] for name, p in plan([v3_takes_all, v1, v2], {"1.0": 1, "2.0": 1}).items()}
    assert phases == {"v1": "Drained", "v2": "Drained", "v3": "Active"}


def test_versions_compare_as_versions_not_strings():
    v9, v10 = pool("v9", "9.0"), pool("v10", "10.0")
    plans = plan([v10, v9], {"9.0": 0})
    assert plans["v10"].status["phase"] == "Active"
    assert plans["v9"].status["phase"] == "Drained"


def test_a_draining_pool_reports_what_it_waits_for():
    plans = plan([pool("v1", "1.0"), pool("v2", "2.0")], {"1.0": 3})
    progressing = condition(plans["v1"], "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "WaitingForInstances")
    assert "3 of version 1.0" in progressing["message"] and "v2" in progressing["message"]
    assert [e.reason for e in plans["v1"].events] == ["Draining"]


def test_drained_pool_scales_to_zero_after_the_scale_down_delay_then_loses_its_deployment():
    new = pool("v2", "2.0")
    first = plan([pool("v1", "1.0", phase="Draining"), new], {"1.0": 0})["v1"]
    assert first.status["drainedSince"] == NOW.isoformat()
    assert (first.status["phase"], first.replicas, [e.reason for e in first.events]) == ("Drained", 2, ["Drained"])

    drained = pool("v1", "1.0", phase="Drained", drainedSince=NOW.isoformat())
    just_before = plan([drained, new], {}, NOW + timedelta(seconds=SCALE_DOWN - 1))["v1"]
    assert (just_before.status["phase"], just_before.replicas, just_before.events) == ("Drained", 2, [])
    assert just_before.status["drainedSince"] == NOW.isoformat()  # the clock is not restarted

    scaled = plan([drained, new], {}, NOW + timedelta(seconds=SCALE_DOWN))["v1"]
    assert (scaled.status["phase"], scaled.replicas, scaled.delete_deployment) == ("ScaledDown", 0, False)
    assert [e.reason for e in scaled.events] == ["ScaledDown"]
    assert condition(scaled, "Ready")["reason"] == "ScaledDown"

    scaled_down = pool("v1", "1.0", phase="ScaledDown", drainedSince=NOW.isoformat())
    at_zero = {"v1": ObservedDeployment(0, 0), "v2": ObservedDeployment(2, 2)}
    deleted = plan([scaled_down, new], {}, NOW + timedelta(seconds=DELETE), at_zero)["v1"]
    assert (deleted.replicas, deleted.delete_deployment) == (None, True)
    assert [e.reason for e in deleted.events] == ["DeploymentDeleted"]
    gone = plan([scaled_down, new], {}, NOW + timedelta(seconds=DELETE + 60), {"v2": ObservedDeployment(2, 2)})["v1"]
    assert (gone.replicas, gone.delete_deployment, gone.events) == (None, True, [])
    assert condition(gone, "Progressing")["reason"] == "DeploymentDeleted"


def test_zero_delays_scale_down_and_delete_at_once():
    old = Pool.from_body({"metadata": {"name": "v1"}, "spec": {
        "app": "a", "version": "1", "matchStrategy": "Strict",
        "drain": {"scaleDownDelaySeconds": 0, "deleteDelaySeconds": 0}}})
    result = plan_group([old, pool("v2", "2", app="a")], {"v1": ObservedDeployment(1, 1)}, {}, NOW)["v1"]
    assert result.delete_deployment


@pytest.mark.parametrize("phase, replicas_before", [("Drained", 2), ("ScaledDown", 0)])
def test_work_for_a_drained_version_scales_its_pool_back_up(phase, replicas_before):
    drained = pool("v1", "1.0", phase=phase, drainedSince=(NOW - timedelta(seconds=400)).isoformat())
    deployments = {"v1": ObservedDeployment(replicas_before, replicas_before), "v2": ObservedDeployment(2, 2)}
    result = plan([drained, pool("v2", "2.0")], {"1.0": 1}, deployments=deployments)["v1"]
    assert (result.status["phase"], result.replicas, result.status["drainedSince"]) == ("Draining", 2, None)
    assert [e.reason for e in result.events] == ["Reactivated"]


def test_a_deleted_deployment_comes_back_when_its_version_has_work_again():
    deleted = pool("v1", "1.0", phase="ScaledDown", drainedSince=(NOW - timedelta(seconds=DELETE * 2)).isoformat())
    result = plan([deleted, pool("v2", "2.0")], {"1.0": 2}, deployments={"v2": ObservedDeployment(2, 2)})["v1"]
    assert (result.replicas, result.delete_deployment) == (2, False)


def test_unknown_counts_never_drain_a_serving_pool():
    plans = plan([pool("v1", "1.0", phase="Draining"), pool("v2", "2.0")], None)
    assert (plans["v1"].status["phase"], plans["v1"].replicas) == ("Draining", 2)
    assert plans["v1"].status["runningInstances"] is None and plans["v1"].status["drainedSince"] is None
    assert condition(plans["v1"], "Progressing")["status"] == "Unknown"
    assert [e.reason for e in plans["v1"].events] == ["MetricsUnknown"]
    assert plans["v2"].status["phase"] == "Active"  # the newest pool needs no counts


def test_unknown_counts_hold_a_drained_pool_where_it_is():
    since = (NOW - timedelta(seconds=SCALE_DOWN - 10)).isoformat()
    drained = pool("v1", "1.0", phase="Drained", drainedSince=since)
    much_later = NOW + timedelta(seconds=DELETE * 10)
    held = plan([drained, pool("v2", "2.0")], None, much_later)["v1"]
    assert (held.status["phase"], held.replicas, held.delete_deployment) == ("Drained", 2, False)
    assert held.status["drainedSince"] == since
    scaled_down = pool("v1", "1.0", phase="ScaledDown", drainedSince=since)
    deployments = {"v1": ObservedDeployment(0, 0), "v2": ObservedDeployment(2, 2)}
    held = plan([scaled_down, pool("v2", "2.0")], None, much_later, deployments)["v1"]
    assert (held.status["phase"], held.replicas, held.delete_deployment) == ("ScaledDown", 0, False)


def test_metrics_unknown_is_reported_once_until_it_changes():
    first = plan([pool("v1", "1.0", phase="Draining"), pool("v2", "2.0")], None)["v1"]
    again = pool("v1", "1.0", phase="Draining", conditions=first.status["conditions"])
    assert plan([again, pool("v2", "2.0")], None)["v1"].events == []


@pytest.mark.parametrize("spec, message", [
    ({"version": "1.0 beta"}, "spec.version '1.0 beta' is not a valid version"),
    ({"version": ""}, "spec.version '' is not a valid version"),
    ({"matchStrategy": "Newest"}, "spec.matchStrategy 'Newest' is not one of None, Strict, CurrentOrOlder."),
    ({"failureStrategy": "Retry"}, "spec.failureStrategy 'Retry' is not one of Reject, Fail."),
    ({"hub": {"auth": {"tokenSecret": "Hub_Token"}}}, "spec.hub.auth.tokenSecret 'Hub_Token' is not a Secret name"),
])
def test_an_invalid_pool_is_reported_and_left_alone_while_the_others_are_planned(spec, message):
    bad = Pool.from_body({"metadata": {"name": "bad"}, "spec": {
        "app": "orders", "version": "1.0", "matchStrategy": "Strict", "failureStrategy": "Reject", **spec}})
    plans = plan_group([bad, pool("v1", "1.5")], running(pool("v1", "1.5")), {"1.5": 1}, NOW)
    bad_plan = plans["bad"]
    assert (bad_plan.replicas, bad_plan.delete_deployment, bad_plan.status["phase"]) == (None, False, "Invalid")
    assert condition(plans["bad"], "Ready")["message"].startswith(message)
    assert [(e.type, e.reason) for e in plans["bad"].events] == [("Warning", "InvalidSpec")]
    assert plans["v1"].status["phase"] == "Active"


def test_two_pools_of_one_app_with_the_same_version_are_both_invalid():
    a, b, c = pool("a", "1.0"), pool("b", "1.0.0"), pool("c", "0.9")  # 1.0 == 1.0.0 as versions
    plans = plan([a, b, c], {"1.0": 1})
    assert plans["a"].status["phase"] == plans["b"].status["phase"] == "Invalid"
    assert "also the version of WorkerPool b" in condition(plans["a"], "Ready")["message"]
    assert plans["c"].status["phase"] == "Active"  # the remaining valid pool is the newest


def test_ready_condition_follows_the_deployment():
    v1 = pool("v1", "1.0", replicas=3)
    half = plan([v1], {}, deployments={"v1": ObservedDeployment(3, 1)})["v1"]
    assert (condition(half, "Ready")["status"], condition(half, "Ready")["reason"]) == ("False", "ReplicasNotReady")
    assert half.status["readyReplicas"] == 1 and half.status["desiredReplicas"] == 3
    full = plan([v1], {}, deployments={"v1": ObservedDeployment(3, 3)})["v1"]
    assert condition(full, "Ready")["status"] == "True"


def test_a_condition_keeps_its_transition_time_until_its_status_changes():
    first = plan([pool("v1", "1.0")], {}, NOW, {"v1": ObservedDeployment(2, 0)})["v1"]
    earlier = pool("v1", "1.0", phase="Active", conditions=first.status["conditions"])
    later = NOW + timedelta(minutes=5)
    same = plan([earlier], {}, later, {"v1": ObservedDeployment(2, 1)})["v1"]
    assert condition(same, "Ready")["lastTransitionTime"] == NOW.isoformat()
    changed = plan([earlier], {}, later, {"v1": ObservedDeployment(2, 2)})["v1"]
    assert condition(changed, "Ready")["lastTransitionTime"] == later.isoformat()


def test_observed_generation_is_the_planned_one():
    assert plan([pool("v1", "1.0")], {})["v1"].status["observedGeneration"] == 3


def test_reason_names_are_stable():
    # Users alert on these; renaming one is a breaking change.
    assert (planner.SERVING, planner.WAITING_FOR_INSTANCES, planner.WAITING_TO_SCALE_DOWN, planner.WAITING_TO_DELETE,
            planner.DEPLOYMENT_DELETED, planner.METRICS_UNKNOWN, planner.INVALID_SPEC) == (
        "Serving", "WaitingForInstances", "WaitingToScaleDown", "WaitingToDelete",
        "DeploymentDeleted", "MetricsUnknown", "InvalidSpec")
