"""What a WorkerPool's Deployment looks like, and when an existing one counts as drifted."""

import copy
from pathlib import Path

import kubernetes_validate
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


def pod_of(deployment):
    return deployment["spec"]["template"]["spec"]


MUTUAL_TLS_AND_TOKEN = {"tls": {"secretName": "hub-client", "mutual": True}, "auth": {"tokenSecret": "hub-token"}}


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


def test_hub_secrets_are_mounted_read_only_as_directories_with_the_runners_variables():
    deployment = build_deployment(pool(hub=MUTUAL_TLS_AND_TOKEN), 1)
    pod = pod_of(deployment)
    assert pod["volumes"] == [
        {"name": "hub-tls", "secret": {"secretName": "hub-client", "items": [
            {"key": "ca.crt", "path": "ca.crt"}, {"key": "tls.crt", "path": "tls.crt"},
            {"key": "tls.key", "path": "tls.key"}]}},
        {"name": "hub-token", "secret": {"secretName": "hub-token", "items": [{"key": "token", "path": "token"}]}},
    ]
    # Directories, never subPath: the kubelet's updates of a Secret (a rotated token) reach only those.
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "hub-tls", "mountPath": "/etc/durabletask/hub-tls", "readOnly": True},
        {"name": "hub-token", "mountPath": "/etc/durabletask/hub-token", "readOnly": True},
    ]
    env = env_of(deployment)
    assert (env["DURABLETASK_TLS_CA"], env["DURABLETASK_TLS_CERT"], env["DURABLETASK_TLS_KEY"]) == (
        "/etc/durabletask/hub-tls/ca.crt", "/etc/durabletask/hub-tls/tls.crt", "/etc/durabletask/hub-tls/tls.key")
    assert env["DURABLETASK_TOKEN_FILE"] == "/etc/durabletask/hub-token/token"
    kubernetes_validate.validate(deployment, "1.37.0", strict=True)


def test_without_mutual_tls_only_the_ca_is_mounted_under_the_key_name_given():
    deployment = build_deployment(pool(hub={"tls": {"secretName": "hub-tls", "caKey": "root.pem"}}), 1)
    assert pod_of(deployment)["volumes"] == [
        {"name": "hub-tls", "secret": {"secretName": "hub-tls", "items": [{"key": "root.pem", "path": "ca.crt"}]}}]
    env = env_of(deployment)
    assert env["DURABLETASK_TLS_CA"] == "/etc/durabletask/hub-tls/ca.crt"
    assert not {"DURABLETASK_TLS_CERT", "DURABLETASK_TLS_KEY", "DURABLETASK_TOKEN_FILE"} & env.keys()


def test_the_runners_own_secret_variables_win_over_the_users():
    user_env = [{"name": "DURABLETASK_TOKEN_FILE", "value": "/elsewhere"}]
    env = env_of(build_deployment(pool(hub=MUTUAL_TLS_AND_TOKEN, template={"env": user_env}), 1))
    assert env["DURABLETASK_TOKEN_FILE"] == "/etc/durabletask/hub-token/token"


def test_dropping_spec_hub_is_drift_that_removes_the_volumes():
    with_hub = build_deployment(pool(hub=MUTUAL_TLS_AND_TOKEN), 1)
    without = build_deployment(pool(), 1)
    assert "volumeMounts" not in pod_of(without)["containers"][0]
    # Explicitly null, so that the merge patch deletes the volumes instead of leaving them in place.
    assert "volumes" in pod_of(without) and pod_of(without)["volumes"] is None
    assert drifted(without["spec"], with_hub["spec"]) and not drifted(without["spec"], copy.deepcopy(without["spec"]))
    live = copy.deepcopy(with_hub)
    live["spec"]["template"]["spec"]["volumes"][1]["secret"]["defaultMode"] = 420  # the API server's default
    assert not drifted(with_hub["spec"], live["spec"])
    live["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"] = "other"
    assert drifted(with_hub["spec"], live["spec"])


def mount_as_the_kubelet_would(deployment, secrets: dict[str, dict[str, str]], root: Path) -> dict[str, str]:
    """Write each mounted Secret item under `root` and return the container's env with paths moved there."""
    pod = pod_of(deployment)
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] or ()}
    mounts = pod["containers"][0].get("volumeMounts", ())
    for mount in mounts:
        secret = volumes[mount["name"]]
        for item in secret["items"]:
            path = root / mount["mountPath"].lstrip("/") / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets[secret["secretName"]][item["key"]])
    mounted = tuple(mount["mountPath"] + "/" for mount in mounts)
    return {name: str(root / value.lstrip("/")) if value.startswith(mounted) else value
            for name, value in env_of(deployment).items()}


def test_the_worker_runner_reads_the_mounted_secrets_from_the_variables_we_give_it(tmp_path):
    """The contract with worker_image/: each file variable names a file a mount provides, from the right key."""
    deployment = build_deployment(pool(hub={
        "tls": {"secretName": "hub-client", "mutual": True, "caKey": "root.pem", "keyKey": "private.pem"},
        "auth": {"tokenSecret": "hub-token", "tokenKey": "worker"}}), 1)
    secrets = {"hub-client": {"root.pem": "CA", "tls.crt": "CERT", "private.pem": "KEY", "ca.crt": "not this"},
               "hub-token": {"worker": "s3cret\n", "token": "not this"}}
    config = parse_config([], mount_as_the_kubelet_would(deployment, secrets, tmp_path))
    files = (config.tls_ca, config.tls_cert, config.tls_key, config.token_file)
    assert [Path(path).read_text() for path in files] == ["CA", "CERT", "KEY", "s3cret\n"]
