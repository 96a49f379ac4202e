"""End to end: v1 pool with live v1 orchestrations, then v2 arrives; v1 drains only after its
last instance completes, scales to zero and loses its Deployment, and comes back for new v1 work.
Real operator (subprocess) + Kubernetes emulator + real task hub server + real versioned workers."""

import time

from durabletask import client, task
from durabletask.worker import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy
from tests.operator.conftest import wait_until
from tests.operator.test_operator import manifest
from tests.support.sdk import new_id, running_worker

SCALE_DOWN_DELAY, DELETE_DELAY = 2, 4


def wait_for_release(ctx: task.OrchestrationContext, _):
    yield ctx.wait_for_external_event("release")
    return ctx.version


def strict(version):
    return VersioningOptions(version=version, default_version=version, match_strategy=VersionMatchStrategy.STRICT,
                             failure_strategy=VersionFailureStrategy.REJECT)


def test_v1_drains_after_its_last_instance_and_scales_to_zero(hub, cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", hub.metrics_url)
    hub_client = client.TaskHubGrpcClient(host_address=hub.address)
    drain = {"scaleDownDelaySeconds": SCALE_DOWN_DELAY, "deleteDelaySeconds": DELETE_DELAY}

    def status(name):
        return cluster.pool(namespace, name).get("status", {})

    def replicas(name):
        deployment = cluster.deployment(namespace, name)
        return None if deployment is None else deployment["spec"]["replicas"]

    def reaches(name, **expected):
        return wait_until(lambda: all(status(name).get(k) == v for k, v in expected.items()) and status(name),
                          what=f"{name} status {expected}")

    with running_worker(hub.address, orchestrators=[wait_for_release], versioning=strict("1.0")), \
            running_worker(hub.address, orchestrators=[wait_for_release], versioning=strict("2.0")):
        # Step 1: v1 alone, serving two v1 instances.
        cluster.apply(namespace, manifest("orders-v1", "1.0", replicas=2, drain=drain))
        v1_ids = [hub_client.schedule_new_orchestration(wait_for_release, instance_id=new_id("v1"), version="1.0")
                  for _ in range(2)]
        for instance_id in v1_ids:
            hub_client.wait_for_orchestration_start(instance_id, timeout=10)
        reaches("orders-v1", phase="Active", runningInstances=2, readyReplicas=2)
        assert replicas("orders-v1") == 2

        # Step 2: v2 arrives; v1 keeps its replicas while its instances run, well past both delays.
        cluster.apply(namespace, manifest("orders-v2", "2.0", replicas=3, drain=drain))
        v2_id = hub_client.schedule_new_orchestration(wait_for_release, instance_id=new_id("v2"), version="2.0")
        reaches("orders-v2", phase="Active", desiredReplicas=3)
        reaches("orders-v1", phase="Draining", runningInstances=2)
        time.sleep(DELETE_DELAY + 0.5)
        assert status("orders-v1")["phase"] == "Draining" and "drainedSince" not in status("orders-v1")
        assert (replicas("orders-v1"), replicas("orders-v2")) == (2, 3)

        # Step 3: one v1 instance completes; the other still holds the pool.
        hub_client.raise_orchestration_event(v1_ids[0], "release")
        hub_client.wait_for_orchestration_completion(v1_ids[0], timeout=10)
        reaches("orders-v1", phase="Draining", runningInstances=1)
        assert replicas("orders-v1") == 2

        # Step 4: the last v1 instance completes: Drained (replicas kept for the scale-down delay)...
        hub_client.raise_orchestration_event(v1_ids[1], "release")
        hub_client.wait_for_orchestration_completion(v1_ids[1], timeout=10)
        drained = reaches("orders-v1", phase="Drained", runningInstances=0)
        assert drained["drainedSince"] and replicas("orders-v1") == 2
        # ...then ScaledDown to zero, then its Deployment is deleted; v2 is untouched throughout.
        reaches("orders-v1", phase="ScaledDown", desiredReplicas=0)
        assert replicas("orders-v1") == 0
        wait_until(lambda: cluster.deployment(namespace, "orders-v1") is None, what="v1 Deployment deleted")
        progressing = next(c for c in status("orders-v1")["conditions"] if c["type"] == "Progressing")
        assert progressing["reason"] == "DeploymentDeleted"
        assert replicas("orders-v2") == 3 and status("orders-v2")["runningInstances"] == 1
        wait_until(lambda: [r for _, r in cluster.events(namespace, "orders-v1")] ==
                   ["Active", "Draining", "Drained", "ScaledDown", "DeploymentDeleted"], what="v1 transition events")

        # Step 5: new v1 work brings the pool back.
        late = hub_client.schedule_new_orchestration(wait_for_release, instance_id=new_id("v1-late"), version="1.0")
        reaches("orders-v1", phase="Draining", runningInstances=1)
        wait_until(lambda: replicas("orders-v1") == 2, what="v1 Deployment re-created")
        assert "drainedSince" not in status("orders-v1")
        wait_until(lambda: ("Normal", "Reactivated") in cluster.events(namespace, "orders-v1"),
                   what="Reactivated event")
        for instance_id in (late, v2_id):
            hub_client.raise_orchestration_event(instance_id, "release")
            hub_client.wait_for_orchestration_completion(instance_id, timeout=10)
