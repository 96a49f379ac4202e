"""Orchestration versioning as the reference docs describe it, from the SDK's side."""

import time

import pytest

from durabletask import client, worker
from durabletask.worker import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy, version_mismatch
from tests.support.sdk import new_id, running_worker


# ---- the worker's version check (pure) ------------------------------------------------------

@pytest.mark.parametrize("strategy, worker_version, orchestration_version, allowed", [
    (VersionMatchStrategy.NONE, "1.0", "9.0", True),
    (VersionMatchStrategy.STRICT, "1.0", "1.0", True),
    (VersionMatchStrategy.STRICT, "1.0", "1.0.0", True),  # numerically equal
    (VersionMatchStrategy.STRICT, "1.0", "0.9", False),
    (VersionMatchStrategy.STRICT, "1.0", None, False),
    (VersionMatchStrategy.CURRENT_OR_OLDER, "2.0", "1.0", True),
    (VersionMatchStrategy.CURRENT_OR_OLDER, "2.0", "2.0", True),
    (VersionMatchStrategy.CURRENT_OR_OLDER, "2.0", None, True),  # no version is the oldest
    (VersionMatchStrategy.CURRENT_OR_OLDER, "2.0", "10.0", False),  # numeric, not alphabetical
    (VersionMatchStrategy.CURRENT_OR_OLDER, "v2-release", "V1-release", True),  # case-insensitive strings
    (None, "1.0", "5.0", True),
])
def test_version_match(strategy, worker_version, orchestration_version, allowed):
    options = VersioningOptions(version=worker_version, match_strategy=strategy)
    assert (version_mismatch(options, orchestration_version) is None) == allowed


def test_mismatch_names_both_versions():
    options = VersioningOptions(version="1.0", match_strategy=VersionMatchStrategy.CURRENT_OR_OLDER)
    details = version_mismatch(options, "2.0")
    assert details.errorType == "VersionMismatch"
    assert details.errorMessage == "The orchestration version '2.0' is greater than the worker version '1.0'."


# ---- end to end ---------------------------------------------------------------------------------

def reports_version(ctx, _):
    return ctx.version


def test_client_default_version_is_fixed_on_the_instance(hub_address):
    with running_worker(hub_address, [reports_version]), \
            client.TaskHubGrpcClient(host_address=hub_address, default_version="1.2") as hub:
        defaulted = hub.schedule_new_orchestration(reports_version, instance_id=new_id("default"))
        explicit = hub.schedule_new_orchestration(reports_version, instance_id=new_id("explicit"), version="0.5")
        assert hub.wait_for_orchestration_completion(defaulted, timeout=30).get_output() == "1.2"
        assert hub.wait_for_orchestration_completion(explicit, timeout=30).get_output() == "0.5"


def test_newer_orchestration_fails_on_older_worker_with_fail_strategy(hub_address):
    versioning = VersioningOptions(version="1.0", default_version="1.0",
                                   match_strategy=VersionMatchStrategy.CURRENT_OR_OLDER,
                                   failure_strategy=VersionFailureStrategy.FAIL)
    # Without filters the hub offers the worker everything, so the worker's own check decides.
    with running_worker(hub_address, [reports_version], versioning=versioning, filters=False), \
            client.TaskHubGrpcClient(host_address=hub_address) as hub:
        instance_id = hub.schedule_new_orchestration(reports_version, instance_id=new_id("too-new"), version="2.0")
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == client.OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "VersionMismatch"
    assert state.failure_details.message == "The orchestration version '2.0' is greater than the worker version '1.0'."


def versioned_orchestrator(label):
    """Two deployments' code for the same orchestrator name."""
    def versioned(ctx, _):
        return f"ran on the {label} worker"
    return versioned


def test_rejected_orchestration_waits_for_a_worker_of_its_version(hub_address):
    old = VersioningOptions(version="1.0", match_strategy=VersionMatchStrategy.STRICT,
                            failure_strategy=VersionFailureStrategy.REJECT)
    new = VersioningOptions(version="2.0", match_strategy=VersionMatchStrategy.STRICT,
                            failure_strategy=VersionFailureStrategy.REJECT)
    old_worker = worker.TaskHubGrpcWorker(host_address=hub_address)
    old_worker.add_orchestrator(versioned_orchestrator("old"))
    old_worker.use_versioning(old)
    new_worker = worker.TaskHubGrpcWorker(host_address=hub_address)
    new_worker.add_orchestrator(versioned_orchestrator("new"))
    new_worker.use_versioning(new)
    with client.TaskHubGrpcClient(host_address=hub_address) as hub, old_worker:
        old_worker.start()
        instance_id = hub.schedule_new_orchestration("versioned", instance_id=new_id("reject"), version="2.0")
        time.sleep(1)
        state = hub.get_orchestration_state(instance_id)
        assert state.runtime_status in (client.OrchestrationStatus.PENDING, client.OrchestrationStatus.RUNNING)
        with new_worker:
            new_worker.start()
            state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == "ran on the new worker"


def reports_child_versions(ctx, _):
    defaulted = yield ctx.call_sub_orchestrator(reports_version)
    explicit = yield ctx.call_sub_orchestrator(reports_version, version="0.7")
    return [ctx.version, defaulted, explicit]


def test_sub_orchestrations_take_the_workers_default_version_not_the_parents(hub_address):
    versioning = VersioningOptions(version="3.0", default_version="2.5",
                                   match_strategy=VersionMatchStrategy.NONE)
    with running_worker(hub_address, [reports_child_versions, reports_version], versioning=versioning), \
            client.TaskHubGrpcClient(host_address=hub_address) as hub:
        instance_id = hub.schedule_new_orchestration(reports_child_versions, instance_id=new_id("subs"), version="3.0")
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == ["3.0", "2.5", "0.7"]


def keeps_version_across_restarts(ctx, rounds):
    if rounds > 0:
        ctx.continue_as_new(rounds - 1)
        return None
    return ctx.version


def test_continue_as_new_keeps_the_version(hub_address):
    with running_worker(hub_address, [keeps_version_across_restarts]), \
            client.TaskHubGrpcClient(host_address=hub_address) as hub:
        instance_id = hub.schedule_new_orchestration(keeps_version_across_restarts, input=2,
                                                     instance_id=new_id("can"), version="4.1")
        state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == "4.1"


def stamp_of(label):
    def stamp(ctx, _):
        return label
    return stamp


def calls_stamp(ctx, _):
    return (yield ctx.call_activity("stamp"))


def test_strict_workers_run_the_activities_of_their_own_version(hub_address):
    """Default filters route activities by version too, on our hub and on Microsoft's."""
    def strict(version):
        return VersioningOptions(version=version, match_strategy=VersionMatchStrategy.STRICT,
                                 failure_strategy=VersionFailureStrategy.REJECT)
    with running_worker(hub_address, [calls_stamp], [stamp_of("1.0")], versioning=strict("1.0")), \
            running_worker(hub_address, [calls_stamp], [stamp_of("2.0")], versioning=strict("2.0")), \
            client.TaskHubGrpcClient(host_address=hub_address) as hub:
        ids = {v: hub.schedule_new_orchestration(calls_stamp, instance_id=new_id(f"stamp-{v}"), version=v)
               for v in ("1.0", "2.0")}
        stamps = {v: hub.wait_for_orchestration_completion(iid, timeout=30).get_output() for v, iid in ids.items()}
    assert stamps == {"1.0": "1.0", "2.0": "2.0"}
