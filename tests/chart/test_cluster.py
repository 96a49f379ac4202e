"""The rendered chart, applied with kubectl to the Kubernetes emulator of the operator tests, creates
what it rendered; the operator, run with the arguments its rendered Deployment gives it, works within
the rendered RBAC: every API call it makes is one its Role grants, and every grant is used."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chart.chart import MONITORING_ON, container, crds, example_pools, manifest_stream, only, render
from tests.operator.conftest import wait_until
from tests.support.processes import REPO, free_port, stop_process

OPERATOR = "durabletask-operator"


def stub_crd(kind: str, plural: str) -> dict:
    """Enough of the Prometheus operator's CRDs for the API server to accept their objects."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture(scope="module")
def crds_applied(cluster):
    """What `helm install` applies first (the chart's crds/), plus the Prometheus operator's CRDs."""
    cluster.kubectl("apply", "-f", "-", stdin=manifest_stream(
        crds() + [stub_crd("ServiceMonitor", "servicemonitors"), stub_crd("PrometheusRule", "prometheusrules")]))
    return cluster


def live_objects(cluster, namespace: str, kinds: set[str]) -> set[tuple[str, str]]:
    listed = json.loads(cluster.kubectl("get", ",".join(sorted(kinds)), "-n", namespace, "-o", "json"))
    return {(o["kind"], o["metadata"]["name"]) for o in listed["items"]}


def test_kubectl_apply_creates_every_rendered_object(crds_applied, namespace):
    objects = render({**MONITORING_ON, "workerPools": example_pools()}, namespace=namespace)
    output = crds_applied.apply(namespace, manifest_stream(objects))
    assert output.count(" created") == len(objects), output
    kinds = {o["kind"].lower() for o in objects}
    assert live_objects(crds_applied, namespace, kinds) == {(o["kind"], o["metadata"]["name"]) for o in objects}
    pool = crds_applied.pool(namespace, "orders-v1")
    assert pool["spec"]["taskHubAddress"] == f"durabletask-server.{namespace}.svc:4001"


# kopf lists and watches these cluster-wide when it may; under a namespaced Role the API server answers
# 403 and kopf falls back to the namespaces it was given (kopf/_core/reactor/observation.py).
KOPF_OPTIONAL = {("", "namespaces", "list"), ("", "namespaces", "watch"),
                 ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                 ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}


def rbac_verb(request) -> str:
    if request.action is not None and request.action.value in ("LIST", "WATCH"):
        return request.action.value.lower()
    return {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[request.method.value]


def operator_calls(emulator, since: int) -> set[tuple[str | None, str, str, str]]:
    """(namespace, API group, resource[/subresource], verb) of the API requests not made by kubectl."""
    calls = set()
    for request in list(emulator.emulator)[since:]:
        if request.resource is None or request.resource.plural is None:
            continue  # discovery (/api, /apis, /version) is open to every authenticated user
        if request.headers.get("User-Agent", "").startswith("kubectl"):
            continue  # the test's own calls
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        calls.add((request.namespace, request.resource.group, resource, rbac_verb(request)))
    return calls


@pytest.mark.parametrize("scope", [{}, {"allNamespaces": True}], ids=["namespaced", "all-namespaces"])
def test_the_operator_works_within_its_rendered_rbac(crds_applied, namespace, hub, emulator, scope):
    pools = example_pools()
    for pool in pools:  # no instances on the hub: once v2 comes, v1 drains at once, scales down, is deleted
        pool["spec"]["drain"] = {"gracePeriodSeconds": 1, "scaleDownDelaySeconds": 0, "deleteDelaySeconds": 0}
    # v2 mounts Secrets for a secured hub: the kubelet reads them, so the operator needs no grant for them.
    [secured] = example_pools("secured-hub")
    pools[1]["spec"]["hub"] = secured["spec"]["hub"]
    operator_values = {"intervalSeconds": 0.3, "healthPort": free_port(), **scope}
    objects = render({"workerPools": pools, "operator": operator_values}, namespace=namespace)
    v2 = only(objects, "WorkerPool", "orders-v2")
    crds_applied.apply(namespace, manifest_stream([o for o in objects if o is not v2]))  # v1 alone first
    operator = container(objects, OPERATOR)
    # The one change: the Service DNS name does not resolve here; the local hub stands in for it.
    args = [f"--hub-metrics-url={hub.metrics_url}" if a.startswith("--hub-metrics-url=") else a
            for a in operator["args"]]
    mark = len(list(emulator.emulator))
    process = subprocess.Popen([str(Path(sys.executable).parent / operator["command"][0]), *args],
                               env={**os.environ, "KUBECONFIG": crds_applied.kubeconfig}, cwd=REPO)
    try:
        def deployments():
            listed = json.loads(crds_applied.kubectl("get", "deployments", "-n", namespace, "-o", "json"))
            return {d["metadata"]["name"]: d["spec"]["replicas"] for d in listed["items"]}

        def phase(name):
            return json.loads(crds_applied.kubectl("get", "workerpool", name, "-n", namespace, "-o", "json")
                              ).get("status", {}).get("phase")

        wait_until(lambda: deployments().get("orders-v1") == 2, what="v1 serving")
        crds_applied.apply(namespace, manifest_stream([v2]))
        wait_until(lambda: deployments().get("orders-v2") == 3 and phase("orders-v2") == "Active", what="v2 serving")
        v2_pod = json.loads(crds_applied.kubectl("get", "deployment", "orders-v2", "-n", namespace, "-o", "json")
                            )["spec"]["template"]["spec"]
        assert v2_pod["volumes"][0]["secret"]["secretName"] == secured["spec"]["hub"]["tls"]["secretName"]
        wait_until(lambda: phase("orders-v1") == "ScaledDown" and "orders-v1" not in deployments(),
                   what="v1 scaled down and its Deployment deleted")
        crds_applied.kubectl("patch", "workerpool", "orders-v2", "-n", namespace, "--type=merge",
                             "-p", '{"spec": {"replicas": 1}}')
        wait_until(lambda: deployments().get("orders-v2") == 1, what="v2's Deployment scaled by a patch")
        time.sleep(0.5)  # a few more ticks
    finally:
        stop_process(process)
    calls = operator_calls(emulator, mark)

    [role] = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    if role["kind"] == "Role":
        assert {ns for ns, *_ in calls} <= {namespace, None}
        cluster_wide = {call[1:] for call in calls if call[0] is None}
        assert cluster_wide <= KOPF_OPTIONAL, f"cluster-wide calls a Role cannot allow: {cluster_wide - KOPF_OPTIONAL}"
        calls = {call for call in calls if call[0] is not None}
    used = {call[1:] for call in calls}
    assert used <= granted, f"calls the {role['kind']} does not allow: {used - granted}"
    assert granted <= used, f"grants the operator never used: {granted - used}"
