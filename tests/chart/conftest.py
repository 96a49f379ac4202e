"""The operator tests' Kubernetes emulator and fixtures, reused: `namespace` and `hub` come from
tests/operator/conftest.py; `cluster` is built the same way from the same classes, but per module
and with its RunningEmulator at hand, so a test can read the API requests the emulator recorded."""

import pytest

from tests.operator.conftest import Cluster, hub, namespace  # noqa: F401 (fixtures used by name)
from tests.operator.emulator import RunningEmulator


@pytest.fixture(scope="module")
def emulator():
    with RunningEmulator() as running:
        yield running


@pytest.fixture(scope="module")
def cluster(emulator, tmp_path_factory):
    return Cluster(emulator.url, emulator.kubeconfig(tmp_path_factory.mktemp("kube") / "config"))
