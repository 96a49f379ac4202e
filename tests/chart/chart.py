"""Render the durabletask chart offline with helm-python-sdk (Helm's Go SDK as a library, no binary)."""

from __future__ import annotations

import functools

import helm_python as helm
import yaml

from tests.support.processes import REPO

CHART_DIR = REPO / "charts" / "durabletask"
RELEASE, NAMESPACE = "durabletask", "durabletask"
KUBE_VERSION = "1.37.0"  # the newest Kubernetes kubernetes-validate knows; Helm lints against it too
PROMETHEUS_KINDS = {"ServiceMonitor", "PrometheusRule"}  # monitoring.coreos.com: not in Kubernetes' schemas

MONITORING_ON = {"monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                                "dashboard": {"enabled": True}}}


def example_pools(directory: str = "") -> list[dict]:
    """crds/examples/ (or one of its subdirectories) as `workerPools` values (their taskHubAddress
    left to the chart's default)."""
    pools = []
    for path in sorted((REPO / "crds" / "examples" / directory).glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        spec = {k: v for k, v in manifest["spec"].items() if k != "taskHubAddress"}
        pools.append({"name": manifest["metadata"]["name"], "spec": spec})
    return pools

# Mutual TLS from a cert-manager Secret, bearer tokens from another, the ServiceMonitor on https,
# and a WorkerPool whose workers mount their client certificate and token.
TLS_AND_AUTH = {"server": {"tls": {"secretName": "hub-tls", "clientCaKey": "ca.crt"},
                           "auth": {"tokenSecret": "hub-tokens", "tokenKey": "accepted"}},
                "monitoring": {"serviceMonitor": {"enabled": True}},
                "workerPools": example_pools("secured-hub")}


# The value combinations every static check runs on.
COMBINATIONS = {
    "defaults": {},
    "postgresql": {"store": {"type": "postgresql", "postgresql": {"existingSecret": "hub-db"}},
                   "server": {"replicas": 3}},
    "all-namespaces": {"operator": {"allNamespaces": True}},
    "two-namespaces": {"operator": {"watchNamespaces": ["shop", "billing"]}},
    "monitoring": MONITORING_ON,
    "example-pools": {"workerPools": example_pools()},
    "prometheus-source-no-metrics": {"operator": {"prometheusUrl": "http://prometheus.monitoring:9090"},
                                     "server": {"metrics": {"enabled": False}}},
    "tls-and-auth": TLS_AND_AUTH,
}


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def render_files(values: dict | None = None, namespace: str = NAMESPACE, release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, NOTES.txt included."""
    return chart().render(values or {}, name=release, namespace=namespace)


def render(values: dict | None = None, namespace: str = NAMESPACE, release: str = RELEASE) -> list[dict]:
    """Every object the chart's templates render (not the CRD under crds/)."""
    files = render_files(values, namespace, release)
    return [obj for name, text in sorted(files.items()) if name.endswith(".yaml")
            for obj in yaml.safe_load_all(text) if obj]


def crds() -> list[dict]:
    return [yaml.safe_load(crd["data"]) for crd in chart().crds]


def manifest_stream(objects: list[dict]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def only(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in matches]}"
    return matches[0]


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: list[dict], deployment: str) -> dict:
    return only(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
