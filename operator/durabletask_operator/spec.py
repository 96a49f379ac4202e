"""The WorkerPool resource as the operator reads it: names, defaults, one parsed view of a body,
and which values of spec.hub its Secrets cannot be mounted with.

The defaults mirror `crds/workerpools.yaml` (a test keeps them in step): the API server applies
them on a real cluster, but the operator must not depend on that (older objects, emulators).
"""

from __future__ import annotations

import re
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
HUB_TLS_DEFAULTS = {"caKey": "ca.crt", "mutual": False, "certKey": "tls.crt", "keyKey": "tls.key"}
HUB_AUTH_DEFAULTS = {"tokenKey": "token"}

# As the CRD's patterns: what the API server accepts as a Secret's name and as a key in it.
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_NAME_OR_KEY = 253


@dataclass(frozen=True)
class HubTls:
    """spec.hub.tls, as written: a Secret with the CA that signed the hub's certificate and, when
    `mutual`, the workers' client certificate and key. `hub_problem` says whether it is usable."""

    secret_name: Any
    ca_key: Any
    mutual: Any
    cert_key: Any
    key_key: Any


@dataclass(frozen=True)
class HubAuth:
    """spec.hub.auth, as written: the Secret and key holding the bearer token the workers send."""

    token_secret: Any
    token_key: Any


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
    hub_tls: HubTls | None
    hub_auth: HubAuth | None
    # Recorded by earlier reconciliations (status); the planner's memory between runs.
    phase: str | None
    drained_since: datetime | None
    conditions: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Pool:
        meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
        drain = {**DRAIN_DEFAULTS, **(spec.get("drain") or {})}
        template = spec.get("template") or {}
        hub = spec.get("hub") or {}
        tls = {**HUB_TLS_DEFAULTS, **hub["tls"]} if hub.get("tls") is not None else None
        auth = {**HUB_AUTH_DEFAULTS, **hub["auth"]} if hub.get("auth") is not None else None
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
            hub_tls=None if tls is None else HubTls(
                tls.get("secretName"), tls["caKey"], tls["mutual"], tls["certKey"], tls["keyKey"]),
            hub_auth=None if auth is None else HubAuth(auth.get("tokenSecret"), auth["tokenKey"]),
            phase=status.get("phase"),
            drained_since=datetime.fromisoformat(drained_since.replace("Z", "+00:00")) if drained_since else None,
            conditions=tuple(status.get("conditions") or ()),
        )


def hub_problem(pool: Pool) -> str | None:
    """One sentence saying which value in spec.hub the workers' Secrets cannot be mounted with, or None."""
    names, keys = {}, {}  # field -> value
    if pool.hub_tls is not None:
        tls = pool.hub_tls
        if not isinstance(tls.mutual, bool):
            return f"spec.hub.tls.mutual {tls.mutual!r} is not true or false."
        names["spec.hub.tls.secretName"] = tls.secret_name
        keys["spec.hub.tls.caKey"] = tls.ca_key
        if tls.mutual:
            keys.update({"spec.hub.tls.certKey": tls.cert_key, "spec.hub.tls.keyKey": tls.key_key})
    if pool.hub_auth is not None:
        names["spec.hub.auth.tokenSecret"] = pool.hub_auth.token_secret
        keys["spec.hub.auth.tokenKey"] = pool.hub_auth.token_key
    problems = ([_secret_name_problem(field, value) for field, value in names.items()]
                + [_secret_key_problem(field, value) for field, value in keys.items()])
    return next(filter(None, problems), None)


def _secret_name_problem(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return f"{field} is missing: give the name of the Secret to mount."
    if not isinstance(value, str) or len(value) > MAX_NAME_OR_KEY or not SECRET_NAME.fullmatch(value):
        return (f"{field} {value!r} is not a Secret name: use up to {MAX_NAME_OR_KEY} lowercase letters, "
                f"digits, '-' or '.', starting and ending with a letter or digit.")
    return None


def _secret_key_problem(field: str, value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > MAX_NAME_OR_KEY or not SECRET_KEY.fullmatch(value):
        return (f"{field} {value!r} is not a key of a Secret: use up to {MAX_NAME_OR_KEY} letters, digits, "
                f"'-', '_' or '.'.")
    return None
