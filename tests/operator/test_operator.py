"""The real operator (kopf, as a subprocess) against the Kubernetes emulator over HTTP, with
instance counts from a real task hub server."""

import json

from tests.operator.conftest import EXAMPLES, wait_until


def manifest(name, version, match="Strict", replicas=2, app="orders", **spec):
    return json.dumps({"apiVersion": "durabletask.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
                       "spec": {"app": app, "image": f"reg/{app}:{version}", "module": f"{app}.app", "version": version,
                                "matchStrategy": match, "replicas": replicas, "taskHubAddress": "hub:4001", **spec}})


def phase(cluster, namespace, name, expected):
    return wait_until(lambda: cluster.pool(namespace, name).get("status", {}).get("phase") == expected
                      and cluster.pool(namespace, name), what=f"{name} phase {expected}")


def test_kubectl_apply_and_get_workerpools(hub, cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", hub.metrics_url)
    for example in ("orders-v1.yaml", "orders-v2.yaml"):
        assert "created" in cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    expected = [["NAME", "APP", "VERSION", "MATCH", "DESIRED", "READY", "RUNNING", "PHASE"],
                ["orders-v1", "orders", "1.0", "Strict", "2", "2", "0", "Drained"],
                ["orders-v2", "orders", "2.0", "Strict", "3", "3", "0", "Active"]]
    wait_until(lambda: [row.split()[:-1] for row in cluster.kubectl("get", "workerpools", "-n", namespace).splitlines()]
               == expected, what="kubectl get workerpools showing both pools planned")


def test_a_pool_becomes_an_owned_deployment_that_follows_the_spec(hub, cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", hub.metrics_url)
    cluster.apply(namespace, manifest("orders-v1", "1.0", replicas=2))
    deployment = wait_until(lambda: cluster.deployment(namespace, "orders-v1"), what="Deployment")
    pool = cluster.pool(namespace, "orders-v1")
    assert deployment["metadata"]["owner_references"][0]["uid"] == pool["metadata"]["uid"]
    assert deployment["metadata"]["labels"]["durabletask.dev/version"] == "1.0"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "DURABLETASK_VERSION", "value": "1.0", "value_from": None} in container["env"]
    assert deployment["spec"]["replicas"] == 2

    # A spec change rolls the Deployment.
    cluster.apply(namespace, manifest("orders-v1", "1.0", replicas=4, image="reg/orders:1.0.1"))
    wait_until(lambda: cluster.deployment(namespace, "orders-v1")["spec"]["template"]["spec"]["containers"][0]["image"]
               == "reg/orders:1.0.1", what="new image")
    assert cluster.deployment(namespace, "orders-v1")["spec"]["replicas"] == 4
    pool = wait_until(lambda: (p := cluster.pool(namespace, "orders-v1"))["status"]["observedGeneration"] == 2 and p,
                      what="observedGeneration 2")
    assert pool["status"]["desiredReplicas"] == 4

    # A manual edit of the Deployment is corrected.
    cluster.kubectl("patch", "deployment/orders-v1", "-n", namespace, "--type=merge", "-p", '{"spec": {"replicas": 9}}')
    wait_until(lambda: cluster.deployment(namespace, "orders-v1")["spec"]["replicas"] == 4, what="replicas corrected")
    assert ("Normal", "Active") in cluster.events(namespace, "orders-v1")


def test_a_pool_for_a_secured_hub_gets_its_secrets_mounted_and_loses_them_with_spec_hub(
        hub, cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", hub.metrics_url)
    secured = {"tls": {"secretName": "hub-client", "mutual": True}, "auth": {"tokenSecret": "hub-token"}}
    cluster.apply(namespace, manifest("orders-v1", "1.0", hub=secured))
    pod = wait_until(lambda: cluster.deployment(namespace, "orders-v1"), what="Deployment")["spec"]["template"]["spec"]
    secrets = [(v["name"], v["secret"]["secret_name"], [item["key"] for item in v["secret"]["items"]])
               for v in pod["volumes"]]
    assert secrets == [("hub-tls", "hub-client", ["ca.crt", "tls.crt", "tls.key"]),
                       ("hub-token", "hub-token", ["token"])]
    container = pod["containers"][0]
    assert [(m["mount_path"], m["read_only"], m["sub_path"]) for m in container["volume_mounts"]] == [
        ("/etc/durabletask/hub-tls", True, None), ("/etc/durabletask/hub-token", True, None)]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DURABLETASK_TLS_CA"] == "/etc/durabletask/hub-tls/ca.crt"
    assert env["DURABLETASK_TOKEN_FILE"] == "/etc/durabletask/hub-token/token"

    # Without spec.hub the Deployment mounts nothing any more (a Secret deleted later cannot block new pods).
    cluster.apply(namespace, manifest("orders-v1", "1.0"))
    pod = wait_until(lambda: (d := cluster.deployment(namespace, "orders-v1")["spec"]["template"]["spec"])
                     ["containers"][0]["volume_mounts"] is None and d, what="mounts removed")
    assert pod["volumes"] is None
    assert not any(e["name"].startswith(("DURABLETASK_TLS_", "DURABLETASK_TOKEN")) for e in pod["containers"][0]["env"])


def test_invalid_pools_are_reported_and_the_others_still_served(hub, cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", hub.metrics_url)
    for name, version, app in (("a", "1.0", "orders"), ("b", "1.0.0", "orders"), ("c", "1.0", "billing")):
        cluster.apply(namespace, manifest(name, version, app=app))
    invalid = phase(cluster, namespace, "a", "Invalid")
    ready = next(c for c in invalid["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "also the version of WorkerPool b" in ready["message"]
    phase(cluster, namespace, "c", "Active")
    assert cluster.deployment(namespace, "c") is not None
    assert cluster.deployment(namespace, "a") is None and cluster.deployment(namespace, "b") is None
    wait_until(lambda: ("Warning", "InvalidSpec") in cluster.events(namespace, "a"), what="InvalidSpec event")

    # Fixing the spec makes the pool plannable again.
    cluster.apply(namespace, manifest("b", "2.0"))
    phase(cluster, namespace, "b", "Active")
    phase(cluster, namespace, "a", "Drained")


def test_unknown_metrics_drain_nothing(cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", "http://127.0.0.1:9/metrics")  # nothing listens there
    cluster.apply(namespace, manifest("orders-v1", "1.0"))
    cluster.apply(namespace, manifest("orders-v2", "2.0", drain={"scaleDownDelaySeconds": 0, "deleteDelaySeconds": 0}))
    pool = phase(cluster, namespace, "orders-v1", "Draining")
    progressing = next(c for c in pool["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "MetricsUnknown")
    assert "runningInstances" not in pool["status"]
    assert cluster.deployment(namespace, "orders-v1")["spec"]["replicas"] == 2
    wait_until(lambda: ("Warning", "MetricsUnknown") in cluster.events(namespace, "orders-v1"),
               what="MetricsUnknown event")


def test_a_foreign_deployment_in_the_way_is_reported_not_taken_over(hub, cluster, namespace, start_operator):
    start_operator("--hub-metrics-url", hub.metrics_url)
    foreign = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "orders-v1"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}}, "template": {
                   "metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}}}}
    cluster.apps.create_namespaced_deployment(namespace, foreign)
    cluster.apply(namespace, manifest("orders-v1", "1.0"))
    wait_until(lambda: ("Warning", "DeploymentFailed") in cluster.events(namespace, "orders-v1"),
               what="DeploymentFailed event")
    assert cluster.deployment(namespace, "orders-v1")["spec"]["template"]["spec"]["containers"][0]["image"] == "x"
