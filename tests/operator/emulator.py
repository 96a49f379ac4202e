"""kmock's Kubernetes emulator, made realistic enough for kopf and kubectl, run on a loopback port.

kmock 0.8 stores and streams objects but leaves out what controllers rely on; this subclass adds:
- metadata stamped on writes (names from generateName, resourceVersion, uid, generation bumped on spec changes,
  creationTimestamp), and lists that carry the current resourceVersion;
- watches that resume after a resourceVersion instead of replaying every object;
- namespaces as a resource (kmock cannot parse their paths);
- label selectors (equality and existence) on lists and watches;
- resources learned from posted CustomResourceDefinitions, with their printer columns served as
  a Table to `kubectl get`;
- core (`v1`) discovery that kubectl can map kinds with;
- a stand-in for the Deployment controller: a Deployment's pods are "ready" as soon as it is
  written (`readyReplicas` = `replicas`), as when images start instantly.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import itertools
import threading
import uuid
from typing import Any

import attrs
import kmock
from kmock._internal import aiobus, enums, parsing, references

DEPLOYMENTS = references.resource("apps", "v1", "deployments")


def _parse_path(path: str, _parse=parsing.parse_path) -> parsing.ParsedPath:
    """kmock 0.8 reads `/api/v1/namespaces[/NAME]` as a namespace prefix without a resource (and fails)."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (len(parts) in (3, 4) or parts[4:] in (["status"], ["finalize"])):
        return parsing.ParsedPath("", "v1", "namespaces", None, *parts[3:])
    return _parse(path)


parsing.parse_path = _parse_path


class LoggedBus(aiobus.Bus):
    """A bus that also keeps every event, so a watch can resume from a resourceVersion."""

    def __init__(self):
        super().__init__()
        self.history: list[dict] = []

    async def put(self, *items: Any) -> None:
        self.history.extend(items)
        await super().put(*items)


def _rv(event: dict) -> int:
    return int(event["object"]["metadata"].get("resourceVersion", 0))


def _selected(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _human_age(timestamp: str) -> str:
    seconds = int((datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _json_path(obj: dict, path: str) -> Any:
    for part in path.lstrip(".").split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    _buses: dict = attrs.field(factory=lambda: collections.defaultdict(LoggedBus))
    _versions: Any = attrs.field(factory=lambda: itertools.count(1))
    _latest: int = 0
    _printer_columns: dict = attrs.field(factory=dict)

    def _next_version(self) -> str:
        self._latest = next(self._versions)
        return str(self._latest)

    async def _handle(self, request: kmock.Request):
        if request.resource is not None and request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.update(uid=str(uuid.uuid4()), generation=1, resourceVersion=self._next_version(),
                        creationTimestamp=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
            if "name" not in meta and "generateName" in meta:
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace and "namespace" not in meta:
                meta["namespace"] = request.namespace
            self._pretend_pods_start(request.resource, request.data)
            if request.resource.plural == "customresourcedefinitions":
                self._learn(request.data)
        elif request.resource is not None and request.action == enums.action.UPDATE and isinstance(request.data, dict):
            self._stamp_update(request)
        elif request.resource is not None and request.action == enums.action.UPDATE and isinstance(request.data, list):
            # A JSON patch (kopf adds its finalizer so): its ops run in order, so the new version goes last.
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self._next_version()})
        return await super()._handle(request)

    def _stamp_update(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        current = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else None
        meta = request.data.setdefault("metadata", {})
        meta["resourceVersion"] = self._next_version()
        for immutable in ("uid", "creationTimestamp", "generation"):
            meta.pop(immutable, None)
        if current is not None:
            if request.subresource is None and "spec" in request.data:
                patched = copy.deepcopy(current.get("spec", {}))
                _merge(patched, request.data["spec"])
                if patched != current.get("spec", {}):
                    meta["generation"] = current["metadata"].get("generation", 1) + 1
            if request.subresource is None:
                request.data.pop("status", None)  # status changes only through /status, as with a real API server
            spec = {**current.get("spec", {}), **request.data.get("spec", {})}
            self._pretend_pods_start(request.resource, {"spec": spec}, into=request.data)

    @staticmethod
    def _pretend_pods_start(resource, obj: dict, into: dict | None = None) -> None:
        if resource == DEPLOYMENTS:
            replicas = obj.get("spec", {}).get("replicas", 1)
            status = (into if into is not None else obj).setdefault("status", {})
            status.update(replicas=replicas, readyReplicas=replicas)

    def _learn(self, crd: dict) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            resource = references.resource(spec["group"], version["name"], spec["names"]["plural"])
            self.resources[resource] = references.ResourceInfo(
                kind=spec["names"]["kind"], singular=spec["names"].get("singular"),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                shortnames=spec["names"].get("shortNames", []), subresources=version.get("subresources", {}).keys(),
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"})
            self._printer_columns[resource] = version.get("additionalPrinterColumns", [])

    async def _serve_version(self, request: kmock.Request):
        answer = await super()._serve_version(request)
        # kmock 0.8 says "/v1" for the core group; kubectl then maps no core kind (ConfigMap, Service...).
        answer["groupVersion"] = answer["groupVersion"].lstrip("/")
        return answer

    async def _serve_list(self, request: kmock.Request):
        answer = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        answer["items"] = [o for o in answer["items"] if _selected(o.get("metadata", {}).get("labels") or {}, selector)]
        answer["metadata"]["resourceVersion"] = str(self._latest)
        info, res = self.resources[request.resource], request.resource
        answer.update(kind=f"{info.kind}List", apiVersion=f"{res.group}/{res.version}" if res.group else res.version)
        if "as=Table" in request.headers.get("Accept", "") and request.resource in self._printer_columns:
            return self._table(request.resource, answer["items"])
        return answer

    async def _serve_fetch(self, request: kmock.Request):
        obj = await super()._serve_fetch(request)
        if "as=Table" in request.headers.get("Accept", "") and request.resource in self._printer_columns:
            return self._table(request.resource, [obj])
        return obj

    def _table(self, resource, items: list[dict]) -> dict:
        """What the API server sends `kubectl get` for a custom resource: the CRD's printer columns."""
        columns = [{"name": "Name", "type": "string", "format": "name"}] + [
            {"name": c["name"], "type": c["type"], "format": "", "description": c.get("description", ""),
             "priority": c.get("priority", 0)} for c in self._printer_columns[resource]]
        rows = []
        for obj in items:
            cells = [obj["metadata"]["name"]]
            for column in self._printer_columns[resource]:
                value = _json_path(obj, column["jsonPath"])
                cells.append(_human_age(value) if column["type"] == "date" and value else value)
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                    "metadata": obj["metadata"]}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(self._latest)},
                "columnDefinitions": columns, "rows": rows}

    async def _serve_watch(self, request: kmock.Request):
        yield b""  # send the headers now, even if nothing happens for a while
        bus = self._buses[request.resource]
        mark = await bus.mark()  # before the replay, so nothing slips between the replay and the stream
        since = request.params.get("resourceVersion")
        if since:
            backlog = [e for e in bus.history if _rv(e) > int(since)]
        else:
            backlog = [{"type": "ADDED", "object": o.raw} for (res, _, _), o in self.objects.items()
                       if res == request.resource and not o.deleted]
        seen = int(since or 0)
        for event in backlog:
            if self._watched(request, event["object"]):
                seen = max(seen, _rv(event))
                yield event
        async for event in mark:
            if _rv(event) > seen and self._watched(request, event["object"]):
                yield event

    @staticmethod
    def _watched(request: kmock.Request, obj: dict) -> bool:
        meta = obj.get("metadata", {})
        return ((request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta.get("name") == request.name)
                and _selected(meta.get("labels") or {}, request.params.get("labelSelector")))


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class RunningEmulator:
    """The emulator served over HTTP from its own thread and event loop, for synchronous tests."""

    def __init__(self):
        self.url = ""
        self.emulator: ApiServerEmulator | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources.load_bundled()
            self.emulator, self.url = emulator, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> RunningEmulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start within 10 s")
        return self

    def __exit__(self, *_: Any) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path) -> str:
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
            f"clusters: [{{name: emulator, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: tester, user: {}}]\n"
            "contexts: [{name: emulator, context: {cluster: emulator, user: tester, namespace: default}}]\n")
        return str(path)
