"""The kopf edge: observe a pool's app group, ask the planner, apply its answer for that pool.

Every pool has a timer; each tick plans the pool's whole app group (from kopf's in-memory
indexes of pools and Deployments) but writes only the pool's own Deployment, status and
events, so pools never race each other's writes and a repeated tick changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from durabletask_operator import deployment as builder
from durabletask_operator.metrics import SharedCounts
from durabletask_operator.planner import ObservedDeployment, PoolPlan, plan_group
from durabletask_operator.spec import API_VERSION, GROUP, PLURAL, Pool

MANAGED = {"app.kubernetes.io/managed-by": builder.MANAGED_BY}
ERROR_BACKOFF_SECONDS = 30.0
MERGE_PATCH = "application/merge-patch+json"


def register(registry: kopf.OperatorRegistry, counts: SharedCounts, interval: float) -> None:
    """Add the operator's handlers to `registry`; pools are checked every `interval` seconds."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # Through the `kubernetes` client, which then also serves our own Deployment calls.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING  # our own Events carry the transitions; kopf adds its errors

    @kopf.index(GROUP, API_VERSION, PLURAL, id="pools_by_app", registry=registry)
    def pools_by_app(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], Pool]:
        pool = Pool.from_body(body)
        return {(namespace, pool.app): pool}

    @kopf.index("apps", "v1", "deployments", labels=MANAGED, id="deployments_by_pool", registry=registry)
    def deployments_by_pool(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], dict]:
        return {(namespace, name): {"spec": dict(body.spec), "status": dict(body.status)}}

    @kopf.timer(GROUP, API_VERSION, PLURAL, id="check_pool", interval=interval, backoff=ERROR_BACKOFF_SECONDS,
                registry=registry)
    def check_pool(body: kopf.Body, patch: kopf.Patch, pools_by_app: kopf.Index, deployments_by_pool: kopf.Index,
                   logger: logging.Logger, **_: Any) -> None:
        pool = Pool.from_body(body)
        # The index may lag behind this body (or still list the pool under an old app): trust the body.
        group = [p for p in pools_by_app.get((pool.namespace, pool.app), []) if p.name != pool.name] + [pool]
        live = {p.name: _only(deployments_by_pool.get((pool.namespace, p.name), [])) for p in group}
        observed = {name: _observe(d) for name, d in live.items() if d is not None}
        plan = plan_group(group, observed, counts.get(), datetime.now(timezone.utc))[pool.name]
        try:
            apply_deployment(pool, plan, live[pool.name], logger)
        except ApiException as error:
            kopf.event(body, type="Warning", reason="DeploymentFailed",
                       message=f"Applying Deployment {pool.name} failed: {error.status} {error.reason}.")
            raise  # kopf retries after ERROR_BACKOFF_SECONDS
        # Only what changed: an unchanged status then costs no write and wakes no watcher.
        patch.status.update({key: value for key, value in plan.status.items() if body.status.get(key) != value})
        for event in plan.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def apply_deployment(pool: Pool, plan: PoolPlan, live: Mapping[str, Any] | None, logger: logging.Logger) -> None:
    """Create, correct, scale or delete the pool's Deployment to match the plan; idempotent."""
    apps = client.AppsV1Api()
    if plan.delete_deployment:
        if live is not None:
            apps.delete_namespaced_deployment(pool.name, pool.namespace)
            logger.info("Deleted Deployment %s.", pool.name)
    elif plan.replicas is not None:
        desired = builder.build_deployment(pool, plan.replicas)
        if live is None:
            apps.create_namespaced_deployment(pool.namespace, desired)
            logger.info("Created Deployment %s with %d replicas.", pool.name, plan.replicas)
        elif builder.drifted(desired["spec"], live["spec"]):
            apps.patch_namespaced_deployment(pool.name, pool.namespace, desired, _content_type=MERGE_PATCH)
            logger.info("Updated Deployment %s (%d replicas).", pool.name, plan.replicas)


def _only(items: Iterable[dict]) -> dict | None:
    return next(iter(items), None)


def _observe(live: Mapping[str, Any]) -> ObservedDeployment:
    return ObservedDeployment(replicas=live["spec"].get("replicas", 1),
                              ready_replicas=(live.get("status") or {}).get("readyReplicas") or 0)
