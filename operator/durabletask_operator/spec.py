"""The WorkerPool resource as the operator reads it: names, defaults and one parsed view of a body.

The defaults mirror `crds/workerpools.yaml` (a test keeps them in step): the API server applies
them on a real cluster, but the operator must not depend on that (older objects, emulators).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

GROUP = "durabletask.dev"
API_VERSION = "v1alpha1"
PLURAL = "workerpools"
KIND = "WorkerPool"

MATCH_STRATEGIES = ("None", "Strict", "CurrentOrOlder")
FAILURE_STRATEGIES = ("Reject", "Fail")

DEFAULTS = {
    "matchStrategy": "CurrentOrOlder",
    "failureStrategy": "Reject",
    "replicas": 1,
    "httpPort": 8080,
}
DRAIN_DEFAULTS = {
    "gracePeriodSeconds": 30,
    "scaleDownDelaySeconds": 300,
    "deleteDelaySeconds": 3600,
}


@dataclass(frozen=True)
class Pool:
    """One WorkerPool: its spec with defaults applied, plus what the operator recorded in its status."""

    name: str
    namespace: str
    uid: str
    generation: int
    app: str
    image: str
    module: str
    version: str
    default_version: str
    match_strategy: str
    failure_strategy: str
    replicas: int
    task_hub_address: str
    http_port: int
    concurrency: int | None
    drain_grace_seconds: int
    scale_down_delay: timedelta
    delete_delay: timedelta
    extra_labels: Mapping[str, str]
    extra_env: tuple[Mapping[str, Any], ...]
    resources: Mapping[str, Any] | None
    # Recorded by earlier reconciliations (status); the planner's memory between runs.
    phase: str | None
    drained_since: datetime | None
    conditions: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Pool:
        meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
        drain = {**DRAIN_DEFAULTS, **(spec.get("drain") or {})}
        template = spec.get("template") or {}
        version = str(spec.get("version", ""))
        drained_since = status.get("drainedSince")
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""),
            generation=meta.get("generation", 0),
            app=spec.get("app", ""),
            image=spec.get("image", ""),
            module=spec.get("module", ""),
            version=version,
            default_version=str(spec.get("defaultVersion") or version),
            match_strategy=spec.get("matchStrategy", DEFAULTS["matchStrategy"]),
            failure_strategy=spec.get("failureStrategy", DEFAULTS["failureStrategy"]),
            replicas=spec.get("replicas", DEFAULTS["replicas"]),
            task_hub_address=spec.get("taskHubAddress", ""),
            http_port=spec.get("httpPort", DEFAULTS["httpPort"]),
            concurrency=spec.get("concurrency"),
            drain_grace_seconds=drain["gracePeriodSeconds"],
            scale_down_delay=timedelta(seconds=drain["scaleDownDelaySeconds"]),
            delete_delay=timedelta(seconds=drain["deleteDelaySeconds"]),
            extra_labels=dict(template.get("labels") or {}),
            extra_env=tuple(template.get("env") or ()),
            resources=template.get("resources"),
            phase=status.get("phase"),
            drained_since=datetime.fromisoformat(drained_since.replace("Z", "+00:00")) if drained_since else None,
            conditions=tuple(status.get("conditions") or ()),
        )
