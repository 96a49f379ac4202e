"""Fixtures for operator tests: a task hub server with its metrics page on, the Kubernetes
emulator with the CRD applied, and the real operator as a subprocess."""

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.emulator import RunningEmulator
from tests.support.processes import REPO, ServerProcess, free_port, stop_process

CRD = REPO / "crds" / "workerpools.yaml"
EXAMPLES = REPO / "crds" / "examples"


@dataclass
class Hub:
    server: ServerProcess
    metrics_port: int

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


class Cluster:
    """Clients for the emulated API server: kubectl and the `kubernetes` library, both over HTTP."""

    def __init__(self, url: str, kubeconfig: str):
        self.url, self.kubeconfig = url, kubeconfig
        api = client.ApiClient(client.Configuration(host=url))
        self.core, self.apps, self.custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        # --validate=false: the emulator serves no OpenAPI documents for client-side validation.
        extra = ["--validate=false"] if args[0] == "apply" else []
        result = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args, *extra], input=stdin,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
        return result.stdout

    def apply(self, namespace: str, manifest: str) -> str:
        return self.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest)

    def pool(self, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object("durabletask.dev", "v1alpha1", namespace, "workerpools", name)

    def deployment(self, namespace: str, name: str) -> dict | None:
        try:
            return self.apps.read_namespaced_deployment(name, namespace).to_dict()
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def events(self, namespace: str, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the Events about one object, oldest first."""
        items = self.core.list_namespaced_event(namespace).items
        return [(e.type, e.reason) for e in items if e.involved_object.name == name]


def wait_until(check, timeout: float = 15.0, what: str = "condition"):
    """Poll `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


@pytest.fixture
def hub(tmp_path):
    """Our task hub server on a fresh SQLite store, serving /metrics on its own port."""
    metrics_port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db", extra_args=("--metrics-port", str(metrics_port))).start()
    yield Hub(server, metrics_port)
    server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The Kubernetes emulator with the WorkerPool CRD applied by kubectl, shared by the session."""
    with RunningEmulator() as emulator:
        kubeconfig = emulator.kubeconfig(tmp_path_factory.mktemp("kube") / "config")
        cluster = Cluster(emulator.url, kubeconfig)
        cluster.kubectl("apply", "-f", str(CRD))
        yield cluster


@pytest.fixture
def namespace(cluster, request):
    """A fresh namespace per test, so tests sharing the emulator never see each other's pools."""
    name = f"t{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def start_operator(cluster, namespace):
    """Start the real `durabletask-operator` against the emulator, watching the test's namespace.
    (Request `hub` before this fixture: the operator then stops before the hub it scrapes.)"""
    started = []

    def start(*metrics_args: str, interval: float = 0.3) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "durabletask_operator.cli", "--standalone", "--namespace", namespace,
             "--interval", str(interval), *metrics_args],
            env={**os.environ, "KUBECONFIG": cluster.kubeconfig}, cwd=REPO)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)
