"""What a WorkerPool's Deployment looks like, and when an existing one counts as drifted."""

import copy

import pytest
from durabletask_worker.config import parse_config

from durabletask_operator.deployment import build_deployment, drifted
from durabletask_operator.spec import Pool


def pool(**spec):
    return Pool.from_body({
        "metadata": {"name": "orders-v2", "namespace": "shop", "uid": "u-1", "generation": 1},
        "spec": {"app": "orders", "image": "reg/orders:2", "module": "orders.app", "version": "2.0",
                 "matchStrategy": "Strict", "taskHubAddress": "hub.shop:4001", **spec},
    })


def env_of(deployment):
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_runner_gets_its_contract_as_environment_variables():
    env = env_of(build_deployment(pool(concurrency=16, drain={"gracePeriodSeconds": 45}), 3))
    assert env == {
        "DURABLETASK_ADDRESS": "hub.shop:4001", "DURABLETASK_APP": "orders.app", "DURABLETASK_VERSION": "2.0",
        "DURABLETASK_DEFAULT_VERSION": "2.0", "DURABLETASK_MATCH_STRATEGY": "Strict",
        "DURABLETASK_FAILURE_STRATEGY": "Reject", "DURABLETASK_CONCURRENCY": "16",
        "DURABLETASK_HTTP_PORT": "8080", "DURABLETASK_DRAIN_SECONDS": "45",
    }


def test_default_version_and_concurrency_are_optional():
    env = env_of(build_deployment(pool(defaultVersion="1.9"), 1))
    assert env["DURABLETASK_DEFAULT_VERSION"] == "1.9" and "DURABLETASK_CONCURRENCY" not in env


def test_user_env_is_added_but_cannot_override_the_contract():
    deployment = build_deployment(pool(template={"env": [
        {"name": "LOG_LEVEL", "value": "debug"}, {"name": "DURABLETASK_VERSION", "value": "9.9"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}), 1)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env if e["name"] == "DURABLETASK_VERSION"] == ["DURABLETASK_VERSION"]
    assert env_of(deployment)["DURABLETASK_VERSION"] == "2.0" and env_of(deployment)["LOG_LEVEL"] == "debug"
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}} in env


def test_labels_owner_and_selector():
    deployment = build_deployment(pool(template={"labels": {"team": "checkout", "durabletask.dev/version": "x"}}), 2)
    meta, spec = deployment["metadata"], deployment["spec"]
    assert (meta["name"], meta["namespace"], spec["replicas"]) == ("orders-v2", "shop", 2)
    owner = {"apiVersion": "durabletask.dev/v1alpha1", "kind": "WorkerPool", "name": "orders-v2", "uid": "u-1",
             "controller": True, "blockOwnerDeletion": True}
    assert meta["ownerReferences"] == [owner]
    assert meta["labels"]["durabletask.dev/version"] == "2.0"
    assert meta["labels"]["app.kubernetes.io/name"] == "orders"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "durabletask-operator"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "checkout" and pod_labels["durabletask.dev/version"] == "2.0"
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    # The selector is immutable in Kubernetes, so it must not depend on anything a spec change can alter.
    assert build_deployment(pool(version="3.0", image="other"), 1)["spec"]["selector"] == spec["selector"]


def test_probes_port_resources_and_a_grace_period_above_the_drain():
    pod = build_deployment(pool(httpPort=9000, drain={"gracePeriodSeconds": 60},
                                template={"resources": {"limits": {"memory": "256Mi"}}}), 1)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"] == {"limits": {"memory": "256Mi"}}
    assert env_of({"spec": {"template": {"spec": pod}}})["DURABLETASK_HTTP_PORT"] == "9000"
    assert pod["terminationGracePeriodSeconds"] > 60


def test_server_defaults_are_not_drift_but_edits_are():
    desired = build_deployment(pool(), 2)
    live = copy.deepcopy(desired)
    live["metadata"]["resourceVersion"] = "17"
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert not drifted(desired, live)
    live["spec"]["replicas"] = 5
    assert drifted(desired, live)
    live = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    assert drifted(desired, live)
    assert drifted(build_deployment(pool(image="reg/orders:2.1"), 2), desired)


@pytest.mark.parametrize("match, failure", [("None", "Fail"), ("Strict", "Reject"), ("CurrentOrOlder", "Reject")])
def test_the_worker_runner_accepts_the_environment_we_give_it(match, failure):
    """The contract with worker_image/: the runner parses exactly the variables the Deployment sets."""
    env = env_of(build_deployment(pool(matchStrategy=match, failureStrategy=failure, concurrency=7,
                                       drain={"gracePeriodSeconds": 45}), 1))
    config = parse_config([], env)
    assert (config.address, config.app, config.version, config.default_version) == (
        "hub.shop:4001", "orders.app", "2.0", "2.0")
    assert config.match_strategy.name.replace("_", "") == match.upper()
    assert config.failure_strategy.name == failure.upper()
    assert (config.concurrency, config.http_port, config.drain_seconds) == (7, 8080, 45)
