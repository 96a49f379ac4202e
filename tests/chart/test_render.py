"""Tier 0: the chart renders, lints strictly, and every object is valid for Kubernetes 1.37,
for the default values and the combinations users pick; and it renders what each mode promises."""

import json
import re

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.chart.chart import (CHART_DIR, COMBINATIONS, KUBE_VERSION, MONITORING_ON, NAMESPACE, PROMETHEUS_KINDS,
                               TLS_AND_AUTH, chart, container, crds, example_pools, kinds, only, render, render_files)
from tests.support.processes import REPO

SERVER, OPERATOR = "durabletask-server", "durabletask-operator"
# A trimmed schema of the ServiceMonitor fields the chart sets, with names and types as in the Prometheus
# operator's CRD (monitoring.coreos.com_servicemonitors.yaml, v1): unknown fields are errors here.
SERVICE_MONITOR_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False, "properties": {
            "selector": {"type": "object", "additionalProperties": False,
                         "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "namespaceSelector": {"type": "object", "additionalProperties": False,
                                  "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["port"],
                "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                               "scheme": {"enum": ["http", "https"]},
                               "tlsConfig": {"type": "object", "additionalProperties": False, "properties": {
                                   "serverName": {"type": "string"},
                                   "ca": {"type": "object", "additionalProperties": False, "properties": {
                                       "secret": {"type": "object", "additionalProperties": False,
                                                  "required": ["name", "key"],
                                                  "properties": {"name": {"type": "string"},
                                                                 "key": {"type": "string"}}}}}}},
                               "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                            "(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}}}}}}}}


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_lints_strictly(values):
    report = helm.lint(CHART_DIR, values, strict=True, kube_version=f"v{KUBE_VERSION}", namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_object_is_valid_kubernetes(values):
    objects = render(values) + crds()
    [crd] = crds()
    for obj in objects:
        if obj["apiVersion"].startswith("durabletask.dev/"):
            jsonschema.validate(obj, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
                                cls=jsonschema.Draft7Validator)
        elif obj["kind"] not in PROMETHEUS_KINDS:  # the Prometheus operator's: checked against their own schemas below
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_the_crd_is_the_one_in_crds(tmp_path):
    """charts/durabletask/crds/ links to crds/: the chart, and the archive `helm package` makes, carry its bytes."""
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with helm.Chart.load(archive) as packaged:
        for crd_files in (chart().crds, packaged.crds):
            [crd] = crd_files
            assert crd["data"] == (REPO / "crds" / "workerpools.yaml").read_text()


def test_defaults_run_one_sqlite_server_on_a_claim():
    objects = render()
    deployment = only(objects, "Deployment", SERVER)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    server = container(objects, SERVER)
    assert "--store=sqlite:////var/lib/durabletask/hub.db" in server["args"]
    assert {"name": "data", "mountPath": "/var/lib/durabletask"} in server["volumeMounts"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = only(objects, "PersistentVolumeClaim")
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "ServiceMonitor" not in kinds(objects) and "WorkerPool" not in kinds(objects)


def test_server_and_operator_run_the_one_control_plane_image():
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    for values, expected in (({}, f"durabletask:{app_version}"),
                             ({"image": {"repository": "reg.example/dt", "tag": "2.0", "pullPolicy": "Always"}},
                              "reg.example/dt:2.0")):
        objects = render(values)
        for name, program in ((SERVER, "durabletask-server"), (OPERATOR, "durabletask-operator")):
            c = container(objects, name)
            assert (c["image"], c["command"]) == (expected, [program])
            assert c["imagePullPolicy"] == values.get("image", {}).get("pullPolicy", "IfNotPresent")


def test_postgresql_runs_replicas_with_the_url_from_a_secret():
    objects = render({"store": {"type": "postgresql", "postgresql": {"existingSecret": "hub-db", "urlKey": "dsn"}},
                      "server": {"replicas": 3}})
    assert only(objects, "Deployment", SERVER)["spec"]["replicas"] == 3
    assert "PersistentVolumeClaim" not in kinds(objects) and "Secret" not in kinds(objects)
    server = container(objects, SERVER)
    assert "--store=$(DURABLETASK_STORE_URL)" in server["args"]  # Kubernetes expands it from the env
    [env] = [e for e in server["env"] if e["name"] == "DURABLETASK_STORE_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "hub-db", "key": "dsn"}


def test_the_operator_scrapes_the_servers_metrics_service():
    objects = render()
    service = only(objects, "Service", SERVER)
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "metrics")
    args = container(objects, OPERATOR)["args"]
    assert f"--hub-metrics-url=http://{SERVER}.{NAMESPACE}.svc:{port}/metrics" in args
    assert f"--namespace={NAMESPACE}" in args and "--standalone" in args


def test_the_operator_can_read_prometheus_instead():
    objects = render(COMBINATIONS["prometheus-source-no-metrics"])
    args = container(objects, OPERATOR)["args"]
    assert "--prometheus-url=http://prometheus.monitoring:9090" in args
    assert not any(a.startswith("--hub-metrics-url") for a in args)
    assert "--metrics-port=0" in container(objects, SERVER)["args"]


def volumes(objects: list[dict], deployment: str) -> dict[str, dict]:
    return {v["name"]: v for v in only(objects, "Deployment", deployment)["spec"]["template"]["spec"]["volumes"]}


def mounts(objects: list[dict], deployment: str) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container(objects, deployment)["volumeMounts"]}


def test_tls_and_tokens_come_from_mounted_secrets():
    objects = render(TLS_AND_AUTH)
    args, server_mounts = container(objects, SERVER)["args"], mounts(objects, SERVER)
    for flag, volume, key in [("--tls-cert", "tls", "tls.crt"), ("--tls-key", "tls", "tls.key"),
                              ("--tls-client-ca", "tls", "ca.crt"), ("--auth-token-file", "auth-tokens", "accepted")]:
        assert f"{flag}={server_mounts[volume]}/{key}" in args
    server_volumes = volumes(objects, SERVER)
    assert server_volumes["tls"]["secret"]["secretName"] == "hub-tls"
    # The token Secret is mounted whole (no subPath, no items), so the kubelet updates the file on rotation.
    assert server_volumes["auth-tokens"]["secret"] == {"secretName": "hub-tokens", "defaultMode": 0o440}
    assert not any("subPath" in m for m in container(objects, SERVER)["volumeMounts"])


def test_with_tls_the_operator_and_the_service_monitor_scrape_https_trusting_only_the_ca():
    objects = render(TLS_AND_AUTH)
    args = container(objects, OPERATOR)["args"]
    assert f"--hub-metrics-url=https://{SERVER}.{NAMESPACE}.svc:9464/metrics" in args
    assert f"--metrics-ca-file={mounts(objects, OPERATOR)['metrics-ca']}/ca.crt" in args
    # The operator gets the CA out of the server's Secret, never the server's private key.
    assert volumes(objects, OPERATOR)["metrics-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    [endpoint] = only(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "hub-tls", "key": "ca.crt"}},
                                     "serverName": f"{SERVER}.{NAMESPACE}.svc"}


def test_without_tls_nothing_is_mounted_and_metrics_stay_http():
    objects = render(MONITORING_ON)
    assert set(volumes(objects, SERVER)) == {"tmp", "data"} and set(volumes(objects, OPERATOR)) == {"tmp"}
    assert not any(a.startswith(("--tls", "--auth", "--metrics-ca")) for a in container(objects, SERVER)["args"]
                   + container(objects, OPERATOR)["args"])
    assert "scheme" not in only(objects, "ServiceMonitor")["spec"]["endpoints"][0]


def test_rbac_is_a_role_per_watched_namespace_by_default():
    objects = render(COMBINATIONS["two-namespaces"])
    assert "ClusterRole" not in kinds(objects) and "ClusterRoleBinding" not in kinds(objects)
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding"}
    assert roles == bindings == {"shop", "billing"}
    args = container(objects, OPERATOR)["args"]
    assert {"--namespace=shop", "--namespace=billing"} <= set(args)
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


def test_rbac_is_a_cluster_role_only_for_all_namespaces():
    objects = render(COMBINATIONS["all-namespaces"])
    assert "Role" not in kinds(objects) and "RoleBinding" not in kinds(objects)
    role, binding = only(objects, "ClusterRole"), only(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    args = container(objects, OPERATOR)["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--namespace") for a in args)


def test_no_rule_grants_more_than_the_operator_uses():
    for values in (COMBINATIONS["defaults"], COMBINATIONS["all-namespaces"]):
        for role in (o for o in render(values) if o["kind"] in ("Role", "ClusterRole")):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert not {"get", "update", "deletecollection", "escalate", "bind"} & set(rule["verbs"])
                assert not {"secrets", "pods", "configmaps"} & set(rule["resources"])


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_container_is_locked_down(values):
    for deployment in (o for o in render(values) if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys() & c["resources"]["limits"].keys()


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_no_secret_is_rendered_from_values(values):
    objects = render(values)
    assert "Secret" not in kinds(objects)
    assert not re.search(r"postgres(ql)?://", yaml.safe_dump_all(objects))


@pytest.mark.parametrize("values, message", [
    ({"server": {"replicas": 2}}, "needs store.type=postgresql"),
    ({"store": {"type": "postgresql"}}, "needs store.postgresql.existingSecret"),
    ({"server": {"metrics": {"enabled": False}}}, "set server.metrics.enabled=true or operator.prometheusUrl"),
    ({"server": {"replica": 2}}, "additional properties 'replica' not allowed"),
    ({"server": {"image": {"repository": "x"}}}, "additional properties 'image' not allowed"),
    ({"store": {"type": "mysql"}}, "/store/type"),
    ({"monitoring": {"prometheusRule": {"drainingFor": "one day"}}}, "/monitoring/prometheusRule/drainingFor"),
    ({"server": {"tls": {"secretName": "Hub_TLS"}}}, "/server/tls/secretName"),
    ({"server": {"auth": {"tokenKey": "a/b"}}}, "/server/auth/tokenKey"),
])
def test_impossible_values_fail_with_what_to_change(values, message):
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


def test_example_pools_match_the_crd_and_point_at_the_server():
    [crd] = crds()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    objects = render({"workerPools": example_pools()})
    pools = [o for o in objects if o["kind"] == "WorkerPool"]
    assert sorted(p["metadata"]["name"] for p in pools) == ["orders-v1", "orders-v2"]
    service = only(objects, "Service", SERVER)
    grpc = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    for pool in pools:
        jsonschema.validate(pool, schema, cls=jsonschema.Draft7Validator)
        assert pool["spec"]["taskHubAddress"] == f"{SERVER}.{NAMESPACE}.svc:{grpc}"


def test_a_pools_own_task_hub_address_wins():
    pool = {"name": "p", "namespace": "shop", "spec": {**example_pools()[0]["spec"], "taskHubAddress": "hub:4001"}}
    [rendered] = [o for o in render({"workerPools": [pool]}) if o["kind"] == "WorkerPool"]
    assert rendered["spec"]["taskHubAddress"] == "hub:4001" and rendered["metadata"]["namespace"] == "shop"


@pytest.mark.parametrize("values", [MONITORING_ON, TLS_AND_AUTH], ids=["http", "https"])
def test_service_monitor_scrapes_the_servers_metrics_port(values):
    objects = render(values)
    monitor = only(objects, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = only(objects, "Service", SERVER)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_prometheus_rule_has_the_three_alerts_on_this_release():
    rule = only(render(MONITORING_ON), "PrometheusRule")
    [group] = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"DurableTaskVersionHasNoWorkers", "DurableTaskVersionMismatchRejections",
                           "DurableTaskDrainTakesTooLong"}
    for alert in alerts.values():
        assert f'namespace="{NAMESPACE}", job="{SERVER}"' in alert["expr"]
        assert alert["labels"]["severity"] in ("warning", "critical") and alert["annotations"]["description"]


def test_dashboard_configmap_is_found_by_the_grafana_sidecar():
    configmap = only(render(MONITORING_ON), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["durabletask.json"])
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Running instances by version", "Backlog by version", "Workers by version",
            "Drain state by version"} <= titles
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "job"}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        for target in panel["targets"]:
            assert 'namespace="$namespace", job="$job"' in target["expr"], (panel["title"], target["expr"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_notes_tell_where_the_server_is_and_what_to_do_next():
    notes = render_files({"workerPools": []})["durabletask/templates/NOTES.txt"]
    assert f"{SERVER}.{NAMESPACE}.svc:4001" in notes
    assert f"rollout status deployment/{SERVER}" in notes and "kubectl get workerpools" in notes
    secured = render_files(TLS_AND_AUTH)["durabletask/templates/NOTES.txt"]
    assert f"{SERVER}.{NAMESPACE}.svc:4001 (gRPC over mutual TLS, bearer token required)" in secured
    assert "spec.hub.tls: {secretName: SECRET, mutual: true}" in secured and "spec.hub.auth:" in secured
    assert "spec.hub" not in notes


DOCUMENTED_AS_A_WHOLE = {"resources", "labels", "podSecurityContext", "securityContext"}


def _leaf_keys(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in DOCUMENTED_AS_A_WHOLE:
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_readme_documents_every_value():
    readme = (CHART_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert _leaf_keys(values) == documented
