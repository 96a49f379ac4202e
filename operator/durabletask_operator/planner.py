"""The pure decision core: (pools of one app, their Deployments, instance counts per version, now)
→ per pool: desired replicas, whether to delete its Deployment, its status and its events.

Rules (operator/README.md, "How drain works"):
- Each orchestration version belongs to the newest pool of the app that can run it (by match
  strategy); a pool other than the newest is needed while some version belonging to it has
  non-terminal instances. The newest pool is always Active.
- A pool that is no longer needed is Drained (`drainedSince` recorded), ScaledDown to zero after
  its scale-down delay and its Deployment deleted after its delete delay, both counted from
  `drainedSince`. If work for it appears again, it is scaled back up.
- Unknown counts (None) never drain anything: pools not yet drained keep serving, drained pools
  hold their current replicas, and no delay runs out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cmp_to_key
from typing import Any

from durabletask.internal.versions import compare_versions
from durabletask_operator.spec import FAILURE_STRATEGIES, MATCH_STRATEGIES, Pool, hub_problem

ACTIVE, DRAINING, DRAINED, SCALED_DOWN, INVALID = "Active", "Draining", "Drained", "ScaledDown", "Invalid"

# Condition reasons (stable: users alert on them).
REPLICAS_READY, REPLICAS_NOT_READY, INVALID_SPEC = "ReplicasReady", "ReplicasNotReady", "InvalidSpec"
SERVING, WAITING_FOR_INSTANCES, WAITING_TO_SCALE_DOWN = "Serving", "WaitingForInstances", "WaitingToScaleDown"
WAITING_TO_DELETE, DEPLOYMENT_DELETED, METRICS_UNKNOWN = "WaitingToDelete", "DeploymentDeleted", "MetricsUnknown"
# Event reasons besides the phase names.
REACTIVATED = "Reactivated"

# The version becomes the `durabletask.dev/version` label, so it must be a valid label value.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class ObservedDeployment:
    replicas: int
    ready_replicas: int


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class PoolPlan:
    """What one pool's Deployment and status should be.

    `replicas` None means: create or scale nothing (an invalid spec, or a Deployment that should
    not exist); `delete_deployment` says whether an existing Deployment goes.
    """

    replicas: int | None
    delete_deployment: bool
    status: dict[str, Any]
    events: list[Event]


def serves(pool: Pool, version: str) -> bool:
    """Whether the pool's workers run orchestrations of `version` under their match strategy."""
    if pool.match_strategy == "None":
        return True
    comparison = compare_versions(version, pool.version)
    return comparison == 0 if pool.match_strategy == "Strict" else comparison <= 0


def spec_problem(pool: Pool, group: Sequence[Pool]) -> str | None:
    """One sentence saying why the pool's spec cannot be planned, or None when it can."""
    if not _LABEL_VALUE.match(pool.version):
        return (f"spec.version {pool.version!r} is not a valid version: use up to 63 letters, digits, "
                f"'.', '-' or '_', starting and ending with a letter or digit.")
    if pool.match_strategy not in MATCH_STRATEGIES:
        return f"spec.matchStrategy {pool.match_strategy!r} is not one of {', '.join(MATCH_STRATEGIES)}."
    if pool.failure_strategy not in FAILURE_STRATEGIES:
        return f"spec.failureStrategy {pool.failure_strategy!r} is not one of {', '.join(FAILURE_STRATEGIES)}."
    if problem := hub_problem(pool):
        return problem
    twins = sorted(other.name for other in group if other.name != pool.name
                   and _LABEL_VALUE.match(other.version) and compare_versions(other.version, pool.version) == 0)
    if twins:
        return (f"spec.version {pool.version!r} is also the version of WorkerPool {', '.join(twins)} "
                f"in app {pool.app!r}; each pool of an app needs its own version.")
    return None


def plan_group(pools: Sequence[Pool], deployments: Mapping[str, ObservedDeployment],
               counts: Mapping[str, int] | None, now: datetime) -> dict[str, PoolPlan]:
    """Plan every pool of one app. `deployments` is keyed by pool name (missing: no Deployment);
    `counts` maps version ("" for none) to non-terminal instances, or is None when unknown."""
    problems = {pool.name: spec_problem(pool, pools) for pool in pools}
    valid = sorted((pool for pool in pools if problems[pool.name] is None),
                   key=cmp_to_key(lambda a, b: compare_versions(b.version, a.version)))  # newest first
    waiting = _instances_per_pool(valid, counts)
    plans = {pool.name: _invalid_plan(pool, problems[pool.name], deployments.get(pool.name), now)
             for pool in pools if problems[pool.name] is not None}
    for rank, pool in enumerate(valid):
        deployment = deployments.get(pool.name)
        if rank == 0:
            progressing = ("False", SERVING, "This is the newest pool of its app.")
            plans[pool.name] = _serving_plan(pool, ACTIVE, deployment, counts, now, progressing)
        elif counts is None:
            plans[pool.name] = _unknown_plan(pool, deployment, valid[0], now)
        elif waiting[pool.name]:
            versions = ", ".join(f"{n} of version {v or '(none)'}" for v, n in sorted(waiting[pool.name].items()))
            progressing = ("True", WAITING_FOR_INSTANCES,
                           f"Newer pool {valid[0].name} exists; waiting for {versions} that no newer pool runs.")
            plans[pool.name] = _serving_plan(pool, DRAINING, deployment, counts, now, progressing)
        else:
            plans[pool.name] = _drained_plan(pool, deployment, counts, now)
    return plans


def _instances_per_pool(newest_first: Sequence[Pool], counts: Mapping[str, int] | None) -> dict[str, Counter]:
    """Give each version's live instances to the newest pool that runs it."""
    owned: dict[str, Counter] = {pool.name: Counter() for pool in newest_first}
    for version, count in (counts or {}).items():
        owner = next((pool for pool in newest_first if count > 0 and serves(pool, version)), None)
        if owner is not None:
            owned[owner.name][version] += count
    return owned


def _serving_plan(pool: Pool, phase: str, deployment: ObservedDeployment | None,
                  counts: Mapping[str, int] | None, now: datetime, progressing: tuple[str, str, str]) -> PoolPlan:
    events = []
    if pool.drained_since is not None:
        events.append(Event("Normal", REACTIVATED, f"Scaling back to {pool.replicas} replicas: {progressing[2]}"))
    elif pool.phase != phase:
        events.append(Event("Normal", phase, progressing[2]))
    return _plan(pool, phase, pool.replicas, False, deployment, counts, None, progressing, events, now)


def _drained_plan(pool: Pool, deployment: ObservedDeployment | None, counts: Mapping[str, int],
                  now: datetime) -> PoolPlan:
    since = pool.drained_since or now
    age = now - since
    events = []
    if age >= pool.delete_delay:
        phase, replicas, delete = SCALED_DOWN, None, True
        progressing = ("False", DEPLOYMENT_DELETED, "No orchestration needs this pool; its Deployment is deleted.")
        if deployment is not None:
            seconds = int(pool.delete_delay.total_seconds())
            message = f"Deleting the Deployment {seconds} s after the pool drained."
            events.append(Event("Normal", DEPLOYMENT_DELETED, message))
    elif age >= pool.scale_down_delay:
        phase, replicas, delete = SCALED_DOWN, 0, False
        progressing = ("True", WAITING_TO_DELETE,
                       f"Scaled to zero; the Deployment is deleted at {(since + pool.delete_delay).isoformat()}.")
    else:
        phase, replicas, delete = DRAINED, pool.replicas, False
        progressing = ("True", WAITING_TO_SCALE_DOWN, "No orchestration needs this pool; scaling to zero at "
                       f"{(since + pool.scale_down_delay).isoformat()}.")
    if pool.phase != phase:
        events.append(Event("Normal", phase, progressing[2]))
    return _plan(pool, phase, replicas, delete, deployment, counts, since, progressing, events, now)


def _unknown_plan(pool: Pool, deployment: ObservedDeployment | None, newest: Pool, now: datetime) -> PoolPlan:
    progressing = ("Unknown", METRICS_UNKNOWN,
                   "Instance counts are unknown, so nothing drains until they are known again.")
    events = [] if _condition(pool, "Progressing").get("reason") == METRICS_UNKNOWN else [
        Event("Warning", METRICS_UNKNOWN, progressing[2])]
    if pool.drained_since is None:
        phase, replicas = DRAINING, pool.replicas
        if pool.phase != phase:
            events.append(Event("Normal", phase,
                                f"Newer pool {newest.name} exists; keeping this pool until instance counts are known."))
    else:  # hold the drained pool where it is: neither scale it back up nor let its delays run out
        phase, replicas = pool.phase or DRAINED, deployment.replicas if deployment is not None else None
    return _plan(pool, phase, replicas, False, deployment, None, pool.drained_since, progressing, events, now)


def _invalid_plan(pool: Pool, problem: str, deployment: ObservedDeployment | None, now: datetime) -> PoolPlan:
    previous = _condition(pool, "Ready")
    same = pool.phase == INVALID and previous.get("message") == problem
    events = [] if same else [Event("Warning", INVALID_SPEC, problem)]
    conditions = [("Ready", "False", INVALID_SPEC, problem), ("Progressing", "False", INVALID_SPEC, problem)]
    desired = deployment.replicas if deployment else 0
    status = _status(pool, INVALID, desired, deployment, None, pool.drained_since, now, conditions)
    return PoolPlan(None, False, status, events)


def _plan(pool: Pool, phase: str, replicas: int | None, delete: bool, deployment: ObservedDeployment | None,
          counts: Mapping[str, int] | None, drained_since: datetime | None,
          progressing: tuple[str, str, str], events: list[Event], now: datetime) -> PoolPlan:
    desired = replicas or 0
    ready = deployment.ready_replicas if deployment is not None else 0
    if desired == 0:
        readiness = ("False", SCALED_DOWN, "The pool has no replicas.")
    elif ready >= desired:
        readiness = ("True", REPLICAS_READY, f"{ready} of {desired} replicas are ready.")
    else:
        readiness = ("False", REPLICAS_NOT_READY, f"{ready} of {desired} replicas are ready.")
    status = _status(pool, phase, desired, deployment, counts, drained_since, now,
                     [("Ready", *readiness), ("Progressing", *progressing)])
    return PoolPlan(replicas, delete, status, events)


def _status(pool: Pool, phase: str, desired: int, deployment: ObservedDeployment | None,
            counts: Mapping[str, int] | None, drained_since: datetime | None, now: datetime,
            conditions: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    return {
        "phase": phase,
        "desiredReplicas": desired,
        "readyReplicas": deployment.ready_replicas if deployment is not None else 0,
        "runningInstances": None if counts is None else counts.get(pool.version, 0),
        "drainedSince": drained_since.isoformat() if drained_since else None,
        "observedGeneration": pool.generation,
        "conditions": [_condition_entry(pool, now, *condition) for condition in conditions],
    }


def _condition(pool: Pool, kind: str) -> Mapping[str, Any]:
    return next((c for c in pool.conditions if c.get("type") == kind), {})


def _condition_entry(pool: Pool, now: datetime, kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    """A condition that keeps its lastTransitionTime while its status stays the same."""
    previous = _condition(pool, kind)
    same = previous.get("status") == status and previous.get("lastTransitionTime")
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": previous["lastTransitionTime"] if same else now.isoformat()}
