"""The Deployment a WorkerPool becomes: the runner's environment contract, labels, probes, ownership."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from durabletask_operator.spec import API_VERSION, GROUP, KIND, Pool

MANAGED_BY = "durabletask-operator"
VERSION_LABEL = f"{GROUP}/version"
POOL_LABEL = f"{GROUP}/pool"
# Seconds between the runner's drain deadline and the kubelet's SIGKILL: room to close streams and exit.
SHUTDOWN_MARGIN_SECONDS = 10
# Where the Secrets of spec.hub are mounted in the worker container, one directory per volume.
SECRETS_DIR = "/etc/durabletask"


def selector_labels(pool: Pool) -> dict[str, str]:
    """Labels that pick the pool's pods; they never change for a pool (a Deployment's selector is immutable)."""
    return {POOL_LABEL: pool.name, "app.kubernetes.io/managed-by": MANAGED_BY}


def labels(pool: Pool) -> dict[str, str]:
    return {
        **selector_labels(pool),
        "app.kubernetes.io/name": pool.app,
        "app.kubernetes.io/instance": pool.name,
        "app.kubernetes.io/version": pool.version,
        "app.kubernetes.io/component": "worker",
        VERSION_LABEL: pool.version,
    }


@dataclass(frozen=True)
class SecretFile:
    variable: str  # the runner's setting that names the file
    key: str  # the key in the Secret
    name: str  # the file's name in the mount


@dataclass(frozen=True)
class SecretMount:
    volume: str
    secret: str
    files: tuple[SecretFile, ...]

    @property
    def directory(self) -> str:
        return f"{SECRETS_DIR}/{self.volume}"


def hub_secrets(pool: Pool) -> list[SecretMount]:
    """The Secrets spec.hub names, with the files the runner reads from each."""
    mounts = []
    if pool.hub_tls is not None:
        tls = pool.hub_tls
        files = [SecretFile("DURABLETASK_TLS_CA", tls.ca_key, "ca.crt")]
        if tls.mutual:
            files += [SecretFile("DURABLETASK_TLS_CERT", tls.cert_key, "tls.crt"),
                      SecretFile("DURABLETASK_TLS_KEY", tls.key_key, "tls.key")]
        mounts.append(SecretMount("hub-tls", tls.secret_name, tuple(files)))
    if pool.hub_auth is not None:
        token = SecretFile("DURABLETASK_TOKEN_FILE", pool.hub_auth.token_key, "token")
        mounts.append(SecretMount("hub-token", pool.hub_auth.token_secret, (token,)))
    return mounts


def secret_volumes(pool: Pool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes for `hub_secrets` and the container's read-only mounts of them.

    Only the keys the runner reads are projected (never, say, a server's private key that shares
    the Secret), under fixed file names, in the kubelet's default mode 0644: the pod sets no
    fsGroup, and the image's user is not root. Each is a directory mount, never subPath: only then
    do the kubelet's updates of the Secret reach the files, so a rotated token is sent at the next
    call. The kubelet mounts them; the operator itself never reads a Secret (nor has RBAC to).
    """
    volumes, mounts = [], []
    for mount in hub_secrets(pool):
        items = [{"key": file.key, "path": file.name} for file in mount.files]
        volumes.append({"name": mount.volume, "secret": {"secretName": mount.secret, "items": items}})
        mounts.append({"name": mount.volume, "mountPath": mount.directory, "readOnly": True})
    return volumes, mounts


def runner_env(pool: Pool) -> list[dict[str, str]]:
    """The worker runner's contract (worker_image/README.md)."""
    env = {
        "DURABLETASK_ADDRESS": pool.task_hub_address,
        "DURABLETASK_APP": pool.module,
        "DURABLETASK_VERSION": pool.version,
        "DURABLETASK_DEFAULT_VERSION": pool.default_version,
        "DURABLETASK_MATCH_STRATEGY": pool.match_strategy,
        "DURABLETASK_FAILURE_STRATEGY": pool.failure_strategy,
        "DURABLETASK_HTTP_PORT": str(pool.http_port),
        "DURABLETASK_DRAIN_SECONDS": str(pool.drain_grace_seconds),
    }
    if pool.concurrency is not None:
        env["DURABLETASK_CONCURRENCY"] = str(pool.concurrency)
    for mount in hub_secrets(pool):
        env.update({file.variable: f"{mount.directory}/{file.name}" for file in mount.files})
    return [{"name": name, "value": value} for name, value in env.items()]


def build_deployment(pool: Pool, replicas: int) -> dict[str, Any]:
    own_env = runner_env(pool)
    own_names = {item["name"] for item in own_env}
    volumes, mounts = secret_volumes(pool)
    container: dict[str, Any] = {
        "name": "worker",
        "image": pool.image,
        # The runner's variables come last and the user's copies of them are dropped: they define the pool.
        "env": [dict(item) for item in pool.extra_env if item.get("name") not in own_names] + own_env,
        "ports": [{"name": "http", "containerPort": pool.http_port, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2},
    }
    if mounts:
        container["volumeMounts"] = mounts
    if pool.resources:
        container["resources"] = dict(pool.resources)
    pool_labels = labels(pool)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": pool.name,
            "namespace": pool.namespace,
            "labels": pool_labels,
            "ownerReferences": [{"apiVersion": f"{GROUP}/{API_VERSION}", "kind": KIND, "name": pool.name,
                                 "uid": pool.uid, "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(pool)},
            "template": {
                "metadata": {"labels": {**pool.extra_labels, **pool_labels}},
                "spec": {
                    "terminationGracePeriodSeconds": pool.drain_grace_seconds + SHUTDOWN_MARGIN_SECONDS,
                    "containers": [container],
                    # None rather than absent: the merge patch then removes volumes an earlier spec added.
                    "volumes": volumes or None,
                },
            },
        },
    }


def drifted(desired: Any, actual: Any) -> bool:
    """Whether `actual` differs from `desired` in anything `desired` sets.

    Fields only in `actual` are ignored: the API server fills in defaults (imagePullPolicy,
    terminationMessagePath, ...) that would otherwise look like drift on every check.
    """
    if isinstance(desired, Mapping):
        return not isinstance(actual, Mapping) or any(drifted(value, actual.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        return (not isinstance(actual, list) or len(desired) != len(actual)
                or any(drifted(d, a) for d, a in zip(desired, actual)))
    return desired != actual
